/**
 * A TCP proxy inside the test process, so a test can break the link between two urbd nodes
 * on command: point a node's peer address at `proxy.port` instead of the other node's port.
 *
 * Every connection accepted on 127.0.0.1:port is paired with its own connection to the
 * target (a peer link's two TCP connections are two pairs). "up" is the accepting side →
 * target, "down" is target → accepting side. The link is in one of three modes:
 *
 * - normal: bytes are forwarded (after `delay(ms)`, if set; order kept per direction), and
 *   a FIN or a reset on one side is passed on to the other.
 * - cut: every pair is reset on both sides at once (RST, so both endpoints see ECONNRESET
 *   or EOF), and new connections are accepted and reset straight away until `heal()`.
 * - blackhole: connections stay open but every byte, FIN and reset is dropped in both
 *   directions, as on a dead link; nothing is buffered, so the endpoints only notice
 *   through their own timeouts. New connections are accepted and black-holed too (the
 *   target never hears of them).
 *
 * `heal()` goes back to normal with no delay. Pairs that were black-holed are reset on
 * heal: bytes were dropped out of the middle of their streams, so they cannot carry on.
 * `close()` resets everything and stops listening; it is registered in teardown when `t`
 * is given.
 */
import net from 'node:net';
import type { Teardown } from './server.js';

export interface ProxyStats {
  /** Connections forwarded to the target since the start (cut-time refusals not counted). */
  connections: number;
  /** Connections accepted and reset at once because the link was cut. */
  refused: number;
  /** Pairs open now (black-holed ones included). */
  open: number;
  /** Bytes written on to the other side: up = towards the target, down = back. */
  bytesForwarded: { up: number; down: number };
}

export interface TcpProxy {
  /** The port the proxy listens on, on 127.0.0.1. */
  readonly port: number;
  readonly stats: ProxyStats;
  /** Reset every connection pair, and refuse new connections until heal(). */
  cut(): void;
  /** Drop every byte in both directions, keeping connections open, until heal(). */
  blackhole(): void;
  /** Hold every chunk for `ms` before forwarding it; 0 forwards at once. */
  delay(ms: number): void;
  /** Normal forwarding, no delay; black-holed pairs are reset. */
  heal(): void;
  /** Stop listening and reset every connection. Idempotent. */
  close(): Promise<void>;
}

export interface ProxyOptions {
  target: { host: string; port: number };
  /** 0 (the default) picks a free port. */
  listenPort?: number;
  t?: Teardown;
}

type Mode = 'normal' | 'cut' | 'blackhole';

/** Above this many bytes held back by a delay, the sending side is paused. */
const DELAY_HIGH_WATER = 4 << 20;

/** One direction of a pair: chunks waiting out the delay, then written to `dst`. */
class Lane {
  private readonly queue: { data: Buffer | null; due: number }[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private pausedByQueue = false;
  private waitingDrain = false;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly count: (n: number) => void,
  ) {}

  /** `data` null is the end of the stream (FIN), forwarded in order after the data. */
  push(data: Buffer | null, delayMs: number): void {
    if (delayMs <= 0 && this.queue.length === 0) {
      this.write(data);
      return;
    }
    this.queue.push({ data, due: Date.now() + delayMs });
    if (data !== null) {
      this.queued += data.length;
      if (this.queued > DELAY_HIGH_WATER && !this.pausedByQueue) {
        this.pausedByQueue = true;
        this.src.pause();
      }
    }
    this.pump();
  }

  /** Forget whatever is held back (a cut or a black hole loses bytes in flight). */
  drop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queued = 0;
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = Date.now();
    while (this.queue.length > 0 && this.queue[0]!.due <= now) {
      const { data } = this.queue.shift()!;
      if (data !== null) this.queued -= data.length;
      this.write(data);
    }
    if (this.pausedByQueue && this.queued <= DELAY_HIGH_WATER / 2) {
      this.pausedByQueue = false;
      if (!this.waitingDrain) this.src.resume();
    }
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => this.pump(), this.queue[0]!.due - now);
    }
  }

  private write(data: Buffer | null): void {
    if (this.dst.destroyed) return;
    if (data === null) {
      this.dst.end();
      return;
    }
    this.count(data.length);
    if (!this.dst.write(data) && !this.waitingDrain) {
      this.waitingDrain = true;
      this.src.pause();
      this.dst.once('drain', () => {
        this.waitingDrain = false;
        if (!this.pausedByQueue) this.src.resume();
      });
    }
  }
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | null;
  blackholed: boolean;
  lanes: Lane[];
  closed: Promise<void>;
}

