import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';
import fc from 'fast-check';
import t from 'tap';

import { APPLICATION_ID, FORMAT_VERSION } from '../../src/meta/schema.js';
import {
  MetaStore,
  UUID_JUST_CREATED,
  type GenerationUuids,
  type MetaFlags,
} from '../../src/meta/store.js';
import { GiB, metaErrorOf, MiB, tempDir, type TestContext } from './helpers.js';

const FLAGS: Array<keyof MetaFlags> = [
  'consistent',
  'wasUpToDate',
  'primaryIndicator',
  'crashedPrimary',
  'peerOutdated',
  'alClean',
  'alDisabled',
  'connectedIndicator',
  'fullSync',
];
const allFlags = (v: boolean): MetaFlags =>
  Object.fromEntries(FLAGS.map((k) => [k, v])) as unknown as MetaFlags;

const page = (fill: (p: Buffer) => void): Buffer => {
  const p = Buffer.alloc(4096);
  fill(p);
  return p;
};

function fresh(t: TestContext, sizeBytes = 10 * GiB) {
  const file = path.join(tempDir(t), 'r0.meta');
  const store = MetaStore.create(file, { sizeBytes, nodeId: 1, alExtents: 61 });
  t.teardown(() => store.close());
  return { file, store };
}

t.test('create-md writes the documented fresh superblock', async (t) => {
  const { file, store } = fresh(t);
  const sb = store.superblock();
  t.equal(sb.formatVersion, FORMAT_VERSION);
  t.equal(sb.sizeBytes, 10 * GiB);
  t.equal(sb.nodeId, 1);
  t.equal(sb.alExtents, 61);
  t.equal(sb.clean, true);
  t.same(sb.uuids, { current: UUID_JUST_CREATED, bitmap: 0n, history: [0n, 0n] });
  t.same(sb.flags, { ...allFlags(false), alClean: true });
  t.ok(sb.deviceUuid > 0n && sb.deviceUuid < 2n ** 64n);
  t.ok(!Number.isNaN(Date.parse(sb.createdAt)));
  t.same(store.readAl(), { slots: new Array(61).fill(null), transaction: 0 });
  t.same([...store.readBitmapPages()], []);
  t.throws(() => {
    (sb.flags as MetaFlags).consistent = true;
  }, TypeError);
  store.close();
  t.same(fs.readdirSync(path.dirname(file)), ['r0.meta'], 'no temporary or WAL files left');
});

t.test('every superblock field round-trips through close and open', async (t) => {
  const { file, store } = fresh(t);
  store.close();
  const reopen = (readOnly = false) => MetaStore.open(file, { readOnly });
  for (const k of FLAGS) {
    const only = { ...allFlags(false), [k]: true };
    const w = reopen();
    w.setFlags(only);
    t.same(w.superblock().flags, only, `${k} alone (cached)`);
    w.close();
    const r = reopen(true);
    t.same(r.superblock().flags, only, `${k} alone (on disk)`);
    r.close();
  }
  const uuids: GenerationUuids = {
    current: 0xffff_ffff_ffff_ffffn,
    bitmap: 0x8000_0000_0000_0000n,
    history: [0x8000_0000_0000_0001n, 0x0123_4567_89ab_cdefn],
  };
  const w = reopen();
  w.setUuids(uuids);
  w.setSize(3 * GiB + 512);
  w.markUnclean();
  w.setFlags(allFlags(true));
  w.close();
  const r = reopen(true);
  const sb = r.superblock();
  t.same(sb.uuids, uuids);
  t.equal(sb.sizeBytes, 3 * GiB + 512);
  t.equal(sb.clean, false);
  t.same(sb.flags, allFlags(true));
  t.equal(sb.nodeId, 1);
  t.equal(sb.alExtents, 61);
  r.close();
  const w2 = reopen();
  w2.markClean();
  w2.setFlags({ fullSync: false, consistent: false });
  w2.close();
  const r2 = reopen(true);
  t.equal(r2.superblock().clean, true);
  t.same(r2.superblock().flags, { ...allFlags(true), fullSync: false, consistent: false });
  r2.close();
});

