/**
 * Orders overlapping changes to the same bytes (rule R3 of nbd.md): two writes to
 * overlapping ranges must land in the same order on both nodes, or the disks differ with no
 * bit in any bitmap to say so. NBD lets a client have both in flight at once, so the node
 * that sees them first (the primary, or the receiver in arrival order) runs them one after
 * the other; the same goes for a resync read against an application write.
 *
 * Most writes overlap nothing, so acquiring must stay cheap with hundreds of ranges in flight
 * (a bitmap resync queues ~300 writes on the SyncTarget, each acquiring against all the others:
 * a scan of every holder took 13 % of the target's time there). Holders are filed by the
 * 1 MiB buckets they touch, and an acquirer looks only in its own buckets; only a conflict
 * allocates a promise.
 */
export interface Held {
  readonly offset: number;
  readonly end: number;
  /** Resolves when released; later overlapping acquirers wait on it. */
  done: Promise<void> | undefined;
  release: (() => void) | undefined;
}

const SPARE_SETS = 256;

export class IntervalLock {
  private readonly held = new Set<Held>();
  private readonly buckets = new Map<number, Set<Held>>();
  /** Emptied bucket sets, used again so that a write into an empty bucket allocates none. */
  private readonly spare: Array<Set<Held>> = [];
  private readonly bucketSize: number;

  /** `bucketShift`: log2 of the bucket size in bytes (smaller in tests, to span many). */
  constructor(bucketShift = 20) {
    this.bucketSize = 2 ** bucketShift;
  }

  get size(): number {
    return this.held.size;
  }

  /**
   * Takes [offset, offset+length). Returns the holder at once when nothing overlaps, else a
   * promise of it once every earlier overlapping holder has released. Acquisition order is
   * call order: a later caller never overtakes an earlier overlapping one.
   */
  acquire(offset: number, length: number): Held | Promise<Held> {
    const end = offset + Math.max(length, 1);
    const mine: Held = { offset, end, done: undefined, release: undefined };
    let waitFor: Promise<void>[] | undefined;
    const last = this.bucketOf(end - 1);
    for (let b = this.bucketOf(offset); b <= last; b++) {
      let set = this.buckets.get(b);
      if (set === undefined) {
        set = this.spare.pop() ?? new Set();
        this.buckets.set(b, set);
      }
      for (const h of set) {
        if (h.offset < end && offset < h.end) {
          // A holder spanning several of our buckets is met once per bucket: wait once.
          if (h.done !== undefined && waitFor?.includes(h.done)) continue;
          h.done ??= new Promise<void>((r) => (h.release = r));
          (waitFor ??= []).push(h.done);
        }
      }
      set.add(mine);
    }
    this.held.add(mine);
    if (waitFor === undefined) return mine;
    return Promise.all(waitFor).then(() => mine);
  }

  /**
   * Resolves once every range held now has been released (later acquirers are not waited
   * for). A new peer session waits on this so that a write left over from the old one cannot
   * land after the new session's resync wrote the same blocks.
   */
  drainCurrent(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const h of this.held) {
      h.done ??= new Promise<void>((r) => (h.release = r));
      waits.push(h.done);
    }
    return waits.length === 0 ? Promise.resolve() : Promise.all(waits).then(() => undefined);
  }

  release(h: Held): void {
    if (!this.held.delete(h)) return;
    const last = this.bucketOf(h.end - 1);
    for (let b = this.bucketOf(h.offset); b <= last; b++) {
      const set = this.buckets.get(b);
      if (set === undefined) continue;
      set.delete(h);
      if (set.size === 0) {
        this.buckets.delete(b);
        if (this.spare.length < SPARE_SETS) this.spare.push(set);
      }
    }
    h.release?.();
  }

  private bucketOf(byte: number): number {
    // Offsets go past 2^32, so no shift operator.
    return Math.floor(byte / this.bucketSize);
  }
}
