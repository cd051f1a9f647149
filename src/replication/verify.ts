/**
 * Online verify (drbd.md §6.6): the VerifySource walks [start, stop) in chunks and the two
 * nodes compare per-block digests of each chunk. Differing blocks are marked out of sync on
 * both nodes; nothing is copied (a later handshake resyncs them).
 *
 * False positives from application writes: the node that hashes first does so holding the
 * chunk's range in the change lock and queues its digests on the data socket before it lets
 * go, so every overlapping write it started earlier was sent before them and every later one
 * after them. The node that compares takes the same range in its change lock when the digest
 * frame arrives, in frame order with replicated writes (receiver.ts takes theirs the same
 * way), so it reads its block after the earlier writes landed and before the later ones. For
 * that to hold the digests must travel the way writes do: from the Primary. A VerifySource
 * that is Secondary beside a Primary therefore asks for the Primary's digests and compares
 * them itself (mode 'peer-digests').
 */
import { createHash, getHashes } from 'node:crypto';
import { BM_BLOCK_SIZE } from '../meta/bitmap.js';
import type { Held, IntervalLock } from './interval-lock.js';

/** Blocks per request: one digest each; the answer's bitset is 8 bytes. */
export const VERIFY_CHUNK_BLOCKS = 64;
export const VERIFY_CHUNK = VERIFY_CHUNK_BLOCKS * BM_BLOCK_SIZE;
/** Requests in flight at once: enough to keep both disks and the link busy. */
export const VERIFY_WINDOW = 16;

const CRC32C_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), which DRBD setups often name and Node's crypto lacks. */
export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC32C_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The digest named in verify-alg / csums-alg, normalised (lower case); throws a one-line
 * error naming some that work when this node cannot compute it.
 */
export function checkDigestAlg(name: string, option = 'verify-alg'): string {
  const alg = name.toLowerCase();
  if (alg === 'crc32c') return alg;
  if (getHashes().includes(alg)) {
    try {
      createHash(alg);
      return alg;
    } catch {
      // listed but refused by this OpenSSL (e.g. a FIPS build): fall through to the error
    }
  }
  throw new Error(
    `${option} "${name}" is not a digest this node offers (try sha256, sha1, md5 or crc32c)`,
  );
}

function digestLength(alg: string): number {
  return alg === 'crc32c' ? 4 : createHash(alg).digest().length;
}

/** The digest of each 4 KiB block of `buf` (the last one may be short), concatenated. */
export function blockDigests(buf: Uint8Array, alg: string): Buffer {
  const n = Math.ceil(buf.length / BM_BLOCK_SIZE);
  const len = digestLength(alg);
  const out = Buffer.allocUnsafe(n * len);
  for (let i = 0; i < n; i++) {
    const block = buf.subarray(i * BM_BLOCK_SIZE, Math.min(buf.length, (i + 1) * BM_BLOCK_SIZE));
    if (alg === 'crc32c') out.writeUInt32BE(crc32c(block), i * len);
    else
      createHash(alg)
        .update(block)
        .digest()
        .copy(out, i * len);
  }
  return out;
}

/**
 * The indexes of the blocks whose digests differ. Digest lists of different lengths (a peer
 * with another algorithm or a short read) make every block differ: never "in sync" by accident.
 */
export function differingBlocks(a: Uint8Array, b: Uint8Array, blocks: number): number[] {
  const out: number[] = [];
  if (a.length !== b.length || blocks === 0 || a.length % blocks !== 0) {
    for (let i = 0; i < blocks; i++) out.push(i);
    return out;
  }
  const len = a.length / blocks;
  for (let i = 0; i < blocks; i++) {
    for (let j = i * len; j < (i + 1) * len; j++) {
      if (a[j] !== b[j]) {
        out.push(i);
        break;
      }
    }
  }
  return out;
}

/** Block indexes as a bitset (bit i of byte i>>3, low bit first). */
export function blocksToBits(blocks: readonly number[], count: number): Buffer {
  const out = Buffer.alloc(Math.ceil(count / 8));
  for (const b of blocks) out[b >> 3]! |= 1 << (b & 7);
  return out;
}

