import fc from 'fast-check';
import t, { type Test } from 'tap';

import type { AfterSb0pri, AfterSb1pri, AfterSb2pri, RrConflict } from '../../src/config/types.js';
import type { GenerationUuids } from '../../src/meta/superblock.js';
import { UUID_JUST_CREATED } from '../../src/meta/superblock.js';
import {
  finishSyncSource,
  finishSyncTarget,
  formatUuid,
  newCurrentCommand,
  rotateNewCurrent,
  startSyncSource,
  startSyncTarget,
  UUID_NEW_BM_OFFSET,
} from '../../src/meta/uuid.js';
import {
  compareUuids,
  decideHandshake,
  type HandshakeDecision,
  type HandshakeSide,
  mirrorRule,
  type SplitBrainPolicy,
  type UuidComparison,
  type UuidVerdict,
} from '../../src/resource/resync-decision.js';
import type { DiskState, Role } from '../../src/resource/states.js';

const MASK64 = 2n ** 64n - 1n;
const OFF = UUID_NEW_BM_OFFSET;
const gi = (c: bigint, b: bigint, h1: bigint, h2: bigint): GenerationUuids => ({
  current: c,
  bitmap: b,
  history: [h1, h2],
});
const side = (uuids: GenerationUuids, o: Partial<HandshakeSide> = {}): HandshakeSide => ({
  uuids,
  crashedPrimary: false,
  role: 'Secondary',
  disk: 'UpToDate',
  dirtyBits: 0,
  discardMyData: false,
  ...o,
});
const POLICY: SplitBrainPolicy = {
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  alwaysAsbp: false,
  rrConflict: 'disconnect',
};
const pol = (o: Partial<SplitBrainPolicy>): SplitBrainPolicy => ({ ...POLICY, ...o });

// Distinct generations (even: bit 0 clear) for hand-built examples.
const [C1, C2, C3, C4, C5] = [0xc1n, 0xc2n, 0xc3n, 0xc4n, 0xc5n].map((x) => x << 40n);
const [H1, H2] = [0xa1n << 40n, 0xa2n << 40n];
const S = 0x5555_0000_0000_0010n;

function mirrorVerdict(v: UuidVerdict): UuidVerdict {
  return v === 'source' ? 'target' : v === 'target' ? 'source' : v;
}
function mirrorAction(a: HandshakeDecision['action']): HandshakeDecision['action'] {
  return a === 'source' ? 'target' : a === 'target' ? 'source' : a;
}

/** compareUuids both ways: `expected` from a's side, the mirror from b's. */
function compareBoth(
  t: Test,
  a: HandshakeSide,
  b: HandshakeSide,
  tieBreak: boolean,
  expected: { verdict: UuidVerdict; full: boolean; rule: string; repairSelf?: GenerationUuids },
): [UuidComparison, UuidComparison] {
  const ra = compareUuids(a, b, tieBreak);
  const rb = compareUuids(b, a, !tieBreak);
  t.same(
    { verdict: ra.verdict, full: ra.full, rule: ra.rule },
    { verdict: expected.verdict, full: expected.full, rule: expected.rule },
    `${expected.rule}: self`,
  );
  t.same(ra.repairSelf, expected.repairSelf, `${expected.rule}: repair`);
  t.same(
    { verdict: rb.verdict, full: rb.full, rule: rb.rule },
    {
      verdict: mirrorVerdict(expected.verdict),
      full: expected.full,
      rule: mirrorRule(expected.rule),
    },
    `${expected.rule}: mirror`,
  );
  return [ra, rb];
}

t.test('mirrorRule swaps -self and -peer only', async (t) => {
  t.equal(mirrorRule('bitmap-self'), 'bitmap-peer');
  t.equal(mirrorRule('just-created-peer'), 'just-created-self');
  t.equal(mirrorRule('bitmap-both'), 'bitmap-both');
  t.equal(mirrorRule('no-change'), 'no-change');
  t.equal(mirrorRule('unrelated-data'), 'unrelated-data');
});

