import type { Logger } from 'pino';
import { ActivityLog } from '../meta/activity-log.js';
import { applyAl } from '../meta/apply-al.js';
import { Bitmap, bitsForDevice, blocksTouched, BM_BITS_PER_PAGE } from '../meta/bitmap.js';
import { MetaError, MetaStore, type Superblock } from '../meta/store.js';

/** Bitmap bits per activity-log extent, as a shift: 1024 bits of 4 KiB = 4 MiB. */
const EXTENT_TO_PAGE_SHIFT = 5; // 32 extents of 1024 bits fill one 32768-bit page

export interface DiskMetaOptions {
  /** Bytes the backing disk offers now; the metadata's size must fit in it. */
  diskSize: number;
  /** `al-updates`: false means no activity log is kept (a crash then costs a full resync). */
  alUpdates: boolean;
  log: Logger;
  /** Named in error messages ("run urbdadm create-md RES"). */
  resource: string;
  /** The activity log has writes waiting for a slot (ActivityLogOptions.onStarved). */
  onAlStarved?: () => void;
}

/** What attaching found in the metadata, for the log and the state machine. */
export interface AttachReport {
  /** apply-al ran because the last stop was unclean. */
  appliedAl: boolean;
  alExtentsApplied: number;
  crashedPrimary: boolean;
  /** Every bit was set: a full resync is owed (al-updates no + crash, or FULL_SYNC). */
  fullSync: boolean;
}

/**
 * The metadata of an attached disk: the store, the in-memory bitmap and the activity log,
 * and the rules for when each reaches the disk (drbd.md §4.3, §4.6):
 * - a cold extent is made durable in the AL before any write to it (ActivityLog.begin);
 * - an extent leaves the AL only in the same transaction that persists its bitmap page;
 * - everything else in the bitmap is persisted at demote, detach and orderly stop, because
 *   until then apply-al re-dirties the whole of every extent still in the log.
 */
export class DiskMeta {
  readonly al: ActivityLog;
  /** Bitmap transactions written (status --statistics' bm-writes). */
  bmWrites = 0;
  /**
   * Set when an AL commit failed in a way that leaves its outcome unknown (an I/O error:
   * the commit may still reach the disk). The log in memory was rolled back, so it may
   * believe in an extent the on-disk log has dropped; writing on would break the AL
   * invariant, so every later write fails until the disk is detached and checked.
   */
  failure: Error | null = null;
  private closed = false;

  private constructor(
    readonly store: MetaStore,
    public bitmap: Bitmap,
    readonly report: AttachReport,
    alUpdates: boolean,
    onStarved: (() => void) | undefined,
  ) {
    const { slots } = store.readAl();
    this.al = new ActivityLog({
      slots,
      enabled: alUpdates,
      persist: (tx) => this.persistAl(tx.slots, tx.evicted),
      onStarved,
    });
  }

