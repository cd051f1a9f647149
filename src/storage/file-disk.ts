import fs from 'node:fs';

import {
  TargetError,
  type BlockTarget,
  type Payload,
  payloadLength,
  type Extent,
  type TargetCapabilities,
  type ZeroOptions,
} from '../nbd/target.js';
import { queueLimits, sysfsDeviceSize } from './block-device.js';
import { isUnsupported } from './errno.js';
import { walkExtents } from './extents.js';
import {
  closeFd,
  fdatasync,
  openFd,
  readAll,
  writeAll,
  writeAllSync,
  writevAll,
  writeZeroes,
  type Completion,
} from './fd-io.js';
import { FlushPlan } from './flush-plan.js';
import { loadNative, type NativeBinding } from './native.js';
import { OptionalOp } from './optional-op.js';

export interface FileDiskOptions {
  readOnly?: boolean;
  /** Use the C++ addon when it loads (default true); false forces the pure-TS paths. */
  native?: boolean;
}

/**
 * Largest read tried on the event loop with RWF_NOWAIT. Copying more than this out of the
 * page cache would hold the loop long enough to delay every other connection's replies.
 */
const NOWAIT_MAX = 256 * 1024;

/** Writes up to this size are batched; bigger ones are worth a pool thread each. */
const BATCH_WRITE_MAX = 64 * 1024;
const BATCH_MAX_OPS = 64;

interface WriteBatch {
  bufs: Buffer[];
  offsets: number[];
  done: Completion[];
}

export type BackingKind = 'file' | 'block';

interface Backing {
  path: string;
  kind: BackingKind;
  size: number;
  fd: number;
  /** Opened O_DSYNC so a FUA write is durable when it returns; -1 when read-only. */
  syncFd: number;
  readOnly: boolean;
  native: NativeBinding | null;
  /** Alignment the block-device ioctls demand; 1 for files, where fallocate takes any range. */
  alignment: number;
  punch: boolean;
  zeroRange: boolean;
  discard: boolean;
  zeroOut: boolean;
  fastZero: boolean;
}

/**
 * A BlockTarget over a regular file or a block device, through the kernel page cache.
 *
 * All connections share that cache, so an fdatasync on our fd covers every completed write
 * (multiConn). Trim and zero prefer native calls (fallocate, BLKDISCARD, BLKZEROOUT) and fall
 * back to doing nothing (trim, a hint) or writing zeroes (zero).
 */
export class FileDisk implements BlockTarget {
  readonly path: string;
  readonly kind: BackingKind;
  readonly capabilities: TargetCapabilities;
  /** Whether the C++ addon backs this disk; false means every path is the pure-TS one. */
  readonly nativeInUse: boolean;
  /**
   * Bytes asked of the disk since it was opened (status --statistics' read and written), and
   * the fdatasyncs issued for flushes (fewer than the flushes asked for: see FlushPlan) and
   * how many of them have ended (a flush-ahead may end after a later fdatasync).
   */
  readonly io = { readBytes: 0, writtenBytes: 0, syncs: 0, syncsEnded: 0 };

  /** Bytes the disk offers; re-read by refreshSize() after the disk grew (resize). */
  private bytes: number;
  private readonly fd: number;
  private readonly syncFd: number;
  private readonly native: NativeBinding | null;
  private readonly alignment: number;
  private readonly punch: OptionalOp;
  private readonly zeroRangeOp: OptionalOp;
  private readonly discardOp: OptionalOp;
  private readonly zeroOutOp: OptionalOp;
  private readonly seekOp: OptionalOp;
  private readonly nowaitOp: OptionalOp;
  /** Recent RWF_NOWAIT misses in a row, and reads left before trying again (see read). */
  private nowaitMisses = 0;
  private nowaitSkip = 0;
  private pendingBatch: WriteBatch | undefined;
  /** Why a flush failed, once one has (see sync). */
  private syncFailure: string | undefined;
  private readonly flushPlan = new FlushPlan();
  /** The latest fdatasync: it answers a flush when no change completed since it started. */
  private latestSync: Promise<void> | undefined;

