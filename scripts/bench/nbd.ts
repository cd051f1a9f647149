/**
 * NBD frontend benchmark: fio's nbd engine against `urbd serve` and `nbdkit file` on the same
 * backing file, one server at a time, and the urbd/nbdkit ratio per workload.
 *
 *   node dist/scripts/bench/nbd.js [--file PATH] [--size-mib N] [--runtime S] [--repeat N]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { type RunningServer, startNbdkit, startUrbd } from './nbd-servers.js';

const run = promisify(execFile);

interface Workload {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  unit: 'IOPS' | 'MiB/s';
}

const WORKLOADS: Workload[] = [
  { name: '4K randread QD1', rw: 'randread', bs: '4k', iodepth: 1, unit: 'IOPS' },
  { name: '4K randread QD32', rw: 'randread', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '4K randwrite QD1', rw: 'randwrite', bs: '4k', iodepth: 1, unit: 'IOPS' },
  { name: '4K randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '1M seq read QD8', rw: 'read', bs: '1m', iodepth: 8, unit: 'MiB/s' },
  { name: '1M seq write QD8', rw: 'write', bs: '1m', iodepth: 8, unit: 'MiB/s' },
];

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    'size-mib': { type: 'string', default: '1024' },
    runtime: { type: 'string', default: '5' },
    repeat: { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const sizeMiB = Number(values['size-mib']);
const runtime = Number(values.runtime);
const repeat = Number(values.repeat);
const file = values.file ?? path.join(os.tmpdir(), `urbd-bench-${sizeMiB}M.img`);

async function ensureFile(): Promise<void> {
  const want = sizeMiB * 1024 * 1024;
  if (fs.existsSync(file) && fs.statSync(file).size === want) return;
  console.error(`filling ${file} with ${sizeMiB} MiB of random data`);
  await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
}

async function fio(uri: string, w: Workload): Promise<number> {
  const { stdout } = await run(
    'fio',
    [
      '--name=bench',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${w.rw}`,
      `--bs=${w.bs}`,
      `--iodepth=${w.iodepth}`,
      `--size=${sizeMiB}M`,
      `--runtime=${runtime}`,
      '--time_based',
      '--output-format=json',
    ],
    { maxBuffer: 16 * 1024 * 1024, timeout: (runtime + 60) * 1000 },
  );
  // The nbd engine prints a status line before the JSON document.
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  const side = w.rw.includes('read') ? job.read : job.write;
  return w.unit === 'IOPS' ? side.iops : side.bw / 1024;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One fio run against a fresh server (leftover queues or caches stay out of the next run). */
async function once(
  startServer: (f: string) => Promise<RunningServer>,
  w: Workload,
): Promise<number> {
  // Dirty pages from the previous run would be written back during this one.
  await run('sync', []);
  const server = await startServer(file);
  try {
    return await fio(server.uri, w);
  } finally {
    await server.stop();
  }
}

/** Runs both servers `repeat` times, alternating which goes first so neither always follows the other. */
async function measure(w: Workload): Promise<{ nbdkit: number[]; urbd: number[] }> {
  const res = { nbdkit: [] as number[], urbd: [] as number[] };
  for (let i = 0; i < repeat; i++) {
    if (i % 2 === 0) {
      res.nbdkit.push(await once(startNbdkit, w));
      res.urbd.push(await once(startUrbd, w));
    } else {
      res.urbd.push(await once(startUrbd, w));
      res.nbdkit.push(await once(startNbdkit, w));
    }
  }
  return res;
}

async function main(): Promise<void> {
  await ensureFile();
  const workloads = values.only
    ? WORKLOADS.filter((w) => w.name.includes(values.only!))
    : WORKLOADS;
  const rows: string[][] = [];
  for (const w of workloads) {
    const { nbdkit, urbd } = await measure(w);
    const ratio = median(urbd) / median(nbdkit);
    const fmt = (xs: number[]): string => xs.map((x) => Math.round(x)).join(' / ');
    rows.push([w.name, w.unit, fmt(nbdkit), fmt(urbd), ratio.toFixed(2)]);
    console.error(`${w.name}: nbdkit ${fmt(nbdkit)}, urbd ${fmt(urbd)}, ratio ${ratio.toFixed(2)}`);
  }
  const header = [
    'workload',
    'unit',
    `nbdkit (${repeat} runs)`,
    `urbd (${repeat} runs)`,
    'urbd/nbdkit (medians)',
  ];
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log(
    `\nfile: ${file} (${sizeMiB} MiB), fio ${runtime}s per run, ${os.cpus().length} cores`,
  );
}

await main();
