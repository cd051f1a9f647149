import fc from 'fast-check';
import t from 'tap';

import { Bitmap } from '../../src/meta/bitmap.js';
import {
  encodeBitmapRle,
  minRleChunkBytes,
  orBitmapRle,
  RleError,
  varintLength,
} from '../../src/replication/rle.js';

/** Encodes the whole bitmap in chunks of maxBytes; returns the chunks with their first bits. */
function chunksOf(bm: Bitmap, maxBytes: number): Array<{ first: number; rle: Buffer }> {
  const out: Array<{ first: number; rle: Buffer }> = [];
  let pos = 0;
  do {
    const { rle, nextBit } = encodeBitmapRle(bm, pos, maxBytes);
    if (rle.length > maxBytes) throw new Error(`chunk of ${rle.length} > ${maxBytes}`);
    out.push({ first: pos, rle });
    if (nextBit <= pos && pos < bm.totalBits) throw new Error('no progress');
    pos = nextBit;
  } while (pos < bm.totalBits);
  return out;
}

/** ORs the chunks into a fresh bitmap, checking that they join up. */
function reassemble(totalBits: number, chunks: Array<{ first: number; rle: Buffer }>): Bitmap {
  const bm = new Bitmap(totalBits);
  let expect = 0;
  for (const c of chunks) {
    if (c.first !== expect) throw new Error(`chunk starts at ${c.first}, expected ${expect}`);
    expect = orBitmapRle(bm, c.first, c.rle);
  }
  if (expect !== totalBits) throw new Error(`chunks end at ${expect}, not ${totalBits}`);
  return bm;
}

function bitsOf(bm: Bitmap): boolean[] {
  const out: boolean[] = [];
  for (let i = 0; i < bm.totalBits; i++) out.push(bm.test(i));
  return out;
}

/** Decodes a chunk's varints (for checking the format itself). */
function runs(rle: Buffer): number[] {
  const out: number[] = [];
  let v = 0;
  let scale = 1;
  for (const b of rle) {
    v += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) {
      out.push(v);
      v = 0;
      scale = 1;
    }
  }
  return out;
}

t.test('format: alternating runs from a clear run, LEB128 lengths', async (t) => {
  const bm = new Bitmap(1000);
  bm.setRange(0, 3);
  bm.setRange(10, 300);
  const { rle, nextBit } = encodeBitmapRle(bm, 0, 100);
  t.equal(nextBit, 1000);
  t.same(runs(rle), [0, 3, 7, 290, 700], 'starts with a 0-long clear run; trailing clear run kept');
  t.same([...rle], [0, 3, 7, 0xa2, 0x02, 0xbc, 0x05]);
  t.equal(varintLength(127), 1);
  t.equal(varintLength(128), 2);
  t.equal(varintLength(2 ** 28), 5);
  t.equal(varintLength(Number.MAX_SAFE_INTEGER), 8);
});

t.test('model: random bitmaps, random chunk sizes, reassembled (fast-check)', async (t) => {
  const arb = fc.integer({ min: 0, max: 3000 }).chain((n) =>
    fc.tuple(
      fc.constant(n),
      fc.array(fc.tuple(fc.integer({ min: 0, max: n }), fc.integer({ min: 0, max: 200 })), {
        maxLength: 20,
      }),
      fc.integer({ min: minRleChunkBytes(n), max: 64 }),
      fc.array(fc.boolean(), { maxLength: n }),
    ),
  );
  fc.assert(
    fc.property(arb, ([n, ranges, maxBytes, noise]) => {
      const model = new Array<boolean>(n).fill(false);
      const bm = new Bitmap(n);
      for (const [start, len] of ranges) {
        const end = Math.min(n, start + len);
        bm.setRange(start, end);
        for (let i = start; i < end; i++) model[i] = true;
      }
      // Some single-bit noise for short runs.
      noise.forEach((b, i) => {
        if (b && i % 7 === 0) {
          bm.setRange(i, i + 1);
          model[i] = true;
        }
      });
      const chunks = chunksOf(bm, maxBytes);
      const back = reassemble(n, chunks);
      const got = bitsOf(back);
      if (got.length !== model.length || got.some((v, i) => v !== model[i])) return false;
      // Into a bitmap that already has bits: an OR.
      const pre = new Bitmap(n);
      if (n > 0) pre.setRange(0, 1);
      for (const c of chunks) orBitmapRle(pre, c.first, c.rle);
      return n === 0 || (pre.test(0) && pre.count() === bm.count() + (model[0] ? 0 : 1));
    }),
    { numRuns: 400 },
  );
  t.pass('every bitmap survives every chunking');
});

t.test('model: sizes around word and page edges, every chunk size', async (t) => {
  for (const n of [1, 31, 32, 33, 63, 64, 65, 32767, 32768, 32769, 65537]) {
    const bm = new Bitmap(n);
    for (let i = 0; i < n; i += 1 + ((i * 13) % 17)) bm.setRange(i, Math.min(n, i + (i % 5)));
    if (n > 2) bm.setRange(n - 2, n);
    for (const maxBytes of [minRleChunkBytes(n), minRleChunkBytes(n) + 1, 7, 100, 100000]) {
      if (maxBytes < minRleChunkBytes(n)) continue;
      const back = reassemble(n, chunksOf(bm, maxBytes));
      t.same([...back.ranges()], [...bm.ranges()], `n=${n} maxBytes=${maxBytes}`);
    }
  }
});