  // Requests still using the fds: close() waits for them so a descriptor number is never
  // reused by the process while a request could still write through it.
  private inflight = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  private constructor(b: Backing) {
    this.path = b.path;
    this.kind = b.kind;
    this.bytes = b.size;
    this.fd = b.fd;
    this.syncFd = b.syncFd;
    this.native = b.native;
    this.nativeInUse = b.native !== null;
    this.alignment = b.alignment;
    this.punch = new OptionalOp(b.punch);
    this.zeroRangeOp = new OptionalOp(b.zeroRange);
    this.discardOp = new OptionalOp(b.discard);
    this.zeroOutOp = new OptionalOp(b.zeroOut);
    this.seekOp = new OptionalOp(b.kind === 'file' && b.native !== null);
    this.nowaitOp = new OptionalOp(b.native !== null);
    this.capabilities = Object.freeze({
      readOnly: b.readOnly,
      flush: true,
      fua: true,
      trim: true,
      zero: true,
      fastZero: b.fastZero,
      cache: true,
      multiConn: true,
    });
  }

  static async open(path: string, options: FileDiskOptions = {}): Promise<FileDisk> {
    const readOnly = options.readOnly ?? false;
    const native = options.native === false ? null : loadNative();
    const { O_RDONLY, O_RDWR, O_WRONLY, O_DSYNC } = fs.constants;
    const fd = await openFd(path, readOnly ? O_RDONLY : O_RDWR);
    let syncFd = -1;
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      let backing: Backing;
      if (st.isFile()) {
        backing = fileBacking(path, fd, Number(st.size), native, readOnly);
      } else if (st.isBlockDevice()) {
        backing = blockBacking(path, fd, st.rdev, native, readOnly);
      } else {
        throw notADisk(path, st);
      }
      if (!readOnly) {
        syncFd = await reopen(fd, path, O_WRONLY | O_DSYNC);
        backing.syncFd = syncFd;
        if (backing.kind === 'file' && native !== null) {
          backing.fastZero = await probePunch(native, fd, backing.size);
          backing.punch = backing.fastZero;
        }
      }
      return new FileDisk(backing);
    } catch (err) {
      if (syncFd >= 0) fs.closeSync(syncFd);
      fs.closeSync(fd);
      throw err;
    }
  }

  get size(): number {
    return this.bytes;
  }

  /**
   * Reads the disk's size again (a file extended with truncate, a loop device after
   * `losetup -c`, an LV after lvextend) and returns it. Only growth is taken: a disk that
   * shrank under an attached device is a fault the next attach reports, and until then the
   * old size keeps every request inside what the metadata agreed.
   */
  refreshSize(): number {
    if (this.closed) throw this.closedError();
    const st = fs.fstatSync(this.fd, { bigint: true });
    const now =
      this.kind === 'file'
        ? Number(st.size)
        : this.native !== null
          ? this.native.blockDeviceSize(this.fd)
          : sysfsDeviceSize(st.rdev);
    if (now > this.bytes) this.bytes = now;
    return now;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    this.io.readBytes += buf.length;
    // Cached data is copied out right here: no thread-pool round trip for the common case.
    let got: number;
    try {
      got = this.readCached(buf, offset);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (got === buf.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.inflight++;
      readAll(
        this.fd,
        got === 0 ? buf : buf.subarray(got),
        offset + got,
        this.settle(resolve, reject),
      );
    });
  }

  /**
   * read(), done before returning when every byte is in the page cache: true then; false
   * (nothing promised about `buf`) when the caller must read() instead. For a caller that
   * answers many reads in one turn and wants each answer out before the next read (a
   * SyncSource), where a promise would hold every answer until the whole turn is done.
   */
  readNow(buf: Buffer, offset: number): boolean {
    if (this.closed) return false;
    let got: number;
    try {
      got = this.readCached(buf, offset);
    } catch {
      return false; // read() reports it
    }
    if (got !== buf.length) return false;
    this.io.readBytes += buf.length;
    return true;
  }

  /**
   * preadv2(RWF_NOWAIT): the bytes copied from the page cache (0 when not tried). Throws what
   * the read failed with, other than "not supported here".
   */
  private readCached(buf: Buffer, offset: number): number {
    if (this.native === null || !this.nowaitOp.available || buf.length > NOWAIT_MAX) return 0;
    if (this.nowaitSkip > 0) {
      this.nowaitSkip--;
      return 0;
    }
    let got = 0;
    try {
      got = this.native.readNowait(this.fd, buf, offset);
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      this.nowaitOp.giveUp();
    }
    if (got === buf.length) {
      this.nowaitMisses = 0;
      return got;
    }
    // A workload that misses the cache pays for a failed syscall on every read; back off
    // exponentially while misses keep coming, and try again every so often.
    this.nowaitMisses = Math.min(this.nowaitMisses + 1, 6);
    this.nowaitSkip = (1 << this.nowaitMisses) - 1;
    return Math.max(0, got);
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.capabilities.readOnly) return reject(this.readOnlyError());
      if (this.closed) return reject(this.closedError());
      if (fua && this.syncFailure !== undefined) return reject(this.syncFailedError());
      this.inflight++;
      this.flushPlan.changeStarted();
      this.io.writtenBytes += payloadLength(data);
      // Through the O_DSYNC fd each write(2) is durable on return, which is cheaper than an
      // fdatasync that would also flush every other dirty page of the disk.
      const settle = this.settle(resolve, reject, true);
      const done: Completion = fua ? (err) => settle(this.noteSyncFailure(err)) : settle;
      const fd = fua ? this.syncFd : this.fd;
      if (!Buffer.isBuffer(data)) {
        writevAll(fd, data, offset, done);
        return;
      }
      if (!fua && this.native !== null && data.length <= BATCH_WRITE_MAX) {
        this.batchWrite(this.native, data, offset, done);
        return;
      }
      writeAll(fd, data, data.length, offset, done);
    });
  }

  /**
   * Small writes issued in the same turn of the event loop (a client's pipelined requests
   * arrive together) leave as one thread-pool job: one hand-off instead of one per write.
   */
  private batchWrite(native: NativeBinding, buf: Buffer, offset: number, done: Completion): void {
    let batch = this.pendingBatch;
    if (batch === undefined) {
      batch = { bufs: [], offsets: [], done: [] };
      this.pendingBatch = batch;
      process.nextTick(() => this.submitBatch(native, batch!));
    }
    batch.bufs.push(buf);
    batch.offsets.push(offset);
    batch.done.push(done);
    // Past this size the batch goes now, so one long job does not hold every write.
    if (batch.bufs.length >= BATCH_MAX_OPS) this.pendingBatch = undefined;
  }

  private submitBatch(native: NativeBinding, batch: WriteBatch): void {
    if (this.pendingBatch === batch) this.pendingBatch = undefined;
    if (batch.bufs.length === 1) {
      const buf = batch.bufs[0]!;
      if (this.inflight === 1) {
        // The only request on this disk (a client at queue depth 1, the secondary's copy
        // of each replicated write at queue depth 1): copied into the page cache right
        // here, a few µs for 64 KiB at most, where a trip through the thread pool costs a
        // futex wake, an eventfd write and read and another turn of the loop, on both
        // nodes for every replicated write. The cost: a write throttled by dirty-page
        // writeback holds the loop instead of a pool thread; with other requests in
        // flight that would hold them up too, so those writes still go to the pool.
        writeAllSync(this.fd, buf, batch.offsets[0]!, batch.done[0]!);
        return;
      }
      // Alone, a write is quicker through libuv's own path (which may use io_uring).
      writeAll(this.fd, buf, buf.length, batch.offsets[0]!, batch.done[0]!);
      return;
    }
    native.writeBatch(this.fd, batch.bufs, batch.offsets).then(
      (errors) => {
        for (let i = 0; i < batch.done.length; i++) batch.done[i]!(errors[i] ?? null);
      },
      (err: Error) => {
        for (const done of batch.done) done(err);
      },
    );
  }

  flush(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    const latest = this.latestSync;
    if (this.flushPlan.flushRequested() === 'reuse' && latest !== undefined) return latest;
    return this.startSync(false);
  }

  private startSync(ahead: boolean): Promise<void> {
    this.flushPlan.syncStarted(ahead);
    this.io.syncs++;
    const p = this.track(() => this.sync());
    this.latestSync = p;
    const ended = (): void => {
      if (ahead) this.flushPlan.aheadEnded();
      this.io.syncsEnded++;
    };
    p.then(ended, ended);
    return p;
  }

  /** Runs once the replies of this turn are out (see FlushPlan). */
  private readonly maybeFlushAhead = (): void => {
    if (this.closed || this.syncFailure !== undefined || !this.flushPlan.aheadWanted()) return;
    this.startSync(true);
  };

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    if (this.capabilities.readOnly) return Promise.reject(this.readOnlyError());
    return this.trackChange(async () => {
      if (length === 0) return;
      if (this.kind === 'file') await this.trimFile(offset, length);
      else await this.trimBlock(offset, length);
      if (fua) await this.sync();
    });
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (this.capabilities.readOnly) return Promise.reject(this.readOnlyError());
    return this.trackChange(async () => {
      if (length === 0) return;
      if (this.kind === 'file') await this.zeroFile(offset, length, opts);
      else await this.zeroBlock(offset, length, opts);
      if (opts.fua) await this.sync();
    });
  }

  cache(_offset: number, _length: number): Promise<void> {
    // The page cache already reads ahead; an explicit prefetch has not been worth a syscall.
    return this.closed ? Promise.reject(this.closedError()) : Promise.resolve();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    if (this.closed) return Promise.reject(this.closedError());
    const end = Math.min(offset + length, this.bytes);
    if (offset >= end) return Promise.resolve([]);
    const native = this.native;
    if (native !== null && this.seekOp.available) {
      try {
        return Promise.resolve(walkExtents(native, this.fd, offset, end));
      } catch (err) {
        if (!isUnsupported(err)) return Promise.reject(err);
        this.seekOp.giveUp();
      }
    }
    return Promise.resolve([{ length: end - offset, hole: false, zero: false }]);
  }

  /** Waits for requests in flight, then closes the descriptors. Idempotent. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    if (this.syncFd >= 0) await closeFd(this.syncFd);
    await closeFd(this.fd);
  }

  /**
   * fdatasync, failing for good once it has failed: Linux may mark the lost pages clean after
   * a failed writeback, so a later fdatasync can succeed without the data being anywhere.
   * Only a fresh open (an operator's decision, after checking the disk) clears this.
   */
  private async sync(): Promise<void> {
    if (this.syncFailure !== undefined) throw this.syncFailedError();
    try {
      await fdatasync(this.fd);
    } catch (err) {
      // Whatever fdatasync says went wrong, some written data may not be on the disk.
      this.syncFailure ??= (err as NodeJS.ErrnoException).code ?? String(err);
      throw err;
    }
  }

  /** An O_DSYNC write that hit an I/O error counts as a failed flush. */
  private noteSyncFailure(err: Error | null): Error | null {
    if (err !== null && (err as NodeJS.ErrnoException).code === 'EIO') this.syncFailure ??= 'EIO';
    return err;
  }

  private syncFailedError(): TargetError {
    return new TargetError(
      'EIO',
      `${this.path}: an earlier flush failed (${this.syncFailure}); durability is no longer known`,
    );
  }

  /** `change`: the request changed the disk (a write), which the flush plan counts. */
  private settle(resolve: () => void, reject: (err: Error) => void, change = false): Completion {
    return (err) => {
      if (change) this.changeCompleted();
      this.leave();
      if (err === null) resolve();
      else reject(err);
    };
  }

  private changeCompleted(): void {
    if (this.flushPlan.changeCompleted()) setImmediate(this.maybeFlushAhead);
  }

  /** Requests handed to the kernel and not yet completed (lower-pending). */
  get pending(): number {
    return this.inflight;
  }

  private leave(): void {
    if (--this.inflight === 0 && this.drained !== undefined) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  }

  private async track<T>(run: () => Promise<T>): Promise<T> {
    if (this.closed) throw this.closedError();
    this.inflight++;
    try {
      return await run();
    } finally {
      this.leave();
    }
  }

  private async trackChange(run: () => Promise<void>): Promise<void> {
    if (this.closed) throw this.closedError();
    this.flushPlan.changeStarted();
    try {
      await this.track(run);
    } finally {
      this.changeCompleted();
    }
  }

  private async trimFile(offset: number, length: number): Promise<void> {
    const native = this.native;
    if (native === null) return;
    await this.punch.attempt(() => native.punchHole(this.fd, offset, length));
  }

  private async trimBlock(offset: number, length: number): Promise<void> {
    const native = this.native;
    const { start, end } = alignInward(offset, length, this.alignment);
    // The unaligned edges are simply not trimmed: a trim is only a hint.
    if (native === null || start >= end) return;
    await this.discardOp.attempt(() => native.discard(this.fd, start, end - start));
  }

  private async zeroFile(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    const native = this.native;
    if (native !== null) {
      // A hole reads as zeroes and frees the space, so it is the best answer unless the
      // client needs the range to stay allocated.
      if (
        !opts.noHole &&
        (await this.punch.attempt(() => native.punchHole(this.fd, offset, length)))
      )
        return;
      if (await this.zeroRangeOp.attempt(() => native.zeroRange(this.fd, offset, length))) return;
    }
    if (opts.fastZero) throw this.notFastError();
    await writeZeroes(this.fd, offset, length);
  }

  private async zeroBlock(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    // Without device offload BLKZEROOUT makes the kernel write zero pages: cheaper than us
    // doing it, but not the "much faster than a write" that a fast-zero request asks for.
    if (opts.fastZero && !this.capabilities.fastZero) throw this.notFastError();
    const native = this.native;
    const { start, end } = alignInward(offset, length, this.alignment);
    if (native !== null && start < end) {
      const zeroed = await this.zeroOutOp.attempt(() =>
        native.zeroOut(this.fd, start, end - start),
      );
      if (zeroed) {
        await writeZeroes(this.fd, offset, start - offset);
        await writeZeroes(this.fd, end, offset + length - end);
        return;
      }
      if (opts.fastZero) throw this.notFastError();
    }
    await writeZeroes(this.fd, offset, length);
  }

  private readOnlyError(): TargetError {
    return new TargetError('EPERM', `${this.path}: opened read-only`);
  }

  private closedError(): TargetError {
    return new TargetError('EBADF', `${this.path}: disk is closed`);
  }

  private notFastError(): TargetError {
    return new TargetError('ENOTSUP', `${this.path}: no fast way to zero on this backing`);
  }
}

