/**
 * urbd-failover processes for the nodes of a trio: started with the node's own resource
 * file and run directory, stopped (or killed) by PID, and asked for their state through
 * the CLI, as an admin would.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { quote } from '../../src/config/schema.js';
import { ControlClient } from '../../src/control/client.js';
import { isMountPoint } from '../../src/failover/attach-sys.js';
import { usersOf } from '../../src/failover/steps.js';
import { failoverSocketPath, type SupervisorStatus } from '../../src/failover/supervisor.js';
import type { ResourceSupervisorStatus } from '../../src/failover/resource-supervisor.js';
import type { NodeSpec } from './daemon.js';
import { promoteAndSyncTrio, startTrio, type Trio } from './trio.js';
import {
  tmpDir,
  followLogs,
  run,
  type RunResult,
  spawnTracked,
  type Teardown,
  type Tracked,
  waitFor as waitUntil,
} from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FAILOVER_CLI = path.resolve(here, '../../src/cli/urbd-failover.js');

export interface SupervisorHandle {
  spec: NodeSpec;
  proc: Tracked;
  logs: ReturnType<typeof followLogs>['logs'];
  waitForLog: ReturnType<typeof followLogs>['waitForLog'];
  /** `urbd-failover ARGS` against this node's supervisor. */
  cli(args: string[], timeoutMs?: number): Promise<RunResult>;
  status(): Promise<SupervisorStatus>;
  resource(name?: string): Promise<ResourceSupervisorStatus>;
  kill9(): Promise<void>;
}

export function failoverCli(spec: NodeSpec, args: string[], timeoutMs = 60000): Promise<RunResult> {
  return run(
    process.execPath,
    [FAILOVER_CLI, '--node', spec.node, '--config', spec.config, '--run-dir', spec.runDir, ...args],
    { timeoutMs },
  );
}

export async function startSupervisor(
  t: Teardown,
  spec: NodeSpec,
  env?: NodeJS.ProcessEnv,
): Promise<SupervisorHandle> {
  const proc = spawnTracked(
    process.execPath,
    [FAILOVER_CLI, '--node', spec.node, '--config', spec.config, '--run-dir', spec.runDir, 'run'],
    { t, ...(env ? { env: { ...process.env, ...env } } : {}) },
  );
  const { logs, waitForLog } = followLogs(proc);
  await waitForLog((l) => l.json?.msg === 'urbd-failover running', 20000);
  const h: SupervisorHandle = {
    spec,
    proc,
    logs,
    waitForLog,
    cli: (args, ms) => failoverCli(spec, args, ms),
    async status() {
      // Straight to the socket: polling through the CLI would start a node process each time.
      const c = await ControlClient.connect(spec.runDir, failoverSocketPath(spec.runDir));
      try {
        return (await c.request('status')) as SupervisorStatus;
      } finally {
        c.close();
      }
    },
    async resource(name = 'r0') {
      const s = await h.status();
      const r = s.resources.find((x) => x.resource === name);
      if (!r) throw new Error(`${spec.node}: ${name} is not supervised: ${JSON.stringify(s)}`);
      return r;
    },
    async kill9() {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        // gone already
      }
      await proc.exited;
    },
  };
  return h;
}

