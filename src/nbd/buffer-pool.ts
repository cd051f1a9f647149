/**
 * Large request buffers, kept for reuse. A fresh 1 MiB Buffer is fresh memory: the kernel
 * faults in and zeroes 256 pages before the socket can fill it, which cost more CPU than the
 * rest of a 1 MiB WRITE's handling together. Clients repeat the same few sizes, so buffers
 * are kept per exact size, within a byte budget.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private kept = 0;

  constructor(
    /** Smaller buffers are not worth pooling: they come from Node's own slab. */
    private readonly minSize: number,
    private readonly maxBytes: number,
  ) {}

  get keptBytes(): number {
    return this.kept;
  }

  get(size: number): Buffer {
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.kept -= size;
      return buf;
    }
    return Buffer.allocUnsafe(size);
  }

  /** Hand back a buffer from `get` that nothing refers to any more. */
  put(buf: Buffer): void {
    const size = buf.length;
    if (size < this.minSize || this.kept + size > this.maxBytes) return;
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(buf);
    this.kept += size;
  }
}

/** Shared by every connection of the process. */
export const payloadPool = new BufferPool(64 * 1024 + 1, 256 * 1024 * 1024);
