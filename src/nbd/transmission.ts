import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { payloadPool } from './buffer-pool.js';
import type { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION_ID,
  Cmd,
  CmdFlag,
  MAX_PAYLOAD,
  REPLY_FLAG_DONE,
  REQUEST_HEADER_SIZE,
  ReplyType,
  SIMPLE_REPLY_SIZE,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_HEADER_SIZE,
} from './constants.js';
import { isReadOnly } from './exports.js';
import type { Session } from './handshake.js';
import {
  commandName,
  type ExportView,
  parseRequest,
  type Rejection,
  type Request,
  validate,
} from './request.js';
import { readInParts, writeInParts } from './split.js';
import type { BlockTarget, Extent, Payload } from './target.js';
import {
  blockStatusChunk,
  errorChunk,
  nbdErrorFor,
  noneChunk,
  simpleReply,
  writeChunkHeader,
  writeSimpleHeader,
} from './wire.js';

/** Requests one connection may have in flight; the kernel queues up to 128 per socket. */
const MAX_INFLIGHT = 256;
/**
 * Payload bytes one connection may hold (write data and read buffers), from the moment a
 * READ or WRITE is taken until it settles. A request that would go past it waits, unread
 * input and all, until enough has settled; one alone always runs (none is longer than
 * MAX_UNNEGOTIATED_PAYLOAD, half of this).
 */
const MAX_INFLIGHT_BYTES = 128 * 1024 * 1024;
/** Reply bytes waiting in the socket before we stop taking new requests. */
const MAX_QUEUED_REPLY_BYTES = 16 * 1024 * 1024;
/** At most this many extents in one BLOCK_STATUS reply. */
const MAX_EXTENTS = 1024;
const MAX_U32_EXTENT = 0xfffff000;
/** WRITE payloads up to this size are joined into one Buffer. */
const JOIN_MAX = 64 * 1024;

export interface TransmissionStats {
  requests: number;
  errors: number;
}

/**
 * The transmission phase of one connection: cut requests out of the byte stream, validate,
 * hand them to the target, reply. Requests run concurrently and reply out of order; replies
 * produced in the same turn of the event loop leave in one corked write.
 */