t.test('UUIDs of any 64-bit value round-trip (property)', async (t) => {
  const { file, store } = fresh(t);
  store.close();
  const s = MetaStore.open(file);
  t.teardown(() => s.close());
  const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
  fc.assert(
    fc.property(u64, u64, u64, u64, (current, bitmap, h0, h1) => {
      const u: GenerationUuids = { current, bitmap, history: [h0, h1] };
      s.setUuids(u);
      const row = (s as unknown as { db: Database.Database }).db
        .prepare('SELECT current_uuid, bitmap_uuid, history0_uuid, history1_uuid FROM superblock')
        .get() as Record<string, string>;
      const fromDisk = Object.values(row).map((h) => BigInt(`0x${h}`));
      return (
        fromDisk[0] === current &&
        fromDisk[1] === bitmap &&
        fromDisk[2] === h0 &&
        fromDisk[3] === h1 &&
        s.superblock().uuids.current === current
      );
    }),
    { numRuns: 40 },
  );
  t.throws(() => s.setUuids({ current: -1n, bitmap: 0n, history: [0n, 0n] }), RangeError);
  t.throws(() => s.setUuids({ current: 2n ** 64n, bitmap: 0n, history: [0n, 0n] }), RangeError);
});

t.test('argument checks are RangeErrors, not MetaErrors', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'm');
  t.throws(() => MetaStore.create(file, { sizeBytes: -1, nodeId: 0, alExtents: 7 }), RangeError);
  t.throws(() => MetaStore.create(file, { sizeBytes: 1.5, nodeId: 0, alExtents: 7 }), RangeError);
  t.throws(() => MetaStore.create(file, { sizeBytes: 0, nodeId: -1, alExtents: 7 }), RangeError);
  t.throws(() => MetaStore.create(file, { sizeBytes: 0, nodeId: 0, alExtents: 0 }), RangeError);
  t.throws(() => MetaStore.create(file, { sizeBytes: 0, nodeId: 0, alExtents: 65535 }), RangeError);
  t.notOk(fs.existsSync(file));
  const s = MetaStore.create(file, { sizeBytes: 0, nodeId: 0, alExtents: 7 });
  t.teardown(() => s.close());
  t.throws(() => s.setSize(-4096), RangeError);
  t.throws(() => s.setFlags({ bogus: true } as unknown as Partial<MetaFlags>), TypeError);
  t.throws(() => s.resetAl(0), RangeError);
});

t.test('create refuses to overwrite; --force overwrites', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r0.meta');
  const first = MetaStore.create(file, {
    sizeBytes: GiB,
    nodeId: 0,
    alExtents: 7,
    deviceUuid: 0x1234n,
  });
  first.commitAl({ slots: [{ slot: 0, extent: 9 }], bitmapPages: [] });
  const createdAt = first.superblock().createdAt;
  first.close();
  const e = metaErrorOf(() => MetaStore.create(file, { sizeBytes: GiB, nodeId: 0, alExtents: 7 }));
  t.equal(e.code, 'EEXIST');
  t.equal(
    e.message,
    `metadata already exists at ${file} (created ${createdAt}, current UUID 0000000000000004); use --force to overwrite`,
  );
  const again = MetaStore.open(file);
  t.equal(again.superblock().deviceUuid, 0x1234n, 'the refused create changed nothing');
  t.same(again.readAl().slots[0], 9);
  again.close();

  fs.writeFileSync(`${file}-wal`, Buffer.alloc(8192, 0x5a)); // a stale WAL must not be replayed
  const second = MetaStore.create(file, {
    sizeBytes: 2 * GiB,
    nodeId: 1,
    alExtents: 11,
    force: true,
    deviceUuid: 0x5678n,
  });
  t.equal(second.superblock().deviceUuid, 0x5678n);
  t.equal(second.superblock().sizeBytes, 2 * GiB);
  t.same(second.readAl(), { slots: new Array(11).fill(null), transaction: 0 });
  second.close();
  t.same(fs.readdirSync(dir), ['r0.meta']);

  const junk = path.join(dir, 'junk');
  fs.writeFileSync(junk, 'not metadata at all');
  const j = metaErrorOf(() => MetaStore.create(junk, { sizeBytes: GiB, nodeId: 0, alExtents: 7 }));
  t.equal(j.code, 'EEXIST');
  t.equal(
    j.message,
    `${junk} already exists and is not empty (19 bytes, not urbd metadata); use --force to overwrite`,
  );
  MetaStore.create(junk, { sizeBytes: GiB, nodeId: 0, alExtents: 7, force: true }).close();

  const empty = path.join(dir, 'empty');
  fs.writeFileSync(empty, '');
  MetaStore.create(empty, { sizeBytes: GiB, nodeId: 0, alExtents: 7 }).close();

  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub);
  const d = metaErrorOf(() =>
    MetaStore.create(sub, { sizeBytes: GiB, nodeId: 0, alExtents: 7, force: true }),
  );
  t.equal(d.code, 'EEXIST');
  t.equal(
    d.message,
    `${sub} is a directory; meta-disk must name a file (create-md never removes a directory)`,
  );
  const nodir = path.join(dir, 'nope', 'm');
  const n = metaErrorOf(() => MetaStore.create(nodir, { sizeBytes: GiB, nodeId: 0, alExtents: 7 }));
  t.equal(n.code, 'ENOENT');
  t.equal(
    n.message,
    `cannot create metadata at ${nodir}: directory ${path.dirname(nodir)} does not exist; create it first`,
  );

  const open = MetaStore.open(file);
  const b = metaErrorOf(() =>
    MetaStore.create(file, { sizeBytes: GiB, nodeId: 0, alExtents: 7, force: true }),
  );
  t.equal(b.code, 'EBUSY');
  t.equal(b.message, `metadata at ${file} is already open in this process; close it first`);
  open.close();
});

