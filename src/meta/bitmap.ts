/**
 * The in-memory dirty ("out of sync") bitmap: one bit per 4 KiB block of the replicated
 * device (DRBD's `BM_BLOCK_SIZE`, reference §4.1). A set bit means the block may differ from
 * the peer's copy and must be resynced (§4.6 says when bits are set and cleared).
 *
 * Layout: 32-bit words in a Uint32Array, bit `i` of the device is bit `i % 32` of word
 * `i / 32`. The array is padded to whole 4 KiB pages (1024 words, 32768 bits), which are the
 * unit the metadata store persists. Bits past `totalBits` are always 0.
 *
 * Alongside the words it keeps
 *   - a set-bit count per page (so `count()` is O(1), `pageIsZero()` is O(1), and scans skip
 *     empty or full pages without reading them), and
 *   - a per-page dirty state plus a list of dirty pages (so persisting never scans all pages).
 *
 * A page is dirty once an operation changed at least one of its bits, until the store marks it
 * clean. `pageBuffer()` (or a `pageIsZero()` that returns true) records that the page was
 * "taken"; if the page changes again before `markPagesClean()` arrives, it stays dirty, so a
 * store that persists asynchronously cannot lose a change made while its write was in flight.
 *
 * Ranges are validated (integers inside [0, totalBits], RangeError otherwise); a range with
 * first >= end is empty, as `blocksCovered()` can produce one.
 */
import os from 'node:os';

/** Bytes of data per bit. */
export const BM_BLOCK_SIZE = 4096;
/** Bytes per persisted bitmap page. */
export const BM_PAGE_BYTES = 4096;
/** Bits per persisted page: 128 MiB of data. */
export const BM_BITS_PER_PAGE = BM_PAGE_BYTES * 8;
/** Bits per activity-log extent (4 MiB of data). */
export const AL_EXTENT_BITS = 1024;

const WORDS_PER_PAGE = BM_BITS_PER_PAGE / 32; // 1024
const LITTLE_ENDIAN = os.endianness() === 'LE';

// Per-page dirty states.
const CLEAN = 0;
/** Changed, not copied out since. */
const DIRTY = 1;
/** Changed, then copied out by pageBuffer(), unchanged since. */
const TAKEN = 2;
/** Copied out by pageBuffer(), then changed again. */
const CHANGED_AFTER_TAKE = 3;

// Page copies are cut from shared slabs: allocating a separate 4 KiB ArrayBuffer per page costs
// about 1 µs, five times the copy itself (the same trick as Node's own Buffer pool).
const SLAB_BYTES = 64 * BM_PAGE_BYTES;
let slab = Buffer.alloc(0);
let slabUsed = 0;
function allocPage(): Buffer {
  if (slabUsed + BM_PAGE_BYTES > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const buf = slab.subarray(slabUsed, slabUsed + BM_PAGE_BYTES);
  slabUsed += BM_PAGE_BYTES;
  return buf;
}

/** Aligned scratch space for loadPage() / orPage(). */
const scratchWords = new Uint32Array(BM_PAGE_BYTES / 4);
const scratchBytes = Buffer.from(scratchWords.buffer);

function checkNonNegInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
}

/** Number of bits (4 KiB blocks) for a device of `sizeBytes` bytes: ceil(size / 4096). */
export function bitsForDevice(sizeBytes: number): number {
  checkNonNegInt('device size', sizeBytes);
  return Math.ceil(sizeBytes / BM_BLOCK_SIZE);
}

/**
 * Bits a write of [offset, offset+length) dirties: rounded OUTWARD to 4 KiB.
 * Returns [first, endExclusive); a zero-length write touches nothing (first === end).
 */
export function blocksTouched(offset: number, length: number): [number, number] {
  checkNonNegInt('offset', offset);
  checkNonNegInt('length', length);
  const first = Math.floor(offset / BM_BLOCK_SIZE);
  if (length === 0) return [first, first];
  return [first, Math.ceil((offset + length) / BM_BLOCK_SIZE)];
}

/**
 * Bits fully covered by [offset, offset+length): rounded INWARD (used when clearing).
 * May be empty; an empty result is returned as first === end.
 */
export function blocksCovered(offset: number, length: number): [number, number] {
  checkNonNegInt('offset', offset);
  checkNonNegInt('length', length);
  const first = Math.ceil(offset / BM_BLOCK_SIZE);
  const end = Math.floor((offset + length) / BM_BLOCK_SIZE);
  return end > first ? [first, end] : [first, first];
}

