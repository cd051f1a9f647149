/**
 * An authenticated link to one peer, over two TCP connections as DRBD does it (drbd.md §5.1):
 *
 *   - the DATA socket carries writes, barriers, resync requests and data, read requests;
 *   - the META socket carries acks and pings,
 *
 * so an ack or a ping never waits behind megabytes of queued write data, and a receiver that
 * stops reading data (pauseData) still hears acks and answers pings.
 *
 * Setting up: the dialer opens the DATA socket, runs the handshake on it (handshake.ts), then
 * opens and authenticates the META socket; both carry the same random link id. The acceptor
 * pairs the two sockets by link id and hands out a PeerLink only when both are authenticated.
 * Nothing but handshake messages crosses a socket before that.
 *
 * Liveness: after pingIntMs without a byte from the peer on either socket, a Ping goes out on
 * META; no PingAck within pingTimeoutMs closes the link ('Timeout').
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';

import { type Payload, payloadLength } from '../nbd/target.js';
import { checkHmacAlg, DEFAULT_HMAC_ALG, LINK_ID_BYTES } from './auth.js';
import { readInto } from '../nbd/socket-reader.js';
import { FrameChannel } from './channel.js';
import { FrameReader } from './frame-reader.js';
import { encodeFrame, type Frame } from './frame.js';
import { runHandshake, type HandshakeResult, type LinkIdentity } from './handshake.js';
import { LinkError, type CloseKind } from './link-error.js';
import type { Channel, MessageBodies, MessageType, PeerMessage } from './schema.js';

export { LinkError, type CloseKind } from './link-error.js';
export type { LinkIdentity } from './handshake.js';

export interface LinkTimers {
  /** net { ping-int }: idle time before a Ping. */
  pingIntMs: number;
  /** net { ping-timeout }: how long a Ping may go unanswered. */
  pingTimeoutMs: number;
  /** Limit for one socket's handshake, and for the wait for its partner socket (5 s). */
  handshakeTimeoutMs?: number;
}

export const HANDSHAKE_TIMEOUT_MS = 5000;
/** How long a goodbye read on META waits for the rest of the DATA socket. */
const BYE_WAIT_MS = 2000;

/** Messages that travel on the META socket; all others go on DATA. */
export const META_MESSAGES: ReadonlySet<MessageType> = new Set<MessageType>([
  'ping',
  'pingAck',
  'recvAck',
  'writeAck',
  'negAck',
  'barrierAck',
  'rsWriteAck',
  'syncPause',
  'outdateRequest',
  'outdateReply',
]);

/** The socket a message type travels on. */
export function channelOf(type: MessageType): Channel {
  return META_MESSAGES.has(type) ? 'META' : 'DATA';
}

export interface PeerAddress {
  host: string;
  port: number;
}

function checkIdentity(me: LinkIdentity): void {
  if (me.secret) checkHmacAlg(me.hmacAlg ?? DEFAULT_HMAC_ALG);
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/** ": why" for an abort with a reason of its own, "" for a plain abort(). */
function abortReason(signal: AbortSignal | undefined): string {
  const r: unknown = signal?.reason;
  if (r === undefined || (r instanceof Error && r.name === 'AbortError')) return '';
  return `: ${oneLine(r instanceof Error ? r.message : String(r))}`;
}

/**
 * Connects to a peer's listener and sets up the link. Rejects with a LinkError whose message
 * is one line saying why (connect failure, timeout, any handshake refusal, abort).
 */
export async function dialPeer(
  address: PeerAddress,
  me: LinkIdentity,
  expectPeer: string,
  timers: LinkTimers,
  opts: { signal?: AbortSignal; connectTimeoutMs?: number } = {},
): Promise<PeerLink> {
  checkIdentity(me);
  const handshakeMs = timers.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const connectMs = opts.connectTimeoutMs ?? handshakeMs;
  const { signal } = opts;
  const linkId = randomBytes(LINK_ID_BYTES);
  const open: FrameChannel[] = [];
  const aborted = (): LinkError => new LinkError(`dial aborted${abortReason(signal)}`, 'TearDown');
  const onAbort = (): void => {
    for (const ch of open) ch.abort('dial aborted', 'TearDown');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const results: HandshakeResult[] = [];
    for (const channel of ['DATA', 'META'] as const) {
      if (signal?.aborted) throw aborted();
      const ch = await connectChannel(address, channel, connectMs, signal);
      open.push(ch);
      results.push(
        await runHandshake(ch, {
          me,
          expectPeer,
          timeoutMs: handshakeMs,
          dial: { channel, linkId },
        }),
      );
    }
    if (signal?.aborted) throw aborted();
    const link = new PeerLink(open[0]!, open[1]!, results[0]!, timers);
    link.start();
    return link;
  } catch (err) {
    for (const ch of open) ch.destroy();
    if (signal?.aborted) throw aborted();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function connectChannel(
  address: PeerAddress,
  label: Channel,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<FrameChannel> {
  const where = `${address.host}:${address.port}`;
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const socket = net.connect({ host: address.host, port: address.port, onread: reader.onread });
    const done = (err?: LinkError): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      if (err) {
        socket.destroy();
        reject(err);
      }
    };
    const onError = (err: NodeJS.ErrnoException): void =>
      done(
        new LinkError(
          `cannot connect to ${where}: ${err.code ?? err.message}`,
          'NetworkFailure',
          err.code,
        ),
      );
    const onAbort = (): void => done(new LinkError('dial aborted', 'TearDown'));
    const timer = setTimeout(
      () =>
        done(
          new LinkError(`cannot connect to ${where}: no answer within ${timeoutMs} ms`, 'Timeout'),
        ),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', () => {
      done();
      // The channel's own handlers are in place before anything else can happen.
      resolve(new FrameChannel(socket, label, reader));
    });
  });
}

