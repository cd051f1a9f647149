/**
 * The resync-direction and split-brain decision of a connection handshake (drbd.md §3.6, §7),
 * as pure functions of what both sides exchanged.
 *
 * Both nodes run this with "self" and "peer" swapped and must reach mirror-image results, or
 * both would become SyncSource (or SyncTarget) and the resync would never converge. So every
 * step below is written as a pair: a condition and its mirror are evaluated together, and a
 * step decides only when exactly one of them holds; when both hold (circular ancestry, which
 * fresh random UUIDs cannot produce) the step passes and a later, symmetric one decides. The
 * tie-break bit, true on exactly one side, is the only asymmetric input; whoever holds it wins
 * ties (becomes SyncSource). DRBD lets the holder lose instead; only agreement matters.
 *
 * Bit 0 of a UUID is a flag, not identity, so every comparison masks it. A slot holding 0 or
 * just-created (4) never proves common ancestry: 0 is an empty slot (the K84 rule-100 bug made
 * two empty histories "related"), and 4 is the create-md value every disk in the world starts
 * from, so two clusters that were each force-promoted once would otherwise look related and
 * could be "recovered" into each other by an after-sb policy.
 *
 * We keep one bitmap UUID and two history UUIDs (two nodes), so DRBD 9's rules about third
 * nodes, quorum and the reconnect flag do not exist here. Rule names follow DRBD 9's logged
 * names where one exists; the repairs DRBD 9 no longer needs (it changed the protocol) keep
 * K84's logic under our own names. A name ending in -self describes this node, -peer the
 * peer; the mirror run reports the same rule with the suffix swapped (mirrorRule).
 *
 * | rule                      | verdict           | full | K84 | when (bit 0 masked)                                  |
 * |---------------------------|-------------------|------|-----|------------------------------------------------------|
 * | just-created-both         | no-sync           |      | 10  | both currents 0 or just-created                      |
 * | just-created-self         | target            | yes  | 20  | my current is 0 or just-created                      |
 * | just-created-peer         | source            | yes  | 30  | the peer's current is                                |
 * | missed-finish-self        | source + repair   |      | 34  | equal currents, I still hold the sync UUID the peer  |
 * |                           |                   |      |     | already moved to history: I missed the finish        |
 * | missed-finish-peer        | target            |      | 35  | mirror: the peer missed it (it repairs itself)       |
 * | unwritten-sync-uuid-peer  | source            |      | 36  | equal currents, only my B is set, history does not   |
 * |                           |                   |      |     | line up: the peer never stored the sync UUID         |
 * | unwritten-sync-uuid-self  | target            |      | 37  | mirror                                               |
 * | current-primary-self      | source            |      | 41  | equal currents, someone crashed as Primary, and I am |
 * |                           |                   |      |     | the only Primary now: its readers saw my data        |
 * | current-primary-peer      | target            |      | 41  | mirror                                               |
 * | crashed-primary-self      | source            |      | 40  | equal currents, only I crashed as Primary: push my   |
 * |                           |                   |      |     | activity-log extents to the peer                     |
 * | crashed-primary-peer      | target            |      | 40  | mirror                                               |
 * | crashed-primary-both      | tie-break winner  |      | 40  | both crashed, no single current Primary              |
 * |                           | is source         |      |     |                                                      |
 * | no-change                 | no-sync           |      | 40  | equal currents, nobody crashed: a link hiccup        |
 * | bitmap-peer               | target            |      | 50  | my current = the peer's bitmap UUID                  |
 * | bitmap-self               | source            |      | 70  | my bitmap UUID = the peer's current                  |
 * | lost-sync-uuid-peer       | target            |      | 51  | the peer rotated for a resync to me (B = H1 + 2^48,  |
 * |                           |                   |      |     | H1 = my current) but I never got the sync UUID       |
 * | lost-sync-uuid-self       | source + repair   |      | 71  | mirror: I undo my half-done rotation                 |
 * | history-peer              | target            | yes  | 60  | my current is in the peer's history                  |
 * | history-self              | source            | yes  | 80  | the peer's current is in my history                  |
 * | bitmap-both               | split-brain-auto  |      | 90  | equal bitmap UUIDs: both left the same generation,   |
 * |                           |                   |      |     | so the two bitmaps together cover every change       |
 * | history-both              | split-brain       | yes  | 100 | only a history UUID is shared: bitmaps say nothing,  |
 * |                           |                   |      |     | any recovery must copy everything                    |
 * | unrelated-data            | unrelated         |      | —   | nothing shared: wrong disk or wrong peer             |
 *
 * decideHandshake adds diskless-self / diskless-peer / diskless-both (one side has no data,
 * so there is nothing to compare or resync) ahead of the table.
 *
 * `full` on a split-brain verdict says what a resolution must do (history-both: everything).
 */
