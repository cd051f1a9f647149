import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  CLIENT_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_OPTION_LENGTH,
  MAX_PAYLOAD,
  MAX_STRING,
  MIN_BLOCK,
  NBDMAGIC,
  Opt,
  PREFERRED_BLOCK,
  Rep,
} from './constants.js';
import { type ExportSpec, type ExportTable, transmissionFlags } from './exports.js';
import { parseMetaRequest, selectsAllocation } from './meta-context.js';
import { optionReply } from './wire.js';

/** The byte stream of one connection during option haggling. */
export interface HandshakeIO {
  /** Resolves with exactly `n` bytes; rejects if the connection ends first. */
  read(n: number): Promise<Buffer>;
  write(buf: Buffer): void;
}

/** What the client and server agreed on when transmission starts. */
export interface Session {
  export: ExportSpec;
  structuredReplies: boolean;
  /** base:allocation was selected for this export (BLOCK_STATUS allowed). */
  allocationContext: boolean;
  /**
   * The client asked for NBD_INFO_BLOCK_SIZE in GO, and so promised to keep within the sizes
   * we advertise. A client that did not (EXPORT_NAME, the kernel's GO) never heard of them.
   */
  blockSizes: boolean;
}

/** A violation after which the spec lets (or tells) the server hang up. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** The client asked to end the handshake (NBD_OPT_ABORT). */
export class ClientAbort extends Error {
  override name = 'ClientAbort';
}

export function greeting(): Buffer {
  const buf = Buffer.allocUnsafe(18);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return buf;
}

/** Option haggling for one client, fixed newstyle. Options are handled strictly in turn. */
export class Handshake {
  private structuredReplies = false;
  private noZeroes = false;
  /** Export name for which base:allocation was selected, if any. */
  private metaExport: string | undefined;

  constructor(
    private readonly io: HandshakeIO,
    private readonly exports: ExportTable,
  ) {}