t.test('wipe-md removes the store and its side files', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r0.meta');
  const s = MetaStore.create(file, { sizeBytes: GiB, nodeId: 0, alExtents: 7 });
  const busy = metaErrorOf(() => MetaStore.wipe(file));
  t.equal(busy.code, 'EBUSY');
  s.close();
  fs.writeFileSync(`${file}-shm`, '');
  MetaStore.wipe(file);
  t.same(fs.readdirSync(dir), []);
  const e = metaErrorOf(() => MetaStore.wipe(file));
  t.equal(e.code, 'ENOENT');
  t.equal(e.message, `no metadata at ${file}; nothing to wipe`);

  const data = path.join(dir, 'disk.img');
  fs.writeFileSync(data, Buffer.alloc(8192, 1));
  const f = metaErrorOf(() => MetaStore.wipe(data));
  t.equal(f.code, 'ENOTMETA');
  t.equal(
    f.message,
    `${data} is not urbd metadata; refusing to delete it (check meta-disk in the resource file)`,
  );
  const other = path.join(dir, 'other.sqlite');
  new Database(other).exec('CREATE TABLE t (x)');
  t.equal(metaErrorOf(() => MetaStore.wipe(other)).code, 'ENOTMETA');
  MetaStore.wipe(data, { force: true });
  t.notOk(fs.existsSync(data));
});

t.test('activity log: commit, read back, validation, reset', async (t) => {
  const { file, store } = fresh(t, GiB);
  store.commitAl({
    slots: [
      { slot: 0, extent: 5 },
      { slot: 60, extent: 2 ** 31 },
    ],
    bitmapPages: [],
  });
  store.commitAl({
    slots: [
      { slot: 0, extent: 6 },
      { slot: 1, extent: 5 }, // 5 moves from slot 0 to slot 1 in the same transaction
    ],
    bitmapPages: [],
  });
  const want = new Array(61).fill(null);
  want[0] = 6;
  want[1] = 5;
  want[60] = 2 ** 31;
  t.same(store.readAl(), { slots: want, transaction: 2 });
  t.throws(() => store.commitAl({ slots: [{ slot: 61, extent: 1 }], bitmapPages: [] }), RangeError);
  t.throws(() => store.commitAl({ slots: [{ slot: 2, extent: 6 }], bitmapPages: [] }), {
    message: 'extent 6 is already in activity-log slot 0',
  });
  t.throws(
    () =>
      store.commitAl({
        slots: [
          { slot: 2, extent: 7 },
          { slot: 3, extent: 7 },
        ],
        bitmapPages: [],
      }),
    RangeError,
  );
  t.throws(() => store.commitAl({ slots: [{ slot: 2, extent: -1 }], bitmapPages: [] }), RangeError);
  t.throws(
    () =>
      store.commitAl({
        slots: [{ slot: 2, extent: 7 }],
        bitmapPages: [{ page: 8, data: null }], // a 1 GiB device has 8 pages: 0..7
      }),
    RangeError,
  );
  t.equal(store.readAl().transaction, 2, 'refused transactions change nothing');
  store.commitAl({
    slots: [{ slot: 1, extent: null }],
    bitmapPages: [{ page: 0, data: page((p) => (p[0] = 0x81)) }],
  });
  store.close();
  const s = MetaStore.open(file);
  t.teardown(() => s.close());
  want[1] = null;
  t.same(s.readAl(), { slots: want, transaction: 3 });
  t.same(
    [...s.readBitmapPages()].map((p) => [p.page, p.data[0]]),
    [[0, 0x81]],
  );
  s.resetAl(13);
  t.same(s.readAl(), { slots: new Array(13).fill(null), transaction: 4 });
  t.equal(s.superblock().alExtents, 13);
  s.close();
  const r = MetaStore.open(file, { readOnly: true });
  t.same(r.readAl(), { slots: new Array(13).fill(null), transaction: 4 });
  r.close();
});

