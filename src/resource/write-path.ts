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
import { TargetRetired } from './device-switch.js';
import { failedLocalCopyOutcome } from './disk-failure.js';

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
  /**
   * The backing disk failed a request. True when the disk is being detached for it
   * (on-io-error detach or call-local-io-error): the request then completes through the
   * peer if the peer has it or can serve it. False (pass_on): the error goes to the client.
   */
  localIoFailed(err: Error): boolean;
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
  /** Set when the disk is being detached: requests not started yet go to the successor. */
  private retired = false;
  /** Requests between their start and the end of their use of the disk and the peer link. */
  private active = 0;
  private idle: (() => void) | undefined;

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

  /**
   * Takes this target out of service before its disk is detached: requests not started yet
   * are rejected with TargetRetired (the device switch runs them on the successor); the
   * ones under way finish here, and drained() says when they have.
   */
  retire(): void {
    this.retired = true;
  }

  /** Resolves once no request uses the disk or the peer link through this target. */
  drained(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const before = this.idle;
      this.idle = () => {
        before?.();
        resolve();
      };
    });
  }

  private enter(): void {
    this.active++;
  }

  private leave(): void {
    if (--this.active > 0) return;
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
  }

  /** Runs `op` as one active request. */
  private tracked<T>(op: () => Promise<T>): Promise<T> {
    this.enter();
    let p: Promise<T>;
    try {
      p = op();
    } catch (err) {
      this.leave();
      return Promise.reject(err as Error);
    }
    return p.finally(() => this.leave());
  }

  read(buf: Buffer, offset: number): Promise<void> {
    if (this.retired) return Promise.reject(new TargetRetired());
    const suspended = this.gate.ioSuspended();
    if (suspended) return suspended.then(() => this.read(buf, offset));
    const denied = this.gate.ioDenied();
    if (denied !== undefined) return Promise.reject(denied);
    return this.tracked(() => this.readNow(buf, offset));
  }

  private readNow(buf: Buffer, offset: number): Promise<void> {
    if (!this.localUpToDate()) {
      const peer = this.gate.readPeer();
      if (peer) return this.readFromPeer(peer, buf, offset);
    }
    return this.disk.read(buf, offset).catch((err: Error) => {
      // drbd.md §1.3 on-io-error detach: a failed local read is read again from the peer.
      const peer = this.gate.localIoFailed(err) ? this.gate.readPeer() : undefined;
      if (!peer) throw err;
      return this.readFromPeer(peer, buf, offset);
    });
  }

  private readFromPeer(
    peer: { remoteRead(buf: Buffer, offset: number): Promise<void> },
    buf: Buffer,
    offset: number,
  ): Promise<void> {
    return peer.remoteRead(buf, offset).catch((err: Error) => {
      throw new TargetError('EIO', err.message);
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
      if (this.retired) throw new TargetRetired();
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
      const [localErr, peerHas] = await this.tracked(() => {
        // The barrier leaves first: the peer's flush is the longer way round (a hop there and
        // one back), and handing our fdatasync to a pool thread takes tens of µs here. The
        // channel hands the barrier to the kernel on the next tick; our flush starts after.
        const peer = tl?.barrier();
        const local = peer === undefined ? this.disk.flush() : afterTick(() => this.disk.flush());
        return Promise.all([local.then(noError, isError), peer]);
      });
      if (localErr !== undefined) {
        // A disk being detached for the error is no longer a copy: the peer's barrier ack
        // alone says whether every completed change is durable on a copy.
        if (!this.gate.localIoFailed(localErr) || peerHas !== true) throw localErr;
        return;
      }
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
    if (this.retired) return Promise.reject(new TargetRetired());
    const disk = this.disk;
    return disk.cache ? this.tracked(() => disk.cache!(offset, length)) : Promise.resolve();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    if (this.retired) return Promise.reject(new TargetRetired());
    const disk = this.disk;
    if (!disk.extents) return Promise.resolve([{ length, hole: false, zero: false }]);
    return this.tracked(() => disk.extents!(offset, length));
  }

  private change(c: Change): Promise<void> {
    if (this.retired) return Promise.reject(new TargetRetired());
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
    // From here until its local write and network part are done the change counts as
    // active: a detach waits for it (drained()) before closing the disk and the metadata.
    // What it does after (wait for a suspension, run again) it does as a new request.
    return this.tracked(() => this.activateAndApply(c)).then((after) => after?.());
  }

  /** Resolves to what remains to do once the change no longer uses the disk, if anything. */
  private activateAndApply(c: Change): Promise<Continuation> {
    const al = this.meta.al;
    const activating = al.begin(c.offset, c.length);
    const go = (): Promise<Continuation> => {
      // The metadata may have failed, or the disk begun to detach, while the extent was
      // being activated: neither may be written on.
      const failure = this.meta.failure;
      if (failure !== null || this.retired) {
        al.end(c.offset, c.length);
        if (failure === null) throw new TargetRetired();
        this.gate.metadataFailed(failure);
        throw new TargetError('EIO', `metadata failed earlier: ${failure.message}`);
      }
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

  private async apply(c: Change, held: Held): Promise<Continuation> {
    const { offset, length, io } = c;
    const lock = this.gate.changeLock;
    if (this.gate.ioHeld) held = await heldOnceDecided(this.gate, offset, length, held);
    if (this.retired) {
      lock.release(held);
      this.meta.al.end(offset, length);
      throw new TargetRetired();
    }
    const tl = this.gate.replicationLog();
    if (tl === undefined) {
      if (!this.localUpToDate()) {
        // The peer went away while this change waited for its extent or range.
        lock.release(held);
        this.meta.al.end(offset, length);
        return () => this.retryOnceReachable(c);
      }
      try {
        this.meta.markOutOfSync(offset, length);
        await io();
      } catch (err) {
        // No peer has it: the error goes to the client whatever on-io-error says, and the
        // disk is detached all the same (detach, call-local-io-error).
        this.gate.localIoFailed(err as Error);
        throw err;
      } finally {
        lock.release(held);
        this.meta.al.end(offset, length);
      }
      return undefined;
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
    let detaching = false;
    try {
      await io();
    } catch (err) {
      localErr = err as Error;
      this.meta.markOutOfSync(offset, length);
      detaching = this.gate.localIoFailed(localErr);
    } finally {
      lock.release(held);
    }
    const peerOk = await net;
    endPart();
    return this.afterBothParts(c, peerOk, localErr, detaching);
  }

  /** What the outcome of both parts means for the client (still active: no waiting here). */
  private afterBothParts(
    c: Change,
    peerOk: boolean,
    localErr: Error | undefined,
    detaching: boolean,
  ): Continuation {
    // DESIGN.md: a change is acknowledged only once it is on every disk that can later be the
    // source of its blocks. A local copy on a disk that is not UpToDate (a SyncTarget, an
    // Inconsistent Primary) is no such disk: it is marked out of sync and the next resync
    // overwrites it from the peer, so without the peer's copy the change failed.
    if (!peerOk && !this.localUpToDate()) return () => this.retryOnceReachable(c);
    // The peer was lost before it confirmed this change. It completes only if the resource
    // lets writes go on without that peer (quorum kept and the peer outdated, or fenced):
    // otherwise it waits (suspend) and runs again from the start, or fails (io-error).
    if (!peerOk) {
      const frozen = this.gate.ioSuspended();
      if (frozen) return () => frozen.then(() => this.change(c));
      const denied = this.gate.ioDenied();
      if (denied !== undefined) throw denied;
    }
    if (localErr !== undefined) {
      const outcome = failedLocalCopyOutcome({ detaching, peerHas: peerOk });
      if (outcome === 'fail') throw localErr;
      // A failed local copy under on-io-error detach: the disk is Failed from the error
      // on (reads go to the peer) and is being detached, and the peer has the change.
      if (outcome === 'retry') return () => this.retryOnceReachable(c);
    }
    return undefined;
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

/** What is left to do once a change no longer uses the disk: wait, then run it again. */
type Continuation = (() => Promise<void>) | undefined;

const noError = (): undefined => undefined;
const isError = (err: unknown): Error => err as Error;

function noGoodCopy(what: string): TargetError {
  return new TargetError(
    'EIO',
    `${what} failed: the peer holding the only UpToDate data did not confirm it, and this node's disk is not UpToDate`,
  );
}

function afterTick<T>(op: () => Promise<T>): Promise<T> {
  return new Promise<void>((resolve) => process.nextTick(resolve)).then(op);
}
