/**
 * A peer's handshake and what follows from it (drbd.md §3.6, §6.1): the messages each side
 * sends, the checks of the peer's settings and size, applying the resync decision
 * (resync-decision.ts) and taking it again when a generation changes while connected, the
 * split-brain handlers, and the peer's state messages.
 */
import { type GenerationUuids, UUID_JUST_CREATED } from '../meta/store.js';
import { formatUuid } from '../meta/uuid.js';
import {
  type Params,
  type Sizes,
  type State,
  type Uuids,
  UUID_FLAG_CRASHED_PRIMARY,
  UUID_FLAG_DISCARD_MY_DATA,
  UUID_FLAG_INCONSISTENT,
  UUID_FLAG_SKIP_INITIAL_SYNC,
  uuidBytes,
  uuidFromBytes,
} from '../replication/schema.js';
import { decideHandshake, type HandshakeSide } from './resync-decision.js';
import type { DiskState, PeerRole, Role } from './states.js';
import type { Peer } from './peer.js';
import type { Session } from './peer-session.js';
import { applyPause, beginResync } from './peer-resync.js';
import { makeReceiver } from './peer-io.js';

export function sendHandshake(p: Peer, s: Session): void {
  const cfg = p.host.config;
  s.link.send('params', {
    protocol: cfg.protocol,
    allowTwoPrimaries: cfg.net.allowTwoPrimaries,
    discardMyData: p.discardMyData,
    afterSb0pri: cfg.net.afterSb0pri,
    afterSb1pri: cfg.net.afterSb1pri,
    afterSb2pri: cfg.net.afterSb2pri,
    alwaysAsbp: cfg.net.alwaysAsbp,
    maxEpochSize: cfg.net.maxEpochSize,
  });
  const meta = p.host.meta;
  s.link.send('sizes', {
    // Read again: a disk grown while this node was away lets a cut-short resize finish.
    backingBytes: backingNow(p),
    deviceBytes: meta?.sizeBytes ?? 0,
  });
  sendUuids(p, s, 0);
  p.sendState(s);
}

function backingNow(p: Peer): number {
  const b = p.host.backing;
  if (!b) return 0;
  try {
    return b.refreshSize();
  } catch {
    return b.size;
  }
}

export function sendUuids(p: Peer, s: Session, extraFlags: number): void {
  const meta = p.host.meta;
  if (!meta) {
    s.link.send('uuids', {
      current: uuidBytes(0n),
      bitmap: uuidBytes(0n),
      history: [],
      flags: 0,
    });
    return;
  }
  const sb = meta.superblock();
  let flags = extraFlags;
  if (p.discardMyData) flags |= UUID_FLAG_DISCARD_MY_DATA;
  if (sb.flags.crashedPrimary) flags |= UUID_FLAG_CRASHED_PRIMARY;
  if (p.host.disk === 'Inconsistent') flags |= UUID_FLAG_INCONSISTENT;
  s.link.send('uuids', {
    current: uuidBytes(sb.uuids.current),
    bitmap: uuidBytes(sb.uuids.bitmap),
    history: sb.uuids.history.map(uuidBytes),
    dirtyBits: meta.bitmap.count(),
    flags,
  });
}

export function maybeDecide(p: Peer, s: Session): void {
  if (s.decided || !s.handshakeSent) return;
  if (!s.peerParams || !s.peerSizes || !s.peerUuids || !s.peerState) return;
  const mismatch = paramsMismatch(p, s.peerParams) ?? sizesMismatch(p, s, s.peerSizes);
  if (mismatch !== undefined) return refuseSession(p, mismatch);
  p.role = s.peerState.role as PeerRole;
  // A pause-sync on the peer outlives our restart: its state carries it.
  p.peerPaused = s.peerState.syncPaused;
  decide(p, s);
  if (p.session === s) noteView(p, s.peerState);
}

