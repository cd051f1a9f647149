/**
 * The primary's transfer log (drbd.md §5.3): every replicated change, grouped in epochs,
 * from the moment it is sent until the peer confirms with a barrier ack that the whole epoch
 * is on its stable storage. Until then a change is "not yet safe", even under protocol C
 * after its write-ack: if the link breaks, the caller marks it out of sync.
 *
 * When an epoch closes (and its barrier is sent):
 * - on an NBD FLUSH, which then waits for the barrier ack: the peer has flushed too;
 * - when it reaches max-epoch-size changes;
 * - when the activity log has writes waiting for a slot (`closeEpoch`): every change holds
 *   its extents' references until its barrier ack, so waiting for the timer there would
 *   stall those writes for up to `epochMs` each (a pair with al-extents 7 fell to 78 random
 *   writes/s, measured);
 * - `epochMs` after its first change. DRBD closes an epoch at the first completion, because
 *   a block device user may rely on completion order; NBD promises nothing about what
 *   survives a power loss except through FLUSH and FUA (nbd.md), so closing on a timer keeps
 *   the peer's flushes (one per barrier) few while still bounding how long AL references
 *   and transfer-log entries are held.
 *
 * Completion of the network part per protocol (drbd.md §5.1): C on WriteAck, B on RecvAck,
 * A when the bytes were handed to the kernel. A FUA change always waits for its WriteAck,
 * whatever the protocol: FUA means durable on both.
 */
import type { Payload } from '../nbd/target.js';
import type { Protocol } from '../config/index.js';
import {
  DATA_FLAG_FUA,
  DATA_FLAG_RECV_ACK,
  DATA_FLAG_TRIM,
  DATA_FLAG_WRITE_ACK,
  DATA_FLAG_ZERO,
} from './schema.js';

export type ChangeKind = 'write' | 'zero' | 'trim';

/** What the transfer log needs from the link: send on the data socket, in order. */
export interface DataSender {
  sendData(
    seq: number,
    epoch: number,
    offset: number,
    length: number,
    flags: number,
    payload: Payload | undefined,
    onSent: (err?: Error) => void,
  ): void;
  sendBarrier(epoch: number, writes: number): void;
}

interface Entry {
  seq: number;
  epoch: number;
  offset: number;
  length: number;
  /** Called once: peerHas = the epoch was barrier-acked (false: mark it out of sync). */
  settle: (peerHas: boolean) => void;
  /** Resolves the network part for the requester (true: the peer took it). */
  netDone: ((ok: boolean) => void) | undefined;
  needs: 'sent' | 'recv' | 'write';
  sentAt: number;
}

export interface TransferLogOptions {
  protocol: Protocol;
  maxEpochSize: number;
  epochMs?: number;
}

export class TransferLog {
  private seq = 0;
  private epoch = 1;
  private epochWrites = 0;
  private epochTimer: NodeJS.Timeout | undefined;
  private readonly bySeq = new Map<number, Entry>();
  /** Entries in send order; barrier acks settle a prefix. */
  private readonly pending: Entry[] = [];
  private head = 0;
  private readonly barrierWaiters = new Map<number, Array<(ok: boolean) => void>>();
  private failed: string | undefined;
  private readonly epochMs: number;

  constructor(
    private readonly out: DataSender,
    private readonly opts: TransferLogOptions,
  ) {
    this.epochMs = opts.epochMs ?? 100;
  }

  /** Changes sent and not yet covered by a barrier ack. */
  get size(): number {
    return this.pending.length - this.head;
  }

  /**
   * Sends one change. Resolves with true once the network part is done for the protocol,
   * false if the peer will not have it (negative ack, or the link failed first). `settle`
   * runs exactly once, later: with true when its epoch was barrier-acked, with false when the
   * link failed before (the caller then marks the range out of sync). The payload must stay
   * untouched until the promise resolves. `mustLand`: the peer holds the only good copy, so
   * the network part waits for its write ack whatever the protocol.
   */
  submit(
    kind: ChangeKind,
    offset: number,
    length: number,
    payload: Payload | undefined,
    fua: boolean,
    settle: (peerHas: boolean) => void,
    mustLand = false,
  ): Promise<boolean> {
    if (this.failed !== undefined) {
      settle(false);
      return Promise.resolve(false);
    }
    const needs: Entry['needs'] =
      fua || mustLand || this.opts.protocol === 'C'
        ? 'write'
        : this.opts.protocol === 'B'
          ? 'recv'
          : 'sent';
    let flags = fua ? DATA_FLAG_FUA : 0;
    if (kind === 'zero') flags |= DATA_FLAG_ZERO;
    if (kind === 'trim') flags |= DATA_FLAG_TRIM;
    flags |= needs === 'write' ? DATA_FLAG_WRITE_ACK : needs === 'recv' ? DATA_FLAG_RECV_ACK : 0;
    const seq = ++this.seq;
    const e: Entry = {
      seq,
      epoch: this.epoch,
      offset,
      length,
      settle,
      netDone: undefined,
      needs,
      sentAt: Date.now(),
    };
    this.bySeq.set(seq, e);
    this.pending.push(e);
    const done = new Promise<boolean>((resolve) => (e.netDone = resolve));
    this.out.sendData(seq, e.epoch, offset, length, flags, payload, (err) => {
      if (err) return this.finishNet(e, false);
      if (e.needs === 'sent') this.finishNet(e, true);
    });
    if (++this.epochWrites >= this.opts.maxEpochSize) this.closeEpoch();
    else this.epochTimer ??= setTimeout(() => this.closeEpoch(), this.epochMs);
    return done;
  }

