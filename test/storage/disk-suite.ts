import { FileDisk } from '../../src/storage/file-disk.js';
import { isAllZero, KiB, MiB, pattern, type TestContext } from './helpers.js';

/**
 * Behaviour every FileDisk must show whatever backs it (file or block device) and whichever
 * path serves it (native or pure TS). `open` returns a fresh writable disk of at least 8 MiB,
 * already filled with nothing in particular; the suite closes it.
 */
export function diskSuite(t: TestContext, open: () => Promise<FileDisk>): void {
  let disk: FileDisk;
  t.before(async () => {
    disk = await open();
  });
  t.teardown(() => disk.close());

  t.test('round trips at odd offsets and lengths', async (t) => {
    const cases = [
      [0, 1],
      [1, 3],
      [511, 2],
      [4095, 4097],
      [12345, 65537],
      [3 * MiB - 7, MiB + 13],
      [disk.size - 3, 3],
    ];
    for (const [offset, length] of cases) {
      const data = pattern(length, offset);
      await disk.write(data, offset, false);
      const back = Buffer.alloc(length);
      await disk.read(back, offset);
      t.ok(back.equals(data), `${length} bytes at ${offset}`);
    }
  });

  t.test('empty reads and writes resolve', async (t) => {
    await disk.write(Buffer.alloc(0), 100, false);
    await disk.read(Buffer.alloc(0), 100);
    t.pass();
  });

  t.test('many requests in flight at once', async (t) => {
    const n = 128;
    const len = 3 * KiB + 1;
    const at = (i: number) => 5 * MiB + i * (len + 11);
    await Promise.all(
      Array.from({ length: n }, (_, i) => disk.write(pattern(len, 1000 + i), at(i), i % 7 === 0)),
    );
    const bufs = Array.from({ length: n }, () => Buffer.alloc(len));
    // Reads interleaved with writes of untouched ranges, so both kinds are queued together.
    await Promise.all([
      ...bufs.map((b, i) => disk.read(b, at(i))),
      ...Array.from({ length: n }, (_, i) => disk.write(pattern(100, i), 7 * MiB + i * 100, false)),
    ]);
    const bad = bufs.filter((b, i) => !b.equals(pattern(len, 1000 + i))).length;
    t.equal(bad, 0, 'every concurrent read saw its own write');
  });

  t.test('flush and FUA writes', async (t) => {
    await disk.write(pattern(1000, 1), 2 * MiB + 1, false);
    await disk.flush();
    const data = pattern(70 * KiB + 3, 2);
    await disk.write(data, 2 * MiB + 4097, true);
    const back = Buffer.alloc(data.length);
    await disk.read(back, 2 * MiB + 4097);
    t.ok(back.equals(data), 'FUA write reads back');
  });

  t.test('zero reads back zeroes and leaves neighbours alone', async (t) => {
    const variants = [
      { noHole: false, fastZero: false, fua: false },
      { noHole: true, fastZero: false, fua: false },
      { noHole: false, fastZero: false, fua: true },
      { noHole: true, fastZero: false, fua: true },
    ];
    for (const [i, opts] of variants.entries()) {
      const base = i * MiB;
      const before = pattern(MiB, 50 + i);
      await disk.write(before, base, false);
      // Unaligned at both ends on purpose: block devices split off the edges.
      const zOff = base + 1000;
      const zLen = 300 * KiB + 17;
      await disk.zero(zOff, zLen, opts);
      const back = Buffer.alloc(MiB);
      await disk.read(back, base);
      t.ok(isAllZero(back.subarray(1000, 1000 + zLen)), `zeroed ${JSON.stringify(opts)}`);
      t.ok(back.subarray(0, 1000).equals(before.subarray(0, 1000)), 'bytes before intact');
      t.ok(back.subarray(1000 + zLen).equals(before.subarray(1000 + zLen)), 'bytes after intact');
    }
  });

  t.test('zero smaller than a sector', async (t) => {
    const before = pattern(4096, 9);
    await disk.write(before, 6 * MiB, false);
    await disk.zero(6 * MiB + 100, 200, { noHole: false, fastZero: false, fua: false });
    const back = Buffer.alloc(4096);
    await disk.read(back, 6 * MiB);
    t.ok(isAllZero(back.subarray(100, 300)));
    t.ok(back.subarray(0, 100).equals(before.subarray(0, 100)));
    t.ok(back.subarray(300).equals(before.subarray(300)));
  });

  t.test('fast zero succeeds exactly when advertised', async (t) => {
    const done = disk.zero(4 * MiB, MiB, { noHole: false, fastZero: true, fua: false });
    if (disk.capabilities.fastZero) {
      await done;
      const back = Buffer.alloc(MiB);
      await disk.read(back, 4 * MiB);
      t.ok(isAllZero(back), 'fast zero zeroed');
    } else {
      await t.rejects(done, { code: 'ENOTSUP' });
    }
  });

  t.test('trim resolves, with and without FUA', async (t) => {
    await disk.trim(3 * MiB + 5, 200 * KiB, false);
    await disk.trim(3 * MiB, 512 * KiB, true);
    await disk.trim(3 * MiB, 0, false);
    t.pass();
  });

  t.test('zero of length zero is a no-op', async (t) => {
    await disk.zero(0, 0, { noHole: false, fastZero: true, fua: false });
    t.pass();
  });

  t.test('capabilities', async (t) => {
    t.match(disk.capabilities, {
      readOnly: false,
      flush: true,
      fua: true,
      trim: true,
      zero: true,
      cache: true,
      multiConn: true,
    });
    await disk.cache?.(0, MiB);
  });
}

/** close() lets requests already issued finish, then refuses new ones. */
export function closeSuite(t: TestContext, open: () => Promise<FileDisk>): void {
  t.test('close waits for requests in flight', async (t) => {
    const disk = await open();
    const writes = Array.from({ length: 32 }, (_, i) =>
      disk.write(pattern(8 * KiB, i), i * 8 * KiB, i % 2 === 0),
    );
    const closed = disk.close();
    t.equal(disk.close(), closed, 'close is idempotent');
    await Promise.all(writes);
    await closed;
    await t.rejects(disk.read(Buffer.alloc(1), 0), { code: 'EBADF' });
    await t.rejects(disk.write(Buffer.alloc(1), 0, false), { code: 'EBADF' });
    await t.rejects(disk.flush(), { code: 'EBADF' });
  });
}