export function paramsMismatch(p: Peer, theirs: Params): string | undefined {
  const cfg = p.host.config;
  const mine: Array<[string, unknown, unknown]> = [
    ['protocol', cfg.protocol, theirs.protocol],
    ['allow-two-primaries', cfg.net.allowTwoPrimaries, theirs.allowTwoPrimaries],
    ['after-sb-0pri', cfg.net.afterSb0pri, theirs.afterSb0pri],
    ['after-sb-1pri', cfg.net.afterSb1pri, theirs.afterSb1pri],
    ['after-sb-2pri', cfg.net.afterSb2pri, theirs.afterSb2pri],
    ['always-asbp', cfg.net.alwaysAsbp, theirs.alwaysAsbp],
  ];
  for (const [what, a, b] of mine) {
    if (a !== b) {
      return `incompatible ${what}: ${String(a)} here, ${String(b)} on ${p.name}`;
    }
  }
  if (p.discardMyData && theirs.discardMyData) {
    return 'both nodes asked to discard their data (connect --discard-my-data on one side only)';
  }
  return undefined;
}

/**
 * drbd.md §6.1: the nodes agree on the smaller size, but a device that holds data is never
 * shrunk (what lies beyond would be lost without a word). Only fresh metadata (the
 * just-created UUID on an Inconsistent disk) takes the peer's smaller size. Both sides
 * reach the same verdict from the same facts.
 */
export function sizesMismatch(p: Peer, s: Session, theirs: Sizes): string | undefined {
  const meta = p.host.meta;
  const mine = meta?.sizeBytes ?? 0;
  if (!meta || mine === 0 || theirs.deviceBytes === 0 || mine === theirs.deviceBytes)
    return undefined;
  const fresh = (current: bigint, disk: string): boolean =>
    (current & ~1n) === UUID_JUST_CREATED && disk === 'Inconsistent';
  const bigger = mine > theirs.deviceBytes ? p.host.node : p.name;
  const biggerFresh =
    mine > theirs.deviceBytes
      ? fresh(meta.superblock().uuids.current, p.host.disk)
      : fresh(uuidFromBytes(s.peerUuids!.current), s.peerState!.disk);
  if (!biggerFresh) {
    // A resize that reached one node only (a crash or a cut link in between): the smaller
    // device grows if its disk can hold the larger one. Both sides judge from the same two
    // Sizes messages, so exactly one grows, and both resync the new area (decide).
    const smallerBacking =
      mine < theirs.deviceBytes ? (p.host.backing?.size ?? 0) : theirs.backingBytes;
    const larger = Math.max(mine, theirs.deviceBytes);
    if (smallerBacking >= larger) {
      s.grewAtHandshake = true;
      if (mine < larger) p.host.resizer.growHere(larger, false, `the handshake with ${p.name}`);
      return undefined;
    }
    return `device sizes differ: ${mine} bytes on ${p.host.node}, ${theirs.deviceBytes} on ${p.name}; refusing to shrink the device on ${bigger}, which holds data`;
  }
  if (mine > theirs.deviceBytes) {
    meta.shrinkTo(theirs.deviceBytes);
    p.log.warn(
      { from: mine, to: theirs.deviceBytes },
      `device shrunk to ${p.name}'s smaller size (fresh metadata)`,
    );
  }
  return undefined;
}

export function side(
  uuids: GenerationUuids,
  flags: number,
  state: Pick<State, 'role' | 'disk'>,
  dirty: number,
  discard: boolean,
): HandshakeSide {
  return {
    uuids,
    crashedPrimary: (flags & UUID_FLAG_CRASHED_PRIMARY) !== 0,
    role: state.role as Role,
    disk: state.disk as DiskState,
    dirtyBits: dirty,
    discardMyData: discard,
  };
}