interface Parked {
  remote: string;
  timer: NodeJS.Timeout;
  DATA?: { ch: FrameChannel; hs: HandshakeResult };
  META?: { ch: FrameChannel; hs: HandshakeResult };
}

/**
 * Accepts links from one peer. Emits 'link' (PeerLink) for every authenticated pair of
 * sockets and 'refused' (remoteAddress, reason) for every socket turned away, with a
 * one-line reason. Attach the link's 'message' and 'close' listeners inside the 'link'
 * handler: delivery starts right after it.
 */
export class PeerListener extends EventEmitter {
  private readonly pending = new Set<FrameChannel>();
  private readonly parked = new Map<string, Parked>();
  private closing = false;
  private readonly handshakeMs: number;

  private constructor(
    private readonly server: net.Server,
    private readonly me: LinkIdentity,
    private readonly expectPeer: () => readonly string[],
    private readonly timers: LinkTimers,
  ) {
    super();
    this.handshakeMs = timers.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    server.on('connection', (socket: net.Socket) => this.onConnection(socket));
    server.on('error', (err: Error) => this.emit('refused', '', `listener: ${err.message}`));
  }

  static async listen(
    address: PeerAddress,
    me: LinkIdentity,
    /** The peers that may connect: a name, or a function read at each connection. */
    expectPeer: string | (() => readonly string[]),
    timers: LinkTimers,
  ): Promise<PeerListener> {
    checkIdentity(me);
    // Paused so that nothing is read before the socket reads into a FrameReader (readInto).
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    const expected = typeof expectPeer === 'string' ? () => [expectPeer] : expectPeer;
    return new PeerListener(server, me, expected, timers);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Sockets of this listener still open: in handshake, waiting for a partner, or in links. */
  connections(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  }

  /**
   * Stops listening and drops every socket not yet part of a link. Links already handed out
   * stay up; they belong to whoever took them.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.server.close();
    const closed: Promise<unknown>[] = [];
    const drop = (ch: FrameChannel): void => {
      if (!ch.socket.destroyed) closed.push(new Promise((r) => ch.socket.once('close', r)));
      ch.destroy();
    };
    for (const ch of this.pending) drop(ch);
    this.pending.clear();
    for (const p of this.parked.values()) {
      clearTimeout(p.timer);
      if (p.DATA) drop(p.DATA.ch);
      if (p.META) drop(p.META.ch);
    }
    this.parked.clear();
    await Promise.all(closed);
  }

  private onConnection(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.closing) {
      socket.destroy();
      return;
    }
    const reader = new FrameReader();
    const reads = {
      nextBuffer: () => reader.nextBuffer(),
      received: (n: number, buf: Buffer) => reader.sink(n, buf),
    };
    const ch = new FrameChannel(readInto(socket, reads, false), 'incoming', reader);
    this.pending.add(ch);
    runHandshake(ch, {
      me: this.me,
      expectPeer: this.expectPeer(),
      timeoutMs: this.handshakeMs,
    }).then(
      (hs) => {
        this.pending.delete(ch);
        if (this.closing) ch.destroy();
        else this.park(ch, hs, remote);
      },
      (err: Error) => {
        this.pending.delete(ch);
        if (!this.closing) this.emit('refused', remote, err.message);
      },
    );
  }

  /** An authenticated socket waits here for the other socket of its link. */
  private park(ch: FrameChannel, hs: HandshakeResult, remote: string): void {
    const key = hs.linkId.toString('hex');
    const which = hs.channel;
    const other = which === 'DATA' ? 'META' : 'DATA';
    let p = this.parked.get(key);
    if (p?.[which]) {
      ch.destroy();
      this.emit('refused', remote, `a second ${which} socket for one link`);
      return;
    }
    if (!p) {
      const timer = setTimeout(
        () =>
          this.unpark(
            key,
            `${which} socket without a ${other} socket within ${this.handshakeMs} ms`,
          ),
        this.handshakeMs,
      );
      p = { remote, timer };
      this.parked.set(key, p);
    }
    p[which] = { ch, hs };
    ch.attach(
      () => {},
      (reason) =>
        this.unpark(key, `${which} socket gone before its ${other} socket came: ${reason}`),
    );
    if (p.DATA && p.META) {
      clearTimeout(p.timer);
      this.parked.delete(key);
      const link = new PeerLink(p.DATA.ch, p.META.ch, p.DATA.hs, this.timers);
      this.emit('link', link);
      link.start();
    }
  }

  private unpark(key: string, reason: string): void {
    const p = this.parked.get(key);
    if (!p) return;
    this.parked.delete(key);
    clearTimeout(p.timer);
    p.DATA?.ch.destroy();
    p.META?.ch.destroy();
    this.emit('refused', p.remote, reason);
  }
}

/**
 * One established link. Events:
 *   'message' (msg: PeerMessage, payload: Buffer | undefined, channel: 'DATA' | 'META',
 *     pooled: boolean) — a pooled payload may be handed back with releasePayload (frame.ts)
 *   'close'   (reason: string, kind: CloseKind), exactly once.
 * Pings, ping acks and goodbyes are handled here and not delivered. A payload is a view of
 * received memory that stays valid; it is undefined when the frame carried no data bytes.
 */
export class PeerLink extends EventEmitter {
  readonly peerNode: string;
  readonly peerNodeId: number;
  readonly protocol: number;
  readonly features: string[];
  /** Hex of the link id both sockets carried (for logs). */
  readonly linkId: string;