import type { AfterSb0pri, AfterSb1pri, AfterSb2pri, RrConflict } from '../config/types.js';
import type { GenerationUuids } from '../meta/superblock.js';
import { UUID_JUST_CREATED } from '../meta/superblock.js';
import { clearBitmapUuid, formatUuid, UUID_NEW_BM_OFFSET } from '../meta/uuid.js';
import type { DiskState, Role } from './states.js';

export interface HandshakeSide {
  uuids: GenerationUuids;
  crashedPrimary: boolean;
  /** The role now, not at the split. */
  role: Role;
  /** The disk state entering the handshake; below Inconsistent (e.g. Diskless) means no data. */
  disk: DiskState;
  /** Set bits in this node's bitmap. */
  dirtyBits: number;
  discardMyData: boolean;
}

export type UuidVerdict =
  'no-sync' | 'source' | 'target' | 'split-brain-auto' | 'split-brain' | 'unrelated';

export interface UuidComparison {
  verdict: UuidVerdict;
  /** Full sync (all bits) rather than bitmap-based. */
  full: boolean;
  rule: string;
  /** A corrected own tuple to persist (missed-finish-self, lost-sync-uuid-self). */
  repairSelf?: GenerationUuids;
}

export interface SplitBrainPolicy {
  afterSb0pri: AfterSb0pri;
  afterSb1pri: AfterSb1pri;
  afterSb2pri: AfterSb2pri;
  alwaysAsbp: boolean;
  rrConflict: RrConflict;
}

export type SyncDirection = 'none' | 'source' | 'target';

export type HandshakeDecision =
  | {
      action: 'established' | 'source' | 'target';
      full: boolean;
      rule: string;
      via: string[];
      repairSelf?: GenerationUuids;
    }
  | { action: 'disconnect'; rule: string; via: string[]; reason: string };

const MASK64 = (1n << 64n) - 1n;

/** Generation identity: bit 0 masked. */
function gen(u: bigint): bigint {
  return u & ~1n;
}

/** 0 or just-created: holds no generation. */
function isNull(u: bigint): boolean {
  const g = gen(u);
  return g === 0n || g === UUID_JUST_CREATED;
}

/** Same real generation; empty and just-created slots never match (see the module comment). */
function related(a: bigint, b: bigint): boolean {
  return !isNull(a) && gen(a) === gen(b);
}

/** -self ↔ -peer: the name the other side logs for the same decision. */
export function mirrorRule(rule: string): string {
  if (rule.endsWith('-self')) return `${rule.slice(0, -5)}-peer`;
  if (rule.endsWith('-peer')) return `${rule.slice(0, -5)}-self`;
  return rule;
}

/** Disk states that hold data, by quality. The handshake only sees these or "no data". */
function dataRank(d: DiskState): number {
  switch (d) {
    case 'Inconsistent':
      return 1;
    case 'Outdated':
      return 2;
    case 'Consistent':
      return 3;
    case 'UpToDate':
      return 4;
    default:
      return 0;
  }
}

type Dir = 'source' | 'target';