  async run(): Promise<Session> {
    this.io.write(greeting());
    const clientFlags = (await this.io.read(4)).readUInt32BE(0);
    if (clientFlags & ~(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES)) {
      throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`);
    }
    this.noZeroes = (clientFlags & CLIENT_NO_ZEROES) !== 0;
    for (;;) {
      const header = await this.io.read(16);
      if (header.readBigUInt64BE(0) !== IHAVEOPT) {
        throw new ProtocolError('bad option magic');
      }
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > MAX_OPTION_LENGTH) {
        throw new ProtocolError(`option ${option} payload of ${length} bytes is too long`);
      }
      const data = length > 0 ? await this.io.read(length) : Buffer.alloc(0);
      const session = this.handleOption(option, data);
      if (session) return session;
    }
  }

  /** Returns a session when the option moves the client into transmission. */
  private handleOption(option: number, data: Buffer): Session | undefined {
    switch (option) {
      case Opt.EXPORT_NAME:
        return this.exportName(data);
      case Opt.ABORT:
        this.reply(option, Rep.ACK);
        throw new ClientAbort('client sent NBD_OPT_ABORT');
      case Opt.LIST:
        this.list(option, data);
        return undefined;
      case Opt.INFO:
      case Opt.GO:
        return this.infoOrGo(option, data);
      case Opt.STRUCTURED_REPLY:
        if (data.length !== 0) {
          this.error(option, Rep.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        } else {
          this.structuredReplies = true;
          this.reply(option, Rep.ACK);
        }
        return undefined;
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT:
        this.metaContext(option, data);
        return undefined;
      case Opt.STARTTLS:
        this.error(option, Rep.ERR_UNSUP, 'TLS is not supported by this server');
        return undefined;
      default:
        this.error(option, Rep.ERR_UNSUP, `option ${option} is not supported`);
        return undefined;
    }
  }

  private exportName(data: Buffer): Session {
    const name = data.toString('utf8');
    const spec = this.exports.lookup(name);
    // This option has no error reply: the only way to refuse is to hang up.
    if (!spec) throw new ProtocolError(`client asked for unknown export "${name}"`);
    const reason = spec.unavailable?.();
    if (reason !== undefined) throw new ProtocolError(`export "${spec.name}" refused: ${reason}`);
    const tail = this.noZeroes ? 0 : 124;
    const buf = Buffer.alloc(10 + tail);
    buf.writeBigUInt64BE(BigInt(spec.target.size), 0);
    buf.writeUInt16BE(transmissionFlags(spec, this.structuredReplies), 8);
    this.io.write(buf);
    return this.session(spec, false);
  }

  private list(option: number, data: Buffer): void {
    if (data.length !== 0) {
      this.error(option, Rep.ERR_INVALID, 'LIST takes no data');
      return;
    }
    for (const spec of this.exports.list()) {
      const name = Buffer.from(spec.name, 'utf8');
      const desc = Buffer.from(spec.description ?? '', 'utf8');
      const body = Buffer.allocUnsafe(4 + name.length + desc.length);
      body.writeUInt32BE(name.length, 0);
      name.copy(body, 4);
      desc.copy(body, 4 + name.length);
      this.reply(option, Rep.SERVER, body);
    }
    this.reply(option, Rep.ACK);
  }

  private infoOrGo(option: number, data: Buffer): Session | undefined {
    const parsed = parseInfoRequest(data);
    if (typeof parsed === 'string') {
      this.error(option, Rep.ERR_INVALID, parsed);
      return undefined;
    }
    const spec = this.exports.lookup(parsed.name);
    if (!spec) {
      this.error(option, Rep.ERR_UNKNOWN, `no export named "${parsed.name}"`);
      return undefined;
    }
    // The spec's meaning of ERR_UNKNOWN is "the requested export is not available"; the
    // message tells the admin why, and nbd-client / libnbd print it.
    const reason = spec.unavailable?.();
    if (reason !== undefined) {
      this.error(option, Rep.ERR_UNKNOWN, reason);
      return undefined;
    }
    const exportInfo = Buffer.allocUnsafe(12);
    exportInfo.writeUInt16BE(Info.EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(spec.target.size), 2);
    exportInfo.writeUInt16BE(transmissionFlags(spec, this.structuredReplies), 10);
    this.reply(option, Rep.INFO, exportInfo);
    for (const type of new Set(parsed.requests)) {
      const body = this.infoBody(type, spec);
      if (body) this.reply(option, Rep.INFO, body);
    }
    this.reply(option, Rep.ACK);
    // INFO may ask for the sizes without committing to them; only GO binds the client.
    if (option !== Opt.GO) return undefined;
    return this.session(spec, parsed.requests.includes(Info.BLOCK_SIZE));
  }

  private infoBody(type: number, spec: ExportSpec): Buffer | undefined {
    switch (type) {
      case Info.NAME:
        return infoString(Info.NAME, spec.name);
      case Info.DESCRIPTION:
        return spec.description ? infoString(Info.DESCRIPTION, spec.description) : undefined;
      case Info.BLOCK_SIZE: {
        const buf = Buffer.allocUnsafe(14);
        buf.writeUInt16BE(Info.BLOCK_SIZE, 0);
        buf.writeUInt32BE(MIN_BLOCK, 2);
        buf.writeUInt32BE(PREFERRED_BLOCK, 6);
        buf.writeUInt32BE(MAX_PAYLOAD, 10);
        return buf;
      }
      default:
        return undefined; // unknown info types are ignored, as the spec says
    }
  }

  private metaContext(option: number, data: Buffer): void {
    const set = option === Opt.SET_META_CONTEXT;
    // A SET replaces the earlier selection even when it fails, so it is dropped before any
    // error return below.
    if (set) this.metaExport = undefined;
    const parsed = parseMetaRequest(data);
    if (typeof parsed === 'string') {
      this.error(option, Rep.ERR_INVALID, parsed);
      return;
    }
    if (set && !this.structuredReplies) {
      this.error(option, Rep.ERR_INVALID, 'SET_META_CONTEXT needs structured replies first');
      return;
    }
    if (!this.exports.lookup(parsed.name)) {
      this.error(option, Rep.ERR_UNKNOWN, `no export named "${parsed.name}"`);
      return;
    }
    const matches = selectsAllocation(set ? 'set' : 'list', parsed.queries);
    if (set && matches) this.metaExport = parsed.name;
    if (matches) {
      const name = Buffer.from(BASE_ALLOCATION, 'utf8');
      const body = Buffer.allocUnsafe(4 + name.length);
      body.writeUInt32BE(set ? BASE_ALLOCATION_ID : 0, 0);
      name.copy(body, 4);
      this.reply(option, Rep.META_CONTEXT, body);
    }
    this.reply(option, Rep.ACK);
  }

  private session(spec: ExportSpec, blockSizes: boolean): Session {
    // A context selected for another export does not carry over (the spec resets it).
    const selected = this.metaExport !== undefined && this.exports.lookup(this.metaExport) === spec;
    return {
      export: spec,
      structuredReplies: this.structuredReplies,
      allocationContext: selected && this.structuredReplies && spec.target.extents !== undefined,
      blockSizes,
    };
  }

  private reply(option: number, type: number, data?: Buffer): void {
    this.io.write(optionReply(option, type, data));
  }

  private error(option: number, type: number, message: string): void {
    this.reply(option, type, Buffer.from(message, 'utf8'));
  }
}

function infoString(type: number, value: string): Buffer {
  const str = Buffer.from(value, 'utf8');
  const buf = Buffer.allocUnsafe(2 + str.length);
  buf.writeUInt16BE(type, 0);
  str.copy(buf, 2);
  return buf;
}

/** INFO/GO payload: u32 name length, name, u16 count, count × u16 info types. */
export function parseInfoRequest(data: Buffer): { name: string; requests: number[] } | string {
  if (data.length < 6) return 'INFO/GO data is too short';
  const nameLen = data.readUInt32BE(0);
  if (nameLen > MAX_STRING) return 'export name is too long';
  if (data.length < 4 + nameLen + 2) return 'INFO/GO data is too short for its name';
  const name = data.toString('utf8', 4, 4 + nameLen);
  const count = data.readUInt16BE(4 + nameLen);
  if (data.length !== 4 + nameLen + 2 + count * 2) return 'INFO/GO data length does not match';
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(data.readUInt16BE(4 + nameLen + 2 + i * 2));
  return { name, requests };
}
