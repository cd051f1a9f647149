/**
 * apply-al (drbd.md §4.5): after an unclean stop, fold the activity log into the on-disk
 * bitmap so the extents that may have had writes in flight get resynced.
 *
 * Our log is a table rather than DRBD's ring of transactions, so "replay" is reading it. Then,
 * in one durable transaction:
 *  - if primary-indicator is set (this node was Primary, or its peer a diskless Primary),
 *    every bit of every active extent is set in the stored bitmap pages (1024 bits per 4 MiB
 *    extent, clipped to the device);
 *  - al-disabled with primary-indicator means the log was not kept: full-sync is flagged;
 *  - crashed-primary is set when primary-indicator is (K84 `drbd_adm_attach`), and a flag
 *    already set stays: a crashed Primary that crashes again, as Secondary, before its crash
 *    was dealt with still owes the peer its old tail (the flag is cleared only by the
 *    daemon, when a connection has both disks UpToDate; states.ts crashDealtWith);
 *  - the log is emptied, al-clean set and the clean marker restored.
 * A store that is clean with al-clean set is left alone.
 */
import { BITS_PER_EXTENT, BITS_PER_PAGE, deviceBits, PAGE_BYTES, setBits } from './pages.js';
import type { MetaStore } from './store.js';

export interface ApplyAlResult {
  /** false: the store was clean, nothing changed. */
  applied: boolean;
  /** The extents that were in the log, ascending (empty when nothing was applied). */
  extents: number[];
  /** Bits that went from 0 to 1 (0 unless primary-indicator was set). */
  bitsSet: number;
  crashedPrimary: boolean;
  /** full-sync was set because the log had been disabled. */
  fullSync: boolean;
}

/** No options yet (drbdmeta's apply-al has none either). */
export type ApplyAlOptions = Record<string, never>;

/**
 * crashed-primary after a crash (K84 `drbd_adm_attach`): set when the node was Primary (or
 * the peer a diskless Primary), kept when already set.
 */
export function crashedPrimaryAfterCrash(flags: {
  primaryIndicator: boolean;
  crashedPrimary: boolean;
}): boolean {
  return flags.primaryIndicator || flags.crashedPrimary;
}

export function applyAl(store: MetaStore, _opts: ApplyAlOptions = {}): ApplyAlResult {
  const sb = store.superblock();
  if (sb.clean && sb.flags.alClean) {
    return {
      applied: false,
      extents: [],
      bitsSet: 0,
      crashedPrimary: sb.flags.crashedPrimary,
      fullSync: false,
    };
  }
  const extents = store
    .readAl()
    .slots.filter((e): e is number => e !== null)
    .sort((a, b) => a - b);
  const primary = sb.flags.primaryIndicator;
  const crashedPrimary = crashedPrimaryAfterCrash(sb.flags);
  const fullSync = primary && sb.flags.alDisabled;
  let bitsSet = 0;
  store.atomically(() => {
    if (primary) bitsSet = markExtents(store, extents, deviceBits(sb.sizeBytes));
    store.setFlags({
      crashedPrimary,
      alClean: true,
      ...(fullSync ? { fullSync: true } : {}),
    });
    store.resetAl();
    store.markClean();
  });
  return { applied: true, extents, bitsSet, crashedPrimary, fullSync };
}

/** Sets all bits of `extents` (ascending) in the stored pages; returns how many were 0. */
function markExtents(store: MetaStore, extents: number[], totalBits: number): number {
  const extentsPerPage = BITS_PER_PAGE / BITS_PER_EXTENT;
  let changed = 0;
  let i = 0;
  const writes: Array<{ page: number; data: Buffer }> = [];
  while (i < extents.length) {
    const page = Math.floor(extents[i]! / extentsPerPage);
    const pageStart = page * BITS_PER_PAGE;
    if (pageStart >= totalBits) break; // extents past the end of the device
    const data = Buffer.alloc(PAGE_BYTES);
    store.readBitmapPage(page)?.copy(data);
    let dirty = 0;
    for (; i < extents.length && Math.floor(extents[i]! / extentsPerPage) === page; i++) {
      const from = extents[i]! * BITS_PER_EXTENT - pageStart;
      const to = Math.min(from + BITS_PER_EXTENT, totalBits - pageStart);
      if (to > from) dirty += setBits(data, from, to);
    }
    if (dirty > 0) writes.push({ page, data });
    changed += dirty;
  }
  store.writeBitmapPages(writes);
  return changed;
}