t.test('every rule, by hand', async (t) => {
  const JC = UUID_JUST_CREATED;
  const X = gi(C2 | 1n, JC, 0n, 0n); // primary --force on a fresh node
  compareBoth(t, side(gi(JC, 0n, 0n, 0n)), side(gi(JC, 0n, 0n, 0n)), true, {
    verdict: 'no-sync',
    full: false,
    rule: 'just-created-both',
  });
  compareBoth(t, side(gi(0n, 0n, 0n, 0n)), side(gi(JC | 1n, 0n, 0n, 0n)), false, {
    verdict: 'no-sync',
    full: false,
    rule: 'just-created-both',
  });
  compareBoth(t, side(gi(JC, 0n, 0n, 0n)), side(X), true, {
    verdict: 'target',
    full: true,
    rule: 'just-created-self',
  });
  compareBoth(t, side(X), side(gi(1n, 0n, H1, 0n)), true, {
    verdict: 'source',
    full: true,
    rule: 'just-created-peer',
  });

  // Equal currents: one side still holds a bitmap UUID.
  const srcUnfinished = gi(C2, S, C1, H1);
  const tgtFinished = gi(C2, 0n, S, C1);
  compareBoth(t, side(srcUnfinished), side(tgtFinished), true, {
    verdict: 'source',
    full: false,
    rule: 'missed-finish-self',
    repairSelf: gi(C2, 0n, S, C1),
  });
  compareBoth(t, side(tgtFinished), side(gi(C2 | 1n, S | 1n, C1, H1)), true, {
    verdict: 'target',
    full: false,
    rule: 'missed-finish-peer',
  });
  compareBoth(t, side(gi(C2, S, C1, H1)), side(gi(C2, 0n, H1, H2)), false, {
    verdict: 'source',
    full: false,
    rule: 'unwritten-sync-uuid-peer',
  });
  compareBoth(t, side(gi(C2, 0n, H1, H2)), side(gi(C2, S, C1, H1)), false, {
    verdict: 'target',
    full: false,
    rule: 'unwritten-sync-uuid-self',
  });

  // Equal currents, clean bitmaps: crashed primaries.
  const same = gi(C1, 0n, H1, H2);
  const crashed: Partial<HandshakeSide> = { crashedPrimary: true };
  const primary: Partial<HandshakeSide> = { role: 'Primary' };
  compareBoth(t, side(same), side(same), true, {
    verdict: 'no-sync',
    full: false,
    rule: 'no-change',
  });
  compareBoth(t, side(same, primary), side(same), false, {
    verdict: 'no-sync',
    full: false,
    rule: 'no-change',
  });
  for (const tb of [false, true]) {
    compareBoth(t, side(same, crashed), side(same), tb, {
      verdict: 'source',
      full: false,
      rule: 'crashed-primary-self',
    });
    compareBoth(t, side(same, { ...crashed, ...primary }), side(same, primary), tb, {
      verdict: 'source',
      full: false,
      rule: 'crashed-primary-self',
    });
    compareBoth(t, side(same, crashed), side(same, primary), tb, {
      verdict: 'target',
      full: false,
      rule: 'current-primary-peer',
    });
    compareBoth(t, side(same, { ...crashed, ...primary }), side(same, crashed), tb, {
      verdict: 'source',
      full: false,
      rule: 'current-primary-self',
    });
    compareBoth(t, side(same, crashed), side(same, crashed), tb, {
      verdict: tb ? 'source' : 'target',
      full: false,
      rule: 'crashed-primary-both',
    });
    compareBoth(
      t,
      side(same, { ...crashed, ...primary }),
      side(same, { ...crashed, ...primary }),
      tb,
      { verdict: tb ? 'source' : 'target', full: false, rule: 'crashed-primary-both' },
    );
  }

  // Different currents.
  compareBoth(t, side(gi(C1, 0n, H1, H2)), side(gi(C2 | 1n, C1 | 1n, H1, H2)), true, {
    verdict: 'target',
    full: false,
    rule: 'bitmap-peer',
  });
  compareBoth(t, side(gi(C2, C1 | 1n, H1, H2)), side(gi(C1 | 1n, 0n, H1, H2)), true, {
    verdict: 'source',
    full: false,
    rule: 'bitmap-self',
  });
  // The peer rotated for a resync to me (B := C1 + 2^48, C1 into history); its sync UUID
  // never arrived, so I still hold C1.
  const rotated = gi(C2, C1 + OFF, C1, H1);
  compareBoth(t, side(gi(C1, 0n, H1, H2)), side(rotated), true, {
    verdict: 'target',
    full: false,
    rule: 'lost-sync-uuid-peer',
  });
  compareBoth(t, side(rotated), side(gi(C1, 0n, H1, H2)), true, {
    verdict: 'source',
    full: false,
    rule: 'lost-sync-uuid-self',
    repairSelf: gi(C2, C1, H1, H1),
  });
  compareBoth(t, side(gi(C1, 0n, H1, H2)), side(gi(C3, C2, C1, H1)), true, {
    verdict: 'target',
    full: true,
    rule: 'history-peer',
  });
  compareBoth(t, side(gi(C3, C2, H2, C1)), side(gi(C1 | 1n, 0n, H1, H2)), true, {
    verdict: 'source',
    full: true,
    rule: 'history-self',
  });
  compareBoth(t, side(gi(C2, C1 | 1n, H1, H2)), side(gi(C3, C1, H1, H2)), true, {
    verdict: 'split-brain-auto',
    full: false,
    rule: 'bitmap-both',
  });
  compareBoth(t, side(gi(C4, C2, C1, H1)), side(gi(C5, C3, H2, C1 | 1n)), true, {
    verdict: 'split-brain',
    full: true,
    rule: 'history-both',
  });
  compareBoth(t, side(gi(C1, C2, H1, H2)), side(gi(C3, C4, C5, S)), true, {
    verdict: 'unrelated',
    full: false,
    rule: 'unrelated-data',
  });
});

t.test('empty and just-created slots never prove ancestry', async (t) => {
  const unrelated = { verdict: 'unrelated', full: false, rule: 'unrelated-data' } as const;
  // K84's rule 100 called two all-zero histories a split brain.
  compareBoth(t, side(gi(C1, 0n, 0n, 0n)), side(gi(C2, 0n, 0n, 0n)), true, unrelated);
  compareBoth(t, side(gi(C1, 1n, 1n, 0n)), side(gi(C2, 0n, 1n, 1n)), true, unrelated);
  // Two disks each force-promoted from create-md: bitmap UUID 4 on both.
  compareBoth(t, side(gi(C1 | 1n, 4n, 0n, 0n)), side(gi(C2 | 1n, 5n, 0n, 0n)), true, unrelated);
  // Two clusters that each finished their initial sync: history ends in 4 on both.
  compareBoth(t, side(gi(C1, 0n, C3, 4n)), side(gi(C2, 0n, C4, 4n)), true, unrelated);
});

t.test('circular ancestry (impossible with random UUIDs) still gives mirror images', async (t) => {
  compareBoth(t, side(gi(C1, C2, 0n, 0n)), side(gi(C2, C1, 0n, 0n)), true, {
    verdict: 'unrelated',
    full: false,
    rule: 'unrelated-data',
  });
  compareBoth(t, side(gi(C1, 0n, C2, 0n)), side(gi(C2, 0n, C1, 0n)), true, {
    verdict: 'unrelated',
    full: false,
    rule: 'unrelated-data',
  });
  // Both bitmap rules hold, so they pass; the history decides.
  compareBoth(t, side(gi(C1, C2, H1, 0n)), side(gi(C2, C1, 0n, C1)), true, {
    verdict: 'target',
    full: true,
    rule: 'history-peer',
  });
});

