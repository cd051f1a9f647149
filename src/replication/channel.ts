/**
 * One TCP socket of a peer link, as frames: a FrameDecoder on the read side, batched writes on
 * the other, and a single "this socket is finished, here is why" report.
 *
 * Writes issued in one tick go out together: the first one corks the socket and an uncork is
 * queued with process.nextTick, so a burst of small frames becomes one writev. A write's
 * callback fires once libuv has handed its bytes to the kernel.
 *
 * Reads go through a FrameReader: with a socket made to read into it (`onread`, see
 * connectChannel and PeerListener) large payloads land straight in pooled buffers; any other
 * socket feeds it Node's 'data' chunks.
 */
import type { Socket } from 'node:net';

import { FrameError, type Frame, type FrameLimits } from './frame.js';
import { FrameReader } from './frame-reader.js';
import type { CloseKind } from './link-error.js';

export type FrameHandler = (frame: Frame) => void;
export type EndHandler = (reason: string, kind: CloseKind) => void;

/** How long a socket we are done with may take to flush its last frame and see the FIN. */
const FINISH_GRACE_MS = 1000;

/** Corked bytes past which a burst is handed to the kernel before the tick ends. */
const EARLY_UNCORK_BYTES = 256 * 1024;

const noop = (): void => {};

export class FrameChannel {
  /** Used in reasons: 'DATA', 'META', or 'incoming' before the Hello says which. */
  label: string;
  /** Date.now() when bytes last arrived. */
  lastHeardMs = Date.now();

  private readonly reader: FrameReader;
  private onFrame: FrameHandler = noop;
  private onEnd: EndHandler | undefined;
  private ended: { reason: string; kind: CloseKind } | undefined;
  private corked = false;
  private finishing = false;
  private graceTimer: NodeJS.Timeout | undefined;

  /**
   * `reader`: the FrameReader the socket was made to read into (`onread`); without one the
   * socket's 'data' chunks are fed to a reader of the channel's own.
   */
  constructor(
    readonly socket: Socket,
    label: string,
    reader?: FrameReader,
  ) {
    this.label = label;
    this.reader = reader ?? new FrameReader();
    this.reader.onFrame = (f) => this.onFrame(f);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    if (reader === undefined)
      socket.on('data', (chunk: Buffer) => this.onData(chunk.length, chunk));
    else this.reader.sink = (n, buf) => this.onData(n, buf);
    socket.on('end', () => {
      const partial = this.decoder.midFrame && !this.decoder.isPaused;
      this.fail(
        `peer closed the ${this.label} socket${partial ? ' in the middle of a frame' : ''}`,
        'BrokenPipe',
      );
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const kind =
        err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'BrokenPipe' : 'NetworkFailure';
      this.fail(`${this.label} socket: ${err.message}`, kind);
    });
    socket.on('close', () => {
      clearTimeout(this.graceTimer);
      this.fail(`${this.label} socket closed`, 'BrokenPipe');
    });
  }

  /**
   * Where frames and the end report go from now on. An end that already happened is reported
   * on the next tick.
   */
  attach(onFrame: FrameHandler, onEnd: EndHandler): void {
    this.onFrame = onFrame;
    this.onEnd = onEnd;
    const ended = this.ended;
    if (ended) {
      this.onEnd = undefined;
      process.nextTick(onEnd, ended.reason, ended.kind);
    }
  }

  /** Frames and the end report go nowhere until the next attach(). */
  detach(): void {
    this.onFrame = noop;
    this.onEnd = undefined;
  }

  get isEnded(): boolean {
    return this.ended !== undefined;
  }

  /** Frame size limits for what is parsed from now on. */
  setLimits(limits: FrameLimits): void {
    this.decoder.setLimits(limits);
  }

  /** Bytes written but not yet handed to the kernel. */
  get writableLength(): number {
    return this.socket.writableLength;
  }

  /** Queues one frame (as encodeFrame made it); `onSent` fires when it is in the kernel. */
  send(parts: Buffer[], onSent?: (err?: Error) => void): void {
    const s = this.socket;
    if (this.ended || this.finishing || s.destroyed) {
      if (onSent) {
        const why = this.ended?.reason ?? `${this.label} socket closed`;
        process.nextTick(onSent, new Error(`not sent: ${why}`));
      }
      return;
    }
    if (!this.corked) {
      this.corked = true;
      s.cork();
      process.nextTick(this.uncork);
    }
    const last = parts.length - 1;
    for (let i = 0; i < last; i++) s.write(parts[i]!);
    if (onSent) s.write(parts[last]!, (err) => onSent(err ?? undefined));
    else s.write(parts[last]!);
    // A long burst (a SyncSource answering a socket read's worth of requests) goes to the
    // kernel as it grows, so the peer receives while we still produce; the queued uncork
    // still ends the burst.
    if (s.writableLength >= EARLY_UNCORK_BYTES) {
      s.uncork();
      s.cork();
    }
  }

  /**
   * Hands the frames queued in this tick to the kernel now rather than when the tick ends:
   * for a caller about to block the loop (a metadata commit and its fsync), so frames already
   * queued do not wait for it.
   */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private readonly uncork = (): void => this.flush();

  /** Stop delivering frames (after the current one) and stop reading the socket. */
  pause(): void {
    this.decoder.pause();
    this.socket.pause();
  }

  /** Deliver queued frames and read on. */
  resume(): void {
    if (this.ended || this.finishing) return;
    this.socket.resume();
    try {
      this.decoder.resume();
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.fail(err.message, 'ProtocolError');
    }
  }

  /**
   * Done with this socket, politely: write `last` (if any), send FIN, read and drop whatever
   * still comes so the close is not a reset, and destroy it when the peer closes too or after
   * a grace period. Nothing is reported to the end handler any more.
   */
  finish(last?: Buffer[]): void {
    this.onEnd = undefined;
    this.onFrame = noop;
    if (this.finishing || this.socket.destroyed) {
      this.socket.destroy();
      return;
    }
    this.finishing = true;
    this.ended ??= { reason: `${this.label} socket closed by us`, kind: 'TearDown' };
    const s = this.socket;
    if (last) for (const part of last) s.write(part);
    this.flush();
    s.end();
    s.resume();
    this.graceTimer = setTimeout(() => s.destroy(), FINISH_GRACE_MS);
    this.graceTimer.unref();
  }

  /**
   * Done with this socket, at once. Nothing is reported to the end handler any more. A socket
   * already finishing is left to finish (it is gone within the grace period).
   */
  destroy(): void {
    this.onEnd = undefined;
    this.onFrame = noop;
    if (this.finishing) return;
    this.ended ??= { reason: `${this.label} socket closed by us`, kind: 'TearDown' };
    clearTimeout(this.graceTimer);
    this.socket.destroy();
  }

  /** Ends the channel now, reporting `reason` to the end handler like any other failure. */
  abort(reason: string, kind: CloseKind): void {
    this.fail(reason, kind);
  }

  private get decoder(): FrameReader['decoder'] {
    return this.reader.decoder;
  }

  private onData(n: number, buf: Buffer): void {
    this.lastHeardMs = Date.now();
    if (this.finishing || this.ended) return;
    try {
      this.reader.received(n, buf);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.fail(err.message, 'ProtocolError');
    }
  }

  /** The first failure wins; the socket is destroyed and the end handler hears of it once. */
  private fail(reason: string, kind: CloseKind): void {
    if (this.ended) return;
    this.ended = { reason, kind };
    this.onFrame = noop;
    this.socket.destroy();
    const onEnd = this.onEnd;
    this.onEnd = undefined;
    onEnd?.(reason, kind);
  }
}
