import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';
import t from 'tap';

import { busyMessage } from '../../src/meta/errors.js';
import { MetaStore } from '../../src/meta/store.js';
import {
  GiB,
  holdInChild,
  metaErrorOf,
  openInChild,
  tempDir,
  type ChildResult,
  type TestContext,
} from './helpers.js';

const RESTORE =
  'restore it from a backup, or re-create it with create-md --force (a full resync follows)';

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A closed store with some bitmap pages, so the file spans many SQLite pages. */
function closedStore(t: TestContext, name = 'r0.meta'): string {
  const file = path.join(tempDir(t), name);
  const s = MetaStore.create(file, { sizeBytes: 4 * GiB, nodeId: 0, alExtents: 7 });
  s.writeBitmapPages(
    Array.from({ length: 12 }, (_, i) => ({ page: i * 2, data: Buffer.alloc(4096, i + 1) })),
  );
  s.commitAl({ slots: [{ slot: 2, extent: 40 }], bitmapPages: [] });
  s.close();
  return file;
}

function expectError(
  t: TestContext,
  fn: () => unknown,
  code: string,
  message: string | RegExp,
  what?: string,
): void {
  const e = metaErrorOf(fn);
  t.equal(e.code, code, `${what ?? 'code'}: ${e.message}`);
  if (typeof message === 'string') t.equal(e.message, message, what ?? 'message');
  else t.match(e.message, message, what ?? 'message');
  t.notMatch(e.message, /\n/, 'one line');
}

t.test('missing file, directory, empty file', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r0.meta');
  expectError(
    t,
    () => MetaStore.open(file, { resource: 'r0' }),
    'ENOENT',
    `no metadata at ${file}; run urbdadm create-md r0`,
  );
  expectError(
    t,
    () => MetaStore.open(path.join(dir, 'no', 'such')),
    'ENOENT',
    `no metadata at ${path.join(dir, 'no', 'such')}; run urbdadm create-md <resource>`,
  );
  expectError(
    t,
    () => MetaStore.open(dir),
    'ENOTMETA',
    `${dir} is a directory, not urbd metadata; meta-disk must name a file`,
  );
  fs.writeFileSync(file, '');
  expectError(
    t,
    () => MetaStore.open(file, { resource: 'r0' }),
    'ENOTMETA',
    `${file} is empty, not urbd metadata; run urbdadm create-md r0`,
  );
  expectError(
    t,
    () => MetaStore.open('/dev/null'),
    'ENOTMETA',
    '/dev/null is not a regular file; urbd keeps its metadata in a file (meta-disk)',
  );
});

t.test("garbage, somebody else's SQLite database", async (t) => {
  const dir = tempDir(t);
  const garbage = path.join(dir, 'garbage');
  const bytes = Buffer.alloc(3 * 4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) & 0xff;
  fs.writeFileSync(garbage, bytes);
  expectError(
    t,
    () => MetaStore.open(garbage, { resource: 'r0' }),
    'ENOTMETA',
    `${garbage} is not urbd metadata (not an SQLite database); check meta-disk in the resource file, or run urbdadm create-md r0`,
  );
  const other = path.join(dir, 'other.sqlite');
  const db = new Database(other);
  db.exec('CREATE TABLE people (name TEXT)');
  db.close();
  expectError(
    t,
    () => MetaStore.open(other),
    'ENOTMETA',
    `${other} is an SQLite database but not urbd metadata (application_id 0x0); check meta-disk in the resource file`,
  );
  t.equal(fs.readFileSync(garbage).equals(bytes), true, 'nothing was written to the garbage');
});

t.test('a truncated copy is refused at every cut', async (t) => {
  const file = closedStore(t);
  const whole = fs.readFileSync(file);
  t.ok(whole.length >= 16 * 4096, `the store spans ${whole.length / 4096} pages`);
  const cuts = [1, 15, 16, 99, 100, 4095, 4096, 5000, 8192, whole.length - 4096, whole.length - 1];
  for (const cut of cuts) {
    const copy = path.join(path.dirname(file), `cut-${cut}`);
    fs.writeFileSync(copy, whole.subarray(0, cut));
    const why =
      cut < 100 ? `${cut} bytes, shorter than its header` : `${cut} of ${whole.length} bytes`;
    expectError(
      t,
      () => MetaStore.open(copy),
      'ECORRUPT',
      `metadata at ${copy} is truncated: ${why}; ${RESTORE}`,
      `cut at ${cut}`,
    );
    expectError(t, () => MetaStore.open(copy, { readOnly: true }), 'ECORRUPT', /is truncated/);
  }
});

t.test('damage inside the file fails the integrity check', async (t) => {
  const file = closedStore(t);
  const db = new Database(file, { readonly: true });
  const root = (
    db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'bitmap_page'").get() as {
      rootpage: number;
    }
  ).rootpage;
  db.close();
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(64, 0xee), 0, 64, (root - 1) * 4096);
  fs.closeSync(fd);
  expectError(
    t,
    () => MetaStore.open(file),
    'ECORRUPT',
    new RegExp(
      `^metadata at ${esc(file)} (failed its integrity check|is corrupt) \\(.+\\); ${esc(RESTORE)}$`,
    ),
  );
});

