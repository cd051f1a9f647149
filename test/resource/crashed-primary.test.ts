// The crashed-primary flag through its whole life (drbd.md §3.6.2 rule 40/41, §3.6.5, §4.5),
// with the pure rules only: set by a crash as Primary (apply-al), read by the handshake,
// cleared once a link has both disks UpToDate (states.ts). Each scenario plays both nodes
// and checks that both sides decide mirror images, for either holder of the tie-break bit,
// and that the decision is the one DRBD makes.
import t, { type Test } from 'tap';

import { crashedPrimaryAfterCrash } from '../../src/meta/apply-al.js';
import type { GenerationUuids } from '../../src/meta/superblock.js';
import {
  finishSyncSource,
  finishSyncTarget,
  rotateNewCurrent,
  startSyncSource,
  startSyncTarget,
  withPrimaryBit,
} from '../../src/meta/uuid.js';
import {
  decideHandshake,
  type HandshakeSide,
  mirrorRule,
  type SplitBrainPolicy,
} from '../../src/resource/resync-decision.js';
import { type DiskState, keepCrashedPrimary, type Role } from '../../src/resource/states.js';

const POLICY: SplitBrainPolicy = {
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  alwaysAsbp: false,
  rrConflict: 'disconnect',
};

const [C1, C2, H1, H2] = [0xc1n, 0xc2n, 0xa1n, 0xa2n].map((x) => x << 40n);

/** What one node holds: its tuple and flag in the metadata, its role and disk state. */
interface Node {
  name: string;
  uuids: GenerationUuids;
  crashedPrimary: boolean;
  role: Role;
  disk: DiskState;
  /** Set bits (the crashed node's activity-log extents after apply-al). */
  dirtyBits: number;
}

function node(name: string, uuids: GenerationUuids, role: Role = 'Secondary'): Node {
  return { name, uuids, crashedPrimary: false, role, disk: 'UpToDate', dirtyBits: 0 };
}

function sideOf(n: Node): HandshakeSide {
  return {
    uuids: n.uuids,
    crashedPrimary: n.crashedPrimary,
    role: n.role,
    disk: n.disk,
    dirtyBits: n.dirtyBits,
    discardMyData: false,
  };
}

/** kill -9 and restart: apply-al sets the flag from primary-indicator; up comes back Secondary. */
function crash(n: Node, alExtents = 3): void {
  const primaryIndicator = n.role === 'Primary';
  n.crashedPrimary = crashedPrimaryAfterCrash({
    primaryIndicator,
    crashedPrimary: n.crashedPrimary,
  });
  if (primaryIndicator) n.dirtyBits += alExtents * 1024;
  n.role = 'Secondary';
}

interface Handshake {
  /** What `a` does: source, target or established (no resync). */
  action: string;
  rule: string;
}

/** Both nodes decide, for either tie-break holder; the answers must mirror and agree. */
function handshake(t: Test, a: Node, b: Node): Handshake {
  const mirror = (x: string): string => (x === 'source' ? 'target' : x === 'target' ? 'source' : x);
  const seen: Handshake[] = [];
  for (const tb of [false, true]) {
    const da = decideHandshake(sideOf(a), sideOf(b), tb, POLICY);
    const db = decideHandshake(sideOf(b), sideOf(a), !tb, POLICY);
    t.equal(db.action, mirror(da.action), `${b.name} mirrors ${a.name} (tie-break ${tb})`);
    t.equal(db.rule, mirrorRule(da.rule), `${b.name} logs the mirror rule (tie-break ${tb})`);
    seen.push({ action: da.action, rule: da.rule });
  }
  t.same(seen[1], seen[0], 'the tie-break bit does not change it');
  return seen[0]!;
}

/**
 * A bitmap resync from `src` to `dst`, to its end, as peer.ts drives it: the UUID rotations,
 * then both disks UpToDate on an Established link, where states.ts decides the flags.
 */
function resync(t: Test, src: Node, dst: Node): void {
  const start = startSyncSource(src.uuids);
  src.uuids = start.uuids;
  dst.uuids = startSyncTarget(dst.uuids, start.syncUuid, dst.role === 'Primary');
  dst.disk = 'Inconsistent';
  // Half way, neither flag changes: the tail has not been copied yet.
  const running = [
    [src, dst, 'SyncSource'],
    [dst, src, 'SyncTarget'],
  ] as const;
  for (const [n, peer, replication] of running) {
    const kept = keepCrashedPrimary(n.crashedPrimary, n.disk, [{ disk: peer.disk, replication }]);
    t.equal(kept, n.crashedPrimary, `${n.name}: flag unchanged while ${replication}`);
  }
  src.uuids = finishSyncSource(src.uuids);
  dst.uuids = finishSyncTarget(src.uuids, dst.role === 'Primary');
  dst.disk = 'UpToDate';
  src.dirtyBits = 0;
  dst.dirtyBits = 0;
  settle(src, dst);
}

/** A state change on an Established link: each node's flag as states.ts leaves it. */
function settle(a: Node, b: Node): void {
  a.crashedPrimary = keepCrashedPrimary(a.crashedPrimary, a.disk, [
    { disk: b.disk, replication: 'Established' },
  ]);
  b.crashedPrimary = keepCrashedPrimary(b.crashedPrimary, b.disk, [
    { disk: a.disk, replication: 'Established' },
  ]);
}

