/**
 * The metadata store: one SQLite database per resource and node (schema.ts), holding the
 * superblock, the activity log and the bitmap pages (drbd.md §3, §4).
 *
 * Durability: WAL mode with synchronous=FULL, so every write method is one transaction that is
 * on stable storage when it returns (one fsync of the WAL; SQLite adds a checkpoint now and
 * then). Methods that change nothing write nothing. The one exception is commitAlDeferred(),
 * for the write path: it writes its transaction at once but returns a promise for its
 * durability (an fdatasync of the -wal file on the libuv thread pool), so the event loop is
 * not blocked for the sync.
 *
 * Exclusivity: a read-write store runs in `locking_mode=EXCLUSIVE` and takes a write lock at
 * open (`BEGIN IMMEDIATE`) that it keeps until close(), so a second writer — or a reader — in
 * any process gets EBUSY. A read-only store holds a shared lock while open, so no writer can
 * open meanwhile. Within one process a file is open at most once (POSIX locks belong to the
 * process, and closing any descriptor of the file would drop them); a second open is EBUSY too.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import nodePath from 'node:path';

import Database from 'better-sqlite3';

import { busyMessage, isBusy, MetaError, toMetaError } from './errors.js';
import {
  BITS_PER_PAGE,
  clearBits,
  deviceBits,
  devicePages,
  PAGE_BYTES,
  setRanges,
} from './pages.js';
import {
  APPLICATION_ID,
  FORMAT_VERSION,
  SCHEMA_SQL,
  TABLES,
  type SuperblockRow,
} from './schema.js';
import {
  checkAlExtents,
  checkNodeId,
  checkSize,
  checkUuid,
  FLAG_NAMES,
  flagsToBits,
  freezeSuperblock,
  rowToSuperblock,
  uuidToColumn,
  UUID_JUST_CREATED,
  type GenerationUuids,
  type MetaFlags,
  type Superblock,
} from './superblock.js';
import { formatUuid, newUuid } from './uuid.js';

export { MetaError, type MetaErrorCode } from './errors.js';
export { UUID_JUST_CREATED, type GenerationUuids, type MetaFlags, type Superblock };

export interface MetaOpenOptions {
  /** Inspect only: no exclusive claim, every write method throws. */
  readOnly?: boolean;
  /** How long to wait for another process's lock before EBUSY (default 250 ms). */
  busyTimeoutMs?: number;
  /** Resource name, used in messages ("run urbdadm create-md RES"). */
  resource?: string;
}

export interface MetaCreateOptions {
  sizeBytes: number;
  nodeId: number;
  alExtents: number;
  /** Overwrite whatever is at the path (never a directory, never a store in use). */
  force?: boolean;
  /** Fixed device UUID (tests); random otherwise. */
  deviceUuid?: bigint;
  resource?: string;
}

export interface AlSlotChange {
  slot: number;
  /** The extent now in the slot; null empties it. */
  extent: number | null;
}

export interface BitmapPageWrite {
  page: number;
  /** 4096 bytes, or null for an all-zero page (an all-zero buffer is stored as null too). */
  data: Buffer | null;
}

export interface AlTransaction {
  slots: AlSlotChange[];
  /** Bitmap pages that must be durable before the extents leaving the log leave it. */
  bitmapPages: BitmapPageWrite[];
}

/** `dump-md`: everything in the store, JSON-able (bigints as `0x…` hex strings). */
export interface MetaDump {
  path: string;
  formatVersion: number;
  sizeBytes: number;
  nodeId: number;
  deviceUuid: string;
  uuids: { current: string; bitmap: string; history: [string, string] };
  flags: MetaFlags;
  alExtents: number;
  clean: boolean;
  createdAt: string;
  activityLog: {
    transaction: number;
    /** Active extents, ascending. */
    extents: number[];
    slots: Array<{ slot: number; extent: number }>;
  };
  bitmap: {
    /** Bits of the device (one per 4 KiB). */
    bits: number;
    /** Pages stored (non-zero pages). */
    pages: number;
    setBits: number;
    /** Runs of set bits: [startBit, endBitExclusive). */
    ranges: Array<[number, number]>;
  };
}

const DEFAULT_BUSY_TIMEOUT_MS = 250;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);
const PAGE_BATCH = 64;

/** Files open in this process, by "dev:ino". */
const openHere = new Map<string, string>();

const fileKey = (st: fs.Stats): string => `${st.dev}:${st.ino}`;
const hex = (u: bigint): string => `0x${formatUuid(u)}`;
const createHint = (resource: string | undefined): string =>
  `run urbdadm create-md ${resource ?? '<resource>'}`;
const restoreHint =
  'restore it from a backup, or re-create it with create-md --force (a full resync follows)';

function errno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** stat() for open/wipe: missing, unreachable, a directory or a special file are MetaErrors. */
function statExisting(path: string, missing: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MetaError('ENOENT', missing);
    if (code === 'EACCES' || code === 'EPERM') {
      throw new MetaError(
        'EACCES',
        `permission denied looking up ${path} (a directory on the way is not searchable); run as root or fix the directory permissions`,
      );
    }
    throw toMetaError(err, path, 'looking up');
  }
  if (st.isDirectory()) {
    throw new MetaError(
      'ENOTMETA',
      `${path} is a directory, not urbd metadata; meta-disk must name a file`,
    );
  }
  if (!st.isFile()) {
    throw new MetaError(
      'ENOTMETA',
      `${path} is not a regular file; urbd keeps its metadata in a file (meta-disk)`,
    );
  }
  return st;
}

