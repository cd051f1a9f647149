import {
  type BlockTarget,
  type Extent,
  type Payload,
  payloadLength,
  type TargetCapabilities,
  TargetError,
  type ZeroOptions,
} from '../nbd/target.js';
import type { FileDisk } from '../storage/file-disk.js';
import type { DiskMeta } from './disk-meta.js';
import type { Held, IntervalLock } from '../replication/interval-lock.js';
import type { ChangeKind, TransferLog } from '../replication/transfer-log.js';

/** What the write path asks of its resource before and while touching data. */
export interface IoGate {
  /**
   * Undefined when application I/O may proceed, else the error to give the client: EPERM on
   * a Secondary, EIO on a Primary that can reach no UpToDate data (drbd.md §2.5,
   * `on-no-data-accessible io-error`).
   */
  ioDenied(): TargetError | undefined;
  /**
   * While I/O is suspended (`on-no-data-accessible suspend-io` and no UpToDate data
   * reachable), a promise that resolves when requests should be tried again: the data is
   * reachable again, or `resume-io` / a demotion ended the suspension (they then fail).
   */
  ioSuspended(): Promise<void> | undefined;
  /** The metadata could not record an activity-log change; the write was failed. */
  metadataFailed(err: Error): void;
  /** Set while the handshake decides: changes wait for it (drbd.md §6.1). */
  readonly ioHeld: Promise<void> | undefined;
  /** Orders overlapping changes here and on the peer (nbd.md R3). */
  readonly changeLock: IntervalLock;
  /** The transfer log of the peer that receives changes now, if one does. */
  replicationLog(): TransferLog | undefined;
  /** A peer to read from, when the local disk is not UpToDate. */
  readPeer(): { remoteRead(buf: Buffer, offset: number): Promise<void> } | undefined;
  /** Counts application writes (the resync yields to them). */
  noteAppIo(): void;
  /** The backing disk failed a request (on-io-error call-local-io-error). */
  localIoFailed(err: Error): void;
}

/**
 * The change lock's range [offset, offset+length), held at a moment when no handshake is
 * deciding. A handshake that began while a change waited for its extent or range decides
 * whether the peer gets it, so the change waits for the decision, without holding the range
 * meanwhile (the handshake waits for the ranges held when it began).
 */
export async function heldOnceDecided(
  gate: IoGate,
  offset: number,
  length: number,
  held?: Held,
): Promise<Held> {
  const lock = gate.changeLock;
  if (held === undefined) {
    const first = lock.acquire(offset, length);
    held = first instanceof Promise ? await first : first;
  }
  for (let hold = gate.ioHeld; hold; hold = gate.ioHeld) {
    lock.release(held);
    await hold;
    const again = lock.acquire(offset, length);
    held = again instanceof Promise ? await again : again;
  }
  return held;
}

/** One change to the data (write, trim, zero), as the write path carries it along. */
interface Change {
  kind: ChangeKind;
  offset: number;
  length: number;
  payload: Payload | undefined;
  fua: boolean;
  /** The local part: the backing disk's write, zero or trim. */
  io: () => Promise<void>;
}

/**
 * The block device a resource exports: DESIGN.md's write path. Every change to the data
 * (write, trim, zero) goes through the same steps:
 *   1. the resource must allow I/O (Primary with usable data); a handshake in progress
 *      holds the change until it has decided;
 *   2. each 4 MiB extent touched is active in the activity log, durably, before any byte
 *      is written (a cold extent costs one metadata transaction);
 *   3. overlapping changes run one after the other, in arrival order;
 *   4. the change is sent to the peer and written locally at once, from the same buffer;
 *      with no peer receiving, its blocks are marked out of sync instead;
 *   5. it completes when the local write and the network part (per protocol, see
 *      transfer-log.ts) are done; the AL references are dropped only once the peer's
 *      barrier ack says the epoch is on its disk, or the blocks were marked out of sync.
 * Reads go to the local disk, or to the peer when the local disk is not UpToDate.
 */
export class ResourceTarget implements BlockTarget {
  readonly capabilities: TargetCapabilities;

