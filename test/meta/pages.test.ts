import fc from 'fast-check';
import t from 'tap';

import {
  BITS_PER_PAGE,
  clearBits,
  countBits,
  devicePages,
  deviceBits,
  setBits,
  setRanges,
} from '../../src/meta/pages.js';

const bitAt = (p: Uint8Array, i: number): number => (p[i >> 3]! >> (i & 7)) & 1;

t.test('geometry', async (t) => {
  t.equal(deviceBits(0), 0);
  t.equal(deviceBits(1), 1);
  t.equal(deviceBits(4096), 1);
  t.equal(deviceBits(4097), 2);
  t.equal(devicePages(128 * 1024 * 1024), 1);
  t.equal(devicePages(128 * 1024 * 1024 + 1), 2);
});

t.test('setBits / countBits / clearBits agree with a bit-by-bit model', async (t) => {
  const span = fc
    .tuple(fc.nat(BITS_PER_PAGE), fc.nat(BITS_PER_PAGE))
    .map(([a, b]) => (a <= b ? [a, b] : [b, a]) as [number, number]);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), span, (init, [from, to]) => {
      const page = Uint8Array.from(init);
      let zeros = 0;
      for (let i = from; i < to; i++) zeros += 1 - bitAt(init, i);
      let ones = 0;
      for (let i = from; i < to; i++) ones += bitAt(init, i);
      if (countBits(page, from, to) !== ones) return false;
      if (setBits(page, from, to) !== zeros) return false;
      for (let i = 0; i < BITS_PER_PAGE; i++) {
        const want = i >= from && i < to ? 1 : bitAt(init, i);
        if (bitAt(page, i) !== want) return false;
      }
      clearBits(page, from, to);
      return countBits(page, from, to) === 0 && countBits(page) === countBits(init) - ones;
    }),
    { numRuns: 200 },
  );
  t.pass('200 random pages and spans');
});

t.test('setRanges: runs across pages, clipped at the limit', async (t) => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.nat(3 * BITS_PER_PAGE - 1), { maxLength: 300 }),
      fc.integer({ min: 0, max: 3 * BITS_PER_PAGE }),
      (bits, limit) => {
        const pages = [0, 1, 2].map((page) => ({ page, data: new Uint8Array(4096) }));
        for (const b of bits)
          pages[Math.floor(b / BITS_PER_PAGE)]!.data[(b % BITS_PER_PAGE) >> 3]! |= 1 << (b & 7);
        const want = bits.filter((b) => b < limit).sort((a, b) => a - b);
        const wantRanges: Array<[number, number]> = [];
        for (const b of want) {
          const last = wantRanges[wantRanges.length - 1];
          if (last !== undefined && last[1] === b) last[1] = b + 1;
          else wantRanges.push([b, b + 1]);
        }
        const got = setRanges(
          pages.filter((p) => p.data.some((x) => x !== 0)),
          limit,
        );
        return (
          got.count === want.length && JSON.stringify(got.ranges) === JSON.stringify(wantRanges)
        );
      },
    ),
    { numRuns: 300 },
  );
  t.pass('300 random bit sets and limits');
});
