import assert from 'node:assert/strict';
import fc from 'fast-check';
import t from 'tap';

import {
  AL_EXTENT_BITS,
  BM_BITS_PER_PAGE,
  BM_BLOCK_SIZE,
  BM_PAGE_BYTES,
  Bitmap,
  bitsForDevice,
  blocksCovered,
  blocksTouched,
  popcount32,
} from '../../src/meta/bitmap.js';

const PAGE = BM_BITS_PER_PAGE;
const TIB = 2 ** 40;

/**
 * The naive model: one byte per bit, plus per-page dirty tracking with the "taken" rule
 * (a page copied out by pageBuffer() and changed again stays dirty across markPagesClean()).
 */
class Model {
  readonly bits: Uint8Array;
  readonly pageCount: number;
  readonly dirty: boolean[];
  readonly version: number[];
  /** Version of the page when pageBuffer() last copied it while dirty, or null. */
  readonly taken: Array<number | null>;

  constructor(readonly n: number) {
    this.bits = new Uint8Array(n);
    this.pageCount = Math.ceil(n / PAGE);
    this.dirty = new Array<boolean>(this.pageCount).fill(false);
    this.version = new Array<number>(this.pageCount).fill(0);
    this.taken = new Array<number | null>(this.pageCount).fill(null);
  }

  private changed(page: number): void {
    this.version[page]++;
    if (!this.dirty[page]) {
      this.dirty[page] = true;
      this.taken[page] = null;
    }
  }

  private write(first: number, end: number, v: 0 | 1, markDirty = true): number {
    let n = 0;
    const pages = new Set<number>();
    for (let i = first; i < end; i++) {
      if (this.bits[i] !== v) {
        this.bits[i] = v;
        n++;
        pages.add(Math.floor(i / PAGE));
      }
    }
    if (markDirty) for (const p of pages) this.changed(p);
    return n;
  }

  setRange(first: number, end: number): number {
    return this.write(first, end, 1);
  }
  clearRange(first: number, end: number): number {
    return this.write(first, end, 0);
  }
  setAll(): void {
    this.write(0, this.n, 1);
  }
  clearAll(): void {
    this.write(0, this.n, 0);
  }
  /** Bits of `page` from a page image (replace or OR); loadPage does not mark dirty. */
  applyPage(page: number, buf: Buffer, or: boolean): number {
    let added = 0;
    const end = Math.min((page + 1) * PAGE, this.n);
    for (let i = page * PAGE; i < end; i++) {
      const j = i - page * PAGE;
      const b = (buf[j >> 3] >> (j & 7)) & 1;
      if (or) {
        if (b === 1 && this.bits[i] === 0) {
          this.bits[i] = 1;
          added++;
        }
      } else {
        this.bits[i] = b;
      }
    }
    if (or && added > 0) this.changed(page);
    return added;
  }
  take(page: number): void {
    if (this.dirty[page]) this.taken[page] = this.version[page];
  }
  markClean(page: number): void {
    if (!this.dirty[page]) return;
    const tk = this.taken[page];
    if (tk === null || tk === this.version[page]) this.dirty[page] = false;
    this.taken[page] = null;
  }

  count(): number {
    let c = 0;
    for (let i = 0; i < this.n; i++) c += this.bits[i];
    return c;
  }
  nextSet(from: number): number {
    let i = from;
    while (i < this.n && this.bits[i] === 0) i++;
    return i;
  }
  nextClear(from: number): number {
    let i = from;
    while (i < this.n && this.bits[i] === 1) i++;
    return i;
  }
  ranges(from = 0, to = this.n): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let i = from;
    while (i < to) {
      if (this.bits[i] === 0) {
        i++;
        continue;
      }
      const s = i;
      while (i < to && this.bits[i] === 1) i++;
      out.push([s, i]);
    }
    return out;
  }
  dirtyPages(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.pageCount; p++) if (this.dirty[p]) out.push(p);
    return out;
  }
  pageBuffer(page: number): Buffer {
    const buf = Buffer.alloc(BM_PAGE_BYTES);
    const end = Math.min((page + 1) * PAGE, this.n);
    for (let i = page * PAGE; i < end; i++) {
      const j = i - page * PAGE;
      if (this.bits[i]) buf[j >> 3] |= 1 << (j & 7);
    }
    return buf;
  }
  pageIsZero(page: number): boolean {
    const end = Math.min((page + 1) * PAGE, this.n);
    for (let i = page * PAGE; i < end; i++) if (this.bits[i]) return false;
    return true;
  }
}

