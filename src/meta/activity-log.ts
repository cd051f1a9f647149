/**
 * The activity log (drbd.md §4.2–§4.3): an LRU cache of `al-extents` slots of 4 MiB extents,
 * each with a count of the writes in flight in it. Before a write starts, every extent it
 * touches must be active, and activating a cold extent is a durable metadata transaction.
 *
 * - Hit (extent active): take a reference. No allocation, no promise, no I/O.
 * - Miss: the write is queued. Everything queued in one turn of the event loop goes to the
 *   disk as one transaction of up to 64 slot changes (more → several), through `persist`; the
 *   writes resolve once it is durable: when it returns, or, if it returns a promise, when that
 *   resolves. Each change takes a free slot, or else the slot of the least recently used
 *   extent without references, which leaves the log (`evicted`: the caller must persist its
 *   bitmap pages in the same transaction).
 * - Asynchronous persist (the transaction is written at once, its sync is awaited off the
 *   event loop): one transaction is in flight at a time. Its new extents are "pending": they
 *   are in the log and referenced by the writes that wait for them, so nothing evicts them,
 *   but a later write that touches one is queued like a miss and starts only once that same
 *   transaction is durable (it "joined" it: if the transaction fails, it fails with it).
 *   Misses arriving meanwhile wait in the queue and go into the next transaction, built when
 *   this one settles. Serializing keeps the rule simple (a transaction only ever evicts
 *   extents whose activation is durable, a failure rolls back one batch), and costs little:
 *   everything that queued during one sync is committed together in the next.
 * - A queued write takes its references only when all its extents can be active at once
 *   (DRBD's all-or-nothing `drbd_al_begin_io_nonblock`), so writes waiting for a slot hold
 *   none and cannot deadlock each other. Writes needing slots are served in order; when every
 *   slot is referenced they wait for an `end()`, and `onStarved` tells the owner so each
 *   time a commit finds them waiting (after every end() while they wait): the references
 *   may be held by something the owner can hurry (a replicated change keeps its references
 *   until its epoch's barrier ack).
 * - If `persist` throws, or its promise rejects, every write of that transaction (and every
 *   write that joined it) rejects with the error, holds no references, and the log is as it
 *   was (the failed extents are not active, the extents that would have been evicted still
 *   are). So does every queued write on an extent it evicted (the rollback makes that extent
 *   active again, but a failed sync leaves unknown whether the eviction reached the disk).
 *   Writes queued for other extents stay queued for the next transaction.
 *
 * LRU order follows DRBD's lru_cache: referenced extents are out of the LRU list; an extent
 * goes to the most-recently-used end when its last reference is dropped. So the eviction
 * victim is the extent whose last write finished longest ago.
 */

export const AL_EXTENT_SHIFT = 22; // 4 MiB
export const AL_EXTENT_SIZE = 2 ** AL_EXTENT_SHIFT;
/** DRBD's AL_UPDATES_PER_TRANSACTION. */
export const AL_MAX_UPDATES = 64;

/**
 * Writes one transaction. Returns when it is durable, or returns a promise that resolves once
 * it is (the transaction itself must be written before returning: the next one may follow it
 * as soon as the promise resolves, and must land after it).
 */
export interface AlPersist {
  (tx: {
    slots: Array<{ slot: number; extent: number | null }>;
    evicted: number[];
  }): void | Promise<void>;
}

export interface ActivityLogOptions {
  /** The persisted table (slot → extent), e.g. `store.readAl().slots`; its length is al-extents. */
  slots: Array<number | null>;
  persist: AlPersist;
  /** false = `al-updates no`: references are counted, nothing is ever persisted. */
  enabled: boolean;
  maxUpdatesPerTransaction?: number;
  /** Writes are waiting because every slot is referenced (called outside begin/end). */
  onStarved?: () => void;
}

