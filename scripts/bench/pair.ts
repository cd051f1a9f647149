/**
 * Replication benchmark: a replicated urbd pair side by side with `nbdkit file` and a
 * one-node urbd resource, against the machine's own limits (loopback TCP, a plain file copy),
 * then resync times and a database's commit rate.
 *
 *   node dist/scripts/bench/pair.js [--size-mib N] [--runtime S] [--repeat N] [--dir PATH]
 *     [--only LIST] [--cpu-prof DIR] [--keep] [--net 'STATEMENTS'] [--disk 'STATEMENTS']
 *
 * 0. Physical references: one iperf3 stream over loopback (`iperf3 -s -1` started and
 *    stopped by PID, `iperf3 -c -t 3 -J`), and a `dd bs=1M conv=fsync` copy of alpha's file
 *    into a fresh sparse file (and the same copy without the fsync), `repeat` times each,
 *    rotating. Measured when part 2 runs or part 1 runs the pairs' 1M writes; the ratios at
 *    the end use their medians.
 * 1. Throughput: fio's nbd engine against nbdkit, one urbd node alone (no peer, Primary), a
 *    protocol C pair and a protocol A pair (served by alpha; beta replicates), each on its
 *    own backing file(s) filled with the same random data, one server at a time, the first
 *    one rotating from repeat to repeat. Before every run the same steps as the NBD bench
 *    (fio.ts prepareFiles): `sync`, then each of the server's files dropped from the page
 *    cache and read back whole, so every file is cached in the same shape however it was
 *    written (dd, cp, the last run's writes).
 * 2. Full initial sync: `primary --force` on a fresh pair (alpha: N MiB of data, beta: a fresh
 *    sparse file), timed until both nodes are Connected/Established/UpToDate (the SyncTarget
 *    flushes its disk before it saves cleared bits, every 2 s and at the end, so the fair
 *    copy to compare with is the one with conv=fsync). Then the bitmap resync: `urbdadm down`
 *    on beta, 1 % of the disk written through NBD on alpha (random 4–64 KiB spots),
 *    `urbdadm up` on beta, timed until in sync again.
 * 3. MariaDB: ext4 on the export attached with nbdfuse + a loop device with direct I/O (as
 *    urbd-failover attaches it), mkfs once per backing target, mariadbd on it through
 *    scripts/services/mariadb (innodb_flush_log_at_trx_commit=1), then single-row INSERTs
 *    with autocommit for --runtime seconds from 1 client and from 8, for nbdkit, the node
 *    alone and the protocol C pair, the target rotating from repeat to repeat; with what
 *    reached the device per commit (writes, KiB, flushes: the loop device's counters).
 *
 * --only takes a comma-separated list: server kinds (nbdkit, node, pairC, pairA) and workload
 * fragments pick throughput runs (kinds also pick MariaDB targets); the parts `throughput`,
 * `resync` and `mariadb` pick parts (no part named: all of them, or only the throughput when
 * kinds or workloads are named). --cpu-prof DIR runs the urbd daemons under
 * `node --cpu-prof`. Everything lives in a temp dir under --dir (default: the OS temp dir),
 * removed at the end unless --keep. --net and --disk add statements to the pairs' `net { }`
 * and `disk { }` sections (defaults otherwise, but for `connect-int 1`), e.g.
 * --disk 'c-max-rate 4G; c-fill-target 64M;'. --pin puts fio and the server it talks to on CPU 0
 * and a pair's secondary on CPU 1. After the throughput table comes the CPU each process
 * used per I/O (/proc/PID/stat for the servers, fio's own accounting for the client).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { exportSocketPath } from '../../src/resource/paths.js';
import {
  type FioResult,
  type FioWorkload,
  fio,
  fmtRuns,
  median,
  prepareFiles,
  processCpuSeconds,
  ratioTable,
} from './fio.js';
import { iperf3MiBs } from './iperf3.js';
import { type MountedDb, startMariaDbOn } from './mariadb-commits.js';
import { startUrbdResource } from './nbd-resource.js';
import { type RunningServer, startNbdkit, startNbdkitUnix } from './nbd-servers.js';
import { inSync, RES, type RunningPair, type StateWatch, startUrbdPair } from './urbd-pair.js';

const run = promisify(execFile);

const KINDS = ['nbdkit', 'node', 'pairC', 'pairA'] as const;
type Kind = (typeof KINDS)[number];
const LABEL: Record<Kind, string> = {
  nbdkit: 'nbdkit',
  node: 'urbd node alone',
  pairC: 'pair, protocol C',
  pairA: 'pair, protocol A',
};

const WORKLOADS: FioWorkload[] = [
  { name: '4K randwrite QD32', rw: 'randwrite', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '1M seq write QD8', rw: 'write', bs: '1m', iodepth: 8, unit: 'MiB/s' },
  { name: '4K randread QD32', rw: 'randread', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '4K randwrite QD1', rw: 'randwrite', bs: '4k', iodepth: 1, unit: 'IOPS' },
  // Every write followed by a flush (fio --fsync=1 sends NBD FLUSH): what a database's commit
  // costs.
  {
    name: '4K write+fsync QD1',
    rw: 'randwrite',
    bs: '4k',
    iodepth: 1,
    fsync: 1,
    unit: 'IOPS',
  },
];
const SEQ_WRITE = '1M seq write QD8';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    runtime: { type: 'string', default: '5' },
    repeat: { type: 'string', default: '3' },
    dir: { type: 'string', default: os.tmpdir() },
    only: { type: 'string' },
    'cpu-prof': { type: 'string' },
    keep: { type: 'boolean', default: false },
    net: { type: 'string', default: '' },
    disk: { type: 'string', default: '' },
    pin: { type: 'boolean', default: false },
  },
});
/**
 * --pin: the client and the server it talks to (nbdkit, the node alone, the pair's primary)
 * on CPU 0, the pair's secondary on CPU 1. The nearest this 2-core machine gets to two
 * hosts: without it the two nodes of a pair share both cores with fio, where nbdkit has them
 * to itself and fio.
 */
