/**
 * NBD benchmark: fio's nbd engine against `nbdkit file`, `urbd serve` and a one-node urbd
 * resource (daemon + urbdadm, Primary, no peer) on the same backing file, one server at a
 * time, and the ratios per workload. The "AL stress" workloads run against the resource only,
 * with a small and the default activity log, and report the daemon's AL counters.
 *
 *   node dist/scripts/bench/nbd.js [--file PATH] [--size-mib N] [--runtime S] [--repeat N]
 *     [--only LIST] [--cpu-prof DIR]
 *
 * --only takes a comma-separated list: server kinds (nbdkit, serve, resource) pick servers,
 * anything else picks the workloads whose name contains it (case-insensitive).
 * --cpu-prof DIR runs the urbd processes under `node --cpu-prof` (profiles land in DIR).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { measureAlCost, type Timing } from './al-cost.js';
import { type FioResult, fio, fmtRuns, median, prepareFiles, ratioTable } from './fio.js';
import { type AlStats, startUrbdResource } from './nbd-resource.js';
import { type RunningServer, startNbdkit, startUrbd } from './nbd-servers.js';

const run = promisify(execFile);

const SERVER_KINDS = ['nbdkit', 'serve', 'resource'] as const;
type ServerKind = (typeof SERVER_KINDS)[number];
const LABEL: Record<ServerKind, string> = {
  nbdkit: 'nbdkit',
  serve: 'urbd serve',
  resource: 'urbd resource',
};

interface Workload {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  unit: 'IOPS' | 'MiB/s';
  /** The resource's `al-extents` (default 1237). */
  alExtents?: number;
  /** Servers this workload means something for (default: all). */
  servers?: readonly ServerKind[];
}

const alStress = (iodepth: number, alExtents: number): Workload => ({
  name: `AL stress QD${iodepth} al-extents ${alExtents}`,
  rw: 'randwrite',
  bs: '4k',
  iodepth,
  unit: 'IOPS',
  alExtents,
  servers: ['resource'],
});

const WORKLOADS: Workload[] = [
  { name: '4K randread QD1', rw: 'randread', bs: '4k', iodepth: 1, unit: 'IOPS' },
  { name: '4K randread QD32', rw: 'randread', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '4K randwrite QD1', rw: 'randwrite', bs: '4k', iodepth: 1, unit: 'IOPS' },
  { name: '4K randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '1M seq read QD8', rw: 'read', bs: '1m', iodepth: 8, unit: 'MiB/s' },
  { name: '1M seq write QD8', rw: 'write', bs: '1m', iodepth: 8, unit: 'MiB/s' },
  // 4 KiB random writes over the whole file (256 extents of 4 MiB per GiB): with 7 slots
  // nearly every write activates a cold extent, with 1237 every extent stays hot.
  alStress(32, 7),
  alStress(32, 1237),
  alStress(1, 7),
  alStress(1, 1237),
];

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    'size-mib': { type: 'string', default: '1024' },
    runtime: { type: 'string', default: '5' },
    repeat: { type: 'string', default: '3' },
    only: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const sizeMiB = Number(values['size-mib']);
const runtime = Number(values.runtime);
const repeat = Number(values.repeat);
const file = values.file ?? path.join(os.tmpdir(), `urbd-bench-${sizeMiB}M.img`);
const nodeOptions = values['cpu-prof']
  ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof'])}`]
  : [];

const onlyTokens = (values.only ?? '')
  .split(',')
  .map((t) => t.trim().toLowerCase())
  .filter((t) => t.length > 0);
const isKind = (t: string): t is ServerKind => (SERVER_KINDS as readonly string[]).includes(t);
const kindTokens = onlyTokens.filter(isKind);
const workloadTokens = onlyTokens.filter((t) => !isKind(t));
const selectedKinds: readonly ServerKind[] = kindTokens.length > 0 ? kindTokens : SERVER_KINDS;

async function ensureFile(): Promise<void> {
  const want = sizeMiB * 1024 * 1024;
  if (fs.existsSync(file) && fs.statSync(file).size === want) return;
  console.error(`filling ${file} with ${sizeMiB} MiB of random data`);
  await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
}

interface RunResult extends FioResult {
  /** The resource's AL counters after the run (cumulative since its daemon started). */
  al?: AlStats;
}

type Server = RunningServer & { alStats?: () => Promise<AlStats> };

async function startServer(kind: ServerKind, w: Workload): Promise<Server> {
  switch (kind) {
    case 'nbdkit':
      return startNbdkit(file);
    case 'serve':
      return startUrbd(file, nodeOptions);
    case 'resource':
      return startUrbdResource(file, {
        ...(w.alExtents !== undefined ? { alExtents: w.alExtents } : {}),
        nodeOptions,
      });
  }
}

/** Servers running now, stopped on SIGINT/SIGTERM so an interrupted run leaves nothing behind. */
const running = new Set<Server>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    console.error(`${sig}: stopping ${running.size} server(s)`);
    void Promise.allSettled([...running].map((s) => s.stop())).then(() => process.exit(130));
  });
}

/** One fio run against a fresh server (leftover queues or caches stay out of the next run). */
async function once(kind: ServerKind, w: Workload): Promise<RunResult> {
  await prepareFiles([file]);
  const server = await startServer(kind, w);
  running.add(server);
  try {
    const r: RunResult = await fio(server.uri, w, { sizeMiB, runtime });
    if (server.alStats) r.al = await server.alStats();
    const al = r.al ? ` al ${JSON.stringify(r.al)}` : '';
    console.error(`  ${w.name} / ${LABEL[kind]}: ${Math.round(r.value)} ${w.unit}${al}`);
    return r;
  } finally {
    await server.stop();
    running.delete(server);
  }
}

