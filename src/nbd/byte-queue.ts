/**
 * Bytes received but not yet parsed. TCP splits headers and payloads anywhere, so requests
 * are cut out of a list of socket chunks. A request that lies inside one chunk is handed out
 * as a view of that chunk (no copy); only a request that straddles chunks is copied, once.
 * Node allocates a fresh Buffer for every socket read, so a view stays valid after later reads.
 */
const EMPTY = Buffer.alloc(0);

export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Bytes already consumed from chunks[0]. */
  private head = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Remove and return the next `n` bytes; the caller has checked `length >= n`. */
  take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    const avail = first.length - this.head;
    if (n <= avail) {
      const view = first.subarray(this.head, this.head + n);
      this.advance(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, n - filled);
      chunk.copy(out, filled, this.head, this.head + count);
      filled += count;
      this.advance(count);
    }
    return out;
  }

  /**
   * Remove the next `n` bytes as views of the chunks they arrived in: the caller hands them
   * on without joining them. A run inside one chunk comes back as a single Buffer.
   */
  takePieces(n: number): Buffer | Buffer[] {
    if (n === 0 || n <= this.chunks[0]!.length - this.head) return this.take(n);
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, left);
      out.push(chunk.subarray(this.head, this.head + count));
      left -= count;
      this.advance(count);
    }
    return out;
  }

  /** Drop up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.total > 0) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, n - dropped);
      this.advance(count);
      dropped += count;
    }
    return dropped;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.total = 0;
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
