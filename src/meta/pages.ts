/**
 * Bit arithmetic on persisted bitmap pages (raw 4096-byte buffers), for the store's dump and
 * for apply-al. Bit i of the device is bit (i % 8) of byte floor(i / 8) % 4096 of page
 * floor(i / 32768): little-endian bits, one per 4 KiB of data (drbd.md §3.3, §4.1).
 * (The in-memory working bitmap lives elsewhere; this file only reads and patches pages.)
 */

export const PAGE_BYTES = 4096;
export const BITS_PER_PAGE = PAGE_BYTES * 8;
export const BLOCK_BYTES = 4096;
/** Bitmap bits per 4 MiB activity-log extent. */
export const BITS_PER_EXTENT = 1024;

/** Bits of a device of `sizeBytes` bytes: one per started 4 KiB block. */
export function deviceBits(sizeBytes: number): number {
  return Math.ceil(sizeBytes / BLOCK_BYTES);
}

/** Pages needed for a device of `sizeBytes` bytes. */
export function devicePages(sizeBytes: number): number {
  return Math.ceil(deviceBits(sizeBytes) / BITS_PER_PAGE);
}

const POP = new Uint8Array(256);
for (let i = 1; i < 256; i++) POP[i] = (i & 1) + POP[i >> 1];

/** Set bits among bits [from, to) of `page` (page-relative bit numbers). */
export function countBits(page: Uint8Array, from = 0, to = BITS_PER_PAGE): number {
  let n = 0;
  let i = from;
  while (i < to && (i & 7) !== 0) {
    n += (page[i >> 3] >> (i & 7)) & 1;
    i++;
  }
  for (; i + 8 <= to; i += 8) n += POP[page[i >> 3]];
  for (; i < to; i++) n += (page[i >> 3] >> (i & 7)) & 1;
  return n;
}

/**
 * Sets bits [from, to) of `page` (page-relative) and returns how many were 0 before.
 */
export function setBits(page: Uint8Array, from: number, to: number): number {
  const before = countBits(page, from, to);
  let i = from;
  while (i < to && (i & 7) !== 0) {
    page[i >> 3] |= 1 << (i & 7);
    i++;
  }
  if (i + 8 <= to) {
    const end = (to >> 3) << 3;
    page.fill(0xff, i >> 3, end >> 3);
    i = end;
  }
  for (; i < to; i++) page[i >> 3] |= 1 << (i & 7);
  return to - from - before;
}

/** Clears bits [from, to) of `page` (page-relative). */
export function clearBits(page: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) page[i >> 3] &= ~(1 << (i & 7));
}

/**
 * Runs of set bits, as [startBit, endBitExclusive) in device bit numbers, over pages given in
 * ascending order; runs continue across page boundaries. Bits at or past `limitBits` are
 * ignored.
 */
export function setRanges(
  pages: Iterable<{ page: number; data: Uint8Array }>,
  limitBits: number,
): { ranges: Array<[number, number]>; count: number } {
  const ranges: Array<[number, number]> = [];
  let count = 0;
  let runStart = -1;
  let runEnd = -1;
  const close = (): void => {
    if (runStart >= 0) ranges.push([runStart, runEnd]);
    runStart = -1;
  };
  for (const { page, data } of pages) {
    const base = page * BITS_PER_PAGE;
    if (base >= limitBits) break;
    const bytes = Math.min(PAGE_BYTES, Math.ceil((limitBits - base) / 8));
    for (let b = 0; b < bytes; b++) {
      let v = data[b];
      const bitBase = base + b * 8;
      if (bitBase + 8 > limitBits) v &= (1 << (limitBits - bitBase)) - 1;
      if (v === 0) {
        if (runStart >= 0 && runEnd === bitBase) close();
        continue;
      }
      if (v === 0xff) {
        count += 8;
        if (runStart >= 0 && runEnd === bitBase) runEnd = bitBase + 8;
        else {
          close();
          runStart = bitBase;
          runEnd = bitBase + 8;
        }
        continue;
      }
      for (let k = 0; k < 8; k++) {
        const bit = bitBase + k;
        if ((v >> k) & 1) {
          count++;
          if (runStart >= 0 && runEnd === bit) runEnd = bit + 1;
          else {
            close();
            runStart = bit;
            runEnd = bit + 1;
          }
        }
      }
    }
  }
  close();
  return { ranges, count };
}