export interface AlStats {
  /** Extents found active by begin(). */
  hits: number;
  /** Extents begin() found cold (queued). */
  misses: number;
  /** persist() calls that succeeded. */
  transactions: number;
  /** Extents that left the log to make room. */
  evictions: number;
  /** Queued begins that found no slot free of references and had to wait for an end(). */
  waits: number;
  /**
   * Extents begin() found active but not yet durable (activated by the transaction in flight):
   * the write waited for that transaction. Counted in `hits` too.
   */
  pendingHits: number;
}

interface Entry {
  extent: number;
  slot: number;
  refs: number;
  /** Activated by the transaction being persisted: in the log, not yet durable. */
  pending: boolean;
  /** Neighbours in the unused (refs = 0) LRU list; null while referenced. */
  prev: Entry | null;
  next: Entry | null;
}

interface Waiter {
  first: number;
  last: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  waited: boolean;
  /** The in-flight batch this begin found pending extents of: it fails if that one fails. */
  joined: Batch | null;
}

interface Batch {
  /** Begins that wait for this transaction (they took references on its extents). */
  admitted: Waiter[];
  /** Begins that took references on durable extents only: resolved at once, not persisted. */
  ready: Waiter[];
  changes: Array<{ slot: number; extent: number }>;
  created: Entry[];
  /** Entries an admitted begin took a reference on (hits), in order. */
  reffed: Entry[];
  /** Evicted entries, in eviction (LRU) order. */
  victims: Entry[];
  /** Free slots taken, in order. */
  freeTaken: number[];
  /** A queued begin found every slot referenced. */
  starved: boolean;
}

const extentOf = (offset: number): number => Math.floor(offset / AL_EXTENT_SIZE);

export class ActivityLog {
  readonly stats: AlStats = {
    hits: 0,
    misses: 0,
    transactions: 0,
    evictions: 0,
    waits: 0,
    pendingHits: 0,
  };
  readonly slotCount: number;
  readonly enabled: boolean;

  /** Active extents (enabled), or referenced extents (disabled). */
  private readonly map = new Map<number, Entry>();
  /** Free slots, highest first: pop() gives the lowest. */
  private readonly free: number[] = [];
  /** Sentinel of the circular unused list: lru.next is the least recently used. */
  private readonly lru: Entry;
  private unused = 0;
  private queue: Waiter[] = [];
  private scheduled = false;
  private inPersist = false;
  /** The batch whose asynchronous persist has not settled yet. */
  private inFlight: Batch | null = null;
  private readonly persist: AlPersist;
  private readonly maxUpdates: number;
  private readonly onStarved: (() => void) | undefined;
  /** The last commit found writes waiting for a slot. */
  private starving = false;

  constructor(opts: ActivityLogOptions) {
    this.persist = opts.persist;
    this.onStarved = opts.onStarved;
    this.enabled = opts.enabled;
    this.slotCount = opts.slots.length;
    this.maxUpdates = opts.maxUpdatesPerTransaction ?? AL_MAX_UPDATES;
    if (!Number.isInteger(this.maxUpdates) || this.maxUpdates < 1) {
      throw new RangeError(`maxUpdatesPerTransaction must be a positive integer`);
    }
    if (this.slotCount < 1) throw new RangeError('the activity log needs at least one slot');
    const sentinel = {
      extent: -1,
      slot: -1,
      refs: 0,
      pending: false,
      prev: null,
      next: null,
    } as Entry;
    sentinel.prev = sentinel;
    sentinel.next = sentinel;
    this.lru = sentinel;
    if (!this.enabled) return;
    opts.slots.forEach((extent, slot) => {
      if (extent === null) return;
      if (!Number.isSafeInteger(extent) || extent < 0) {
        throw new RangeError(`activity-log slot ${slot} holds an invalid extent ${extent}`);
      }
      if (this.map.has(extent)) throw new RangeError(`extent ${extent} is in two slots`);
      const e: Entry = { extent, slot, refs: 0, pending: false, prev: null, next: null };
      this.map.set(extent, e);
      this.pushMru(e);
    });
    for (let s = this.slotCount - 1; s >= 0; s--) if (opts.slots[s] === null) this.free.push(s);
  }

