/**
 * A replicated pair for the benchmarks, brought up the way an admin does it (scripts/demo,
 * test/helpers/pair.ts): one resource file for both nodes, alpha (node-id 0, dials, serves
 * NBD on a loopback port) and beta (node-id 1, listens), `meta-disk internal` (the metadata
 * is DISK.urbd-md beside each backing file), `urbdadm create-md` on both, one `urbd` daemon
 * per node, `urbdadm up` on beta then alpha, `wait-connect`. Then either
 * - `ready`: the two backing files hold the same data, so the initial sync is skipped
 *   (`new-current-uuid --clear-bitmap`, drbd.md §3.5) and alpha is promoted; or
 * - not ready: both stay Secondary and Inconsistent, for the caller to time
 *   `primary --force` (the initial full sync).
 *
 * StateWatch follows a node's event stream (`urbdadm events`) and answers when a state was
 * first reached, with the daemon's own timestamps, so a resync is timed to the millisecond
 * without polling.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ControlClient } from '../../src/control/client.js';
import type { UrbdEvent } from '../../src/control/events.js';
import { URBDADM_CLI } from './nbd-resource.js';
import { freePort, type RunningServer, URBD_CLI, waitForPort } from './nbd-servers.js';

const run = promisify(execFile);

export const RES = 'r0';
export type NodeName = 'alpha' | 'beta';
export const NODES: readonly NodeName[] = ['alpha', 'beta'];

export interface PairOptions {
  /** Config, run directories and daemon logs go here. */
  dir: string;
  alphaDisk: string;
  betaDisk: string;
  protocol: 'A' | 'B' | 'C';
  /** Skip the initial sync (identical disks) and promote alpha; otherwise stay Secondary. */
  ready: boolean;
  /** Extra statements for `net { }` and `disk { }`. */
  net?: string;
  disk?: string;
  /** Node options for both daemons, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeOptions?: string[];
}

export interface RunningPair extends RunningServer {
  /** urbdadm with that node's --node/--config/--run-dir; resolves with its stdout. */
  adm(node: NodeName, ...args: string[]): Promise<string>;
  /** A fresh control connection to that node's daemon (the caller closes it). */
  control(node: NodeName): Promise<ControlClient>;
  /** The node's event stream, from now on. */
  watch(node: NodeName): Promise<StateWatch>;
  runDir(node: NodeName): string;
  daemons: Record<NodeName, ChildProcess>;
}

/** `meta-disk internal` on a file-backed disk: DISK.urbd-md (SQLite, with -wal/-shm). */
export function removeMetadata(disk: string): void {
  const dir = path.dirname(disk);
  const base = `${path.basename(disk)}.urbd-md`;
  for (const f of fs.readdirSync(dir)) {
    if (f.startsWith(base)) fs.rmSync(path.join(dir, f), { force: true });
  }
}