  constructor(
    private readonly gate: IoGate,
    private readonly disk: FileDisk,
    private readonly meta: DiskMeta,
    private readonly localUpToDate: () => boolean,
  ) {
    this.capabilities = Object.freeze({ ...disk.capabilities, readOnly: false });
  }

  /** The agreed device size from the metadata, which may be below the backing disk's. */
  get size(): number {
    return this.meta.sizeBytes;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    const suspended = this.gate.ioSuspended();
    if (suspended) return suspended.then(() => this.read(buf, offset));
    const denied = this.gate.ioDenied();
    if (denied !== undefined) return Promise.reject(denied);
    if (!this.localUpToDate()) {
      const peer = this.gate.readPeer();
      if (peer) {
        return peer.remoteRead(buf, offset).catch((err: Error) => {
          throw new TargetError('EIO', err.message);
        });
      }
    }
    return this.disk.read(buf, offset).catch((err: Error) => {
      this.gate.localIoFailed(err);
      throw err;
    });
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    const length = payloadLength(data);
    const io = (): Promise<void> => this.disk.write(data, offset, fua);
    return this.change({ kind: 'write', offset, length, payload: data, fua, io });
  }

  /**
   * A trim is only a hint to one disk, but two replicas must read the same afterwards: a
   * backing that cannot punch holes (or not yet known to) would keep the old bytes where the
   * other reads zeroes, and nothing would ever mark the range out of sync. So a replicated
   * trim zeroes its range on every node (a hole where the backing can punch one); the peer's
   * receiver does the same (docs/safety.md §4).
   */
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    const io = (): Promise<void> =>
      this.disk.zero(offset, length, { noHole: false, fastZero: false, fua });
    return this.change({ kind: 'trim', offset, length, payload: undefined, fua, io });
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    const io = (): Promise<void> => this.disk.zero(offset, length, opts);
    return this.change({ kind: 'zero', offset, length, payload: undefined, fua: opts.fua, io });
  }

  /**
   * Every change completed before is durable on this disk and, when a peer receives them,
   * on the peer's disk too: the epoch is closed and its barrier ack (sent after the peer's
   * flush) awaited. Stricter than DRBD 8.4, and what a database's fsync needs.
   */
  async flush(): Promise<void> {
    for (;;) {
      const held = this.gate.ioHeld;
      if (held) await held;
      const suspended = this.gate.ioSuspended();
      if (suspended) {
        await suspended;
        continue;
      }
      const denied = this.gate.ioDenied();
      if (denied !== undefined) throw denied;
      const tl = this.gate.replicationLog();
      const [, peerHas] = await Promise.all([this.disk.flush(), tl?.barrier()]);
      // A peer lost before its barrier ack had every unacked change marked out of sync
      // here: with UpToDate data of our own the flush is still complete on every node that
      // holds UpToDate data, once the resource lets writes go on without that peer (quorum,
      // fencing: see change()). Without UpToDate data here, the peer was the only such node.
      if (peerHas === true) return;
      if (this.localUpToDate()) {
        const frozen = this.gate.ioSuspended();
        if (!frozen) {
          const denied = this.gate.ioDenied();
          if (denied !== undefined) throw denied;
          return;
        }
        await frozen;
        continue;
      }
      const again = this.gate.ioSuspended();
      if (!again) throw noGoodCopy('flush');
      // suspend-io: the flush is tried again once an UpToDate peer is back.
      await again;
    }
  }

  cache(offset: number, length: number): Promise<void> {
    return this.disk.cache ? this.disk.cache(offset, length) : Promise.resolve();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    if (!this.disk.extents) return Promise.resolve([{ length, hole: false, zero: false }]);
    return this.disk.extents(offset, length);
  }

  private change(c: Change): Promise<void> {
    const held = this.gate.ioHeld;
    if (held) return held.then(() => this.change(c));
    const suspended = this.gate.ioSuspended();
    if (suspended) return suspended.then(() => this.change(c));
    const denied = this.gate.ioDenied();
    if (denied !== undefined) return Promise.reject(denied);
    const failure = this.meta.failure;
    if (failure !== null) {
      this.gate.metadataFailed(failure);
      return Promise.reject(new TargetError('EIO', `metadata failed earlier: ${failure.message}`));
    }
    this.gate.noteAppIo();
    const al = this.meta.al;
    const activating = al.begin(c.offset, c.length);
    const go = (): Promise<void> => {
      const lock = this.gate.changeLock.acquire(c.offset, c.length);
      if (lock instanceof Promise) return lock.then((h) => this.apply(c, h));
      return this.apply(c, lock);
    };
    if (activating === undefined) return go();
    return activating.then(go, (err: Error) => {
      this.gate.metadataFailed(err);
      throw new TargetError('EIO', `activity log update failed: ${err.message}`);
    });
  }

  private async apply(c: Change, held: Held): Promise<void> {
    const { offset, length, io } = c;
    const lock = this.gate.changeLock;
    if (this.gate.ioHeld) held = await heldOnceDecided(this.gate, offset, length, held);
    const tl = this.gate.replicationLog();
    if (tl === undefined) {
      if (!this.localUpToDate()) {
        // The peer went away while this change waited for its extent or range.
        lock.release(held);
        this.meta.al.end(offset, length);
        return this.retryOnceReachable(c);
      }
      try {
        this.meta.markOutOfSync(offset, length);
        await io();
      } finally {
        lock.release(held);
        this.meta.al.end(offset, length);
      }
      return;
    }
    // Two parts hold the AL references: the local write, and the transfer-log entry until
    // its epoch is barrier-acked (or it was marked out of sync).
    let parts = 2;
    const endPart = (): void => {
      if (--parts === 0) this.meta.al.end(offset, length);
    };
    // Without UpToDate data here, the peer's disk is the only one that can later be a
    // source of this block: the change must land there, whatever the protocol.
    const mustLand = !this.localUpToDate();
    const net = tl.submit(
      c.kind,
      offset,
      length,
      c.payload,
      c.fua,
      (peerHas) => {
        if (!peerHas) this.meta.markOutOfSync(offset, length);
        endPart();
      },
      mustLand,
    );
    let localErr: Error | undefined;
    try {
      await io();
    } catch (err) {
      localErr = err as Error;
      this.gate.localIoFailed(localErr);
      this.meta.markOutOfSync(offset, length);
    } finally {
      lock.release(held);
    }
    const peerOk = await net;
    endPart();
    // DESIGN.md: a change is acknowledged only once it is on every disk that can later be the
    // source of its blocks. A local copy on a disk that is not UpToDate (a SyncTarget, an
    // Inconsistent Primary) is no such disk: it is marked out of sync and the next resync
    // overwrites it from the peer, so without the peer's copy the change failed.
    if (!peerOk && !this.localUpToDate()) return this.retryOnceReachable(c);
    // The peer was lost before it confirmed this change. It completes only if the resource
    // lets writes go on without that peer (quorum kept and the peer outdated, or fenced):
    // otherwise it waits (suspend) and runs again from the start, or fails (io-error).
    if (!peerOk) {
      const frozen = this.gate.ioSuspended();
      if (frozen) {
        await frozen;
        return this.change(c);
      }
      const denied = this.gate.ioDenied();
      if (denied !== undefined) throw denied;
    }
    // drbd.md §5.1 lets a change succeed when either copy succeeded, because DRBD then
    // detaches the failing disk (on-io-error detach) and reads come from the peer. Until urbd
    // detaches (issue 12), this node would go on reading its stale block: so a failed local
    // copy fails the change (on-io-error pass_on). Its blocks stay marked out of sync.
    if (localErr !== undefined) throw localErr;
  }

  /**
   * A change that no disk able to be a source confirmed: it fails (io-error), or with
   * `suspend-io` waits until an UpToDate peer is reachable and runs again from the start,
   * local copy included: the resync at that reconnect may have overwritten the first local
   * copy, whose blocks were marked out of sync.
   */
  private async retryOnceReachable(c: Change): Promise<void> {
    const suspended = this.gate.ioSuspended();
    if (!suspended) throw noGoodCopy(c.kind);
    await suspended;
    return this.change(c);
  }
}

function noGoodCopy(what: string): TargetError {
  return new TargetError(
    'EIO',
    `${what} failed: the peer holding the only UpToDate data did not confirm it, and this node's disk is not UpToDate`,
  );
}
