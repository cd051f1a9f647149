/**
 * The superblock as the rest of urbd sees it, and its mapping to the `superblock` row.
 * Field meanings follow DRBD 8.4's `struct meta_data_on_disk` (drbd.md §3.2).
 */
import type { SuperblockRow } from './schema.js';

/** Generation identifiers (drbd.md §3.4): unsigned 64-bit values, bit 0 = "was Primary". */
export interface GenerationUuids {
  current: bigint;
  bitmap: bigint;
  history: [bigint, bigint];
}

/** The persistent MDF_* flags (drbd.md §3.2). */
export interface MetaFlags {
  /** Disk is above Inconsistent. */
  consistent: boolean;
  /** Disk is above Outdated. */
  wasUpToDate: boolean;
  /** This node is/was Primary (or its peer is a diskless Primary). */
  primaryIndicator: boolean;
  /**
   * Was Primary and went down uncleanly (set by apply-al), so its last writes may be on this
   * disk only. Cleared once a connection has both disks UpToDate, or when a promotion starts
   * a new data generation (resource.ts, states.ts crashDealtWith).
   */
  crashedPrimary: boolean;
  /** The peer's disk is known Outdated or Inconsistent. */
  peerOutdated: boolean;
  /** The activity log needs no replay. */
  alClean: boolean;
  /** `al-updates no` was in effect: a crash as Primary costs a full resync. */
  alDisabled: boolean;
  /** Was connected. */
  connectedIndicator: boolean;
  /** A "set all bits" was in progress: redo it at attach. */
  fullSync: boolean;
}

export interface Superblock {
  formatVersion: number;
  /** Last agreed device size in bytes (DRBD's la_size). */
  sizeBytes: number;
  nodeId: number;
  /** Random per-device identifier, fixed at create-md. */
  deviceUuid: bigint;
  uuids: GenerationUuids;
  flags: MetaFlags;
  /** Slots of the activity log (al-extents). */
  alExtents: number;
  /** false while a daemon has the store attached ("84 unclean"); true after an orderly stop. */
  clean: boolean;
  /** ISO-8601 time of create-md. */
  createdAt: string;
}

/** A fresh create-md's current UUID (drbd.md §3.4). */
export const UUID_JUST_CREATED = 4n;

/** DRBD 8.4 MDF_* bit values; the `flags` column stores them. */
export const MDF = {
  consistent: 1 << 0,
  primaryIndicator: 1 << 1,
  connectedIndicator: 1 << 2,
  fullSync: 1 << 3,
  wasUpToDate: 1 << 4,
  peerOutdated: 1 << 5,
  crashedPrimary: 1 << 6,
  alClean: 1 << 7,
  alDisabled: 1 << 8,
} as const satisfies Record<keyof MetaFlags, number>;

export const FLAG_NAMES = Object.keys(MDF) as Array<keyof MetaFlags>;
const ALL_FLAG_BITS = FLAG_NAMES.reduce((acc, k) => acc | MDF[k], 0);

export function flagsToBits(f: MetaFlags): number {
  let bits = 0;
  for (const k of FLAG_NAMES) if (f[k]) bits |= MDF[k];
  return bits;
}

export function bitsToFlags(bits: number): MetaFlags {
  const f = {} as MetaFlags;
  for (const k of FLAG_NAMES) f[k] = (bits & MDF[k]) !== 0;
  return f;
}

/** Largest al-extents accepted (DRBD 9's limit). */
export const AL_EXTENTS_MAX = 65534;

const HEX16 = /^[0-9A-F]{16}$/;

export function uuidToColumn(u: bigint): string {
  checkUuid(u, 'UUID');
  return u.toString(16).toUpperCase().padStart(16, '0');
}

export function checkUuid(u: unknown, what: string): asserts u is bigint {
  if (typeof u !== 'bigint' || u < 0n || u > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`${what} must be an unsigned 64-bit bigint, got ${String(u)}`);
  }
}

export function checkSize(bytes: unknown): asserts bytes is number {
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`device size must be a non-negative integer of bytes, got ${bytes}`);
  }
}

export function checkAlExtents(n: unknown): asserts n is number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > AL_EXTENTS_MAX) {
    throw new RangeError(`al-extents must be an integer from 1 to ${AL_EXTENTS_MAX}, got ${n}`);
  }
}

export function checkNodeId(n: unknown): asserts n is number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0x7fff_ffff) {
    throw new RangeError(`node id must be a non-negative 31-bit integer, got ${n}`);
  }
}

/**
 * Validates a row read from disk (SQLite's CHECK constraints guard our own writes; this guards
 * against hand edits) and converts it. Returns a string naming the bad field instead of
 * throwing, so the caller can build a message with the path in it.
 */
export function rowToSuperblock(row: SuperblockRow, formatVersion: number): Superblock | string {
  const uuidCols = [
    'device_uuid',
    'current_uuid',
    'bitmap_uuid',
    'history0_uuid',
    'history1_uuid',
  ] as const;
  for (const c of uuidCols) {
    if (typeof row[c] !== 'string' || !HEX16.test(row[c])) return `${c} is not 16 hex digits`;
  }
  if (!Number.isSafeInteger(row.size_bytes) || row.size_bytes < 0) return 'size_bytes is invalid';
  if (!Number.isInteger(row.node_id) || row.node_id < 0) return 'node_id is invalid';
  if (!Number.isInteger(row.flags) || (row.flags & ~ALL_FLAG_BITS) !== 0 || row.flags < 0) {
    return `flags has unknown bits (0x${Number(row.flags).toString(16)})`;
  }
  if (!Number.isInteger(row.al_extents) || row.al_extents < 1 || row.al_extents > AL_EXTENTS_MAX) {
    return 'al_extents is out of range';
  }
  if (!Number.isSafeInteger(row.al_transaction) || row.al_transaction < 0) {
    return 'al_transaction is invalid';
  }
  if (row.clean !== 0 && row.clean !== 1) return 'clean is neither 0 nor 1';
  if (typeof row.created_at !== 'string') return 'created_at is not text';
  const hex = (s: string): bigint => BigInt(`0x${s}`);
  return {
    formatVersion,
    sizeBytes: row.size_bytes,
    nodeId: row.node_id,
    deviceUuid: hex(row.device_uuid),
    uuids: {
      current: hex(row.current_uuid),
      bitmap: hex(row.bitmap_uuid),
      history: [hex(row.history0_uuid), hex(row.history1_uuid)],
    },
    flags: bitsToFlags(row.flags),
    alExtents: row.al_extents,
    clean: row.clean === 1,
    createdAt: row.created_at,
  };
}

/** A deep-frozen copy: the store hands out its cached superblock without copying each time. */
export function freezeSuperblock(sb: Superblock): Readonly<Superblock> {
  const history = Object.freeze([sb.uuids.history[0], sb.uuids.history[1]]) as [bigint, bigint];
  return Object.freeze({
    ...sb,
    uuids: Object.freeze({ current: sb.uuids.current, bitmap: sb.uuids.bitmap, history }),
    flags: Object.freeze({ ...sb.flags }),
  });
}
