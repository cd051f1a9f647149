/**
 * Dirty-bitmap micro-benchmark for a 1 TiB device (268,435,456 bits, 8192 pages).
 *
 *   npm run build:ts && node dist/scripts/bench/bitmap.js [--budget-ms N]
 *
 * Each measurement runs TRIALS short trials of about budget-ms / TRIALS each (default 700 ms in
 * all) and prints the median trial's ops/s, ns/op and ms/op, plus the fastest and slowest
 * trial's ns/op: on a shared 2-core VM, random-access rows vary by 2-4x from moment to moment.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { BM_BLOCK_SIZE, Bitmap, bitsForDevice, blocksTouched } from '../../src/meta/bitmap.js';

const { values } = parseArgs({ options: { 'budget-ms': { type: 'string', default: '700' } } });
const budgetNs = Number(values['budget-ms']) * 1e6;

const TIB = 2 ** 40;
const BITS = bitsForDevice(TIB);

/** Deterministic xorshift32, so runs are comparable. */
let seed = 0x9e3779b9;
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const randInt = (n: number): number => Math.floor(rnd() * n);

const TRIALS = 5;

interface Row {
  op: string;
  calls: number;
  /** ns/op of each trial, sorted. */
  trials: number[];
  note?: string;
}
const rows: Row[] = [];

/**
 * Runs `batch(k)` (which performs k operations) in TRIALS trials; each trial grows k until its
 * share of the budget is spent (or it made maxCalls / TRIALS calls).
 */
function measure(op: string, batch: (k: number) => void, note?: string, maxCalls = Infinity): void {
  batch(1); // warm up the path
  const trialNs = budgetNs / TRIALS;
  const trialMax = Math.max(1, Math.floor(maxCalls / TRIALS));
  const trials: number[] = [];
  let calls = 0;
  for (let t = 0; t < TRIALS; t++) {
    let n = 0;
    let ns = 0;
    let k = 1;
    while (ns < trialNs && n < trialMax) {
      const m = Math.min(k, trialMax - n);
      const t0 = process.hrtime.bigint();
      batch(m);
      ns += Number(process.hrtime.bigint() - t0);
      n += m;
      if (ns < trialNs / 8) k *= 2;
    }
    trials.push(ns / n);
    calls += n;
  }
  trials.sort((a, b) => a - b);
  rows.push({ op, calls, trials, note });
}

/** Dirties about 1 % of a bitmap in random runs of 4 KiB .. 1 MiB (1..256 bits). */
function onePercent(bm: Bitmap): number {
  let runs = 0;
  while (bm.count() < BITS / 100) {
    const len = 1 + randInt(256);
    const first = randInt(BITS - len);
    bm.setRange(first, first + len);
    runs++;
  }
  return runs;
}

// Pre-generated random positions, so the loop measures the bitmap, not the generator.
const POS = new Float64Array(1 << 16);
const MASK = POS.length - 1;
for (let i = 0; i < POS.length; i++) POS[i] = randInt(BITS);

let sink = 0;

measure(
  'construct 1 TiB bitmap',
  (k) => {
    for (let i = 0; i < k; i++) sink += new Bitmap(BITS).pageCount;
  },
  '32 MiB, zero-filled lazily by the OS',
  20,
);

