/**
 * Replication benchmark: a replicated urbd pair side by side with `nbdkit file` and a
 * one-node urbd resource, then resync throughput.
 *
 *   node dist/scripts/bench/pair.js [--size-mib N] [--runtime S] [--repeat N] [--dir PATH]
 *     [--only LIST] [--cpu-prof DIR] [--keep] [--net 'STATEMENTS'] [--disk 'STATEMENTS']
 *
 * 1. Throughput: fio's nbd engine against nbdkit, one urbd node alone (no peer, Primary), a
 *    protocol C pair and a protocol A pair (served by alpha; beta replicates), each on its
 *    own backing file(s) filled with the same random data, one server at a time, the first
 *    one rotating from repeat to repeat, `sync` before every run.
 * 2. Full initial sync: `primary --force` on a fresh pair (alpha: N MiB of data, beta: a fresh
 *    sparse file), timed until both nodes are Connected/Established/UpToDate, against a plain
 *    `dd bs=1M conv=fsync` copy of the same file into a fresh sparse file (the SyncTarget
 *    flushes its disk before it saves cleared bits, every 2 s and at the end), and the same
 *    copy without the fsync.
 * 3. Bitmap resync: on that pair, `urbdadm down` on beta, 1 % of the disk written through NBD
 *    on alpha (random 4–64 KiB spots), `urbdadm up` on beta, timed until in sync again.
 *
 * --only takes a comma-separated list: server kinds (nbdkit, node, pairC, pairA) and workload
 * fragments pick throughput runs; `resync` alone runs only parts 2 and 3, `throughput` only
 * part 1. --cpu-prof DIR runs the urbd daemons under `node --cpu-prof`. Everything lives in a
 * temp dir under --dir (default: the OS temp dir), removed at the end unless --keep. --net and
 * --disk add statements to the pairs' `net { }` and `disk { }` sections (defaults otherwise,
 * but for `connect-int 1`), e.g. --disk 'c-max-rate 4G; c-fill-target 64M;'.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { type FioResult, type FioWorkload, fio, fmtRuns, median, ratioTable } from './fio.js';
import { startUrbdResource } from './nbd-resource.js';
import { type RunningServer, startNbdkit } from './nbd-servers.js';
import { inSync, RES, type StateWatch, startUrbdPair } from './urbd-pair.js';

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
];

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
  },
});
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
const workloadTokens = tokens
  .filter((t) => !isKind(t) && t !== 'resync' && t !== 'throughput')
  .map((t) => t.toLowerCase());
const kinds: readonly Kind[] = kindTokens.length > 0 ? kindTokens : KINDS;
const doThroughput = !tokens.includes('resync') || tokens.includes('throughput');
const doResync =
  tokens.length === 0 ||
  tokens.includes('resync') ||
  (!tokens.includes('throughput') && kindTokens.length === 0 && workloadTokens.length === 0);

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
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    console.error(`${sig}: stopping ${running.size} server(s)`);
    void Promise.allSettled([...running].map((s) => s.stop())).then(() => {
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

/** Writes back dirty pages, then reads the files once so the run starts with them cached. */
async function settle(files: string[]): Promise<void> {
  await run('sync', []);
  // This VM pages out cache left untouched for a minute (see the one-node section).
  for (const f of files) await run('dd', [`if=${f}`, 'of=/dev/null', 'bs=1M', 'status=none']);
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

async function once(kind: Kind, w: FioWorkload): Promise<FioResult> {
  await settle(DISKS[kind]);
  return withServer(await startKind(kind), async (s) => {
    const r = await fio(s.uri, w, { sizeMiB, runtime });
    console.error(`  ${w.name} / ${LABEL[kind]}: ${Math.round(r.value)} ${w.unit}`);
    return r;
  });
}

async function throughput(): Promise<void> {
  const workloads = WORKLOADS.filter(
    (w) =>
      workloadTokens.length === 0 || workloadTokens.some((t) => w.name.toLowerCase().includes(t)),
  );
  const rows: Array<{ w: FioWorkload; res: Map<Kind, FioResult[]> }> = [];
  for (const w of workloads) {
    const res = new Map<Kind, FioResult[]>(kinds.map((k) => [k, []]));
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

const sizeBytes = sizeMiB << 20;
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
  await settle([file('alpha.img')]);
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
  await settle([file('alpha.img')]);
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
    fs.rmSync(d, { recursive: true, force: true });
  }
}

async function resync(): Promise<void> {
  const copies: number[] = [];
  const fsyncCopies: number[] = [];
  const syncs: SyncRun[] = [];
  // The first copy into a fresh file after the setup's big writes and deletes ran 3–10×
  // slower than the rest in trials (ext4 allocating around just-freed blocks): warm up once.
  await plainCopy(false);
  for (let i = 0; i < repeat; i++) {
    const steps = [
      async () => copies.push(await plainCopy(false)),
      async () => fsyncCopies.push(await plainCopy(true)),
      async () => {
        const r = await syncOnce();
        syncs.push(r);
        console.error(`  resync: ${JSON.stringify(r)}`);
      },
    ];
    // Rotate which goes first.
    for (let j = 0; j < steps.length; j++) await steps[(i + j) % steps.length]!();
    console.error(
      `  copy ${secs(copies.at(-1)!)} s, copy+fsync ${secs(fsyncCopies.at(-1)!)} s, ` +
        `full sync ${secs(syncs.at(-1)!.fullMs)} s`,
    );
  }
  const list = (xs: number[]): string => xs.map(secs).join(' / ');
  const med = (xs: number[]): number => median(xs);
  const copy = med(copies);
  const full = med(syncs.map((s) => s.fullMs));
  const bitmap = med(syncs.map((s) => s.bitmapMs));
  const reconnect = med(syncs.map((s) => s.reconnectMs));
  const dirty = syncs.map((s) => ((100 * s.dirtyBytes) / sizeBytes).toFixed(2));
  const fsyncCopy = med(fsyncCopies);
  const row = (what: string, xs: number[], rate: boolean): void =>
    console.log(`| ${what} | ${list(xs)} | ${secs(med(xs))} | ${rate ? mibs(med(xs)) : ''} |`);
  console.log(`| measure (${sizeMiB} MiB, ${repeat} runs) | seconds | median | MiB/s (median) |`);
  console.log('|---|---|---|---|');
  row('plain copy: dd bs=1M conv=fsync', fsyncCopies, true);
  row('plain copy: dd bs=1M, no fsync', copies, true);
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
    `\nfull sync / plain copy with fsync (throughput): ${(fsyncCopy / full).toFixed(2)}; ` +
      `/ copy without fsync: ${(copy / full).toFixed(2)}`,
  );
  console.log(
    `bitmap resync / full sync (time): ${((100 * bitmap) / full).toFixed(1)} %; ` +
      `counting the redial too: ${((100 * (bitmap + reconnect)) / full).toFixed(1)} %`,
  );
  console.log(
    `beta identical to alpha after each bitmap resync: ${syncs.map((s) => (s.identical ? 'yes' : 'NO')).join(' / ')}`,
  );
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
    if (doThroughput) await throughput();
    if (doResync) await resync();
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