/** Positions worth probing for a bitmap of n bits: word, page and device edges. */
function interesting(n: number): number[] {
  const s = new Set<number>([0, 1, n - 1, n, n - 31, n - 32, n - 33]);
  for (const b of [31, 32, 33, 63, 64, 65]) s.add(b);
  for (let p = 1; p * PAGE <= n + PAGE; p++) {
    for (const d of [-33, -32, -31, -1, 0, 1, 31, 32]) s.add(p * PAGE + d);
  }
  return [...s].filter((x) => x >= 0 && x <= n).sort((a, b) => a - b);
}

/**
 * Compares everything observable. `probes` are positions for test/nextSet/nextClear;
 * with `buffers`, pageBuffer() of every page is compared too (and the model records the take).
 */
function check(bm: Bitmap, m: Model, probes: number[], buffers: boolean): void {
  assert.equal(bm.totalBits, m.n, 'totalBits');
  assert.equal(bm.pageCount, m.pageCount, 'pageCount');
  assert.equal(bm.count(), m.count(), 'count');
  for (const p of probes) {
    if (p < m.n) assert.equal(bm.test(p), m.bits[p] === 1, `test(${p})`);
    assert.equal(bm.nextSet(p), m.nextSet(p), `nextSet(${p})`);
    assert.equal(bm.nextClear(p), m.nextClear(p), `nextClear(${p})`);
  }
  assert.deepEqual([...bm.ranges()], m.ranges(), 'ranges()');
  if (probes.length >= 2) {
    const a = probes[0];
    const b = probes[probes.length - 1];
    const [from, to] = a <= b ? [a, b] : [b, a];
    assert.deepEqual([...bm.ranges(from, to)], m.ranges(from, to), `ranges(${from}, ${to})`);
    assert.equal(
      bm.countRange(from, to),
      m.ranges(from, to).reduce((s, [x, y]) => s + y - x, 0),
    );
  }
  assert.deepEqual(bm.dirtyPages(), m.dirtyPages(), 'dirtyPages');
  for (let p = 0; p < m.pageCount; p++) {
    const zero = m.pageIsZero(p);
    assert.equal(bm.pageIsZero(p), zero, `pageIsZero(${p})`);
    if (zero) m.take(p); // a true pageIsZero() counts as taking the page
    if (buffers) {
      assert.ok(bm.pageBuffer(p).equals(m.pageBuffer(p)), `pageBuffer(${p})`);
      m.take(p);
    }
  }
}

/** Asserts a bitmap equals a model, for small exhaustive cases (all positions probed). */
function checkAll(bm: Bitmap, m: Model): void {
  const probes: number[] = [];
  for (let i = 0; i <= m.n; i++) probes.push(i);
  check(bm, m, probes, true);
}

t.test('constants and sizes', async (t) => {
  t.equal(BM_BLOCK_SIZE, 4096);
  t.equal(BM_PAGE_BYTES, 4096);
  t.equal(BM_BITS_PER_PAGE, 32768);
  t.equal(AL_EXTENT_BITS, 1024);
  t.equal(bitsForDevice(0), 0);
  t.equal(bitsForDevice(1), 1);
  t.equal(bitsForDevice(4096), 1);
  t.equal(bitsForDevice(4097), 2);
  t.equal(bitsForDevice(TIB), 268435456);
  t.throws(() => bitsForDevice(-1), RangeError);
  t.throws(() => bitsForDevice(1.5), RangeError);
  t.equal(new Bitmap(0).pageCount, 0);
  t.equal(new Bitmap(1).pageCount, 1);
  t.equal(new Bitmap(PAGE).pageCount, 1);
  t.equal(new Bitmap(PAGE + 1).pageCount, 2);
  t.throws(() => new Bitmap(-1), RangeError);
  t.throws(() => new Bitmap(NaN), RangeError);
});