const pin = values.pin;
const CLIENT_CPU = 0;
const PEER_CPU = 1;

/** Every thread of a running process on one CPU (`taskset -a -p`). */
async function pinProcess(pid: number | undefined, cpu: number): Promise<void> {
  if (pid === undefined) throw new Error('--pin: a server process has no PID');
  await run('taskset', ['-a', '-p', '-c', String(cpu), String(pid)]);
}
const sizeMiB = Number(values['size-mib']);
const runtime = Number(values.runtime);
const repeat = Number(values.repeat);
const nodeOptions = values['cpu-prof']
  ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof'])}`]
  : [];

const tokens = (values.only ?? '')
  .split(',')
  .map((t) => t.trim())
  .filter((t) => t.length > 0);
const isKind = (t: string): t is Kind => (KINDS as readonly string[]).includes(t);
const kindTokens = tokens.filter(isKind);
const PARTS = ['throughput', 'resync', 'mariadb'];
const partTokens = tokens.filter((t) => PARTS.includes(t));
const workloadTokens = tokens
  .filter((t) => !isKind(t) && !PARTS.includes(t))
  .map((t) => t.toLowerCase());
const kinds: readonly Kind[] = kindTokens.length > 0 ? kindTokens : KINDS;
const doThroughput =
  tokens.length === 0 || partTokens.includes('throughput') || partTokens.length === 0;
const doResync = tokens.length === 0 || partTokens.includes('resync');
const doMariadb = tokens.length === 0 || partTokens.includes('mariadb');
/** MariaDB runs on these (the protocol A pair would add little: a commit waits for a flush). */
const DB_KINDS: readonly Kind[] = (['nbdkit', 'node', 'pairC'] as const).filter((k) =>
  kinds.includes(k),
);

const dir = fs.mkdtempSync(path.join(path.resolve(values.dir), 'urbd-bench-pair.'));
const file = (name: string): string => path.join(dir, name);
/** Backing files: one per server kind, the pairs sharing alpha's and beta's. */
const DISKS: Record<Kind, string[]> = {
  nbdkit: [file('nbdkit.img')],
  node: [file('node.img')],
  pairC: [file('alpha.img'), file('beta.img')],
  pairA: [file('alpha.img'), file('beta.img')],
};

/** Servers and pairs running now, stopped on SIGINT/SIGTERM. */
const running = new Set<RunningServer>();
/** The MariaDB running now (mariadbd, its mount, the nbdfuse attach), stopped first. */
let runningDb: MountedDb | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    console.error(`${sig}: stopping ${running.size} server(s)`);
    void Promise.allSettled([runningDb?.stop()])
      .then(() => Promise.allSettled([...running].map((s) => s.stop())))
      .then(() => {
        if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
        process.exit(130);
      });
  });
}

