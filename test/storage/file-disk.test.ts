import fs from 'node:fs';

import t from 'tap';
import { waitFor } from '../helpers/server.js';

import { FileDisk } from '../../src/storage/file-disk.js';
import { loadNative } from '../../src/storage/native.js';
import { closeSuite, diskSuite } from './disk-suite.js';
import {
  allocatedBlocks,
  isAllZero,
  KiB,
  MiB,
  pattern,
  sparseFile,
  type TestContext,
} from './helpers.js';

const SIZE = 16 * MiB;

t.ok(loadNative(), 'native addon is built (npm run build:native)');

for (const native of [true, false]) {
  const label = native ? 'native' : 'fallback';

  t.test(`regular file, ${label}: common behaviour`, async (t) => {
    diskSuite(t, () => FileDisk.open(sparseFile(t, SIZE), { native }));
    closeSuite(t, () => FileDisk.open(sparseFile(t, SIZE), { native }));
  });

  t.test(`regular file, ${label}: open`, async (t) => {
    const file = sparseFile(t, SIZE + 3);
    const disk = await FileDisk.open(file, { native });
    t.teardown(() => disk.close());
    t.equal(disk.size, SIZE + 3, 'size is st_size');
    t.equal(disk.kind, 'file');
    t.equal(disk.nativeInUse, native);
    t.equal(disk.capabilities.fastZero, native, 'fast zero only with fallocate');
  });

  t.test(`regular file, ${label}: trim`, async (t) => {
    const file = sparseFile(t, SIZE);
    const disk = await openWith(t, file, native);
    await disk.write(pattern(2 * MiB, 1), MiB, false);
    await disk.flush();
    const before = allocatedBlocks(file);
    t.ok(before >= (2 * MiB) / 512, 'written range is allocated');
    await disk.trim(MiB, 2 * MiB, true);
    const after = allocatedBlocks(file);
    if (native) t.ok(after < before / 4, `punched: ${before} -> ${after} blocks`);
    else t.equal(after, before, 'no-op without the addon');
    // Trim twice more: the second call must not fail either way.
    await disk.trim(MiB, 4 * KiB, false);
  });

  t.test(`regular file, ${label}: zero with and without noHole`, async (t) => {
    const file = sparseFile(t, SIZE);
    const disk = await openWith(t, file, native);
    await disk.write(pattern(4 * MiB, 2), 0, false);
    await disk.flush();
    const full = allocatedBlocks(file);

    await disk.zero(0, 2 * MiB, { noHole: true, fastZero: false, fua: true });
    t.ok(allocatedBlocks(file) >= full, 'noHole keeps the blocks allocated');
    const back = Buffer.alloc(2 * MiB);
    await disk.read(back, 0);
    t.ok(isAllZero(back), 'noHole range reads zero');

    await disk.zero(2 * MiB, 2 * MiB, { noHole: false, fastZero: false, fua: true });
    await disk.read(back, 2 * MiB);
    t.ok(isAllZero(back), 'hole-allowed range reads zero');
    if (native) t.ok(allocatedBlocks(file) < full * 0.75, 'hole-allowed zero punched');
  });

  t.test(`regular file, ${label}: fast zero`, async (t) => {
    const disk = await openWith(t, sparseFile(t, SIZE), native);
    await disk.write(pattern(MiB, 3), 0, false);
    const fast = { noHole: false, fastZero: true, fua: false };
    if (native) {
      await disk.zero(0, MiB, fast);
      const back = Buffer.alloc(MiB);
      await disk.read(back, 0);
      t.ok(isAllZero(back));
    } else {
      await t.rejects(disk.zero(0, MiB, fast), { code: 'ENOTSUP' });
      await t.rejects(disk.zero(0, MiB, { ...fast, noHole: true }), { code: 'ENOTSUP' });
      const back = Buffer.alloc(MiB);
      await disk.read(back, 0);
      t.ok(back.equals(pattern(MiB, 3)), 'a refused fast zero changed nothing');
    }
  });

  t.test(`regular file, ${label}: extents`, async (t) => {
    const file = sparseFile(t, 8 * MiB);
    const disk = await openWith(t, file, native);
    await disk.write(pattern(64 * KiB, 4), 2 * MiB, false);
    await disk.flush();
    const extents = await disk.extents(0, 8 * MiB);
    if (native) {
      t.same(extents, [
        { length: 2 * MiB, hole: true, zero: true },
        { length: 64 * KiB, hole: false, zero: false },
        { length: 6 * MiB - 64 * KiB, hole: true, zero: true },
      ]);
      t.same(
        await disk.extents(MiB, MiB + 4 * KiB),
        [
          { length: MiB, hole: true, zero: true },
          { length: 4 * KiB, hole: false, zero: false },
        ],
        'a window starting inside a hole and ending inside data',
      );
    } else {
      t.same(extents, [{ length: 8 * MiB, hole: false, zero: false }]);
    }
    t.same(
      await disk.extents(7 * MiB, 4 * MiB),
      [{ length: MiB, hole: native, zero: native }],
      'clamped to the disk size',
    );
    t.same(await disk.extents(8 * MiB, 1), [], 'nothing past the end');
  });

  t.test(`regular file, ${label}: readNow`, async (t) => {
    const file = sparseFile(t, SIZE);
    const disk = await openWith(t, file, native);
    const data = pattern(64 * KiB, 9);
    await disk.write(data, 3 * MiB, false); // in the page cache now
    const buf = Buffer.alloc(64 * KiB);
    const before = disk.io.readBytes;
    const done = disk.readNow(buf, 3 * MiB);
    if (native) {
      t.ok(done, 'cached bytes are read before it returns');
      t.same(buf, data);
      t.equal(disk.io.readBytes - before, 64 * KiB, 'counted as read');
    } else {
      t.notOk(done, 'without the addon there is no RWF_NOWAIT: read() it is');
      t.equal(disk.io.readBytes, before, 'nothing counted');
    }
    t.notOk(disk.readNow(Buffer.alloc(512 * KiB), 0), 'past the largest read tried at once');
    await disk.read(buf, 3 * MiB);
    t.same(buf, data, 'read() after readNow reads the same bytes');
    await disk.close();
    t.notOk(disk.readNow(buf, 0), 'a closed disk reads nothing now (read() says why)');
  });

  t.test(`regular file, ${label}: flushes share fdatasyncs; commits flush ahead`, async (t) => {
    const disk = await openWith(t, sparseFile(t, SIZE), native);
    // The turn after a write's completion, when the disk decides whether to flush ahead.
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const write = async (seed: number, at: number): Promise<void> => {
      await disk.write(pattern(4 * KiB, seed), at, false);
      await turn();
    };
    const syncsAfter = async (seeds: number[]): Promise<number> => {
      for (const s of seeds) await write(s, (s % 4) * 4 * KiB);
      return disk.io.syncs;
    };
    t.equal(await syncsAfter([0, 1, 2, 3]), 0, 'writes without flushes cost no fdatasync');
    await disk.flush();
    t.equal(disk.io.syncs, 1);
    await disk.flush();
    t.equal(disk.io.syncs, 1, 'nothing changed since the last fdatasync: it answers');

    // Each write at queue depth 1 is a burst; that flush came after four of them.
    t.equal(await syncsAfter([4]), 1, 'one burst of the four expected: no flush-ahead');
    await disk.flush();
    t.equal(disk.io.syncs, 2, 'commits of one write from now on');
    t.equal(await syncsAfter([5]), 3, 'write, idle: flush ahead');
    await disk.flush();
    t.equal(disk.io.syncs, 3, 'the FLUSH is answered by the flush-ahead');

    t.equal(await syncsAfter([6]), 4, 'ahead again');
    t.equal(await syncsAfter([7]), 4, 'a write came instead of the flush: none after it');
    await disk.flush();
    t.equal(disk.io.syncs, 5, 'the write after the flush-ahead started needs its own fdatasync');
    const got = Buffer.alloc(8 * KiB);
    await disk.read(got, 2 * 4 * KiB);
    t.same(got, Buffer.concat([pattern(4 * KiB, 6), pattern(4 * KiB, 7)]));
    // The flush-ahead after write 6 may still run (it can end after the FLUSH's own
    // fdatasync), and while it runs no other starts ahead.
    await waitFor(() => disk.io.syncsEnded === disk.io.syncs, 10000, 1);

    t.equal(await syncsAfter([8]), 5, 'commits of two writes now: one of two');
    t.equal(await syncsAfter([9]), 6, 'the second: ahead');
    await disk.flush();
    t.equal(disk.io.syncs, 6, 'and the FLUSH takes it');

    // The disk closes before the turn that would flush ahead.
    await write(10, 0);
    await disk.write(pattern(4 * KiB, 11), 4 * KiB, false);
    await disk.close();
    await turn();
    t.equal(disk.io.syncs, 6, 'a closed disk does not flush ahead');
    await t.rejects(disk.flush(), /closed/, 'nor when asked');
  });

  t.test(`regular file, ${label}: read-only`, async (t) => {
    const file = sparseFile(t, SIZE);
    fs.writeFileSync(file, pattern(4096, 5), { flag: 'r+' });
    const disk = await FileDisk.open(file, { native, readOnly: true });
    t.teardown(() => disk.close());
    t.equal(disk.capabilities.readOnly, true);
    t.equal(disk.capabilities.fastZero, false);
    const back = Buffer.alloc(4096);
    await disk.read(back, 0);
    t.ok(back.equals(pattern(4096, 5)), 'reads work');
    await t.rejects(disk.write(Buffer.alloc(1), 0, false), { code: 'EPERM' });
    await t.rejects(disk.write(Buffer.alloc(1), 0, true), { code: 'EPERM' });
    await t.rejects(disk.trim(0, 4096, false), { code: 'EPERM' });
    await t.rejects(disk.zero(0, 4096, { noHole: false, fastZero: false, fua: false }), {
      code: 'EPERM',
    });
    await disk.flush();
    t.ok(fs.readFileSync(file).subarray(0, 4096).equals(pattern(4096, 5)), 'file untouched');
  });
}