t.test('drbd.md §3.6.4 worked examples', async (t) => {
  const p = POLICY;
  await t.test('secondary down while the primary keeps writing', async (t) => {
    const a = side(gi(C2 | 1n, C1 | 1n, H1, H2), { role: 'Primary', dirtyBits: 12 });
    const b = side(gi(C1, 0n, H1, H2));
    compareBoth(t, a, b, false, { verdict: 'source', full: false, rule: 'bitmap-self' });
    t.same(decideHandshake(a, b, false, p), {
      action: 'source',
      full: false,
      rule: 'bitmap-self',
      via: [],
    });
    t.same(decideHandshake(b, a, true, p), {
      action: 'target',
      full: false,
      rule: 'bitmap-peer',
      via: [],
    });
  });

  await t.test('primary crashes and the other node is promoted', async (t) => {
    const base = gi(C1, 0n, H1, H2);
    const b = side(rotateNewCurrent(base, true, C2), { role: 'Primary' });
    const a = side(gi(C1 | 1n, 0n, H1, H2), { crashedPrimary: true, disk: 'Consistent' });
    compareBoth(t, b, a, true, { verdict: 'source', full: false, rule: 'bitmap-self' });
    t.equal(decideHandshake(a, b, false, p).action, 'target', "the crashed primary's tail goes");
    t.equal(decideHandshake(b, a, true, p).action, 'source');
  });

  await t.test('primary crashes, nobody promoted, it comes back', async (t) => {
    const a = side(gi(C1 | 1n, 0n, H1, H2), { crashedPrimary: true, dirtyBits: 3 });
    const b = side(gi(C1, 0n, H1, H2));
    for (const tb of [false, true]) {
      compareBoth(t, a, b, tb, { verdict: 'source', full: false, rule: 'crashed-primary-self' });
      t.same(decideHandshake(a, b, tb, p), {
        action: 'source',
        full: false,
        rule: 'crashed-primary-self',
        via: [],
      });
    }
  });

  await t.test('classic split brain, discard-younger-primary', async (t) => {
    const base = gi(C1, 0n, H1, H2);
    // A was Primary when the link died; B was promoted later.
    const aU = rotateNewCurrent({ ...base, current: C1 | 1n }, true, C2);
    const bU = rotateNewCurrent(base, true, C3);
    t.equal(aU.bitmap & 1n, 1n, "A's bitmap UUID says: Primary at the split");
    t.equal(bU.bitmap & 1n, 0n);
    const a = side(aU, { dirtyBits: 5 });
    const b = side(bU, { dirtyBits: 50 });
    compareBoth(t, a, b, false, { verdict: 'split-brain-auto', full: false, rule: 'bitmap-both' });
    const policy = pol({ afterSb0pri: 'discard-younger-primary' });
    for (const tb of [false, true]) {
      t.same(decideHandshake(b, a, tb, policy), {
        action: 'target',
        full: false,
        rule: 'bitmap-both',
        via: ['after-sb-0pri discard-younger-primary'],
      });
      t.same(decideHandshake(a, b, tb, policy), {
        action: 'source',
        full: false,
        rule: 'bitmap-both',
        via: ['after-sb-0pri discard-younger-primary'],
      });
    }
    const d = decideHandshake(a, b, true, POLICY);
    t.equal(d.action, 'disconnect', 'after-sb-0pri disconnect (the default)');
    if (d.action === 'disconnect') {
      t.match(d.reason, /^Split-Brain detected but unresolved \(rule bitmap-both/);
      t.match(d.reason, /connect --discard-my-data on the victim/);
    }
  });

  await t.test('two rounds of split brain: history only', async (t) => {
    // Each side started two generations of its own (promote, then new-current-uuid).
    const base = gi(C1, 0n, H1, H2);
    const a = side(newCurrentCommand(rotateNewCurrent(base, true, C2), true, false, C4), {
      dirtyBits: 9,
    });
    const b = side(newCurrentCommand(rotateNewCurrent(base, true, C3), true, false, C5), {
      dirtyBits: 2,
    });
    t.same(a.uuids, gi(C4 | 1n, C2 | 1n, C1, H1));
    compareBoth(t, a, b, true, { verdict: 'split-brain', full: true, rule: 'history-both' });
    const policy = pol({ afterSb0pri: 'discard-least-changes' });
    const d = decideHandshake(a, b, true, policy);
    t.equal(d.action, 'disconnect', 'no after-sb policy without always-asbp');
    if (d.action === 'disconnect') t.match(d.reason, /always-asbp/);
    t.same(decideHandshake(a, b, true, { ...policy, alwaysAsbp: true }), {
      action: 'source',
      full: true,
      rule: 'history-both',
      via: ['after-sb-0pri discard-least-changes'],
    });
    t.same(decideHandshake(b, a, false, { ...policy, alwaysAsbp: true }), {
      action: 'target',
      full: true,
      rule: 'history-both',
      via: ['after-sb-0pri discard-least-changes'],
    });
  });

  await t.test('node rebuilt with fresh metadata', async (t) => {
    const a = side(gi(UUID_JUST_CREATED, 0n, 0n, 0n), { disk: 'Inconsistent' });
    const b = side(gi(C2 | 1n, C1, H1, H2), { role: 'Primary' });
    compareBoth(t, a, b, true, { verdict: 'target', full: true, rule: 'just-created-self' });
    t.same(decideHandshake(a, b, true, p), {
      action: 'target',
      full: true,
      rule: 'just-created-self',
      via: [],
    });
  });

  await t.test('connection lost exactly at the end of a resync', async (t) => {
    // Secondary outage, then a resync from A to B.
    const aStart = startSyncSource(gi(C2 | 1n, C1 | 1n, H1, H2));
    const bSyncing = startSyncTarget(gi(C1, 0n, H1, H2), aStart.syncUuid, false);
    const aDone = finishSyncSource(aStart.uuids);
    const bDone = finishSyncTarget(aDone, false);
    // B finished, A's finish was lost with the connection.
    const a = side(aStart.uuids, { role: 'Primary' });
    const b = side(bDone);
    const [ra] = compareBoth(t, a, b, true, {
      verdict: 'source',
      full: false,
      rule: 'missed-finish-self',
      repairSelf: aDone,
    });
    t.same(decideHandshake(a, b, true, p), {
      action: 'source',
      full: false,
      rule: 'missed-finish-self',
      via: [],
      repairSelf: aDone,
    });
    // Once A persists the repair, the tuples agree.
    compareBoth(t, side(ra.repairSelf!), b, true, {
      verdict: 'no-sync',
      full: false,
      rule: 'no-change',
    });
    // The other order: A finished, B still holds the sync UUID as its current. A's bitmap no
    // longer tracks against B's generation, so the safe answer is a full resync.
    compareBoth(t, side(bSyncing, { disk: 'Inconsistent' }), side(aDone), true, {
      verdict: 'target',
      full: true,
      rule: 'history-peer',
    });
  });
});

t.test('drbd.md §3.5 worked examples end to end', async (t) => {
  await t.test('initial sync', async (t) => {
    const fresh = gi(UUID_JUST_CREATED, 0n, 0n, 0n);
    const X = 0x1234_5678_9abc_def0n;
    const Snew = 0x0bad_cafe_0000_1110n;
    compareBoth(t, side(fresh, { disk: 'Inconsistent' }), side(fresh), true, {
      verdict: 'no-sync',
      full: false,
      rule: 'just-created-both',
    });
    let a = rotateNewCurrent(fresh, true, X); // primary --force
    let b = fresh;
    const A = (u: GenerationUuids) => side(u, { role: 'Primary' });
    const B = (u: GenerationUuids, disk: DiskState = 'Inconsistent') => side(u, { disk });
    compareBoth(t, A(a), B(b), true, { verdict: 'source', full: true, rule: 'just-created-peer' });
    t.same(decideHandshake(B(b), A(a), false, POLICY), {
      action: 'target',
      full: true,
      rule: 'just-created-self',
      via: [],
    });
    const start = startSyncSource(a, Snew);
    a = start.uuids;
    b = startSyncTarget(b, start.syncUuid, false);
    // The connection breaks mid-resync and comes back: resume from A's bitmap.
    compareBoth(t, A(a), B(b), true, { verdict: 'source', full: false, rule: 'bitmap-self' });
    t.same(decideHandshake(B(b), A(a), false, POLICY), {
      action: 'target',
      full: false,
      rule: 'bitmap-peer',
      via: [],
    });
    a = finishSyncSource(a);
    b = finishSyncTarget(a, false);
    t.same(b, gi(X, 0n, Snew, UUID_JUST_CREATED), 'both X:0:S:4');
    compareBoth(t, A(a), B(b, 'UpToDate'), true, {
      verdict: 'no-sync',
      full: false,
      rule: 'no-change',
    });
  });

  await t.test('secondary outage', async (t) => {
    let a = gi(C1 | 1n, 0n, H1, H2);
    let b = gi(C1, 0n, H1, H2);
    const A = (u: GenerationUuids) => side(u, { role: 'Primary' });
    const B = (u: GenerationUuids, disk: DiskState = 'Outdated') => side(u, { disk });
    a = rotateNewCurrent(a, true, C2);
    compareBoth(t, A(a), B(b), true, { verdict: 'source', full: false, rule: 'bitmap-self' });
    const start = startSyncSource(a);
    a = start.uuids;
    b = startSyncTarget(b, start.syncUuid, false);
    compareBoth(t, A(a), B(b, 'Inconsistent'), false, {
      verdict: 'source',
      full: false,
      rule: 'bitmap-self',
    });
    t.same(decideHandshake(A(a), B(b, 'Inconsistent'), false, POLICY), {
      action: 'source',
      full: false,
      rule: 'bitmap-self',
      via: [],
    });
    a = finishSyncSource(a);
    b = finishSyncTarget(a, false);
    compareBoth(t, A(a), B(b, 'UpToDate'), false, {
      verdict: 'no-sync',
      full: false,
      rule: 'no-change',
    });
  });
});

t.test('decideHandshake: the steps after the comparison', async (t) => {
  const same = gi(C1, 0n, H1, H2);
  const bmSelf = [side(gi(C2, C1, H1, H2)), side(gi(C1, 0n, H1, H2))] as const;
  const sbAuto = [
    side(gi(C2, C1 | 1n, H1, H2), { dirtyBits: 10 }),
    side(gi(C3, C1, H1, H2), { dirtyBits: 0 }),
  ] as const;
  const sbHist = [side(gi(C4, C2, C1, H1)), side(gi(C5, C3, C1, H1))] as const;

  await t.test('no data on a side: nothing to compare', async (t) => {
    const d = decideHandshake(side(same, { disk: 'Diskless' }), side(same), true, POLICY);
    t.same(d, { action: 'established', full: false, rule: 'diskless-self', via: [] });
    t.equal(
      decideHandshake(side(same), side(same, { disk: 'Diskless' }), true, POLICY).rule,
      'diskless-peer',
    );
    t.equal(
      decideHandshake(
        side(same, { disk: 'Diskless' }),
        side(same, { disk: 'Diskless' }),
        true,
        POLICY,
      ).rule,
      'diskless-both',
    );
  });

  await t.test('unrelated data: disconnect, naming both current UUIDs', async (t) => {
    const d = decideHandshake(
      side(gi(C1, 0n, 0n, 0n)),
      side(gi(C2 | 1n, 0n, 0n, 0n)),
      true,
      POLICY,
    );
    t.equal(d.action, 'disconnect');
    t.equal(d.rule, 'unrelated-data');
    if (d.action === 'disconnect') {
      t.match(d.reason, /^Unrelated data, aborting/);
      t.match(d.reason, formatUuid(C1));
      t.match(d.reason, formatUuid(C2 | 1n));
      t.notMatch(d.reason, /\n/);
    }
  });

  await t.test('disk-state override', async (t) => {
    t.same(decideHandshake(side(same), side(same, { disk: 'Inconsistent' }), true, POLICY), {
      action: 'source',
      full: false,
      rule: 'no-change',
      via: ['disk-state override'],
    });
    t.same(decideHandshake(side(same, { disk: 'Inconsistent' }), side(same), true, POLICY), {
      action: 'target',
      full: false,
      rule: 'no-change',
      via: ['disk-state override'],
    });
    // The UUIDs said "source" for the Inconsistent side: turned round.
    t.same(decideHandshake({ ...bmSelf[0], disk: 'Inconsistent' }, bmSelf[1], true, POLICY), {
      action: 'target',
      full: false,
      rule: 'bitmap-self',
      via: ['disk-state override'],
    });
    // Already the right way: nothing changed, nothing logged.
    t.same(decideHandshake(bmSelf[0], { ...bmSelf[1], disk: 'Inconsistent' }, true, POLICY), {
      action: 'source',
      full: false,
      rule: 'bitmap-self',
      via: [],
    });
    // A split brain settled by the disk states is a full sync, whichever kind.
    for (const [a, b] of [sbAuto, sbHist]) {
      const d = decideHandshake(a, { ...b, disk: 'Inconsistent' }, true, POLICY);
      t.same({ action: d.action, via: d.via }, { action: 'source', via: ['disk-state override'] });
      t.equal(d.action !== 'disconnect' && d.full, true);
    }
    // Both Inconsistent (or neither): no override.
    t.same(
      decideHandshake(
        side(same, { disk: 'Inconsistent' }),
        side(same, { disk: 'Inconsistent' }),
        true,
        POLICY,
      ),
      { action: 'established', full: false, rule: 'no-change', via: [] },
    );
    t.same(
      decideHandshake(side(same, { disk: 'Outdated' }), side(same), true, POLICY).action,
      'established',
    );
  });

  await t.test('after-sb-0pri', async (t) => {
    const [a, b] = sbAuto; // a: older primary, 10 changes; b: younger, 0 changes
    const expect = (p: AfterSb0pri, tb: boolean, action: string, via: string[]) => {
      const d = decideHandshake(a, b, tb, pol({ afterSb0pri: p }));
      t.same({ action: d.action, via: d.via }, { action, via }, `${p} tb=${tb}`);
    };
    for (const tb of [false, true]) {
      expect('discard-younger-primary', tb, 'source', ['after-sb-0pri discard-younger-primary']);
      expect('discard-older-primary', tb, 'target', ['after-sb-0pri discard-older-primary']);
      expect('discard-zero-changes', tb, 'source', ['after-sb-0pri discard-zero-changes']);
      expect('discard-least-changes', tb, 'source', ['after-sb-0pri discard-least-changes']);
      expect('disconnect', tb, 'disconnect', []);
      expect('discard-node-alpha', tb, 'disconnect', []);
    }
    // Both zero changes, or equal counts: the tie-break holder stays source.
    const z = [side(sbAuto[0].uuids), side(sbAuto[1].uuids)] as const;
    for (const p of ['discard-zero-changes', 'discard-least-changes'] as const) {
      t.equal(decideHandshake(z[0], z[1], true, pol({ afterSb0pri: p })).action, 'source');
      t.equal(decideHandshake(z[0], z[1], false, pol({ afterSb0pri: p })).action, 'target');
    }
    const nz = [
      { ...z[0], dirtyBits: 4 },
      { ...z[1], dirtyBits: 6 },
    ] as const;
    t.equal(
      decideHandshake(nz[0], nz[1], true, pol({ afterSb0pri: 'discard-zero-changes' })).action,
      'disconnect',
      'both changed: zero-changes cannot decide',
    );
    t.equal(
      decideHandshake(nz[0], nz[1], true, pol({ afterSb0pri: 'discard-least-changes' })).action,
      'target',
    );
    // Younger/older cannot decide when both bits agree: falls back to least changes.
    const same1 = [
      side(gi(C2, C1 | 1n, H1, H2), { dirtyBits: 4 }),
      side(gi(C3, C1 | 1n, H1, H2), { dirtyBits: 6 }),
    ] as const;
    for (const p of ['discard-younger-primary', 'discard-older-primary'] as const) {
      const d = decideHandshake(same1[0], same1[1], true, pol({ afterSb0pri: p }));
      t.same(
        { action: d.action, via: d.via },
        {
          action: 'target',
          via: [`after-sb-0pri ${p} → discard-least-changes`],
        },
      );
    }
  });

  await t.test('after-sb-1pri and -2pri', async (t) => {
    const [a0, b0] = sbAuto;
    const aPri = { ...a0, role: 'Primary' as Role };
    const bPri = { ...b0, role: 'Primary' as Role };
    const zc = { afterSb0pri: 'discard-zero-changes' as AfterSb0pri }; // b loses
    const run = (a: HandshakeSide, b: HandshakeSide, p: Partial<SplitBrainPolicy>) => {
      const d = decideHandshake(a, b, true, pol(p));
      return { action: d.action, via: d.via };
    };
    t.same(run(aPri, b0, { afterSb1pri: 'discard-secondary' }), {
      action: 'source',
      via: ['after-sb-1pri discard-secondary'],
    });
    t.same(run(a0, bPri, { afterSb1pri: 'discard-secondary' }), {
      action: 'target',
      via: ['after-sb-1pri discard-secondary'],
    });
    t.same(run(aPri, b0, { ...zc, afterSb1pri: 'consensus' }), {
      action: 'source',
      via: ['after-sb-1pri consensus (discard-zero-changes)'],
    });
    t.same(run(a0, bPri, { ...zc, afterSb1pri: 'consensus' }), { action: 'disconnect', via: [] });
    t.same(
      run(a0, bPri, { ...zc, afterSb1pri: 'violently-as0p' }),
      {
        action: 'disconnect',
        via: ['after-sb-1pri violently-as0p (discard-zero-changes)'],
      },
      'the Primary would become target: rr-conflict',
    );
    t.same(run(a0, bPri, { ...zc, afterSb1pri: 'violently-as0p', rrConflict: 'violently' }), {
      action: 'source',
      via: ['after-sb-1pri violently-as0p (discard-zero-changes)', 'rr-conflict violently'],
    });
    t.same(run(aPri, b0, { ...zc, afterSb1pri: 'call-pri-lost-after-sb' }), {
      action: 'disconnect',
      via: [],
    });
    t.same(run(aPri, bPri, { ...zc, afterSb2pri: 'violently-as0p', rrConflict: 'violently' }), {
      action: 'source',
      via: ['after-sb-2pri violently-as0p (discard-zero-changes)', 'rr-conflict violently'],
    });
    t.same(run(aPri, bPri, { ...zc, afterSb2pri: 'violently-as0p' }).action, 'disconnect');
    t.same(run(aPri, bPri, { ...zc, afterSb1pri: 'discard-secondary' }).action, 'disconnect');
  });

  await t.test('--discard-my-data', async (t) => {
    const [a, b] = sbAuto;
    const victim = { ...b, discardMyData: true };
    t.same(decideHandshake(a, victim, true, POLICY), {
      action: 'source',
      full: false,
      rule: 'bitmap-both',
      via: ['discard-my-data'],
    });
    t.same(decideHandshake(victim, a, false, POLICY), {
      action: 'target',
      full: false,
      rule: 'bitmap-both',
      via: ['discard-my-data'],
    });
    // History-only split brain: full (DRBD 9; K84 made it bitmap-based).
    const hv = { ...sbHist[1], discardMyData: true };
    t.same(decideHandshake(hv, sbHist[0], true, POLICY), {
      action: 'target',
      full: true,
      rule: 'history-both',
      via: ['discard-my-data'],
    });
    const both = decideHandshake({ ...a, discardMyData: true }, victim, true, POLICY);
    t.equal(both.action, 'disconnect');
    if (both.action === 'disconnect') t.match(both.reason, /both sides set --discard-my-data/);
    // A victim that is Primary hits rr-conflict.
    t.equal(decideHandshake({ ...victim, role: 'Primary' }, a, true, POLICY).action, 'disconnect');

    // Reverting a normal resync: the would-be source asked to discard its data.
    const [src, tgt] = bmSelf;
    t.same(decideHandshake({ ...src, discardMyData: true }, tgt, true, POLICY), {
      action: 'target',
      full: false,
      rule: 'bitmap-self',
      via: ['discard-my-data (reverting to older data)'],
    });
    t.same(decideHandshake(tgt, { ...src, discardMyData: true }, true, POLICY), {
      action: 'source',
      full: false,
      rule: 'bitmap-peer',
      via: ['discard-my-data (reverting to older data)'],
    });
    for (const disk of ['Outdated', 'Inconsistent'] as const) {
      t.equal(
        decideHandshake({ ...src, discardMyData: true }, { ...tgt, disk }, true, POLICY).action,
        'source',
        `not onto ${disk} data`,
      );
    }
    // The target asking for it changes nothing; nor does the flag on both sides.
    t.same(decideHandshake(src, { ...tgt, discardMyData: true }, true, POLICY).via, []);
    t.same(
      decideHandshake(
        { ...src, discardMyData: true },
        { ...tgt, discardMyData: true },
        true,
        POLICY,
      ).action,
      'source',
    );
    // A policy's answer is reverted too when the flag says otherwise.
    const zc = pol({ afterSb0pri: 'discard-zero-changes' });
    t.same(decideHandshake({ ...a, discardMyData: true }, b, true, zc).via, [
      'after-sb-0pri discard-zero-changes',
      'discard-my-data (reverting to older data)',
    ]);
  });

  await t.test('refusals: Inconsistent source, Primary target', async (t) => {
    const [src, tgt] = bmSelf;
    const inc = decideHandshake(
      { ...src, disk: 'Inconsistent' },
      { ...tgt, disk: 'Inconsistent' },
      true,
      POLICY,
    );
    t.equal(inc.action, 'disconnect');
    if (inc.action === 'disconnect')
      t.match(inc.reason, /^I shall become SyncSource, but my disk is Inconsistent/);
    const incPeer = decideHandshake(
      { ...tgt, disk: 'Inconsistent' },
      { ...src, disk: 'Inconsistent' },
      false,
      POLICY,
    );
    t.equal(incPeer.action, 'disconnect');
    if (incPeer.action === 'disconnect')
      t.match(incPeer.reason, /^The peer would become SyncSource/);

    const priTgt = { ...tgt, role: 'Primary' as Role };
    for (const rr of [
      'disconnect',
      'call-pri-lost',
      'retry-connect',
      'auto-discard',
    ] as RrConflict[]) {
      const d = decideHandshake(priTgt, src, false, pol({ rrConflict: rr }));
      t.equal(d.action, 'disconnect', rr);
      if (d.action === 'disconnect') {
        t.match(d.reason, /^I shall become SyncTarget, but I am Primary/);
        t.match(d.reason, `rr-conflict ${rr}`);
      }
      const m = decideHandshake(src, priTgt, true, pol({ rrConflict: rr }));
      t.equal(m.action, 'disconnect');
      if (m.action === 'disconnect') t.match(m.reason, /^The peer would become SyncTarget/);
    }
    t.same(decideHandshake(priTgt, src, false, pol({ rrConflict: 'violently' })), {
      action: 'target',
      full: false,
      rule: 'bitmap-peer',
      via: ['rr-conflict violently'],
    });
    // A Primary whose data is not at least Consistent has nothing to protect.
    t.equal(decideHandshake({ ...priTgt, disk: 'Outdated' }, src, false, POLICY).action, 'target');
  });
});

// ---------------------------------------------------------------------------------------
// Properties. UUIDs come from a small pool so that equalities, 2^48 relations (including one
// that wraps at 64 bits), zeros and just-created values happen often; bit 0 is random.

const X = 0x1234_5678_9abc_def0n;
const Y = 0x0fed_cba9_8765_4320n;
const W = 2n ** 64n - 2n ** 47n;
const POOL = [
  0n,
  UUID_JUST_CREATED,
  X,
  (X + OFF) & MASK64,
  Y,
  (Y + OFF) & MASK64,
  W,
  (W + OFF) & MASK64,
];
const uuidArb = fc
  .tuple(fc.constantFrom(...POOL), fc.boolean())
  .map(([u, bit]) => (bit ? u | 1n : u));
const tupleArb = fc
  .tuple(uuidArb, fc.oneof(fc.constant(0n), uuidArb), uuidArb, uuidArb)
  .map(([c, b, h1, h2]) => gi(c, b, h1, h2));
/**
 * Pairs of tuples with a shared past: both start from one tuple and then live through the
 * rotations of §3.5, alone or together, including the half-finished resyncs that the repair
 * rules are about. Fresh UUIDs come from the pool too, so unrelated values still collide.
 */
type Op =
  | { op: 'rotate' | 'new-current'; who: 0 | 1; fresh: bigint; primary: boolean }
  | { op: 'resync' | 'resync-lost'; fresh: bigint; primary: boolean }
  | { op: 'finish' | 'finish-source-only' | 'finish-target-only'; primary: boolean }
  | { op: 'swap' };
const freshArb = uuidArb.filter((u) => u >> 3n !== 0n);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constantFrom('rotate' as const, 'new-current' as const),
    who: fc.constantFrom(0 as const, 1 as const),
    fresh: freshArb,
    primary: fc.boolean(),
  }),
  fc.record({
    op: fc.constantFrom('resync' as const, 'resync-lost' as const),
    fresh: freshArb,
    primary: fc.boolean(),
  }),
  fc.record({
    op: fc.constantFrom(
      'finish' as const,
      'finish-source-only' as const,
      'finish-target-only' as const,
    ),
    primary: fc.boolean(),
  }),
  fc.constant({ op: 'swap' as const }),
);
function live(start: GenerationUuids, ops: Op[]): [GenerationUuids, GenerationUuids] {
  let [a, b] = [start, start];
  for (const o of ops) {
    switch (o.op) {
      case 'rotate':
      case 'new-current': {
        const f = (u: GenerationUuids) =>
          o.op === 'rotate'
            ? rotateNewCurrent(u, o.primary, o.fresh)
            : newCurrentCommand(u, o.primary, false, o.fresh);
        if (o.who === 0) a = f(a);
        else b = f(b);
        break;
      }
      case 'resync':
      case 'resync-lost': {
        const s = startSyncSource(a, o.fresh);
        a = s.uuids;
        if (o.op === 'resync') b = startSyncTarget(b, s.syncUuid, o.primary);
        break;
      }
      case 'finish':
        a = finishSyncSource(a);
        b = finishSyncTarget(a, o.primary);
        break;
      case 'finish-source-only':
        a = finishSyncSource(a);
        break;
      case 'finish-target-only':
        b = finishSyncTarget(finishSyncSource(a), o.primary);
        break;
      case 'swap':
        [a, b] = [b, a];
    }
  }
  return [a, b];
}
const tuplePairArb: fc.Arbitrary<[GenerationUuids, GenerationUuids]> = fc.oneof(
  fc.tuple(tupleArb, tupleArb),
  fc.tuple(tupleArb, fc.array(opArb, { maxLength: 5 })).map(([t0, ops]) => live(t0, ops)),
);
const DISKS: DiskState[] = ['Diskless', 'Inconsistent', 'Outdated', 'Consistent', 'UpToDate'];
const flagsArb = fc.record({
  crashedPrimary: fc.boolean(),
  role: fc.constantFrom<Role>('Primary', 'Secondary'),
  disk: fc.constantFrom(...DISKS),
  dirtyBits: fc.constantFrom(0, 1, 7),
  discardMyData: fc.boolean(),
});
const pairArb: fc.Arbitrary<[HandshakeSide, HandshakeSide]> = fc
  .tuple(tuplePairArb, flagsArb, flagsArb)
  .map(([[ua, ub], fa, fb]) => [
    { uuids: ua, ...fa },
    { uuids: ub, ...fb },
  ]);