/** Polls a supervisor's state of r0 until `pred` holds; throws with the last state. */
export async function waitSupervisor(
  h: SupervisorHandle,
  pred: (r: ResourceSupervisorStatus) => boolean,
  what: string,
  timeoutMs = 60000,
): Promise<ResourceSupervisorStatus> {
  let last: ResourceSupervisorStatus | undefined;
  const ok = await waitUntil(
    async () => {
      try {
        last = await h.resource();
        return pred(last);
      } catch {
        return false;
      }
    },
    timeoutMs,
    200,
  );
  if (!ok)
    throw new Error(`${h.spec.node}: not ${what} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
  return last!;
}

/**
 * What an admin does once before handing a resource to urbd-failover: on the Primary,
 * attach the export, make the filesystem, detach, and demote. Leaves the node Secondary.
 */
export async function makeFilesystem(spec: NodeSpec, fstype = 'ext4'): Promise<void> {
  const a = await failoverCli(spec, ['attach', 'r0']);
  if (a.code !== 0) throw new Error(`attach on ${spec.node}: ${a.stderr}`);
  const device = a.stdout.trim().split('\n').pop()!;
  const m = await run(`mkfs.${fstype}`, ['-q', ...(fstype === 'ext4' ? ['-F'] : ['-f']), device], {
    timeoutMs: 120000,
  });
  const d = await failoverCli(spec, ['detach', 'r0']);
  if (m.code !== 0) throw new Error(`mkfs.${fstype} ${device}: ${m.stderr}`);
  if (d.code !== 0) throw new Error(`detach on ${spec.node}: ${d.stderr}`);
}

/**
 * Teardown for a node a test left with its chain up (supervisors leave services running
 * when they stop): kills whoever uses the mount by PID, unmounts it and detaches the export.
 */
export async function releaseChain(spec: NodeSpec, mountDir: string): Promise<void> {
  for (const pid of await usersOf(mountDir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (isMountPoint(mountDir)) {
    const u = await run('umount', [mountDir], { timeoutMs: 20000 });
    if (u.code !== 0) await run('umount', ['-l', mountDir], { timeoutMs: 20000 });
  }
  await failoverCli(spec, ['detach', 'r0'], 30000);
}

export type DataNode = 'alpha' | 'beta';

export interface FailoverTrio {
  trio: Trio;
  dir: string;
  /** Each node's mount point: DIR/mnt-NODE. */
  mnt: Record<DataNode, string>;
  sup: Record<'alpha' | 'beta' | 'gamma', SupervisorHandle>;
}

/**
 * Three daemons (test/helpers/trio.ts) with quorum, a filesystem made once on alpha, and a
 * supervisor on every node: each data node's failover section mounts DIR/mnt-NODE and has
 * what `perNode` adds (its services); `extra` goes into the resource-level section. alpha
 * is Secondary when the supervisors start, so the first takeover is theirs.
 */
export async function failoverTrio(
  t: Teardown,
  o: {
    perNode: (n: DataNode, dir: string) => string;
    extra?: string;
    onNoQuorum?: 'io-error' | 'suspend-io';
    sizeBytes?: number;
  },
): Promise<FailoverTrio> {
  const dir = tmpDir(t, 'urbd-failover-');
  const mnt = { alpha: `${dir}/mnt-alpha`, beta: `${dir}/mnt-beta` };
  const section = (n: DataNode) => `mount ${mnt[n]} ext4; ${o.perNode(n, dir)}`;
  const trio = await startTrio(t, dir, {
    sizeBytes: o.sizeBytes ?? 64 << 20,
    options: `quorum majority; on-no-quorum ${o.onNoQuorum ?? 'io-error'};`,
    // A 2 s ping timeout: on a loaded 2-core machine a shorter one drops the beta–gamma
    // link now and then, and a node that was ever alone may not regain quorum through the
    // tiebreaker (DRBD's rule), so a cut-off test could end with nobody promoted. A kill
    // closes the TCP connections, which is noticed at once whatever the timeout.
    net: 'ping-int 1; ping-timeout 20; timeout 20; connect-int 1;',
    failover: `attach nbdfuse; monitor-interval 1; promote-delay 1; min-failover-interval 0; ${o.extra ?? ''}`,
    failoverOn: { alpha: section('alpha'), beta: section('beta') },
  });
  // Runs after the supervisors are stopped (teardowns run last in, first out).
  t.teardown(async () => {
    for (const n of ['alpha', 'beta'] as const) await releaseChain(trio.node(n), mnt[n]);
  });
  await promoteAndSyncTrio(trio);
  await makeFilesystem(trio.alpha);
  const r = await trio.alpha.adm(['secondary', 'r0']);
  if (r.code !== 0) throw new Error(`secondary: ${r.stderr}`);
  const sup = {
    alpha: await startSupervisor(t, trio.alpha),
    beta: await startSupervisor(t, trio.beta),
    gamma: await startSupervisor(t, trio.gamma),
  };
  return { trio, dir, mnt, sup };
}

/**
 * alpha dies as a node does: its urbd and supervisor are killed -9 together with `extra`
 * PIDs (its services), and its attach goes (the filesystem is lazily unmounted, nbdfuse
 * killed), so nothing of alpha writes any more. Returns when it is done (the kill time).
 */
export async function killNode(
  f: FailoverTrio,
  node: DataNode,
  extra: number[] = [],
): Promise<number> {
  const at = Date.now();
  const pids = [f.trio.node(node).proc.pid, f.sup[node].proc.pid, ...extra];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await Promise.all([f.trio.node(node).proc.exited, f.sup[node].proc.exited]);
  await run('umount', ['-l', f.mnt[node]], { timeoutMs: 20000 });
  await failoverCli(f.trio.node(node), ['detach', 'r0'], 30000);
  return at;
}

/** A command service for a failover section: `service NAME { start "…"; stop "…"; monitor "…"; }`. */
export function serviceBlock(
  name: string,
  c: { start: string; stop: string; monitor: string },
  timeoutS = 120,
): string {
  return `service ${name} { start ${quote(c.start)}; stop ${quote(c.stop)}; monitor ${quote(c.monitor)}; timeout ${timeoutS}; }`;
}