/** Set bits in a 32-bit word (SWAR popcount). */
export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Mask of bits [lo, hi) of a word, 0 <= lo < hi <= 32. */
function wordMask(lo: number, hi: number): number {
  const upper = hi === 32 ? 0xffffffff : (1 << hi) - 1;
  return (upper & ~((1 << lo) - 1)) >>> 0;
}

export class Bitmap {
  readonly totalBits: number;
  readonly pageCount: number;

  private readonly words: Uint32Array;
  /** The same memory as bytes, for page copies. */
  private readonly bytes: Buffer;
  /** Set bits per page, 0..32768. */
  private readonly pageCounts: Int32Array;
  /** Per-page dirty state (CLEAN, DIRTY, TAKEN, CHANGED_AFTER_TAKE). */
  private readonly pageState: Uint8Array;
  /** Pages whose state is not CLEAN, in insertion order (see `dirtySorted`). */
  private dirtyList: number[] = [];
  private dirtySorted = true;
  private total = 0;
  /** Bits in the last page (1..32768), 0 if there are no pages. */
  private readonly lastPageBits: number;

  constructor(totalBits: number) {
    checkNonNegInt('totalBits', totalBits);
    this.totalBits = totalBits;
    this.pageCount = Math.ceil(totalBits / BM_BITS_PER_PAGE);
    this.words = new Uint32Array(this.pageCount * WORDS_PER_PAGE);
    this.bytes = Buffer.from(this.words.buffer, this.words.byteOffset, this.words.byteLength);
    this.pageCounts = new Int32Array(this.pageCount);
    this.pageState = new Uint8Array(this.pageCount);
    this.lastPageBits =
      this.pageCount === 0 ? 0 : totalBits - (this.pageCount - 1) * BM_BITS_PER_PAGE;
  }

  /** Number of set bits. O(1). */
  count(): number {
    return this.total;
  }

  /** Set bits in [first, endExclusive). Walks only the pages in the range. */
  countRange(first: number, endExclusive: number): number {
    this.checkRange(first, endExclusive);
    if (endExclusive <= first) return 0;
    let n = 0;
    let pos = first;
    while (pos < endExclusive) {
      const page = Math.floor(pos / BM_BITS_PER_PAGE);
      const pageStart = page * BM_BITS_PER_PAGE;
      const pageEnd = Math.min(pageStart + BM_BITS_PER_PAGE, endExclusive);
      const pc = this.pageCounts[page];
      if (pc === 0) {
        // nothing here
      } else if (pos === pageStart && pageEnd === pageStart + this.bitsInPage(page)) {
        n += pc;
      } else {
        n += this.countWords(pos, pageEnd);
      }
      pos = pageEnd;
    }
    return n;
  }

  test(bit: number): boolean {
    if (!Number.isInteger(bit) || bit < 0 || bit >= this.totalBits) {
      throw new RangeError(`bit ${bit} outside [0, ${this.totalBits})`);
    }
    return (this.words[Math.floor(bit / 32)] & (1 << (bit & 31))) !== 0;
  }

  /** Sets bits [first, endExclusive); returns how many went 0→1. first >= end is empty. */
  setRange(first: number, endExclusive: number): number {
    this.checkRange(first, endExclusive);
    if (endExclusive === first + 1) {
      // Fastest path: one bit (an aligned 4 KiB write).
      const wi = Math.floor(first / 32);
      const bit = 1 << (first & 31);
      const old = this.words[wi];
      if ((old & bit) !== 0) return 0;
      this.words[wi] = old | bit;
      const page = Math.floor(first / BM_BITS_PER_PAGE);
      this.pageCounts[page]++;
      this.total++;
      this.touch(page);
      return 1;
    }
    if (endExclusive <= first) return 0;
    const wi = Math.floor(first / 32);
    const lo = first & 31;
    if (endExclusive - first <= 32 - lo) {
      // Fast path: within one word (small or unaligned writes).
      const mask = wordMask(lo, lo + (endExclusive - first));
      const old = this.words[wi];
      const added = mask & ~old;
      if (added === 0) return 0;
      this.words[wi] = old | mask;
      const n = popcount32(added);
      const page = Math.floor(wi / WORDS_PER_PAGE);
      this.pageCounts[page] += n;
      this.total += n;
      this.touch(page);
      return n;
    }
    let changed = 0;
    let pos = first;
    while (pos < endExclusive) {
      const page = Math.floor(pos / BM_BITS_PER_PAGE);
      const pageStart = page * BM_BITS_PER_PAGE;
      const pageEnd = Math.min(pageStart + BM_BITS_PER_PAGE, endExclusive);
      const pageBits = this.bitsInPage(page);
      const pc = this.pageCounts[page];
      if (pc !== pageBits) {
        let n: number;
        if (pc === 0 && pos === pageStart && pageEnd === pageStart + pageBits) {
          this.fillPage(page, pageBits);
          n = pageBits;
        } else {
          n = this.setWords(pos, pageEnd);
        }
        if (n !== 0) {
          this.pageCounts[page] = pc + n;
          changed += n;
          this.touch(page);
        }
      }
      pos = pageEnd;
    }
    this.total += changed;
    return changed;
  }

