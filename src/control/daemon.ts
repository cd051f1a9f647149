import fs from 'node:fs';
import type { Logger } from 'pino';
import {
  ConfigError,
  type HostConfig,
  hostFor,
  loadConfig,
  type ResourceConfig,
  resourceFor,
} from '../config/index.js';
import { commandError, Resource } from '../resource/resource.js';
import { EventHub } from './events.js';
import { controlSocketPath, type ControlRequest } from './protocol.js';
import { ControlServer } from './server.js';
import { notifySystemd } from './systemd.js';

export interface DaemonOptions {
  node: string;
  configPath: string;
  runDir: string;
  log: Logger;
}

/**
 * urbd proper: owns every resource of its node that has been brought up, answers the
 * control socket and publishes events. State lives here and nowhere else; urbdadm only
 * asks. The configuration is read afresh at every `up`/`attach`, as drbdadm reads it at
 * every command, so an edited resource file takes effect the next time it is brought up.
 */
export class Daemon {
  readonly events = new EventHub();
  private readonly resources = new Map<string, Resource>();
  private readonly control: ControlServer;
  private stopping = false;

  constructor(private readonly opts: DaemonOptions) {
    this.control = new ControlServer((req) => this.handle(req), this.events, opts.log);
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.opts.runDir, { recursive: true, mode: 0o755 });
    await this.control.listen(controlSocketPath(this.opts.runDir));
    // A broken file does not stop the daemon (it owns nothing yet); `up` will say why.
    try {
      loadConfig(this.opts.configPath);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'configuration has errors');
    }
    this.opts.log.info({ runDir: this.opts.runDir, config: this.opts.configPath }, 'urbd ready');
    notifySystemd(
      `READY=1\nSTATUS=node ${this.opts.node}, no resources up\nMAINPID=${process.pid}`,
      this.opts.log,
    );
  }

  /** Orderly stop: every resource's clients finish, bitmaps are persisted, metadata clean. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    notifySystemd('STOPPING=1', this.opts.log);
    await this.control.close();
    for (const r of this.resources.values()) {
      try {
        await r.serial(() => r.shutdown());
      } catch (err) {
        this.opts.log.error({ resource: r.name, err: (err as Error).message }, 'stop failed');
      }
      this.events.destroy(r.name);
    }
    this.resources.clear();
  }

  private async handle(req: ControlRequest): Promise<unknown> {
    if (this.stopping) throw commandError('ERR_STOPPING', 'urbd is stopping');
    const args = req.args ?? {};
    switch (req.cmd) {
      case 'ping':
        return {
          node: this.opts.node,
          pid: process.pid,
          runDir: this.opts.runDir,
          config: this.opts.configPath,
        };
      case 'list':
        return [...this.resources.keys()];
      case 'status': {
        const list =
          req.resource && req.resource !== 'all'
            ? [this.get(req.resource)]
            : [...this.resources.values()];
        return list.map((r) => r.status());
      }
      case 'up':
        return this.up(this.name(req));
      case 'attach':
        return this.attach(this.name(req));
      case 'down':
        return this.down(this.name(req));
    }
    const r = this.get(this.name(req));
    const force = args.force === true;
    switch (req.cmd) {
      case 'detach':
        return r.serial(() => r.detach());
      case 'primary':
        return r.serial(() => r.primary(force));
      case 'secondary':
        return r.serial(() => r.secondary(force));
      case 'outdate':
        return r.serial(() => r.outdate());
      case 'new-current-uuid':
        return r.serial(() => r.newCurrentUuid(args.clearBitmap === true));
      case 'get-gi':
        return r.serial(() => r.superblock());
      case 'connect':
        return r.serial(() => r.connect(args.discardMyData === true, peerArg(args)));
      case 'disconnect':
        return r.serial(() => r.disconnect(peerArg(args)));
      case 'pause-sync':
        return r.serial(() => r.pauseSync(true, peerArg(args)));
      case 'resume-sync':
        return r.serial(() => r.pauseSync(false, peerArg(args)));
      default:
        throw commandError('EPROTO', `unknown command "${req.cmd}"`);
    }
  }

  private name(req: ControlRequest): string {
    if (!req.resource) throw commandError('EPROTO', `${req.cmd} needs a resource name`);
    return req.resource;
  }

  private get(name: string): Resource {
    const r = this.resources.get(name);
    if (!r)
      throw commandError(
        'ERR_RES_NOT_KNOWN',
        `${name}: no such resource is up on ${this.opts.node}`,
      );
    return r;
  }

  /** The resource's configuration on this node, read afresh; exit 10 when there is none. */
  private lookup(name: string): { config: ResourceConfig; host: HostConfig } {
    try {
      const config = resourceFor(loadConfig(this.opts.configPath), name);
      return { config, host: hostFor(config, this.opts.node) };
    } catch (err) {
      const e = err as Error;
      throw commandError(
        err instanceof ConfigError ? 'ERR_CONFIG' : 'ERR_RES_NOT_KNOWN',
        e.message,
      );
    }
  }

  private create(name: string): Resource {
    const { config, host } = this.lookup(name);
    return new Resource({
      config,
      host,
      // The name as the resource file spells it (--node alpha may be "on alpha.example.com"):
      // the peer knows this node by that name in the handshake.
      node: host.name,
      runDir: this.opts.runDir,
      log: this.opts.log,
      onChange: (r) => this.events.publish(r.status()),
    });
  }

  private async up(name: string): Promise<void> {
    if (this.resources.has(name)) {
      throw commandError('ERR_RES_IN_USE', `${name} is already up on ${this.opts.node}`);
    }
    const r = this.create(name);
    this.resources.set(name, r);
    try {
      await r.serial(() => r.up());
    } catch (err) {
      await r.serial(() => r.shutdown()).catch(() => undefined);
      this.resources.delete(name);
      this.events.destroy(name);
      throw err;
    }
  }

  private async attach(name: string): Promise<void> {
    const existing = this.resources.get(name);
    if (existing) return existing.serial(() => existing.attach());
    return this.up(name);
  }

  private async down(name: string): Promise<void> {
    const r = this.resources.get(name);
    if (!r) {
      // drbdsetup's down is missing-ok: a configured resource that is not up is already
      // down, so `down all` and a unit's ExecStop succeed after a manual down. A name the
      // configuration does not know is still an error.
      this.lookup(name);
      return;
    }
    await r.serial(() => r.down());
    this.resources.delete(name);
    this.events.destroy(name);
  }
}

function peerArg(args: Record<string, unknown>): string | undefined {
  return typeof args.peer === 'string' ? args.peer : undefined;
}
