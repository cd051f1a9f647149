/**
 * Framing of the peer protocol. Every frame is
 *
 *   magic u32 BE "URBD" | control length u32 BE | data length u32 BE | control | data
 *
 * where `control` is one encoded schema.ts envelope and `data` is raw bulk bytes (write
 * data, resync data, read replies) that are never re-encoded. Both lengths are checked
 * against fixed limits as soon as a header arrives, so a peer that lies about a length is
 * refused before anything is buffered for it.
 */
import { payloadPool, type BufferPool } from '../nbd/buffer-pool.js';
import { MAX_PAYLOAD } from '../nbd/constants.js';
import type { Payload } from '../nbd/target.js';
import { payloadSlabs } from './payload-slabs.js';
import {
  decodeMessage,
  encodeMessageAfter,
  SchemaError,
  type MessageBodies,
  type MessageType,
  type PeerMessage,
} from './schema.js';

/** "URBD" */
export const FRAME_MAGIC = 0x55524244;
export const FRAME_HEADER_BYTES = 12;
/** Largest control message (a bitmap chunk is the biggest we send). */
export const MAX_CONTROL_BYTES = 1024 * 1024;
/** Largest data part: the largest single call the NBD server makes to its target (requests over it reach the target in pieces, src/nbd/split.ts). */
export const MAX_DATA_BYTES = MAX_PAYLOAD;

/**
 * One decoded frame; `payload` is undefined when the frame carried no data bytes. A `pooled`
 * payload is a buffer of its own from the decoder's pool: whoever is done with it last may
 * hand it back (releasePayload) so the next large frame lands in memory already faulted in.
 */
export interface Frame {
  msg: PeerMessage;
  payload: Buffer | undefined;
  pooled?: boolean;
}

/** Payloads larger than this that span socket reads get a pooled buffer of their own. */
export const POOLED_PAYLOAD_MIN = 64 * 1024 + 1;

/**
 * Hand a frame's payload back to the pool once nothing refers to it (the disk write is done,
 * the bytes were copied). Payloads that are views of a socket read must never be pooled: the
 * caller passes the frame's `pooled` flag.
 */
export function releasePayload(payload: Buffer | undefined, pooled: boolean | undefined): void {
  if (!pooled || !payload) return;
  if (payloadSlabs.owns(payload)) payloadSlabs.put(payload);
  else payloadPool.put(payload);
}

/** The bytes on a socket are not a well-formed frame stream; `message` is one line. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * One frame as the Buffers to write: the header and control message in one Buffer (one
 * allocation: the message is encoded after room for the header), then the
 * payload pieces as they are (not copied). Throws RangeError for an oversize payload: that
 * is a bug in the caller, not something to put on the wire.
 */
export function encodeFrame<K extends MessageType>(
  type: K,
  body: Partial<MessageBodies[K]>,
  payload?: Payload,
): Buffer[] {
  const head = encodeMessageAfter(type, body, FRAME_HEADER_BYTES);
  const controlLen = head.length - FRAME_HEADER_BYTES;
  let dataLen = 0;
  if (payload !== undefined) {
    if (Buffer.isBuffer(payload)) dataLen = payload.length;
    else for (const piece of payload) dataLen += piece.length;
  }
  if (dataLen > MAX_DATA_BYTES) {
    throw new RangeError(`data of ${dataLen} bytes exceeds the ${MAX_DATA_BYTES}-byte limit`);
  }
  if (controlLen > MAX_CONTROL_BYTES) {
    throw new RangeError(
      `${type} message of ${controlLen} bytes exceeds the ${MAX_CONTROL_BYTES}-byte limit`,
    );
  }
  head.writeUInt32BE(FRAME_MAGIC, 0);
  head.writeUInt32BE(controlLen, 4);
  head.writeUInt32BE(dataLen, 8);
  if (dataLen === 0) return [head];
  if (Buffer.isBuffer(payload)) return [head, payload];
  const out: Buffer[] = [head];
  for (const piece of payload as readonly Buffer[]) if (piece.length !== 0) out.push(piece);
  return out;
}

