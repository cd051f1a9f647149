/**
 * urbd-failover's daemon: one ResourceSupervisor per resource whose configuration has a
 * `failover { }` section for this node, and a control socket (`urbd-failover.sock` in the
 * run directory) for status, switchover, maintenance and clear. Under systemd it is
 * Type=notify with a watchdog. A broken configuration does not stop it: it says so (in the
 * log and in status) and runs nothing until a reload (SIGHUP) reads a good one.
 *
 * Stopping the supervisor leaves the services where they run (the next start adopts them
 * after probing); moving them is switchover's job.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { failoverFor, hostFor, loadConfig, type ResourceConfig } from '../config/index.js';
import { EventHub } from '../control/events.js';
import { ControlServer } from '../control/server.js';
import type { ControlRequest } from '../control/protocol.js';
import { notifySystemd } from '../control/systemd.js';
import { exportSocketPath } from '../resource/paths.js';
import { ShellCommands } from '../resource/shell-command.js';
import { autoPromotion, candidateOrder } from './decide.js';
import { ResourceSupervisor, type ResourceSupervisorStatus } from './resource-supervisor.js';

export const FAILOVER_SOCKET = 'urbd-failover.sock';

export function failoverSocketPath(runDir: string): string {
  return path.join(runDir, FAILOVER_SOCKET);
}

export interface SupervisorOptions {
  node: string;
  configFile: string;
  runDir: string;
  log: Logger;
  /** on-stop-failure exit: the process exits with this code (systemd's FailureAction acts). */
  exit(code: number, why: string): void;
}

export interface SupervisorStatus {
  node: string;
  pid: number;
  config: string;
  configError?: string;
  resources: ResourceSupervisorStatus[];
  /** Resources of this node without a failover section, or where this node only votes. */
  unmanaged: Array<{ resource: string; why: string }>;
}

/** Exit code of an on-stop-failure exit escalation (RestartPreventExitStatus in the unit). */
export const EXIT_ESCALATE = 3;

function managedCommandError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, exitCode: code === 'ENOENT' ? 10 : 11 });
}

function nbdDevice(path: string): { device?: string } {
  return /^\/dev\/nbd[0-9]+$/.test(path) ? { device: path } : {};
}

export class Supervisor {
  private readonly resources = new Map<string, ResourceSupervisor>();
  private unmanaged: SupervisorStatus['unmanaged'] = [];
  private configError: string | undefined;
  private readonly shell = new ShellCommands({
    stoppingText: 'not run: urbd-failover is stopping',
  });
  private readonly control: ControlServer;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(private readonly o: SupervisorOptions) {
    this.control = new ControlServer((req) => this.handle(req), new EventHub(), o.log);
  }

  async start(): Promise<void> {
    mkdirSync(this.o.runDir, { recursive: true, mode: 0o755 });
    await this.control.listen(failoverSocketPath(this.o.runDir));
    await this.load();
    notifySystemd('READY=1', this.o.log);
    this.notifyStatus();
    // WATCHDOG_USEC is set by systemd when the unit has WatchdogSec=: ping at half of it.
    const usec = Number(process.env.WATCHDOG_USEC ?? 0);
    if (usec > 0) {
      this.watchdog = setInterval(() => notifySystemd('WATCHDOG=1', this.o.log), usec / 2000);
    }
  }

  /** SIGHUP: read the configuration again; resources come and go, changed ones restart supervision. */
  async reload(): Promise<void> {
    for (const r of this.resources.values()) await r.close();
    this.resources.clear();
    await this.load();
    this.notifyStatus();
  }

  async stop(): Promise<void> {
    notifySystemd('STOPPING=1', this.o.log);
    clearInterval(this.watchdog);
    for (const r of this.resources.values()) await r.close();
    await this.shell.shutdown();
    await this.control.close();
  }

  status(): SupervisorStatus {
    return {
      node: this.o.node,
      pid: process.pid,
      config: this.o.configFile,
      ...(this.configError ? { configError: this.configError } : {}),
      resources: [...this.resources.values()].map((r) => r.snapshot()),
      unmanaged: this.unmanaged,
    };
  }

