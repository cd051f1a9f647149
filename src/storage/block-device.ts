import fs from 'node:fs';
import path from 'node:path';

/** What the kernel's request queue says about a block device, read from sysfs. */
export interface QueueLimits {
  /** Offsets and lengths of BLKDISCARD/BLKZEROOUT must be multiples of this. */
  logicalBlockSize: number;
  /** The device accepts discards at all. */
  discard: boolean;
  /** BLKZEROOUT is offloaded to the device instead of the kernel writing zero pages. */
  writeZeroes: boolean;
}

/**
 * Used when sysfs cannot be read: 4096 is a multiple of every logical block size Linux
 * supports in practice, discard is tried (and given up on at its first refusal), and zeroing is
 * not claimed to be fast.
 */
const UNKNOWN_LIMITS: QueueLimits = { logicalBlockSize: 4096, discard: true, writeZeroes: false };

/** Linux's dev_t layout: 12 bits of major and 20 of minor, split across the word. */
export function splitDevice(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

export function sysfsDir(rdev: bigint): string {
  const { major, minor } = splitDevice(rdev);
  return `/sys/dev/block/${major}:${minor}`;
}

/** Size in bytes without the addon: sysfs counts 512-byte sectors whatever the block size. */
export function sysfsDeviceSize(rdev: bigint): number {
  const sectors = fs.readFileSync(path.join(sysfsDir(rdev), 'size'), 'utf8');
  return Number(sectors.trim()) * 512;
}

export function queueLimits(rdev: bigint): QueueLimits {
  const queue = queueDir(rdev);
  if (queue === undefined) return UNKNOWN_LIMITS;
  const logicalBlockSize = readNumber(queue, 'logical_block_size');
  if (logicalBlockSize === undefined || logicalBlockSize <= 0) return UNKNOWN_LIMITS;
  return {
    logicalBlockSize,
    discard: (readNumber(queue, 'discard_max_bytes') ?? 1) > 0,
    writeZeroes: (readNumber(queue, 'write_zeroes_max_bytes') ?? 0) > 0,
  };
}

// A partition has no queue of its own; it lives in the directory of the whole disk.
function queueDir(rdev: bigint): string | undefined {
  try {
    const dev = fs.realpathSync(sysfsDir(rdev));
    for (const dir of [dev, path.dirname(dev)]) {
      const queue = path.join(dir, 'queue');
      if (fs.existsSync(queue)) return queue;
    }
  } catch {
    // sysfs missing or the device vanished: fall through to the cautious defaults.
  }
  return undefined;
}

function readNumber(dir: string, name: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(path.join(dir, name), 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