t.test('bitmap pages: write, delete, zero pages, paging, shrink', async (t) => {
  const { store } = fresh(t, 100 * 128 * MiB); // 100 pages
  const pages = Array.from({ length: 70 }, (_, i) => ({
    page: i + 10,
    data: page((p) => p.writeUInt32LE(i + 1, 8)),
  }));
  store.writeBitmapPages(pages);
  const back = [...store.readBitmapPages()];
  t.equal(back.length, 70, 'more pages than one read batch come back');
  t.same(
    back.map((p) => [p.page, p.data.readUInt32LE(8)]),
    pages.map((p, i) => [p.page, i + 1]),
  );
  store.writeBitmapPages([
    { page: 10, data: null },
    { page: 11, data: Buffer.alloc(4096) },
  ]);
  t.equal(store.readBitmapPage(10), null);
  t.equal(store.readBitmapPage(11), null, 'an all-zero page is not stored');
  t.equal(store.dump().bitmap.pages, 68);
  t.throws(() => store.writeBitmapPages([{ page: 100, data: null }]), RangeError);
  t.throws(() => store.writeBitmapPages([{ page: 1, data: Buffer.alloc(100) }]), RangeError);

  // Shrink to 20.5 pages: pages 21.. go, page 20 keeps only its first half.
  store.writeBitmapPages([{ page: 20, data: Buffer.alloc(4096, 0xff) }]);
  store.setSize(20 * 128 * MiB + 64 * MiB);
  t.same(
    [...store.readBitmapPages()].map((p) => p.page),
    [12, 13, 14, 15, 16, 17, 18, 19, 20],
  );
  const last = store.readBitmapPage(20)!;
  t.equal(
    last.subarray(0, 2048).every((b) => b === 0xff),
    true,
  );
  t.equal(
    last.subarray(2048).every((b) => b === 0),
    true,
  );
  store.setSize(200 * 128 * MiB); // growing leaves the bitmap alone
  t.equal(store.dump().bitmap.pages, 9);
});

t.test('dump-md: JSON-able, UUIDs as hex, set-bit ranges', async (t) => {
  const { file, store } = fresh(t, 2 * 128 * MiB + 4096 * 5); // 2 pages + 5 bits
  store.setUuids({ current: 0xabcn, bitmap: 2n ** 63n, history: [1n, 0n] });
  store.commitAl({
    slots: [
      { slot: 3, extent: 70 },
      { slot: 1, extent: 4 },
    ],
    bitmapPages: [
      { page: 0, data: page((p) => ((p[0] = 0b1110_0001), (p[4095] = 0x80))) },
      {
        page: 1,
        data: page((p) => {
          p[0] = 0xff;
          p[1] = 0x01;
          p[4095] = 0xc0;
        }),
      },
      { page: 2, data: page((p) => (p[0] = 0xff)) }, // bits 65536..65543, but only 5 exist
    ],
  });
  const d = store.dump();
  const json = JSON.parse(JSON.stringify(d)) as typeof d;
  t.same(json, {
    path: file,
    formatVersion: 1,
    sizeBytes: 2 * 128 * MiB + 4096 * 5,
    nodeId: 1,
    deviceUuid: `0x${store.superblock().deviceUuid.toString(16).toUpperCase().padStart(16, '0')}`,
    uuids: {
      current: '0x0000000000000ABC',
      bitmap: '0x8000000000000000',
      history: ['0x0000000000000001', '0x0000000000000000'],
    },
    flags: { ...allFlags(false), alClean: true },
    alExtents: 61,
    clean: true,
    createdAt: store.superblock().createdAt,
    activityLog: {
      transaction: 1,
      extents: [4, 70],
      slots: [
        { slot: 1, extent: 4 },
        { slot: 3, extent: 70 },
      ],
    },
    bitmap: {
      bits: 65541,
      pages: 3,
      setBits: 4 + 1 + 9 + 2 + 5,
      ranges: [
        [0, 1],
        [5, 8],
        [32767, 32777], // runs continue across the page boundary
        [65534, 65541],
      ],
    },
  });
});

