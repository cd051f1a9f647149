/**
 * What becomes of a Primary's writes when it loses the data peer receiving them: a new data
 * generation, an outdate through the tiebreaker, fence-peer, or a freeze (quorum.ts
 * peerLossAction decides which). The lost peers still being outdated hold I/O (io-freeze.ts).
 */
import type { Logger } from 'pino';
import { rotateNewCurrent } from '../meta/uuid.js';
import type { DiskMeta } from './disk-meta.js';
import type { Cluster } from './cluster.js';
import type { Fencer } from './fencing.js';
import type { Peer } from './peer.js';
import { peerLossAction } from './quorum.js';
import type { DiskState, Fencing, Role } from './states.js';

/** What peer-loss handling needs from its resource. */
export interface PeerLossHost {
  readonly role: Role;
  readonly disk: DiskState;
  readonly meta: DiskMeta | undefined;
  readonly cluster: Cluster;
  readonly fencer: Fencer;
  readonly fencing: Fencing;
  readonly log: Logger;
  persistFlags(): void;
  changed(): void;
}

export class PeerLoss {
  /** Lost peers being outdated through the tiebreaker: their writes are held meanwhile. */
  readonly outdating = new Set<string>();
  /** Lost peers that could not be outdated: their writes stay held until they are back. */
  readonly outdateFailed = new Set<string>();

  constructor(private readonly r: PeerLossHost) {}

  /** Lost peers whose outdating holds writes. */
  get pending(): boolean {
    return this.outdating.size > 0 || this.outdateFailed.size > 0;
  }

  /**
   * A session ended. For a Primary with UpToDate data that lost the data peer receiving its
   * writes, quorum.ts's peerLossAction says what becomes of the writes that peer did not
   * confirm: they complete (quorum off, no fencing), wait until the tiebreaker has outdated
   * the peer, wait for fence-peer, or stay frozen (no quorum, on-no-quorum).
   */
  lostPeer(peer: Peer, wasReplicating: boolean, peerWasUpToDate: boolean): void {
    const r = this.r;
    r.cluster.peerGone(peer);
    const meta = r.meta;
    if (
      !meta ||
      !wasReplicating ||
      r.role !== 'Primary' ||
      r.disk !== 'UpToDate' ||
      !peerWasUpToDate
    ) {
      r.persistFlags();
      return;
    }
    const action = peerLossAction({
      ...r.cluster.input(),
      fencing: r.fencing,
      lostPeer: peer.name,
    });
    r.log.info({ peer: peer.name, action }, 'lost the data peer as Primary');
    switch (action) {
      case 'complete':
        this.newGenerationWithout(peer);
        break;
      case 'outdate-through-tiebreaker':
        this.outdating.add(peer.name);
        void r.cluster.outdateThroughTiebreaker(peer).then((ok) => {
          if (!this.outdating.delete(peer.name)) return;
          if (ok) {
            peer.knownOutdated = true;
            if (!peer.established) peer.disk = 'Outdated';
            this.newGenerationWithout(peer);
            r.log.info({ peer: peer.name }, 'the lost peer is outdated: writes go on');
          } else {
            r.log.warn(
              { peer: peer.name },
              'could not outdate the lost peer through the tiebreaker: writes stay frozen until it is back or quorum says otherwise',
            );
            this.outdateFailed.add(peer.name);
          }
          r.changed();
        });
        break;
      case 'fence':
        this.fencePeer(peer);
        break;
      case 'freeze':
        break;
    }
    r.persistFlags();
  }

  /**
   * drbd.md §3.5: writes go on without the peer, so they start a new data generation
   * (unless one is already being tracked, B != 0), to be told apart from anything the peer
   * does on its own.
   */
  newGenerationWithout(peer: Peer): void {
    const meta = this.r.meta;
    if (!meta) return;
    const sb = meta.superblock();
    if (sb.uuids.bitmap === 0n) {
      meta.store.setUuids(rotateNewCurrent(sb.uuids, true));
      this.r.log.info({ peer: peer.name }, 'lost the peer as Primary: new data generation');
    }
    this.r.persistFlags();
  }

  /**
   * drbd.md §8.2 case 1: a Primary lost its data peer with fencing on. resource-only goes on
   * writing while fence-peer runs; resource-and-stonith holds I/O until it succeeds.
   */
  private fencePeer(peer: Peer): void {
    const stonith = this.r.fencing === 'resource-and-stonith';
    if (!stonith) this.newGenerationWithout(peer);
    void this.r.fencer.fence(peer, stonith);
  }

  /** A lost peer is back: it no longer needs outdating. Says whether it did. */
  peerBack(peer: Peer): boolean {
    const a = this.outdateFailed.delete(peer.name);
    const b = this.outdating.delete(peer.name);
    return a || b;
  }
}