/** The resource in sync at C1, alpha Primary. */
function inSync(): [Node, Node] {
  return [node('alpha', gi(C1 | 1n), 'Primary'), node('beta', gi(C1))];
}

function gi(current: bigint, bitmap = 0n): GenerationUuids {
  return { current, bitmap, history: [H1, H2] };
}

t.test('the crash flag comes from primary-indicator and stays until cleared', async (t) => {
  for (const primaryIndicator of [false, true])
    for (const crashedPrimary of [false, true]) {
      t.equal(
        crashedPrimaryAfterCrash({ primaryIndicator, crashedPrimary }),
        primaryIndicator || crashedPrimary,
        `primary-indicator ${primaryIndicator}, already crashed ${crashedPrimary}`,
      );
    }
});

t.test('crash, resync, second crash of the other node: DRBD rule 40', async (t) => {
  const [alpha, beta] = inSync();
  crash(alpha);
  t.equal(alpha.crashedPrimary, true, 'alpha comes back a crashed Primary');
  // Nobody was promoted: alpha's activity-log extents go to beta (drbd.md §3.6.4).
  t.same(handshake(t, alpha, beta), { action: 'source', rule: 'crashed-primary-self' });
  resync(t, alpha, beta);
  t.equal(alpha.crashedPrimary, false, 'the resync dealt with the crash: flag cleared');
  const masked = (u: GenerationUuids) => ({ ...u, current: withPrimaryBit(u.current, false) });
  t.same(masked(alpha.uuids), masked(beta.uuids), 'both hold the same tuple (bit 0 aside)');

  // A link hiccup between the two identical disks: nothing to do.
  t.same(handshake(t, alpha, beta), { action: 'established', rule: 'no-change' });

  // Roles switch over while connected (no new generation), then beta crashes as Primary.
  alpha.role = 'Secondary';
  beta.role = 'Primary';
  beta.uuids = { ...beta.uuids, current: withPrimaryBit(beta.uuids.current, true) };
  crash(beta);
  // DRBD: only beta crashed, so beta is the source. With alpha's flag never cleared this
  // was crashed-primary-both, and the tie-break could roll beta's tail back instead.
  t.same(handshake(t, alpha, beta), { action: 'target', rule: 'crashed-primary-peer' });
  resync(t, beta, alpha);
  t.equal(beta.crashedPrimary, false, 'cleared again after the second resync');
  t.same(handshake(t, alpha, beta), { action: 'established', rule: 'no-change' });
});

t.test('crash, resync, the same node crashes again', async (t) => {
  const [alpha, beta] = inSync();
  crash(alpha);
  resync(t, alpha, beta);
  alpha.role = 'Primary';
  crash(alpha);
  t.same(handshake(t, alpha, beta), { action: 'source', rule: 'crashed-primary-self' });
});

t.test('a second crash before the first was dealt with keeps the flag', async (t) => {
  const [alpha, beta] = inSync();
  crash(alpha);
  crash(alpha); // restarted, then killed again as Secondary, before it saw beta
  t.equal(alpha.crashedPrimary, true);
  t.same(handshake(t, alpha, beta), { action: 'source', rule: 'crashed-primary-self' });
});

t.test('the crashed node as SyncTarget (failover) is cleared at the end too', async (t) => {
  const [alpha, beta] = inSync();
  crash(alpha);
  // beta is promoted while alpha is away: a new generation, tracked against C1.
  beta.uuids = rotateNewCurrent(beta.uuids, true, C2);
  beta.role = 'Primary';
  beta.dirtyBits = 100;
  // rule 70 on beta: its bitmap tracks alpha's generation. alpha's tail is rolled back.
  t.same(handshake(t, alpha, beta), { action: 'target', rule: 'bitmap-peer' });
  resync(t, beta, alpha);
  t.equal(alpha.crashedPrimary, false, 'alpha: flag cleared as SyncTarget');
  // A later crash of beta is beta's alone.
  crash(beta);
  t.same(handshake(t, alpha, beta), { action: 'target', rule: 'crashed-primary-peer' });
});

t.test('no clearing without a peer disk to compare with', async (t) => {
  const [alpha, beta] = inSync();
  crash(alpha);
  beta.disk = 'Diskless';
  t.same(handshake(t, alpha, beta), { action: 'established', rule: 'diskless-peer' });
  settle(alpha, beta);
  t.equal(alpha.crashedPrimary, true, 'a diskless peer does not deal with the crash');
  beta.disk = 'UpToDate'; // beta attaches: its disk is compared now
  t.same(handshake(t, alpha, beta), { action: 'source', rule: 'crashed-primary-self' });
});

t.test('a new generation makes the flag moot: the decision is the same either way', async (t) => {
  // Why a promotion into a new generation may clear it (resource.ts primary()).
  const [alpha, beta] = inSync();
  crash(alpha);
  alpha.uuids = rotateNewCurrent(alpha.uuids, true, C2);
  alpha.role = 'Primary';
  const withFlag = handshake(t, alpha, beta);
  alpha.crashedPrimary = false;
  const without = handshake(t, alpha, beta);
  t.same(withFlag, { action: 'source', rule: 'bitmap-self' });
  t.same(without, withFlag, 'the crashed tail is in the bitmap, sent by rule bitmap-self');
});
