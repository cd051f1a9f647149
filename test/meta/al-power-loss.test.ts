// Deferred activity-log commits (MetaStore.commitAlDeferred) survive a power loss once their
// promise has resolved. The metadata sits on ext4 on a loop device over the power-loss disk
// (test/helpers/power-loss-disk.ts: nbdkit's cache filter keeps every write not followed by
// a FLUSH, and SIGKILL of nbdkit throws those away). A child process commits transactions
// one after the other, saying "durable N" when each promise resolves; then the plug is pulled
// and the metadata read back from what reached the backing file.
//
// The same run with fs.fdatasync replaced by a no-op in the child must lose transactions:
// that shows the check has teeth (nothing else flushes meanwhile: ext4 is mounted with a
// long journal commit interval, and the data writeback timers are far longer than a run).
import fs from 'node:fs';
import path from 'node:path';

import t from 'tap';

import { isMounted } from '../helpers/block-stack.js';
import { powerLossDisk } from '../helpers/power-loss-disk.js';
import { run, showRun as show, tmpDir } from '../helpers/server.js';
import { MetaStore } from '../../src/meta/store.js';
import type { TestContext } from './helpers.js';

t.setTimeout(180000);

const MiB = 1 << 20;
const N = 30;
const storeJs = new URL('../../src/meta/store.js', import.meta.url).href;

async function attachExt4(
  t: TestContext,
  file: string,
  mnt: string,
  mkfs: boolean,
): Promise<() => Promise<void>> {
  const lo = await run('losetup', ['-f', '--show', file], { timeoutMs: 20000 });
  if (lo.code !== 0) throw new Error(`losetup: ${show(lo)}`);
  const loop = lo.stdout.trim();
  let done = false;
  const detach = async (): Promise<void> => {
    if (done) return;
    done = true;
    if (await isMounted(mnt)) {
      const u = await run('umount', [mnt], { timeoutMs: 20000 });
      if (u.code !== 0) await run('umount', ['-l', mnt], { timeoutMs: 20000 });
    }
    await run('losetup', ['-d', loop], { timeoutMs: 20000 });
  };
  t.teardown(detach);
  if (mkfs) {
    const m = await run('mkfs.ext4', ['-q', '-F', loop], { timeoutMs: 60000 });
    if (m.code !== 0) throw new Error(`mkfs.ext4: ${show(m)}`);
  }
  fs.mkdirSync(mnt, { recursive: true });
  const m = await run('mount', ['-o', 'commit=600', loop, mnt], { timeoutMs: 30000 });
  if (m.code !== 0) throw new Error(`mount: ${show(m)}`);
  return detach;
}

/** Commits N transactions in a child; returns how many it saw durable. */
async function commitInChild(file: string, fakeSync: boolean): Promise<number> {
  const script = `
    import fs from 'node:fs';
    const { MetaStore } = await import(${JSON.stringify(storeJs)});
    if (${fakeSync}) fs.fdatasync = (fd, cb) => setImmediate(() => cb(null));
    const s = MetaStore.open(${JSON.stringify(file)});
    for (let i = 0; i < ${N}; i++) {
      await s.commitAlDeferred({ slots: [{ slot: i, extent: 1000 + i }], bitmapPages: [] });
      process.stdout.write('durable ' + i + '\\n');
    }
    process.exit(0); // no close(): like a crash, nothing is checkpointed
  `;
  const r = await run('node', ['--input-type=module'], { input: script, timeoutMs: 60000 });
  if (r.code !== 0) throw new Error(`child: ${show(r)}`);
  return [...r.stdout.matchAll(/durable (\d+)/g)].length;
}

async function scenario(
  t: TestContext,
  fakeSync: boolean,
): Promise<{ acked: number; survived: number[] }> {
  const dir = tmpDir(t, 'urbd-alpl-');
  const disk = await powerLossDisk(t, dir, { sizeBytes: 64 * MiB });
  const mnt = path.join(dir, 'mnt');
  const detach = await attachExt4(t, disk.path, mnt, true);
  const file = path.join(mnt, 'r0.meta');
  // create-md syncs the file and the directory before it returns.
  MetaStore.create(file, { sizeBytes: 1024 * MiB, nodeId: 0, alExtents: 61 }).close();
  const acked = await commitInChild(file, fakeSync);
  await disk.powerLoss();
  await detach();
  await disk.restart();
  await attachExt4(t, disk.path, mnt, false);
  const store = MetaStore.open(file, { readOnly: true });
  const slots = store.readAl().slots;
  store.close();
  const survived = slots.flatMap((e, i) => (e === 1000 + i ? [i] : []));
  return { acked, survived };
}

t.test('every deferred commit that resolved survives a power loss', async (t) => {
  const { acked, survived } = await scenario(t, false);
  t.equal(acked, N, 'the child saw every commit durable');
  t.same(
    survived,
    Array.from({ length: N }, (_, i) => i),
    'all of them are in the metadata after the power loss',
  );
});

t.test('without the fdatasync they would not be (the check has teeth)', async (t) => {
  const { acked, survived } = await scenario(t, true);
  t.equal(acked, N);
  t.ok(survived.length < N, `only ${survived.length} of ${N} survived`, { survived });
});
