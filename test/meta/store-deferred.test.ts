// MetaStore.commitAlDeferred: the activity-log transaction is written at once, and made
// durable by an fdatasync of the -wal file on the libuv thread pool, never on the event loop.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import t from 'tap';

import { commitOutcomeUnknown } from '../../src/resource/disk-meta.js';
import { MetaError, MetaStore } from '../../src/meta/store.js';
import { GiB, tempDir, type TestContext } from './helpers.js';

function fresh(t: TestContext): { file: string; store: MetaStore } {
  const file = path.join(tempDir(t), 'r0.meta');
  const store = MetaStore.create(file, { sizeBytes: 10 * GiB, nodeId: 1, alExtents: 61 });
  t.teardown(() => store.close());
  return { file, store };
}

/** Descriptors of this process open on `file` (deleted or not). */
function fdsOn(file: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(file)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

type FdatasyncCb = (err: NodeJS.ErrnoException | null) => void;

/** Replaces fs.fdatasync (the store calls it through the same module object) for one test. */
function hookFdatasync(
  t: TestContext,
  hook: (fd: number, cb: FdatasyncCb, real: typeof fs.fdatasync) => void,
): void {
  const real = fs.fdatasync;
  (fs as { fdatasync: unknown }).fdatasync = (fd: number, cb: FdatasyncCb) => hook(fd, cb, real);
  t.teardown(() => {
    (fs as { fdatasync: unknown }).fdatasync = real;
  });
}

const eio = (): NodeJS.ErrnoException =>
  Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });

t.test('a deferred commit is visible at once and durable when its promise resolves', async (t) => {
  const { file, store } = fresh(t);
  const synced: number[] = [];
  hookFdatasync(t, (fd, cb, real) => {
    synced.push(fd);
    real(fd, cb);
  });
  const page = Buffer.alloc(4096, 0x0f);
  const p = store.commitAlDeferred({
    slots: [{ slot: 3, extent: 42 }],
    bitmapPages: [{ page: 1, data: page }],
  });
  t.ok(p instanceof Promise);
  t.same(store.readAl().slots[3], 42, 'the cached log has it at once');
  t.same(store.readBitmapPage(1), page, 'and so does the database');
  t.equal(synced.length, 1, 'one fdatasync was started');
  t.match(fs.readlinkSync(`/proc/self/fd/${synced[0]}`), /r0\.meta-wal$/, 'of the -wal file');
  await p;
  await store.commitAlDeferred({ slots: [{ slot: 4, extent: 43 }], bitmapPages: [] });
  t.equal(synced[1], synced[0], 'the same descriptor is used again');
  store.setFlags({ consistent: true }); // an ordinary FULL commit still works after them
  store.close();
  const again = MetaStore.open(file, { readOnly: true });
  t.same(again.readAl().slots.slice(3, 5), [42, 43]);
  t.equal(again.readAl().transaction, 2);
  t.same(again.readBitmapPage(1), page);
  again.close();
  t.equal(fdsOn(file), 0, 'nothing is left open on the store');
});

