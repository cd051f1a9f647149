import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  ConfigError,
  type HostConfig,
  hostFor,
  loadConfig,
  type ResourceConfig,
  resourceFor,
} from '../config/index.js';
import { payloadSlabs } from '../replication/payload-slabs.js';
import { hugePageBuffer } from '../storage/native.js';
import { commandError, Resource } from '../resource/resource.js';
import { reconfigure } from '../resource/reconfigure.js';
import { EventHub } from './events.js';
import { OPTION_VERBS, optionVerb } from './option-verbs.js';
import { controlSocketPath, type ControlRequest } from './protocol.js';
import { ControlServer } from './server.js';
import { notifySystemd } from './systemd.js';

export interface DaemonOptions {
  node: string;
  configPath: string;
  runDir: string;
  log: Logger;
}

/** Slabs of payloadSlabs (2 MiB each) faulted in at start: a socket read burst's worth. */
const PREFAULT_SLABS = 8;

/**
 * urbd proper: owns every resource of its node that has been brought up, answers the
 * control socket and publishes events. State lives here and nowhere else; urbdadm only
 * asks. The configuration is read afresh at every `up`/`attach`, as drbdadm reads it at
 * every command, so an edited resource file takes effect the next time it is brought up.
 * urbdadm sends the file it read (its --config), so the file the admin named is the one
 * that applies; the daemon's own --config serves requests that name none.
 */
export class Daemon {
  readonly events = new EventHub();
  private readonly resources = new Map<string, Resource>();
  private readonly control: ControlServer;
  private stopping = false;
  /** Resync progress for `events --statistics` listeners, once a second. */
  private readonly progressTimer = setInterval(() => {
    if (!this.events.wantsProgress) return;
    for (const r of this.resources.values()) this.events.progress(r.status());
  }, 1000).unref();

  constructor(private readonly opts: DaemonOptions) {
    this.control = new ControlServer((req) => this.handle(req), this.events, opts.log);
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.opts.runDir, { recursive: true, mode: 0o755 });
    // Memory for what peers send is faulted in now, not during the first resync.
    payloadSlabs.alloc = hugePageBuffer;
    payloadSlabs.prefault(PREFAULT_SLABS);
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
    clearInterval(this.progressTimer);
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
      case 'adjust':
        return this.adjust(this.name(req), args.dryRun === true, configArg(args));
      case 'up':
        return this.up(this.name(req), configArg(args));
      case 'attach':
        return this.attach(this.name(req), configArg(args));
      case 'down':
        return this.down(this.name(req), args.force === true, configArg(args));
    }
    const r = this.get(this.name(req));
    if (OPTION_VERBS.has(req.cmd)) return r.serial(() => optionVerb(req.cmd, r, args));
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
      case 'invalidate':
        return r.serial(() => r.invalidate(false));
      case 'invalidate-remote':
        return r.serial(() => r.invalidate(true));
      case 'resize':
        return r.serial(() =>
          r.resize({
            sizeBytes: bytesArg(args.size),
            ...(typeof args.sizeBy === 'string' ? { sizeBy: args.sizeBy } : {}),
            assumeClean: args.assumeClean === true,
          }),
        );
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
      case 'verify':
        return r.serial(() => r.verify(sectorArg(args.start), sectorArg(args.stop), peerArg(args)));
      case 'resume-io':
        // Not serialised: a command waiting in the queue may be the one suspended I/O holds.
        return r.resumeIo();
      default:
        throw commandError('EPROTO', `unknown command "${req.cmd}"`);
    }
  }

  private name(req: ControlRequest): string {
    if (!req.resource) throw commandError('EPROTO', `${req.cmd} needs a resource name`);
    return req.resource;
  }

  /**
   * drbdadm adjust: a resource that is down is brought up; one that is up takes the file's
   * options as far as they can change while it runs (option-changes.ts says which).
   */
  private async adjust(name: string, dryRun: boolean, file: string | undefined): Promise<string[]> {
    const r = this.resources.get(name);
    if (!r) {
      if (dryRun) {
        this.lookup(name, file);
        return [`${name}: up`];
      }
      await this.up(name, file);
      return [];
    }
    const wanted = this.lookup(name, file);
    return r.serial(() =>
      reconfigure(r, { config: wanted.config, host: wanted.host }, { dryRun, adjust: true }),
    );
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

  /**
   * The resource's configuration on this node, read afresh from the file urbdadm named (as
   * drbdadm hands its configuration to the kernel), else from the daemon's own; exit 10
   * when there is none.
   */
  private lookup(
    name: string,
    file = this.opts.configPath,
  ): { config: ResourceConfig; host: HostConfig } {
    try {
      const config = resourceFor(loadConfig(file), name);
      return { config, host: hostFor(config, this.opts.node) };
    } catch (err) {
      const e = err as Error;
      throw commandError(
        err instanceof ConfigError ? 'ERR_CONFIG' : 'ERR_RES_NOT_KNOWN',
        e.message,
      );
    }
  }

  private create(name: string, file: string | undefined): Resource {
    const { config, host } = this.lookup(name, file);
    return new Resource({
      config,
      host,
      // The name as the resource file spells it (--node alpha may be "on alpha.example.com"):
      // the peer knows this node by that name in the handshake.
      node: host.name,
      runDir: this.opts.runDir,
      log: this.opts.log,
      onChange: (r) => this.events.publish(r.status()),
      configFile: file ?? this.opts.configPath,
    });
  }

  private async up(name: string, file: string | undefined): Promise<void> {
    if (this.resources.has(name)) {
      throw commandError('ERR_RES_IN_USE', `${name} is already up on ${this.opts.node}`);
    }
    const r = this.create(name, file);
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

  private async attach(name: string, file: string | undefined): Promise<void> {
    const existing = this.resources.get(name);
    if (existing) return existing.serial(() => existing.attach());
    return this.up(name, file);
  }

  /** With `force`, NBD clients still attached are cut off (as `secondary --force` does). */
  private async down(name: string, force: boolean, file: string | undefined): Promise<void> {
    const r = this.resources.get(name);
    if (!r) {
      // drbdsetup's down is missing-ok: a configured resource that is not up is already
      // down, so `down all` and a unit's ExecStop succeed after a manual down. A name the
      // configuration does not know is still an error.
      this.lookup(name, file);
      return;
    }
    await r.serial(() => r.down(force));
    this.resources.delete(name);
    this.events.destroy(name);
  }
}

/** The configuration file urbdadm read (an absolute path), when it named one. */
function configArg(args: Record<string, unknown>): string | undefined {
  const f = args.config;
  if (f === undefined) return undefined;
  if (typeof f !== 'string' || !path.isAbsolute(f)) {
    throw commandError('EPROTO', '"config" must be an absolute path');
  }
  return f;
}

function peerArg(args: Record<string, unknown>): string | undefined {
  return typeof args.peer === 'string' ? args.peer : undefined;
}

/** A byte count from urbdadm (resize --size), or undefined when not given. */
function bytesArg(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw commandError('EPROTO', `a size must be a whole number of bytes > 0, got ${String(v)}`);
  }
  return v;
}

/** A sector number from urbdadm (--start / --stop), or undefined when not given. */
function sectorArg(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw commandError('EPROTO', `a sector must be a whole number >= 0, got ${String(v)}`);
  }
  return v;
}
