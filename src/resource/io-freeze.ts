/**
 * Suspended application I/O: why a Primary holds its requests now (no data, no quorum, a
 * lost peer not yet outdated, fence-peer not done), when they are released, and `resume-io`.
 */
import type { Logger } from 'pino';
import type { ResourceConfig } from '../config/index.js';
import type { Cluster } from './cluster.js';
import { quorumOn } from './cluster.js';
import type { Fencer } from './fencing.js';
import type { Peer } from './peer.js';
import type { PeerLoss } from './peer-loss.js';
import type { DiskState, Role } from './states.js';

/** What the freeze needs from its resource. */
export interface IoFreezeHost {
  readonly name: string;
  readonly role: Role;
  readonly disk: DiskState;
  readonly config: ResourceConfig;
  readonly cluster: Cluster;
  readonly fencer: Fencer;
  readonly log: Logger;
  readonly dataPeer: Peer | undefined;
  readonly loss: PeerLoss;
  readPeer(): Peer | undefined;
  changed(): void;
}

export class IoFreeze {
  private suspension: { promise: Promise<void>; release: () => void } | undefined;
  /** `resume-io` ended a suspension while no data was reachable: fail until it is again. */
  private ioResumed = false;
  /** `resume-io` ended a quorum suspension: fail until quorum is back. */
  quorumResumed = false;
  /** resource-and-stonith: fence-peer runs or failed; I/O waits for it (or resume-io). */
  fencingFreeze = false;

  constructor(
    private readonly r: IoFreezeHost,
    /** Publishes the resource's state (the daemon's onChange). */
    private readonly publish: () => void,
    /** The error resume-io throws when nothing is suspended. */
    private readonly notSuspended: () => Error,
  ) {}

  get suspended(): boolean {
    return this.suspension !== undefined;
  }

  private get dataReachable(): boolean {
    return this.r.disk === 'UpToDate' || this.r.readPeer() !== undefined;
  }

  /** A Primary whose partition has no quorum (drbd.md §8.4). */
  get noQuorum(): boolean {
    const r = this.r;
    return r.role === 'Primary' && quorumOn(r.config) && !r.cluster.verdict.quorum;
  }

  /**
   * Why application I/O is held now, if it is: each reason ends by itself (data or quorum
   * back, the lost peer outdated, fence-peer done) or through `resume-io` / a demotion.
   *   - on-no-data-accessible suspend-io and no UpToDate data reachable (drbd.md §1.3);
   *   - on-no-quorum suspend-io and no quorum (§8.4);
   *   - a lost data peer not yet outdated through the tiebreaker (cluster.ts);
   *   - resource-and-stonith while fence-peer has not succeeded (§8.1).
   */
  freezeReason(): string | undefined {
    const r = this.r;
    if (r.role !== 'Primary') return undefined;
    const o = r.config.options;
    if (o.onNoDataAccessible === 'suspend-io' && !this.ioResumed && !this.dataReachable) {
      return 'no UpToDate data reachable (on-no-data-accessible suspend-io)';
    }
    if (this.noQuorum) {
      // io-error: requests fail at once (ioDenied) instead of waiting for anything else.
      if (o.onNoQuorum !== 'suspend-io' || this.quorumResumed) return undefined;
      return `${r.cluster.verdict.reason} (on-no-quorum suspend-io)`;
    }
    if (r.loss.pending) {
      const { outdating, outdateFailed } = r.loss;
      return `waiting until ${[...outdating, ...outdateFailed].join(', ')} is outdated through the tiebreaker`;
    }
    if (this.fencingFreeze) {
      const why = r.fencer.lastFailure;
      return `fence-peer has not succeeded${why ? ` (${why})` : ''}: fencing resource-and-stonith holds I/O`;
    }
    return undefined;
  }

  /**
   * While application I/O is held (freezeReason), a promise that resolves when requests
   * should be tried again; changes then run again from the start, local copy included.
   */
  ioSuspended(): Promise<void> | undefined {
    if (this.suspension) return this.suspension.promise;
    const why = this.freezeReason();
    if (why === undefined) return undefined;
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.suspension = { promise, release };
    this.r.log.warn({ why }, 'I/O suspended');
    this.publish();
    return promise;
  }

  checkSuspension(): void {
    if (this.dataReachable) this.ioResumed = false;
    if (!this.noQuorum) this.quorumResumed = false;
    const s = this.suspension;
    if (!s || this.freezeReason() !== undefined) return;
    this.suspension = undefined;
    this.r.log.info('I/O resumed');
    s.release();
  }

  /**
   * `resume-io`: a fencing freeze thaws (I/O goes on: the admin takes over fence-peer's
   * job, as with DRBD); requests held for want of data or quorum fail now (EIO), and so do
   * new ones until data or quorum is back.
   */
  resumeIo(): void {
    const r = this.r;
    const { outdating, outdateFailed } = r.loss;
    const s = this.suspension;
    if (!s && !this.fencingFreeze) throw this.notSuspended();
    const writesGoOnWithoutPeer = this.fencingFreeze || r.loss.pending;
    if (this.fencingFreeze) {
      this.fencingFreeze = false;
      r.log.warn('resume-io: fencing freeze lifted by the admin');
    }
    if (!this.dataReachable) this.ioResumed = true;
    if (this.noQuorum) this.quorumResumed = true;
    if (r.loss.pending) {
      r.log.warn(
        { peers: [...outdating, ...outdateFailed] },
        'resume-io: writes go on without the lost peer being outdated',
      );
      outdating.clear();
      outdateFailed.clear();
    }
    // The writes from here on are ones the lost peer never gets: a new data generation, as
    // when fence-peer or the tiebreaker outdated it (DRBD's NEW_CUR_UUID at resume-io).
    // Without it a peer promoted meanwhile (rotated, its bitmap UUID our current) would make
    // this node a plain SyncTarget at the reconnect, its writes overwritten with no split
    // brain seen.
    const peer = r.dataPeer;
    if (
      writesGoOnWithoutPeer &&
      r.role === 'Primary' &&
      r.disk === 'UpToDate' &&
      peer !== undefined &&
      !peer.established
    ) {
      r.loss.newGenerationWithout(peer);
    }
    this.suspension = undefined;
    if (s) r.log.warn('resume-io: suspended requests are retried or fail with EIO');
    s?.release();
    r.changed();
  }
}