export function decide(p: Peer, s: Session): void {
  const meta = p.host.meta;
  const peerU = s.peerUuids!;
  const peerUuids: GenerationUuids = {
    current: uuidFromBytes(peerU.current),
    bitmap: uuidFromBytes(peerU.bitmap),
    history: [
      peerU.history[0] ? uuidFromBytes(peerU.history[0]) : 0n,
      peerU.history[1] ? uuidFromBytes(peerU.history[1]) : 0n,
    ],
  };
  // A diskless node has no generation: the decision is 'diskless-self' (no resync).
  const sb = meta?.superblock();
  const self = side(
    sb?.uuids ?? { current: 0n, bitmap: 0n, history: [0n, 0n] },
    sb?.flags.crashedPrimary ? UUID_FLAG_CRASHED_PRIMARY : 0,
    { role: p.host.role, disk: p.host.disk },
    meta?.bitmap.count() ?? 0,
    p.discardMyData,
  );
  const peer = side(
    peerUuids,
    peerU.flags,
    s.peerState!,
    peerU.dirtyBits,
    (peerU.flags & UUID_FLAG_DISCARD_MY_DATA) !== 0,
  );
  const net = p.host.config.net;
  const d = decideHandshake(self, peer, p.dialer, {
    afterSb0pri: net.afterSb0pri,
    afterSb1pri: net.afterSb1pri,
    afterSb2pri: net.afterSb2pri,
    alwaysAsbp: net.alwaysAsbp,
    rrConflict: net.rrConflict,
  });
  const tuple = (u: GenerationUuids): string =>
    [u.current, u.bitmap, ...u.history].map(formatUuid).join(':');
  p.log.info(
    {
      self: tuple(self.uuids),
      peer: tuple(peerUuids),
      selfDirty: self.dirtyBits,
      peerDirty: peer.dirtyBits,
      action: d.action,
      ...(d.action !== 'disconnect' ? { full: d.full } : {}),
      via: d.via,
    },
    `handshake: ${d.action} by rule ${d.rule}`,
  );
  if (d.action === 'disconnect') {
    if (d.reason.startsWith('Split-Brain')) splitBrainHandlers(p, true);
    return refuseSession(p, d.reason);
  }
  if (d.via.some((v) => v.startsWith('after-sb-'))) splitBrainHandlers(p, false);
  if (d.repairSelf) meta?.store.setUuids(d.repairSelf);
  s.decided = true;
  p.discardMyData = false;
  p.disk = s.peerState!.disk as DiskState;
  // Kept across a redecide: its sequence numbers continue with the peer's transfer log.
  // A diskless node receives no writes (a Primary does not replicate to it).
  if (p.host.meta && p.host.backing) s.receiver ??= makeReceiver(p, s);
  let action: 'established' | 'source' | 'target' = d.action;
  let full = d.full;
  // drbd.md §3.6.6: "no sync" with dirty bits on either side would leave the disks
  // different with nothing to say so. Resync them instead, from the side that knows best.
  if (
    action === 'established' &&
    self.disk !== 'Diskless' &&
    peer.disk !== 'Diskless' &&
    (self.dirtyBits > 0 || peer.dirtyBits > 0 || s.grewAtHandshake === true)
  ) {
    s.grewAtHandshake = false;
    action = leftoverDirection(p, self, peer);
    full = false;
    p.log.warn(
      { selfDirty: self.dirtyBits, peerDirty: peer.dirtyBits, as: action },
      'no resync by the UUIDs, but bits are set: resyncing them',
    );
  }
  if (action === 'established') return establish(p, s);
  s.afterCrash = self.crashedPrimary || peer.crashedPrimary;
  beginResync(p, s, action, full);
}

/**
 * drbd.md §7: initial-split-brain on every split brain found, split-brain when no policy
 * resolved it, and pri-lost-after-sb on a Primary that a call-pri-lost-after-sb policy
 * left without a way to win (its handler usually reboots the node).
 */
export function splitBrainHandlers(p: Peer, unresolved: boolean): void {
  p.host.notify('initial-split-brain', p);
  if (!unresolved) return;
  p.host.notify('split-brain', p);
  // Only under the policy that applied to this Primary: after-sb-1pri when the peer is not
  // Primary, after-sb-2pri when it is (resync-decision.ts recover). A call-pri-lost-after-sb
  // in the other one does not concern this split brain (DRBD calls the helper from that
  // policy's case only): two Primaries under after-sb-1pri call-pri-lost-after-sb and
  // after-sb-2pri disconnect must not run it.
  const net = p.host.config.net;
  const policy = p.role === 'Primary' ? net.afterSb2pri : net.afterSb1pri;
  if (p.host.role === 'Primary' && policy === 'call-pri-lost-after-sb') {
    p.host.notify('pri-lost-after-sb', p);
  }
}