function fileBacking(
  path: string,
  fd: number,
  size: number,
  native: NativeBinding | null,
  readOnly: boolean,
): Backing {
  const hasNative = native !== null && !readOnly;
  return {
    path,
    kind: 'file',
    size,
    fd,
    syncFd: -1,
    readOnly,
    native,
    alignment: 1,
    // Settled by probePunch once the fd is known to be writable.
    punch: false,
    zeroRange: hasNative,
    discard: false,
    zeroOut: false,
    fastZero: false,
  };
}

function blockBacking(
  path: string,
  fd: number,
  rdev: bigint,
  native: NativeBinding | null,
  readOnly: boolean,
): Backing {
  const size = native !== null ? native.blockDeviceSize(fd) : sysfsDeviceSize(rdev);
  const limits = queueLimits(rdev);
  const hasNative = native !== null && !readOnly;
  return {
    path,
    kind: 'block',
    size,
    fd,
    syncFd: -1,
    readOnly,
    native,
    alignment: limits.logicalBlockSize,
    punch: false,
    zeroRange: false,
    discard: hasNative && limits.discard,
    zeroOut: hasNative,
    fastZero: hasNative && limits.writeZeroes,
  };
}

/**
 * Punching past EOF with KEEP_SIZE changes nothing a reader can see, so it tells whether this
 * filesystem can punch holes at all before we advertise fast zeroing.
 */
async function probePunch(native: NativeBinding, fd: number, size: number): Promise<boolean> {
  try {
    await native.punchHole(fd, size, 1);
    return true;
  } catch {
    return false;
  }
}

/**
 * Open the very same file again with other flags. Going through /proc rather than the path
 * means a rename or replacement between the two opens cannot hand us a different file.
 */
async function reopen(fd: number, path: string, flags: number): Promise<number> {
  try {
    return await openFd(`/proc/self/fd/${fd}`, flags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return openFd(path, flags);
  }
}

function notADisk(path: string, st: fs.BigIntStats): TargetError {
  if (st.isDirectory()) {
    return new TargetError('EISDIR', `${path}: is a directory, not a regular file or block device`);
  }
  return new TargetError('EINVAL', `${path}: not a regular file or block device`);
}

/** The largest sub-range of [offset, offset+length) whose ends are multiples of `alignment`. */
function alignInward(offset: number, length: number, alignment: number) {
  const start = Math.ceil(offset / alignment) * alignment;
  const end = Math.floor((offset + length) / alignment) * alignment;
  return { start, end };
}