  private closed = false;
  /** A goodbye arrived on META; the link closes at DATA's goodbye or end (BYE_WAIT_MS). */
  private byeOnMeta: string | undefined;
  /** The close came from the peer's refusal: nothing to tell it back. */
  private peerRefused = false;
  private started = false;
  private dataPaused = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingSeq = 0;
  private pingOut = 0;
  /** Data bytes (writes, resync, reads) sent and received on this link. */
  readonly traffic = { sentBytes: 0, receivedBytes: 0 };

  /** Made by dialPeer() and PeerListener only. */
  constructor(
    private readonly data: FrameChannel,
    private readonly meta: FrameChannel,
    hs: HandshakeResult,
    private readonly timers: LinkTimers,
  ) {
    super();
    this.peerNode = hs.peer.node;
    this.peerNodeId = hs.peer.nodeId;
    this.protocol = hs.protocol;
    this.features = hs.features;
    this.linkId = hs.linkId.toString('hex');
    data.detach();
    meta.detach();
  }

  /**
   * Starts delivery after the current macrotask, so that whoever received the link (a 'link'
   * handler, or the code after `await dialPeer()`) has attached its listeners.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    setImmediate(() => {
      if (this.closed) return;
      this.data.attach(
        (f) => this.onFrame(f, 'DATA'),
        (reason, kind) => {
          if (this.byeOnMeta !== undefined) this.close(this.byeOnMeta, 'Goodbye');
          else this.close(reason, kind);
        },
      );
      this.meta.attach(
        (f) => this.onFrame(f, 'META'),
        (reason, kind) => {
          // After a goodbye on META its EOF follows; the link waits for DATA's goodbye.
          if (this.byeOnMeta === undefined) this.close(reason, kind);
        },
      );
      this.meta.resume();
      if (!this.dataPaused) this.data.resume();
      this.armIdle(this.timers.pingIntMs);
    });
  }

  /** Date.now() when bytes last arrived on either socket. */
  get lastHeardMs(): number {
    return Math.max(this.data.lastHeardMs, this.meta.lastHeardMs);
  }