  /** Clears bits [first, endExclusive); returns how many went 1→0. first >= end is empty. */
  clearRange(first: number, endExclusive: number): number {
    this.checkRange(first, endExclusive);
    if (endExclusive <= first) return 0;
    const wi = Math.floor(first / 32);
    const lo = first & 31;
    if (endExclusive - first <= 32 - lo) {
      const mask = wordMask(lo, lo + (endExclusive - first));
      const old = this.words[wi];
      const removed = mask & old;
      if (removed === 0) return 0;
      this.words[wi] = old & ~mask;
      const n = popcount32(removed);
      const page = Math.floor(wi / WORDS_PER_PAGE);
      this.pageCounts[page] -= n;
      this.total -= n;
      this.touch(page);
      return n;
    }
    let changed = 0;
    let pos = first;
    while (pos < endExclusive) {
      const page = Math.floor(pos / BM_BITS_PER_PAGE);
      const pageStart = page * BM_BITS_PER_PAGE;
      const pageEnd = Math.min(pageStart + BM_BITS_PER_PAGE, endExclusive);
      const pc = this.pageCounts[page];
      if (pc !== 0) {
        let n: number;
        if (pos === pageStart && pageEnd === pageStart + this.bitsInPage(page)) {
          this.words.fill(0, page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
          n = pc;
        } else {
          n = this.clearWords(pos, pageEnd);
        }
        if (n !== 0) {
          this.pageCounts[page] = pc - n;
          changed += n;
          this.touch(page);
        }
      }
      pos = pageEnd;
    }
    this.total -= changed;
    return changed;
  }

  /** Sets every bit (full sync). Pages that were already full are not marked dirty. */
  setAll(): void {
    for (let page = 0; page < this.pageCount; page++) {
      const pageBits = this.bitsInPage(page);
      if (this.pageCounts[page] === pageBits) continue;
      this.fillPage(page, pageBits);
      this.pageCounts[page] = pageBits;
      this.touch(page);
    }
    this.total = this.totalBits;
  }

  /** Clears every bit. Pages that were already empty are not marked dirty. */
  clearAll(): void {
    for (let page = 0; page < this.pageCount; page++) {
      if (this.pageCounts[page] === 0) continue;
      this.words.fill(0, page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
      this.pageCounts[page] = 0;
      this.touch(page);
    }
    this.total = 0;
  }

  /** First set bit >= from, or totalBits if there is none. Skips empty pages without reading them. */
  nextSet(from: number): number {
    this.checkBound('from', from);
    const total = this.totalBits;
    if (from >= total) return total;
    const words = this.words;
    const counts = this.pageCounts;
    let page = Math.floor(from / BM_BITS_PER_PAGE);
    if (counts[page] !== 0) {
      const wi = Math.floor(from / 32);
      const w = words[wi] & (-1 << (from & 31));
      if (w !== 0) return wi * 32 + ctz32(w);
      const pageEnd = (page + 1) * WORDS_PER_PAGE;
      const found = this.scanNonZero(wi + 1, pageEnd);
      if (found < pageEnd) return found * 32 + ctz32(words[found]);
    }
    const pages = this.pageCount;
    do page++;
    while (page < pages && counts[page] === 0);
    if (page >= pages) return total;
    // The page has a set bit, and bits past totalBits are 0: the scan finds it.
    const found = this.scanNonZero(page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
    return found * 32 + ctz32(words[found]);
  }

  /** First clear bit >= from, or totalBits if there is none. Skips full pages without reading them. */
  nextClear(from: number): number {
    this.checkBound('from', from);
    const total = this.totalBits;
    if (from >= total) return total;
    const words = this.words;
    const counts = this.pageCounts;
    let page = Math.floor(from / BM_BITS_PER_PAGE);
    // Words past totalBits are 0, so a scan of the last page stops there at the latest.
    if (counts[page] !== this.bitsInPage(page)) {
      const wi = Math.floor(from / 32);
      const w = ~words[wi] & (-1 << (from & 31));
      if (w !== 0) return Math.min(wi * 32 + ctz32(w), total);
      const pageEnd = (page + 1) * WORDS_PER_PAGE;
      const found = this.scanNotFull(wi + 1, pageEnd);
      if (found < pageEnd) return Math.min(found * 32 + ctz32(~words[found]), total);
    }
    const pages = this.pageCount;
    const lastFull = pages - 1;
    do page++;
    while (page < lastFull && counts[page] === BM_BITS_PER_PAGE);
    if (page >= pages || counts[page] === this.bitsInPage(page)) return total;
    const found = this.scanNotFull(page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
    return Math.min(found * 32 + ctz32(~words[found]), total);
  }

  /** Maximal runs of set bits as [start, endExclusive), clipped to [from, to). */
  *ranges(from = 0, to = this.totalBits): Generator<[number, number]> {
    this.checkRange(from, to);
    let pos = from;
    while (pos < to) {
      const start = this.nextSet(pos);
      if (start >= to) return;
      const end = Math.min(this.nextClear(start), to);
      yield [start, end];
      pos = end;
    }
  }

  /** Pages changed since they were last taken (and not yet marked clean), sorted. */
  dirtyPages(): number[] {
    if (!this.dirtySorted) {
      this.dirtyList.sort((a, b) => a - b);
      this.dirtySorted = true;
    }
    return this.dirtyList.slice();
  }

  /** Number of dirty pages. O(1). */
  dirtyPageCount(): number {
    return this.dirtyList.length;
  }

  /**
   * A copy of one page: 4096 bytes, little-endian bit order (bit i of the device is bit i % 8
   * of byte i / 8 within its page). Bits past totalBits are 0. Like Node's pooled Buffers, the
   * copy may share its ArrayBuffer with other page copies. Records the page as taken: a
   * later markPagesClean() clears its dirty mark only if it has not changed since.
   */
  pageBuffer(page: number): Buffer {
    this.checkPage(page);
    const buf = allocPage();
    this.bytes.copy(buf, 0, page * BM_PAGE_BYTES, (page + 1) * BM_PAGE_BYTES);
    if (!LITTLE_ENDIAN) buf.swap32();
    const s = this.pageState[page];
    if (s === DIRTY || s === CHANGED_AFTER_TAKE) this.pageState[page] = TAKEN;
    return buf;
  }

  /**
   * The store has persisted these pages. A page that changed after its last pageBuffer() copy
   * stays dirty (its newest bits are not on disk yet); pages never copied are trusted.
   */
  markPagesClean(pages: Iterable<number>): void {
    let removed = false;
    for (const page of pages) {
      this.checkPage(page);
      const s = this.pageState[page];
      if (s === DIRTY || s === TAKEN) {
        this.pageState[page] = CLEAN;
        removed = true;
      } else if (s === CHANGED_AFTER_TAKE) {
        this.pageState[page] = DIRTY;
      }
    }
    if (removed) this.dirtyList = this.dirtyList.filter((p) => this.pageState[p] !== CLEAN);
  }

  /**
   * Takes back markPagesClean() for pages whose write turned out not to be durable (its sync
   * failed): they are dirty again, so the next persist writes them.
   */
  markPagesDirty(pages: Iterable<number>): void {
    for (const page of pages) {
      this.checkPage(page);
      this.touch(page);
    }
  }

  /**
   * True if the page has no set bits. O(1). A true answer counts as taking the page, like
   * pageBuffer(): the store may delete the page instead of writing it, then markPagesClean().
   */
  pageIsZero(page: number): boolean {
    this.checkPage(page);
    if (this.pageCounts[page] !== 0) return false;
    const s = this.pageState[page];
    if (s === DIRTY || s === CHANGED_AFTER_TAKE) this.pageState[page] = TAKEN;
    return true;
  }

  /** Set bits in one page. O(1). */
  pageSetBits(page: number): number {
    this.checkPage(page);
    return this.pageCounts[page];
  }

  /**
   * Replaces one page with a persisted copy (at open). Does not mark it dirty. Bits past
   * totalBits are ignored.
   */
  loadPage(page: number, buf: Buffer): void {
    this.checkPage(page);
    this.checkPageBuf(buf);
    const n = this.copyIn(page, buf, false);
    this.total += n - this.pageCounts[page];
    this.pageCounts[page] = n;
  }

  /**
   * ORs a page image into the bitmap (the bitmap exchange at handshake, §4.6) and returns how
   * many bits went 0→1; the page becomes dirty if any did. Bits past totalBits are ignored.
   */
  orPage(page: number, buf: Buffer): number {
    this.checkPage(page);
    this.checkPageBuf(buf);
    const before = this.pageCounts[page];
    const n = this.copyIn(page, buf, true);
    const added = n - before;
    if (added !== 0) {
      this.pageCounts[page] = n;
      this.total += added;
      this.touch(page);
    }
    return added;
  }

  /** Page range [first, endExclusive) covering bits [first, endExclusive). Empty for no bits. */
  pagesOfBits(first: number, endExclusive: number): [number, number] {
    this.checkRange(first, endExclusive);
    if (endExclusive <= first) {
      const p = Math.floor(first / BM_BITS_PER_PAGE);
      return [p, p];
    }
    return [
      Math.floor(first / BM_BITS_PER_PAGE),
      Math.floor((endExclusive - 1) / BM_BITS_PER_PAGE) + 1,
    ];
  }

  /** Bits [first, endExclusive) of activity-log extent `extent` (4 MiB), clipped to the device. */
  extentBits(extent: number): [number, number] {
    checkNonNegInt('extent', extent);
    const first = extent * AL_EXTENT_BITS;
    if (first >= this.totalBits) {
      throw new RangeError(`extent ${extent} outside the device (${this.totalBits} bits)`);
    }
    return [first, Math.min(first + AL_EXTENT_BITS, this.totalBits)];
  }

  // ---- internals ----

  private bitsInPage(page: number): number {
    return page === this.pageCount - 1 ? this.lastPageBits : BM_BITS_PER_PAGE;
  }

  /** Records that a page's bits changed. */
  private touch(page: number): void {
    const s = this.pageState[page];
    if (s === CLEAN) {
      this.pageState[page] = DIRTY;
      const list = this.dirtyList;
      if (list.length !== 0 && list[list.length - 1] > page) this.dirtySorted = false;
      list.push(page);
    } else if (s === TAKEN) {
      this.pageState[page] = CHANGED_AFTER_TAKE;
    }
  }

  /** Index of the first non-zero word in [wi, end), or end. */
  private scanNonZero(wi: number, end: number): number {
    const words = this.words;
    while (wi + 4 <= end && (words[wi] | words[wi + 1] | words[wi + 2] | words[wi + 3]) === 0) {
      wi += 4;
    }
    while (wi < end && words[wi] === 0) wi++;
    return wi;
  }

  /** Index of the first word in [wi, end) that is not all ones, or end. */
  private scanNotFull(wi: number, end: number): number {
    const words = this.words;
    while (wi + 4 <= end && (words[wi] & words[wi + 1] & words[wi + 2] & words[wi + 3]) === -1) {
      wi += 4;
    }
    while (wi < end && words[wi] === 0xffffffff) wi++;
    return wi;
  }

  /** Sets the first pageBits bits of an empty page. */
  private fillPage(page: number, pageBits: number): void {
    const base = page * WORDS_PER_PAGE;
    const full = Math.floor(pageBits / 32);
    this.words.fill(0xffffffff, base, base + full);
    const rest = pageBits & 31;
    if (rest !== 0) this.words[base + full] = wordMask(0, rest);
    // Words past the device end stay 0.
  }

  /** Sets bits [first, end) (within one page); returns how many went 0→1. */
  private setWords(first: number, end: number): number {
    const words = this.words;
    let wi = Math.floor(first / 32);
    const lastWi = Math.floor((end - 1) / 32);
    const lo = first & 31;
    const hiEnd = ((end - 1) & 31) + 1;
    if (wi === lastWi) {
      const mask = wordMask(lo, hiEnd);
      const old = words[wi];
      words[wi] = old | mask;
      return popcount32(mask & ~old);
    }
    let n = 0;
    let old = words[wi];
    let mask = wordMask(lo, 32);
    words[wi] = old | mask;
    n += popcount32(mask & ~old);
    for (wi++; wi < lastWi; wi++) {
      old = words[wi];
      if (old === 0) {
        n += 32;
      } else if (old !== 0xffffffff) {
        n += 32 - popcount32(old);
      } else {
        continue;
      }
      words[wi] = 0xffffffff;
    }
    old = words[wi];
    mask = wordMask(0, hiEnd);
    words[wi] = old | mask;
    n += popcount32(mask & ~old);
    return n;
  }

  /** Clears bits [first, end) (within one page); returns how many went 1→0. */
  private clearWords(first: number, end: number): number {
    const words = this.words;
    let wi = Math.floor(first / 32);
    const lastWi = Math.floor((end - 1) / 32);
    const lo = first & 31;
    const hiEnd = ((end - 1) & 31) + 1;
    if (wi === lastWi) {
      const mask = wordMask(lo, hiEnd);
      const old = words[wi];
      words[wi] = old & ~mask;
      return popcount32(mask & old);
    }
    let n = 0;
    let old = words[wi];
    let mask = wordMask(lo, 32);
    words[wi] = old & ~mask;
    n += popcount32(mask & old);
    for (wi++; wi < lastWi; wi++) {
      old = words[wi];
      if (old === 0) continue;
      n += old === 0xffffffff ? 32 : popcount32(old);
      words[wi] = 0;
    }
    old = words[wi];
    mask = wordMask(0, hiEnd);
    words[wi] = old & ~mask;
    n += popcount32(mask & old);
    return n;
  }

  /** Set bits in [first, end) (within one page). */
  private countWords(first: number, end: number): number {
    const words = this.words;
    let wi = Math.floor(first / 32);
    const lastWi = Math.floor((end - 1) / 32);
    const lo = first & 31;
    const hiEnd = ((end - 1) & 31) + 1;
    if (wi === lastWi) return popcount32(words[wi] & wordMask(lo, hiEnd));
    let n = popcount32(words[wi] & wordMask(lo, 32));
    for (wi++; wi < lastWi; wi++) n += popcount32(words[wi]);
    return n + popcount32(words[wi] & wordMask(0, hiEnd));
  }

  /** Copies (or ORs) a persisted page in, masking bits past the device end; returns the page's new count. */
  private copyIn(page: number, buf: Buffer, or: boolean): number {
    // Through an aligned scratch copy: `buf` may sit at any byte offset.
    scratchBytes.set(buf);
    if (!LITTLE_ENDIAN) scratchBytes.swap32();
    const pageBits = this.bitsInPage(page);
    const fullWords = Math.floor(pageBits / 32);
    const rest = pageBits & 31;
    if (rest !== 0) scratchWords[fullWords] &= wordMask(0, rest);
    scratchWords.fill(0, fullWords + (rest !== 0 ? 1 : 0));
    const words = this.words;
    const base = page * WORDS_PER_PAGE;
    let n = 0;
    for (let i = 0; i < WORDS_PER_PAGE; i++) {
      let w = scratchWords[i];
      if (or) w |= words[base + i];
      words[base + i] = w;
      if (w !== 0) n += popcount32(w);
    }
    return n;
  }

  private checkPageBuf(buf: Buffer): void {
    if (buf.length !== BM_PAGE_BYTES) {
      throw new RangeError(`bitmap page must be ${BM_PAGE_BYTES} bytes, got ${buf.length}`);
    }
  }

  private checkPage(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.pageCount) {
      throw new RangeError(`page ${page} outside [0, ${this.pageCount})`);
    }
  }

  private checkBound(name: string, v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > this.totalBits) {
      throw new RangeError(`${name} ${v} outside [0, ${this.totalBits}]`);
    }
  }

  private checkRange(first: number, endExclusive: number): void {
    if (
      !Number.isInteger(first) ||
      !Number.isInteger(endExclusive) ||
      first < 0 ||
      endExclusive > this.totalBits ||
      endExclusive < 0 ||
      first > this.totalBits
    ) {
      throw new RangeError(
        `bit range [${first}, ${endExclusive}) outside [0, ${this.totalBits}] or not integers`,
      );
    }
  }
}
