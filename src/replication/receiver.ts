/**
 * The secondary's side of replication: applies the primary's changes to the local disk in
 * the order the rules need, acknowledges them per protocol, and answers barriers once the
 * epoch is on stable storage (drbd.md §5.3 with write-ordering `flush`).
 *
 * Changes run concurrently except where they overlap (IntervalLock, in arrival order, so
 * both disks end with the same bytes). A barrier is acked once every change of its epoch
 * and of the epochs before completed and a flush issued after them returned; that ack is
 * what lets the primary drop those changes from its transfer log. Barriers are acked in
 * order, one flush at a time.
 *
 * Unlike DRBD, reading does not stop at a barrier: changes of later epochs are applied while
 * the flush runs. DRBD stops so that a later epoch never reaches stable storage before an
 * earlier one; NBD promises nothing about what survives a power loss beyond FLUSH and FUA,
 * and a flush still covers every change of its epochs, so the barrier only has to wait. A
 * stop per barrier cost about a fifth of the secondary's time in fdatasync (measured).
 * Reading pauses only while too much is in flight.
 */
import type { Payload, ZeroOptions } from '../nbd/target.js';
import { releasePayload } from './frame.js';
import { IntervalLock } from './interval-lock.js';
import {
  DATA_FLAG_FUA,
  DATA_FLAG_RECV_ACK,
  DATA_FLAG_TRIM,
  DATA_FLAG_WRITE_ACK,
  DATA_FLAG_ZERO,
  type Data,
} from './schema.js';

/** The local disk operations the receiver uses (FileDisk has them all). */
export interface ReceiverDisk {
  write(data: Payload, offset: number, fua: boolean): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  zero(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  flush(): Promise<void>;
}

export interface ReceiverAcks {
  recvAck(seq: number): void;
  writeAck(seq: number): void;
  negAck(seq: number, error: string): void;
  barrierAck(epoch: number, writes: number): void;
}

export interface ReceiverFlow {
  pause(): void;
  resume(): void;
}

/** A change the peer must not have sent: the link is dropped with this reason. */
export class PeerProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerProtocolError';
  }
}

/** In flight at once before reading pauses (changes, bytes); it resumes at half. */
const MAX_INFLIGHT = 1024;
const MAX_INFLIGHT_BYTES = 128 << 20;

export class Receiver {
  private lastSeq = 0;
  private inflight = 0;
  private inflightBytes = 0;
  /** Changes in flight per epoch. */
  private readonly perEpoch = new Map<number, number>();
  /** Barriers received and not yet acked, in order. */
  private readonly barriers: Array<{ epoch: number; writes: number }> = [];
  private flushing = false;
  private paused = false;
  private drained: (() => void) | undefined;
  private closed = false;
  applied = 0;

  constructor(
    private readonly disk: ReceiverDisk,
    /** The agreed device size; online resize grows it (grow()). */
    private sizeBytes: number,
    readonly lock: IntervalLock,
    private readonly acks: ReceiverAcks,
    private readonly flow: ReceiverFlow,
    /** A change failed locally: its blocks must be marked out of sync here. */
    private readonly localFailure: (offset: number, length: number, err: Error) => void,
    /** The disk could not be flushed: nothing after this can be acked as durable. */
    private readonly flushFailed: (err: Error) => void,
  ) {}

  /** The device grew (online resize): changes up to the new end are in bounds. */
  grow(sizeBytes: number): void {
    if (sizeBytes > this.sizeBytes) this.sizeBytes = sizeBytes;
  }