t.test('popcount32', async (t) => {
  t.equal(popcount32(0), 0);
  t.equal(popcount32(0xffffffff), 32);
  t.equal(popcount32(-1), 32);
  t.equal(popcount32(0x80000000), 1);
  t.equal(popcount32(0x12345678), 13);
  for (let i = 0; i < 32; i++) t.equal(popcount32((1 << i) >>> 0), 1);
});

t.test('blocksTouched rounds outward', async (t) => {
  t.same(blocksTouched(0, 0), [0, 0], 'zero length touches nothing');
  t.same(blocksTouched(5000, 0), [1, 1]);
  t.same(blocksTouched(0, 1), [0, 1]);
  t.same(blocksTouched(0, 4096), [0, 1]);
  t.same(blocksTouched(0, 4097), [0, 2]);
  t.same(blocksTouched(4095, 1), [0, 1]);
  t.same(blocksTouched(4095, 2), [0, 2], 'two bytes straddling a block boundary');
  t.same(blocksTouched(4096, 4096), [1, 2]);
  t.same(blocksTouched(1, 4096), [0, 2]);
  t.same(blocksTouched(512, 1024 * 1024), [0, 257]);
  t.same(blocksTouched(TIB - 4096, 4096), [268435455, 268435456], 'last block of 1 TiB');
  t.same(blocksTouched(TIB, 0), [268435456, 268435456], 'offset at the device end');
  t.throws(() => blocksTouched(-1, 1), RangeError);
  t.throws(() => blocksTouched(0, -1), RangeError);
  t.throws(() => blocksTouched(0.5, 1), RangeError);
});

t.test('blocksCovered rounds inward', async (t) => {
  t.same(blocksCovered(0, 0), [0, 0]);
  t.same(blocksCovered(0, 4096), [0, 1]);
  t.same(blocksCovered(0, 4095), [0, 0], 'partial block: empty');
  t.same(blocksCovered(1, 4095), [1, 1], 'ends on a boundary but starts inside: empty');
  t.same(blocksCovered(1, 8191), [1, 2]);
  t.same(blocksCovered(100, 10), [1, 1], 'inside one block: empty, first === end');
  t.same(blocksCovered(4096, 65536), [1, 17]);
  t.same(blocksCovered(4095, 65538), [1, 17]);
  t.same(blocksCovered(TIB - 4096, 4096), [268435455, 268435456]);
  t.same(blocksCovered(TIB - 10, 10), [268435456, 268435456], 'unaligned tail at the device end');
  t.same(blocksCovered(TIB, 0), [268435456, 268435456]);
  for (const [o, l] of [
    [0, 0],
    [1, 1],
    [4095, 2],
    [123457, 999999],
  ]) {
    const [f, e] = blocksCovered(o, l);
    const [tf, te] = blocksTouched(o, l);
    t.ok(f >= e || (f >= tf && e <= te), `covered ⊆ touched for (${o}, ${l})`);
  }
  t.throws(() => blocksCovered(-4096, 4096), RangeError);
});

t.test('argument validation', async (t) => {
  const bm = new Bitmap(1000);
  t.throws(() => bm.setRange(-1, 5), RangeError);
  t.throws(() => bm.setRange(0, 1001), { name: 'RangeError', message: /\[0, 1001\)/ });
  t.throws(() => bm.clearRange(1.5, 3), RangeError);
  t.throws(() => bm.setRange(0, NaN), RangeError);
  t.throws(() => bm.test(1000), RangeError);
  t.throws(() => bm.test(-1), RangeError);
  t.throws(() => bm.nextSet(1001), RangeError);
  t.throws(() => bm.nextClear(-1), RangeError);
  t.throws(() => [...bm.ranges(0, 1001)], RangeError);
  t.throws(() => bm.pageBuffer(1), RangeError);
  t.throws(() => bm.pageIsZero(-1), RangeError);
  t.throws(() => bm.loadPage(0, Buffer.alloc(100)), RangeError);
  t.throws(() => bm.markPagesClean([1]), RangeError);
  t.throws(() => bm.pagesOfBits(0, 1001), RangeError);
  t.equal(bm.setRange(10, 5), 0, 'an inverted range is empty (blocksCovered may produce one)');
  t.equal(bm.clearRange(1000, 1000), 0);
  t.equal(bm.nextSet(1000), 1000);
  t.equal(bm.nextClear(1000), 1000);
  t.same([...bm.ranges(7, 3)], []);
  t.equal(bm.count(), 0);
  t.same(bm.dirtyPages(), []);
});

