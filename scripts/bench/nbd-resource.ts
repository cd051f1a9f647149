/**
 * The benchmark's third server kind: a real urbd resource, the way an admin brings one up
 * (scripts/demo): a resource file, `urbdadm create-md`, the daemon, `urbdadm up`,
 * `urbdadm primary --force`. One node, no peer, so every write goes through the activity log
 * and marks the dirty bitmap. The metadata, config and run directory live in a temp dir
 * beside the backing file and are removed by stop(), after the daemon (stopped by PID with
 * SIGTERM, which persists the bitmap and marks the metadata clean) has exited.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { AlStats } from '../../src/meta/activity-log.js';
import { freePort, type RunningServer, URBD_CLI, waitForPort } from './nbd-servers.js';

const run = promisify(execFile);

export type { AlStats };

/** The compiled urbdadm CLI, from dist/scripts/bench. */
export const URBDADM_CLI = path.resolve(path.dirname(URBD_CLI), 'urbdadm.js');

const NODE = 'benchnode';
const RES = 'r0';

export interface ResourceOptions {
  /** `disk { al-extents N; }`; DRBD's and urbd's default is 1237. */
  alExtents?: number;
  /** Extra node options for the daemon, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeOptions?: string[];
}

export interface RunningResource extends RunningServer {
  /** The daemon's --run-dir (its export's Unix socket is RUNDIR/r0.nbd). */
  runDir: string;
  /** device.alStats from `urbdadm status --json` (cumulative since the daemon started). */
  alStats(): Promise<AlStats>;
}

export async function startUrbdResource(
  file: string,
  opts: ResourceOptions = {},
): Promise<RunningResource> {
  const dir = fs.mkdtempSync(path.join(path.dirname(path.resolve(file)), 'urbd-bench-res.'));
  const runDir = path.join(dir, 'run');
  const conf = path.join(dir, 'urbd.conf');
  const [port, peerPort] = [await freePort(), await freePort()];
  fs.writeFileSync(
    conf,
    [
      `resource ${RES} {`,
      '  protocol C;',
      `  disk { al-extents ${opts.alExtents ?? 1237}; }`,
      `  on ${NODE} {`,
      '    node-id 0;',
      `    address 127.0.0.1:${peerPort};`,
      '    device minor 0;',
      `    disk ${path.resolve(file)};`,
      `    meta-disk ${path.join(dir, `${RES}.urbd-md`)};`,
      `    nbd-listen 127.0.0.1:${port};`,
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const global = ['--node', NODE, '--config', conf, '--run-dir', runDir];
  const adm = async (...args: string[]): Promise<string> => {
    const { stdout } = await run(process.execPath, [URBDADM_CLI, ...global, ...args], {
      timeout: 30_000,
      maxBuffer: 4 * 1024 * 1024,
    });
    return stdout;
  };

  let proc: ReturnType<typeof spawn> | undefined;
  const stop = async (): Promise<void> => {
    try {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = once(proc, 'exit');
        process.kill(proc.pid!, 'SIGTERM');
        const timer = setTimeout(() => proc!.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  try {
    await adm('create-md', RES);
    // The daemon logs JSON lines to stdout; only its stderr (crashes) reaches ours.
    proc = spawn(process.execPath, [...(opts.nodeOptions ?? []), URBD_CLI, ...global], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const sock = path.join(runDir, 'urbd.sock');
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(sock)) {
      if (proc.exitCode !== null) throw new Error(`urbd exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`urbd made no control socket within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await adm('up', RES);
    // Fresh metadata is Inconsistent: the first promotion is forced, as with DRBD.
    await adm('primary', '--force', RES);
    await waitForPort(port, proc, 10_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const daemon = proc;
  return {
    name: 'resource',
    uri: `nbd://127.0.0.1:${port}/${RES}`,
    proc: daemon,
    runDir,
    stop,
    async alStats() {
      const list = JSON.parse(await adm('status', '--json', RES)) as Array<{
        device: { alStats?: AlStats };
      }>;
      const s = list[0]?.device.alStats;
      if (!s) throw new Error(`urbdadm status --json ${RES} has no device.alStats`);
      return s;
    },
  };
}
