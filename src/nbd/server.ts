import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { Connection } from './connection.js';
import { ExportTable } from './exports.js';

export interface NbdServerOptions {
  log: Logger;
  /** More simultaneous connections than this are closed at once. */
  maxConnections?: number;
  handshakeTimeoutMs?: number;
}

/** Where a listener is: TCP host and port, or a Unix socket path. */
export type ListenAddress = { host: string; port: number } | { path: string };

export function formatAddress(a: ListenAddress): string {
  if ('path' in a) return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `unix:PATH`. */
export function parseListenAddress(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path) throw new Error(`"${text}": unix: needs a socket path`);
    return { path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m) throw new Error(`"${text}" is not HOST:PORT, [IPV6]:PORT or unix:PATH`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`"${text}": port ${port} is out of range`);
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * An NBD server: listeners, the export table and the live connections. It serves whatever
 * BlockTargets are in its table and knows nothing about where their blocks live.
 */
export class NbdServer {
  readonly exports = new ExportTable();
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<Connection>();
  private nextId = 1;
  private readonly log: Logger;
  private readonly maxConnections: number;
  private readonly handshakeTimeoutMs: number;
  private closing = false;

  constructor(opts: NbdServerOptions) {
    this.log = opts.log;
    this.maxConnections = opts.maxConnections ?? 128;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
  }

  /** Starts a listener; resolves with the address actually bound (port 0 picks one). */
  async listen(addr: ListenAddress): Promise<ListenAddress> {
    // Half-open: a client that shuts down its sending side still gets the replies to
    // everything it sent before; the connection ends them and then closes.
    // Paused: the connection moves the socket's handle before the first read (socket-reader).
    const server = net.createServer(
      { noDelay: true, allowHalfOpen: true, pauseOnConnect: true },
      (socket) => this.accept(socket),
    );
    if ('path' in addr) await removeStaleSocket(addr.path);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(
        'path' in addr ? { path: addr.path } : { host: addr.host, port: addr.port },
        () => {
          server.off('error', reject);
          resolve();
        },
      );
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
    this.servers.push(server);
    const bound = server.address();
    const result: ListenAddress =
      bound && typeof bound === 'object'
        ? { host: bound.address, port: bound.port }
        : { path: (addr as { path: string }).path };
    this.log.info({ address: formatAddress(result) }, 'listening');
    return result;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Clients in transmission on one export (the "device is open" count). */
  clientsOf(exportName: string): number {
    let n = 0;
    for (const c of this.connections) if (c.exportName === exportName) n++;
    return n;
  }

  /** Cut every client of one export off at once; their requests in flight get no reply. */
  dropClientsOf(exportName: string, reason: string): number {
    let n = 0;
    for (const c of this.connections) {
      if (c.exportName !== exportName) continue;
      c.drop(reason);
      n++;
    }
    return n;
  }

  /** Stop listening, let connections finish what is in flight, then resolve. */
  async close(): Promise<void> {
    this.closing = true;
    // net.Server.close() calls back only once every connection is gone, so the listeners
    // stop first and the connections are told to finish before that callback is awaited.
    const stopped = this.servers.map(
      (s) => new Promise<void>((resolve) => s.close(() => resolve())),
    );
    const pending = [...this.connections];
    for (const c of pending) c.shutdown();
    await Promise.all(pending.map((c) => c.finished));
    await Promise.all(stopped);
  }

  private accept(socket: net.Socket): void {
    const id = this.nextId++;
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    const log = this.log.child({ conn: id, peer });
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.maxConnections) {
      log.warn(`connection refused: already ${this.connections.size} connections (the maximum)`);
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, this.exports, log, {
      handshakeTimeoutMs: this.handshakeTimeoutMs,
    });
    this.connections.add(conn);
    void conn.finished.then(() => this.connections.delete(conn));
    log.debug('connection accepted');
    conn.start();
  }
}

/**
 * A socket file left by a process that died is in the way of listen(). One that still
 * answers belongs to a live server, and taking it over would cut that server's clients off.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by another server`);
  fs.unlinkSync(path);
}