const A0: AfterSb0pri[] = [
  'disconnect',
  'discard-younger-primary',
  'discard-older-primary',
  'discard-zero-changes',
  'discard-least-changes',
  'discard-node-alpha',
];
const A1: AfterSb1pri[] = [
  'disconnect',
  'consensus',
  'discard-secondary',
  'call-pri-lost-after-sb',
  'violently-as0p',
];
const A2: AfterSb2pri[] = ['disconnect', 'call-pri-lost-after-sb', 'violently-as0p'];
const RR: RrConflict[] = [
  'disconnect',
  'call-pri-lost',
  'violently',
  'retry-connect',
  'auto-discard',
];
const policyArb: fc.Arbitrary<SplitBrainPolicy> = fc.record({
  afterSb0pri: fc.constantFrom(...A0),
  afterSb1pri: fc.constantFrom(...A1),
  afterSb2pri: fc.constantFrom(...A2),
  alwaysAsbp: fc.boolean(),
  rrConflict: fc.constantFrom(...RR),
});

const ALL_RULES = [
  'just-created-both',
  'just-created-self',
  'just-created-peer',
  'missed-finish-self',
  'missed-finish-peer',
  'unwritten-sync-uuid-self',
  'unwritten-sync-uuid-peer',
  'current-primary-self',
  'current-primary-peer',
  'crashed-primary-self',
  'crashed-primary-peer',
  'crashed-primary-both',
  'no-change',
  'bitmap-peer',
  'bitmap-self',
  'lost-sync-uuid-peer',
  'lost-sync-uuid-self',
  'history-peer',
  'history-self',
  'bitmap-both',
  'history-both',
  'unrelated-data',
];

