import t from 'tap';
import Database from 'better-sqlite3';
import { commitOutcomeUnknown } from '../../src/resource/disk-meta.js';
import { MetaError } from '../../src/meta/errors.js';

// Which failed AL commits leave the write path usable: only those SQLite rolls back for sure.
t.test('refused-before-commit errors are known outcomes; I/O errors are not', async (t) => {
  const wrap = (code: string): MetaError =>
    new MetaError('EIO', `x (${code})`, { cause: Object.assign(new Error(code), { code }) });
  for (const code of [
    'SQLITE_FULL',
    'SQLITE_READONLY',
    'SQLITE_READONLY_DBMOVED',
    'SQLITE_BUSY',
    'SQLITE_CONSTRAINT_UNIQUE',
  ]) {
    t.equal(commitOutcomeUnknown(wrap(code)), false, code);
  }
  for (const code of [
    'SQLITE_IOERR',
    'SQLITE_IOERR_FSYNC',
    'SQLITE_IOERR_WRITE',
    'SQLITE_CORRUPT',
  ]) {
    t.equal(commitOutcomeUnknown(wrap(code)), true, code);
  }
  t.equal(
    commitOutcomeUnknown(new RangeError('bad page')),
    true,
    'an unexpected error is not trusted',
  );
});

t.test('a real SqliteError carries the code the check reads', async (t) => {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE x (a INTEGER UNIQUE)');
  db.exec('INSERT INTO x VALUES (1)');
  let err: unknown;
  try {
    db.exec('INSERT INTO x VALUES (1)');
  } catch (e) {
    err = e;
  }
  db.close();
  t.match((err as { code: string }).code, /^SQLITE_CONSTRAINT/);
  t.equal(commitOutcomeUnknown(err), false);
});
