import os from 'node:os';
import path from 'node:path';
import {
  configPath,
  hostFor,
  loadConfig,
  resourceFor,
  sameHost,
  type HostConfig,
  type ResourceConfig,
  type UrbdConfig,
} from '../config/index.js';
import { ControlClient, DaemonUnreachable } from '../control/client.js';
import { DEFAULT_RUN_DIR } from '../control/protocol.js';
import type { ResourceStatus } from '../resource/status.js';

/**
 * urbdadm's exit codes, drbdadm's: 0 done; 1 usage; 5 a wait-connect / wait-sync --timeout
 * ran out; 10 the command failed (bad configuration, metadata, disk); 11 the daemon refused
 * a state change; 20 no daemon.
 */
export const Exit = {
  OK: 0,
  USAGE: 1,
  TIMEOUT: 5,
  FAILED: 10,
  STATE_CHANGE: 11,
  NO_DAEMON: 20,
} as const;

/** A failure urbdadm reports as one line and an exit code. */
export class AdmError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = Exit.FAILED,
  ) {
    super(message);
    this.name = 'AdmError';
  }
}

export interface GlobalOptions {
  node?: string;
  config?: string;
  runDir?: string;
}

/** What every verb needs to find its resource: the node, the files and the daemon. */
export class AdmContext {
  readonly node: string;
  readonly configFile: string;
  readonly runDir: string;
  private cfg: UrbdConfig | undefined;
  private client: ControlClient | undefined | null;
  private unreachable = '';

  constructor(opts: GlobalOptions) {
    this.node = opts.node ?? process.env.URBD_NODE ?? os.hostname();
    this.configFile = path.resolve(configPath(opts.config));
    this.runDir = path.resolve(opts.runDir ?? process.env.URBD_RUN_DIR ?? DEFAULT_RUN_DIR);
  }

  /** The parsed configuration; a broken file is exit 10 with the parser's file:line:col. */
  config(): UrbdConfig {
    if (!this.cfg) {
      try {
        this.cfg = loadConfig(this.configFile);
      } catch (err) {
        throw new AdmError((err as Error).message, Exit.FAILED);
      }
    }
    return this.cfg;
  }

  resource(name: string): { res: ResourceConfig; host: HostConfig } {
    try {
      const res = resourceFor(this.config(), name);
      return { res, host: hostFor(res, this.node) };
    } catch (err) {
      if (err instanceof AdmError) throw err;
      throw new AdmError((err as Error).message, Exit.FAILED);
    }
  }

  /** `all` means every resource with an `on NODE` section, as drbdadm means it. */
  expand(names: string[]): string[] {
    if (names.length === 0) throw new AdmError('no resource named (give RES or "all")', Exit.USAGE);
    if (!names.includes('all')) return names;
    return this.config()
      .resources.filter((r) => r.hosts.some((h) => sameHost(h.name, this.node)))
      .map((r) => r.name);
  }

  /** The daemon, or null when none runs on this run directory. */
  async daemon(): Promise<ControlClient | null> {
    if (this.client !== undefined) return this.client;
    try {
      this.client = await ControlClient.connect(this.runDir);
    } catch (err) {
      if (!(err instanceof DaemonUnreachable)) throw err;
      this.unreachable = err.message;
      this.client = null;
    }
    return this.client;
  }

  /** The daemon, or exit 20 saying none runs. */
  async requireDaemon(): Promise<ControlClient> {
    const c = await this.daemon();
    if (c) return c;
    throw new AdmError(
      `${this.unreachable} (start it with: urbd --node ${this.node} --config ${this.configFile} --run-dir ${this.runDir})`,
      Exit.NO_DAEMON,
    );
  }

  /** The resource's state in the running daemon, or undefined when it is not up there. */
  async upStatus(name: string): Promise<ResourceStatus | undefined> {
    const c = await this.daemon();
    if (!c) return undefined;
    const list = (await c.request('status', 'all')) as ResourceStatus[];
    return list.find((s) => s.name === name);
  }

  close(): void {
    this.client?.close();
  }
}