t.test('MIRROR: compareUuids from both sides gives mirror images', async (t) => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(pairArb, fc.boolean(), ([a, b], tb) => {
      const ra = compareUuids(a, b, tb);
      const rb = compareUuids(b, a, !tb);
      seen.set(ra.rule, (seen.get(ra.rule) ?? 0) + 1);
      return (
        rb.verdict === mirrorVerdict(ra.verdict) &&
        rb.full === ra.full &&
        rb.rule === mirrorRule(ra.rule)
      );
    }),
    { numRuns: 10_000 },
  );
  t.same(
    ALL_RULES.filter((r) => !seen.has(r)),
    [],
    'the generator reaches every rule',
  );
  t.same(
    [...seen.keys()].filter((r) => !ALL_RULES.includes(r)),
    [],
    'no undocumented rule',
  );
});

t.test('MIRROR: decideHandshake from both sides gives mirror images', async (t) => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(pairArb, fc.boolean(), policyArb, ([a, b], tb, p) => {
      const da = decideHandshake(a, b, tb, p);
      const db = decideHandshake(b, a, !tb, p);
      seen.set(da.action, (seen.get(da.action) ?? 0) + 1);
      for (const v of da.via) seen.set(v.split(' ')[0]!, 1);
      if (db.action !== mirrorAction(da.action)) return false;
      if (db.rule !== mirrorRule(da.rule)) return false;
      if (JSON.stringify(db.via) !== JSON.stringify(da.via)) return false;
      if (da.action !== 'disconnect' && db.action !== 'disconnect' && da.full !== db.full)
        return false;
      if (da.action === 'established' && da.full) return false;
      if (da.action === 'disconnect' && (db.action !== 'disconnect' || /\n/.test(da.reason)))
        return false;
      return true;
    }),
    { numRuns: 10_000 },
  );
  for (const k of [
    'established',
    'source',
    'target',
    'disconnect',
    'disk-state',
    'after-sb-0pri',
    'after-sb-1pri',
    'after-sb-2pri',
    'discard-my-data',
    'rr-conflict',
  ]) {
    t.ok(seen.has(k), `the generator reaches ${k}`);
  }
});