function checkNotOpenHere(st: fs.Stats, path: string): void {
  if (openHere.has(fileKey(st))) {
    throw new MetaError(
      'EBUSY',
      `metadata at ${path} is already open in this process; close it first`,
    );
  }
}

function canAccess(path: string, mode: number): boolean {
  try {
    fs.accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

function checkAccess(path: string, readOnly: boolean): void {
  if (!canAccess(path, fs.constants.R_OK)) {
    throw new MetaError(
      'EACCES',
      `permission denied reading ${path}; run as root or as the file's owner`,
    );
  }
  if (readOnly) return;
  if (!canAccess(path, fs.constants.W_OK)) {
    throw new MetaError(
      'EACCES',
      `permission denied writing ${path}; run as root or as the file's owner (read-only inspection works without it)`,
    );
  }
  const dir = nodePath.dirname(path);
  if (!canAccess(dir, fs.constants.W_OK | fs.constants.X_OK)) {
    throw new MetaError(
      'EACCES',
      `permission denied writing in ${dir}, where SQLite keeps ${nodePath.basename(path)}-wal; run as root or fix the directory permissions`,
    );
  }
}

function fileSize(path: string): number {
  try {
    return fs.statSync(path).size;
  } catch {
    return 0;
  }
}

type Inspection =
  | { kind: 'empty' }
  | { kind: 'foreign' }
  | { kind: 'damaged'; why: string }
  | { kind: 'sqlite'; applicationId: number; userVersion: number };

/**
 * Looks at the first 100 bytes (the SQLite header) before SQLite does, to tell "not a database"
 * from "a database cut short". Only called on a file this process does not hold open.
 */
function inspectFile(path: string, size: number): Inspection {
  if (size === 0) return { kind: 'empty' };
  const head = Buffer.alloc(Math.min(100, size));
  const fd = fs.openSync(path, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  const n = Math.min(head.length, SQLITE_MAGIC.length);
  if (!head.subarray(0, n).equals(SQLITE_MAGIC.subarray(0, n))) return { kind: 'foreign' };
  if (head.length < 100) {
    return { kind: 'damaged', why: `truncated: ${size} bytes, shorter than its header` };
  }
  const raw = head.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) {
    return { kind: 'damaged', why: `its header is damaged (page size ${raw})` };
  }
  // With an empty or absent WAL the file alone must hold every page the header counts.
  if (fileSize(`${path}-wal`) === 0) {
    const pages = head.readUInt32BE(28);
    const countValid = pages > 0 && head.readUInt32BE(24) === head.readUInt32BE(92);
    if (size % pageSize !== 0 || (countValid && size < pages * pageSize)) {
      const want = countValid ? pages * pageSize : Math.ceil(size / pageSize) * pageSize;
      return { kind: 'damaged', why: `truncated: ${size} of ${want} bytes` };
    }
  }
  return {
    kind: 'sqlite',
    applicationId: head.readUInt32BE(68),
    userVersion: head.readUInt32BE(60),
  };
}

/** True when another process holds the database (a store open there, read-write or not). */
function heldElsewhere(path: string): boolean {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return false;
  } catch (err) {
    return isBusy(err);
  } finally {
    try {
      db?.close();
    } catch {
      // a probe that could not even open has nothing to close
    }
  }
}

function fsyncPath(path: string, flags: string): void {
  const fd = fs.openSync(path, flags);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function unlinkIfExists(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err;
  }
}

function checkPageWrite(p: BitmapPageWrite, pageCount: number): void {
  if (!Number.isSafeInteger(p.page) || p.page < 0) {
    throw new RangeError(`bitmap page number must be a non-negative integer, got ${p.page}`);
  }
  if (p.page >= pageCount) {
    throw new RangeError(
      `bitmap page ${p.page} is past the end of the device (${pageCount} pages)`,
    );
  }
  if (p.data !== null && (!Buffer.isBuffer(p.data) || p.data.length !== PAGE_BYTES)) {
    throw new RangeError(`bitmap page ${p.page} must be a ${PAGE_BYTES}-byte Buffer or null`);
  }
}

interface Statements {
  setUuids: Database.Statement<[string, string, string, string]>;
  setFlags: Database.Statement<[number]>;
  setSize: Database.Statement<[number]>;
  setClean: Database.Statement<[number]>;
  setAlExtents: Database.Statement<[number, number]>;
  setAlTransaction: Database.Statement<[number]>;
  deleteSlot: Database.Statement<[number]>;
  insertSlot: Database.Statement<[number, number]>;
  deleteAllSlots: Database.Statement<[]>;
  putPage: Database.Statement<[number, Buffer]>;
  deletePage: Database.Statement<[number]>;
  getPage: Database.Statement<[number], { data: Buffer }>;
  pagesAfter: Database.Statement<[number, number], { page: number; data: Buffer }>;
  deletePagesFrom: Database.Statement<[number]>;
  countPages: Database.Statement<[], { n: number }>;
}

export class MetaStore {
  private sb: Readonly<Superblock>;
  /** slot → extent, the cached activity log. */
  private alSlots: Array<number | null>;
  /** extent → slot, for validating commits without a scan. */
  private slotOf: Map<number, number>;
  private alTransaction: number;
  private closed = false;
  private readonly st: Statements;
  private readonly txn: (fn: () => unknown) => unknown;
  /** Our own descriptor of the -wal file, for commitAlDeferred's fdatasync; opened at first use. */
  private wal: { fd: number; dev: bigint; ino: bigint } | null = null;
  /** fdatasyncs on `wal.fd` not yet returned: the fd is closed only once they have. */
  private walSyncs = 0;
  /** The durability of the last deferred commit (each one waits for the ones before it). */
  private walTail: Promise<void> = Promise.resolve();
  /** A deferred commit whose sync failed: every later one is refused (its outcome is unknown). */
  private walFailure: Error | null = null;
  /** The sync level of the next commit: FULL but for a deferred AL commit. */
  private synchronous: 'NORMAL' | 'FULL' = 'FULL';
  /**
   * Called before a transaction that syncs starts (not before one nested in another, nor a
   * deferred AL commit): it holds the event loop for its sync, so whatever the caller queued
   * before it (peer frames waiting for the end of the tick) can be sent off first.
   */
  beforeCommit: (() => void) | undefined;

  private constructor(
    readonly path: string,
    private readonly db: Database.Database,
    private readonly key: string,
    readonly readOnly: boolean,
    sb: Superblock,
    slots: Array<number | null>,
    alTransaction: number,
  ) {
    this.sb = freezeSuperblock(sb);
    this.alSlots = slots;
    this.slotOf = new Map();
    slots.forEach((e, s) => {
      if (e !== null) this.slotOf.set(e, s);
    });
    this.alTransaction = alTransaction;
    const sbSet = (cols: string) => `UPDATE superblock SET ${cols} WHERE id = 1`;
    this.st = {
      setUuids: db.prepare(
        sbSet('current_uuid = ?, bitmap_uuid = ?, history0_uuid = ?, history1_uuid = ?'),
      ),
      setFlags: db.prepare(sbSet('flags = ?')),
      setSize: db.prepare(sbSet('size_bytes = ?')),
      setClean: db.prepare(sbSet('clean = ?')),
      setAlExtents: db.prepare(sbSet('al_extents = ?, al_transaction = ?')),
      setAlTransaction: db.prepare(sbSet('al_transaction = ?')),
      deleteSlot: db.prepare('DELETE FROM al_slot WHERE slot = ?'),
      insertSlot: db.prepare('INSERT INTO al_slot (slot, extent) VALUES (?, ?)'),
      deleteAllSlots: db.prepare('DELETE FROM al_slot'),
      putPage: db.prepare('INSERT OR REPLACE INTO bitmap_page (page, data) VALUES (?, ?)'),
      deletePage: db.prepare('DELETE FROM bitmap_page WHERE page = ?'),
      getPage: db.prepare('SELECT data FROM bitmap_page WHERE page = ?'),
      pagesAfter: db.prepare(
        'SELECT page, data FROM bitmap_page WHERE page > ? ORDER BY page LIMIT ?',
      ),
      deletePagesFrom: db.prepare('DELETE FROM bitmap_page WHERE page >= ?'),
      countPages: db.prepare('SELECT count(*) AS n FROM bitmap_page'),
    };
    this.txn = db.transaction((fn: () => unknown) => fn());
    openHere.set(key, path);
  }

  /**
   * create-md: a fresh store at `path` (current UUID = UUID_JUST_CREATED, the rest 0, only
   * al-clean set, clean, empty log, no bitmap pages), opened read-write. Built as
   * `path.tmp-XXXX` and renamed over `path`, so a crash leaves either the old file or the new.
   */
  static create(path: string, init: MetaCreateOptions): MetaStore {
    checkSize(init.sizeBytes);
    checkNodeId(init.nodeId);
    checkAlExtents(init.alExtents);
    const deviceUuid = init.deviceUuid ?? newUuid();
    checkUuid(deviceUuid, 'device UUID');
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(path);
    } catch (err) {
      const code = errno(err);
      if (code !== 'ENOENT') {
        if (code === 'EACCES' || code === 'EPERM') {
          throw new MetaError(
            'EACCES',
            `permission denied looking up ${path}; run as root or fix the directory permissions`,
          );
        }
        if (code !== 'ENOTDIR') throw toMetaError(err, path, 'looking up');
      }
    }
    if (st !== undefined) {
      if (st.isDirectory()) {
        throw new MetaError(
          'EEXIST',
          `${path} is a directory; meta-disk must name a file (create-md never removes a directory)`,
        );
      }
      if (!st.isFile()) {
        throw new MetaError(
          'ENOTMETA',
          `${path} is not a regular file; urbd keeps its metadata in a file (meta-disk)`,
        );
      }
      checkNotOpenHere(st, path);
      if (st.size > 0 && init.force !== true) {
        throw new MetaError('EEXIST', describeExisting(path, st.size));
      }
      if (st.size > 0 && heldElsewhere(path)) throw new MetaError('EBUSY', busyMessage(path));
    }
    const dir = nodePath.dirname(path);
    if (!fs.existsSync(dir)) {
      throw new MetaError(
        'ENOENT',
        `cannot create metadata at ${path}: directory ${dir} does not exist; create it first`,
      );
    }
    if (!canAccess(dir, fs.constants.W_OK | fs.constants.X_OK)) {
      throw new MetaError(
        'EACCES',
        `permission denied creating metadata in ${dir}; run as root or fix the directory permissions`,
      );
    }
    const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      const db = new Database(tmp);
      try {
        db.pragma('locking_mode = EXCLUSIVE');
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${FORMAT_VERSION}`);
        db.transaction(() => {
          db.exec(SCHEMA_SQL);
          const zero = uuidToColumn(0n);
          db.prepare(
            `INSERT INTO superblock (id, size_bytes, node_id, device_uuid, current_uuid, bitmap_uuid,
               history0_uuid, history1_uuid, flags, al_extents, al_transaction, clean, created_at)
             VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, ?)`,
          ).run(
            init.sizeBytes,
            init.nodeId,
            uuidToColumn(deviceUuid),
            uuidToColumn(UUID_JUST_CREATED),
            zero,
            zero,
            zero,
            flagsToBits({ ...noFlags(), alClean: true }),
            init.alExtents,
            new Date().toISOString(),
          );
        })();
      } finally {
        db.close(); // checkpoints: everything is in `tmp` itself now
      }
      fsyncPath(tmp, 'r+');
      // A -wal left by the old file must never be replayed into the new one.
      unlinkIfExists(`${path}-wal`);
      unlinkIfExists(`${path}-shm`);
      fs.renameSync(tmp, path);
      fsyncPath(dir, 'r');
    } catch (err) {
      for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) {
        try {
          fs.unlinkSync(f);
        } catch {
          // best effort
        }
      }
      throw toMetaError(err, path, 'creating');
    }
    return MetaStore.open(path, { resource: init.resource });
  }

  /** Opens an existing store; every problem is a MetaError with a one-line message. */
  static open(path: string, opts: MetaOpenOptions = {}): MetaStore {
    const readOnly = opts.readOnly === true;
    const st = statExisting(path, `no metadata at ${path}; ${createHint(opts.resource)}`);
    checkNotOpenHere(st, path);
    checkAccess(path, readOnly);
    let ins: Inspection;
    try {
      ins = inspectFile(path, st.size);
    } catch (err) {
      throw toMetaError(err, path, 'reading');
    }
    if (ins.kind === 'empty') {
      throw new MetaError(
        'ENOTMETA',
        `${path} is empty, not urbd metadata; ${createHint(opts.resource)}`,
      );
    }
    if (ins.kind === 'foreign') {
      throw new MetaError(
        'ENOTMETA',
        `${path} is not urbd metadata (not an SQLite database); check meta-disk in the resource file, or ${createHint(opts.resource)}`,
      );
    }
    if (ins.kind === 'damaged') {
      throw new MetaError('ECORRUPT', `metadata at ${path} is ${ins.why}; ${restoreHint}`);
    }
    // A read-only store still opens the file read-write when it may, so that the last one to
    // close cleans up the -wal/-shm files; `query_only` keeps it from writing anything else.
    const sqliteReadOnly =
      readOnly &&
      !(
        canAccess(path, fs.constants.W_OK) &&
        canAccess(nodePath.dirname(path), fs.constants.W_OK | fs.constants.X_OK)
      );
    let db: Database.Database;
    try {
      db = new Database(path, {
        readonly: sqliteReadOnly,
        fileMustExist: true,
        timeout: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      });
    } catch (err) {
      throw toMetaError(err, path, 'opening');
    }
    try {
      if (readOnly) db.pragma('query_only = ON');
      else db.pragma('locking_mode = EXCLUSIVE');
      const appId = db.pragma('application_id', { simple: true }) as number;
      if (appId !== APPLICATION_ID) {
        throw new MetaError(
          'ENOTMETA',
          `${path} is an SQLite database but not urbd metadata (application_id 0x${(appId >>> 0).toString(16)}); check meta-disk in the resource file`,
        );
      }
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version !== FORMAT_VERSION) {
        throw new MetaError(
          'EVERSION',
          version > FORMAT_VERSION
            ? `metadata at ${path} has format version ${version}, this urbd reads version ${FORMAT_VERSION}; use the newer urbd that wrote it`
            : `metadata at ${path} has format version ${version}, this urbd reads version ${FORMAT_VERSION}; re-create it with create-md --force (a full resync follows)`,
        );
      }
      if (!readOnly) {
        const mode = db.pragma('journal_mode = WAL', { simple: true });
        if (mode !== 'wal') {
          throw new MetaError('EIO', `cannot switch metadata at ${path} to WAL mode (${mode})`);
        }
        db.pragma('synchronous = FULL');
        // The exclusive claim: in EXCLUSIVE locking mode the write lock is never released.
        db.exec('BEGIN IMMEDIATE');
        db.exec('COMMIT');
        // Nobody else can have the file open now, so a -shm left by a reader is stale.
        try {
          fs.unlinkSync(`${path}-shm`);
        } catch {
          // usually absent
        }
      }
      const check = db.pragma('quick_check') as Array<{ quick_check: string }>;
      if (check.length !== 1 || check[0]?.quick_check !== 'ok') {
        throw new MetaError(
          'ECORRUPT',
          `metadata at ${path} failed its integrity check (${check[0]?.quick_check ?? 'no result'}); ${restoreHint}`,
        );
      }
      const tables = new Set(
        (
          db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as Array<{
            name: string;
          }>
        ).map((r) => r.name),
      );
      for (const t of TABLES) {
        if (!tables.has(t)) {
          throw new MetaError(
            'ECORRUPT',
            `metadata at ${path} lacks its ${t} table; ${restoreHint}`,
          );
        }
      }
      const row = db.prepare('SELECT * FROM superblock WHERE id = 1').get() as
        SuperblockRow | undefined;
      if (row === undefined) {
        throw new MetaError('ECORRUPT', `metadata at ${path} has no superblock; ${restoreHint}`);
      }
      const sb = rowToSuperblock(row, version);
      if (typeof sb === 'string') {
        throw new MetaError(
          'ECORRUPT',
          `metadata at ${path} has a bad superblock (${sb}); ${restoreHint}`,
        );
      }
      const slots: Array<number | null> = new Array<number | null>(sb.alExtents).fill(null);
      for (const r of db.prepare('SELECT slot, extent FROM al_slot').all() as Array<{
        slot: number;
        extent: number;
      }>) {
        if (r.slot >= sb.alExtents || !Number.isSafeInteger(r.extent)) {
          throw new MetaError(
            'ECORRUPT',
            `metadata at ${path} has a bad activity log (slot ${r.slot} of ${sb.alExtents}); ${restoreHint}`,
          );
        }
        slots[r.slot] = r.extent;
      }
      return new MetaStore(path, db, fileKey(st), readOnly, sb, slots, row.al_transaction);
    } catch (err) {
      db.close();
      throw toMetaError(err, path, 'opening');
    }
  }

  /**
   * wipe-md: removes the store and its -wal/-shm files. Refuses a file that is not urbd
   * metadata unless `force`, and a store that is open anywhere.
   */
  static wipe(path: string, opts: { force?: boolean } = {}): void {
    const st = statExisting(path, `no metadata at ${path}; nothing to wipe`);
    checkNotOpenHere(st, path);
    if (opts.force !== true) {
      let ins: Inspection;
      try {
        ins = inspectFile(path, st.size);
      } catch (err) {
        throw toMetaError(err, path, 'reading');
      }
      if (
        ins.kind === 'foreign' ||
        (ins.kind === 'sqlite' && ins.applicationId !== APPLICATION_ID)
      ) {
        throw new MetaError(
          'ENOTMETA',
          `${path} is not urbd metadata; refusing to delete it (check meta-disk in the resource file)`,
        );
      }
    }
    if (st.size > 0 && heldElsewhere(path)) throw new MetaError('EBUSY', busyMessage(path));
    try {
      fs.unlinkSync(path);
      unlinkIfExists(`${path}-wal`);
      unlinkIfExists(`${path}-shm`);
      fsyncPath(nodePath.dirname(path), 'r');
    } catch (err) {
      throw toMetaError(err, path, 'wiping');
    }
  }

  /** The cached superblock (deep-frozen; every change replaces it). */
  superblock(): Readonly<Superblock> {
    return this.sb;
  }

  /** Rotates the generation UUIDs; durable before return. */
  setUuids(u: GenerationUuids): void {
    checkUuid(u.current, 'current UUID');
    checkUuid(u.bitmap, 'bitmap UUID');
    checkUuid(u.history[0], 'history[0] UUID');
    checkUuid(u.history[1], 'history[1] UUID');
    const cur = this.sb.uuids;
    if (
      cur.current === u.current &&
      cur.bitmap === u.bitmap &&
      cur.history[0] === u.history[0] &&
      cur.history[1] === u.history[1]
    ) {
      this.checkWritable();
      return;
    }
    this.write('writing UUIDs', () => {
      this.st.setUuids.run(
        uuidToColumn(u.current),
        uuidToColumn(u.bitmap),
        uuidToColumn(u.history[0]),
        uuidToColumn(u.history[1]),
      );
    });
    this.update({
      uuids: { current: u.current, bitmap: u.bitmap, history: [u.history[0], u.history[1]] },
    });
  }

  setFlags(f: Partial<MetaFlags>): void {
    const next: MetaFlags = { ...this.sb.flags };
    for (const [k, v] of Object.entries(f)) {
      if (!(FLAG_NAMES as string[]).includes(k)) throw new TypeError(`unknown metadata flag ${k}`);
      if (v === undefined) continue;
      if (typeof v !== 'boolean') throw new TypeError(`metadata flag ${k} must be a boolean`);
      next[k as keyof MetaFlags] = v;
    }
    const bits = flagsToBits(next);
    this.checkWritable();
    if (bits === flagsToBits(this.sb.flags)) return;
    this.write('writing flags', () => this.st.setFlags.run(bits));
    this.update({ flags: next });
  }

  /**
   * Records the agreed device size. Shrinking drops the bitmap past the new end (whole pages,
   * and the tail bits of the new last page).
   */
  setSize(bytes: number): void {
    checkSize(bytes);
    this.checkWritable();
    if (bytes === this.sb.sizeBytes) return;
    const shrink = bytes < this.sb.sizeBytes;
    this.write('writing the device size', () => {
      this.st.setSize.run(bytes);
      if (!shrink) return;
      const pages = devicePages(bytes);
      this.st.deletePagesFrom.run(pages);
      const tail = deviceBits(bytes) % BITS_PER_PAGE;
      if (tail !== 0) {
        const last = this.st.getPage.get(pages - 1);
        if (last !== undefined) {
          const data = Buffer.from(last.data);
          clearBits(data, tail, BITS_PER_PAGE);
          this.putPage({ page: pages - 1, data });
        }
      }
    });
    this.update({ sizeBytes: bytes });
  }

  /** "84 unclean": a daemon has attached; an unclean stop is detectable from now on. */
  markUnclean(): void {
    this.setClean(false);
  }

  /** "08 clean": an orderly stop. */
  markClean(): void {
    this.setClean(true);
  }

  private setClean(clean: boolean): void {
    this.checkWritable();
    if (this.sb.clean === clean) return;
    this.write(clean ? 'marking clean' : 'marking unclean', () =>
      this.st.setClean.run(clean ? 1 : 0),
    );
    this.update({ clean });
  }

  readAl(): { slots: Array<number | null>; transaction: number } {
    this.checkOpen();
    return { slots: this.alSlots.slice(), transaction: this.alTransaction };
  }

  /**
   * One activity-log transaction: the bitmap pages, then the slot changes, committed together
   * and durable on return (one WAL fsync). An extent may be in one slot only.
   */
  commitAl(tx: AlTransaction): void {
    this.checkWritable();
    const nextTx = this.checkAl(tx);
    this.writeAl(tx, nextTx);
    this.applyAl(tx, nextTx);
  }

  /**
   * commitAl() without blocking for the sync: the transaction is written to the WAL now (with
   * `synchronous=NORMAL` for this one transaction: no fsync), and the returned promise
   * resolves once an fdatasync of the -wal file on the libuv thread pool has returned, so the
   * transaction is on stable storage. Until then it is in the WAL and visible to every read
   * of this store, but a power loss may take it away. A refusal (bad arguments, a full disk,
   * a lock) throws like commitAl(), with nothing written; a failed sync rejects, and then the
   * outcome is unknown (the frames may or may not reach the disk), so every later deferred
   * commit is refused with the same error.
   *
   * Why this is as durable as commitAl() once the promise resolves: in WAL mode a commit is
   * its frames appended to the -wal file (the last one marked as a commit, each checksummed
   * over all before it); SQLite's own FULL commit is exactly those writes plus an fsync of
   * that file. fdatasync is per inode, so syncing it through our own descriptor makes every
   * frame written so far durable, this transaction's included. The descriptor is checked to
   * be the file at `path-wal` after every commit: SQLite replaces or deletes the -wal only
   * when the connection closes (after a checkpoint into the database) or leaves WAL mode; a
   * checkpoint (automatic, after a commit) syncs the WAL and the database itself. Syncs are
   * reported in commit order: a transaction counts as durable only if every earlier deferred
   * one is, because Linux reports a failed writeback to one fsync per descriptor, and a later
   * fdatasync may succeed over frames that were lost (and recovery stops at the first bad
   * frame, taking every later transaction with it).
   */
  commitAlDeferred(tx: AlTransaction): Promise<void> {
    this.checkWritable();
    if (this.walFailure !== null) throw this.walFailure;
    if (this.db.inTransaction) {
      throw new Error('commitAlDeferred cannot run inside atomically(): it must commit alone');
    }
    const nextTx = this.checkAl(tx);
    this.setSynchronous('NORMAL');
    try {
      this.writeAl(tx, nextTx);
    } finally {
      this.setSynchronous('FULL');
    }
    this.applyAl(tx, nextTx);
    let fd: number;
    try {
      fd = this.walFd();
    } catch (err) {
      // Written, and no way to make it durable: as unknown an outcome as a failed fsync.
      this.walFailure = toMetaError(err, this.path, 'syncing the activity log') as Error;
      throw this.walFailure;
    }
    return this.syncWal(fd);
  }

  /** Validates an AL transaction against the log; returns its transaction number. */
  private checkAl(tx: AlTransaction): number {
    const n = this.sb.alExtents;
    const changedSlots = new Set<number>();
    const incoming = new Set<number>();
    for (const c of tx.slots) {
      if (!Number.isInteger(c.slot) || c.slot < 0 || c.slot >= n) {
        throw new RangeError(`activity-log slot ${c.slot} is out of range (al-extents ${n})`);
      }
      if (changedSlots.has(c.slot)) {
        throw new RangeError(`activity-log slot ${c.slot} changes twice in one transaction`);
      }
      changedSlots.add(c.slot);
      if (c.extent === null) continue;
      if (!Number.isSafeInteger(c.extent) || c.extent < 0) {
        throw new RangeError(`activity-log extent must be a non-negative integer, got ${c.extent}`);
      }
      if (incoming.has(c.extent)) {
        throw new RangeError(`extent ${c.extent} would occupy two activity-log slots`);
      }
      incoming.add(c.extent);
    }
    for (const e of incoming) {
      const s = this.slotOf.get(e);
      if (s !== undefined && !changedSlots.has(s)) {
        throw new RangeError(`extent ${e} is already in activity-log slot ${s}`);
      }
    }
    const pageCount = devicePages(this.sb.sizeBytes);
    for (const p of tx.bitmapPages) checkPageWrite(p, pageCount);
    return this.alTransaction + 1;
  }

  private writeAl(tx: AlTransaction, nextTx: number): void {
    this.write('committing an activity-log transaction', () => {
      for (const p of tx.bitmapPages) this.putPage(p);
      for (const c of tx.slots) this.st.deleteSlot.run(c.slot);
      for (const c of tx.slots) if (c.extent !== null) this.st.insertSlot.run(c.slot, c.extent);
      this.st.setAlTransaction.run(nextTx);
    });
  }

  /** The cached log after a commit. */
  private applyAl(tx: AlTransaction, nextTx: number): void {
    for (const c of tx.slots) {
      const old = this.alSlots[c.slot];
      if (old !== null && old !== undefined && this.slotOf.get(old) === c.slot) {
        this.slotOf.delete(old);
      }
    }
    for (const c of tx.slots) {
      this.alSlots[c.slot] = c.extent;
      if (c.extent !== null) this.slotOf.set(c.extent, c.slot);
    }
    this.alTransaction = nextTx;
  }

  /**
   * PRAGMA synchronous takes effect when the statement is prepared (and only outside a
   * transaction), so it is run through exec(), never as a cached statement.
   */
  private setSynchronous(level: 'NORMAL' | 'FULL'): void {
    try {
      this.db.exec(`PRAGMA synchronous = ${level}`);
      this.synchronous = level;
    } catch (err) {
      throw toMetaError(err, this.path, 'setting the sync level');
    }
  }

  /**
   * Our descriptor of the -wal file, opened at first use and checked against the path every
   * time, so that we never sync a file SQLite no longer writes.
   */
  private walFd(): number {
    const walPath = `${this.path}-wal`;
    const st = fs.statSync(walPath, { bigint: true });
    if (this.wal !== null) {
      if (this.wal.dev !== st.dev || this.wal.ino !== st.ino) {
        throw new MetaError(
          'EIO',
          `${walPath} was replaced while the metadata was open; detach and check the metadata`,
        );
      }
      return this.wal.fd;
    }
    // Read-only is enough for fdatasync on Linux, and this descriptor must never write.
    const fd = fs.openSync(walPath, 'r');
    try {
      const fst = fs.fstatSync(fd, { bigint: true });
      if (fst.dev !== st.dev || fst.ino !== st.ino) {
        throw new MetaError('EIO', `${walPath} changed while it was being opened`);
      }
      // SQLite syncs the directory at the first sync of a -wal it created; a deferred commit
      // may be the first, so the -wal's name is made durable here, once.
      fsyncPath(nodePath.dirname(walPath), 'r');
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    this.wal = { fd, dev: st.dev, ino: st.ino };
    return fd;
  }

  private syncWal(fd: number): Promise<void> {
    this.walSyncs++;
    const mine = new Promise<void>((resolve, reject) => {
      fs.fdatasync(fd, (err) => {
        // The fd stays open while a sync on it runs: closing it could hand its number to
        // another file, which the sync would then flush instead.
        if (--this.walSyncs === 0 && this.closed) this.closeWal();
        if (err) reject(err);
        else resolve();
      });
    });
    mine.catch(() => {}); // reported through `done`, after the earlier syncs
    const done = this.walTail
      .then(() => mine)
      .catch((err: unknown) => {
        this.walFailure ??= toMetaError(err, this.path, 'syncing the activity log') as Error;
        throw this.walFailure;
      });
    this.walTail = done;
    return done;
  }

  private closeWal(): void {
    if (this.wal === null) return;
    const { fd } = this.wal;
    this.wal = null;
    try {
      fs.closeSync(fd);
    } catch {
      // nothing was written through it
    }
  }

  /** Empties the activity log (after apply-al), optionally with a new number of slots. */
  resetAl(alExtents?: number): void {
    const n = alExtents ?? this.sb.alExtents;
    checkAlExtents(n);
    const nextTx = this.alTransaction + 1;
    this.write('resetting the activity log', () => {
      this.st.deleteAllSlots.run();
      this.st.setAlExtents.run(n, nextTx);
    });
    this.alSlots = new Array<number | null>(n).fill(null);
    this.slotOf = new Map();
    this.alTransaction = nextTx;
    if (n !== this.sb.alExtents) this.update({ alExtents: n });
  }

  /** The stored (non-zero) bitmap pages in ascending order, read a few at a time. */
  *readBitmapPages(): Generator<{ page: number; data: Buffer }> {
    this.checkOpen();
    let after = -1;
    for (;;) {
      let rows: Array<{ page: number; data: Buffer }>;
      try {
        rows = this.st.pagesAfter.all(after, PAGE_BATCH);
      } catch (err) {
        throw toMetaError(err, this.path, 'reading the bitmap');
      }
      for (const r of rows) yield r;
      if (rows.length < PAGE_BATCH) return;
      after = rows[rows.length - 1]!.page;
    }
  }

  /** One stored page, or null when it is all zero (absent). */
  readBitmapPage(page: number): Buffer | null {
    this.checkOpen();
    try {
      return this.st.getPage.get(page)?.data ?? null;
    } catch (err) {
      throw toMetaError(err, this.path, 'reading the bitmap');
    }
  }

  /** Writes bitmap pages in one durable transaction; null (or all-zero data) deletes a page. */
  writeBitmapPages(pages: BitmapPageWrite[]): void {
    this.checkWritable();
    const pageCount = devicePages(this.sb.sizeBytes);
    for (const p of pages) checkPageWrite(p, pageCount);
    if (pages.length === 0) return;
    this.write('writing the bitmap', () => {
      for (const p of pages) this.putPage(p);
    });
  }

  /**
   * Runs `fn` as one transaction: the store's write methods called inside it commit (and
   * sync) together when it returns, or not at all when it throws.
   */
  atomically<T>(fn: () => T): T {
    this.checkWritable();
    const saved = {
      sb: this.sb,
      alSlots: this.alSlots.slice(),
      slotOf: new Map(this.slotOf),
      alTransaction: this.alTransaction,
    };
    if (!this.db.inTransaction) this.beforeCommit?.();
    try {
      return this.txn(fn) as T;
    } catch (err) {
      this.sb = saved.sb;
      this.alSlots = saved.alSlots;
      this.slotOf = saved.slotOf;
      this.alTransaction = saved.alTransaction;
      throw toMetaError(err, this.path, 'writing');
    }
  }

  dump(): MetaDump {
    this.checkOpen();
    const sb = this.sb;
    const slots: Array<{ slot: number; extent: number }> = [];
    this.alSlots.forEach((extent, slot) => {
      if (extent !== null) slots.push({ slot, extent });
    });
    const bits = deviceBits(sb.sizeBytes);
    const { ranges, count } = setRanges(this.readBitmapPages(), bits);
    let stored: number;
    try {
      stored = this.st.countPages.get()?.n ?? 0;
    } catch (err) {
      throw toMetaError(err, this.path, 'reading the bitmap');
    }
    return {
      path: this.path,
      formatVersion: sb.formatVersion,
      sizeBytes: sb.sizeBytes,
      nodeId: sb.nodeId,
      deviceUuid: hex(sb.deviceUuid),
      uuids: {
        current: hex(sb.uuids.current),
        bitmap: hex(sb.uuids.bitmap),
        history: [hex(sb.uuids.history[0]), hex(sb.uuids.history[1])],
      },
      flags: { ...sb.flags },
      alExtents: sb.alExtents,
      clean: sb.clean,
      createdAt: sb.createdAt,
      activityLog: {
        transaction: this.alTransaction,
        extents: slots.map((s) => s.extent).sort((a, b) => a - b),
        slots,
      },
      bitmap: { bits, pages: stored, setBits: count, ranges },
    };
  }

  /** Releases the claim; an orderly stop calls markClean() first. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    openHere.delete(this.key);
    try {
      // Closing checkpoints everything, deferred commits included, into the database file
      // and syncs it (the connection is at synchronous=FULL between transactions).
      this.db.close();
    } catch (err) {
      throw toMetaError(err, this.path, 'closing');
    } finally {
      if (this.walSyncs === 0) this.closeWal();
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  private putPage(p: BitmapPageWrite): void {
    if (p.data === null || p.data.equals(ZERO_PAGE)) this.st.deletePage.run(p.page);
    else this.st.putPage.run(p.page, p.data);
  }

  private write(doing: string, fn: () => void): void {
    if (this.synchronous === 'FULL' && !this.db.inTransaction) this.beforeCommit?.();
    try {
      this.txn(fn);
    } catch (err) {
      throw toMetaError(err, this.path, doing);
    }
  }

  private update(change: Partial<Superblock>): void {
    this.sb = freezeSuperblock({ ...this.sb, ...change });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`metadata store ${this.path} is closed`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) {
      throw new MetaError(
        'EACCES',
        `metadata at ${this.path} is open read-only; open it read-write to change it`,
      );
    }
  }
}

/** Every flag clear: the base that create-md and tests start from. */
export function noFlags(): MetaFlags {
  return {
    consistent: false,
    wasUpToDate: false,
    primaryIndicator: false,
    crashedPrimary: false,
    peerOutdated: false,
    alClean: false,
    alDisabled: false,
    connectedIndicator: false,
    fullSync: false,
  };
}

/** Why create-md without --force refuses a non-empty file. */
function describeExisting(path: string, size: number): string {
  try {
    const s = MetaStore.open(path, { readOnly: true, busyTimeoutMs: 0 });
    try {
      const sb = s.superblock();
      return `metadata already exists at ${path} (created ${sb.createdAt}, current UUID ${formatUuid(sb.uuids.current)}); use --force to overwrite`;
    } finally {
      s.close();
    }
  } catch (err) {
    if (!(err instanceof MetaError)) throw err;
    if (err.code === 'EBUSY') {
      return `metadata already exists at ${path} and is in use by another process; stop it first (then --force overwrites)`;
    }
    const what: Record<string, string> = {
      ENOTMETA: 'not urbd metadata',
      ECORRUPT: 'damaged urbd metadata',
      EVERSION: 'urbd metadata of another format version',
    };
    return `${path} already exists and is not empty (${size} bytes, ${what[err.code] ?? err.code}); use --force to overwrite`;
  }
}