  /**
   * One replicated change. Throws PeerProtocolError for a change that is out of sequence (a
   * replay or a gap), out of bounds, or whose payload does not match its length; nothing is
   * applied then.
   */
  onData(d: Data, payload: Buffer | undefined, pooled = false): void {
    if (this.closed) return;
    if (d.seq !== this.lastSeq + 1) {
      throw new PeerProtocolError(
        `replicated write out of sequence: expected #${this.lastSeq + 1}, got #${d.seq}`,
      );
    }
    const hasPayload = (d.flags & (DATA_FLAG_ZERO | DATA_FLAG_TRIM)) === 0;
    if (d.length <= 0 || d.offset < 0 || d.offset + d.length > this.sizeBytes) {
      throw new PeerProtocolError(
        `replicated write #${d.seq} at ${d.offset}+${d.length} is outside the ${this.sizeBytes}-byte device`,
      );
    }
    if ((payload?.length ?? 0) !== (hasPayload ? d.length : 0)) {
      throw new PeerProtocolError(
        `replicated write #${d.seq} carries ${payload?.length ?? 0} bytes for a length of ${d.length}`,
      );
    }
    this.lastSeq = d.seq;
    if (d.flags & DATA_FLAG_RECV_ACK) this.acks.recvAck(d.seq);
    this.inflight++;
    this.inflightBytes += d.length;
    this.perEpoch.set(d.epoch, (this.perEpoch.get(d.epoch) ?? 0) + 1);
    if (
      !this.paused &&
      (this.inflight >= MAX_INFLIGHT || this.inflightBytes >= MAX_INFLIGHT_BYTES)
    ) {
      this.paused = true;
      this.flow.pause();
    }
    const held = this.lock.acquire(d.offset, d.length);
    const run = (h: Exclude<typeof held, Promise<unknown>>): void => {
      this.apply(d, payload).then(
        () => {
          releasePayload(payload, pooled);
          this.lock.release(h);
          this.applied++;
          if (d.flags & DATA_FLAG_WRITE_ACK) this.acks.writeAck(d.seq);
          this.done(d);
        },
        (err: Error) => {
          releasePayload(payload, pooled);
          this.lock.release(h);
          this.localFailure(d.offset, d.length, err);
          this.acks.negAck(d.seq, (err as { code?: string }).code ?? err.message);
          this.done(d);
        },
      );
    };
    if (held instanceof Promise) void held.then(run);
    else run(held);
  }

  /** A barrier: acked once its epoch and every earlier one completed and were flushed. */
  onBarrier(epoch: number, writes: number): void {
    if (this.closed) return;
    this.barriers.push({ epoch, writes });
    this.nextBarrier();
  }

  private nextBarrier(): void {
    if (this.flushing || this.closed) return;
    const b = this.barriers[0];
    if (!b) return;
    for (const e of this.perEpoch.keys()) if (e <= b.epoch) return;
    this.flushing = true;
    this.disk.flush().then(
      () => {
        this.flushing = false;
        if (this.closed) return;
        this.barriers.shift();
        this.acks.barrierAck(b.epoch, b.writes);
        this.nextBarrier();
      },
      (err: Error) => {
        this.flushing = false;
        if (!this.closed) this.flushFailed(err);
      },
    );
  }

  /** Resolves when no change is in flight. */
  quiesce(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => {
      const prev = this.drained;
      this.drained = () => {
        prev?.();
        r();
      };
    });
  }

  close(): void {
    this.closed = true;
  }

  /** Changes received and not yet acknowledged (status --statistics' unacked). */
  get unacked(): number {
    return this.inflight;
  }

  private apply(d: Data, payload: Buffer | undefined): Promise<void> {
    const fua = (d.flags & DATA_FLAG_FUA) !== 0;
    // A trim zeroes here as on the primary (write-path.ts `trim`): replicas must not differ
    // where one disk could punch a hole and the other could not.
    if (d.flags & (DATA_FLAG_ZERO | DATA_FLAG_TRIM)) {
      return this.disk.zero(d.offset, d.length, { noHole: false, fastZero: false, fua });
    }
    return this.disk.write(payload!, d.offset, fua);
  }

  private done(d: Data): void {
    this.inflightBytes -= d.length;
    const left = (this.perEpoch.get(d.epoch) ?? 1) - 1;
    if (left > 0) this.perEpoch.set(d.epoch, left);
    else {
      this.perEpoch.delete(d.epoch);
      this.nextBarrier();
    }
    if (
      this.paused &&
      this.inflight - 1 <= MAX_INFLIGHT / 2 &&
      this.inflightBytes < MAX_INFLIGHT_BYTES / 2
    ) {
      this.paused = false;
      this.flow.resume();
    }
    if (--this.inflight > 0) return;
    const w = this.drained;
    this.drained = undefined;
    w?.();
  }
}
