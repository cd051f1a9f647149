import {
  NbdErr,
  OPTION_REPLY_MAGIC,
  REPLY_FLAG_DONE,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';

/** Encoders for what the server sends. Each returns one Buffer so a reply goes out whole. */

export function optionReply(option: number, type: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const buf = Buffer.allocUnsafe(20 + len);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(type, 12);
  buf.writeUInt32BE(len, 16);
  if (data) data.copy(buf, 20);
  return buf;
}

/**
 * The cookie is 8 opaque bytes (the kernel packs a counter and a tag into it); it is kept
 * as two 32-bit halves so it never passes through a lossy Number.
 */
export interface Cookie {
  hi: number;
  lo: number;
}

export function writeSimpleHeader(buf: Buffer, at: number, error: number, cookie: Cookie): void {
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  buf.writeUInt32BE(error, at + 4);
  buf.writeUInt32BE(cookie.hi, at + 8);
  buf.writeUInt32BE(cookie.lo, at + 12);
}

export function simpleReply(error: number, cookie: Cookie): Buffer {
  const buf = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
  writeSimpleHeader(buf, 0, error, cookie);
  return buf;
}

export function writeChunkHeader(
  buf: Buffer,
  at: number,
  flags: number,
  type: number,
  cookie: Cookie,
  length: number,
): void {
  buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeUInt32BE(cookie.hi, at + 8);
  buf.writeUInt32BE(cookie.lo, at + 12);
  buf.writeUInt32BE(length, at + 16);
}

/** A final NBD_REPLY_TYPE_ERROR chunk with a message for humans (qemu and libnbd show it). */
export function errorChunk(error: number, cookie: Cookie, message: string): Buffer {
  const msg = Buffer.from(message.slice(0, 1024), 'utf8');
  const buf = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 6 + msg.length);
  writeChunkHeader(buf, 0, REPLY_FLAG_DONE, ReplyType.ERROR, cookie, 6 + msg.length);
  buf.writeUInt32BE(error, STRUCTURED_HEADER_SIZE);
  buf.writeUInt16BE(msg.length, STRUCTURED_HEADER_SIZE + 4);
  msg.copy(buf, STRUCTURED_HEADER_SIZE + 6);
  return buf;
}

export function noneChunk(cookie: Cookie): Buffer {
  const buf = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE);
  writeChunkHeader(buf, 0, REPLY_FLAG_DONE, ReplyType.NONE, cookie, 0);
  return buf;
}

/** One block-status chunk: context id, then (length, flags) pairs. */
export function blockStatusChunk(
  cookie: Cookie,
  contextId: number,
  extents: ReadonlyArray<{ length: number; flags: number }>,
): Buffer {
  const len = 4 + extents.length * 8;
  const buf = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + len);
  writeChunkHeader(buf, 0, REPLY_FLAG_DONE, ReplyType.BLOCK_STATUS, cookie, len);
  buf.writeUInt32BE(contextId, STRUCTURED_HEADER_SIZE);
  let at = STRUCTURED_HEADER_SIZE + 4;
  for (const e of extents) {
    buf.writeUInt32BE(e.length, at);
    buf.writeUInt32BE(e.flags, at + 4);
    at += 8;
  }
  return buf;
}

/**
 * Map a target's errno name to the NBD error value. Anything unknown is EIO, the safe answer:
 * the kernel turns every error into EIO anyway, and qemu/libnbd report it as an I/O error.
 */
export function nbdErrorFor(code: string | undefined): number {
  switch (code) {
    case 'EPERM':
    case 'EROFS':
    case 'EACCES':
      return NbdErr.EPERM;
    case 'ENOMEM':
      return NbdErr.ENOMEM;
    case 'EINVAL':
      return NbdErr.EINVAL;
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return NbdErr.ENOSPC;
    case 'EOVERFLOW':
      return NbdErr.EOVERFLOW;
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return NbdErr.ENOTSUP;
    case 'ESHUTDOWN':
      return NbdErr.ESHUTDOWN;
    default:
      return NbdErr.EIO;
  }
}