t.test('bit 0 never changes a verdict (except the younger/older-primary policies)', async (t) => {
  const flipArb = fc.array(fc.boolean(), { minLength: 8, maxLength: 8 });
  const flip = (s: HandshakeSide, f: boolean[]): HandshakeSide => {
    const x = (u: bigint, i: number) => (f[i] ? u ^ 1n : u);
    const u = s.uuids;
    return {
      ...s,
      uuids: gi(x(u.current, 0), x(u.bitmap, 1), x(u.history[0], 2), x(u.history[1], 3)),
    };
  };
  fc.assert(
    fc.property(pairArb, fc.boolean(), policyArb, flipArb, ([a, b], tb, p, f) => {
      const a2 = flip(a, f);
      const b2 = flip(b, f.slice(4));
      const r1 = compareUuids(a, b, tb);
      const r2 = compareUuids(a2, b2, tb);
      if (r1.verdict !== r2.verdict || r1.rule !== r2.rule || r1.full !== r2.full) return false;
      if (p.afterSb0pri === 'discard-younger-primary' || p.afterSb0pri === 'discard-older-primary')
        return true;
      const d1 = decideHandshake(a, b, tb, p);
      const d2 = decideHandshake(a2, b2, tb, p);
      return (
        d1.action === d2.action &&
        d1.rule === d2.rule &&
        (d1.action === 'disconnect' || d2.action === 'disconnect' || d1.full === d2.full)
      );
    }),
    { numRuns: 10_000 },
  );
  t.pass('held');
});