async function withServer<T>(s: RunningServer, fn: (s: RunningServer) => Promise<T>): Promise<T> {
  running.add(s);
  try {
    return await fn(s);
  } finally {
    await s.stop();
    running.delete(s);
  }
}

async function startKind(kind: Kind): Promise<RunningServer> {
  const [disk, peerDisk] = DISKS[kind];
  switch (kind) {
    case 'nbdkit':
      return startNbdkit(disk!);
    case 'node':
      return startUrbdResource(disk!, { nodeOptions });
    case 'pairC':
    case 'pairA': {
      const d = fs.mkdtempSync(file(`${kind}.`));
      const pair = await startUrbdPair({
        dir: d,
        alphaDisk: disk!,
        betaDisk: peerDisk!,
        protocol: kind === 'pairC' ? 'C' : 'A',
        ready: true,
        net: values.net,
        disk: values.disk,
        nodeOptions,
      });
      const stop = pair.stop;
      return {
        ...pair,
        stop: async () => {
          await stop();
          fs.rmSync(d, { recursive: true, force: true });
        },
      };
    }
  }
}

/** A throughput run, with the CPU seconds each server process used during it. */
type Run = FioResult & { serverCpuS: number[] };

async function once(kind: Kind, w: FioWorkload): Promise<Run> {
  await prepareFiles(DISKS[kind]);
  return withServer(await startKind(kind), async (s) => {
    if (pin) {
      const daemons = (s as Partial<RunningPair>).daemons;
      await pinProcess(daemons ? daemons.alpha.pid : s.proc.pid, CLIENT_CPU);
      if (daemons) await pinProcess(daemons.beta.pid, PEER_CPU);
    }
    const daemons = (s as Partial<RunningPair>).daemons;
    const pids = daemons ? [daemons.alpha.pid!, daemons.beta.pid!] : [s.proc.pid!];
    const before = pids.map(processCpuSeconds);
    const r = await fio(s.uri, w, { sizeMiB, runtime, cpu: pin ? CLIENT_CPU : undefined });
    const serverCpuS = pids.map((p, i) => processCpuSeconds(p) - before[i]!);
    console.error(`  ${w.name} / ${LABEL[kind]}: ${Math.round(r.value)} ${w.unit}`);
    return { ...r, serverCpuS };
  });
}

/**
 * CPU per I/O, medians over the runs: fio's own, then each server process's (the pair's
 * primary + secondary). With every core busy, this is what bounds the I/O rate.
 */
