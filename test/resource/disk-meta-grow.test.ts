// DiskMeta.growTo (online resize): the new size and the new area's bits commit together and
// survive a reopen; bits set before the growth stay set; with markNew off nothing is marked.
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

function fresh(t: Teardown, sizeBytes: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'urbd-grow-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'r0.meta');
  MetaStore.create(file, { sizeBytes, nodeId: 0, alExtents: 8 }).close();
  return file;
}

function open(file: string, diskSize: number): DiskMeta {
  return DiskMeta.open(file, { diskSize, alUpdates: true, log, resource: 'r0' });
}

t.test('growth marks the new area, keeps old bits, and survives a reopen', async (t) => {
  // 130 MiB: past one bitmap page (128 MiB), and not a whole number of pages.
  const file = fresh(t, 130 * MiB);
  const meta = open(file, 300 * MiB);
  meta.markOutOfSync(5 * 4096, 4096);
  meta.markOutOfSync(130 * MiB - 4096, 4096);
  const set = meta.growTo(260 * MiB, true);
  t.equal(set, (130 * MiB) / 4096, 'every new block marked');
  t.equal(meta.sizeBytes, 260 * MiB);
  t.equal(meta.bitmap.count(), (130 * MiB) / 4096 + 2, 'old bits kept');
  meta.markOutOfSync(200 * MiB, 4096); // already set: a write there changes nothing
  meta.close();
  const again = open(file, 300 * MiB);
  t.equal(again.sizeBytes, 260 * MiB, 'size persisted');
  t.equal(again.bitmap.count(), (130 * MiB) / 4096 + 2, 'bits persisted');
  t.ok(again.bitmap.test(5), 'a bit from before the growth');
  t.ok(again.bitmap.test((130 * MiB) / 4096), 'the first new block');
  t.ok(again.bitmap.test((260 * MiB) / 4096 - 1), 'the last new block');
  again.close();
});

t.test('--assume-clean: nothing marked; a crash right after keeps the size', async (t) => {
  const file = fresh(t, 8 * MiB);
  const meta = open(file, 64 * MiB);
  t.equal(meta.growTo(24 * MiB, false), 0);
  t.equal(meta.bitmap.count(), 0);
  // No close(): the store stays marked unclean, as after kill -9.
  meta.store.close();
  const again = open(file, 64 * MiB);
  t.equal(again.sizeBytes, 24 * MiB, 'the growth was committed at once');
  t.equal(again.bitmap.count(), 0, 'apply-al found nothing to mark');
  again.close();
});

t.test('growTo refuses a size that is not larger', async (t) => {
  const file = fresh(t, 8 * MiB);
  const meta = open(file, 64 * MiB);
  t.throws(() => meta.growTo(8 * MiB, true), /not larger/);
  t.throws(() => meta.growTo(4 * MiB, true), /not larger/);
  t.equal(meta.sizeBytes, 8 * MiB);
  meta.close();
});
