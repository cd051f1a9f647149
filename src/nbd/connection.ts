import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ByteQueue } from './byte-queue.js';
import type { ExportTable } from './exports.js';
import { ClientAbort, Handshake, ProtocolError } from './handshake.js';
import { ReadSpace, readInto, type ReadTarget } from './socket-reader.js';
import { Transmission } from './transmission.js';

export interface ConnectionOptions {
  /** A client that has not finished option haggling by then is dropped. */
  handshakeTimeoutMs: number;
}

/**
 * One client socket from accept to close: the handshake, then the transmission phase.
 * Whatever the client does, the outcome is this connection closing with one log line;
 * nothing here throws into the server.
 */
export class Connection implements ReadTarget {
  private readonly queue = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null =
    null;
  private transmission: Transmission | undefined;
  /** The export this client is using, once it has entered transmission. */
  exportName: string | undefined;
  private ended = false;
  private closeReason: string | undefined;
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private timer: NodeJS.Timeout | undefined;

  private socket: Socket;
  /** Where reads land: a large WRITE payload's own buffer, or scratch. */
  private readonly space = new ReadSpace();

  constructor(
    socket: Socket,
    private readonly exports: ExportTable,
    private readonly log: Logger,
    private readonly opts: ConnectionOptions,
  ) {
    this.socket = socket;
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
  }

  start(): void {
    const socket = readInto(this.socket, this, true);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.closeReason ??= `socket error: ${err.code ?? err.message}`;
    });
    socket.on('end', () => {
      this.ended = true;
      this.closeReason ??= 'client closed the connection';
      this.failWaiter();
      // A half-closed client still gets the replies to what it already sent.
      if (this.transmission) this.transmission.endOfInput(() => socket.end());
      else socket.end();
    });
    socket.on('close', () => this.onClose());
    this.timer = setTimeout(
      () => this.drop(`handshake not finished within ${this.opts.handshakeTimeoutMs / 1000}s`),
      this.opts.handshakeTimeoutMs,
    );
    this.timer.unref();
    void this.handshake();
  }

  /** Graceful stop: finish requests in flight, then close. */
  shutdown(): void {
    if (this.transmission) {
      this.closeReason ??= 'server shutting down';
      this.transmission.drain(() => this.socket.end());
    } else {
      this.drop('server shutting down');
    }
  }

  /** Hard close, with the reason logged once. */
  drop(reason: string): void {
    if (this.socket.destroyed) return;
    this.closeReason = reason;
    this.socket.destroy();
  }

  private async handshake(): Promise<void> {
    const io = { read: (n: number) => this.read(n), write: (b: Buffer) => this.write(b) };
    try {
      const session = await new Handshake(io, this.exports).run();
      clearTimeout(this.timer);
      this.exportName = session.export.name;
      this.log.info(
        {
          export: session.export.name,
          structuredReplies: session.structuredReplies,
          blockStatus: session.allocationContext,
          blockSizes: session.blockSizes,
        },
        'client entered transmission',
      );
      this.transmission = new Transmission(this.socket, this.queue, session, this.log, (reason) =>
        this.drop(reason),
      );
      if (this.ended) this.transmission.endOfInput(() => this.socket.end());
      else this.transmission.pump();
    } catch (err) {
      clearTimeout(this.timer);
      if (err instanceof ClientAbort) {
        this.closeReason = 'client aborted the handshake';
        this.socket.end();
      } else if (err instanceof ProtocolError) {
        this.drop(`handshake: ${err.message}`);
      } else {
        this.drop(this.closeReason ?? `handshake: ${(err as Error).message}`);
      }
    }
  }

  private write(buf: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(buf);
  }

  private read(n: number): Promise<Buffer> {
    if (this.queue.length >= n) return Promise.resolve(this.queue.take(n));
    if (this.ended || this.socket.destroyed) {
      return Promise.reject(new Error('client closed the connection during the handshake'));
    }
    return new Promise((resolve, reject) => (this.waiter = { n, resolve, reject }));
  }

  /** ReadTarget: the rest of a large WRITE payload if one is coming, else scratch space. */
  nextBuffer(): Buffer {
    return this.space.next(this.transmission?.payloadSpace(), this.transmission?.readLimit());
  }

  /** ReadTarget: `n` bytes arrived in `buf` (ours, or a chunk of Node's own). */
  received(n: number, buf: Buffer): void {
    const view = this.space.landed(n, buf);
    if (view === undefined) this.transmission!.payloadReceived(n);
    else this.onData(view);
  }

  private onData(chunk: Buffer): void {
    this.queue.push(chunk);
    if (this.transmission) {
      this.transmission.pump();
      return;
    }
    const w = this.waiter;
    if (w && this.queue.length >= w.n) {
      this.waiter = null;
      w.resolve(this.queue.take(w.n));
    }
  }

  private failWaiter(): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.reject(new Error('client closed the connection during the handshake'));
    }
  }

  private onClose(): void {
    clearTimeout(this.timer);
    this.failWaiter();
    this.transmission?.close();
    this.queue.clear();
    const stats = this.transmission?.stats;
    const reason = this.closeReason ?? 'connection closed';
    const fields = stats ? { requests: stats.requests, errors: stats.errors } : {};
    const normal = /client closed|aborted|shutting down|connection closed/.test(reason);
    if (normal) this.log.info(fields, `connection closed: ${reason}`);
    else this.log.warn(fields, `connection closed: ${reason}`);
    this.resolveFinished();
  }
}
