import fc from 'fast-check';
import t from 'tap';

import type { GenerationUuids, MetaFlags, Superblock } from '../../src/meta/store.js';
import { noFlags as newFlags, UUID_JUST_CREATED } from '../../src/meta/store.js';
import {
  clearBitmapUuid,
  finishSyncSource,
  finishSyncTarget,
  formatGi,
  formatUuid,
  newCurrentCommand,
  newUuid,
  parseUuid,
  rotateNewCurrent,
  sameGeneration,
  showGi,
  startSyncSource,
  startSyncTarget,
  UUID_NEW_BM_OFFSET,
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

/** Equal tuples once bit 0 of every UUID is masked. */
const masked = (u: GenerationUuids): GenerationUuids =>
  gi(u.current & ~1n, u.bitmap & ~1n, u.history[0] & ~1n, u.history[1] & ~1n);

t.test('startSyncSource: S := B + 2^48 (or fresh), B into history, B := S', async (t) => {
  t.equal(UUID_NEW_BM_OFFSET, 2n ** 48n);
  const r = startSyncSource(gi(0xc2n, 0xc1n, 0xa1n, 0xa2n), 0xf0n);
  t.equal(r.syncUuid, 0xc1n + 2n ** 48n, 'derived from B, the fresh value unused');
  t.same(r.uuids, gi(0xc2n, 0xc1n + 2n ** 48n, 0xc1n, 0xa1n));
  t.equal(
    startSyncSource(gi(0xc2n, 0xc1n | 1n, 0n, 0n), 0xf0n).syncUuid,
    (0xc1n | 1n) + 2n ** 48n,
    "B's Primary bit is kept",
  );
  const wrap = 2n ** 64n - 2n ** 47n;
  t.equal(startSyncSource(gi(0xc2n, wrap, 0n, 0n)).syncUuid, 2n ** 47n, 'wraps at 64 bits');
  for (const b of [4n, 5n]) {
    const j = startSyncSource(gi(0xc2n, b, 0n, 0n), 0xf0n);
    t.equal(j.syncUuid, 0xf0n, `B = ${b} (just created): fresh`);
    t.same(j.uuids, gi(0xc2n, 0xf0n, b, 0n), 'and the just-created value goes to history');
  }
  const z = startSyncSource(gi(0xc2n, 0n, 0xa1n, 0xa2n), 0xf0n);
  t.same(z.uuids, gi(0xc2n, 0xf0n, 0xa1n, 0xa2n), 'B = 0: fresh S, nothing pushed');
  t.equal(startSyncSource(gi(0xc2n, 1n, 0n, 0n), 0xf0n).syncUuid, 0xf0n, 'bit 0 masked');
  t.not(startSyncSource(gi(0xc2n, 0n, 0n, 0n)).syncUuid & ~1n, 0n, 'random by default');
});

t.test('startSyncTarget / finishSyncSource', async (t) => {
  const before = gi(0xb0n, 0xbbn, 0xa1n, 0xa2n);
  t.same(startSyncTarget(before, 0x5550n, false), gi(0x5550n, 0n, 0xa1n, 0xa2n));
  t.same(startSyncTarget(before, 0x5550n, true), gi(0x5551n, 0n, 0xa1n, 0xa2n));
  t.same(startSyncTarget(before, 0x5551n, false), gi(0x5550n, 0n, 0xa1n, 0xa2n));
  t.same(finishSyncSource(gi(0xc2n, 0x55n, 0xc1n, 0xa1n)), gi(0xc2n, 0n, 0x55n, 0xc1n));
  t.same(before, gi(0xb0n, 0xbbn, 0xa1n, 0xa2n), 'inputs are not modified');
});

t.test('worked example: initial sync (drbd.md §3.5)', async (t) => {
  const X = 0x1234_5678_9abc_def0n;
  const S = 0x0bad_cafe_0000_1110n;
  const fresh = gi(UUID_JUST_CREATED, 0n, 0n, 0n);
  // 1. primary --force on A.
  let a = rotateNewCurrent(fresh, true, X);
  let b = fresh;
  t.same(a, gi(X | 1n, 4n, 0n, 0n), 'A = X:4:0:0');
  // 3. Resync start: B was just created, so S is random.
  const start = startSyncSource(a, S);
  a = start.uuids;
  b = startSyncTarget(b, start.syncUuid, false);
  t.same(a, gi(X | 1n, S, 4n, 0n), 'A = X:S:4:0');
  t.same(b, gi(S, 0n, 0n, 0n), 'B = S:0:0:0');
  // 4. Resync end: both X:0:S:4.
  a = finishSyncSource(a);
  b = finishSyncTarget(a, false);
  t.same(a, gi(X | 1n, 0n, S, 4n), 'A = X:0:S:4 (Primary bit set)');
  t.same(b, gi(X, 0n, S, 4n), 'B = X:0:S:4');
});

t.test('worked example: secondary outage (drbd.md §3.5)', async (t) => {
  const [C1, C2, H1, H2] = [
    0xc1c1_0000_0000_0010n,
    0xc2c2_0000_0000_0020n,
    0xa1n << 8n,
    0xa2n << 8n,
  ];
  let a = gi(C1 | 1n, 0n, H1, H2);
  let b = gi(C1, 0n, H1, H2);
  // 1. The link drops while A is Primary.
  a = rotateNewCurrent(a, true, C2);
  t.same(a, gi(C2 | 1n, C1 | 1n, H1, H2), 'A = C2:C1:H1:H2, bit 0 of C1 set');
  // 3. During the resync.
  const start = startSyncSource(a);
  const S = (C1 | 1n) + 2n ** 48n;
  t.equal(start.syncUuid, S, 'S = C1 + 2^48');
  a = start.uuids;
  b = startSyncTarget(b, start.syncUuid, false);
  t.same(a, gi(C2 | 1n, S, C1 | 1n, H1), 'A = C2:S:C1:H1');
  t.same(b, gi(S & ~1n, 0n, H1, H2), 'B = S:0:H1:H2');
  // 4. At the end both C2:0:S:C1.
  a = finishSyncSource(a);
  b = finishSyncTarget(a, false);
  t.same(masked(a), gi(C2, 0n, S & ~1n, C1), 'A = C2:0:S:C1');
  t.same(masked(b), masked(a), 'B = A');
  t.equal(b.current, C2, "B's current carries B's (Secondary) bit");
});

t.test("finishSyncTarget equals DRBD's replay on the target (drbd.md §3.5)", async () => {
  // DRBD's target at resync end, as drbd.md §3.5 describes it: take B, H1, H2 from the
  // source's tuple learned at the handshake, push its own current through the bitmap slot
  // into history, adopt the source's current, then clear the bitmap UUID.
  const drbdTargetFinish = (src: GenerationUuids, own: GenerationUuids, primary: boolean) => {
    let x = gi(own.current, src.bitmap, src.history[0], src.history[1]);
    x =
      x.bitmap === 0n
        ? { ...x, bitmap: own.current }
        : gi(x.current, own.current, x.bitmap, x.history[0]);
    x = { ...x, current: withPrimaryBit(src.current, primary) };
    return clearBitmapUuid(x);
  };
  fc.assert(
    fc.property(
      u64,
      fc.oneof(u64, fc.constantFrom(0n, 1n, 4n, 5n)),
      u64,
      u64,
      // What newUuid can return: never 0 or just-created once bit 0 is masked.
      u64.filter((u) => u >> 3n !== 0n),
      fc.boolean(),
      fc.boolean(),
      (c, b, h1, h2, fresh, srcPrimary, tgtPrimary) => {
        const src = gi(withPrimaryBit(c, srcPrimary), b, h1, h2);
        const started = startSyncSource(src, fresh);
        const target = startSyncTarget(gi(0x77n, 0n, 0x78n, 0x79n), started.syncUuid, tgtPrimary);
        const sourceFinal = finishSyncSource(started.uuids);
        const ours = finishSyncTarget(sourceFinal, tgtPrimary);
        const drbd = drbdTargetFinish(src, target, tgtPrimary);
        const [m, n] = [masked(ours), masked(drbd)];
        return (
          ours.current === drbd.current &&
          ours.bitmap === 0n &&
          m.bitmap === n.bitmap &&
          m.history[0] === n.history[0] &&
          m.history[1] === n.history[1]
        );
      },
    ),
    { numRuns: 2000 },
  );
});
