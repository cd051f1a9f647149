/**
 * Resync (drbd.md §6.3): the SyncTarget drives. It walks its bitmap (the union of both
 * nodes' bitmaps after the exchange) in order, asks the source for each dirty run, writes
 * the reply, clears the bits and acknowledges; the source clears its bits on that ack.
 *
 * Both sides take the same IntervalLock as replicated application writes. On the source a
 * resync read waits for overlapping application writes to finish locally and is queued on
 * the data socket before any later one, and the target applies data-socket frames in order,
 * so a block never ends older on the target than on the source.
 *
 * A SyncTarget can be Primary (promoted during a resync, reading through its source): its
 * own application writes then start here, and the argument above does not cover them. So a
 * target where application writes may start holds each request's range from before it sends
 * the request until the reply is written (DRBD locks resync extents against the activity log
 * the same way). A local write is then either wholly before the request (it reaches the
 * source first, on the same ordered data socket, so the source's read sees it) or wholly
 * after the reply was written; otherwise a reply read before the write could land over it,
 * and the disks would differ with both sides saying they are in sync. A Secondary target
 * takes the range only for the write of the reply: replicated writes from the source must
 * not wait behind a request whose reply comes after them on the same socket.
 */
import type { Bitmap } from '../meta/bitmap.js';
import { BM_BLOCK_SIZE, blocksCovered } from '../meta/bitmap.js';
import { payloadPool } from '../nbd/buffer-pool.js';
import { releasePayload } from './frame.js';
import { payloadSlabs, SLAB_PAYLOAD_MAX } from './payload-slabs.js';
import type { Held, IntervalLock } from './interval-lock.js';
import { RESYNC_MAX_REQUEST, RESYNC_TICK_MS, type ResyncRates } from './rate.js';
import { blockDigests, differingBlocks } from './verify.js';

const MAX_REQUEST_BITS = RESYNC_MAX_REQUEST / BM_BLOCK_SIZE;
/**
 * Dirty runs at most this many clean blocks apart go in one request: copying 64 KiB of clean
 * blocks costs less than a request, a reply, an ack and a disk write of their own.
 */
export const MERGE_GAP_BITS = 16;
/** Replies written at once by the one resync writer (bytes, writes). */
const WRITE_BATCH_BYTES = 8 * RESYNC_MAX_REQUEST;
const WRITE_BATCH_COUNT = 64;
/** A run of adjacent replies this large is written on its own (see writeNext). */
export const LARGE_RUN = 1 << 20;
/** Small runs queued past this go to the disk without waiting for the batch before. */
export const EARLY_BATCH_BYTES = 512 * 1024;
/** At most this many batches at once: each holds a thread of the pool while it writes. */
export const MAX_WRITE_JOBS = 8;

/**
 * The bits a completed copy of [offset, offset+length) makes clean: only whole blocks
 * (drbd.md §4.6), except that the device's last block, when the size is not a multiple of
 * 4 KiB, counts as whole once everything up to the end of the device was copied.
 */
function bitsCopied(offset: number, length: number, sizeBytes: number): [number, number] {
  const [first, end] = blocksCovered(offset, length);
  if (offset + length === sizeBytes) return [first, Math.ceil(sizeBytes / BM_BLOCK_SIZE)];
  return [first, end];
}

export interface ResyncTargetIo {
  request(offset: number, length: number): void;
  ack(offset: number, length: number, ok: boolean): void;
  write(data: Buffer | Buffer[], offset: number): Promise<void>;
  /** Called every tick: the rates for the next tick. */
  rates(): ResyncRates;
  /** The pass ended: no request in flight and no bit left but failed ones. */
  finished(failedBits: number): void;
  /** Application writes may start on this node (Primary, or being promoted). */
  localWrites(): boolean;
}

interface Request {
  length: number;
  replied: boolean;
  /** Taken before the request was sent (localWrites) or once the reply came. */
  held: Held | undefined;
  /** Sent without its range held: must be written before local writes may start. */
  unlocked: boolean;
  /** Spans clean blocks between dirty runs (runEnd). */
  merged: boolean;
}