  /**
   * Opens the metadata for a daemon that will write through it: replays the AL after an
   * unclean stop, checks the size, loads the bitmap and marks the store unclean until
   * close(). Throws MetaError with a one-line reason; the store is closed again on failure.
   */
  static open(path: string, opts: DiskMetaOptions): DiskMeta {
    const store = MetaStore.open(path, { resource: opts.resource });
    try {
      const sb = store.superblock();
      if (sb.sizeBytes > opts.diskSize) {
        throw new MetaError(
          'ESIZE',
          `${path}: the metadata says the device is ${sb.sizeBytes} bytes but the backing disk has only ${opts.diskSize}; refusing to attach (was the disk shrunk or swapped?)`,
        );
      }
      let appliedAl = false;
      let alExtentsApplied = 0;
      if (!sb.clean || !sb.flags.alClean) {
        const r = applyAl(store);
        appliedAl = r.applied;
        alExtentsApplied = r.extents.length;
        opts.log.warn(
          { extents: r.extents.length, bitsSet: r.bitsSet, crashedPrimary: r.crashedPrimary },
          'metadata was not closed cleanly: applied the activity log to the bitmap',
        );
      }
      const bitmap = new Bitmap(bitsForDevice(sb.sizeBytes));
      for (const { page, data } of store.readBitmapPages()) {
        if (page < bitmap.pageCount) bitmap.loadPage(page, data);
      }
      const after = store.superblock();
      let fullSync = false;
      if (after.flags.fullSync) {
        // Set-all is redone, then persisted, before the flag is dropped: a crash in between
        // leaves the flag and the next attach does it again.
        bitmap.setAll();
        fullSync = true;
      }
      // al-clean goes with the unclean marker: both say "replay the log if we crash now".
      store.setFlags({ alDisabled: !opts.alUpdates, alClean: false });
      const meta = new DiskMeta(
        store,
        bitmap,
        { appliedAl, alExtentsApplied, crashedPrimary: after.flags.crashedPrimary, fullSync },
        opts.alUpdates,
        opts.onAlStarved,
      );
      if (fullSync) {
        meta.persistBitmap();
        store.setFlags({ fullSync: false });
      }
      store.markUnclean();
      return meta;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  superblock(): Superblock {
    return this.store.superblock();
  }

  get sizeBytes(): number {
    return this.store.superblock().sizeBytes;
  }

  /**
   * Shrinks the device to `bytes` (the peer's smaller size at the first handshake of fresh
   * metadata): the superblock's size, the bitmap pages beyond it, and the in-memory bitmap.
   * Only for a device that never held data; the caller checks that.
   */
  shrinkTo(bytes: number): void {
    this.store.setSize(bytes);
    const bitmap = new Bitmap(bitsForDevice(bytes));
    for (const { page, data } of this.store.readBitmapPages()) {
      if (page < bitmap.pageCount) bitmap.loadPage(page, data);
    }
    this.bitmap = bitmap;
  }

  /**
   * Grows the device to `bytes` (online resize, or a handshake finding the peer already
   * grown). With `markNew`, every block past the old end is out of sync: what the grown
   * backing disks hold there differs from node to node until a resync copies it. The new
   * size and those bits commit in one transaction, so a crash cannot leave a grown device
   * whose new area counts as in sync. Returns the bits set.
   *
   * The bitmap is replaced by a larger copy in the same turn of the event loop, so no write
   * marks the old one afterwards; every page holding bits is rewritten with the new size,
   * which also covers pages an activity-log commit still in flight was persisting.
   */
  growTo(bytes: number, markNew: boolean): number {
    const old = this.bitmap;
    if (bytes <= this.sizeBytes) throw new Error(`growTo(${bytes}): not larger than the device`);
    const bitmap = new Bitmap(bitsForDevice(bytes));
    const pages = new Set<number>();
    for (let page = 0; page < old.pageCount; page++) {
      if (old.pageIsZero(page)) continue;
      bitmap.loadPage(page, old.pageBuffer(page));
      pages.add(page);
    }
    const set = markNew ? bitmap.setRange(old.totalBits, bitmap.totalBits) : 0;
    for (const page of bitmap.dirtyPages()) pages.add(page);
    const records = [...pages]
      .sort((a, b) => a - b)
      .map((page) => ({
        page,
        data: bitmap.pageIsZero(page) ? null : bitmap.pageBuffer(page),
      }));
    this.store.atomically(() => {
      this.store.setSize(bytes);
      this.store.writeBitmapPages(records);
    });
    this.bmWrites++;
    bitmap.markPagesClean(pages);
    this.bitmap = bitmap;
    return set;
  }

  /** The blocks of a write that the peer will not get: they must be resynced later. */
  markOutOfSync(offset: number, length: number): void {
    const [first, end] = blocksTouched(offset, length);
    if (end > first) this.bitmap.setRange(first, end);
  }

  /** Out-of-sync bytes, as status reports them. */
  outOfSyncBytes(): number {
    return this.bitmap.count() * 4096;
  }

  /**
   * Writes every bitmap page changed since it was last persisted, in one transaction, together
   * with whatever `also` writes to the store (one sync for both). The pages count as clean
   * only once that transaction committed.
   */
  persistBitmap(also?: () => void): number {
    const pages = this.bitmap.dirtyPages();
    if (pages.length === 0 && also === undefined) return 0;
    const write = (): void => {
      also?.();
      if (pages.length > 0) {
        this.store.writeBitmapPages(pages.map((page) => this.pageRecord(page)));
      }
    };
    if (also === undefined) write();
    else this.store.atomically(write);
    if (pages.length === 0) return 0;
    this.bmWrites++;
    this.bitmap.markPagesClean(pages);
    return pages.length;
  }

  /** Orderly stop: the bitmap reaches the disk, then the store is marked clean. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.persistBitmap();
      this.store.setFlags({ alClean: true });
      this.store.markClean();
    } finally {
      this.store.close();
    }
  }

  /**
   * One AL transaction, written now and synced off the event loop (MetaStore.commitAlDeferred):
   * the activity log starts no write on the extents it activates before the returned promise
   * resolves. After a failure of unknown outcome nothing more is committed.
   */
  private persistAl(
    slots: Array<{ slot: number; extent: number | null }>,
    evicted: number[],
  ): Promise<void> {
    if (this.failure !== null) throw this.failure;
    const bitmap = this.bitmap;
    const pages = [...new Set(evicted.map((e) => e >> EXTENT_TO_PAGE_SHIFT))].filter(
      (p) => p < bitmap.pageCount,
    );
    let durable: Promise<void>;
    try {
      durable = this.store.commitAlDeferred({
        slots,
        bitmapPages: pages.map((page) => this.pageRecord(page)),
      });
    } catch (err) {
      if (commitOutcomeUnknown(err)) this.failure ??= err as Error;
      throw err;
    }
    // Clean now, not after the sync: a bit set meanwhile leaves its page dirty (the bitmap
    // knows the page was taken), while a persistBitmap() meanwhile could not be told apart
    // from our copy later. If the sync fails, the pages are dirty again below.
    bitmap.markPagesClean(pages);
    return durable.catch((err: unknown) => {
      // A failed fdatasync: the commit may or may not reach the disk.
      this.failure ??= err as Error;
      bitmap.markPagesDirty(pages);
      throw err;
    });
  }

  private pageRecord(page: number): { page: number; data: Buffer | null } {
    return { page, data: this.bitmap.pageIsZero(page) ? null : this.bitmap.pageBuffer(page) };
  }
}

/**
 * Whether a failed SQLite commit may still have reached the disk. A full disk, a read-only
 * file or a lock is refused before the commit frame is written, and SQLite rolls back; an
 * I/O error (a failed write or fsync of the WAL) can leave a complete commit behind that
 * recovery would replay.
 */
export function commitOutcomeUnknown(err: unknown): boolean {
  const code =
    (err as { cause?: { code?: unknown } }).cause?.code ?? (err as { code?: unknown }).code;
  return (
    typeof code !== 'string' ||
    !/^SQLITE_(FULL|READONLY|BUSY|LOCKED|PERM|AUTH|CONSTRAINT)/.test(code)
  );
}

// One page holds the bits of 32 extents; the shift above depends on it.
if (BM_BITS_PER_PAGE >> EXTENT_TO_PAGE_SHIFT !== 1024) throw new Error('bitmap geometry changed');
