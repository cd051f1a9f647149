/**
 * The benchmarks' fio runner (the nbd engine against one NBD URI) and the medians, run lists
 * and ratio tables the results are printed as. Shared by nbd.ts and pair.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface FioWorkload {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  unit: 'IOPS' | 'MiB/s';
  /** fio's --fsync=N: an fsync (NBD FLUSH) after every N writes. */
  fsync?: number;
}

export interface FioResult {
  value: number;
  ios: number;
  runtimeMs: number;
  /** CPU seconds fio itself used (user + system), from its own accounting. */
  clientCpuS: number;
}

export interface FioOptions {
  /** The region fio works over (`--size`), MiB. */
  sizeMiB: number;
  /** Seconds; the job is time-based. */
  runtime: number;
  /** Run fio on this CPU only (taskset), as `--pin` does in the pair bench. */
  cpu?: number;
}

export async function fio(uri: string, w: FioWorkload, o: FioOptions): Promise<FioResult> {
  const pin = o.cpu === undefined ? [] : ['-c', String(o.cpu), 'fio'];
  const { stdout } = await run(
    pin.length > 0 ? 'taskset' : 'fio',
    [
      ...pin,
      '--name=bench',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${w.rw}`,
      `--bs=${w.bs}`,
      `--iodepth=${w.iodepth}`,
      ...(w.fsync !== undefined ? [`--fsync=${w.fsync}`] : []),
      `--size=${o.sizeMiB}M`,
      `--runtime=${o.runtime}`,
      '--time_based',
      '--output-format=json',
    ],
    { maxBuffer: 16 * 1024 * 1024, timeout: (o.runtime + 60) * 1000 },
  );
  // The nbd engine prints a status line before the JSON document.
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  const side = w.rw.includes('read') ? job.read : job.write;
  return {
    value: w.unit === 'IOPS' ? side.iops : side.bw / 1024,
    ios: side.total_ios,
    runtimeMs: side.runtime,
    clientCpuS: ((job.usr_cpu + job.sys_cpu) / 100) * (job.elapsed ?? o.runtime),
  };
}

/**
 * What every fio run starts from, in both benchmarks: nothing dirty, and each backing file
 * wholly in the page cache in the same shape whatever wrote it.
 *
 * - `sync`: dirty pages of the previous run would be written back during this one.
 * - Drop the file's cached pages (`dd iflag=nocache count=0`, a POSIX_FADV_DONTNEED of the
 *   whole file), then read it back with readahead off (fio's `fadvise_hint=random`, a
 *   POSIX_FADV_RANDOM), which caches it in 4 KiB folios. The shape of the cache decides 4 KiB
 *   random-write speed on this kernel (6.18, ext4 with large folios): a file cached by
 *   readahead or 1 MiB writes sits in large folios, and every 4 KiB write then dirties (and
 *   writeback writes) a whole large folio. nbdkit's 4K randwrite QD32 on the same file, back
 *   to back: 16.5k IOPS after a `dd bs=1M` read, 46–51k after this one; a `cp` copy (4 KiB
 *   folios) had read 24–26k against 10–16k for the `dd`-written original, which is what
 *   depressed the pair bench's nbdkit baseline before. This also brings back what the host
 *   paged out (this VM runs DAMON proactive reclaim on cache untouched for about a minute).
 */
export async function prepareFiles(files: readonly string[]): Promise<void> {
  await run('sync', []);
  for (const f of files) {
    await run('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    await run('fio', [
      '--name=cache',
      `--filename=${f}`,
      '--rw=read',
      '--bs=1m',
      '--ioengine=psync',
      '--fadvise_hint=random',
      '--output-format=terse',
    ]);
  }
}

/** The upper median (the middle run for an odd count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Each run's value, rounded, as "a / b / c". */
export const fmtRuns = (rs: Array<{ value: number }>): string =>
  rs.map((r) => Math.round(r.value)).join(' / ');

/**
 * A Markdown table: one row per workload with every server's runs, then the ratio of the
 * medians for each [a, b] pair (a/b). `label` names a server kind in the column heads.
 */
/**
 * CPU seconds (user + system, every thread) a process has used so far, from /proc/PID/stat;
 * kernel work done on its behalf (its socket and page-cache copies) counts, softirq work that
 * happens to land on it does too.
 */
export function processCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}
/** USER_HZ: the unit of /proc/PID/stat's times, 100 on every Linux architecture this runs on. */
const CLOCK_TICKS = 100;

export function ratioTable<K extends string>(
  rows: Array<{ w: { name: string; unit: string }; res: Map<K, Array<{ value: number }>> }>,
  kinds: readonly K[],
  pairs: ReadonlyArray<readonly [K, K]>,
  label: (k: K) => string,
  repeat: number,
): string {
  const header = [
    'workload',
    'unit',
    ...kinds.map((k) => `${label(k)} (${repeat} runs)`),
    ...pairs.map(([a, b]) => `${a}/${b}`),
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const { w, res } of rows) {
    const med = (k: K): number => median(res.get(k)!.map((r) => r.value));
    const row = [
      w.name,
      w.unit,
      ...kinds.map((k) => fmtRuns(res.get(k)!)),
      ...pairs.map(([a, b]) => (med(a) / med(b)).toFixed(2)),
    ];
    lines.push(`| ${row.join(' | ')} |`);
  }
  return lines.join('\n');
}
