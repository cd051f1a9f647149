/**
 * urbd-failover processes for the nodes of a trio: started with the node's own resource
 * file and run directory, stopped (or killed) by PID, and asked for their state through
 * the CLI, as an admin would.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../../src/control/client.js';
import { isMountPoint } from '../../src/failover/attach-sys.js';
import { usersOf } from '../../src/failover/steps.js';
import { failoverSocketPath, type SupervisorStatus } from '../../src/failover/supervisor.js';
import type { ResourceSupervisorStatus } from '../../src/failover/resource-supervisor.js';
import type { NodeSpec } from './daemon.js';
import {
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