t.test('atomically: all or nothing, on disk and in the cache', async (t) => {
  const { file, store } = fresh(t, GiB);
  t.throws(
    () =>
      store.atomically(() => {
        store.setFlags({ consistent: true });
        store.commitAl({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
        store.writeBitmapPages([{ page: 0, data: Buffer.alloc(4096, 1) }]);
        store.resetAl(9);
        throw new Error('boom');
      }),
    { message: 'boom' },
  );
  t.equal(store.superblock().flags.consistent, false);
  t.equal(store.superblock().alExtents, 61);
  t.same(store.readAl(), { slots: new Array(61).fill(null), transaction: 0 });
  t.equal(store.readBitmapPage(0), null);
  const r = store.atomically(() => {
    store.setFlags({ consistent: true });
    store.commitAl({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
    return 42;
  });
  t.equal(r, 42);
  store.close();
  const s = MetaStore.open(file);
  t.equal(s.superblock().flags.consistent, true);
  t.equal(s.readAl().slots[0], 1);
  s.close();
});

t.test('beforeCommit runs once before each outermost transaction', async (t) => {
  const { store } = fresh(t, GiB);
  const seen: boolean[] = [];
  store.beforeCommit = () => seen.push(store.superblock().flags.consistent);
  store.setFlags({ consistent: true });
  t.same(seen, [false], 'before the commit, not after');
  store.setFlags({ consistent: true });
  t.same(seen, [false], 'nothing to commit: not called');
  store.atomically(() => {
    store.setFlags({ consistent: false });
    store.writeBitmapPages([{ page: 0, data: Buffer.alloc(4096, 1) }]);
  });
  t.same(seen, [false, true], 'once for the transaction, not for the writes inside it');
  store.commitAl({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
  t.equal(seen.length, 3);
  // A deferred AL commit does not hold the loop for a sync: nothing to send off first.
  await store.commitAlDeferred({ slots: [{ slot: 1, extent: 2 }], bitmapPages: [] });
  t.equal(seen.length, 3, 'not before a deferred AL commit');
  store.setFlags({ consistent: true });
  t.equal(seen.length, 4, 'and again before the next commit that syncs');
  store.close();
});

t.test('a read-only store refuses writes; a closed store refuses everything', async (t) => {
  const { file, store } = fresh(t, GiB);
  store.close();
  const r = MetaStore.open(file, { readOnly: true });
  const e = metaErrorOf(() => r.setFlags({ consistent: true }));
  t.equal(e.code, 'EACCES');
  t.equal(e.message, `metadata at ${file} is open read-only; open it read-write to change it`);
  t.equal(metaErrorOf(() => r.markUnclean()).code, 'EACCES');
  t.equal(metaErrorOf(() => r.commitAl({ slots: [], bitmapPages: [] })).code, 'EACCES');
  t.ok(r.dump());
  r.close();
  r.close(); // idempotent
  t.throws(() => r.superblock() && r.readAl(), { message: `metadata store ${file} is closed` });
  t.same(fs.readdirSync(path.dirname(file)), ['r0.meta'], 'the reader left no -wal/-shm');
});

t.test('the file is ours by application_id and user_version', async (t) => {
  const { file, store } = fresh(t, GiB);
  store.close();
  const db = new Database(file, { readonly: true });
  t.equal(db.pragma('application_id', { simple: true }), APPLICATION_ID);
  t.equal(db.pragma('user_version', { simple: true }), FORMAT_VERSION);
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});