function reset(s: net.Socket | null): void {
  if (s === null || s.destroyed) return;
  // resetAndDestroy on a socket still connecting would wait for the connection first.
  if (s.connecting) s.destroy();
  else s.resetAndDestroy();
}

function closedPromise(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.closed) resolve();
    else s.once('close', () => resolve());
  });
}

export async function startProxy(opts: ProxyOptions): Promise<TcpProxy> {
  const { target } = opts;
  let mode: Mode = 'normal';
  let delayMs = 0;
  let closing: Promise<void> | undefined;
  const pairs = new Set<Pair>();
  const stats: ProxyStats = {
    connections: 0,
    refused: 0,
    open: 0,
    bytesForwarded: { up: 0, down: 0 },
  };

  const resetPair = (p: Pair): void => {
    for (const l of p.lanes) l.drop();
    reset(p.client);
    reset(p.upstream);
  };

  const track = (p: Pair): void => {
    pairs.add(p);
    stats.open = pairs.size;
    void p.closed.then(() => {
      pairs.delete(p);
      stats.open = pairs.size;
    });
  };

  const blackholedPair = (client: net.Socket): Pair => {
    // No upstream: the target never sees a connection made through a dead link.
    client.on('data', () => undefined);
    client.on('error', () => undefined);
    return { client, upstream: null, blackholed: true, lanes: [], closed: closedPromise(client) };
  };

  const forwardedPair = (client: net.Socket): Pair => {
    stats.connections++;
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    const up = new Lane(client, upstream, (n) => (stats.bytesForwarded.up += n));
    const down = new Lane(upstream, client, (n) => (stats.bytesForwarded.down += n));
    const p: Pair = {
      client,
      upstream,
      blackholed: false,
      lanes: [up, down],
      closed: Promise.all([closedPromise(client), closedPromise(upstream)]).then(() => undefined),
    };
    const wire = (src: net.Socket, dst: net.Socket, lane: Lane) => {
      src.on('data', (d: Buffer) => {
        if (!p.blackholed) lane.push(d, delayMs);
      });
      src.on('end', () => {
        if (!p.blackholed) lane.push(null, delayMs);
      });
      src.on('error', () => {
        // A reset (or any failure) on one side is a reset on the other, unless the link is
        // dead, in which case the other side hears nothing.
        if (!p.blackholed) {
          lane.drop();
          reset(dst);
        }
      });
    };
    // Nothing is read from the client until the target has answered, so nothing queues here.
    client.pause();
    upstream.once('connect', () => {
      wire(client, upstream, up);
      wire(upstream, client, down);
      client.resume();
    });
    upstream.on('error', () => {
      // The target refused the connection (or reset it later): reset the client too.
      if (!p.blackholed) reset(client);
    });
    client.on('error', () => undefined);
    return p;
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    if (closing !== undefined || mode === 'cut') {
      stats.refused++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const p = mode === 'blackhole' ? blackholedPair(client) : forwardedPair(client);
    if (p.blackholed) client.resume();
    track(p);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: opts.listenPort ?? 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      const all = [...pairs];
      for (const p of all) resetPair(p);
      await Promise.all([listenerClosed, ...all.map((p) => p.closed)]);
    })();
    return closing;
  };
  if (opts.t) opts.t.teardown(close);

  return {
    port,
    stats,
    cut() {
      mode = 'cut';
      for (const p of pairs) resetPair(p);
    },
    blackhole() {
      mode = 'blackhole';
      for (const p of pairs) {
        p.blackholed = true;
        for (const l of p.lanes) l.drop();
      }
    },
    delay(ms: number) {
      delayMs = Math.max(0, ms);
    },
    heal() {
      mode = 'normal';
      delayMs = 0;
      for (const p of pairs) if (p.blackholed) resetPair(p);
    },
    close,
  };
}
