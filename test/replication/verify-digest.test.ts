// The pure parts of online verify (replication/verify.ts): digests per block, the comparison,
// the bitset carried in replies, range merging of findings, the --start/--stop range.
import fc from 'fast-check';
import t from 'tap';
import {
  VERIFY_CHUNK,
  bitsToBlocks,
  blockDigests,
  blockRuns,
  blocksToBits,
  checkDigestAlg,
  chunkAt,
  crc32c,
  differingBlocks,
  verifyRange,
} from '../../src/replication/verify.js';

t.test('checkDigestAlg takes what crypto offers and crc32c, refuses the rest', async (t) => {
  for (const a of ['sha256', 'SHA1', 'md5', 'crc32c', 'CRC32C']) {
    t.equal(checkDigestAlg(a), a.toLowerCase(), a);
  }
  t.throws(() => checkDigestAlg('whirlpool9'), /verify-alg "whirlpool9" is not a digest/);
  t.throws(() => checkDigestAlg('nope', 'csums-alg'), /^csums-alg "nope"/);
});

t.test('crc32c matches the published check value', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.equal(crc32c(Buffer.alloc(0)), 0);
});

t.test('blockDigests and differingBlocks find exactly the changed blocks', async (t) => {
  for (const alg of ['sha256', 'md5', 'crc32c']) {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 64 * 4096 }),
        fc.uniqueArray(fc.nat(), { maxLength: 8 }),
        async (len, flips) => {
          const a = Buffer.alloc(len, 7);
          const b = Buffer.from(a);
          const want = new Set<number>();
          for (const at of new Set(flips.map((f) => f % len))) {
            b[at] = b[at]! ^ 0xff;
            want.add(Math.floor(at / 4096));
          }
          const blocks = Math.ceil(len / 4096);
          const got = differingBlocks(blockDigests(a, alg), blockDigests(b, alg), blocks);
          t.same(
            got,
            [...want].sort((x, y) => x - y),
          );
        },
      ),
      { numRuns: 40 },
    );
  }
});

t.test('digest lists that do not line up make every block differ', async (t) => {
  t.same(differingBlocks(Buffer.alloc(8), Buffer.alloc(12), 2), [0, 1]);
  t.same(differingBlocks(Buffer.alloc(7), Buffer.alloc(7), 2), [0, 1]);
});

t.test('bitsets round-trip; runs merge adjacent blocks only', async (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 63 })), (blocks) => {
      const sorted = [...blocks].sort((a, b) => a - b);
      const bits = blocksToBits(sorted, 64);
      t.equal(bits.length, 8);
      t.same(bitsToBlocks(bits, 64), sorted);
      const runs = blockRuns(sorted);
      t.same(
        runs.flatMap(([a, b]) => Array.from({ length: b - a }, (_, i) => a + i)),
        sorted,
      );
      for (let i = 1; i < runs.length; i++) t.ok(runs[i]![0] > runs[i - 1]![1]);
    }),
  );
  t.same(bitsToBlocks(Buffer.from([0xff]), 3), [0, 1, 2], 'bits past the count are ignored');
  t.same(blockRuns([1, 2, 3, 7, 9, 10]), [
    [1, 4],
    [7, 8],
    [9, 11],
  ]);
});

t.test('verifyRange rounds sectors to blocks and clamps to the device', async (t) => {
  const size = 1 << 20;
  t.same(verifyRange(undefined, undefined, size), { start: 0, stop: size });
  t.same(verifyRange(9, 17, size), { start: 4096, stop: 12288 });
  t.same(verifyRange(0, 1 << 30, size), { start: 0, stop: size });
  t.throws(() => verifyRange(4096, 8, size), /nothing to verify: start sector 4096/);
  t.throws(() => verifyRange(2048, undefined, size), /not before stop sector 2048/);
  t.equal(chunkAt(0, size), VERIFY_CHUNK);
  t.equal(chunkAt(size - 4096, size), 4096);
});