export class Transmission {
  private readonly target: BlockTarget;
  private readonly view: ExportView;
  private readonly sr: boolean;
  private inflight = 0;
  private inflightBytes = 0;
  /** A WRITE whose header is parsed and whose payload has not fully arrived. */
  private awaitingPayload: Request | undefined;
  /** A large WRITE whose payload the socket reads straight into `buf`. */
  private direct: { req: Request; buf: Buffer; filled: number } | undefined;
  /** Payload bytes of a refused WRITE still to be thrown away. */
  private discard = 0;
  /** The refused WRITE whose payload is being thrown away: answered once it all has been. */
  private refusedWrite: { req: Request; why: Rejection } | undefined;
  /** A READ or WRITE waiting for in-flight payload bytes to settle before it may start. */
  private parked: Request | undefined;
  private stopping = false;
  /** The last request was a large WRITE (see readLimit). */
  private expectLargeWrite = false;
  private inputEnded = false;
  private closed = false;
  private inputPaused = false;
  private waitingDrain = false;
  private corked = false;
  readonly stats: TransmissionStats = { requests: 0, errors: 0 };
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    session: Session,
    private readonly log: Logger,
    /** Called on a protocol violation; the connection is then dropped. */
    private readonly fail: (reason: string) => void,
  ) {
    this.target = session.export.target;
    this.sr = session.structuredReplies;
    this.view = {
      size: this.target.size,
      readOnly: isReadOnly(session.export),
      caps: this.target.capabilities,
      structuredReplies: session.structuredReplies,
      allocationContext: session.allocationContext,
      blockSizes: session.blockSizes,
    };
  }

  /** New bytes are in the queue. */
  pump(): void {
    const q = this.queue;
    while (!this.inputPaused && !this.stopping && !this.closed) {
      if (this.discard > 0) {
        this.discard -= q.skip(this.discard);
        if (this.discard > 0) return;
        const refused = this.refusedWrite!;
        this.refusedWrite = undefined;
        this.refuse(refused.req, refused.why.error, refused.why.message);
        continue;
      }
      const direct = this.direct;
      if (direct) {
        // Bytes that were already queued (or came as Node's own chunks) are copied in.
        const n = Math.min(q.length, direct.buf.length - direct.filled);
        if (n > 0) {
          const got = q.takePieces(n);
          for (const piece of Buffer.isBuffer(got) ? [got] : got) {
            direct.filled += piece.copy(direct.buf, direct.filled);
          }
        }
        if (direct.filled < direct.buf.length) return;
        this.direct = undefined;
        this.startWrite(direct.req, direct.buf, true);
        continue;
      }
      const pending = this.awaitingPayload;
      if (pending) {
        if (q.length < pending.length) return;
        this.awaitingPayload = undefined;
        // Small payloads are joined (cheap, and the disk batches single Buffers); large ones
        // go to the disk in the pieces the socket delivered.
        const data =
          pending.length <= JOIN_MAX ? q.take(pending.length) : q.takePieces(pending.length);
        this.startWrite(pending, data);
        continue;
      }
      if (q.length < REQUEST_HEADER_SIZE) return;
      const req = parseRequest(q.take(REQUEST_HEADER_SIZE));
      if (!req) {
        this.fail('bad request magic');
        return;
      }
      this.stats.requests++;
      this.dispatch(req);
    }
  }

  /**
   * The unfilled rest of a large WRITE payload, for the next socket read to land in; undefined
   * when no such payload is coming, or queued bytes must be copied into it first.
   */
  payloadSpace(): Buffer | undefined {
    const d = this.direct;
    if (!d || this.closed || this.stopping || this.queue.length > 0) return undefined;
    return d.buf.subarray(d.filled);
  }

  /**
   * How many bytes the next read should take at most, or undefined for no limit. After a
   * large WRITE, the next request is likely another: reading just its header lets its
   * payload land in place instead of being copied out of scratch space.
   */
  readLimit(): number | undefined {
    if (!this.expectLargeWrite || this.awaitingPayload || this.discard > 0) return undefined;
    const need = REQUEST_HEADER_SIZE - this.queue.length;
    return need > 0 ? need : undefined;
  }

  /** `n` bytes landed in the buffer `payloadSpace()` gave out. */
  payloadReceived(n: number): void {
    this.direct!.filled += n;
    this.pump();
  }

  /** Stop taking requests, finish those in flight, then call `done` (DISC or shutdown). */
  drain(done: () => void): void {
    this.stopping = true;
    this.onIdle = done;
    this.checkIdle();
  }

  /**
   * The client will send nothing more (it half-closed). Requests already received still run
   * and get their replies; then `done` is called.
   */
  endOfInput(done: () => void): void {
    this.inputEnded = true;
    this.onIdle = done;
    this.pump();
    this.checkIdle();
  }

  /** The socket is gone: replies still to come are dropped. */
  close(): void {
    this.closed = true;
  }

  private dispatch(req: Request): void {
    const bad = validate(req, this.view);
    if (bad) {
      if (req.type === Cmd.WRITE && req.length > 0) {
        // The reply waits for the end of the payload: a client matches replies against
        // requests it has finished sending, and libnbd drops the connection on one that
        // comes early ("no matching cookie").
        this.discard = req.length;
        this.refusedWrite = { req, why: bad };
      } else {
        this.refuse(req, bad.error, bad.message);
      }
      return;
    }
    if (req.type !== Cmd.WRITE) this.expectLargeWrite = false;
    switch (req.type) {
      case Cmd.READ:
      case Cmd.WRITE:
        if (this.fits(req.length)) {
          this.admit(req);
        } else {
          this.parked = req;
          this.pauseInput();
        }
        return;
      case Cmd.DISC:
        this.log.debug('client sent DISC');
        this.drain(() => this.socket.end());
        return;
      case Cmd.FLUSH:
        this.run(req, 0, this.target.flush(), () => this.ok(req));
        return;
      case Cmd.TRIM:
        this.run(req, 0, this.target.trim(req.offset, req.length, fua(req)), () => this.ok(req));
        return;
      case Cmd.WRITE_ZEROES: {
        const opts = {
          noHole: (req.flags & CmdFlag.NO_HOLE) !== 0,
          fastZero: (req.flags & CmdFlag.FAST_ZERO) !== 0,
          fua: fua(req),
        };
        this.run(req, 0, this.target.zero(req.offset, req.length, opts), () => this.ok(req));
        return;
      }
      case Cmd.CACHE: {
        const p = this.target.cache ? this.target.cache(req.offset, req.length) : Promise.resolve();
        this.run(req, 0, p, () => this.ok(req));
        return;
      }
      case Cmd.BLOCK_STATUS:
        this.run(req, 0, this.target.extents!(req.offset, req.length), (extents) =>
          this.send(blockStatusChunk(req.cookie, BASE_ALLOCATION_ID, toStatus(req, extents))),
        );
        return;
    }
  }

  /** Whether a READ or WRITE of `bytes` may start now without passing the in-flight cap. */
  private fits(bytes: number): boolean {
    return this.inflightBytes === 0 || this.inflightBytes + bytes <= MAX_INFLIGHT_BYTES;
  }

  /**
   * Start a READ or WRITE: its bytes count as held from here (a WRITE's buffer is taken
   * before its payload arrives) until the target settles it.
   */
  private admit(req: Request): void {
    this.inflightBytes += req.length;
    if (req.type === Cmd.READ) {
      this.startRead(req);
      return;
    }
    this.expectLargeWrite = req.length > JOIN_MAX;
    if (req.length > JOIN_MAX && this.queue.length < req.length) {
      this.direct = { req, buf: payloadPool.get(req.length), filled: 0 };
    } else {
      this.awaitingPayload = req;
    }
  }

  private startRead(req: Request): void {
    const len = req.length;
    if (len === 0) {
      this.send(this.sr ? noneChunk(req.cookie) : simpleReply(0, req.cookie));
      return;
    }
    // The reply header and the data share one buffer, so the reply is one write.
    const pre = this.sr ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_REPLY_SIZE;
    const buf = payloadPool.get(pre + len);
    const recycle = (): void => payloadPool.put(buf);
    this.run(req, len, readInParts(this.target, buf.subarray(pre), req.offset), () => {
      if (!this.sr) {
        writeSimpleHeader(buf, 0, 0, req.cookie);
        this.send(buf, recycle);
        return;
      }
      // A read longer than the advertised maximum (from a client that never agreed to it)
      // goes out in chunks of at most that size: the first one's header sits in front of
      // the data, the others' headers are written separately before their slice of it.
      for (let at = 0; at < len; at += MAX_PAYLOAD) {
        const n = Math.min(MAX_PAYLOAD, len - at);
        const last = at + n === len;
        const hdr = at === 0 ? buf : Buffer.allocUnsafe(pre);
        const flags = last ? REPLY_FLAG_DONE : 0;
        writeChunkHeader(hdr, 0, flags, ReplyType.OFFSET_DATA, req.cookie, 8 + n);
        const offset = req.offset + at;
        hdr.writeUInt32BE(Math.floor(offset / 0x100000000), STRUCTURED_HEADER_SIZE);
        hdr.writeUInt32BE(offset >>> 0, STRUCTURED_HEADER_SIZE + 4);
        if (at === 0) {
          this.send(buf.subarray(0, pre + n), last ? recycle : undefined);
        } else {
          this.send(hdr);
          this.send(buf.subarray(pre + at, pre + at + n), last ? recycle : undefined);
        }
      }
    });
  }

  /** `pooled`: `data` came from the payload pool and goes back once the target is done. */
  private startWrite(req: Request, data: Payload, pooled = false): void {
    if (req.length === 0) {
      this.ok(req);
      return;
    }
    const op = writeInParts(this.target, data, req.offset, fua(req));
    if (pooled) {
      const back = (): void => payloadPool.put(data as Buffer);
      op.then(back, back);
    }
    this.run(req, req.length, op, () => this.ok(req));
  }

  /**
   * Track one target operation and reply when it settles; `bytes` were counted as held when
   * the request was admitted, and are given back then.
   */
  private run<T>(req: Request, bytes: number, op: Promise<T>, reply: (value: T) => void): void {
    this.inflight++;
    if (this.inflight >= MAX_INFLIGHT) this.pauseInput();
    // The reply is queued before the request stops counting as in flight: a DISC waiting
    // for the last request must not close the socket ahead of its reply.
    op.then(
      (value) => {
        if (!this.closed) reply(value);
        this.settle(bytes);
      },
      (err: NodeJS.ErrnoException) => {
        const code = err?.code;
        if (code !== 'ENOTSUP') {
          this.log.warn(
            { err: err?.message, code, offset: req.offset, length: req.length },
            `${commandName(req.type)} failed`,
          );
        }
        this.refuse(req, nbdErrorFor(code), `${commandName(req.type)}: ${err?.message ?? err}`);
        this.settle(bytes);
      },
    );
  }

  private settle(bytes: number): void {
    this.inflight--;
    this.inflightBytes -= bytes;
    if (this.inputPaused) this.resumeIfRoom();
    this.checkIdle();
  }

  private checkIdle(): void {
    // With input ended, an unpaused pump has taken every whole request there is.
    const noMoreWork = this.stopping || (this.inputEnded && !this.inputPaused);
    if (noMoreWork && this.inflight === 0 && this.onIdle) {
      const done = this.onIdle;
      this.onIdle = undefined;
      done();
    }
  }

  private ok(req: Request): void {
    this.send(simpleReply(0, req.cookie));
  }

  private refuse(req: Request, error: number, message: string): void {
    this.stats.errors++;
    // With structured replies an error carries a message; READ must use a chunk anyway.
    this.send(this.sr ? errorChunk(error, req.cookie, message) : simpleReply(error, req.cookie));
  }

  /** `sent` runs once the socket no longer needs `buf` (written out, or the socket died). */
  private send(buf: Buffer, sent?: () => void): void {
    if (this.closed || this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    this.socket.write(buf, sent);
    if (this.socket.writableLength > MAX_QUEUED_REPLY_BYTES && !this.waitingDrain) {
      this.waitingDrain = true;
      this.pauseInput();
      this.socket.once('drain', () => {
        this.waitingDrain = false;
        this.resumeIfRoom();
      });
    }
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  private pauseInput(): void {
    this.inputPaused = true;
    this.socket.pause();
  }

  private resumeIfRoom(): void {
    if (!this.inputPaused || this.closed || this.waitingDrain) return;
    if (this.inflight >= MAX_INFLIGHT / 2) return;
    const parked = this.parked;
    if (parked) {
      // Once stopping, nothing new starts (a parked WRITE's payload would never be read).
      if (this.stopping || !this.fits(parked.length)) return;
      this.parked = undefined;
      this.admit(parked);
    }
    this.inputPaused = false;
    this.socket.resume();
    this.pump();
  }
}

function fua(req: Request): boolean {
  return (req.flags & CmdFlag.FUA) !== 0;
}

/** Extents → base:allocation status pairs, clipped to the request and to u32 lengths. */
export function toStatus(req: Request, extents: Extent[]): { length: number; flags: number }[] {
  const out: { length: number; flags: number }[] = [];
  let left = req.length;
  for (const e of extents) {
    if (left <= 0 || out.length >= MAX_EXTENTS) break;
    const length = Math.min(e.length, left, MAX_U32_EXTENT);
    if (length <= 0) continue;
    out.push({ length, flags: (e.hole ? STATE_HOLE : 0) | (e.zero ? STATE_ZERO : 0) });
    left -= length;
    if (req.flags & CmdFlag.REQ_ONE) break;
  }
  // "Allocated, content unknown" is always a true answer when the target said nothing.
  if (out.length === 0) out.push({ length: Math.min(req.length, MAX_U32_EXTENT), flags: 0 });
  return out;
}
