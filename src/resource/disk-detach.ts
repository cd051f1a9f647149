/**
 * Detaching the backing disk (drbd.md §1.2 `detach`, §1.3 `on-io-error detach`), by command
 * or after an I/O error, without losing or failing what the application has in flight:
 *   1. new application I/O is held at the device switch (device-switch.ts);
 *   2. the write path over the disk is retired, and the changes under way finish there while
 *      the peer is still connected, so each lands on the peer as well as it would have;
 *   3. a detach by command checks again that an UpToDate peer is there to serve through
 *      (it may have gone while draining: then the disk stays and the detach is refused);
 *   4. the peer sessions, built on the disk, end; the disk and metadata close; the sessions
 *      start again with this node Diskless;
 *   5. a Primary keeps holding I/O until its peer serves it again (or cannot), then the
 *      held requests run through the peer.
 * The handshake's own hold (Resource.holdIo) is not used: apply() waits on it, so a drain
 * waiting behind it could wait for itself.
 */
import type { Logger } from 'pino';
import type { NetOptions, OnIoError } from '../config/index.js';
import type { HandlerName } from './handlers.js';
import type { DeviceSwitch } from './device-switch.js';
import { detachedDiskMarks, detachMayRelease, ioErrorReaction } from './disk-failure.js';
import type { Peer } from './peer.js';
import type { DiskState, Refusal, Role } from './states.js';
import type { ResourceTarget } from './write-path.js';

export interface DetachHost {
  readonly log: Logger;
  readonly role: Role;
  readonly peers: Peer[];
  readonly dataPeer: Peer | undefined;
  readonly net: NetOptions;
  readonly disk: DiskState;
  readonly attached: boolean;
  readonly onIoError: OnIoError;
  readPeer(): Peer | undefined;
  notify(name: HandlerName): void;
  /** Runs `fn` after the admin requests queued before it (Resource.serial). */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  readonly ioSwitch: DeviceSwitch;
  /** The write path over the attached disk. */
  readonly diskTarget: ResourceTarget | undefined;
  /** Why a detach by command is refused now, if it is. */
  detachRefusal(): Refusal | null;
  /** A fresh write path over the same disk, after a detach that was refused late. */
  reviveDiskTarget(): void;
  /** The disk goes Failed (persisted: it comes back Inconsistent); the peers hear of it. */
  diskFailed(): void;
  /** Every block of the disk is marked out of sync, on the metadata. */
  markAllOutOfSync(): void;
  closeDisk(): Promise<void>;
  changed(): void;
}

export class Detacher {
  private waiters: Array<() => void> = [];

  constructor(private readonly r: DetachHost) {}

  /** Every change of state of the resource (Resource.changed). */
  stateChanged(): void {
    const w = this.waiters;
    if (w.length === 0) return;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * The backing disk failed a request (drbd.md §1.3 on-io-error). With `detach` (and
   * `call-local-io-error`, which runs its handler too) the disk is Failed from now on: reads
   * go to the peer, a change the peer has completes, and the disk is detached in the
   * background as soon as the admin requests before it are done. With `pass_on` (false) the
   * error goes to the client; its blocks are marked out of sync.
   */
  ioFailed(err: Error, refused: (x: Refusal) => Error): boolean {
    const r = this.r;
    const reaction = ioErrorReaction(r.onIoError);
    if (!reaction.detach) return false;
    if (r.disk === 'Failed' || !r.attached) return true;
    const through = r.readPeer()?.name;
    r.log.error(
      { err: err.message, onIoError: r.onIoError },
      through
        ? `local disk I/O error: detaching the disk; I/O goes on through ${through}`
        : 'local disk I/O error: detaching the disk; no UpToDate peer, so I/O fails',
    );
    r.diskFailed();
    if (reaction.callHandler) r.notify('local-io-error');
    void r
      .serial(async () => {
        if (r.disk !== 'Failed' || !r.attached) return;
        await this.detach(true, refused);
        r.log.warn('failed disk detached: Diskless');
      })
      .catch((e: Error) => r.log.error({ err: e.message }, 'detaching the failed disk failed'));
    return true;
  }

  /**
   * Detaches the disk. `afterError`: the disk failed (it is Failed already) and goes whatever
   * the peer's state; otherwise `refused` turns a late refusal into the caller's error.
   */
  async detach(afterError: boolean, refused: (x: Refusal) => Error): Promise<void> {
    const r = this.r;
    const sw = r.ioSwitch;
    sw.hold();
    try {
      const target = r.diskTarget;
      if (target) {
        target.retire();
        await target.drained();
      }
      if (!afterError) {
        const refusal = r.detachRefusal();
        if (refusal) {
          r.reviveDiskTarget();
          throw refused(refusal);
        }
      }
      const marks = detachedDiskMarks({ role: r.role, afterError });
      // Failed before the peers go: a Primary losing its peer to its own detach has no new
      // data generation to start and nobody to fence (peer-loss.ts acts on UpToDate data).
      if (marks.failed) r.diskFailed();
      // The peers let go of the disk first: their receivers and resyncs write to it.
      const wasConnected = r.peers.filter((p) => p.connection !== 'StandAlone');
      for (const p of wasConnected) await p.disconnect('local disk detached');
      if (marks.allOutOfSync) r.markAllOutOfSync();
      await r.closeDisk();
      for (const p of wasConnected) {
        await p.connect(false).catch((err: Error) => {
          r.log.error({ peer: p.name, err: err.message }, 'reconnecting after the detach failed');
        });
      }
      r.changed();
      await this.peerServing(wasConnected.some((p) => p === r.dataPeer));
    } finally {
      sw.release();
    }
  }

  /**
   * Waits until a Diskless Primary's peer serves again, or cannot: the link stays down past
   * a few connect attempts, or gave up (StandAlone). A Secondary waits for nothing.
   */
  private async peerServing(peerWasConnected: boolean): Promise<void> {
    const r = this.r;
    const until = Date.now() + Math.max(10_000, 2 * r.net.connectIntMs + r.net.timeoutMs);
    for (;;) {
      const peer = r.dataPeer;
      const release = detachMayRelease({
        role: r.role,
        peerWasConnected,
        peerReadable: peer?.canRead === true && peer.replicating !== undefined,
        peerStandAlone: peer === undefined || peer.connection === 'StandAlone',
      });
      const left = until - Date.now();
      if (release) return;
      if (left <= 0) {
        r.log.warn('detached, but the peer is not back: held I/O is answered as things are');
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(resolve);
      });
      clearTimeout(timer);
    }
  }
}