/** Mirror-safe choice for leftover bits: the Primary, else the tie-break. */
export function leftoverDirection(
  p: Peer,
  self: HandshakeSide,
  peer: HandshakeSide,
): 'source' | 'target' {
  if (self.disk === 'UpToDate' && peer.disk !== 'UpToDate') return 'source';
  if (peer.disk === 'UpToDate' && self.disk !== 'UpToDate') return 'target';
  if (self.role === 'Primary' && peer.role !== 'Primary') return 'source';
  if (peer.role === 'Primary' && self.role !== 'Primary') return 'target';
  return p.dialer ? 'source' : 'target';
}

/** After the handshake: the peer's UUIDs changed (forced promotion, new-current-uuid). */
export function onUuidsAfterHandshake(p: Peer, s: Session, u: Uuids): void {
  const meta = p.host.meta;
  if (!meta) return;
  if (u.flags & UUID_FLAG_SKIP_INITIAL_SYNC) {
    // The peer skipped the initial sync of two blank disks (new-current-uuid
    // --clear-bitmap): take its generation as ours and agree that nothing differs.
    const current = uuidFromBytes(u.current);
    meta.store.setUuids({
      current: current & ~1n,
      bitmap: 0n,
      history: meta.superblock().uuids.history,
    });
    meta.bitmap.clearAll();
    meta.persistBitmap();
    p.host.setDisk('UpToDate');
    p.disk = 'UpToDate';
    p.log.info('initial sync skipped by the peer (new-current-uuid --clear-bitmap)');
    p.sendState(s);
    p.host.changed();
    return;
  }
  if (p.replication !== 'Established') return;
  s.peerUuids = u;
  redecide(p, s);
}

/**
 * A generation changed while connected: run the same decision again from both tuples.
 * Each side runs it when the other's new UUIDs arrive or its own changed, from the same
 * two tuples, so the results mirror as at the handshake.
 */
export function redecide(p: Peer, s: Session): void {
  if (!s.peerUuids || !s.peerState) return;
  s.decided = false;
  p.host.holdIo(true);
  decide(p, s);
}

export function onState(p: Peer, s: Session, st: State): void {
  if (!s.decided) {
    s.peerState = st;
    return maybeDecide(p, s);
  }
  s.peerState = st;
  p.role = st.role as PeerRole;
  if (st.disk !== p.disk) {
    p.disk = st.disk as DiskState;
    if (p.disk === 'UpToDate') s.peerWasUpToDate = true;
  }
  if (p.peerPaused !== st.syncPaused) {
    p.peerPaused = st.syncPaused;
    applyPause(p, s);
  }
  noteView(p, st);
  p.host.changed();
}

/** Keeps the cluster part of a state message; a peer that leaves gracefully stops voting. */
export function noteView(p: Peer, st: State): void {
  p.view = {
    quorum: st.quorum,
    sees: st.sees,
    promotable: st.promotable,
    outdated: st.outdated,
    leaving: st.leaving,
  };
  // A data peer votes again once it holds UpToDate data with us; a diskless one (the
  // tiebreaker, which has no data to fall behind with) as soon as it is back.
  if (st.leaving) p.knownOutdated = true;
  else if (!p.diskful || (st.disk === 'UpToDate' && p.replication === 'Established')) {
    p.knownOutdated = false;
  }
  p.host.peerViewChanged(p);
}

export function establish(p: Peer, s: Session): void {
  const disk = p.host.disk;
  // drbd.md §2.7: Consistent or Outdated become UpToDate once connected, the handshake having
  // found nothing to sync.
  if (disk === 'Consistent' || disk === 'Outdated') p.host.setDisk('UpToDate');
  const pd = s.peerState!.disk as DiskState;
  p.disk = pd === 'Consistent' || pd === 'Outdated' ? 'UpToDate' : pd;
  if (p.disk === 'UpToDate') s.peerWasUpToDate = true;
  p.replication = 'Established';
  if (p.disk === 'UpToDate') p.knownOutdated = false;
  p.host.holdIo(false);
  p.sendState(s);
  p.host.changed();
}

export function refuseSession(p: Peer, reason: string): void {
  p.log.error({ reason }, `connection to ${p.name} refused: ${reason}`);
  p.wanted = false;
  p.endSession(reason, 'Refused', true);
  p.lastError = reason;
  void p.disconnect(reason).then(() => {
    p.lastError = reason;
    p.host.changed();
  });
}
