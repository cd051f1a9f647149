import type { Extent } from '../nbd/target.js';
import type { NativeBinding } from './native.js';

/** Enough to describe a heavily fragmented request; the NBD client asks again for the rest. */
export const MAX_EXTENTS = 1024;

/**
 * Map [offset, end) by alternating SEEK_DATA/SEEK_HOLE. Holes read as zeroes; data is not known
 * to be zero. Stops early after `limit` extents, which the protocol allows as long as the
 * start is covered.
 */
export function walkExtents(
  binding: Pick<NativeBinding, 'seekData' | 'seekHole'>,
  fd: number,
  offset: number,
  end: number,
  limit = MAX_EXTENTS,
): Extent[] {
  const extents: Extent[] = [];
  let pos = offset;
  while (pos < end && extents.length < limit) {
    const data = binding.seekData(fd, pos);
    if (data === -1 || data > pos) {
      // -1: no data at or after pos, so the rest of the file (within size) is a hole.
      const holeEnd = data === -1 ? end : Math.min(data, end);
      extents.push({ length: holeEnd - pos, hole: true, zero: true });
      pos = holeEnd;
      continue;
    }
    const hole = binding.seekHole(fd, pos);
    // -1 (pos past EOF) or a hole at pos contradicts the SEEK_DATA just made, so the file
    // changed under us; calling it data to the end is safe and ends the walk.
    const dataEnd = hole === -1 || hole <= pos ? end : Math.min(hole, end);
    extents.push({ length: dataEnd - pos, hole: false, zero: false });
    pos = dataEnd;
  }
  return extents;
}