/**
 * Runs each server `repeat` times, rotating which goes first (with two servers: alternating),
 * so none always follows another.
 */
async function measure(
  w: Workload,
  kinds: readonly ServerKind[],
): Promise<Map<ServerKind, RunResult[]>> {
  const res = new Map<ServerKind, RunResult[]>(kinds.map((k) => [k, []]));
  for (let i = 0; i < repeat; i++) {
    for (let j = 0; j < kinds.length; j++) {
      const kind = kinds[(i + j) % kinds.length]!;
      res.get(kind)!.push(await once(kind, w));
    }
  }
  return res;
}

const fmtUs = (t: Timing): string =>
  `${t.median.toFixed(0)} µs (min ${t.min.toFixed(0)}, max ${t.max.toFixed(0)}, ${t.calls} calls)`;

/** The run whose value is the median (the one whose AL counters the table shows). */
function medianRun(rs: RunResult[]): RunResult {
  return [...rs].sort((a, b) => a.value - b.value)[Math.floor(rs.length / 2)]!;
}

async function main(): Promise<void> {
  await ensureFile();
  const workloads = WORKLOADS.filter(
    (w) =>
      workloadTokens.length === 0 || workloadTokens.some((t) => w.name.toLowerCase().includes(t)),
  )
    .map((w) => ({
      w,
      kinds: selectedKinds.filter((k) => (w.servers ?? SERVER_KINDS).includes(k)),
    }))
    .filter(({ kinds }) => kinds.length > 0);
  const results: Array<{ w: Workload; res: Map<ServerKind, RunResult[]> }> = [];
  for (const { w, kinds } of workloads) {
    const res = await measure(w, kinds);
    results.push({ w, res });
    console.error(
      `${w.name}: ` + [...res].map(([k, rs]) => `${LABEL[k]} ${fmtRuns(rs)}`).join(', '),
    );
  }

  // Side by side: the workloads that run on every selected server.
  const plain = results.filter(({ w }) => w.servers === undefined);
  if (plain.length > 0) {
    const kinds = selectedKinds;
    const pairs: Array<[ServerKind, ServerKind]> = (
      [
        ['serve', 'nbdkit'],
        ['resource', 'nbdkit'],
        ['resource', 'serve'],
      ] as Array<[ServerKind, ServerKind]>
    ).filter(([a, b]) => kinds.includes(a) && kinds.includes(b));
    console.log(ratioTable(plain, kinds, pairs, (k) => LABEL[k], repeat));
    console.log('');
  }

  // The activity-log stress workloads, with the daemon's counters from the median run.
  const stress = results.filter(({ w }) => w.alExtents !== undefined);
  if (stress.length > 0) {
    const header = [
      'workload (4K randwrite, whole file)',
      `IOPS (${repeat} runs)`,
      'median IOPS',
      'AL hits / misses / transactions / evictions / waits (median run)',
      'transactions/s',
      'writes per transaction',
    ];
    console.log(`| ${header.join(' | ')} |`);
    console.log(`|${header.map(() => '---').join('|')}|`);
    for (const { w, res } of stress) {
      const rs = res.get('resource')!;
      const m = medianRun(rs);
      const al = m.al!;
      const row = [
        w.name,
        fmtRuns(rs),
        Math.round(m.value).toString(),
        [al.hits, al.misses, al.transactions, al.evictions, al.waits].join(' / '),
        Math.round(al.transactions / (m.runtimeMs / 1000)).toString(),
        al.transactions > 0 ? (m.ios / al.transactions).toFixed(1) : '–',
      ];
      console.log(`| ${row.join(' | ')} |`);
    }
    // What the small log costs per transaction, as seen from the client.
    for (const { w, res } of stress) {
      if (w.alExtents === 1237) continue;
      const hot = stress
        .find((s) => s.w.alExtents === 1237 && s.w.iodepth === w.iodepth)
        ?.res.get('resource');
      if (!hot) continue;
      const cold = medianRun(res.get('resource')!);
      const extraPerWrite = 1 / cold.value - 1 / median(hot.map((r) => r.value));
      const perTx = (extraPerWrite * cold.ios) / cold.al!.transactions;
      console.log(
        `\nQD${w.iodepth}: al-extents ${w.alExtents} vs 1237 adds ${(extraPerWrite * 1e6).toFixed(1)} µs per write, ` +
          `${(perTx * 1e6).toFixed(0)} µs per AL transaction (client-side view)`,
      );
    }
    const cost = measureAlCost(file);
    console.log(
      `\nAL transaction cost on the metadata's file system (MetaStore.commitAl, direct):\n` +
        `  1 slot + 1 bitmap page: ${fmtUs(cost.commit1)}\n` +
        `  7 slots + their bitmap pages: ${fmtUs(cost.commit7)}\n` +
        `  for scale, 4 KiB pwrite + fdatasync: ${fmtUs(cost.fdatasync4k)}`,
    );
  }
  console.log(
    `\nfile: ${file} (${sizeMiB} MiB), fio ${runtime}s per run, ${os.cpus().length} cores, ` +
      `load average at the end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
}

await main();