t.test('a repaired tuple needs no further repair and stays related', async (t) => {
  // After the repair the pair compares like any pair that never lost the event: the same
  // generation (then the crashed-primary rules may still pick a direction) or a bitmap resync.
  const plain = ['bitmap-self', 'no-change', 'current-primary-self', 'current-primary-peer'];
  plain.push('crashed-primary-self', 'crashed-primary-peer', 'crashed-primary-both');
  let repairs = 0;
  fc.assert(
    fc.property(pairArb, fc.boolean(), ([a, b], tb) => {
      const r = compareUuids(a, b, tb);
      if (r.repairSelf === undefined) return true;
      repairs++;
      const again = compareUuids({ ...a, uuids: r.repairSelf }, b, tb);
      return r.verdict === 'source' && again.repairSelf === undefined && plain.includes(again.rule);
    }),
    { numRuns: 10_000 },
  );
  t.ok(repairs > 20, `${repairs} repairs checked`);
});

t.test('exhaustive: every policy combination on a fixed split-brain pair', async (t) => {
  // a was Primary at the split (bitmap UUID bit 0 set) and changed 10 blocks; b changed none.
  // So every deciding 0pri policy sacrifices b, except discard-older-primary.
  const pairs = {
    'bitmap-both': [gi(C2 | 1n, C1 | 1n, H1, H2), gi(C3, C1, H1, H2)],
    'history-both': [gi(C4, C2 | 1n, C1, H1), gi(C5, C3, C1, H1)],
  } as const;
  const failures: string[] = [];
  let cases = 0;
  for (const [rule, [ua, ub]] of Object.entries(pairs))
    for (const roleA of ['Primary', 'Secondary'] as Role[])
      for (const roleB of ['Primary', 'Secondary'] as Role[])
        for (const dA of [false, true])
          for (const dB of [false, true])
            for (const p0 of A0)
              for (const p1 of A1)
                for (const p2 of A2)
                  for (const alwaysAsbp of [false, true])
                    for (const rrConflict of RR)
                      for (const tb of [false, true]) {
                        cases++;
                        const a = side(ua, { role: roleA, discardMyData: dA, dirtyBits: 10 });
                        const b = side(ub, { role: roleB, discardMyData: dB, dirtyBits: 0 });
                        const policy = {
                          afterSb0pri: p0,
                          afterSb1pri: p1,
                          afterSb2pri: p2,
                          alwaysAsbp,
                          rrConflict,
                        };
                        // The expectation, from a's side, written out case by case.
                        const aPri = roleA === 'Primary';
                        const nPri = (aPri ? 1 : 0) + (roleB === 'Primary' ? 1 : 0);
                        const as0p: 'source' | 'target' | null =
                          p0 === 'discard-older-primary'
                            ? 'target'
                            : p0 === 'disconnect' || p0.startsWith('discard-node-')
                              ? null
                              : 'source';
                        let asb: 'source' | 'target' | null = null;
                        if (rule === 'bitmap-both' || alwaysAsbp) {
                          if (nPri === 0) asb = as0p;
                          else if (nPri === 1) {
                            if (p1 === 'discard-secondary') asb = aPri ? 'source' : 'target';
                            else if (p1 === 'violently-as0p') asb = as0p;
                            else if (p1 === 'consensus')
                              asb = as0p !== null && (as0p === 'source') === aPri ? as0p : null;
                          } else if (p2 === 'violently-as0p') asb = as0p;
                        }
                        let want: string;
                        if (asb === null) {
                          want =
                            dA && dB ? 'disconnect' : dA ? 'target' : dB ? 'source' : 'disconnect';
                        } else {
                          want = asb;
                          if (dA !== dB && (asb === 'source') === dA)
                            want = dA ? 'target' : 'source';
                        }
                        const targetPri = want === 'target' ? aPri : roleB === 'Primary';
                        if (want !== 'disconnect' && targetPri && rrConflict !== 'violently')
                          want = 'disconnect';
                        const got = decideHandshake(a, b, tb, policy);
                        const mirror = decideHandshake(b, a, !tb, policy);
                        const full = got.action !== 'disconnect' && got.full;
                        const label = `${rule} ${roleA}/${roleB} discard ${dA}/${dB} ${p0} ${p1} ${p2} asbp=${alwaysAsbp} rr=${rrConflict} tb=${tb}`;
                        if (got.action !== want)
                          failures.push(`${label}: ${got.action}, want ${want}`);
                        else if (want !== 'disconnect' && full !== (rule === 'history-both'))
                          failures.push(`${label}: full=${full}`);
                        else if (mirror.action !== mirrorAction(got.action))
                          failures.push(`${label}: mirror ${mirror.action}`);
                        else if (got.rule !== rule) failures.push(`${label}: rule ${got.rule}`);
                      }
  t.equal(cases, 2 * 4 * 4 * A0.length * A1.length * A2.length * 2 * RR.length * 2);
  t.same(failures.slice(0, 20), [], `${failures.length} failures`);
});

t.test('never throws, even on values no superblock would hold', async (t) => {
  const odd = [-1n, 2n ** 64n, 2n ** 70n + 3n];
  for (const c of odd)
    for (const dirtyBits of [Number.NaN, -1, Infinity]) {
      const a = side(gi(c, c, c, c), { dirtyBits, crashedPrimary: true });
      const b = side(gi(C1, c, 0n, c), { dirtyBits: 0, discardMyData: true });
      for (const p0 of A0) {
        const policy = pol({ afterSb0pri: p0, alwaysAsbp: true });
        t.doesNotThrow(() => decideHandshake(a, b, true, policy));
        t.doesNotThrow(() => decideHandshake(a, side(gi(c, 0n, 0n, 0n)), false, policy));
      }
    }
});