t.test('all clear, all set, alternating', async (t) => {
  const n = 100_003;
  const clear = new Bitmap(n);
  const c = encodeBitmapRle(clear, 0, 64);
  t.same(runs(c.rle), [n], 'all clear: one clear run');
  t.equal(c.nextBit, n);

  const set = new Bitmap(n);
  set.setAll();
  const s = encodeBitmapRle(set, 0, 64);
  t.same(runs(s.rle), [0, n], 'all set: an empty clear run, one set run');
  t.equal(reassemble(n, [{ first: 0, rle: s.rle }]).count(), n);

  const alt = new Bitmap(n);
  for (let i = 1; i < n; i += 2) alt.setRange(i, i + 1);
  const chunks = chunksOf(alt, 1000);
  t.ok(chunks.length > 50, `${chunks.length} chunks of at most 1000 bytes`);
  t.ok(
    chunks.every((ch) => ch.rle.length <= 1000),
    'every chunk within maxBytes',
  );
  const back = reassemble(n, chunks);
  t.equal(back.count(), alt.count());
  t.same([...back.ranges(0, 1000)], [...alt.ranges(0, 1000)]);

  const empty = new Bitmap(0);
  t.same(encodeBitmapRle(empty, 0, 2), { rle: Buffer.alloc(0), nextBit: 0 });
  t.equal(orBitmapRle(empty, 0, Buffer.alloc(0)), 0);
  t.throws(() => encodeBitmapRle(alt, 0, 1), RangeError, 'too small a chunk to make progress');
});

t.test('a sparse 1 TiB bitmap encodes small and fast', async (t) => {
  const totalBits = 2 ** 40 / 4096; // 268,435,456 bits
  const bm = new Bitmap(totalBits);
  // 1 % dirty, in clusters of 256 bits (1 MiB) spread over the device.
  const cluster = 256;
  const clusters = Math.round((totalBits * 0.01) / cluster);
  const stride = Math.floor(totalBits / clusters);
  for (let i = 0; i < clusters; i++) {
    const start = i * stride + ((i * 7919) % (stride - cluster));
    bm.setRange(start, start + cluster);
  }
  const started = process.hrtime.bigint();
  const chunks = chunksOf(bm, 64 * 1024);
  const encodeMs = Number(process.hrtime.bigint() - started) / 1e6;
  const bytes = chunks.reduce((n, c) => n + c.rle.length, 0);
  t.comment(
    `1 TiB, ${bm.count()} dirty bits (${((100 * bm.count()) / totalBits).toFixed(2)} %): ` +
      `${bytes} RLE bytes in ${chunks.length} chunks (raw bitmap ${totalBits / 8} bytes), ` +
      `encoded in ${encodeMs.toFixed(1)} ms`,
  );
  t.ok(bytes < 100_000, 'a few tens of KiB instead of 32 MiB');
  const back = reassemble(totalBits, chunks);
  t.equal(back.count(), bm.count());
  let same = true;
  for (const [a, b] of bm.ranges())
    if (back.nextSet(a) !== a || back.nextClear(a) !== b) same = false;
  t.ok(same, 'the same runs');
});

t.test('garbage is refused with RleError and leaves the bitmap alone', async (t) => {
  const cases: Array<[string, number[], RegExp]> = [
    ['truncated varint', [5, 0x83], /truncated inside the varint of run 1/],
    ['run past the end', [90, 20], /run 1 \(20 bits from bit 90\) runs past the 100-bit bitmap/],
    ['clear run past the end', [0x81, 0x01], /run 0 \(129 bits from bit 0\) runs past/],
    ['empty set run in the middle', [3, 0, 4, 1], /run 1 is empty and not the last one/],
    ['empty clear run in the middle', [3, 1, 0, 1], /run 2 is empty and not the last one/],
    ['overlong varint', [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], /longer than 8/],
  ];
  for (const [name, bytes, re] of cases) {
    const bm = new Bitmap(100);
    let err: unknown;
    try {
      orBitmapRle(bm, 0, Buffer.from(bytes));
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof RleError, name);
    t.match((err as Error).message, re, name);
    t.equal(bm.count(), 0, `${name}: nothing set`);
  }
  t.throws(() => orBitmapRle(new Bitmap(100), 101, Buffer.from([1])), RleError, 'start past end');
  const bm = new Bitmap(100);
  t.equal(orBitmapRle(bm, 10, Buffer.from([2, 3, 0])), 15, 'a final empty run is tolerated');
  t.same([...bm.ranges()], [[12, 15]]);

  // Random garbage: RleError or a valid result, never anything else.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 100 }), (g, first) => {
      try {
        const end = orBitmapRle(new Bitmap(100), first, g);
        return end >= first && end <= 100;
      } catch (e) {
        return e instanceof RleError;
      }
    }),
  );
});
