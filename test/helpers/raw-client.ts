/**
 * A deliberately permissive NBD client on a bare socket. libnbd refuses to send malformed
 * handshakes, bad magic, unknown flags or truncated payloads, so this is the probe for the
 * server's handling of hostile or broken peers. It validates nothing it does not have to:
 * every field is under the caller's control and every reply is returned raw.
 */
import net from 'node:net';

// The wire numbers are the server's own (src/nbd/constants.ts), under the names the tests use:
// written twice they could only drift apart. The real clients in the other tests (qemu,
// libnbd) are what would catch a wrong number.
import {
  Cmd,
  CmdFlag,
  Info,
  NbdErr,
  Opt,
  Rep,
  ReplyType,
  TFlag,
  CLIENT_FIXED_NEWSTYLE as FLAG_C_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES as FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  NBDMAGIC,
  OPTION_REPLY_MAGIC as OPT_REPLY_MAGIC,
  REPLY_FLAG_DONE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/constants.js';

export {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  NBDMAGIC,
  OPT_REPLY_MAGIC,
  REPLY_FLAG_DONE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
};
export const OPT = Opt;
export const REP = Rep;
export const INFO = Info;
export const TFLAG = TFlag;
export const CMD = Cmd;
export const CMD_FLAG = CmdFlag;
export const REPLY_TYPE = ReplyType;
export const NBD_EPERM = NbdErr.EPERM;
export const NBD_EIO = NbdErr.EIO;
export const NBD_EINVAL = NbdErr.EINVAL;
export const NBD_ENOSPC = NbdErr.ENOSPC;
export const NBD_EOVERFLOW = NbdErr.EOVERFLOW;
export const NBD_ENOTSUP = NbdErr.ENOTSUP;

/** Raised when the peer closes (or resets) before the bytes a read asked for arrived. */
export class PeerClosedError extends Error {
  constructor(
    readonly wanted: number,
    readonly got: number,
    readonly reason?: string,
  ) {
    super(`connection closed after ${got}/${wanted} bytes${reason ? ` (${reason})` : ''}`);
    this.name = 'PeerClosedError';
  }
}

export class ReadTimeoutError extends Error {
  constructor(
    readonly wanted: number,
    readonly got: number,
    ms: number,
  ) {
    super(`timed out after ${ms} ms with ${got}/${wanted} bytes`);
    this.name = 'ReadTimeoutError';
  }
}

export interface OptionReply {
  magic: bigint;
  option: number;
  type: number;
  data: Buffer;
}

export interface ExportInfo {
  size: bigint;
  flags: number;
  blockSize?: { min: number; preferred: number; max: number };
  name?: string;
  description?: string;
  replies: OptionReply[];
}

export interface Request {
  magic?: number;
  flags?: number;
  type: number;
  cookie?: bigint;
  offset?: bigint | number;
  length: number;
  /** Sent right after the header, whatever `length` says: short payloads are on purpose. */
  payload?: Buffer;
}

export interface SimpleReply {
  kind: 'simple';
  magic: number;
  error: number;
  cookie: bigint;
  data?: Buffer;
}

export interface StructuredChunk {
  kind: 'chunk';
  flags: number;
  type: number;
  cookie: bigint;
  payload: Buffer;
}

export type Reply = SimpleReply | StructuredChunk;

export type Endpoint = { host: string; port: number } | { path: string };

/** Accepts 'nbd://127.0.0.1:PORT[/...]' as well as an explicit endpoint. */
export function endpointOf(target: string | Endpoint): Endpoint {
  if (typeof target !== 'string') return target;
  const u = new URL(target);
  if (u.protocol === 'nbd:') return { host: u.hostname, port: Number(u.port || 10809) };
  const socket = u.searchParams.get('socket');
  if (u.protocol === 'nbd+unix:' && socket) return { path: socket };
  throw new Error(`unsupported NBD address ${target}`);
}

export class RawNbdClient {
  readonly socket: net.Socket;
  /** Bytes received and not yet consumed. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private endError: Error | undefined;
  private waiter: (() => void) | undefined;
  readonly closed: Promise<void>;
  /** Filled once `handshake()` has seen the server's flags. */
  handshakeFlags = 0;
  noZeroes = false;
  structuredReplies = false;
  private nextCookie = 1n;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    // A reset after our own destroy() or the server's hard close is expected; keep it as
    // the reason pending reads fail instead of letting it crash the test process.
    socket.on('error', (e) => {
      this.endError ??= e;
      this.ended = true;
      this.wake();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static connect(target: string | Endpoint, timeoutMs = 5000): Promise<RawNbdClient> {
    const ep = endpointOf(target);
    return new Promise((resolve, reject) => {
      const socket = 'path' in ep ? net.connect(ep.path) : net.connect(ep.port, ep.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawNbdClient(socket));
      });
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get available(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Exactly n bytes, or PeerClosedError / ReadTimeoutError. */
  async readExact(n: number, timeoutMs = 10000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered < n) {
      if (this.ended) throw new PeerClosedError(n, this.buffered, this.endError?.message);
      const left = deadline - Date.now();
      if (left <= 0) throw new ReadTimeoutError(n, this.buffered, timeoutMs);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.take(n);
  }

  /**
   * Resolves true once the server has closed the connection (EOF or reset) within the time
   * limit, false if it is still open. Any bytes that arrive meanwhile are kept in `leftover`.
   */
  async waitForClose(timeoutMs = 5000): Promise<{ closed: boolean; leftover: Buffer }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return { closed: this.ended, leftover: this.take(this.buffered) };
  }

  write(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(buf, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Drop the connection without any goodbye (RST if data is unread). */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- handshake -------------------------------------------------------------------------

  async readGreeting(
    timeoutMs = 10000,
  ): Promise<{ magic: bigint; optMagic: bigint; flags: number }> {
    const b = await this.readExact(18, timeoutMs);
    const greeting = {
      magic: b.readBigUInt64BE(0),
      optMagic: b.readBigUInt64BE(8),
      flags: b.readUInt16BE(16),
    };
    this.handshakeFlags = greeting.flags;
    return greeting;
  }

  async sendClientFlags(flags: number): Promise<void> {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags >>> 0);
    this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
    await this.write(b);
  }

  /** Greeting plus client flags; by default echoes the fixed-newstyle and no-zeroes bits offered. */
  async handshake(clientFlags?: number): Promise<number> {
    const g = await this.readGreeting();
    if (g.magic !== NBDMAGIC || g.optMagic !== IHAVEOPT) {
      throw new Error(
        `not a fixed-newstyle server: ${g.magic.toString(16)} ${g.optMagic.toString(16)}`,
      );
    }
    await this.sendClientFlags(clientFlags ?? g.flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    return g.flags;
  }

  /** `declaredLength` lets a test lie about the payload size. */
  async sendOption(
    option: number,
    data: Buffer = Buffer.alloc(0),
    declaredLength?: number,
  ): Promise<void> {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE((declaredLength ?? data.length) >>> 0, 12);
    await this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(timeoutMs = 10000): Promise<OptionReply> {
    const h = await this.readExact(20, timeoutMs);
    const reply: OptionReply = {
      magic: h.readBigUInt64BE(0),
      option: h.readUInt32BE(8),
      type: h.readUInt32BE(12),
      data: Buffer.alloc(0),
    };
    if (reply.magic !== OPT_REPLY_MAGIC) {
      throw new Error(`bad option reply magic 0x${reply.magic.toString(16)}`);
    }
    const len = h.readUInt32BE(16);
    if (len > 0) reply.data = await this.readExact(len, timeoutMs);
    return reply;
  }

  /** Replies up to and including the first one that is not an INFO/SERVER/META_CONTEXT. */
  async readOptionReplies(timeoutMs = 10000): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply(timeoutMs);
      out.push(r);
      if (r.type !== REP.INFO && r.type !== REP.SERVER && r.type !== REP.META_CONTEXT) return out;
    }
  }

  static infoPayload(name: string, infos: number[]): Buffer {
    const n = Buffer.from(name, 'utf8');
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((v, i) => b.writeUInt16BE(v, 6 + n.length + 2 * i));
    return b;
  }

  static parseInfo(replies: OptionReply[]): ExportInfo {
    const info: ExportInfo = { size: -1n, flags: -1, replies };
    for (const r of replies) {
      if (r.type !== REP.INFO) continue;
      const kind = r.data.readUInt16BE(0);
      if (kind === INFO.EXPORT) {
        info.size = r.data.readBigUInt64BE(2);
        info.flags = r.data.readUInt16BE(10);
      } else if (kind === INFO.BLOCK_SIZE) {
        info.blockSize = {
          min: r.data.readUInt32BE(2),
          preferred: r.data.readUInt32BE(6),
          max: r.data.readUInt32BE(10),
        };
      } else if (kind === INFO.NAME) {
        info.name = r.data.subarray(2).toString('utf8');
      } else if (kind === INFO.DESCRIPTION) {
        info.description = r.data.subarray(2).toString('utf8');
      }
    }
    return info;
  }

  /** NBD_OPT_INFO or NBD_OPT_GO; returns the raw replies, parsed. Check `.replies.at(-1).type`. */
  async optInfoOrGo(
    option: number,
    name = '',
    infos: number[] = [INFO.BLOCK_SIZE],
  ): Promise<ExportInfo> {
    await this.sendOption(option, RawNbdClient.infoPayload(name, infos));
    return RawNbdClient.parseInfo(await this.readOptionReplies());
  }

  /** GO that must succeed; throws with the reply type otherwise. */
  async go(name = '', infos: number[] = [INFO.BLOCK_SIZE]): Promise<ExportInfo> {
    const info = await this.optInfoOrGo(OPT.GO, name, infos);
    const last = info.replies.at(-1)!;
    if (last.type !== REP.ACK) {
      throw new Error(
        `GO '${name}' failed: reply 0x${last.type.toString(16)} ${last.data.toString()}`,
      );
    }
    return info;
  }

  async optList(): Promise<{
    exports: { name: string; description: string }[];
    final: OptionReply;
  }> {
    await this.sendOption(OPT.LIST);
    const replies = await this.readOptionReplies();
    const exports = replies
      .filter((r) => r.type === REP.SERVER)
      .map((r) => {
        const len = r.data.readUInt32BE(0);
        return {
          name: r.data.subarray(4, 4 + len).toString('utf8'),
          description: r.data.subarray(4 + len).toString('utf8'),
        };
      });
    return { exports, final: replies.at(-1)! };
  }

  async optStructuredReply(): Promise<OptionReply> {
    await this.sendOption(OPT.STRUCTURED_REPLY);
    const r = await this.readOptionReply();
    if (r.type === REP.ACK) this.structuredReplies = true;
    return r;
  }

  /** SET_META_CONTEXT (or LIST_META_CONTEXT); returns context name → id and the final reply. */
  async optMetaContext(
    option: number,
    name: string,
    queries: string[],
  ): Promise<{ contexts: Map<string, number>; final: OptionReply }> {
    const n = Buffer.from(name, 'utf8');
    const parts = [Buffer.alloc(4), n, Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(n.length);
    parts[2]!.writeUInt32BE(queries.length);
    for (const q of queries) {
      const qb = Buffer.from(q, 'utf8');
      const l = Buffer.alloc(4);
      l.writeUInt32BE(qb.length);
      parts.push(l, qb);
    }
    await this.sendOption(option, Buffer.concat(parts));
    const replies = await this.readOptionReplies();
    const contexts = new Map<string, number>();
    for (const r of replies) {
      if (r.type === REP.META_CONTEXT)
        contexts.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
    }
    return { contexts, final: replies.at(-1)! };
  }

  /** Old-style entry into transmission: no reply header; 10 or 134 bytes follow on success. */
  async exportName(name: string): Promise<{ size: bigint; flags: number; padding: Buffer }> {
    await this.sendOption(OPT.EXPORT_NAME, Buffer.from(name, 'utf8'));
    const b = await this.readExact(10);
    const padding = this.noZeroes ? Buffer.alloc(0) : await this.readExact(124);
    return { size: b.readBigUInt64BE(0), flags: b.readUInt16BE(8), padding };
  }

  // ---- transmission ----------------------------------------------------------------------

  static encodeRequest(req: Request): Buffer {
    const h = Buffer.alloc(28);
    h.writeUInt32BE((req.magic ?? REQUEST_MAGIC) >>> 0, 0);
    h.writeUInt16BE(req.flags ?? 0, 4);
    h.writeUInt16BE(req.type, 6);
    h.writeBigUInt64BE(req.cookie ?? 0n, 8);
    h.writeBigUInt64BE(BigInt(req.offset ?? 0), 16);
    h.writeUInt32BE(req.length >>> 0, 24);
    return req.payload ? Buffer.concat([h, req.payload]) : h;
  }

  /** Sends one request; returns the cookie used (a fresh one unless the caller chose it). */
  async send(req: Request): Promise<bigint> {
    const cookie = req.cookie ?? this.nextCookie++;
    await this.write(RawNbdClient.encodeRequest({ ...req, cookie }));
    return cookie;
  }

  /**
   * One reply of either kind. `dataLength` says how many payload bytes follow a successful
   * simple reply for a given cookie (READ); it is needed because the wire does not say.
   */
  async readReply(
    dataLength: (cookie: bigint) => number = () => 0,
    timeoutMs = 10000,
  ): Promise<Reply> {
    const m = await this.readExact(4, timeoutMs);
    const magic = m.readUInt32BE(0);
    if (magic === STRUCTURED_REPLY_MAGIC) {
      const h = await this.readExact(16, timeoutMs);
      const len = h.readUInt32BE(12);
      return {
        kind: 'chunk',
        flags: h.readUInt16BE(0),
        type: h.readUInt16BE(2),
        cookie: h.readBigUInt64BE(4),
        payload: len > 0 ? await this.readExact(len, timeoutMs) : Buffer.alloc(0),
      };
    }
    const h = await this.readExact(12, timeoutMs);
    const reply: SimpleReply = {
      kind: 'simple',
      magic,
      error: h.readUInt32BE(0),
      cookie: h.readBigUInt64BE(4),
    };
    if (magic !== SIMPLE_REPLY_MAGIC) return reply;
    const n = reply.error === 0 ? dataLength(reply.cookie) : 0;
    if (n > 0) reply.data = await this.readExact(n, timeoutMs);
    return reply;
  }

  /** A simple reply without data; throws if a structured chunk or bad magic arrives. */
  async readSimpleReply(dataLength = 0, timeoutMs = 10000): Promise<SimpleReply> {
    const r = await this.readReply(() => dataLength, timeoutMs);
    if (r.kind !== 'simple' || r.magic !== SIMPLE_REPLY_MAGIC) {
      throw new Error(`expected a simple reply, got ${JSON.stringify(describeReply(r))}`);
    }
    return r;
  }

  /** Sends a command without payload and returns its NBD error (0 = success). */
  async command(type: number, offset: bigint | number, length: number, flags = 0): Promise<number> {
    const cookie = await this.send({ type, offset, length, flags });
    return (await this.collect(cookie, offset, length, false)).error;
  }

  async writeData(offset: bigint | number, data: Buffer, flags = 0): Promise<number> {
    const cookie = await this.send({
      type: CMD.WRITE,
      offset,
      length: data.length,
      flags,
      payload: data,
    });
    return (await this.collect(cookie, offset, 0, false)).error;
  }

  /** READ; with structured replies the chunks are reassembled (holes as zeroes). */
  async readData(
    offset: bigint | number,
    length: number,
    flags = 0,
  ): Promise<{ error: number; data?: Buffer; chunks: Reply[] }> {
    const cookie = await this.send({ type: CMD.READ, offset, length, flags });
    return this.collect(cookie, offset, length, true);
  }

  private async collect(
    cookie: bigint,
    offset: bigint | number,
    length: number,
    isRead: boolean,
  ): Promise<{ error: number; data?: Buffer; chunks: Reply[] }> {
    const chunks: Reply[] = [];
    const data = Buffer.alloc(isRead ? length : 0);
    let error = 0;
    for (;;) {
      const r = await this.readReply((c) => (c === cookie && isRead ? length : 0));
      chunks.push(r);
      if (r.cookie !== cookie)
        throw new Error(`reply for unexpected cookie ${r.cookie} (want ${cookie})`);
      if (r.kind === 'simple') {
        if (r.magic !== SIMPLE_REPLY_MAGIC)
          throw new Error(`bad reply magic 0x${r.magic.toString(16)}`);
        error = r.error;
        if (r.data) r.data.copy(data);
        break;
      }
      const base = BigInt(offset);
      if (r.type === REPLY_TYPE.OFFSET_DATA) {
        const at = Number(r.payload.readBigUInt64BE(0) - base);
        r.payload.subarray(8).copy(data, at);
      } else if (r.type === REPLY_TYPE.OFFSET_HOLE) {
        const at = Number(r.payload.readBigUInt64BE(0) - base);
        data.fill(0, at, at + r.payload.readUInt32BE(8));
      } else if (r.type === REPLY_TYPE.ERROR || r.type === REPLY_TYPE.ERROR_OFFSET) {
        error ||= r.payload.readUInt32BE(0);
      }
      if (r.flags & REPLY_FLAG_DONE) break;
    }
    return error === 0 && isRead ? { error, data, chunks } : { error, chunks };
  }

  /** Polite disconnect: DISC, then wait for the server to close. */
  async disconnect(timeoutMs = 5000): Promise<boolean> {
    if (!this.ended) {
      try {
        await this.send({ type: CMD.DISC, length: 0 });
      } catch {
        // already gone
      }
    }
    const { closed } = await this.waitForClose(timeoutMs);
    this.socket.destroy();
    return closed;
  }
}

/** Compact form of a reply for assertion messages. */
export function describeReply(r: Reply): Record<string, unknown> {
  if (r.kind === 'simple') {
    return { kind: r.kind, magic: r.magic.toString(16), error: r.error, cookie: String(r.cookie) };
  }
  return {
    kind: r.kind,
    flags: r.flags,
    type: r.type,
    cookie: String(r.cookie),
    length: r.payload.length,
  };
}

/** Connect, handshake, GO into transmission. */
export async function openExport(
  target: string | Endpoint,
  name = '',
  opts: { structuredReplies?: boolean; metaContexts?: string[] } = {},
): Promise<{ client: RawNbdClient; info: ExportInfo; contexts: Map<string, number> }> {
  const client = await RawNbdClient.connect(target);
  try {
    await client.handshake();
    let contexts = new Map<string, number>();
    if (opts.structuredReplies) {
      const r = await client.optStructuredReply();
      if (r.type !== REP.ACK) throw new Error(`STRUCTURED_REPLY refused: 0x${r.type.toString(16)}`);
      if (opts.metaContexts?.length) {
        contexts = (await client.optMetaContext(OPT.SET_META_CONTEXT, name, opts.metaContexts))
          .contexts;
      }
    }
    const info = await client.go(name);
    return { client, info, contexts };
  } catch (e) {
    client.destroy();
    throw e;
  }
}