t.test('every range between boundary positions, on fresh and full bitmaps', async (t) => {
  for (const n of [1, 31, 32, 33, 64, 100, PAGE, PAGE + 1, 2 * PAGE + 77]) {
    const pos = interesting(n);
    let cases = 0;
    for (const a of pos) {
      for (const b of pos) {
        if (b < a) continue;
        for (const fill of [false, true]) {
          const bm = new Bitmap(n);
          const m = new Model(n);
          if (fill) {
            bm.setAll();
            m.setAll();
            bm.markPagesClean(bm.dirtyPages());
            for (let p = 0; p < m.pageCount; p++) m.markClean(p);
            assert.equal(bm.clearRange(a, b), m.clearRange(a, b), `clearRange(${a}, ${b})`);
          } else {
            assert.equal(bm.setRange(a, b), m.setRange(a, b), `setRange(${a}, ${b})`);
          }
          check(bm, m, pos, true);
          cases++;
        }
      }
    }
    t.pass(`${n} bits: ${cases} ranges`);
  }
});

t.test('single bits at word and page edges, all positions probed', async (t) => {
  for (const n of [33, 65, 1000]) {
    for (const bit of [0, 31, 32, 63, n - 1]) {
      if (bit >= n) continue;
      const bm = new Bitmap(n);
      const m = new Model(n);
      t.equal(bm.setRange(bit, bit + 1), 1);
      m.setRange(bit, bit + 1);
      t.equal(bm.setRange(bit, bit + 1), 0, 'setting again changes nothing');
      checkAll(bm, m);
      t.equal(bm.clearRange(bit, bit + 1), 1);
      m.clearRange(bit, bit + 1);
      checkAll(bm, m);
    }
  }
  // Page edges on a 3-page bitmap whose last page is partial.
  const n = 2 * PAGE + 100;
  for (const bit of [PAGE - 1, PAGE, 2 * PAGE - 1, 2 * PAGE, n - 1]) {
    const bm = new Bitmap(n);
    bm.setRange(bit, bit + 1);
    t.equal(bm.nextSet(0), bit);
    t.equal(bm.nextSet(bit + 1), n);
    t.equal(bm.nextClear(bit), bit + 1);
    t.same([...bm.ranges()], [[bit, bit + 1]]);
    t.same(bm.dirtyPages(), [Math.floor(bit / PAGE)]);
    t.equal(bm.countRange(0, n), 1);
  }
});

t.test(
  'setAll / clearAll respect a device end that is not a multiple of 32 or a page',
  async (t) => {
    for (const n of [1, 31, 33, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE - 5]) {
      const bm = new Bitmap(n);
      bm.setAll();
      t.equal(bm.count(), n);
      t.equal(bm.nextClear(0), n);
      t.same([...bm.ranges()], [[0, n]]);
      const last = bm.pageBuffer(bm.pageCount - 1);
      const lastBits = n - (bm.pageCount - 1) * PAGE;
      let ones = 0;
      for (const byte of last) ones += popcount32(byte);
      t.equal(ones, lastBits, `${n}: no bits past the end in the last page`);
      t.same(bm.dirtyPages().length, bm.pageCount);
      bm.markPagesClean(bm.dirtyPages());
      bm.setAll();
      t.same(bm.dirtyPages(), [], 'setAll on a full bitmap changes nothing');
      bm.clearAll();
      t.equal(bm.count(), 0);
      t.equal(bm.nextSet(0), n);
      t.same(bm.dirtyPages().length, bm.pageCount);
    }
  },
);

t.test('loadPage ignores bits past totalBits and does not mark dirty', async (t) => {
  const n = PAGE + 40;
  const bm = new Bitmap(n);
  bm.loadPage(1, Buffer.alloc(BM_PAGE_BYTES, 0xff));
  t.equal(bm.count(), 40);
  t.same([...bm.ranges()], [[PAGE, n]]);
  t.same(bm.dirtyPages(), []);
  t.ok(bm.pageBuffer(1).equals(Buffer.concat([Buffer.alloc(5, 0xff), Buffer.alloc(4091)])));
  bm.loadPage(1, Buffer.alloc(BM_PAGE_BYTES));
  t.equal(bm.count(), 0);
  t.ok(bm.pageIsZero(1));
  t.same(bm.dirtyPages(), []);
});

