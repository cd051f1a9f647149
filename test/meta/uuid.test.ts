import fc from 'fast-check';
import t from 'tap';

import type { GenerationUuids, MetaFlags, Superblock } from '../../src/meta/store.js';
import { noFlags as newFlags, UUID_JUST_CREATED } from '../../src/meta/store.js';
import {
  clearBitmapUuid,
  formatGi,
  formatUuid,
  newCurrentCommand,
  newUuid,
  parseUuid,
  rotateNewCurrent,
  sameGeneration,
  showGi,
  withPrimaryBit,
} from '../../src/meta/uuid.js';

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const noFlags: MetaFlags = newFlags();
const gi = (c: bigint, b: bigint, h1: bigint, h2: bigint): GenerationUuids => ({
  current: c,
  bitmap: b,
  history: [h1, h2],
});

t.test('newUuid: random 64-bit, never 0 or just-created (either primary bit)', async (t) => {
  const seen = new Set<bigint>();
  const bad: bigint[] = [];
  for (let i = 0; i < 2000; i++) {
    const u = newUuid();
    if (u < 0n || u >= 2n ** 64n || [0n, 1n, 4n, 5n].includes(u)) bad.push(u);
    seen.add(u);
  }
  t.same(bad, [], 'all in range, none special');
  t.equal(seen.size, 2000, 'no repeats');
  const high = [...seen].filter((u) => u >= 2n ** 63n).length;
  t.ok(high > 800 && high < 1200, `the top bit is random too (${high}/2000)`);
});

t.test('formatUuid / parseUuid', async (t) => {
  t.equal(formatUuid(0n), '0000000000000000');
  t.equal(formatUuid(UUID_JUST_CREATED), '0000000000000004');
  t.equal(formatUuid(0xdeadbeefn), '00000000DEADBEEF');
  t.equal(formatUuid(2n ** 64n - 1n), 'FFFFFFFFFFFFFFFF');
  t.equal(formatUuid(2n ** 63n), '8000000000000000');
  t.throws(() => formatUuid(-1n), RangeError);
  t.throws(() => formatUuid(2n ** 64n), RangeError);
  t.equal(parseUuid('0xdeadBEEF'), 0xdeadbeefn);
  t.equal(parseUuid(' FFFFFFFFFFFFFFFF '), 2n ** 64n - 1n);
  t.equal(parseUuid('4'), 4n);
  for (const bad of ['', '0x', 'xyz', '1FFFFFFFFFFFFFFFF', '-1', '12 34', '0x0x1']) {
    t.throws(() => parseUuid(bad), RangeError, `'${bad}'`);
  }
  fc.assert(fc.property(u64, (u) => parseUuid(formatUuid(u)) === u));
  fc.assert(fc.property(u64, (u) => /^[0-9A-F]{16}$/.test(formatUuid(u))));
});

t.test('sameGeneration masks bit 0; withPrimaryBit sets or clears only bit 0', async (t) => {
  t.ok(sameGeneration(0x10n, 0x11n));
  t.ok(sameGeneration(2n ** 64n - 1n, 2n ** 64n - 2n));
  t.notOk(sameGeneration(0x10n, 0x12n));
  t.notOk(sameGeneration(0n, 2n ** 63n));
  t.equal(withPrimaryBit(0x10n, true), 0x11n);
  t.equal(withPrimaryBit(0x11n, false), 0x10n);
  t.equal(withPrimaryBit(2n ** 64n - 1n, true), 2n ** 64n - 1n);
  fc.assert(fc.property(u64, u64, (a, b) => sameGeneration(a, b) === (a ^ b) < 2n));
  fc.assert(
    fc.property(u64, fc.boolean(), (u, p) => {
      const v = withPrimaryBit(u, p);
      return sameGeneration(u, v) && (v & 1n) === (p ? 1n : 0n) && v < 2n ** 64n;
    }),
  );
});

t.test('rotateNewCurrent: B := C (with its primary bit), C := fresh', async (t) => {
  // drbd.md §3.5 "secondary outage": A holds C1:0:H1:H2 and loses its peer while Primary.
  const before = gi(0xc1n | 1n, 0n, 0xa1n, 0xa2n);
  const after = rotateNewCurrent(before, true, 0xc2n);
  t.same(after, gi(0xc3n, 0xc1n | 1n, 0xa1n, 0xa2n));
  t.same(rotateNewCurrent(before, false, 0xc3n), gi(0xc2n, 0xc1n | 1n, 0xa1n, 0xa2n));
  t.same(before, gi(0xc1n | 1n, 0n, 0xa1n, 0xa2n), 'the input is not modified');
  const random = rotateNewCurrent(before, true);
  t.equal(random.current & 1n, 1n);
  t.notOk(sameGeneration(random.current, before.current));
  // Initial sync, step 1: `primary --force` on a just-created node gives X:4:0:0.
  const forced = rotateNewCurrent(gi(UUID_JUST_CREATED, 0n, 0n, 0n), true, 0x7770n);
  t.same(forced, gi(0x7771n, UUID_JUST_CREATED, 0n, 0n));
});

