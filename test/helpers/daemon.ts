/**
 * Drive real urbd daemons and the urbdadm CLI, one node per run directory. Daemons are
 * tracked and killed by PID like every other child (see server.ts).
 */
import { writeFileSync } from 'node:fs';
import type { Test } from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  followLogs,
  type LogLine,
  run,
  type RunResult,
  showRun,
  spawnTracked,
  type Teardown,
  type Tracked,
  URBD_CLI,
} from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const URBDADM_CLI = path.resolve(here, '../../src/cli/urbdadm.js');

export interface NodeSpec {
  node: string;
  config: string;
  runDir: string;
}

/** urbdadm with this node's --node/--config/--run-dir. */
export function adm(
  spec: NodeSpec,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return run(
    process.execPath,
    [URBDADM_CLI, '--node', spec.node, '--config', spec.config, '--run-dir', spec.runDir, ...args],
    { timeoutMs: opts.timeoutMs ?? 60000, ...(opts.env ? { env: opts.env } : {}) },
  );
}

export interface DaemonHandle extends NodeSpec {
  proc: Tracked;
  logs: LogLine[];
  waitForLog: (pred: (l: LogLine) => boolean, timeoutMs?: number) => Promise<LogLine>;
  adm(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
}

/** Starts `urbd --node … --config … --run-dir …` and waits for its "urbd ready" line. */
export async function startDaemon(
  spec: NodeSpec,
  opts: { t?: Teardown; env?: NodeJS.ProcessEnv; readyTimeoutMs?: number } = {},
): Promise<DaemonHandle> {
  const proc = spawnTracked(
    process.execPath,
    [URBD_CLI, '--node', spec.node, '--config', spec.config, '--run-dir', spec.runDir],
    { ...(opts.t ? { t: opts.t } : {}), ...(opts.env ? { env: opts.env } : {}) },
  );
  const { logs, waitForLog } = followLogs(proc);
  await waitForLog((l) => l.json?.msg === 'urbd ready', opts.readyTimeoutMs ?? 15000);
  return {
    ...spec,
    proc,
    logs,
    waitForLog,
    adm: (args, o = {}) => adm(spec, args, o),
    stop: (ms) => proc.stop(ms),
    kill9: async () => {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await proc.exited;
    },
  };
}

/** A one-node resource file: `name` on `node`, file-backed disk and metadata in `dir`. */
export function oneNodeConfig(
  dir: string,
  opts: {
    resource?: string;
    node: string;
    disk: string;
    meta?: string;
    extra?: string;
    diskSection?: string;
  },
): string {
  const res = opts.resource ?? 'r0';
  const file = path.join(dir, 'urbd.conf');
  writeFileSync(
    file,
    `resource ${res} {
  ${opts.extra ?? ''}
  disk { ${opts.diskSection ?? ''} }
  on ${opts.node} {
    node-id 0;
    address 127.0.0.1:7789;
    device minor 0;
    disk ${opts.disk};
    meta-disk ${opts.meta ?? 'internal'};
  }
}
`,
  );
  return file;
}

/** The export's nbd+unix URI for a resource of this node. */
export function exportUri(spec: NodeSpec, resource = 'r0'): string {
  return `nbd+unix:///${resource}?socket=${path.join(spec.runDir, `${resource}.nbd`)}`;
}

/**
 * The common start of a one-node test: create-md, the daemon, up, primary --force, each
 * asserted. Returns the running daemon and the export's URI.
 */
export async function startPrimary(
  t: Test,
  spec: NodeSpec,
  resource = 'r0',
): Promise<{ d: DaemonHandle; uri: string }> {
  const md = await adm(spec, ['create-md', resource]);
  t.equal(md.code, 0, 'create-md', { output: md.stderr });
  const d = await startDaemon(spec, { t });
  const up = await d.adm(['up', resource]);
  t.equal(up.code, 0, 'up', { output: up.stderr });
  const pri = await d.adm(['primary', '--force', resource]);
  t.equal(pri.code, 0, 'primary --force', { output: pri.stderr });
  return { d, uri: exportUri(spec, resource) };
}

/** A failed verb: the exit code, nothing on stdout, one line on stderr matching `re`. */
export function failsWith(t: Test, r: RunResult, code: number, re: RegExp, what: string): void {
  t.equal(r.code, code, `${what}: exit ${code}`, { output: showRun(r) });
  t.match(r.stderr, re, `${what}: says why`);
  t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
}

/** A verb that worked: exit 0, nothing on stderr. */
export function ok(t: Test, r: RunResult, what: string): void {
  t.equal(r.code, 0, what, { output: showRun(r) });
  t.equal(r.stderr, '', `${what}: nothing on stderr`);
}