function sync(dir: Dir, full: boolean, rule: string, repairSelf?: GenerationUuids): UuidComparison {
  return repairSelf === undefined
    ? { verdict: dir, full, rule }
    : { verdict: dir, full, rule, repairSelf };
}

/**
 * `t` began a resync as SyncSource towards the holder of `otherCurrent` (history push, then
 * B := H1 + 2^48) but the sync UUID never reached the other side.
 */
function rotatedForLostSync(t: GenerationUuids, otherCurrent: bigint): boolean {
  const h1 = t.history[0];
  return related(h1, otherCurrent) && gen(t.bitmap) === ((gen(h1) + UUID_NEW_BM_OFFSET) & MASK64);
}

/**
 * `a` is the SyncSource that missed the resync-finished event: `b` already moved the sync
 * UUID (a's B) into history and a's history one slot behind it. Only a shape check of one
 * rotation, so two empty slots do count as equal here.
 */
function missedFinish(a: GenerationUuids, b: GenerationUuids): boolean {
  return gen(a.bitmap) === gen(b.history[0]) && gen(a.history[0]) === gen(b.history[1]);
}

function equalCurrents(
  self: HandshakeSide,
  peer: HandshakeSide,
  tieBreak: boolean,
): UuidComparison {
  const s = self.uuids;
  const p = peer.uuids;
  // One side still tracks against a sync UUID the other side no longer has: a resync's end
  // (or its start) was recorded on one side only. Finish it with a bitmap resync.
  const selfOnly = gen(p.bitmap) === 0n && gen(s.bitmap) !== 0n;
  const peerOnly = gen(s.bitmap) === 0n && gen(p.bitmap) !== 0n;
  if (selfOnly) {
    return missedFinish(s, p)
      ? sync('source', false, 'missed-finish-self', clearBitmapUuid(s))
      : sync('source', false, 'unwritten-sync-uuid-peer');
  }
  if (peerOnly) {
    return missedFinish(p, s)
      ? sync('target', false, 'missed-finish-peer')
      : sync('target', false, 'unwritten-sync-uuid-self');
  }
  if (self.crashedPrimary || peer.crashedPrimary) {
    // A crashed Primary's last writes may not have reached the peer, and its activity log
    // marked them dirty. But if one node is Primary right now, applications already read its
    // data: overwriting that under them is worse than dropping the crashed node's tail.
    const selfPri = self.role === 'Primary';
    const peerPri = peer.role === 'Primary';
    if (selfPri !== peerPri) {
      return selfPri
        ? sync('source', false, 'current-primary-self')
        : sync('target', false, 'current-primary-peer');
    }
    if (self.crashedPrimary !== peer.crashedPrimary) {
      return self.crashedPrimary
        ? sync('source', false, 'crashed-primary-self')
        : sync('target', false, 'crashed-primary-peer');
    }
    return sync(tieBreak ? 'source' : 'target', false, 'crashed-primary-both');
  }
  return { verdict: 'no-sync', full: false, rule: 'no-change' };
}

/**
 * The generation-UUID comparison (`drbd_uuid_compare`, DRBD 9 order, drbd.md §3.6.5).
 * Pure: a repair of this node's tuple is returned, never applied.
 */