  /** Bytes queued on the DATA socket and not yet handed to the kernel. */
  get dataBacklog(): number {
    return this.data.writableLength;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Queues one message on the socket its type travels on. `onSent` fires once the frame is in
   * the kernel (or with an error if it never gets there); only then may `payload` be reused.
   */
  send<K extends MessageType>(
    type: K,
    body: Partial<MessageBodies[K]>,
    payload?: Payload,
    onSent?: (err?: Error) => void,
  ): void {
    const ch = META_MESSAGES.has(type) ? this.meta : this.data;
    if (payload !== undefined) this.traffic.sentBytes += payloadLength(payload);
    ch.send(encodeFrame(type, body, payload), onSent);
  }

  /** Frames queued on either socket go to the kernel now (FrameChannel.flush). */
  flush(): void {
    this.data.flush();
    this.meta.flush();
  }

  /** Stops reading (and delivering) DATA frames; META keeps flowing. */
  pauseData(): void {
    this.dataPaused = true;
    if (this.started && !this.closed) this.data.pause();
  }

  resumeData(): void {
    if (!this.dataPaused) return;
    this.dataPaused = false;
    if (this.started && !this.closed) this.data.resume();
  }

  get isDataPaused(): boolean {
    return this.dataPaused;
  }

  /**
   * Closes the link; idempotent. The peer is told why with a Goodbye (best effort), both
   * sockets are shut and 'close' is emitted on the next tick.
   */
  close(reason: string, kind: CloseKind = 'TearDown'): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.pingTimer);
    if (kind === 'Goodbye' || (kind === 'Refused' && this.peerRefused)) {
      this.data.destroy();
      this.meta.destroy();
    } else {
      // On both sockets, so that whichever the peer reads first says why before its EOF.
      const bye = encodeFrame('goodbye', { reason: oneLine(reason), refused: kind === 'Refused' });
      this.meta.finish(bye);
      this.data.finish(bye);
    }
    process.nextTick(() => this.emit('close', reason, kind));
  }

  private onFrame(f: Frame, channel: Channel): void {
    if (this.closed) return;
    const msg: PeerMessage = f.msg;
    switch (msg.type) {
      case 'ping':
        if (channel !== 'META') break;
        this.meta.send(encodeFrame('pingAck', { id: msg.body.id }));
        return;
      case 'pingAck':
        if (channel !== 'META') break;
        if (msg.body.id === this.pingOut) {
          this.pingOut = 0;
          clearTimeout(this.pingTimer);
          this.armIdle(this.timers.pingIntMs);
        }
        return;
      case 'goodbye':
        if (msg.body.refused) {
          this.peerRefused = true;
          this.close(`peer refused the connection: ${oneLine(msg.body.reason)}`, 'Refused');
          return;
        }
        {
          const why = `peer closed the link: ${oneLine(msg.body.reason) || 'no reason given'}`;
          // The peer sends its goodbye on both sockets. The one on DATA comes after every DATA
          // message sent before it (a last state message saying the peer leaves, above all):
          // a goodbye read first on META waits for it, or for DATA's end, a moment at most.
          if (channel === 'META' && !this.dataPaused) {
            this.byeOnMeta = why;
            setTimeout(() => this.close(why, 'Goodbye'), BYE_WAIT_MS).unref();
            return;
          }
          this.close(why, 'Goodbye');
        }
        return;
      case 'hello':
      case 'authResponse':
      case 'authResult':
        this.close(`unexpected ${msg.type} after the handshake`, 'ProtocolError');
        return;
    }
    if (META_MESSAGES.has(msg.type) !== (channel === 'META')) {
      this.close(`${msg.type} arrived on the ${channel} socket`, 'ProtocolError');
      return;
    }
    if (f.payload !== undefined) this.traffic.receivedBytes += f.payload.length;
    this.emit('message', msg, f.payload, channel, f.pooled === true);
  }

  private armIdle(ms: number): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(this.onIdle, ms);
    this.idleTimer.unref();
  }

  private readonly onIdle = (): void => {
    if (this.closed || this.pingOut !== 0) return;
    const { pingIntMs, pingTimeoutMs } = this.timers;
    const quiet = Date.now() - this.lastHeardMs;
    if (quiet < pingIntMs) {
      this.armIdle(pingIntMs - quiet);
      return;
    }
    const id = ++this.pingSeq;
    this.pingOut = id;
    this.meta.send(encodeFrame('ping', { id }));
    this.pingTimer = setTimeout(() => {
      // Timers run before sockets are read: after this process did not run for a while (a
      // metadata fsync on a busy disk, a starved CPU), the answer may be waiting unread in
      // the socket. One turn of the loop reads it; only then is the peer silent.
      setImmediate(() => {
        if (this.closed || this.pingOut !== id) return;
        this.close(`peer did not answer a ping within ${pingTimeoutMs} ms`, 'Timeout');
      });
    }, pingTimeoutMs);
    this.pingTimer.unref();
  };
}