function cpuTable(rows: Array<{ w: FioWorkload; res: Map<Kind, Run[]> }>): string {
  const lines = [
    '\nCPU per I/O (µs, medians; client = fio, then the server processes)\n',
    `| workload | ${kinds.map((k) => LABEL[k]).join(' | ')} |`,
    `|---|${kinds.map(() => '---').join('|')}|`,
  ];
  for (const { w, res } of rows) {
    const cells = kinds.map((k) => {
      const rs = res.get(k)!;
      const med = (f: (r: Run) => number): number => median(rs.map(f));
      const client = med((r) => (r.clientCpuS / r.ios) * 1e6);
      const servers = rs[0]!.serverCpuS.map((_, i) => med((r) => (r.serverCpuS[i]! / r.ios) * 1e6));
      const total = client + servers.reduce((a, b) => a + b, 0);
      return `${total.toFixed(1)} = ${client.toFixed(1)} + ${servers.map((v) => v.toFixed(1)).join(' + ')}`;
    });
    lines.push(`| ${w.name} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Medians for the ratios at the end. */
const seqWrite: Partial<Record<'pairC' | 'pairA', number>> = {};
interface Refs {
  /** iperf3 MiB/s per run. */
  iperf: number[];
  /** dd copy times, ms. */
  copy: number[];
  fsyncCopy: number[];
}
let refs: Refs | undefined;
const syncs: SyncRun[] = [];

async function throughput(): Promise<void> {
  const workloads = WORKLOADS.filter(
    (w) =>
      workloadTokens.length === 0 || workloadTokens.some((t) => w.name.toLowerCase().includes(t)),
  );
  const rows: Array<{ w: FioWorkload; res: Map<Kind, Run[]> }> = [];
  for (const w of workloads) {
    const res = new Map<Kind, Run[]>(kinds.map((k) => [k, []]));
    for (let i = 0; i < repeat; i++) {
      for (let j = 0; j < kinds.length; j++) {
        const kind = kinds[(i + j) % kinds.length]!;
        res.get(kind)!.push(await once(kind, w));
      }
    }
    rows.push({ w, res });
    console.error(
      `${w.name}: ` + [...res].map(([k, rs]) => `${LABEL[k]} ${fmtRuns(rs)}`).join(', '),
    );
  }
  const pairs = (
    [
      ['node', 'nbdkit'],
      ['pairC', 'nbdkit'],
      ['pairA', 'nbdkit'],
      ['pairC', 'node'],
    ] as const
  ).filter(([a, b]) => kinds.includes(a) && kinds.includes(b));
  console.log(ratioTable(rows, kinds, pairs, (k) => LABEL[k], repeat));
  console.log(cpuTable(rows));
  const seq = rows.find((r) => r.w.name === SEQ_WRITE);
  for (const k of ['pairC', 'pairA'] as const) {
    const rs = seq?.res.get(k);
    if (rs) seqWrite[k] = median(rs.map((r) => r.value));
  }
  if (kinds.includes('pairC') || kinds.includes('pairA')) {
    // Every write went through alpha and was replicated: the two files must be equal.
    const same = await run('cmp', ['-s', file('alpha.img'), file('beta.img')]).then(
      () => true,
      () => false,
    );
    console.log(`\nalpha.img and beta.img identical after the runs: ${same ? 'yes' : 'NO'}`);
  }
  console.log('');
}

// ---- resync ------------------------------------------------------------------------------

const sizeBytes = sizeMiB * 2 ** 20;
const secs = (ms: number): string => (ms / 1000).toFixed(3);
const mibs = (ms: number): string => ((sizeMiB * 1000) / ms).toFixed(0);

/** A fresh sparse file of the device's size. */
function freshSparse(f: string): void {
  fs.rmSync(f, { force: true });
  fs.writeFileSync(f, '');
  fs.truncateSync(f, sizeBytes);
}

/** A plain copy of alpha's file into a fresh sparse one, ms. */
async function plainCopy(fsync: boolean): Promise<number> {
  const dst = file('copy.img');
  freshSparse(dst);
  await prepareFiles([file('alpha.img')]);
  const t0 = performance.now();
  await run('dd', [
    `if=${file('alpha.img')}`,
    `of=${dst}`,
    'bs=1M',
    `conv=notrunc${fsync ? ',fsync' : ''}`,
    'status=none',
  ]);
  const ms = performance.now() - t0;
  fs.rmSync(dst, { force: true });
  return ms;
}

interface SyncRun {
  /** primary --force → both nodes in sync. */
  fullMs: number;
  /** primary --force → alpha says SyncSource. */
  fullStartMs: number;
  /** Bytes out of sync on alpha after the 1 % was written. */
  dirtyBytes: number;
  /** up on beta → alpha Connected. */
  reconnectMs: number;
  /** alpha Connected → both nodes in sync. */
  bitmapMs: number;
  /** alpha Connected → alpha SyncSource (UUIDs and bitmaps exchanged, the resync decided). */
  bitmapStartMs: number;
  /** beta identical to alpha afterwards. */
  identical: boolean;
}

/** The daemons' time at which both nodes first satisfied `pred` at or after `since`. */
async function both(
  [a, b]: [StateWatch, StateWatch],
  since: number,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const ts = await Promise.all([
    a.waitFor(inSync, since, timeoutMs, `alpha ${what}`),
    b.waitFor(inSync, since, timeoutMs, `beta ${what}`),
  ]);
  return Math.max(...ts);
}

async function syncOnce(): Promise<SyncRun> {
  const d = fs.mkdtempSync(file('resync.'));
  const betaDisk = path.join(d, 'beta.img');
  freshSparse(betaDisk);
  await prepareFiles([file('alpha.img')]);
  const pair = await startUrbdPair({
    dir: d,
    alphaDisk: file('alpha.img'),
    betaDisk,
    protocol: 'C',
    ready: false,
    net: values.net,
    disk: values.disk,
    nodeOptions,
  });
  running.add(pair);
  try {
    // Watching both nodes' events from before the promotion, which is sent on the control
    // socket as urbdadm sends it.
    const watches: [StateWatch, StateWatch] = [await pair.watch('alpha'), await pair.watch('beta')];
    const [alpha] = watches;
    const ctl = await pair.control('alpha');
    const t0 = Date.now();
    await ctl.request('primary', RES, { force: true });
    ctl.close();
    const fullEnd = await both(watches, t0, 600_000, 'in sync');
    const started = alpha.firstAt((s) => s.replication === 'SyncSource', t0) ?? fullEnd;

    // Beta goes away; 1 % of the disk is written on alpha; beta comes back.
    await pair.adm('beta', 'down', RES);
    await alpha.waitFor((s) => s.connection !== 'Connected', 0, 30_000, 'disconnected');
    await run(
      'fio',
      [
        '--name=dirty',
        '--ioengine=nbd',
        `--uri=${pair.uri}`,
        '--rw=randwrite',
        '--bsrange=4k-64k',
        '--iodepth=8',
        `--size=${sizeMiB}M`,
        `--io_size=${Math.round(sizeBytes / 100)}`,
      ],
      { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
    );
    const ctlA = await pair.control('alpha');
    const st = (await ctlA.request('status', RES)) as Array<{ device: { outOfSync: number } }>;
    ctlA.close();
    const dirtyBytes = st[0]!.device.outOfSync;
    await run('sync', []);
    const t1 = Date.now();
    const ctlB = await pair.control('beta');
    await ctlB.request('up', RES);
    ctlB.close();
    const bitmapEnd = await both(watches, t1, 120_000, 'in sync after the bitmap resync');
    const connected = alpha.firstAt((s) => s.connection === 'Connected', t1) ?? t1;
    const resyncing = alpha.firstAt((s) => s.replication === 'SyncSource', connected) ?? bitmapEnd;
    for (const w of watches) w.close();
    const identical = await run('cmp', ['-s', file('alpha.img'), betaDisk]).then(
      () => true,
      () => false,
    );
    return {
      fullMs: fullEnd - t0,
      fullStartMs: started - t0,
      dirtyBytes,
      reconnectMs: connected - t1,
      bitmapMs: bitmapEnd - connected,
      bitmapStartMs: resyncing - connected,
      identical,
    };
  } finally {
    await pair.stop();
    running.delete(pair);
    if (!values.keep) fs.rmSync(d, { recursive: true, force: true });
  }
}

/** Part 0: loopback TCP and a plain copy, measured once for every ratio that needs them. */
async function references(): Promise<Refs> {
  const r: Refs = { iperf: [], copy: [], fsyncCopy: [] };
  // The first copy into a fresh file after the setup's big writes and deletes ran 3–10×
  // slower than the rest in trials (ext4 allocating around just-freed blocks): warm up once.
  await plainCopy(false);
  for (let i = 0; i < repeat; i++) {
    const steps = [
      async () => r.iperf.push(await iperf3MiBs(3)),
      async () => r.copy.push(await plainCopy(false)),
      async () => r.fsyncCopy.push(await plainCopy(true)),
    ];
    for (let j = 0; j < steps.length; j++) await steps[(i + j) % steps.length]!();
    console.error(
      `  iperf3 ${r.iperf.at(-1)!.toFixed(0)} MiB/s, copy ${secs(r.copy.at(-1)!)} s, ` +
        `copy+fsync ${secs(r.fsyncCopy.at(-1)!)} s`,
    );
  }
  const rate = (ms: number): number => (sizeMiB * 1000) / ms;
  const row = (what: string, xs: number[]): void =>
    console.log(
      `| ${what} | ${xs.map((x) => x.toFixed(0)).join(' / ')} | ${median(xs).toFixed(0)} |`,
    );
  console.log(`| physical reference (${repeat} runs) | MiB/s | median MiB/s |`);
  console.log('|---|---|---|');
  row('loopback TCP: iperf3, one stream, 3 s', r.iperf);
  row(`plain copy of ${sizeMiB} MiB: dd bs=1M conv=fsync`, r.fsyncCopy.map(rate));
  row(`plain copy of ${sizeMiB} MiB: dd bs=1M, no fsync`, r.copy.map(rate));
  console.log('');
  return r;
}

async function resync(): Promise<void> {
  for (let i = 0; i < repeat; i++) {
    const r = await syncOnce();
    syncs.push(r);
    console.error(`  resync: ${JSON.stringify(r)}`);
  }
  const list = (xs: number[]): string => xs.map(secs).join(' / ');
  const dirty = syncs.map((s) => ((100 * s.dirtyBytes) / sizeBytes).toFixed(2));
  const row = (what: string, xs: number[], rate: boolean): void =>
    console.log(
      `| ${what} | ${list(xs)} | ${secs(median(xs))} | ${rate ? mibs(median(xs)) : ''} |`,
    );
  console.log(`| measure (${sizeMiB} MiB, ${repeat} runs) | seconds | median | MiB/s (median) |`);
  console.log('|---|---|---|---|');
  row(
    'full initial sync: primary --force → both in sync',
    syncs.map((s) => s.fullMs),
    true,
  );
  row(
    'of which primary --force → SyncSource',
    syncs.map((s) => s.fullStartMs),
    false,
  );
  row(
    `bitmap resync (${dirty.join(' / ')} % out of sync): alpha Connected → both in sync`,
    syncs.map((s) => s.bitmapMs),
    false,
  );
  row(
    'of which alpha Connected → SyncSource',
    syncs.map((s) => s.bitmapStartMs),
    false,
  );
  row(
    'before it: up on beta → alpha Connected (connect-int 1)',
    syncs.map((s) => s.reconnectMs),
    false,
  );
  console.log(
    `\nbeta identical to alpha after each bitmap resync: ${syncs.map((s) => (s.identical ? 'yes' : 'NO')).join(' / ')}\n`,
  );
}

/** Part 3: MariaDB commits per second on each target, the target rotating per repeat. */
async function mariadbPart(): Promise<void> {
  const CLIENTS = [1, 8];
  const res = new Map<number, Map<Kind, Array<{ value: number }>>>(
    CLIENTS.map((c) => [c, new Map(DB_KINDS.map((k) => [k, []]))]),
  );
  const perCommit = new Map<number, Array<{ writes: number; flushes: number; kib: number }>>(
    CLIENTS.map((c) => [c, []]),
  );
  const made = new Set<Kind>();
  for (let i = 0; i < repeat; i++) {
    for (let j = 0; j < DB_KINDS.length; j++) {
      const kind = DB_KINDS[(i + j) % DB_KINDS.length]!;
      await prepareFiles(DISKS[kind]);
      const server = await startDbServer(kind);
      running.add(server);
      try {
        const db = await startMariaDbOn({
          dir: file(`db-${kind}`),
          socket: server.socket,
          exportName: RES,
          mkfs: !made.has(kind),
        });
        made.add(kind);
        runningDb = db;
        try {
          for (const c of CLIENTS) {
            const { rate, perCommit: pc } = await db.commits(c, runtime);
            res.get(c)!.get(kind)!.push({ value: rate });
            perCommit.get(c)!.push(pc);
            console.error(
              `  MariaDB ${c} client(s) / ${LABEL[kind]}: ${rate.toFixed(0)} commits/s; per commit ` +
                `${pc.writes.toFixed(2)} writes (${pc.kib.toFixed(1)} KiB), ${pc.flushes.toFixed(2)} flushes`,
            );
          }
        } finally {
          runningDb = undefined;
          await db.stop();
        }
      } finally {
        await server.stop();
        running.delete(server);
      }
    }
  }
  const rows = CLIENTS.map((c) => ({
    w: {
      name: `MariaDB single-row INSERT commits, ${c} client${c > 1 ? 's' : ''}`,
      unit: 'commits/s',
    },
    res: res.get(c)!,
  }));
  const pairs = (
    [
      ['node', 'nbdkit'],
      ['pairC', 'nbdkit'],
      ['pairC', 'node'],
    ] as const
  ).filter(([a, b]) => DB_KINDS.includes(a) && DB_KINDS.includes(b));
  console.log(ratioTable(rows, DB_KINDS, pairs, (k) => LABEL[k], repeat));
  // The same stack above every server, so the same requests per commit: what a commit costs
  // is that many writes and flushes at the queue depth of the clients.
  console.log(
    '\n| what reached the device per commit (loop device counters, all runs) | writes | KiB written | flushes |',
  );
  console.log('|---|---|---|---|');
  for (const c of CLIENTS) {
    const runs = perCommit.get(c)!;
    const m = (f: (r: (typeof runs)[number]) => number): string => median(runs.map(f)).toFixed(2);
    console.log(
      `| ${c} client${c > 1 ? 's' : ''} (median of ${runs.length}) | ${m((r) => r.writes)} | ${m((r) => r.kib)} | ${m((r) => r.flushes)} |`,
    );
  }
  console.log('');
}

/** A server for MariaDB: its NBD export on a Unix socket, which nbdfuse attaches. */
async function startDbServer(kind: Kind): Promise<RunningServer & { socket: string }> {
  if (kind === 'nbdkit') {
    const socket = file('nbdkit.sock');
    return { ...(await startNbdkitUnix(DISKS.nbdkit[0]!, socket)), socket };
  }
  if (kind === 'node') {
    const s = await startUrbdResource(DISKS.node[0]!, { nodeOptions });
    return { ...s, socket: exportSocketPath(s.runDir, RES) };
  }
  const s = (await startKind(kind)) as RunningServer & { runDir(n: 'alpha'): string };
  return { ...s, socket: exportSocketPath(s.runDir('alpha'), RES) };
}

/** Each measurement against the machine's own limits, from the medians. */
function physicalRatios(): void {
  if (!refs) return;
  const iperf = median(refs.iperf);
  const copyFsync = (sizeMiB * 1000) / median(refs.fsyncCopy);
  const copy = (sizeMiB * 1000) / median(refs.copy);
  const lines: string[] = [];
  for (const k of ['pairC', 'pairA'] as const) {
    const v = seqWrite[k];
    if (v === undefined) continue;
    lines.push(
      `| ${LABEL[k]}: 1M seq write QD8 / loopback TCP (iperf3) | ${v.toFixed(0)} / ${iperf.toFixed(0)} MiB/s | ${(v / iperf).toFixed(2)} |`,
    );
  }
  if (syncs.length > 0) {
    const fullMs = median(syncs.map((s) => s.fullMs));
    const full = (sizeMiB * 1000) / fullMs;
    const limit = Math.min(copyFsync, iperf);
    lines.push(
      `| full initial sync / min(dd conv=fsync, iperf3) | ${full.toFixed(0)} / ${limit.toFixed(0)} MiB/s | ${(full / limit).toFixed(2)} |`,
      `| full initial sync / dd conv=fsync | ${full.toFixed(0)} / ${copyFsync.toFixed(0)} MiB/s | ${(full / copyFsync).toFixed(2)} |`,
      `| full initial sync / dd without fsync | ${full.toFixed(0)} / ${copy.toFixed(0)} MiB/s | ${(full / copy).toFixed(2)} |`,
    );
    const bitmap = median(syncs.map((s) => s.bitmapMs));
    const reconnect = median(syncs.map((s) => s.reconnectMs));
    lines.push(
      `| bitmap resync (1 %) time / full sync time | ${secs(bitmap)} / ${secs(fullMs)} s | ${((100 * bitmap) / fullMs).toFixed(1)} % |`,
      `| the same counting the redial (up on beta → alpha Connected) | ${secs(bitmap + reconnect)} / ${secs(fullMs)} s | ${((100 * (bitmap + reconnect)) / fullMs).toFixed(1)} % |`,
    );
  }
  if (lines.length === 0) return;
  console.log('| ratio (medians) | values | ratio |');
  console.log('|---|---|---|');
  for (const l of lines) console.log(l);
  console.log('');
}

async function main(): Promise<void> {
  try {
    console.error(`filling ${file('nbdkit.img')} with ${sizeMiB} MiB of random data`);
    await run('dd', [
      'if=/dev/urandom',
      `of=${file('nbdkit.img')}`,
      'bs=1M',
      `count=${sizeMiB}`,
      'status=none',
    ]);
    for (const f of ['node.img', 'alpha.img', 'beta.img']) {
      await run('cp', [file('nbdkit.img'), file(f)]);
    }
    // The references are what the resync and the pairs' 1M writes are compared with.
    const seqWriteRuns =
      doThroughput &&
      (kinds.includes('pairC') || kinds.includes('pairA')) &&
      (workloadTokens.length === 0 ||
        workloadTokens.some((t) => SEQ_WRITE.toLowerCase().includes(t)));
    if (doResync || seqWriteRuns) refs = await references();
    if (doThroughput) await throughput();
    if (doResync) await resync();
    physicalRatios();
    if (doMariadb && DB_KINDS.length > 0) await mariadbPart();
    console.log(
      `\ndir: ${dir} (${sizeMiB} MiB files), fio ${runtime}s per run, ${os.cpus().length} cores, ` +
        `load average at the end ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
    );
  } finally {
    if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