export function compareUuids(
  self: HandshakeSide,
  peer: HandshakeSide,
  tieBreak: boolean,
): UuidComparison {
  const s = self.uuids;
  const p = peer.uuids;
  const selfNew = isNull(s.current);
  const peerNew = isNull(p.current);
  if (selfNew && peerNew) return { verdict: 'no-sync', full: false, rule: 'just-created-both' };
  if (selfNew) return sync('target', true, 'just-created-self');
  if (peerNew) return sync('source', true, 'just-created-peer');

  if (gen(s.current) === gen(p.current)) return equalCurrents(self, peer, tieBreak);

  const bitmapPeer = related(p.bitmap, s.current);
  const bitmapSelf = related(s.bitmap, p.current);
  if (bitmapPeer !== bitmapSelf) {
    return bitmapPeer ? sync('target', false, 'bitmap-peer') : sync('source', false, 'bitmap-self');
  }

  const lostPeer = rotatedForLostSync(p, s.current);
  const lostSelf = rotatedForLostSync(s, p.current);
  if (lostPeer !== lostSelf) {
    if (lostPeer) return sync('target', false, 'lost-sync-uuid-peer');
    // Undo my rotation: B back to the generation the peer still holds. H2 stays (now equal
    // to H1): the generation the push dropped is gone, and a duplicate claims nothing new.
    const repaired: GenerationUuids = {
      current: s.current,
      bitmap: s.history[0],
      history: [s.history[1], s.history[1]],
    };
    return sync('source', false, 'lost-sync-uuid-self', repaired);
  }

  // Ancestor only through history: no bitmap tracks changes against it, so copy everything.
  const historyPeer = p.history.some((h) => related(h, s.current));
  const historySelf = s.history.some((h) => related(h, p.current));
  if (historyPeer !== historySelf) {
    return historyPeer
      ? sync('target', true, 'history-peer')
      : sync('source', true, 'history-self');
  }

  if (related(s.bitmap, p.bitmap)) {
    return { verdict: 'split-brain-auto', full: false, rule: 'bitmap-both' };
  }
  if (s.history.some((h) => p.history.some((g) => related(h, g)))) {
    return { verdict: 'split-brain', full: true, rule: 'history-both' };
  }
  return { verdict: 'unrelated', full: false, rule: 'unrelated-data' };
}

interface Recovery {
  dir: Dir | null;
  /** The policy that decided (or failed to), for the log. */
  by: string;
}

/** Whoever holds the tie-break bit wins (stays SyncSource). */
function tie(tieBreak: boolean): Dir {
  return tieBreak ? 'source' : 'target';
}

/** Fewer changed blocks loses (is overwritten); equal counts go to the tie-break. */
function leastChanges(self: HandshakeSide, peer: HandshakeSide, tieBreak: boolean): Dir {
  if (self.dirtyBits < peer.dirtyBits) return 'target';
  if (self.dirtyBits > peer.dirtyBits) return 'source';
  return tie(tieBreak);
}

/**
 * after-sb-0pri (drbd.md §7.2). The younger/older-primary fallback goes straight to
 * least-changes: K84 passes through zero-changes first, which can only decide where
 * least-changes decides the same way (a side with zero changes has the fewer).
 */
function recover0p(
  self: HandshakeSide,
  peer: HandshakeSide,
  tieBreak: boolean,
  policy: AfterSb0pri,
): Recovery {
  switch (policy) {
    case 'discard-younger-primary':
    case 'discard-older-primary': {
      // Bit 0 of the bitmap UUID: was Primary when it left the common generation, i.e.
      // the older primary of the two.
      const selfOlder = (self.uuids.bitmap & 1n) === 1n;
      const peerOlder = (peer.uuids.bitmap & 1n) === 1n;
      if (selfOlder !== peerOlder) {
        const keepOlder = policy === 'discard-younger-primary';
        return { dir: selfOlder === keepOlder ? 'source' : 'target', by: policy };
      }
      return {
        dir: leastChanges(self, peer, tieBreak),
        by: `${policy} → discard-least-changes`,
      };
    }
    case 'discard-zero-changes': {
      const selfZero = self.dirtyBits === 0;
      const peerZero = peer.dirtyBits === 0;
      if (selfZero && peerZero) return { dir: tie(tieBreak), by: policy };
      if (selfZero !== peerZero) return { dir: selfZero ? 'target' : 'source', by: policy };
      return { dir: null, by: policy };
    }
    case 'discard-least-changes':
      return { dir: leastChanges(self, peer, tieBreak), by: policy };
    default:
      // disconnect; discard-node-NAME names a host, which this pure function does not know.
      return { dir: null, by: policy };
  }
}