t.test('a file shrunk under the disk gives EIO, not a short buffer', async (t) => {
  const file = sparseFile(t, MiB);
  const disk = await openWith(t, file, true);
  fs.truncateSync(file, MiB - 10);
  await t.rejects(disk.read(Buffer.alloc(100), MiB - 100), { code: 'EIO' });
});

t.test('opening what is not a disk', async (t) => {
  const file = sparseFile(t, MiB);
  const dir = file.slice(0, file.lastIndexOf('/'));
  for (const readOnly of [false, true]) {
    await t.rejects(
      FileDisk.open(dir, { readOnly }),
      { code: 'EISDIR', message: new RegExp(escape(dir)) },
      `directory, readOnly=${readOnly}`,
    );
  }
  const missing = `${dir}/no-such-disk.img`;
  await t.rejects(FileDisk.open(missing), {
    code: 'ENOENT',
    message: new RegExp(escape(missing)),
  });
  await t.rejects(FileDisk.open('/dev/null'), {
    code: 'EINVAL',
    message: /\/dev\/null: not a regular file or block device/,
  });
});

// tmpfs punches holes but has no ZERO_RANGE: the disk must notice and fall back per request.
t.test('tmpfs: zero falls back from ZERO_RANGE to writing', async (t) => {
  const dir = fs.mkdtempSync('/dev/shm/urbd-storage-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = `${dir}/disk.img`;
  fs.writeFileSync(file, pattern(4 * MiB, 11));
  // Zeroes the first byte, which the first zero below clears anyway.
  const keepsBlocksFast = await zeroRangeWorks(file);
  const disk = await openWith(t, file, true);
  t.equal(disk.capabilities.fastZero, true, 'punching works on tmpfs');

  const noHole = { noHole: true, fastZero: false, fua: false };
  await disk.zero(0, MiB, noHole);
  await disk.zero(MiB, MiB, noHole);
  const fastNoHole = disk.zero(2 * MiB, MiB, { ...noHole, fastZero: true });
  if (keepsBlocksFast) await fastNoHole;
  else await t.rejects(fastNoHole, { code: 'ENOTSUP' }, 'no fast way that keeps blocks');
  await disk.zero(3 * MiB, MiB, { noHole: false, fastZero: true, fua: false });

  const back = Buffer.alloc(4 * MiB);
  await disk.read(back, 0);
  t.ok(isAllZero(back.subarray(0, 2 * MiB)), 'noHole zeroes written');
  const third = back.subarray(2 * MiB, 3 * MiB);
  if (keepsBlocksFast) t.ok(isAllZero(third));
  else t.ok(third.equals(pattern(4 * MiB, 11).subarray(2 * MiB, 3 * MiB)), 'refused: unchanged');
  t.ok(isAllZero(back.subarray(3 * MiB)), 'fast zero punched');
});

async function openWith(t: TestContext, file: string, native: boolean): Promise<FileDisk> {
  const disk = await FileDisk.open(file, { native });
  t.teardown(() => disk.close());
  return disk;
}

async function zeroRangeWorks(file: string): Promise<boolean> {
  const native = loadNative();
  if (native === null) return false;
  const fd = fs.openSync(file, 'r+');
  try {
    await native.zeroRange(fd, 0, 1);
    return true;
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
