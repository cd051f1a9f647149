/**
 * The seam between the NBD protocol and whatever holds the blocks. The NBD server knows
 * nothing else of ours: a plain file, a replicated resource or a test double that forgets
 * unflushed writes all sit behind this one interface.
 *
 * Failures are reported by rejecting with an Error whose `code` is an errno name
 * ('EIO', 'ENOSPC', 'EPERM', 'EINVAL', 'ENOTSUP', ...); the server maps it to the NBD error
 * value at the very edge, so targets never need to know the wire numbers.
 */
export interface BlockTarget {
  /** Size in bytes; fixed for the life of an NBD connection. */
  readonly size: number;
  readonly capabilities: TargetCapabilities;

  /** Fill `buf` entirely with the bytes at `offset`. Never more than MAX_PAYLOAD bytes. */
  read(buf: Buffer, offset: number): Promise<void>;
  /**
   * Write all of `data` at `offset`; with `fua` it is durable before this resolves. The
   * target must not touch `data` once the promise settles: the server reuses that memory.
   * Never more than MAX_PAYLOAD bytes: a longer NBD request arrives in parts (split.ts).
   */
  write(data: Payload, offset: number, fua: boolean): Promise<void>;
  /** Every write that completed before this call is durable when it resolves. */
  flush(): Promise<void>;
  /** A hint that the range is unused; its content is undefined afterwards. */
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /**
   * The range reads back as zeroes afterwards. `noHole`: it must stay allocated.
   * `fastZero`: reject with ENOTSUP at once unless zeroing is cheaper than writing.
   */
  zero(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  /** Prefetch hint. */
  cache?(offset: number, length: number): Promise<void>;
  /** Allocation of [offset, offset+length): contiguous extents covering at least the start. */
  extents?(offset: number, length: number): Promise<Extent[]>;
}

/**
 * Bytes to write: one Buffer, or the pieces they arrived in. A large NBD WRITE spans many
 * socket reads; handing over the pieces lets the disk take them with one writev and spares
 * a copy of every byte on the busiest path.
 */
export type Payload = Buffer | readonly Buffer[];

export function payloadLength(data: Payload): number {
  if (Buffer.isBuffer(data)) return data.length;
  let n = 0;
  for (const b of data) n += b.length;
  return n;
}

/** One Buffer with all of `data`, for targets that need it whole (copies only pieces). */
export function joinPayload(data: Payload): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return data.length === 1 ? data[0]! : Buffer.concat(data);
}

export interface TargetCapabilities {
  readOnly: boolean;
  flush: boolean;
  fua: boolean;
  trim: boolean;
  zero: boolean;
  fastZero: boolean;
  cache: boolean;
  /**
   * True only when a flush or FUA completed through any handle covers writes completed
   * through every other handle (one shared cache, or none). Gates NBD CAN_MULTI_CONN.
   */
  multiConn: boolean;
}

export interface ZeroOptions {
  noHole: boolean;
  fastZero: boolean;
  fua: boolean;
}

export interface Extent {
  length: number;
  /** Not allocated in the backing store. */
  hole: boolean;
  /** Known to read as zeroes. */
  zero: boolean;
}

/** An Error carrying an errno name, the one way targets report failure. */
export class TargetError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'TargetError';
  }
}