export class ResyncTarget {
  private pos = 0;
  private inflightBytes = 0;
  /** Requests sent (or waiting for their range) and not yet written or failed, by offset. */
  private readonly inflight = new Map<number, Request>();
  private unlockedWaiters: Array<() => void> = [];
  /** Replies waiting for the one resync writer, in arrival order. */
  private readonly writes: Array<{
    offset: number;
    payload: Buffer;
    pooled: boolean;
    held: Held;
    done: (ok: boolean) => void;
  }> = [];
  /** Batches being written, bytes waiting in `writes`, and whether a large run is being written. */
  private writeJobs = 0;
  private queuedBytes = 0;
  private largeWriting = false;
  /** Bit ranges [first, end) that failed in this resync: not asked for again. */
  private readonly failed: Array<[number, number]> = [];
  /** Bit ranges [first, end) whose merged request failed: not merged again. */
  private readonly unmerged: Array<[number, number]> = [];
  private budget = 0;
  private window = RESYNC_MAX_REQUEST;
  private timer: NodeJS.Timeout | undefined;
  private paused = false;
  private stopped = false;
  private passes = 0;
  failedBits = 0;
  /** Bytes received and written, for the rate shown in status. */
  bytesDone = 0;
  /** Bytes the source found equal by their digests (csums): cleared without data. */
  inSyncBytes = 0;
  readonly startBits: number;

  constructor(
    private readonly bitmap: Bitmap,
    private readonly lock: IntervalLock,
    private readonly sizeBytes: number,
    private readonly io: ResyncTargetIo,
    /**
     * Bits per request: smaller with csums, where a request is the unit the source sends
     * whole when any block of it differs.
     */
    private readonly maxRequestBits = MAX_REQUEST_BITS,
  ) {
    this.startBits = bitmap.count();
  }

