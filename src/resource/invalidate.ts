/**
 * `urbdadm invalidate` and `invalidate-remote` (drbd.md §1.2, §3.5): a full resync asked for
 * by the admin. Both only change what the resync decision (resync-decision.ts) is given and
 * then let both nodes take it again from the same two tuples, so the direction, the bitmap
 * exchange and the UUID rotation at the resync's start and end are the handshake's own:
 *
 * - invalidate: every bit set here and the disk Inconsistent. An Inconsistent disk is never
 *   a source (the disk-state override), so this node becomes SyncTarget; the bitmap exchange
 *   hands the peer all bits. Not connected, that is all it does, and the next handshake
 *   resyncs the same way.
 * - invalidate-remote: every bit set here and a new current UUID whose bitmap UUID is the
 *   generation the peer holds (new-current-uuid): rule bitmap-self makes this node
 *   SyncSource of its whole bitmap. DRBD instead sends the peer a StartingSyncT request;
 *   rotating the generation reaches the same end without a new message, and the rotation
 *   records, should the link drop mid-way, that the peer is behind this node.
 *
 * The full-sync flag brackets the set-all, as at a full-sync handshake: a crash before the
 * bitmap reached the disk redoes it at attach.
 */
import { newCurrentCommand } from '../meta/uuid.js';
import type { DiskMeta } from './disk-meta.js';
import type { Peer } from './peer.js';
import { redecide, sendUuids } from './peer-handshake.js';
import { decideInvalidate, decideInvalidateRemote, type InvalidateInput } from './states.js';
import { refused } from './admin-error.js';
import type { Logger } from 'pino';
import { verifyState } from './peer-verify.js';

/** What the verbs need of the resource. */
export interface InvalidateHost {
  readonly role: InvalidateInput['role'];
  readonly disk: InvalidateInput['disk'];
  readonly meta: DiskMeta | undefined;
  readonly dataPeer: Peer | undefined;
  readonly log: Logger;
  setDisk(d: InvalidateInput['disk']): void;
  changed(): void;
}

/** `urbdadm invalidate`: this node's data is resynced from the peer. */
export async function invalidate(r: InvalidateHost): Promise<void> {
  const peer = r.dataPeer;
  const refusal = decideInvalidate(invalidateInput(r, peer));
  if (refusal) throw refused(refusal);
  const meta = r.meta!;
  setAllBits(meta);
  r.setDisk('Inconsistent');
  const connected = peer?.session?.decided === true;
  r.log.warn(
    { bytes: meta.outOfSyncBytes(), connected },
    connected
      ? 'invalidate: local data discarded, full resync from the peer'
      : 'invalidate: local data discarded; it is resynced from the peer at the next connection',
  );
  r.changed();
  if (connected) await decideAgain(peer);
}

/** `urbdadm invalidate-remote`: the peer's data is resynced from this node. */
export async function invalidateRemote(r: InvalidateHost): Promise<void> {
  const peer = r.dataPeer;
  const refusal = decideInvalidateRemote(invalidateInput(r, peer));
  if (refusal) throw refused(refusal);
  const meta = r.meta!;
  setAllBits(meta);
  rotateForRemote(meta, r.role === 'Primary');
  r.log.warn(
    { bytes: meta.outOfSyncBytes() },
    "invalidate-remote: the peer's data is discarded, full resync to it",
  );
  r.changed();
  await decideAgain(peer!);
}

export function invalidateInput(
  r: { role: InvalidateInput['role']; disk: InvalidateInput['disk'] },
  peer: Peer | undefined,
): InvalidateInput {
  const s = peer?.session;
  return {
    role: r.role,
    disk: r.disk,
    // A running verify shows as VerifyS/VerifyT (the link itself stays Established).
    replication: s?.decided ? (verifyState(peer!) ?? peer!.replication) : 'Off',
    handshaking: s !== undefined && !s.decided,
    peerDisk: s?.decided ? peer!.disk : 'DUnknown',
    peerRole: s?.decided ? peer!.role : 'Unknown',
  };
}

export function setAllBits(meta: DiskMeta): void {
  meta.store.setFlags({ fullSync: true });
  meta.bitmap.setAll();
  meta.persistBitmap();
  meta.store.setFlags({ fullSync: false });
}

/** invalidate-remote's generation step: changes from the peer's generation on are tracked. */
export function rotateForRemote(meta: DiskMeta, primary: boolean): void {
  meta.store.setUuids(newCurrentCommand(meta.superblock().uuids, primary, false));
}

/**
 * Both sides decide again. Replicated writes already received are applied first (as for
 * new-current-uuid); then, in one turn of the loop, our state and UUIDs go out and we decide
 * ourselves, so the peer's bitmap (sent as soon as it decided) finds our side of the exchange
 * already begun.
 */
export async function decideAgain(p: Peer): Promise<void> {
  const s = p.session;
  if (!s?.decided) return;
  await (s.receiver?.quiesce() ?? Promise.resolve());
  if (p.session !== s || !s.decided) return;
  p.sendState(s);
  sendUuids(p, s, 0);
  redecide(p, s);
}
