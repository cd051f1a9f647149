/**
 * fio's nbd engine against an NBD URI (nbd+unix:///r0?socket=… from exportUri, or nbd://…),
 * run to completion with a timeout. fio runs its jobs as threads (`--thread`), so killing
 * its one PID (on timeout, or in teardown) stops every job.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { spawnTracked, type Teardown, tmpDir, within } from './server.js';

export interface FioOptions {
  /** Time-based run of this many seconds; without it fio writes `size` once. */
  seconds?: number;
  /** fio's --rw (default randwrite). */
  rw?: string;
  /** fio's --bs, e.g. '4k' (default 4k). */
  bs?: string;
  iodepth?: number;
  /** Bytes, or a fio size such as '16M' (default 16M). */
  size?: number | string;
  /** More fio arguments. */
  extra?: string[];
  /** Killed after this long (default: seconds + 30 s, or 60 s). */
  timeoutMs?: number;
}

export interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; iops: number };
  write: { io_bytes: number; iops: number };
}

export interface FioResult {
  /** fio's exit code (null if it was killed). */
  code: number | null;
  timedOut: boolean;
  /** The jobs of fio's JSON report; empty when there is none. */
  jobs: FioJob[];
  /** The tail of fio's stdout and stderr. */
  output: string;
}

export async function runFio(t: Teardown, uri: string, o: FioOptions = {}): Promise<FioResult> {
  const out = path.join(tmpDir(t, 'urbd-fio-'), 'fio.json');
  const args = [
    '--name=fio',
    '--thread',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${o.rw ?? 'randwrite'}`,
    `--bs=${o.bs ?? '4k'}`,
    `--iodepth=${o.iodepth ?? 16}`,
    `--size=${o.size ?? '16M'}`,
    '--randrepeat=0',
    '--verify_state_save=0',
    ...(o.seconds !== undefined ? ['--time_based', `--runtime=${o.seconds}`] : []),
    '--output-format=json',
    `--output=${out}`,
    ...(o.extra ?? []),
  ];
  const timeoutMs = o.timeoutMs ?? (o.seconds !== undefined ? o.seconds * 1000 + 30000 : 60000);
  const proc = spawnTracked('fio', args, { t, cwd: path.dirname(out) });
  const r = await within(proc.exited, timeoutMs);
  const timedOut = r === 'timeout';
  const code = timedOut ? await proc.stop(2000) : r;
  let jobs: FioJob[] = [];
  try {
    const text = await readFile(out, 'utf8');
    jobs = (JSON.parse(text.slice(text.indexOf('{'))) as { jobs: FioJob[] }).jobs;
  } catch {
    // no report (fio failed before writing it, or was killed)
  }
  return { code: timedOut ? null : code, timedOut, jobs, output: proc.output() };
}
