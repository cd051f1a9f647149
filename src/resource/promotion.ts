/**
 * `primary`: the promotion rules applied (drbd.md §2.9, §8.2, §8.4). With quorum on, only a
 * quorate partition promotes, and --force never overrides that; a disconnected node whose
 * peer is not known Outdated runs fence-peer first; a promotion nobody else can follow starts
 * a new data generation.
 */
import { UUID_JUST_CREATED } from '../meta/store.js';
import { rotateNewCurrent, withPrimaryBit } from '../meta/uuid.js';
import { AdminError, refused } from './admin-error.js';
import { quorumOn } from './cluster.js';
import type { Resource } from './resource.js';
import { decidePromote } from './states.js';

export async function promote(r: Resource, force: boolean): Promise<void> {
  if (r.role === 'Primary') return;
  if (r.tiebreaker) {
    throw new AdminError(
      'SS_NO_UP_TO_DATE_DISK',
      `State change failed: ${r.node} is a diskless tiebreaker of ${r.name}: it holds no data`,
      11,
    );
  }
  // drbd.md §8.4: with quorum on, a node may be promoted only while its partition has
  // quorum; --force overrides the disk state, never quorum (as in DRBD 9).
  if (quorumOn(r.config) && !r.cluster.verdict.quorum) {
    throw new AdminError('SS_NO_QUORUM', `State change failed: ${r.cluster.verdict.reason}`, 11);
  }
  const peer = r.dataPeer;
  const decide = (): ReturnType<typeof decidePromote> =>
    decidePromote({
      role: r.role,
      disk: r.disk,
      connected: r.connected,
      peerRole: peer?.role ?? 'Unknown',
      peerDisk: peer?.disk ?? 'DUnknown',
      allowTwoPrimaries: r.config.net.allowTwoPrimaries,
      fencing: r.fencing,
      force,
    });
  // drbd.md §2.9 / §8.2 case 2: a disconnected node whose peer is not known Outdated runs
  // fence-peer before it takes the Primary role; a fenced peer lets Consistent data count
  // as UpToDate. If fencing fails, only --force promotes ("forced into split brain").
  if (
    peer !== undefined &&
    r.fencing !== 'dont-care' &&
    !r.connected &&
    !peer.knownOutdated &&
    (r.disk === 'UpToDate' || r.disk === 'Consistent')
  ) {
    const fenced = await r.fencer.fence(peer, false);
    if (fenced === 'self-outdated') {
      throw new AdminError(
        'SS_NO_UP_TO_DATE_DISK',
        `State change failed: fence-peer says ${peer.name} is Primary; ${r.node} is Outdated now`,
        11,
      );
    }
    if (fenced === 'peer-fenced' && r.disk === 'Consistent') r.setDisk('UpToDate');
    if (fenced !== 'peer-fenced' && force) {
      r.log.error(
        { peer: peer.name },
        'fence-peer did not outdate the peer; --force: forced into split brain situation',
      );
    }
  }
  const decision = decide();
  if ('code' in decision) throw refused(decision);
  const meta = r.meta;
  if (!meta) {
    // Diskless: no generation of our own; the data and its UUIDs are the peer's.
    r.role = 'Primary';
    r.log.info('promoted to Primary (diskless: reads and writes go to the peer)');
    for (const p of r.peers) p.sendState();
    r.changed();
    return;
  }
  const sb = meta.superblock();
  // drbd.md §2.9 step 3: a promotion that nobody else can follow starts a new data
  // generation, so the writes from here on are told apart from the peer's at reconnect.
  const newGeneration = decision.forced || (!r.connected && sb.uuids.bitmap === 0n);
  const uuids = newGeneration
    ? rotateNewCurrent(sb.uuids, true)
    : { ...sb.uuids, current: withPrimaryBit(sb.uuids.current, true) };
  if (newGeneration && sb.uuids.bitmap !== 0n && sb.uuids.bitmap !== UUID_JUST_CREATED) {
    r.log.warn(
      { bitmapUuid: sb.uuids.bitmap.toString(16) },
      'new current UUID overwrites a non-zero bitmap UUID',
    );
  }
  meta.store.setUuids(uuids);
  // A crashed-primary flag goes with a new generation: it only ever steers a handshake
  // between equal current UUIDs, and from here the crashed tail is in the bitmap, tracked
  // against the old generation (now B), so bitmap-self sends it to a peer still at the old one.
  if (newGeneration && sb.flags.crashedPrimary) {
    meta.store.setFlags({ crashedPrimary: false });
    r.log.info('crashed-primary cleared: promoted into a new data generation');
  }
  if (decision.forced) r.disk = 'UpToDate';
  r.role = 'Primary';
  r.persistFlags();
  r.log.info({ forced: decision.forced, newGeneration }, 'promoted to Primary');
  // drbd.md §2.9: a forced promotion while connected sends the new UUIDs, and the peer's
  // data is judged against them again (a fresh peer then gets its initial full sync).
  for (const p of r.peers) {
    if (newGeneration) p.uuidsChanged(false);
    else p.sendState();
  }
  r.changed();
}
