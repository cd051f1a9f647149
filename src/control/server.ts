import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { removeStaleSocket } from '../nbd/index.js';
import type { EventHub } from './events.js';
import { type ControlFailure, type ControlRequest, MAX_LINE, toJsonLine } from './protocol.js';

/** Runs one request; throws an Error with `exitCode` and `code` to refuse it. */
export type RequestHandler = (req: ControlRequest) => Promise<unknown>;

/**
 * The control socket: accepts urbdadm connections, reads JSON request lines, answers each
 * with one reply line. Garbage gets an error reply (or the connection dropped when it is
 * not even lines), never an exception that reaches the daemon.
 */
export class ControlServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly handler: RequestHandler,
    private readonly events: EventHub,
    private readonly log: Logger,
  ) {
    this.server = net.createServer((s) => this.accept(s));
  }

  async listen(socketPath: string): Promise<void> {
    try {
      await removeStaleSocket(socketPath);
    } catch (err) {
      throw new Error(
        `${socketPath}: ${(err as Error).message} (is another urbd running with this --run-dir?)`,
      );
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ path: socketPath }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    // Anyone who can connect can demote or detach: the socket is root's alone.
    fs.chmodSync(socketPath, 0o600);
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'control socket error'));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = '';
    let streaming = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      if (streaming) return; // an events listener has nothing more to say
      pending += chunk;
      if (pending.length > MAX_LINE && !pending.includes('\n')) {
        this.log.warn('control client sent an over-long line; dropped');
        socket.destroy();
        return;
      }
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line.length === 0) continue;
        const req = parseRequest(line);
        if ('error' in req) {
          write(socket, { id: null, ok: false, error: req.error });
          continue;
        }
        if (req.cmd === 'events') {
          streaming = true;
          this.stream(socket, req);
          return;
        }
        void this.run(socket, req);
      }
    });
  }

  private async run(socket: net.Socket, req: ControlRequest): Promise<void> {
    try {
      const result = await this.handler(req);
      write(socket, { id: req.id, ok: true, result: result ?? null });
    } catch (err) {
      write(socket, { id: req.id, ok: false, error: failureOf(err) });
    }
  }

  private stream(socket: net.Socket, req: ControlRequest): void {
    const only = req.resource;
    const send = (e: { fields: Record<string, unknown> }): void => {
      if (only !== undefined && only !== 'all' && e.fields.name !== only) return;
      write(socket, { event: e });
    };
    const statistics = req.args?.statistics === true;
    write(socket, { id: req.id, ok: true, result: 'streaming' });
    for (const e of this.events.snapshot(statistics)) send(e);
    // drbdsetup events2 marks the end of the initial state with "exists -".
    write(socket, {
      event: { kind: 'exists', object: '-', fields: {}, time: new Date().toISOString() },
    });
    if (req.args?.now === true) {
      socket.end();
      return;
    }
    const unsubscribe = this.events.subscribe(send, statistics);
    socket.on('close', unsubscribe);
  }
}

function write(socket: net.Socket, value: unknown): void {
  if (!socket.destroyed && socket.writable) socket.write(toJsonLine(value));
}

function parseRequest(line: string): ControlRequest | { error: ControlFailure } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { error: { code: 'EPROTO', message: 'request is not JSON', exit: 20 } };
  }
  if (typeof v !== 'object' || v === null) {
    return { error: { code: 'EPROTO', message: 'request is not a JSON object', exit: 20 } };
  }
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'number' || typeof r.cmd !== 'string') {
    return {
      error: { code: 'EPROTO', message: 'request needs a numeric "id" and a "cmd"', exit: 20 },
    };
  }
  if (r.resource !== undefined && typeof r.resource !== 'string') {
    return { error: { code: 'EPROTO', message: '"resource" must be a string', exit: 20 } };
  }
  if (r.args !== undefined && (typeof r.args !== 'object' || r.args === null)) {
    return { error: { code: 'EPROTO', message: '"args" must be an object', exit: 20 } };
  }
  return r as unknown as ControlRequest;
}

/** Errors become replies: known refusals keep their code and exit, anything else is exit 10. */
export function failureOf(err: unknown): ControlFailure {
  const e = err as { code?: unknown; exitCode?: unknown; message?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : 'ERR_FAILED',
    message: typeof e.message === 'string' ? e.message : String(err),
    exit: typeof e.exitCode === 'number' ? e.exitCode : 10,
  };
}