t.test('new-current-uuid: push B into history, then a new current', async (t) => {
  t.same(
    newCurrentCommand(gi(0xc0n, 0xb0n, 0xa1n, 0xa2n), false, false, 0xd0n),
    gi(0xd0n, 0xc0n, 0xb0n, 0xa1n),
    'H2 := H1, H1 := B, then B := C and a fresh C',
  );
  t.same(
    newCurrentCommand(gi(0xc0n, 0xb0n, 0xa1n, 0xa2n), true, true, 0xd0n),
    gi(0xd1n, 0n, 0xb0n, 0xa1n),
    '--clear-bitmap: the bitmap UUID stays 0',
  );
  t.same(
    newCurrentCommand(gi(0xc0n, 0n, 0xa1n, 0xa2n), false, false, 0xd0n),
    gi(0xd0n, 0xc0n, 0xa1n, 0xa2n),
    'a bitmap UUID of 0 is not pushed (history keeps its generations)',
  );
  // Skip the initial sync: both just created.
  t.same(
    newCurrentCommand(gi(UUID_JUST_CREATED, 0n, 0n, 0n), false, true, 0xe0n),
    gi(0xe0n, 0n, 0n, 0n),
  );
  t.same(clearBitmapUuid(gi(1n, 2n, 3n, 4n)), gi(1n, 0n, 2n, 3n));
  t.same(clearBitmapUuid(gi(1n, 0n, 3n, 4n)), gi(1n, 0n, 3n, 4n));
  fc.assert(
    fc.property(u64, u64, u64, u64, fc.boolean(), fc.boolean(), (c, b, h1, h2, p, clear) => {
      const r = newCurrentCommand(gi(c, b, h1, h2), p, clear);
      const pushed = b === 0n ? [h1, h2] : [b, h1];
      return (
        r.history[0] === pushed[0] &&
        r.history[1] === pushed[1] &&
        r.bitmap === (clear ? 0n : c) &&
        (r.current & 1n) === (p ? 1n : 0n)
      );
    }),
  );
});

const sample: Pick<Superblock, 'uuids' | 'flags' | 'clean' | 'alExtents'> = {
  uuids: gi(0xc1a13e5f2e6d4a8bn, 0n, 0xae3f6deff3de5bc9n, 0xae3e6deff3de5bc9n),
  flags: {
    ...noFlags,
    consistent: true,
    wasUpToDate: true,
    primaryIndicator: true,
    connectedIndicator: true,
    crashedPrimary: true,
    alClean: true,
  },
  clean: true,
  alExtents: 1237,
};

t.test('get-gi: four UUIDs then the flag digits', async (t) => {
  t.equal(
    formatGi(sample),
    'C1A13E5F2E6D4A8B:0000000000000000:AE3F6DEFF3DE5BC9:AE3E6DEFF3DE5BC9:1:1:1:1:0:0:1:1:0',
  );
  t.equal(
    formatGi({
      uuids: gi(4n, 0n, 0n, 0n),
      flags: { ...noFlags, fullSync: true, alDisabled: true, peerOutdated: true },
    }),
    '0000000000000004:0000000000000000:0000000000000000:0000000000000000:0:0:0:0:1:1:0:0:1',
  );
});

t.test('show-gi: every field labelled, arrows under the right digits', async (t) => {
  const out = showGi(sample);
  const lines = out.split('\n');
  t.equal(out.endsWith('\n'), true);
  const giLine = lines.findIndex((l) => l === formatGi(sample));
  t.ok(giLine > 0, 'contains the get-gi line');
  t.match(out, /Current data generation UUID/);
  t.match(out, /Bitmap's base data generation UUID/);
  t.match(out, /younger history UUID/);
  t.match(out, /older history UUID/);
  const labels = [
    'Data consistency flag',
    'Data was/is currently up-to-date',
    'Node was/is currently primary',
    'Node was/is currently connected',
    'setting all bits in the bitmap',
    "peer's disk was out-dated or inconsistent",
    'crashed primary',
    'activity log is clean',
    'al-updates no',
  ];
  const digitCols = [...formatGi(sample)].flatMap((ch, i) => (i >= 68 && ch !== ':' ? [i] : []));
  t.equal(digitCols.length, 9);
  t.equal(lines[giLine + 1], ' '.repeat(68) + digitCols.map(() => '^').join(' '));
  labels.forEach((label, i) => {
    const line = lines[giLine + 2 + i]!;
    t.match(line, label);
    t.equal(line.indexOf('+'), digitCols[i], `"${label}" points at digit ${i + 1}`);
  });
  // The UUID arrows: a 'V' over the middle of each UUID, and each label's '+' above it.
  const mids = [8, 25, 42, 59];
  const arrows = lines[giLine - 1]!;
  t.same(
    [...arrows].flatMap((ch, i) => (ch === 'V' ? [i] : [])),
    mids,
  );
  mids.forEach((col, k) => t.equal(lines[k]!.indexOf('+'), col, `UUID label ${k + 1}`));
  t.match(out, /meta-data: clean\n/);
  t.match(out, /al-extents: 1237\n$/);
  t.match(showGi({ ...sample, clean: false }), /meta-data: unclean \(needs apply-al\)/);
  t.match(
    showGi({ ...sample, clean: false }, { attached: true }),
    /meta-data: in use \(attached to the running urbd\)\n/,
    'the daemon keeps an attached store unclean on purpose: not a hint to run apply-al',
  );
});
