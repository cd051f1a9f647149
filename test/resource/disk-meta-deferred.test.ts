// DiskMeta's activity-log transactions go through MetaStore.commitAlDeferred: a write to a
// cold extent starts only after the fdatasync, and a failed fdatasync puts the metadata in
// its failure state with the evicted extent's bitmap page dirty again.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import pino from 'pino';
import t from 'tap';

import { AL_EXTENT_SIZE as X } from '../../src/meta/activity-log.js';
import { MetaStore } from '../../src/meta/store.js';
import { DiskMeta } from '../../src/resource/disk-meta.js';
import type { Teardown } from '../helpers/server.js';

const GiB = 1 << 30;
type FdatasyncCb = (err: NodeJS.ErrnoException | null) => void;

function open(t: Teardown): DiskMeta {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'urbd-dmeta-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'r0.meta');
  MetaStore.create(file, { sizeBytes: GiB, nodeId: 0, alExtents: 2 }).close();
  const meta = DiskMeta.open(file, {
    diskSize: GiB,
    alUpdates: true,
    log: pino({ level: 'silent' }),
    resource: 'r0',
  });
  t.teardown(() => {
    try {
      meta.close();
    } catch {
      // a test may leave it failed
    }
  });
  return meta;
}

t.test('a cold write waits for the fdatasync; a failed one is the failure state', async (t) => {
  const meta = open(t);
  const real = fs.fdatasync;
  let hold: (() => void) | undefined;
  let fail = false;
  (fs as { fdatasync: unknown }).fdatasync = (fd: number, cb: FdatasyncCb) => {
    hold = () => (fail ? cb(Object.assign(new Error('EIO'), { code: 'EIO' })) : real(fd, cb));
  };
  t.teardown(() => {
    (fs as { fdatasync: unknown }).fdatasync = real;
  });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  let started = false;
  const w = meta.al.begin(0, 4096)!.then(() => (started = true));
  await settle();
  t.ok(hold, 'the transaction is written and its sync started');
  t.notOk(started, 'the write has not started before the sync returned');
  t.equal(meta.store.readAl().slots[0], 0, 'though the transaction is in the store');
  hold!();
  await w;
  t.ok(started, 'it starts once the sync returned');
  meta.markOutOfSync(0, 4096);
  meta.al.end(0, 4096);
  const second = meta.al.begin(X, 4096)!; // extent 1 into the second slot
  await settle();
  hold!();
  await second;
  meta.al.end(X, 4096);

  // Extent 2 evicts extent 0, whose bitmap page (page 0) goes into the transaction.
  t.same(meta.bitmap.dirtyPages(), [0]);
  fail = true;
  const evicting = meta.al.begin(2 * X, 4096)!;
  const caught = evicting.then(
    () => undefined,
    (e: unknown) => e,
  );
  await settle();
  t.same(meta.bitmap.dirtyPages(), [], 'page 0 went out with the transaction');
  hold!();
  const err = await caught;
  t.match((err as Error).message, /I\/O error .* syncing the activity log/);
  t.equal(meta.failure, err, 'the metadata is in its failure state');
  t.same(meta.bitmap.dirtyPages(), [0], 'and page 0 is dirty again');
  t.ok(meta.al.isActive(0) && !meta.al.isActive(2), 'the log rolled back');
  await t.rejects(meta.al.begin(3 * X, 4096)!, err as Error, 'nothing more is committed');
});
