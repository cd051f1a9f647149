/**
 * Run-length encoding of the dirty bitmap for the bitmap exchange (drbd.md §6.2): the bits
 * from a start bit on, as runs that alternate clear, set, clear, set... starting with a clear
 * run (0 long when the start bit is set). Each run length is an unsigned LEB128 varint: 7
 * bits per byte, low bits first, high bit set on every byte but the last.
 *
 * A chunk covers [firstBit, nextBit) exactly, trailing clear run included, so the receiver
 * can check that chunks join up: orBitmapRle() returns the bit after the last run, which
 * must be the next chunk's first bit, and totalBits after the last chunk.
 *
 * Runs are maximal: an encoder never writes a 0-long run except a leading clear one, and a
 * decoder refuses one anywhere else but at the very end (where it is harmless).
 */
import type { Bitmap } from '../meta/bitmap.js';

export class RleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RleError';
  }
}

/** Varint bytes for a 2^53 value: the most any run can take. */
const MAX_VARINT_BYTES = 8;

/** Bytes of the LEB128 encoding of v (a non-negative safe integer). */
export function varintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes v (a non-negative safe integer) as LEB128 at `at`; returns the end. */
export function writeVarint(buf: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}

/**
 * The smallest maxBytes that lets every chunk make progress: room for one clear run and one
 * set run of any length the bitmap can hold.
 */
export function minRleChunkBytes(totalBits: number): number {
  return 2 * varintLength(totalBits);
}

/**
 * Encodes the runs of `bitmap` from `firstBit` on, stopping before the encoding would exceed
 * `maxBytes` or at the end of the bitmap. `nextBit` is where the next chunk starts;
 * nextBit === bitmap.totalBits when the whole bitmap is covered. Walks runs with
 * nextSet/nextClear, so the cost follows the number of runs, not the number of bits.
 */
export function encodeBitmapRle(
  bitmap: Bitmap,
  firstBit: number,
  maxBytes: number,
): { rle: Buffer; nextBit: number } {
  const total = bitmap.totalBits;
  if (!Number.isSafeInteger(firstBit) || firstBit < 0 || firstBit > total) {
    throw new RangeError(`first bit ${firstBit} outside [0, ${total}]`);
  }
  const min = minRleChunkBytes(total);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < min) {
    throw new RangeError(
      `an RLE chunk of this bitmap needs at least ${min} bytes, got ${maxBytes}`,
    );
  }
  let buf = Buffer.allocUnsafe(Math.min(maxBytes, 4096));
  let len = 0;
  let pos = firstBit;
  /** Appends a varint if it fits in maxBytes; false if it does not. */
  const put = (v: number): boolean => {
    const n = varintLength(v);
    if (len + n > maxBytes) return false;
    if (len + n > buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(maxBytes, Math.max(buf.length * 2, len + n)));
      buf.copy(bigger, 0, 0, len);
      buf = bigger;
    }
    len = writeVarint(buf, len, v);
    return true;
  };
  while (pos < total) {
    const setStart = bitmap.nextSet(pos);
    if (!put(setStart - pos)) break;
    pos = setStart;
    if (pos >= total) break;
    const setEnd = bitmap.nextClear(pos);
    if (!put(setEnd - pos)) break; // ends after a clear run; the next chunk starts with a 0
    pos = setEnd;
  }
  // Hand out an exact-size copy when the scratch buffer is mostly empty.
  const rle = len * 2 < buf.length ? Buffer.from(buf.subarray(0, len)) : buf.subarray(0, len);
  return { rle, nextBit: pos };
}

/**
 * Decodes a chunk made by encodeBitmapRle() (runs starting at `firstBit`) and ORs its set
 * runs into `bitmap`. Returns the bit after the last run. The whole chunk is checked before
 * any bit is set, so a chunk that throws RleError leaves the bitmap as it was.
 */
export function orBitmapRle(bitmap: Bitmap, firstBit: number, rle: Uint8Array): number {
  const end = walkRuns(bitmap.totalBits, firstBit, rle, undefined);
  walkRuns(bitmap.totalBits, firstBit, rle, bitmap);
  return end;
}

function walkRuns(
  total: number,
  firstBit: number,
  rle: Uint8Array,
  bitmap: Bitmap | undefined,
): number {
  if (!Number.isSafeInteger(firstBit) || firstBit < 0 || firstBit > total) {
    throw new RleError(`RLE chunk starts at bit ${firstBit}, outside a ${total}-bit bitmap`);
  }
  let pos = firstBit;
  let at = 0;
  let set = false;
  let index = 0;
  while (at < rle.length) {
    // One varint.
    let v = 0;
    let scale = 1;
    let bytes = 0;
    for (;;) {
      if (at >= rle.length) {
        throw new RleError(`RLE chunk truncated inside the varint of run ${index}`);
      }
      if (bytes === MAX_VARINT_BYTES) {
        throw new RleError(`RLE run ${index} has a varint longer than ${MAX_VARINT_BYTES} bytes`);
      }
      const b = rle[at++]!;
      v += (b & 0x7f) * scale;
      scale *= 128;
      bytes++;
      if ((b & 0x80) === 0) break;
    }
    if (v > total - pos) {
      throw new RleError(
        `RLE run ${index} (${v} bits from bit ${pos}) runs past the ${total}-bit bitmap`,
      );
    }
    if (v === 0 && index !== 0 && at !== rle.length) {
      throw new RleError(`RLE run ${index} is empty and not the last one`);
    }
    if (set && v !== 0 && bitmap !== undefined) bitmap.setRange(pos, pos + v);
    pos += v;
    set = !set;
    index++;
  }
  return pos;
}