t.test('a failed sync rejects, is an unknown outcome, and refuses later commits', async (t) => {
  const { store } = fresh(t);
  hookFdatasync(t, (_fd, cb) => setImmediate(() => cb(eio())));
  const p = store.commitAlDeferred({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, MetaError);
  t.equal((err as MetaError).code, 'EIO');
  t.match((err as Error).message, /syncing the activity log/);
  t.equal(commitOutcomeUnknown(err), true, 'the write path treats it as outcome unknown');
  t.throws(
    () => store.commitAlDeferred({ slots: [{ slot: 1, extent: 2 }], bitmapPages: [] }),
    err as Error,
    'the next deferred commit is refused with the same error',
  );
});

t.test('a sync that succeeds after an earlier one failed does not count', async (t) => {
  const { store } = fresh(t);
  const pending: Array<() => void> = [];
  let n = 0;
  hookFdatasync(t, (fd, cb, real) => {
    // The first sync fails late, the second one succeeds first.
    if (n++ === 0) pending.push(() => cb(eio()));
    else real(fd, cb);
  });
  const first = store.commitAlDeferred({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
  const second = store.commitAlDeferred({ slots: [{ slot: 1, extent: 2 }], bitmapPages: [] });
  const outcomes: string[] = [];
  first.then(
    () => outcomes.push('first ok'),
    () => outcomes.push('first failed'),
  );
  second.then(
    () => outcomes.push('second ok'),
    () => outcomes.push('second failed'),
  );
  await new Promise((r) => setTimeout(r, 50));
  t.same(outcomes, [], 'the second waits for the first');
  pending[0]!();
  await new Promise((r) => setTimeout(r, 10));
  t.same(outcomes, ['first failed', 'second failed']);
});

t.test('close() during a sync keeps the descriptor until the sync returns', async (t) => {
  const { file, store } = fresh(t);
  let release: (() => void) | undefined;
  hookFdatasync(t, (fd, cb, real) => {
    release = () => real(fd, cb);
  });
  const p = store.commitAlDeferred({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
  const walFds = fdsOn(`${file}-wal`);
  t.ok(walFds >= 1, 'our descriptor of the -wal is open');
  store.close();
  t.equal(fdsOn(`${file}-wal`), 1, 'SQLite closed (and removed) its -wal; ours waits');
  t.notOk(fs.existsSync(`${file}-wal`), 'closing checkpointed and removed the -wal');
  release!();
  await p;
  t.equal(fdsOn(`${file}-wal`), 0, 'closed once the sync returned');
  const again = MetaStore.open(file, { readOnly: true });
  t.equal(again.readAl().slots[0], 1, 'the checkpoint at close kept the transaction');
  again.close();
});

t.test('refusals throw at once and write nothing', async (t) => {
  const { store } = fresh(t);
  t.throws(
    () => store.commitAlDeferred({ slots: [{ slot: 61, extent: 1 }], bitmapPages: [] }),
    RangeError,
  );
  t.throws(
    () =>
      store.atomically(() =>
        store.commitAlDeferred({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] }),
      ),
    /inside atomically/,
  );
  t.equal(store.readAl().transaction, 0);
  await store.commitAlDeferred({ slots: [{ slot: 0, extent: 1 }], bitmapPages: [] });
  t.equal(store.readAl().transaction, 1);
});

// The point of it all, seen by strace: a deferred commit makes no sync call on the event loop
// thread; a thread-pool thread fdatasyncs the -wal instead. An ordinary commit still syncs on
// the calling thread.
t.test('strace: no fsync on the event loop for a deferred commit', async (t) => {
  if (spawnSync('strace', ['-V']).status !== 0) {
    t.pass('skipped: strace is not installed');
    return;
  }
  const dir = tempDir(t);
  const file = path.join(dir, 'r0.meta');
  MetaStore.create(file, { sizeBytes: 10 * GiB, nodeId: 1, alExtents: 61 }).close();
  const storeJs = new URL('../../src/meta/store.js', import.meta.url).href;
  const script = `
    const { MetaStore } = await import(${JSON.stringify(storeJs)});
    process.stderr.write('pid ' + process.pid + '\\n');
    const s = MetaStore.open(${JSON.stringify(file)});
    for (let i = 0; i < 20; i++) {
      await s.commitAlDeferred({ slots: [{ slot: i, extent: 100 + i }], bitmapPages: [] });
    }
    process.stderr.write('--- full ---\\n');
    s.setFlags({ consistent: true });
    process.exit(0); // no close(): its checkpoint would sync too
  `;
  const out = path.join(dir, 'strace.out');
  const r = spawnSync(
    'strace',
    ['-f', '-y', '-o', out, '-e', 'trace=fsync,fdatasync,write', 'node', '--input-type=module'],
    { input: script, encoding: 'utf8', timeout: 60000 },
  );
  t.equal(r.status, 0, 'the child ran', { stderr: r.stderr });
  const lines = fs.readFileSync(out, 'utf8').split('\n');
  const main = /pid (\d+)/.exec(r.stderr)?.[1];
  t.ok(main, 'the child said its pid');
  const syncs = lines.flatMap((l, at) => {
    const m = /^(\d+)\s+(fsync|fdatasync)\((\d+)<([^>]*)>/.exec(l);
    return m ? [{ pid: m[1]!, call: m[2]!, path: m[4]!, at }] : [];
  });
  const mark = lines.findIndex((l) => l.includes('--- full ---'));
  t.ok(mark > 0, 'the marker is in the trace');
  const before = syncs.filter((s) => s.at < mark);
  // SQLite syncs the header of a fresh (or restarted) WAL before its first frames, whatever
  // the sync level (an out-of-order write after a restart could corrupt the database): the
  // first commit after open (and after each checkpoint) does that one sync, on the loop.
  const walOnLoop = before.filter((s) => s.pid === main && s.path.endsWith('-wal'));
  t.ok(walOnLoop.length <= 1, 'the loop synced the -wal at most once (its new header)', {
    walOnLoop,
  });
  t.ok(
    walOnLoop.every((s) => s.at < before.find((b) => b.pid !== main)!.at),
    'and only before the first deferred sync',
  );
  const walOffLoop = before.filter(
    (s) => s.pid !== main && s.call === 'fdatasync' && s.path.endsWith('-wal'),
  );
  t.equal(walOffLoop.length, 20, 'a pool thread fdatasynced it once per commit');
  t.ok(
    before.filter((s) => s.pid === main && !s.path.endsWith('-wal')).every((s) => s.path === dir),
    'the loop synced nothing else but the directory (for the -wal name)',
    { before },
  );
  const after = syncs.filter((s) => s.at > mark);
  t.ok(
    after.some((s) => s.pid === main && s.path.endsWith('-wal')),
    'an ordinary commit still syncs the -wal itself',
    { after },
  );
});