function recover(
  self: HandshakeSide,
  peer: HandshakeSide,
  tieBreak: boolean,
  policy: SplitBrainPolicy,
): Recovery & { label: string } {
  const selfPri = self.role === 'Primary';
  const primaries = (selfPri ? 1 : 0) + (peer.role === 'Primary' ? 1 : 0);
  const as0p = (): Recovery => recover0p(self, peer, tieBreak, policy.afterSb0pri);
  let r: Recovery;
  if (primaries === 0) {
    r = as0p();
  } else if (primaries === 1) {
    switch (policy.afterSb1pri) {
      case 'discard-secondary':
        r = { dir: selfPri ? 'source' : 'target', by: 'discard-secondary' };
        break;
      case 'consensus': {
        // Accept the 0pri answer only when it sacrifices the Secondary.
        const z = as0p();
        const secondaryLoses = z.dir !== null && (z.dir === 'source') === selfPri;
        r = { dir: secondaryLoses ? z.dir : null, by: `consensus (${z.by})` };
        break;
      }
      case 'violently-as0p': {
        const z = as0p();
        r = { dir: z.dir, by: `violently-as0p (${z.by})` };
        break;
      }
      default:
        // call-pri-lost-after-sb would demote the losing Primary; not implemented, so it
        // refuses like disconnect.
        r = { dir: null, by: policy.afterSb1pri };
    }
  } else if (policy.afterSb2pri === 'violently-as0p') {
    const z = as0p();
    r = { dir: z.dir, by: `violently-as0p (${z.by})` };
  } else {
    r = { dir: null, by: policy.afterSb2pri };
  }
  return { ...r, label: `after-sb-${primaries}pri ${r.by}` };
}

function disconnect(rule: string, via: string[], reason: string): HandshakeDecision {
  return { action: 'disconnect', rule, via, reason };
}

/**
 * The whole handshake decision (`drbd_sync_handshake`, drbd.md §3.6.3 with DRBD 9's changes):
 * the UUID comparison, then the disk states, the after-sb policies, --discard-my-data and the
 * safety refusals. `via` names each step that changed the comparison's answer, so the log can
 * say why a node ended up overwritten.
 *
 * The order matters: disk states first, because an Inconsistent disk must never be a source
 * whatever its UUIDs claim; automatic split-brain policies before the manual flag, because the
 * flag is what an admin sets once they failed; the refusals last, because they guard the
 * final direction however it was reached. A repair is only reported with a sync decision: on
 * a refusal the tuple stays as it is and the same rule matches again at the next handshake.
 */
