import {
  type BlockTarget,
  type Extent,
  type Payload,
  payloadLength,
  type TargetCapabilities,
  TargetError,
  type ZeroOptions,
} from '../nbd/target.js';
import type { FileDisk } from '../storage/file-disk.js';
import type { DiskMeta } from './disk-meta.js';

/** What the write path asks of its resource before touching data. */
export interface IoGate {
  /** Undefined when application I/O may proceed, else why not (one line for the log). */
  ioRefusal(): string | undefined;
  /** The metadata could not record an activity-log change; the write was failed. */
  metadataFailed(err: Error): void;
}

/**
 * The block device a resource exports: DESIGN.md's write path. Every change to the data
 * (write, trim, zero) goes through the same steps:
 *   1. the resource must allow I/O (Primary with usable data);
 *   2. each 4 MiB extent touched is active in the activity log, durably, before any byte
 *      is written (a cold extent costs one metadata transaction);
 *   3. the blocks are marked out of sync for every peer that will not receive them (with
 *      no connection, that is all of them: the bitmap is what a later resync copies);
 *   4. the local write; the AL references are dropped when it is done.
 * Reads go to the local disk, which is the only copy until replication arrives.
 */
export class ResourceTarget implements BlockTarget {
  readonly capabilities: TargetCapabilities;

  constructor(
    private readonly gate: IoGate,
    private readonly disk: FileDisk,
    private readonly meta: DiskMeta,
  ) {
    this.capabilities = Object.freeze({ ...disk.capabilities, readOnly: false });
  }

  /** The agreed device size from the metadata, which may be below the backing disk's. */
  get size(): number {
    return this.meta.sizeBytes;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    const refusal = this.gate.ioRefusal();
    if (refusal !== undefined) return Promise.reject(new TargetError('EIO', refusal));
    return this.disk.read(buf, offset);
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    return this.change(offset, payloadLength(data), () => this.disk.write(data, offset, fua));
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.change(offset, length, () => this.disk.trim(offset, length, fua));
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    return this.change(offset, length, () => this.disk.zero(offset, length, opts));
  }

  flush(): Promise<void> {
    const refusal = this.gate.ioRefusal();
    if (refusal !== undefined) return Promise.reject(new TargetError('EIO', refusal));
    return this.disk.flush();
  }

  cache(offset: number, length: number): Promise<void> {
    return this.disk.cache ? this.disk.cache(offset, length) : Promise.resolve();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    if (!this.disk.extents) return Promise.resolve([{ length, hole: false, zero: false }]);
    return this.disk.extents(offset, length);
  }

  private change(offset: number, length: number, io: () => Promise<void>): Promise<void> {
    const refusal = this.gate.ioRefusal();
    // EPERM reaches the client as "operation not permitted": the device is not writable here.
    if (refusal !== undefined) return Promise.reject(new TargetError('EPERM', refusal));
    const failure = this.meta.failure;
    if (failure !== null) {
      this.gate.metadataFailed(failure);
      return Promise.reject(new TargetError('EIO', `metadata failed earlier: ${failure.message}`));
    }
    const al = this.meta.al;
    const activating = al.begin(offset, length);
    if (activating === undefined) return this.apply(offset, length, io);
    return activating.then(
      () => this.apply(offset, length, io),
      (err: Error) => {
        this.gate.metadataFailed(err);
        throw new TargetError('EIO', `activity log update failed: ${err.message}`);
      },
    );
  }

  private async apply(offset: number, length: number, io: () => Promise<void>): Promise<void> {
    try {
      this.meta.markOutOfSync(offset, length);
      await io();
    } finally {
      this.meta.al.end(offset, length);
    }
  }
}
