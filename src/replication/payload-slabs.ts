/**
 * Memory for the peer protocol's smaller payloads (up to 64 KiB): replicated writes and
 * resync data copied out of a socket read, and a SyncSource's reads of its disk.
 *
 * Fresh memory is the expensive part of moving those bytes: the first write to each page
 * faults it in and the kernel zeroes it, and a 1 % bitmap resync (10 MiB in ~300 payloads)
 * spent more time on that than on copying (docs/performance.md, "The bitmap resync"). So
 * payloads are carved from 2 MiB slabs that are used again once every payload carved from
 * one was given back, and a few slabs are faulted in when the daemon starts (as DRBD keeps a
 * preallocated page pool for what it receives). A payload's slab is found from its
 * ArrayBuffer, which every view carved from one slab shares.
 *
 * The daemon gives the pool an allocator of transparent huge pages (the native addon's
 * allocHuge): on this project's VMs faulting in 16 MiB took ~75 ms in 4 KiB pages and ~19 ms
 * in 2 MiB ones, and a resync that outgrows the prefaulted slabs faults the next ones in on
 * the event loop, in the middle of its transfer.
 *
 * A payload that is never given back only keeps its slab from being used again; the garbage
 * collector takes the slab once nothing refers to it.
 */
import fs from 'node:fs';

interface Slab {
  buf: Buffer;
  used: number;
  refs: number;
}

/** Carved payloads start on this boundary (copies run fastest aligned). */
const ALIGN = 64;

export class SlabPool {
  private readonly owners = new WeakMap<ArrayBufferLike, Slab>();
  private free: Slab[] = [];
  private current: Slab | undefined;
  /** Where new slabs come from (undefined, or an allocator returning undefined: the heap). */
  alloc: ((bytes: number) => Buffer | undefined) | undefined;

  constructor(
    readonly slabSize: number,
    /** Slabs kept for reuse at most; more are left to the garbage collector. */
    private readonly keep: number,
  ) {}

  /** Slabs ready for reuse (not counting the one being carved). */
  get freeSlabs(): number {
    return this.free.length;
  }

  /** Fault in `count` slabs now, so the first payloads land in memory that is already there. */
  prefault(count: number): void {
    while (this.free.length < Math.min(count, this.keep)) this.free.push(this.newSlab());
  }

  /** `n` bytes (at most slabSize) of a slab; give them back with put() when done. */
  get(n: number): Buffer {
    if (n > this.slabSize || n <= 0) throw new RangeError(`no slab payload of ${n} bytes`);
    let s = this.current;
    if (s === undefined || s.used + n > this.slabSize) {
      if (s !== undefined) this.retire(s);
      s = this.free.pop() ?? this.newSlab();
      s.used = 0;
      this.current = s;
    }
    const view = s.buf.subarray(s.used, s.used + n);
    s.used += Math.ceil(n / ALIGN) * ALIGN;
    s.refs++;
    return view;
  }

  /** True for a Buffer carved by get(). */
  owns(buf: Buffer): boolean {
    return this.owners.has(buf.buffer);
  }

  /** `buf` (from get) is not used any more: its bytes may be handed out again. */
  put(buf: Buffer): void {
    const s = this.owners.get(buf.buffer);
    if (s === undefined || s.refs === 0) return;
    if (--s.refs > 0) return;
    // The slab being carved starts over; a full one goes back to the free list.
    if (s === this.current) s.used = 0;
    else if (this.free.length < this.keep) this.free.push(s);
  }

  private retire(s: Slab): void {
    this.current = undefined;
    if (s.refs === 0 && this.free.length < this.keep) this.free.push(s);
  }

  private newSlab(): Slab {
    const buf = this.alloc?.(this.slabSize) ?? Buffer.allocUnsafeSlow(this.slabSize);
    faultIn(buf);
    const s: Slab = { buf, used: 0, refs: 0 };
    this.owners.set(buf.buffer, s);
    return s;
  }
}

/**
 * Every page of `buf` faulted in for both kinds of writes a payload sees: the kernel's (a
 * read from /dev/zero, as a pread or a socket read writes a SyncSource's payloads) and ours
 * (fill(), as the copy out of socket scratch writes a received one). On this project's VMs
 * (a paravirtualised MMU) each kind faults on its own the first time: a pread of 36 KiB
 * took ~75 µs into memory only fill() had touched, ~8 µs into memory read from /dev/zero;
 * and copying received payloads into memory only the kernel had written ran at a tenth of
 * memcpy's speed.
 */
function faultIn(buf: Buffer): void {
  buf.fill(0);
  try {
    const fd = fs.openSync('/dev/zero', 'r');
    try {
      for (let at = 0; at < buf.length;) {
        const n = fs.readSync(fd, buf, at, buf.length - at, null);
        if (n <= 0) break;
        at += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // No /dev/zero: only the first pread into each page pays.
  }
}

/** Payloads up to this size come from slabs (larger ones from payloadPool, by exact size). */
export const SLAB_PAYLOAD_MAX = 64 * 1024;

/** Shared by every peer connection of the process: at most 32 MiB kept for reuse. */
export const payloadSlabs = new SlabPool(2 << 20, 16);
