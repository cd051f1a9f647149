import {
  Cmd,
  CmdFlag,
  MAX_PAYLOAD,
  MAX_UNNEGOTIATED_PAYLOAD,
  NbdErr,
  REQUEST_MAGIC,
} from './constants.js';
import type { TargetCapabilities } from './target.js';
import type { Cookie } from './wire.js';

/** One parsed request header. */
export interface Request {
  flags: number;
  type: number;
  cookie: Cookie;
  /** Exact below 2^53; anything larger is past every export's end, which is all we ask of it. */
  offset: number;
  length: number;
}

export function parseRequest(hdr: Buffer): Request | undefined {
  if (hdr.readUInt32BE(0) !== REQUEST_MAGIC) return undefined;
  return {
    flags: hdr.readUInt16BE(4),
    type: hdr.readUInt16BE(6),
    cookie: { hi: hdr.readUInt32BE(8), lo: hdr.readUInt32BE(12) },
    offset: hdr.readUInt32BE(16) * 0x100000000 + hdr.readUInt32BE(20),
    length: hdr.readUInt32BE(24),
  };
}

/** What a request is checked against. */
export interface ExportView {
  size: number;
  readOnly: boolean;
  caps: TargetCapabilities;
  structuredReplies: boolean;
  allocationContext: boolean;
  /** The client agreed to the advertised block sizes (see Session.blockSizes). */
  blockSizes: boolean;
}

export interface Rejection {
  error: number;
  message: string;
}

const NAMES: Record<number, string> = {
  [Cmd.READ]: 'READ',
  [Cmd.WRITE]: 'WRITE',
  [Cmd.DISC]: 'DISC',
  [Cmd.FLUSH]: 'FLUSH',
  [Cmd.TRIM]: 'TRIM',
  [Cmd.CACHE]: 'CACHE',
  [Cmd.WRITE_ZEROES]: 'WRITE_ZEROES',
  [Cmd.BLOCK_STATUS]: 'BLOCK_STATUS',
};

export function commandName(type: number): string {
  return NAMES[type] ?? `command ${type}`;
}

/** Flags each command may carry. FUA is accepted on every command, as the spec asks. */
function allowedFlags(type: number, v: ExportView): number {
  switch (type) {
    case Cmd.READ:
      return CmdFlag.FUA | (v.structuredReplies ? CmdFlag.DF : 0);
    case Cmd.WRITE_ZEROES:
      return CmdFlag.FUA | CmdFlag.NO_HOLE | (v.caps.fastZero ? CmdFlag.FAST_ZERO : 0);
    case Cmd.BLOCK_STATUS:
      return CmdFlag.FUA | CmdFlag.REQ_ONE;
    default:
      return CmdFlag.FUA;
  }
}

/**
 * The validate step: a pure check of a request against the export, before anything touches
 * the target. Returns why it must be refused, or undefined when it may go ahead.
 */
export function validate(req: Request, v: ExportView): Rejection | undefined {
  const name = commandName(req.type);
  const reject = (error: number, why: string): Rejection => ({
    error,
    message: `${name}: ${why}`,
  });
  if (!(req.type in NAMES)) return reject(NbdErr.EINVAL, 'unknown command');
  const extra = req.flags & ~allowedFlags(req.type, v);
  if (extra) return reject(NbdErr.EINVAL, `flags 0x${extra.toString(16)} are not valid here`);
  const writes = req.type === Cmd.WRITE || req.type === Cmd.TRIM || req.type === Cmd.WRITE_ZEROES;
  if (writes && v.readOnly) return reject(NbdErr.EPERM, 'the export is read-only');
  switch (req.type) {
    case Cmd.TRIM:
      if (!v.caps.trim) return reject(NbdErr.EINVAL, 'not supported by this export');
      break;
    case Cmd.WRITE_ZEROES:
      if (!v.caps.zero) return reject(NbdErr.EINVAL, 'not supported by this export');
      break;
    case Cmd.CACHE:
      if (!v.caps.cache) return reject(NbdErr.EINVAL, 'not supported by this export');
      break;
    case Cmd.FLUSH:
      if (!v.caps.flush) return reject(NbdErr.EINVAL, 'not supported by this export');
      if (req.offset !== 0 || req.length !== 0) {
        return reject(NbdErr.EINVAL, 'offset and length must be 0');
      }
      return undefined;
    case Cmd.BLOCK_STATUS:
      if (!v.allocationContext) return reject(NbdErr.EINVAL, 'no metadata context was selected');
      if (req.length === 0) return reject(NbdErr.EINVAL, 'length must not be 0');
      break;
    case Cmd.DISC:
      return undefined;
  }
  if (req.type === Cmd.READ || req.type === Cmd.WRITE) {
    const tooLong = lengthRule(req, v);
    if (tooLong) return reject(tooLong.error, tooLong.message);
  }
  if (req.offset + req.length > v.size) {
    const past = req.type === Cmd.WRITE || req.type === Cmd.WRITE_ZEROES;
    return reject(past ? NbdErr.ENOSPC : NbdErr.EINVAL, 'range goes past the end of the export');
  }
  return undefined;
}

/** The longest READ or WRITE this client may send. */
export function payloadLimit(v: Pick<ExportView, 'blockSizes'>): number {
  return v.blockSizes ? MAX_PAYLOAD : MAX_UNNEGOTIATED_PAYLOAD;
}

/**
 * Length limits of READ and WRITE. A client that agreed to our block sizes gets the 32 MiB it
 * was told; one that never heard of them gets more (payloadLimit). An oversized READ answered
 * with chunks is EOVERFLOW, the spec's hint to retry smaller; without chunks there is only the
 * traditional EINVAL (the spec keeps EOVERFLOW for chunked reads and payload-less commands).
 * A "don't fragment" READ must fit one chunk, and chunks stay within the advertised 32 MiB.
 */
function lengthRule(req: Request, v: ExportView): Rejection | undefined {
  const limit = payloadLimit(v);
  const over = (error: number, max: number): Rejection => ({
    error,
    message: `length ${req.length} is over the ${max}-byte maximum`,
  });
  if (req.type === Cmd.WRITE) return req.length > limit ? over(NbdErr.EINVAL, limit) : undefined;
  if (!v.structuredReplies) return req.length > limit ? over(NbdErr.EINVAL, limit) : undefined;
  if (req.flags & CmdFlag.DF && req.length > MAX_PAYLOAD)
    return over(NbdErr.EOVERFLOW, MAX_PAYLOAD);
  return req.length > limit ? over(NbdErr.EOVERFLOW, limit) : undefined;
}