/** Largest control message and data part a decoder accepts. */
export interface FrameLimits {
  control: number;
  data: number;
}

export const DEFAULT_LIMITS: Readonly<FrameLimits> = {
  control: MAX_CONTROL_BYTES,
  data: MAX_DATA_BYTES,
};

const enum Stage {
  Header,
  Control,
  Data,
}

const EMPTY = Buffer.alloc(0);

/**
 * Turns socket chunks, cut anywhere, back into frames. Frames go to the callback given to
 * the constructor, in order and synchronously from push() or resume().
 *
 * Copies: a header or control message that straddles chunks is copied (they are small); a
 * payload that spans chunks goes into a Buffer of its exact size (from the pool when large):
 * what already arrived is copied into it, and the rest can be read straight into it
 * (payloadSpace / payloadReceived), so most of a large replicated write or resync reply is
 * never copied at all.
 *
 * A payload or control message inside one chunk is handed out as a view of it (decoded
 * `bytes` fields too), unless the decoder was made with `copyOut`: then nothing it hands out
 * or keeps after push() returns refers to the pushed chunk, so the caller may read the next
 * bytes into the same memory (FrameReader does: see frame-reader.ts).
 *
 * pause() stops delivery after the current frame; bytes keep being accepted (the caller
 * pauses the socket to stop them) and resume() delivers what is queued.
 *
 * Bad input throws FrameError from push() (or resume()); the decoder then stays failed.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Bytes already consumed from chunks[0]. */
  private head = 0;
  private queued = 0;
  private stage = Stage.Header;
  private controlLen = 0;
  private dataLen = 0;
  private msg: PeerMessage | undefined;
  /** A payload that spans chunks, being filled. */
  private payload: Buffer | undefined;
  /** The payload being filled is large: the rest of it may be read straight into it. */
  private payloadDirect = false;
  /** The payload takePayload just returned came from the pool. */
  private tookPooled = false;
  private filled = 0;
  private paused = false;
  private draining = false;
  private failure: FrameError | undefined;

  private limits: FrameLimits = DEFAULT_LIMITS;

  private readonly copyOut: boolean;

  constructor(
    private readonly onFrame: (frame: Frame) => void,
    limits: FrameLimits = DEFAULT_LIMITS,
    private readonly pool: BufferPool = payloadPool,
    options: { copyOut?: boolean } = {},
  ) {
    this.limits = limits;
    this.copyOut = options.copyOut === true;
  }

  /** Limits for the headers parsed from now on (tighter ones during a handshake). */
  setLimits(limits: FrameLimits): void {
    this.limits = limits;
  }

  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    try {
      if (!this.paused && !this.draining) this.drain();
    } finally {
      if (this.copyOut) this.keepRest(chunk);
    }
  }

  /** copyOut: what is left of `chunk` (part of a frame, or frames held while paused) is copied. */
  private keepRest(chunk: Buffer): void {
    const last = this.chunks.length - 1;
    if (last < 0 || this.chunks[last] !== chunk) return;
    if (last === 0) {
      this.chunks[0] = Buffer.from(chunk.subarray(this.head));
      this.head = 0;
    } else {
      this.chunks[last] = Buffer.from(chunk);
    }
  }

  /**
   * Where the next socket read may land directly: the unfilled rest of a large payload being
   * assembled, when nothing else is queued before it. Undefined otherwise (read into scratch).
   */
  payloadSpace(): Buffer | undefined {
    // Only large (pooled) payloads: small ones are cheaper to copy out of one big read that
    // also holds the frames after them than to read on their own.
    if (!this.payloadDirect || this.payload === undefined || this.queued !== 0 || this.failure) {
      return undefined;
    }
    return this.payload.subarray(this.filled, this.dataLen);
  }

  /** `n` bytes were read into the space payloadSpace() gave. */
  payloadReceived(n: number): void {
    if (this.failure) throw this.failure;
    this.filled += n;
    if (!this.paused && !this.draining) this.drain();
  }

  /** Deliver no more frames until resume(). */
  pause(): void {
    this.paused = true;
  }

  /** Deliver what is queued (synchronously, unless called from inside the callback). */
  resume(): void {
    this.paused = false;
    if (!this.draining && !this.failure) this.drain();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** True when bytes of an unfinished frame are held: an EOF now would truncate it. */
  get midFrame(): boolean {
    return this.stage !== Stage.Header || this.queued !== 0;
  }

  /** Bytes received and not yet delivered as part of a frame. */
  get bufferedBytes(): number {
    return this.queued + this.filled;
  }

  private drain(): void {
    this.draining = true;
    try {
      while (!this.paused) {
        if (this.stage === Stage.Header) {
          if (this.queued < FRAME_HEADER_BYTES) break;
          this.parseHeader(this.take(FRAME_HEADER_BYTES));
        }
        if (this.stage === Stage.Control) {
          if (this.queued < this.controlLen) break;
          this.parseControl(this.take(this.controlLen, this.copyOut));
        }
        const payload = this.takePayload();
        if (payload === null) break;
        const msg = this.msg!;
        this.msg = undefined;
        this.stage = Stage.Header;
        const pooled = this.tookPooled;
        this.tookPooled = false;
        this.onFrame(pooled ? { msg, payload, pooled } : { msg, payload });
      }
    } finally {
      this.draining = false;
    }
  }

  private parseHeader(h: Buffer): void {
    const magic = h.readUInt32BE(0);
    if (magic !== FRAME_MAGIC) {
      this.fail(`bad magic 0x${magic.toString(16).padStart(8, '0')} (not a urbd peer?)`);
    }
    const controlLen = h.readUInt32BE(4);
    const dataLen = h.readUInt32BE(8);
    if (controlLen === 0) this.fail('frame without a control message');
    if (controlLen > this.limits.control) {
      this.fail(
        `control message of ${controlLen} bytes exceeds the ${this.limits.control}-byte limit`,
      );
    }
    if (dataLen > this.limits.data) {
      this.fail(`data of ${dataLen} bytes exceeds the ${this.limits.data}-byte limit`);
    }
    this.controlLen = controlLen;
    this.dataLen = dataLen;
    this.stage = Stage.Control;
  }

  private parseControl(bytes: Buffer): void {
    try {
      this.msg = decodeMessage(bytes);
    } catch (err) {
      if (!(err instanceof SchemaError)) throw err;
      const m = err.message.replace(/^undecodable control message: /, '');
      this.fail(`undecodable control message: ${m}`);
    }
    this.stage = Stage.Data;
  }

  /** The payload once all of it is here (undefined for none), or null while incomplete. */
  private takePayload(): Buffer | undefined | null {
    const n = this.dataLen;
    if (n === 0) return undefined;
    if (this.payload === undefined) {
      if (!this.copyOut && this.queued !== 0 && this.chunks[0]!.length - this.head >= n) {
        return this.take(n); // a view
      }
      this.payloadDirect = n >= POOLED_PAYLOAD_MIN;
      this.payload = this.payloadDirect ? this.pool.get(n) : payloadSlabs.get(n);
      this.filled = 0;
    }
    const out = this.payload;
    while (this.filled < n && this.queued !== 0) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, n - this.filled);
      chunk.copy(out, this.filled, this.head, this.head + count);
      this.filled += count;
      this.advance(count);
    }
    if (this.filled < n) return null;
    this.payload = undefined;
    this.tookPooled = true;
    this.payloadDirect = false;
    this.filled = 0;
    return out;
  }

  /** The next n queued bytes: a view inside one chunk (unless `copy`), else a copy. */
  private take(n: number, copy = false): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.advance(n);
      return copy ? Buffer.from(view) : view;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, n - at);
      chunk.copy(out, at, this.head, this.head + count);
      at += count;
      this.advance(count);
    }
    return out;
  }

  private advance(n: number): void {
    this.head += n;
    this.queued -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  private fail(reason: string): never {
    this.failure = new FrameError(reason);
    this.chunks = [];
    this.queued = 0;
    this.head = 0;
    this.payload = undefined;
    this.payloadDirect = false;
    this.filled = 0;
    throw this.failure;
  }
}