  start(): void {
    this.tick();
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) this.pump();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    // Ranges of requests that will never be answered now; those being written are released
    // by their write.
    for (const req of this.inflight.values()) {
      if (!req.replied && req.held) this.lock.release(req.held);
      if (!req.replied) req.held = undefined;
    }
    this.wakeUnlockedWaiters();
  }

  /**
   * Resolves once no request sent without its range held is still unwritten: from then on
   * application writes may start here (resync.ts header). New requests take their range at
   * once while `localWrites()` says so.
   */
  unlockedDrained(): Promise<void> {
    if (this.stopped || !this.hasUnlocked()) return Promise.resolve();
    return new Promise((r) => this.unlockedWaiters.push(r));
  }

  private hasUnlocked(): boolean {
    for (const req of this.inflight.values()) if (req.unlocked) return true;
    return false;
  }

  private wakeUnlockedWaiters(): void {
    if (this.unlockedWaiters.length === 0 || (!this.stopped && this.hasUnlocked())) return;
    const waiting = this.unlockedWaiters;
    this.unlockedWaiters = [];
    for (const w of waiting) w();
  }

  /** `pooled`: the payload goes back to the pool once written (frame.ts releasePayload). */
  onReply(
    offset: number,
    length: number,
    error: string,
    payload: Buffer | undefined,
    pooled = false,
  ): void {
    const req = this.awaitingReply(offset, length);
    if (req === undefined) {
      releasePayload(payload, pooled);
      return;
    }
    req.replied = true;
    // The request stays in flight until its write is done: a pass must not end (or start
    // again) while a block is still being written.
    const done = (ok: boolean): void => this.complete(offset, length, req, ok);
    if (error !== '' || payload === undefined || payload.length !== length) {
      releasePayload(payload, pooled);
      if (req.held) this.lock.release(req.held);
      return done(false);
    }
    const queue = (h: Held): void => {
      this.writes.push({ offset, payload, pooled, held: h, done });
      this.queuedBytes += payload.length;
      this.writeNext();
    };
    if (req.held) return queue(req.held);
    const held = this.lock.acquire(offset, length);
    if (held instanceof Promise) void held.then(queue);
    else queue(held);
  }

  /**
   * csums (drbd.md §6.5): the source found its blocks equal to the digests we sent, so they
   * are in sync as they are: the bits clear without a write.
   */
  onInSync(offset: number, length: number): void {
    const req = this.awaitingReply(offset, length);
    if (req === undefined) return;
    req.replied = true;
    if (req.held) this.lock.release(req.held);
    this.inSyncBytes += length;
    this.complete(offset, length, req, true);
  }

  /**
   * Our request for exactly [offset, offset+length) that has had no reply yet. A reply to a
   * request still waiting for its range is no reply of ours, nor is one after stop().
   */
  private awaitingReply(offset: number, length: number): Request | undefined {
    const req = this.inflight.get(offset);
    if (
      req === undefined ||
      req.length !== length ||
      req.replied ||
      this.stopped ||
      (!req.unlocked && req.held === undefined)
    ) {
      return undefined;
    }
    return req;
  }

  private complete(offset: number, length: number, req: Request, ok: boolean): void {
    this.inflight.delete(offset);
    this.inflightBytes -= length;
    if (ok) {
      const [first, end] = bitsCopied(offset, length, this.sizeBytes);
      if (end > first) this.bitmap.clearRange(first, end);
      this.bytesDone += length;
    } else if (req.merged) {
      // Maybe a clean block in a gap failed: its dirty runs are asked for again on their
      // own in the next pass, so only a dirty block that fails is left for next time.
      this.unmerged.push([offset / BM_BLOCK_SIZE, Math.ceil((offset + length) / BM_BLOCK_SIZE)]);
    } else {
      const first = offset / BM_BLOCK_SIZE;
      const end = Math.ceil((offset + length) / BM_BLOCK_SIZE);
      this.failed.push([first, end]);
      this.failedBits += end - first;
    }
    this.io.ack(offset, length, ok);
    if (req.unlocked) this.wakeUnlockedWaiters();
    this.pump();
  }

  /**
   * The resync writer: replies that continue each other are joined into one writev, and a
   * large run is written alone, since several large writes at once into one file only contend
   * for its lock (measured: a full sync took 3.0 s with one writer against 4.8–6.0 s with the
   * pool's). Small scattered runs (a bitmap resync) go out together in one turn, which the
   * disk turns into one batched job, instead of one thread-pool round trip each.
   *
   * A batch of small runs does not wait for the one before it once EARLY_BATCH_BYTES are
   * queued: a batch's completion is only seen when the event loop comes round, and while
   * replies keep arriving libuv hands us up to 32 socket reads (8 MiB) before it does. With
   * one batch at a time the disk sat idle through the whole receive of a 1 % bitmap resync
   * (59 of its ~125 ms) and wrote everything after it.
   */
  private writeNext(): void {
    while (this.writes.length > 0) {
      if (
        this.writeJobs > 0 &&
        (this.largeWriting ||
          this.writes[0]!.payload.length >= LARGE_RUN ||
          this.queuedBytes < EARLY_BATCH_BYTES ||
          this.writeJobs >= MAX_WRITE_JOBS)
      ) {
        return;
      }
      this.writeBatch();
    }
  }

  private writeBatch(): void {
    const runs: Array<typeof this.writes> = [];
    let bytes = 0;
    let count = 0;
    let large = false;
    while (this.writes.length > 0 && bytes < WRITE_BATCH_BYTES && count < WRITE_BATCH_COUNT) {
      const first = this.writes[0]!;
      let runBytes = first.payload.length;
      const run = [this.writes.shift()!];
      let end = first.offset + runBytes;
      while (
        this.writes.length > 0 &&
        this.writes[0]!.offset === end &&
        bytes + runBytes < WRITE_BATCH_BYTES
      ) {
        const w = this.writes.shift()!;
        run.push(w);
        end += w.payload.length;
        runBytes += w.payload.length;
      }
      runs.push(run);
      bytes += runBytes;
      count += run.length;
      if (runBytes >= LARGE_RUN) {
        large = true;
        break;
      }
      if (this.writes.length > 0 && this.writes[0]!.payload.length >= LARGE_RUN) break;
    }
    this.queuedBytes -= bytes;
    this.writeJobs++;
    if (large) this.largeWriting = true;
    let left = runs.length;
    const finished = (run: typeof this.writes, ok: boolean): void => {
      for (const w of run) {
        releasePayload(w.payload, w.pooled);
        this.lock.release(w.held);
        w.done(ok);
      }
      if (--left > 0) return;
      this.writeJobs--;
      if (large) this.largeWriting = false;
      this.writeNext();
    };
    for (const run of runs) {
      const data = run.length === 1 ? run[0]!.payload : run.map((w) => w.payload);
      this.io.write(data, run[0]!.offset).then(
        () => finished(run, true),
        () => finished(run, false),
      );
    }
  }

  /**
   * Where a request starting at the dirty bit `first` ends: the end of its run, extended over
   * gaps of up to MERGE_GAP_BITS clean blocks to the runs after it (never into a range that
   * failed), up to `limit`.
   */
  private runEnd(first: number, limit: number): number {
    let end = this.bitmap.nextClear(first);
    if (end < 0) return limit;
    while (end < limit) {
      const next = this.bitmap.nextSet(end);
      if (next < 0 || next >= limit || next - end > MERGE_GAP_BITS) break;
      if (this.failedUntil(next) >= 0 || inRanges(this.unmerged, end)) break;
      end = this.bitmap.nextClear(next);
      if (end < 0) return limit;
    }
    return end;
  }

  /** The end of the failed range holding `bit`, or -1 when it did not fail. */
  private failedUntil(bit: number): number {
    for (const [first, end] of this.failed) if (bit >= first && bit < end) return end;
    return -1;
  }

  private tick(): void {
    if (this.stopped) return;
    const r = this.io.rates();
    this.budget = r.budget;
    this.window = r.window;
    this.pump();
    this.timer = setTimeout(() => this.tick(), RESYNC_TICK_MS);
  }

  private pump(): void {
    if (this.stopped) return;
    const total = this.bitmap.totalBits;
    while (
      !this.paused &&
      this.budget > 0 &&
      this.inflightBytes < this.window &&
      this.pos < total
    ) {
      const first = this.bitmap.nextSet(this.pos);
      if (first < 0 || first >= total) {
        this.pos = total;
        break;
      }
      const skip = this.failedUntil(first);
      if (skip >= 0) {
        this.pos = skip;
        continue;
      }
      // No request bigger than what is left of this tick's budget (at least one block), so
      // a fixed resync-rate below 1 MiB per tick is kept.
      const budgetBits = Math.max(1, Math.floor(this.budget / BM_BLOCK_SIZE));
      const limit = Math.min(first + this.maxRequestBits, first + budgetBits, total);
      const runEnd = this.bitmap.nextClear(first);
      const end = Math.min(this.runEnd(first, limit), limit);
      const merged = end > runEnd;
      const offset = first * BM_BLOCK_SIZE;
      // The last bit may cover a partial block past the end of the device.
      const length = Math.min((end - first) * BM_BLOCK_SIZE, this.sizeBytes - offset);
      const unlocked = !this.io.localWrites();
      const req: Request = { length, replied: false, held: undefined, unlocked, merged };
      this.inflight.set(offset, req);
      this.inflightBytes += length;
      this.budget -= length;
      this.pos = end;
      if (unlocked) {
        this.io.request(offset, length);
        continue;
      }
      const send = (h: Held): void => {
        if (this.stopped) {
          this.lock.release(h);
          return;
        }
        req.held = h;
        this.io.request(offset, length);
      };
      const held = this.lock.acquire(offset, length);
      if (held instanceof Promise) void held.then(send);
      else send(held);
    }
    if (this.pos >= total && this.inflight.size === 0) {
      // Bits that were set again behind the walk (a replicated write that failed here) get
      // another pass; what failed in this resync is left for the next connection.
      const left = this.bitmap.count();
      if (left > this.failedBits && this.passes++ < 3) {
        this.pos = 0;
        return this.pump();
      }
      this.stop();
      this.io.finished(this.failedBits);
    }
  }
}