t.test('orPage merges a peer page and reports new bits', async (t) => {
  const bm = new Bitmap(PAGE * 2);
  bm.setRange(0, 16);
  bm.markPagesClean(bm.dirtyPages());
  const peer = Buffer.alloc(BM_PAGE_BYTES);
  peer[0] = 0xff; // bits 0..7: already set
  peer[3] = 0x01; // bit 24: new
  t.equal(bm.orPage(0, peer), 1);
  t.same(
    [...bm.ranges()],
    [
      [0, 16],
      [24, 25],
    ],
  );
  t.same(bm.dirtyPages(), [0]);
  bm.markPagesClean([0]);
  t.equal(bm.orPage(0, peer), 0);
  t.same(bm.dirtyPages(), [], 'nothing new: not dirty');
});

t.test('a page changed after pageBuffer() stays dirty across markPagesClean()', async (t) => {
  const bm = new Bitmap(3 * PAGE);
  bm.setRange(5, 6);
  bm.setRange(2 * PAGE, 2 * PAGE + 1);
  t.same(bm.dirtyPages(), [0, 2]);
  const taken = bm.dirtyPages();
  const bufs = taken.map((p) => bm.pageBuffer(p));
  t.equal(bufs[0][0], 0x20);
  bm.setRange(7, 8); // while the store writes
  bm.markPagesClean(taken);
  t.same(bm.dirtyPages(), [0], 'page 0 changed in flight and is still dirty');
  bm.markPagesClean([0]); // never copied since: trusted
  t.same(bm.dirtyPages(), []);
  bm.setRange(PAGE, PAGE + 1);
  bm.markPagesClean([1]);
  t.same(bm.dirtyPages(), [], 'a page marked clean without a copy is trusted');
  bm.markPagesClean([1, 2]);
  t.same(bm.dirtyPages(), [], 'marking clean pages is harmless');
  // dirtyPages stays sorted when pages dirty out of order.
  bm.setRange(2 * PAGE + 9, 2 * PAGE + 10);
  bm.setRange(3, 4);
  bm.setRange(PAGE + 3, PAGE + 4);
  t.same(bm.dirtyPages(), [0, 1, 2]);
  t.equal(bm.dirtyPageCount(), 3);
});

t.test(
  'a page found all-zero by pageIsZero() counts as taken (the store deletes it)',
  async (t) => {
    const bm = new Bitmap(2 * PAGE);
    bm.setRange(10, 20);
    bm.pageBuffer(0); // persisted once
    bm.clearRange(0, 32); // then emptied
    t.same(bm.dirtyPages(), [0]);
    t.ok(bm.pageIsZero(0)); // the store deletes the row instead of writing it
    bm.markPagesClean([0]);
    t.same(bm.dirtyPages(), [], 'clean after deletion');
    bm.setRange(5, 6);
    t.notOk(bm.pageIsZero(0));
    bm.markPagesClean([0]);
    t.same(bm.dirtyPages(), [], 'a false pageIsZero() takes nothing; the mark is trusted');
    bm.setRange(6, 7);
    bm.pageBuffer(0);
    bm.clearRange(0, 10);
    t.ok(bm.pageIsZero(0));
    bm.setRange(1, 2); // changed after the zero check, before the deletion is done
    bm.markPagesClean([0]);
    t.same(bm.dirtyPages(), [0], 'a change after the zero check keeps the page dirty');
  },
);

t.test('pagesOfBits and extentBits', async (t) => {
  const bm = new Bitmap(3 * PAGE + 10);
  t.same(bm.pagesOfBits(0, 1), [0, 1]);
  t.same(bm.pagesOfBits(PAGE - 1, PAGE + 1), [0, 2]);
  t.same(bm.pagesOfBits(PAGE, 2 * PAGE), [1, 2]);
  t.same(bm.pagesOfBits(0, 3 * PAGE + 10), [0, 4]);
  t.same(bm.pagesOfBits(5, 5), [0, 0]);
  t.same(bm.extentBits(0), [0, 1024]);
  t.same(bm.extentBits(96), [3 * PAGE, 3 * PAGE + 10], 'the last extent is clipped');
  t.throws(() => bm.extentBits(97), RangeError);
});

