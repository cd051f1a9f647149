/**
 * A READ or WRITE longer than the advertised maximum (from a client that never agreed to it)
 * reaches the target as several calls of at most MAX_PAYLOAD bytes each. Targets, and the
 * replication frames behind them, are then never asked for more than 32 MiB at once.
 */
import { MAX_PAYLOAD } from './constants.js';
import type { BlockTarget, Payload } from './target.js';

/** `data` cut into consecutive parts of at most `max` bytes each: views, nothing copied. */
export function splitPayload(data: Payload, max: number): Payload[] {
  const pieces = Buffer.isBuffer(data) ? [data] : data;
  const parts: Payload[] = [];
  let current: Buffer[] = [];
  let room = max;
  const close = (): void => {
    if (current.length > 0) parts.push(current.length === 1 ? current[0]! : current);
    current = [];
    room = max;
  };
  for (const piece of pieces) {
    let at = 0;
    while (at < piece.length) {
      const n = Math.min(room, piece.length - at);
      current.push(n === piece.length ? piece : piece.subarray(at, at + n));
      at += n;
      room -= n;
      if (room === 0) close();
    }
  }
  close();
  return parts;
}

export function readInParts(target: BlockTarget, buf: Buffer, offset: number): Promise<void> {
  if (buf.length <= MAX_PAYLOAD) return target.read(buf, offset);
  const ops: Promise<void>[] = [];
  for (let at = 0; at < buf.length; at += MAX_PAYLOAD) {
    ops.push(target.read(buf.subarray(at, at + MAX_PAYLOAD), offset + at));
  }
  return allSettled(ops);
}

export function writeInParts(
  target: BlockTarget,
  data: Payload,
  offset: number,
  fua: boolean,
): Promise<void> {
  const parts = splitPayload(data, MAX_PAYLOAD);
  if (parts.length <= 1) return target.write(data, offset, fua);
  const ops: Promise<void>[] = [];
  let at = offset;
  for (const part of parts) {
    ops.push(target.write(part, at, fua));
    at += Buffer.isBuffer(part) ? part.length : part.reduce((n, b) => n + b.length, 0);
  }
  return allSettled(ops);
}

/**
 * Resolves once every part has settled, rejecting with the first failure. Not Promise.all:
 * it would reject while other parts still use the buffer, which the server then reuses.
 */
async function allSettled(ops: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(ops);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