function inRanges(ranges: ReadonlyArray<[number, number]>, bit: number): boolean {
  for (const [first, end] of ranges) if (bit >= first && bit < end) return true;
  return false;
}

export interface ResyncSourceIo {
  read(buf: Buffer, offset: number): Promise<void>;
  /** The read done before returning, if it can be (FileDisk.readNow): true when it was. */
  readNow?(buf: Buffer, offset: number): boolean;
  /** `onSent` fires once `data` is in the kernel (or will never be): it may be reused then. */
  reply(
    offset: number,
    length: number,
    error: string,
    data: Buffer | undefined,
    onSent?: () => void,
  ): void;
  /** csums: the target's blocks hash the same as ours; no data goes. */
  inSync?(offset: number, length: number): void;
}

/**
 * Bytes of small replies (payload slabs) a SyncSource holds at most, being read or waiting for
 * the socket: past it, small requests wait until replies reach the kernel. A bitmap resync's
 * requests arrive at once (the target may have 16 MiB in flight, rate.ts): answered all at
 * once, ~10 MiB of replies sat in user space, past the slabs faulted in at start, and faulting
 * in fresh ones took a third of the source's time (docs/performance.md). Bounded below the
 * prefaulted slabs, the same few go round, and reads follow the socket as it drains. Large
 * requests (a full sync's) use the exact-size pool and are not held back, as before.
 */
export const SOURCE_HELD_LIMIT = 4 << 20;

/** The SyncSource's half: serves requests and clears its bits as the target acks them. */
export class ResyncSource {
  /** Requests served and not yet acknowledged by the target. */
  outstanding = 0;
  private idle: Array<() => void> = [];
  private stopped = false;
  /** Bytes of small replies being read or not yet in the kernel (SOURCE_HELD_LIMIT). */
  private held = 0;
  /** Small requests waiting for `held` to fall below the limit, in arrival order. */
  private queued: Array<() => void> = [];
  private servingQueued = false;