t.test('pageBuffer → loadPage round trip into a fresh bitmap', async (t) => {
  const n = 4 * PAGE + 1234;
  const bm = new Bitmap(n);
  let seed = 12345;
  const rnd = (k: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % k;
  };
  for (let i = 0; i < 500; i++) {
    const a = rnd(n);
    bm.setRange(a, Math.min(n, a + 1 + rnd(3000)));
  }
  for (let i = 0; i < 200; i++) {
    const a = rnd(n);
    bm.clearRange(a, Math.min(n, a + 1 + rnd(3000)));
  }
  bm.setRange(n - 1, n);
  const copy = new Bitmap(n);
  for (let p = 0; p < bm.pageCount; p++) copy.loadPage(p, bm.pageBuffer(p));
  t.equal(copy.count(), bm.count());
  t.same([...copy.ranges()], [...bm.ranges()]);
  for (let p = 0; p < bm.pageCount; p++) {
    t.ok(copy.pageBuffer(p).equals(bm.pageBuffer(p)), `page ${p}`);
    t.equal(copy.pageIsZero(p), bm.pageIsZero(p));
  }
  t.same(copy.dirtyPages(), [], 'loading marks nothing dirty');
});

t.test('a 1 TiB bitmap', async (t) => {
  const bits = bitsForDevice(TIB);
  const bm = new Bitmap(bits);
  t.equal(bm.totalBits, 268435456);
  t.equal(bm.pageCount, 8192);
  t.equal(bm.nextSet(0), bits, 'empty: nextSet reaches the end');
  const [f, e] = blocksTouched(TIB - 4096, 4096);
  t.equal(bm.setRange(f, e), 1);
  t.equal(bm.nextSet(0), bits - 1);
  t.same([...bm.ranges()], [[bits - 1, bits]]);
  t.same(bm.dirtyPages(), [8191]);
  const [a, b] = blocksTouched(300 * 2 ** 30, 2 ** 20);
  t.equal(bm.setRange(a, b), 256);
  t.equal(bm.count(), 257);
  t.same(bm.pagesOfBits(a, b), [2400, 2401]);
  bm.setAll();
  t.equal(bm.count(), bits);
  t.equal(bm.nextClear(0), bits);
  t.equal(bm.dirtyPages().length, 8192);
  const [c0, c1] = blocksCovered(2 ** 39 + 100, 65536);
  t.equal(bm.clearRange(c0, c1), 15);
  t.equal(bm.count(), bits - 15);
  t.same(
    [...bm.ranges()],
    [
      [0, c0],
      [c1, bits],
    ],
  );
  t.equal(bm.countRange(0, bits), bits - 15);
  bm.clearAll();
  t.equal(bm.count(), 0);
  t.same([...bm.ranges()], []);
});

// ---- model-based property test ----

type PageImage =
  { kind: 'zero' } | { kind: 'ones' } | { kind: 'sparse'; bytes: Array<[number, number]> };

type Op =
  | { op: 'set' | 'clear'; a: number; b: number }
  | { op: 'setAll' | 'clearAll' | 'persist' }
  | { op: 'load' | 'or'; page: number; image: PageImage }
  | { op: 'take'; page: number }
  | { op: 'markClean'; pages: number[] };

function imageBuffer(img: PageImage): Buffer {
  if (img.kind === 'zero') return Buffer.alloc(BM_PAGE_BYTES);
  if (img.kind === 'ones') return Buffer.alloc(BM_PAGE_BYTES, 0xff);
  const buf = Buffer.alloc(BM_PAGE_BYTES);
  for (const [i, v] of img.bytes) buf[i] = v;
  return buf;
}

const SIZES = [1, 31, 32, 33, 64, 1000, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 4096 + 7];