/** The inverse of blocksToBits, ignoring bits at or past `count`. */
export function bitsToBlocks(bits: Uint8Array, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count && i >> 3 < bits.length; i++)
    if (bits[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

/** Sorted block numbers merged into runs [first, end). */
export function blockRuns(blocks: readonly number[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const b of blocks) {
    const last = runs[runs.length - 1];
    if (last && last[1] === b) last[1] = b + 1;
    else runs.push([b, b + 1]);
  }
  return runs;
}

/**
 * The byte range a verify covers: `--start` / `--stop` are 512-byte sectors (as drbdadm's),
 * start rounded down and stop up to 4 KiB, stop past the end meaning the end. Throws when
 * nothing is left.
 */
export function verifyRange(
  startSector: number | undefined,
  stopSector: number | undefined,
  sizeBytes: number,
): { start: number; stop: number } {
  const start = Math.floor(((startSector ?? 0) * 512) / BM_BLOCK_SIZE) * BM_BLOCK_SIZE;
  const stopBytes = stopSector === undefined ? sizeBytes : stopSector * 512;
  const stop = Math.min(sizeBytes, Math.ceil(stopBytes / BM_BLOCK_SIZE) * BM_BLOCK_SIZE);
  if (start >= stop) {
    throw new Error(
      `nothing to verify: start sector ${startSector ?? 0} is not before stop sector ${
        stopSector ?? sizeBytes / 512
      } (the device has ${Math.floor(sizeBytes / 512)} sectors)`,
    );
  }
  return { start, stop };
}

/** The chunk of a walk at `pos`: [pos, min(pos + chunk, stop)). */
export function chunkAt(pos: number, stop: number): number {
  return Math.min(VERIFY_CHUNK, stop - pos);
}

export type VerifyMode = 'source-digests' | 'peer-digests';

export interface VerifySourceIo {
  read(buf: Buffer, offset: number): Promise<void>;
  /** Queue a request on the data socket (digests empty in 'peer-digests' mode). */
  request(offset: number, length: number, digests: Buffer): void;
  /** Blocks [first, end) (device block numbers) differ. */
  found(first: number, end: number): void;
  /** 'peer-digests': tell the peer which blocks of a chunk differ. */
  result(offset: number, length: number, mismatch: Buffer): void;
  /** A chunk could not be compared (a read failed on either node). */
  failed(offset: number, length: number, error: string): void;
  finished(): void;
}

/** The VerifySource's walk: requests in order, VERIFY_WINDOW of them in flight. */
export class VerifySource {
  pos: number;
  verifiedBlocks = 0;
  foundBlocks = 0;
  readonly startedAt = Date.now();
  private inflight = new Map<number, number>();
  private stopped = false;

  constructor(
    private readonly lock: IntervalLock,
    readonly alg: string,
    readonly mode: VerifyMode,
    readonly start: number,
    readonly stop: number,
    private readonly io: VerifySourceIo,
  ) {
    this.pos = start;
  }

  /** Bytes of [start, stop) whose answer came back. */
  get doneBytes(): number {
    let pending = 0;
    for (const len of this.inflight.values()) pending += len;
    return this.pos - this.start - pending;
  }

  begin(): void {
    this.pump();
  }

  halt(): void {
    this.stopped = true;
  }

  private pump(): void {
    while (!this.stopped && this.inflight.size < VERIFY_WINDOW && this.pos < this.stop) {
      const offset = this.pos;
      const length = chunkAt(offset, this.stop);
      this.pos += length;
      this.inflight.set(offset, length);
      if (this.mode === 'peer-digests') {
        this.io.request(offset, length, Buffer.alloc(0));
        continue;
      }
      void withRange(this.lock, offset, length, async () => {
        const buf = Buffer.allocUnsafe(length);
        try {
          await this.io.read(buf, offset);
        } catch (err) {
          this.settle(offset, length, [], (err as { code?: string }).code ?? 'EIO');
          return;
        }
        // Queued before the range is let go (header).
        if (!this.stopped) this.io.request(offset, length, blockDigests(buf, this.alg));
      });
    }
    if (!this.stopped && this.pos >= this.stop && this.inflight.size === 0) {
      this.stopped = true;
      this.io.finished();
    }
  }

  /** The peer's answer: a mismatch bitset ('source-digests') or its digests ('peer-digests'). */
  onReply(
    offset: number,
    length: number,
    reply: { digests: Uint8Array; mismatch: Uint8Array; error: string },
  ): void {
    if (this.stopped || this.inflight.get(offset) !== length) return;
    const blocks = Math.ceil(length / BM_BLOCK_SIZE);
    if (reply.error !== '') return this.settle(offset, length, [], reply.error);
    if (this.mode === 'source-digests') {
      return this.settle(offset, length, bitsToBlocks(reply.mismatch, blocks), '');
    }
    const theirs = Buffer.from(reply.digests);
    // Taken now, in frame order with the replicated writes (header).
    void compareLocal(this.lock, this.io.read, this.alg, offset, length, theirs).then(
      (differ) => {
        if (this.stopped) return;
        if (differ.length > 0) this.io.result(offset, length, blocksToBits(differ, blocks));
        this.settle(offset, length, differ, '');
      },
      (err: Error) => this.settle(offset, length, [], (err as { code?: string }).code ?? 'EIO'),
    );
  }

  private settle(offset: number, length: number, differ: number[], error: string): void {
    if (this.stopped) return;
    this.inflight.delete(offset);
    const first = offset / BM_BLOCK_SIZE;
    if (error !== '') this.io.failed(offset, length, error);
    else {
      this.verifiedBlocks += Math.ceil(length / BM_BLOCK_SIZE);
      this.foundBlocks += differ.length;
      for (const [a, b] of blockRuns(differ)) this.io.found(first + a, first + b);
    }
    this.pump();
  }
}

/** Runs `fn` holding [offset, offset+length); the range is taken now, in call order. */
export function withRange<T>(
  lock: IntervalLock,
  offset: number,
  length: number,
  fn: () => Promise<T>,
): Promise<T> {
  const held = lock.acquire(offset, length);
  const run = async (h: Held): Promise<T> => {
    try {
      return await fn();
    } finally {
      lock.release(h);
    }
  };
  return held instanceof Promise ? held.then(run) : run(held);
}

/** Reads and hashes the chunk under its range (taken now) and compares with `theirs`. */
export function compareLocal(
  lock: IntervalLock,
  read: (buf: Buffer, offset: number) => Promise<void>,
  alg: string,
  offset: number,
  length: number,
  theirs: Uint8Array,
): Promise<number[]> {
  return withRange(lock, offset, length, async () => {
    const buf = Buffer.allocUnsafe(length);
    await read(buf, offset);
    return differingBlocks(blockDigests(buf, alg), theirs, Math.ceil(length / BM_BLOCK_SIZE));
  });
}