t.test('wrong format version; hand-edited superblock; missing table', async (t) => {
  const file = closedStore(t);
  const edit = (sql: string): void => {
    const db = new Database(file);
    db.exec(sql);
    db.close();
  };
  edit('PRAGMA user_version = 2');
  expectError(
    t,
    () => MetaStore.open(file),
    'EVERSION',
    `metadata at ${file} has format version 2, this urbd reads version 1; use the newer urbd that wrote it`,
  );
  edit('PRAGMA user_version = 0');
  expectError(
    t,
    () => MetaStore.open(file, { readOnly: true }),
    'EVERSION',
    `metadata at ${file} has format version 0, this urbd reads version 1; re-create it with create-md --force (a full resync follows)`,
  );
  edit('PRAGMA user_version = 1; UPDATE superblock SET flags = 4096');
  expectError(
    t,
    () => MetaStore.open(file),
    'ECORRUPT',
    `metadata at ${file} has a bad superblock (flags has unknown bits (0x1000)); ${RESTORE}`,
  );
  edit('UPDATE superblock SET flags = 0; DELETE FROM superblock');
  expectError(
    t,
    () => MetaStore.open(file),
    'ECORRUPT',
    `metadata at ${file} has no superblock; ${RESTORE}`,
  );
  edit('DROP TABLE bitmap_page');
  expectError(
    t,
    () => MetaStore.open(file),
    'ECORRUPT',
    `metadata at ${file} lacks its bitmap_page table; ${RESTORE}`,
  );
});

t.test('no permission (file modes enforced on root by dropping CAP_DAC_*)', async (t) => {
  const file = closedStore(t);
  const dir = path.dirname(file);
  const run = (mode: 'rw' | 'ro'): ChildResult => {
    const r = openInChild(file, mode, { dropDac: true });
    if (r === undefined) throw new Error('setpriv (util-linux) is needed to test EACCES as root');
    return r;
  };
  fs.chmodSync(file, 0o000);
  const denied = `permission denied reading ${file}; run as root or as the file's owner`;
  t.same(run('rw'), { ok: false, code: 'EACCES', message: denied });
  t.same(run('ro'), { ok: false, code: 'EACCES', message: denied });

  fs.chmodSync(file, 0o444);
  t.same(run('rw'), {
    ok: false,
    code: 'EACCES',
    message: `permission denied writing ${file}; run as root or as the file's owner (read-only inspection works without it)`,
  });
  t.same(run('ro'), { ok: true }, 'read-only inspection of a read-only file works');

  fs.chmodSync(file, 0o644);
  fs.chmodSync(dir, 0o555);
  t.same(run('rw'), {
    ok: false,
    code: 'EACCES',
    message: `permission denied writing in ${dir}, where SQLite keeps r0.meta-wal; run as root or fix the directory permissions`,
  });
  t.same(run('ro'), { ok: true }, 'read-only inspection in a read-only directory works');

  fs.chmodSync(dir, 0o000);
  t.same(run('rw'), {
    ok: false,
    code: 'EACCES',
    message: `permission denied looking up ${file} (a directory on the way is not searchable); run as root or fix the directory permissions`,
  });
  fs.chmodSync(dir, 0o755);
  t.same(run('rw'), { ok: true }, 'and with the modes restored it opens');
  t.same(fs.readdirSync(dir), ['r0.meta']);
});

t.test('a second writer gets EBUSY, in this process and in another', async (t) => {
  const file = closedStore(t);
  const s = MetaStore.open(file);
  const inProcess = `metadata at ${file} is already open in this process; close it first`;
  expectError(t, () => MetaStore.open(file), 'EBUSY', inProcess);
  expectError(t, () => MetaStore.open(file, { readOnly: true }), 'EBUSY', inProcess);
  t.same(openInChild(file, 'rw'), { ok: false, code: 'EBUSY', message: busyMessage(file) });
  t.same(openInChild(file, 'ro'), { ok: false, code: 'EBUSY', message: busyMessage(file) });
  s.close();

  const holder = await holdInChild(file, 'rw');
  expectError(t, () => MetaStore.open(file), 'EBUSY', busyMessage(file), 'second writer');
  expectError(
    t,
    () => MetaStore.open(file, { readOnly: true, busyTimeoutMs: 0 }),
    'EBUSY',
    busyMessage(file),
    'reader',
  );
  t.same(openInChild(file, 'rw'), { ok: false, code: 'EBUSY', message: busyMessage(file) });
  expectError(t, () => MetaStore.wipe(file), 'EBUSY', busyMessage(file), 'wipe-md');
  expectError(
    t,
    () => MetaStore.create(file, { sizeBytes: GiB, nodeId: 0, alExtents: 7, force: true }),
    'EBUSY',
    busyMessage(file),
    'create-md --force',
  );
  await holder.release();
  const again = MetaStore.open(file);
  t.equal(again.readAl().slots[2], 40, 'the store survived every refused attempt');
  again.close();
});

t.test('a reader elsewhere keeps writers out, not other readers', async (t) => {
  const file = closedStore(t);
  const reader = await holdInChild(file, 'ro');
  expectError(t, () => MetaStore.open(file, { busyTimeoutMs: 0 }), 'EBUSY', busyMessage(file));
  const r = MetaStore.open(file, { readOnly: true });
  t.equal(r.superblock().alExtents, 7);
  r.close();
  await reader.release();
  MetaStore.open(file).close();
  t.same(fs.readdirSync(path.dirname(file)), ['r0.meta']);
});

t.test('a killed daemon leaves the store unclean and unlocked', async (t) => {
  const file = closedStore(t);
  const daemon = await holdInChild(file, 'rw', 'unclean');
  await daemon.kill();
  const s = MetaStore.open(file);
  t.equal(s.superblock().clean, false, 'the unclean stop is detectable');
  t.equal(s.readAl().slots[2], 40);
  s.markClean();
  s.close();
  const r = MetaStore.open(file, { readOnly: true });
  t.equal(r.superblock().clean, true);
  r.close();
});