function opsFor(n: number): fc.Arbitrary<Op[]> {
  const pages = Math.ceil(n / PAGE);
  const edges = interesting(n);
  const position = fc.oneof(
    fc.constantFrom(...edges),
    fc.integer({ min: 0, max: n }),
    fc
      .constantFrom(...edges)
      .chain((e) => fc.integer({ min: -40, max: 40 }).map((d) => Math.max(0, Math.min(n, e + d)))),
  );
  const range = fc.tuple(position, position).map(([x, y]) => (x <= y ? [x, y] : [y, x]));
  const page = fc.integer({ min: 0, max: pages - 1 });
  const image: fc.Arbitrary<PageImage> = fc.oneof(
    fc.constant<PageImage>({ kind: 'zero' }),
    fc.constant<PageImage>({ kind: 'ones' }),
    fc
      .array(
        fc.tuple(fc.integer({ min: 0, max: BM_PAGE_BYTES - 1 }), fc.integer({ min: 0, max: 255 })),
        {
          maxLength: 20,
        },
      )
      .map((bytes): PageImage => ({ kind: 'sparse', bytes })),
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: range.map(([a, b]): Op => ({ op: 'set', a, b })) },
    { weight: 4, arbitrary: range.map(([a, b]): Op => ({ op: 'clear', a, b })) },
    { weight: 1, arbitrary: fc.constantFrom<Op>({ op: 'setAll' }, { op: 'clearAll' }) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'persist' }) },
    {
      weight: 1,
      arbitrary: fc.tuple(page, image).map(([p, im]): Op => ({ op: 'load', page: p, image: im })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(page, image).map(([p, im]): Op => ({ op: 'or', page: p, image: im })),
    },
    { weight: 1, arbitrary: page.map((p): Op => ({ op: 'take', page: p })) },
    {
      weight: 1,
      arbitrary: fc
        .uniqueArray(page, { maxLength: pages })
        .map((ps): Op => ({ op: 'markClean', pages: ps })),
    },
  );
  return fc.array(op, { minLength: 1, maxLength: 25 });
}

t.test('Bitmap behaves like a boolean array (fast-check model test)', async (t) => {
  for (const n of SIZES) {
    const edges = interesting(n);
    fc.assert(
      fc.property(
        opsFor(n),
        fc.array(fc.integer({ min: 0, max: n }), { maxLength: 6 }),
        (ops, extra) => {
          const bm = new Bitmap(n);
          const m = new Model(n);
          const probes = [...extra, ...edges];
          for (const [i, o] of ops.entries()) {
            switch (o.op) {
              case 'set':
                assert.equal(bm.setRange(o.a, o.b), m.setRange(o.a, o.b), 'setRange result');
                break;
              case 'clear':
                assert.equal(bm.clearRange(o.a, o.b), m.clearRange(o.a, o.b), 'clearRange result');
                break;
              case 'setAll':
                bm.setAll();
                m.setAll();
                break;
              case 'clearAll':
                bm.clearAll();
                m.clearAll();
                break;
              case 'load':
                bm.loadPage(o.page, imageBuffer(o.image));
                m.applyPage(o.page, imageBuffer(o.image), false);
                break;
              case 'or':
                assert.equal(
                  bm.orPage(o.page, imageBuffer(o.image)),
                  m.applyPage(o.page, imageBuffer(o.image), true),
                  'orPage result',
                );
                break;
              case 'take':
                assert.ok(bm.pageBuffer(o.page).equals(m.pageBuffer(o.page)));
                m.take(o.page);
                break;
              case 'markClean':
                bm.markPagesClean(o.pages);
                for (const p of o.pages) m.markClean(p);
                break;
              case 'persist': {
                const pages = bm.dirtyPages();
                assert.deepEqual(pages, m.dirtyPages());
                for (const p of pages) {
                  if (!bm.pageIsZero(p)) assert.ok(bm.pageBuffer(p).equals(m.pageBuffer(p)));
                  m.take(p);
                }
                bm.markPagesClean(pages);
                for (const p of pages) m.markClean(p);
                assert.deepEqual(bm.dirtyPages(), [], 'clean after persisting');
                break;
              }
            }
            // Compare page copies on every other step only, so untaken dirty pages stay common.
            check(bm, m, probes, i % 2 === 1);
          }
        },
      ),
      { numRuns: n > 1000 ? 60 : 150 },
    );
    t.pass(`${n} bits`);
  }
});