  /**
   * Closes the current epoch (if it has changes) and resolves when every change sent so far
   * is barrier-acked: on the peer's stable storage. False if the link failed first.
   */
  barrier(): Promise<boolean> {
    if (this.failed !== undefined) return Promise.resolve(false);
    if (this.size === 0 && this.epochWrites === 0) return Promise.resolve(true);
    const target = this.epochWrites > 0 ? this.epoch : this.epoch - 1;
    this.closeEpoch();
    return new Promise<boolean>((resolve) => {
      const list = this.barrierWaiters.get(target) ?? [];
      list.push(resolve);
      this.barrierWaiters.set(target, list);
    });
  }

  /**
   * How long the oldest change has waited for the peer's ack or barrier ack, in ms (0 when
   * nothing waits). A peer that answers pings but never acks (a stuck disk) is expelled on
   * this (drbd.md §5.5, `timeout` × `ko-count`).
   */
  oldestWaitMs(now = Date.now()): number {
    return this.head < this.pending.length ? now - this.pending[this.head]!.sentAt : 0;
  }

  recvAck(seq: number): void {
    const e = this.bySeq.get(seq);
    if (e && e.needs === 'recv') this.finishNet(e, true);
  }

  writeAck(seq: number): void {
    const e = this.bySeq.get(seq);
    if (e) this.finishNet(e, true);
  }

  /** The peer could not apply it: the caller marks it out of sync via settle(false). */
  negAck(seq: number): void {
    const e = this.bySeq.get(seq);
    if (!e) return;
    this.finishNet(e, false);
    this.bySeq.delete(seq);
    const settle = e.settle;
    e.settle = () => undefined;
    settle(false);
  }

  /** Every change of epochs ≤ `epoch` is on the peer's stable storage. */
  barrierAck(epoch: number): void {
    while (this.head < this.pending.length && this.pending[this.head]!.epoch <= epoch) {
      const e = this.pending[this.head++]!;
      this.bySeq.delete(e.seq);
      // A write-ack or recv-ack that never came is implied by the barrier ack.
      this.finishNet(e, true);
      e.settle(true);
    }
    this.compact();
    for (const [ep, list] of this.barrierWaiters) {
      if (ep > epoch) continue;
      this.barrierWaiters.delete(ep);
      for (const w of list) w(true);
    }
  }

  /**
   * The link is gone: every change not barrier-acked is settled with false (to be marked
   * out of sync) and every waiter resolves false. Later submits settle false at once.
   */
  fail(reason: string): void {
    if (this.failed !== undefined) return;
    this.failed = reason;
    clearTimeout(this.epochTimer);
    this.epochTimer = undefined;
    const rest = this.pending.slice(this.head);
    this.pending.length = 0;
    this.head = 0;
    this.bySeq.clear();
    for (const e of rest) {
      this.finishNet(e, false);
      e.settle(false);
    }
    for (const list of this.barrierWaiters.values()) for (const w of list) w(false);
    this.barrierWaiters.clear();
  }

  /** Closes the open epoch now, if it has changes: its barrier goes out without waiting. */
  closeEpoch(): void {
    clearTimeout(this.epochTimer);
    this.epochTimer = undefined;
    if (this.epochWrites === 0 || this.failed !== undefined) return;
    this.out.sendBarrier(this.epoch, this.epochWrites);
    this.epoch++;
    this.epochWrites = 0;
  }

  private finishNet(e: Entry, ok: boolean): void {
    const done = e.netDone;
    if (!done) return;
    e.netDone = undefined;
    done(ok);
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
  }
}