export async function startUrbdPair(o: PairOptions): Promise<RunningPair> {
  const [alphaPort, betaPort, nbdPort] = [await freePort(), await freePort(), await freePort()];
  const conf = path.join(o.dir, 'urbd.conf');
  fs.writeFileSync(
    conf,
    [
      `resource ${RES} {`,
      `  protocol ${o.protocol};`,
      // A restarted peer is dialled again within a second (the default is 10 s).
      `  net { connect-int 1; ${o.net ?? ''} }`,
      `  disk { ${o.disk ?? ''} }`,
      '  on alpha {',
      '    node-id 0;',
      `    address 127.0.0.1:${alphaPort};`,
      '    device minor 0;',
      `    disk ${path.resolve(o.alphaDisk)};`,
      '    meta-disk internal;',
      `    nbd-listen 127.0.0.1:${nbdPort};`,
      '  }',
      '  on beta {',
      '    node-id 1;',
      `    address 127.0.0.1:${betaPort};`,
      '    device minor 1;',
      `    disk ${path.resolve(o.betaDisk)};`,
      '    meta-disk internal;',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const runDir = (n: NodeName): string => path.join(o.dir, `run-${n}`);
  const global = (n: NodeName): string[] => ['--node', n, '--config', conf, '--run-dir', runDir(n)];
  const adm = async (n: NodeName, ...args: string[]): Promise<string> => {
    const { stdout } = await run(process.execPath, [URBDADM_CLI, ...global(n), ...args], {
      timeout: 60_000,
      maxBuffer: 4 * 1024 * 1024,
    });
    return stdout;
  };

  const daemons: Partial<Record<NodeName, ChildProcess>> = {};
  const stopDaemon = async (p: ChildProcess): Promise<void> => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    process.kill(p.pid!, 'SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const stop = async (): Promise<void> => {
    // Alpha first, so nothing it sent is still on its way when beta goes.
    for (const n of NODES) {
      if (daemons[n]?.exitCode === null) await adm(n, 'down', RES).catch(() => undefined);
    }
    for (const n of NODES) if (daemons[n]) await stopDaemon(daemons[n]);
  };

  try {
    for (const n of NODES) {
      removeMetadata(n === 'alpha' ? o.alphaDisk : o.betaDisk);
      await adm(n, 'create-md', RES);
    }
    for (const n of NODES) {
      // The daemon logs JSON lines to stdout: kept in DIR/NODE.log for a look afterwards.
      const log = fs.openSync(path.join(o.dir, `${n}.log`), 'a');
      daemons[n] = spawn(process.execPath, [...(o.nodeOptions ?? []), URBD_CLI, ...global(n)], {
        stdio: ['ignore', log, 'inherit'],
      });
      fs.closeSync(log);
    }
    for (const n of NODES) {
      const sock = path.join(runDir(n), 'urbd.sock');
      const deadline = Date.now() + 10_000;
      while (!fs.existsSync(sock)) {
        if (daemons[n]!.exitCode !== null) throw new Error(`urbd ${n} exited`);
        if (Date.now() > deadline) throw new Error(`urbd ${n} made no control socket in 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await adm('beta', 'up', RES);
    await adm('alpha', 'up', RES);
    await adm('alpha', 'wait-connect', '--timeout', '30', RES);
    if (o.ready) {
      await adm('alpha', 'new-current-uuid', '--clear-bitmap', RES);
      await adm('alpha', 'wait-sync', '--timeout', '30', RES);
      await adm('alpha', 'primary', RES);
      await waitForPort(nbdPort, daemons.alpha!, 10_000);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: `pair-${o.protocol}`,
    uri: `nbd://127.0.0.1:${nbdPort}/${RES}`,
    proc: daemons.alpha!,
    daemons: daemons as Record<NodeName, ChildProcess>,
    stop,
    adm,
    runDir,
    control: (n) => ControlClient.connect(runDir(n)),
    watch: (n) => StateWatch.start(runDir(n)),
  };
}

/** What the event stream says about r0 on one node (one peer). */
export interface NodeState {
  role?: string;
  disk?: string;
  connection?: string;
  replication?: string;
  peerDisk?: string;
}

/** Connected, no resync, both disks UpToDate: what `urbdadm wait-sync` waits for. */
export const inSync = (s: NodeState): boolean =>
  s.disk === 'UpToDate' &&
  s.connection === 'Connected' &&
  s.replication === 'Established' &&
  s.peerDisk === 'UpToDate';

/**
 * One node's event stream: every state it went through, with the daemon's timestamp (ms
 * since the epoch), from the moment of subscribing.
 */
export class StateWatch {
  readonly history: Array<{ at: number; state: NodeState }> = [];
  private state: NodeState = {};
  private waiters: Array<() => void> = [];

  private constructor(private readonly client: ControlClient) {}

  static async start(runDir: string): Promise<StateWatch> {
    const c = await ControlClient.connect(runDir);
    const w = new StateWatch(c);
    let first!: () => void;
    const primed = new Promise<void>((r) => (first = r));
    // Every resource of the node (only r0): a resource that is down now is seen coming up.
    void c
      .events(
        undefined,
        (e) => {
          w.onEvent(e);
          first();
        },
        false,
      )
      .catch(() => undefined);
    await primed;
    return w;
  }

  private onEvent(e: UrbdEvent): void {
    const f = e.fields;
    const s = { ...this.state };
    if (e.object === 'resource') s.role = String(f.role);
    else if (e.object === 'device') s.disk = String(f.disk);
    else if (e.object === 'connection') s.connection = String(f.connection);
    else if (e.object === 'peer-device') {
      s.replication = String(f.replication);
      s.peerDisk = String(f['peer-disk']);
    }
    this.state = s;
    this.history.push({ at: Date.parse(e.time), state: s });
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** The daemon's time at which `pred` first held at or after `since` (ms since the epoch). */
  firstAt(pred: (s: NodeState) => boolean, since: number): number | undefined {
    return this.history.find((h) => h.at >= since && pred(h.state))?.at;
  }

  /** Resolves with the daemon's time at which `pred` first held at or after `since`. */
  async waitFor(
    pred: (s: NodeState) => boolean,
    since: number,
    timeoutMs: number,
    what: string,
  ): Promise<number> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      // A state reached before `since` and still holding counts from `since`.
      if (pred(this.state)) return this.firstAt(pred, since) ?? since;
      const left = until - Date.now();
      if (left <= 0)
        throw new Error(`not ${what} within ${timeoutMs} ms: ${JSON.stringify(this.state)}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  close(): void {
    this.client.close();
  }
}