  /**
   * Makes every extent of [offset, offset+length) active and takes a reference on each.
   * Returns undefined when all were active already (nothing to wait for), else a promise that
   * resolves once the activation is durable, or rejects (holding no references) if it failed.
   */
  begin(offset: number, length: number): Promise<void> | undefined {
    if (!(length > 0)) {
      if (length === 0) return undefined;
      throw new RangeError(`length must be a non-negative number, got ${length}`);
    }
    if (!(offset >= 0)) throw new RangeError(`offset must be a non-negative number, got ${offset}`);
    if (this.inPersist) throw new Error('ActivityLog.begin() called from inside persist');
    const first = extentOf(offset);
    const last = extentOf(offset + length - 1);
    if (!this.enabled) {
      this.beginDisabled(first, last);
      return undefined;
    }
    let joined: Batch | null = null;
    if (first === last) {
      const e = this.map.get(first);
      if (e !== undefined) {
        this.stats.hits++;
        if (!e.pending) {
          if (e.refs++ === 0) this.unlink(e);
          return undefined;
        }
        this.stats.pendingHits++;
        joined = this.inFlight;
      } else {
        this.stats.misses++;
      }
    } else {
      let misses = 0;
      let pending = 0;
      for (let x = first; x <= last; x++) {
        const e = this.map.get(x);
        if (e === undefined) misses++;
        else if (e.pending) pending++;
      }
      if (misses === 0 && pending === 0) {
        for (let x = first; x <= last; x++) this.ref(this.map.get(x)!);
        this.stats.hits += last - first + 1;
        return undefined;
      }
      if (last - first + 1 > this.slotCount) {
        throw new RangeError(
          `a write over ${last - first + 1} extents cannot fit an activity log of ${this.slotCount}`,
        );
      }
      this.stats.misses += misses;
      this.stats.hits += last - first + 1 - misses;
      this.stats.pendingHits += pending;
      if (pending > 0) joined = this.inFlight;
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ first, last, resolve, reject, waited: false, joined });
      this.schedule();
    });
  }

  /** Drops the references begin() took (after the write is completely finished). */
  end(offset: number, length: number): void {
    if (!(length > 0)) {
      if (length === 0) return;
      throw new RangeError(`length must be a non-negative number, got ${length}`);
    }
    const first = extentOf(offset);
    const last = extentOf(offset + length - 1);
    if (first === last) {
      const e = this.map.get(first);
      if (e === undefined || e.refs === 0) throw this.unbalanced(first);
      this.unref(e);
      return;
    }
    for (let x = first; x <= last; x++) {
      const e = this.map.get(x);
      if (e === undefined || e.refs === 0) throw this.unbalanced(x);
    }
    for (let x = first; x <= last; x++) this.unref(this.map.get(x)!);
  }

  /** Active extents, ascending (disabled: the referenced ones). */
  activeExtents(): number[] {
    return [...this.map.keys()].sort((a, b) => a - b);
  }

  isActive(extent: number): boolean {
    return this.map.has(extent);
  }

  /** References held on an extent. */
  refCount(extent: number): number {
    return this.map.get(extent)?.refs ?? 0;
  }

  /** The slot table as persist last made it (index = slot). Disabled: all null. */
  slots(): Array<number | null> {
    const out = new Array<number | null>(this.slotCount).fill(null);
    if (this.enabled) for (const e of this.map.values()) out[e.slot] = e.extent;
    return out;
  }

  /** begin() calls waiting for their activation (queued, or in the transaction in flight). */
  get pending(): number {
    return this.queue.length + (this.inFlight?.admitted.length ?? 0);
  }

  /** Whether the extent is in the log but its activation is not durable yet. */
  isPending(extent: number): boolean {
    return this.map.get(extent)?.pending === true;
  }

  private unbalanced(extent: number): Error {
    return new Error(`ActivityLog.end() without begin() for extent ${extent}`);
  }

  private beginDisabled(first: number, last: number): void {
    for (let x = first; x <= last; x++) {
      const e = this.map.get(x);
      if (e !== undefined) {
        e.refs++;
        this.stats.hits++;
      } else {
        this.map.set(x, { extent: x, slot: -1, refs: 1, pending: false, prev: null, next: null });
        this.stats.misses++;
      }
    }
  }

  private ref(e: Entry): void {
    if (e.refs++ === 0) this.unlink(e);
  }

  private unref(e: Entry): void {
    if (--e.refs > 0) {
      // Not a free slot yet, but writes waiting for one: the commit that finds them still
      // waiting tells the owner again (the references may now be held by newer changes).
      // Writes queued only behind the transaction in flight need no such commit.
      if (this.starving && this.queue.length > 0) this.schedule();
      return;
    }
    if (!this.enabled) {
      this.map.delete(e.extent);
      return;
    }
    this.pushMru(e);
    if (this.queue.length > 0) this.schedule();
  }

  private pushMru(e: Entry): void {
    const tail = this.lru.prev!;
    e.prev = tail;
    e.next = this.lru;
    tail.next = e;
    this.lru.prev = e;
    this.unused++;
  }

  private pushLru(e: Entry): void {
    const head = this.lru.next!;
    e.next = head;
    e.prev = this.lru;
    head.prev = e;
    this.lru.next = e;
    this.unused++;
  }

  private unlink(e: Entry): void {
    e.prev!.next = e.next;
    e.next!.prev = e.prev;
    e.prev = null;
    e.next = null;
    this.unused--;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /**
   * Commits queued activations, a batch at a time, until the queue is empty or must wait (for
   * an end(), or for the asynchronous transaction in flight).
   */
  private flush(): void {
    while (this.queue.length > 0 && this.inFlight === null) {
      const batch = this.buildBatch();
      this.starving = batch.starved;
      if (batch.starved) this.onStarved?.();
      if (batch.admitted.length === 0 && batch.ready.length === 0) return;
      const taken = new Set([...batch.admitted, ...batch.ready]);
      this.queue = this.queue.filter((w) => !taken.has(w));
      for (const w of batch.ready) w.resolve();
      if (batch.changes.length === 0) continue;
      let result: void | Promise<void>;
      try {
        this.inPersist = true;
        result = this.persist({
          slots: batch.changes,
          evicted: batch.victims.map((v) => v.extent),
        });
      } catch (err) {
        this.inPersist = false;
        this.fail(batch, err);
        continue;
      }
      this.inPersist = false;
      if (result === undefined) {
        this.succeed(batch);
        continue;
      }
      this.inFlight = batch;
      result.then(
        () => this.settle(batch, true, undefined),
        (err: unknown) => this.settle(batch, false, err),
      );
      return;
    }
  }

  private settle(batch: Batch, ok: boolean, err: unknown): void {
    this.inFlight = null;
    if (ok) this.succeed(batch);
    else this.fail(batch, err);
    // The misses that queued while this one was syncing: the next transaction, right away.
    this.flush();
  }

  private succeed(batch: Batch): void {
    for (const e of batch.created) e.pending = false;
    this.stats.transactions++;
    this.stats.evictions += batch.victims.length;
    for (const w of batch.admitted) w.resolve();
  }

  private fail(batch: Batch, err: unknown): void {
    this.rollback(batch);
    for (const w of batch.admitted) w.reject(err);
    // Begins that found this batch's extents pending waited for it: they fail with it. So do
    // queued begins on an extent it evicted: the rollback makes that extent active again, but
    // whether the eviction reached the disk is unknown (a failed sync), and a write must not
    // start on an extent the on-disk log may have dropped.
    const victims = new Set(batch.victims.map((v) => v.extent));
    const doomed = (w: Waiter): boolean => {
      if (w.joined === batch) return true;
      for (let x = w.first; x <= w.last; x++) if (victims.has(x)) return true;
      return false;
    };
    if (this.queue.some(doomed)) {
      const failed = this.queue.filter(doomed);
      this.queue = this.queue.filter((w) => !doomed(w));
      for (const w of failed) w.reject(err);
    }
  }

  /**
   * Admits queued begins into one transaction: each takes references on its active extents and
   * a slot (free, else an LRU eviction) for each cold one. A begin that needs no slot is always
   * admitted; begins needing slots are admitted in order until one does not fit. A begin that
   * needs no slot and touches no extent activated by this batch is ready at once.
   */
  private buildBatch(): Batch {
    const b: Batch = {
      admitted: [],
      ready: [],
      changes: [],
      created: [],
      reffed: [],
      victims: [],
      freeTaken: [],
      starved: false,
    };
    // 'full': this transaction has no room left, the next one continues in order.
    // 'slots': every slot is referenced; the rest waits for an end().
    let blocked: 'no' | 'full' | 'slots' = 'no';
    for (const w of this.queue) {
      let needed = 0;
      let unusedHits = 0;
      for (let x = w.first; x <= w.last; x++) {
        const e = this.map.get(x);
        if (e === undefined) needed++;
        else if (e.refs === 0) unusedHits++;
      }
      if (needed > 0) {
        if (blocked === 'no') {
          if (b.changes.length > 0 && b.changes.length + needed > this.maxUpdates) {
            blocked = 'full';
          } else if (needed > this.free.length + this.unused - unusedHits) {
            blocked = 'slots';
            b.starved = true;
          }
        }
        if (blocked !== 'no') {
          if (blocked === 'slots' && !w.waited) {
            w.waited = true;
            this.stats.waits++;
          }
          continue;
        }
      }
      // Nothing is in flight, so the only pending extents are the ones this batch created.
      let pending = false;
      for (let x = w.first; x <= w.last; x++) {
        const e = this.map.get(x);
        if (e !== undefined && e.pending) pending = true;
      }
      if (needed === 0 && !pending) {
        for (let x = w.first; x <= w.last; x++) this.ref(this.map.get(x)!);
        b.ready.push(w);
        continue;
      }
      for (let x = w.first; x <= w.last; x++) {
        const e = this.map.get(x);
        if (e !== undefined) {
          this.ref(e);
          b.reffed.push(e);
        }
      }
      for (let x = w.first; x <= w.last; x++) {
        if (this.map.has(x)) continue;
        let slot = this.free.pop();
        if (slot !== undefined) {
          b.freeTaken.push(slot);
        } else {
          const victim = this.lru.next!;
          this.unlink(victim);
          this.map.delete(victim.extent);
          b.victims.push(victim);
          slot = victim.slot;
        }
        const e: Entry = { extent: x, slot, refs: 1, pending: true, prev: null, next: null };
        this.map.set(x, e);
        b.created.push(e);
        b.changes.push({ slot, extent: x });
      }
      b.admitted.push(w);
    }
    return b;
  }

  /**
   * Undoes buildBatch after a failed persist. Serialized transactions make this exact even
   * after an asynchronous one: no batch was built meanwhile, so the victims' slots and the
   * free slots taken are still this batch's, and the created entries are referenced by its
   * admitted begins only (later begins on them queued instead).
   */
  private rollback(b: Batch): void {
    const created = new Set(b.created);
    for (const e of b.reffed) {
      if (!created.has(e) && --e.refs === 0) this.pushMru(e);
    }
    for (const e of b.created) this.map.delete(e.extent);
    for (let i = b.victims.length - 1; i >= 0; i--) {
      const v = b.victims[i]!;
      this.map.set(v.extent, v);
      this.pushLru(v);
    }
    for (let i = b.freeTaken.length - 1; i >= 0; i--) this.free.push(b.freeTaken[i]!);
  }
}