  constructor(
    private readonly bitmap: Bitmap,
    private readonly lock: IntervalLock,
    private readonly sizeBytes: number,
    private readonly io: ResyncSourceIo,
  ) {}

  /** Bytes sent as resync data, and bytes answered in sync by their digests (csums). */
  dataBytes = 0;
  inSyncBytes = 0;

  /**
   * Returns a reason when the request is malformed (the link is then dropped). `csums`: the
   * target's digests of its blocks (drbd.md §6.5); equal ones are answered without data.
   */
  onRequest(
    offset: number,
    length: number,
    csums?: { alg: string; digests: Uint8Array },
  ): string | undefined {
    if (
      offset < 0 ||
      length <= 0 ||
      length > RESYNC_MAX_REQUEST ||
      offset % BM_BLOCK_SIZE !== 0 ||
      (length % BM_BLOCK_SIZE !== 0 && offset + length !== this.sizeBytes) ||
      offset + length > this.sizeBytes
    ) {
      return `resync request ${offset}+${length} is outside the device or not block-aligned`;
    }
    if (this.stopped) return undefined;
    this.outstanding++;
    const go = (): void => this.serve(offset, length, csums);
    const small = length <= SLAB_PAYLOAD_MAX;
    if (small && (this.queued.length > 0 || this.held >= SOURCE_HELD_LIMIT)) this.queued.push(go);
    else go();
    return undefined;
  }

  /** Reads one requested range under the interval lock and replies with it. */
  private serve(
    offset: number,
    length: number,
    csums?: { alg: string; digests: Uint8Array },
  ): void {
    if (this.stopped) return;
    const small = length <= SLAB_PAYLOAD_MAX;
    if (small) this.held += length;
    const done = (buf: Buffer): void => {
      releasePayload(buf, true);
      if (!small) return;
      this.held -= length;
      this.serveQueued();
    };
    const held = this.lock.acquire(offset, length);
    const run = (h: Held): void => {
      // Reads go into pooled memory, back to the pool once the reply is in the kernel: a
      // fresh 4 MiB Buffer per request is 1024 page faults and zeroing, and garbage.
      const buf = small ? payloadSlabs.get(length) : payloadPool.get(length);
      const serve = (): void => {
        // Queued on the data socket before the lock is released: any later overlapping
        // application write is sent after this reply.
        const blocks = Math.ceil(length / BM_BLOCK_SIZE);
        if (
          csums &&
          this.io.inSync &&
          differingBlocks(blockDigests(buf, csums.alg), csums.digests, blocks).length === 0
        ) {
          this.inSyncBytes += length;
          this.io.inSync(offset, length);
          this.lock.release(h);
          done(buf);
          return;
        }
        this.dataBytes += length;
        this.io.reply(offset, length, '', buf, () => done(buf));
        this.lock.release(h);
      };
      // Cached data is answered at once: the requests of one socket read (hundreds in a
      // bitmap resync) would otherwise all be read before the first reply left, since
      // promise callbacks run only after the whole read is handled.
      if (this.io.readNow?.(buf, offset)) return serve();
      this.io.read(buf, offset).then(serve, (err: Error) => {
        this.io.reply(offset, length, (err as { code?: string }).code ?? 'EIO', undefined);
        this.lock.release(h);
        done(buf);
      });
    };
    if (held instanceof Promise) void held.then(run);
    else run(held);
  }

  /**
   * Serves waiting requests while there is room. A loop, never a recursion: a reply that is
   * done at once (csums found the blocks equal) lands here again from inside the loop.
   */
  private serveQueued(): void {
    if (this.servingQueued) return;
    this.servingQueued = true;
    try {
      while (this.queued.length > 0 && this.held < SOURCE_HELD_LIMIT) this.queued.shift()!();
    } finally {
      this.servingQueued = false;
    }
  }

  onAck(offset: number, length: number, ok: boolean): void {
    if (ok) {
      const [first, end] = bitsCopied(offset, length, this.sizeBytes);
      if (end > first) this.bitmap.clearRange(first, end);
    }
    if (this.outstanding > 0 && --this.outstanding === 0) {
      const waiting = this.idle;
      this.idle = [];
      for (const w of waiting) w();
    }
  }

  /** Resolves once every served request was acknowledged. */
  drained(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  stop(): void {
    this.stopped = true;
    // Never served now; the link that asked for them is gone.
    this.queued = [];
  }
}