{
  const bm = new Bitmap(BITS);
  let j = 0;
  measure(
    'setRange, random 4 KiB write (1 bit)',
    (k) => {
      for (let i = 0; i < k; i++) {
        const b = POS[j++ & MASK];
        sink += bm.setRange(b, b + 1);
      }
    },
    'includes first-touch page faults',
  );
  measure(
    'blocksTouched + setRange, 4 KiB write',
    (k) => {
      for (let i = 0; i < k; i++) {
        const [f, e] = blocksTouched(POS[j++ & MASK] * BM_BLOCK_SIZE + 512, 4096);
        sink += bm.setRange(f, Math.min(e, BITS));
      }
    },
    'unaligned: 2 bits',
  );
  bm.clearAll();
  measure('setRange, random 1 MiB write (256 bits)', (k) => {
    for (let i = 0; i < k; i++) {
      const b = Math.min(POS[j++ & MASK], BITS - 256);
      sink += bm.setRange(b, b + 256);
    }
  });
  bm.setAll();
  measure(
    'clearRange, random 64 KiB (16 bits), resync',
    (k) => {
      for (let i = 0; i < k; i++) {
        const b = Math.min(POS[j++ & MASK], BITS - 16);
        sink += bm.clearRange(b, b + 16);
      }
    },
    'on a full bitmap',
  );
  measure('count()', (k) => {
    for (let i = 0; i < k; i++) sink += bm.count();
  });
  measure('test(bit)', (k) => {
    for (let i = 0; i < k; i++) sink += bm.test(POS[j++ & MASK]) ? 1 : 0;
  });
}

{
  const bm = new Bitmap(BITS);
  const runs = onePercent(bm);
  let ranges = 0;
  measure('ranges() walk, 1 % dirty', (k) => {
    for (let i = 0; i < k; i++) {
      ranges = 0;
      for (const [s, e] of bm.ranges()) {
        sink += e - s;
        ranges++;
      }
    }
  });
  // The walk's result is known only after it ran.
  rows[rows.length - 1].note = `${ranges} runs (${runs} random writes)`;

  let pages = 0;
  measure('persist: dirtyPages() + pageBuffer() each, 1 % dirty', (k) => {
    for (let i = 0; i < k; i++) {
      const dirty = bm.dirtyPages();
      pages = dirty.length;
      for (const p of dirty) sink += bm.pageIsZero(p) ? 0 : bm.pageBuffer(p)[0];
    }
  });
  rows[rows.length - 1].note = `${pages} dirty pages`;
  measure(
    'markPagesClean(all dirty pages)',
    (k) => {
      for (let i = 0; i < k; i++) {
        const dirty = bm.dirtyPages();
        bm.markPagesClean(dirty);
        // Re-dirty every page the same way for the next round (not timed separately).
        for (const p of dirty) {
          const b = p * 32768;
          bm.clearRange(b, b + 1);
          bm.setRange(b, b + 1);
        }
      }
    },
    'includes re-dirtying each page (2 bit ops)',
    50,
  );
}

{
  const bm = new Bitmap(BITS);
  measure('ranges() walk, empty', (k) => {
    for (let i = 0; i < k; i++) for (const [s] of bm.ranges()) sink += s;
  });
  measure('nextSet(0), empty', (k) => {
    for (let i = 0; i < k; i++) sink += bm.nextSet(0);
  });
  bm.setAll();
  measure('ranges() walk, full', (k) => {
    for (let i = 0; i < k; i++) for (const [s] of bm.ranges()) sink += s;
  });
  measure('nextClear(0), full', (k) => {
    for (let i = 0; i < k; i++) sink += bm.nextClear(0);
  });
  measure(
    'setAll() + clearAll()',
    (k) => {
      for (let i = 0; i < k; i++) {
        bm.clearAll();
        bm.setAll();
      }
    },
    'one pair; each fills 32 MiB',
  );
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `Node ${process.version}, ${os.cpus().length} CPUs (${cpu}), ${BITS} bits, ${BITS / 32768} pages`,
);
console.log('');
const ns = (x: number): string => fmt(x, x < 100 ? 1 : 0);
console.log('| operation | calls | ops/s | ns/op | ms/op | ns/op min–max | notes |');
console.log('|---|---:|---:|---:|---:|---:|---|');
for (const r of rows) {
  const nsOp = r.trials[Math.floor(r.trials.length / 2)];
  const spread = `${ns(r.trials[0])}–${ns(r.trials[r.trials.length - 1])}`;
  console.log(
    `| ${r.op} | ${fmt(r.calls)} | ${fmt(1e9 / nsOp)} | ${ns(nsOp)} | ${fmt(nsOp / 1e6, 3)} | ${spread} | ${r.note ?? ''} |`,
  );
}
if (sink === 0.5) console.log(''); // keep results alive
