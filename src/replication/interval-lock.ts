/**
 * Orders overlapping changes to the same bytes (rule R3 of nbd.md): two writes to
 * overlapping ranges must land in the same order on both nodes, or the disks differ with no
 * bit in any bitmap to say so. NBD lets a client have both in flight at once, so the node
 * that sees them first (the primary, or the receiver in arrival order) runs them one after
 * the other; the same goes for a resync read against an application write.
 *
 * Most writes overlap nothing, so acquiring is a scan of the ranges in flight (at most a few
 * hundred) and no allocation beyond the holder record; only a conflict allocates a promise.
 */
export interface Held {
  readonly offset: number;
  readonly end: number;
  /** Resolves when released; later overlapping acquirers wait on it. */
  done: Promise<void> | undefined;
  release: (() => void) | undefined;
}

export class IntervalLock {
  private readonly held = new Set<Held>();

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
    let waitFor: Promise<void>[] | undefined;
    for (const h of this.held) {
      if (h.offset < end && offset < h.end) {
        h.done ??= new Promise<void>((r) => (h.release = r));
        (waitFor ??= []).push(h.done);
      }
    }
    const mine: Held = { offset, end, done: undefined, release: undefined };
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
    h.release?.();
  }
}