  private notifyStatus(): void {
    const running = [...this.resources.values()].filter(
      (r) => r.snapshot().phase === 'running',
    ).length;
    const text = this.configError
      ? `configuration error: ${this.configError}`
      : `${this.resources.size} resource(s), ${running} running here`;
    notifySystemd(`STATUS=${text}`, this.o.log);
  }

  private async load(): Promise<void> {
    this.unmanaged = [];
    let resources: ResourceConfig[];
    try {
      resources = loadConfig(this.o.configFile).resources;
      this.configError = undefined;
    } catch (err) {
      this.configError = (err as Error).message;
      this.o.log.error(
        `configuration: ${this.configError}; nothing is supervised until it is fixed (SIGHUP reloads)`,
      );
      return;
    }
    for (const res of resources) {
      let host;
      try {
        host = hostFor(res, this.o.node);
      } catch {
        continue; // not a resource of this node
      }
      const cfg = failoverFor(res.failover, this.o.node);
      if (cfg === undefined) {
        this.unmanaged.push({ resource: res.name, why: 'no failover section' });
        continue;
      }
      if (host.disk === 'none') {
        this.unmanaged.push({ resource: res.name, why: 'diskless here (a tiebreaker only votes)' });
        continue;
      }
      const dataHosts = res.hosts.filter((h) => h.disk !== 'none').map((h) => h.name);
      const auto = autoPromotion(
        res.options.quorum !== 'off',
        cfg,
        res.net.fencing !== 'dont-care' && res.handlers['fence-peer'] !== undefined,
      );
      const sup = new ResourceSupervisor({
        res,
        cfg,
        node: this.o.node,
        runDir: this.o.runDir,
        order: candidateOrder(cfg, dataHosts),
        auto,
        shell: this.shell,
        attachSpec: {
          resource: res.name,
          socket: exportSocketPath(this.o.runDir, res.name),
          method: cfg.attach.method,
          // nbd-client attaches the device the resource file names (`device /dev/nbd0`)
          // unless `attach nbd-client /dev/nbdN` says otherwise.
          ...nbdDevice(cfg.attach.device ?? host.device.path),
          stateDir: path.join(this.o.runDir, 'failover', res.name),
          timeoutMs: cfg.attach.timeoutMs,
        },
        log: this.o.log,
        escalateExit: (why) => this.o.exit(EXIT_ESCALATE, why),
      });
      this.resources.set(res.name, sup);
      await sup.start();
    }
  }

  private get(name: unknown): ResourceSupervisor {
    if (typeof name !== 'string') throw managedCommandError('EINVAL', 'name a resource');
    const r = this.resources.get(name);
    if (!r) {
      const why =
        this.unmanaged.find((u) => u.resource === name)?.why ?? 'not a resource of this node';
      throw managedCommandError('ENOENT', `${name} is not supervised here: ${why}`);
    }
    return r;
  }

  private async handle(req: ControlRequest): Promise<unknown> {
    const args = req.args ?? {};
    switch (req.cmd) {
      case 'ping':
        return { node: this.o.node, pid: process.pid };
      case 'status':
        return this.status();
      case 'switchover': {
        const to = typeof args.to === 'string' ? args.to : undefined;
        let t;
        try {
          t = await this.get(req.resource).switchover(to);
        } catch (err) {
          if ((err as { code?: string }).code) throw err;
          throw managedCommandError('EREFUSED', (err as Error).message);
        }
        if (!t.ok) {
          const failed = t.phases.find((p) => !p.ok);
          throw managedCommandError(
            'EFAILED',
            `switchover failed: ${failed?.phase}: ${failed?.error}; ${req.resource} stays here`,
          );
        }
        return t;
      }
      case 'maintenance': {
        const list =
          req.resource && req.resource !== 'all'
            ? [this.get(req.resource)]
            : [...this.resources.values()];
        for (const r of list) r.setMaintenance(args.on === true);
        return list.map((r) => r.snapshot());
      }
      case 'clear':
        this.get(req.resource).clear();
        return this.get(req.resource).snapshot();
      case 'reload':
        await this.reload();
        return this.status();
      default:
        throw managedCommandError('EINVAL', `unknown command ${JSON.stringify(req.cmd)}`);
    }
  }
}
