// DiskMeta.persistBitmap with other store writes in the same transaction (the resync's start
// and end: the merged bitmap and the new UUIDs): one commit, all or nothing, and pages that
// were not written stay dirty.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import t from 'tap';
import { MetaStore } from '../../src/meta/store.js';
import { DiskMeta } from '../../src/resource/disk-meta.js';
import type { Teardown } from '../helpers/server.js';

const MiB = 1 << 20;
const log = pino({ level: 'silent' });

function fresh(t: Teardown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'urbd-persist-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'r0.meta');
  MetaStore.create(file, { sizeBytes: 256 * MiB, nodeId: 0, alExtents: 8 }).close();
  return file;
}

function open(file: string): DiskMeta {
  return DiskMeta.open(file, { diskSize: 256 * MiB, alUpdates: true, log, resource: 'r0' });
}

t.test('the pages and the other writes commit in one transaction', async (t) => {
  const file = fresh(t);
  const meta = open(file);
  meta.markOutOfSync(0, 4096);
  meta.markOutOfSync(200 * MiB, 8192); // a second bitmap page
  const uuids = { ...meta.superblock().uuids, current: 0x1234n, bitmap: 0x5678n };
  let commits = 0;
  meta.store.beforeCommit = () => commits++;
  t.equal(
    meta.persistBitmap(() => meta.store.setUuids(uuids)),
    2,
  );
  t.equal(commits, 1, 'one transaction for both');
  t.equal(meta.bmWrites, 1);
  t.equal(meta.persistBitmap(), 0, 'nothing left to write');
  meta.store.close(); // as after kill -9: no orderly close
  const again = open(file);
  t.equal(again.superblock().uuids.current, 0x1234n);
  t.equal(again.superblock().uuids.bitmap, 0x5678n);
  t.equal(again.bitmap.count(), 3, 'the bits were committed with the UUIDs');
  again.close();
});

t.test('a failing write in the transaction leaves the pages dirty and unwritten', async (t) => {
  const file = fresh(t);
  const meta = open(file);
  meta.markOutOfSync(4096, 4096);
  t.throws(
    () =>
      meta.persistBitmap(() => {
        meta.store.setUuids({ ...meta.superblock().uuids, current: 0x99n });
        throw new Error('boom');
      }),
    { message: 'boom' },
  );
  t.equal(meta.bmWrites, 0);
  t.not(meta.superblock().uuids.current, 0x99n, 'the UUIDs rolled back');
  t.equal(meta.persistBitmap(), 1, 'the page is still dirty and is written next time');
  meta.store.close();
  const again = open(file);
  t.equal(again.bitmap.count(), 1);
  again.close();
});

t.test('with nothing dirty, the other writes still commit', async (t) => {
  const file = fresh(t);
  const meta = open(file);
  const uuids = { ...meta.superblock().uuids, current: 0x4242n };
  t.equal(
    meta.persistBitmap(() => meta.store.setUuids(uuids)),
    0,
  );
  t.equal(meta.bmWrites, 0);
  meta.close();
  const again = open(file);
  t.equal(again.superblock().uuids.current, 0x4242n);
  again.close();
});