export function decideHandshake(
  self: HandshakeSide,
  peer: HandshakeSide,
  tieBreak: boolean,
  policy: SplitBrainPolicy,
): HandshakeDecision {
  const selfData = dataRank(self.disk) > 0;
  const peerData = dataRank(peer.disk) > 0;
  if (!selfData || !peerData) {
    const rule =
      !selfData && !peerData ? 'diskless-both' : !selfData ? 'diskless-self' : 'diskless-peer';
    return { action: 'established', full: false, rule, via: [] };
  }

  const cmp = compareUuids(self, peer, tieBreak);
  const { rule } = cmp;
  const via: string[] = [];
  if (cmp.verdict === 'unrelated') {
    return disconnect(
      rule,
      via,
      `Unrelated data, aborting: my current UUID ${formatUuid(self.uuids.current & MASK64)} and the ` +
        `peer's ${formatUuid(peer.uuids.current & MASK64)} share no generation (wrong disk or wrong peer?)`,
    );
  }

  const splitBrain = cmp.verdict === 'split-brain' || cmp.verdict === 'split-brain-auto';
  let dir: SyncDirection | 'split' =
    cmp.verdict === 'source' || cmp.verdict === 'target'
      ? cmp.verdict
      : splitBrain
        ? 'split'
        : 'none';
  let full = cmp.full;

  // An Inconsistent disk cannot be a source whatever the UUIDs say, and a consistent one need
  // not stay behind an Inconsistent peer. Full when the UUIDs could not bound the difference.
  const selfInc = self.disk === 'Inconsistent';
  const peerInc = peer.disk === 'Inconsistent';
  if (selfInc !== peerInc) {
    const d: Dir = selfInc ? 'target' : 'source';
    const f = cmp.full || splitBrain;
    if (d !== dir || f !== full) via.push('disk-state override');
    dir = d;
    full = f;
  }

  let asbNote = '';
  if (dir === 'split') {
    if (cmp.verdict === 'split-brain-auto' || policy.alwaysAsbp) {
      const r = recover(self, peer, tieBreak, policy);
      if (r.dir !== null) {
        dir = r.dir;
        // Bitmaps only bound the damage when both left the same generation.
        full = cmp.verdict === 'split-brain';
        via.push(r.label);
      } else {
        asbNote = `, ${r.label} did not decide`;
      }
    } else {
      asbNote = ', history-only so no after-sb policy without always-asbp';
    }
  }

  if (dir === 'split') {
    if (self.discardMyData && peer.discardMyData) {
      return disconnect(
        rule,
        via,
        `Split-Brain detected (rule ${rule}) but both sides set --discard-my-data, dropping ` +
          'connection: connect the survivor without it',
      );
    }
    if (self.discardMyData || peer.discardMyData) {
      dir = self.discardMyData ? 'target' : 'source';
      full = cmp.verdict === 'split-brain';
      via.push('discard-my-data');
    }
  } else if (
    dir !== 'none' &&
    self.discardMyData !== peer.discardMyData &&
    (dir === 'source') === self.discardMyData
  ) {
    // The victim was going to be the source: an explicit request to throw away its data
    // wins over the generations, as long as the data it reverts to is whole.
    const keeper = self.discardMyData ? peer : self;
    if (dataRank(keeper.disk) >= dataRank('Consistent')) {
      dir = dir === 'source' ? 'target' : 'source';
      via.push('discard-my-data (reverting to older data)');
    }
  }

  if (dir === 'split') {
    return disconnect(
      rule,
      via,
      `Split-Brain detected but unresolved (rule ${rule}${asbNote}), dropping connection: ` +
        'resolve by hand with connect --discard-my-data on the victim',
    );
  }
  if (dir === 'none') {
    return { action: 'established', full: false, rule, via };
  }

  const source = dir === 'source' ? self : peer;
  if (dataRank(source.disk) <= dataRank('Inconsistent')) {
    return disconnect(
      rule,
      via,
      dir === 'source'
        ? `I shall become SyncSource, but my disk is ${self.disk} (rule ${rule}), dropping connection`
        : `The peer would become SyncSource, but its disk is ${peer.disk} (rule ${rule}), dropping connection`,
    );
  }

  const target = dir === 'target' ? self : peer;
  if (target.role === 'Primary' && dataRank(target.disk) >= dataRank('Consistent')) {
    if (policy.rrConflict === 'violently') {
      via.push('rr-conflict violently');
    } else {
      const who =
        dir === 'target'
          ? 'I shall become SyncTarget, but I am Primary'
          : 'The peer would become SyncTarget, but it is Primary';
      const hint =
        policy.rrConflict === 'call-pri-lost'
          ? ' (run the pri-lost handler)'
          : policy.rrConflict === 'retry-connect'
            ? ' (retry the connection later)'
            : '';
      return disconnect(
        rule,
        via,
        `${who} (rule ${rule}, rr-conflict ${policy.rrConflict}), dropping connection${hint}: ` +
          'demote the node whose data loses, then reconnect',
      );
    }
  }

  const decision: HandshakeDecision = { action: dir, full, rule, via };
  if (cmp.repairSelf !== undefined) decision.repairSelf = cmp.repairSelf;
  return decision;
}
