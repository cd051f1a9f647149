import fs from 'node:fs';

import t from 'tap';

import { queueLimits } from '../../src/storage/block-device.js';
import { FileDisk } from '../../src/storage/file-disk.js';
import { closeSuite, diskSuite } from './disk-suite.js';
import { allocatedBlocks, isAllZero, loopDisk, MiB, pattern, type TestContext } from './helpers.js';

const SIZE = 16 * MiB;

for (const native of [true, false]) {
  const label = native ? 'native' : 'fallback';

  t.test(`loop device, ${label}: common behaviour`, async (t) => {
    diskSuite(t, () => FileDisk.open(loopDisk(t, SIZE).dev, { native }));
    closeSuite(t, () => FileDisk.open(loopDisk(t, SIZE).dev, { native }));
  });

  t.test(`loop device, ${label}: open`, async (t) => {
    const { dev } = loopDisk(t, SIZE + 4096);
    const disk = await openWith(t, dev, native);
    t.equal(disk.kind, 'block');
    t.equal(disk.size, SIZE + 4096, 'size matches the backing file');
    t.equal(disk.nativeInUse, native);
    // Fast only when the device offloads zeroing; otherwise BLKZEROOUT writes zero pages.
    const offload = queueLimits(fs.statSync(dev, { bigint: true }).rdev).writeZeroes;
    t.equal(disk.capabilities.fastZero, native && offload);
  });

  t.test(`loop device, ${label}: writes reach the backing file`, async (t) => {
    const { file, dev } = loopDisk(t, SIZE);
    const disk = await openWith(t, dev, native);
    const data = pattern(10000, 7);
    await disk.write(data, 12345, true);
    await disk.flush();
    const fd = fs.openSync(file, 'r');
    t.teardown(() => fs.closeSync(fd));
    const back = Buffer.alloc(data.length);
    fs.readSync(fd, back, 0, back.length, 12345);
    t.ok(back.equals(data));
  });

  t.test(`loop device, ${label}: trim`, async (t) => {
    const { file, dev } = loopDisk(t, SIZE);
    const disk = await openWith(t, dev, native);
    await disk.write(pattern(2 * MiB, 8), MiB, false);
    await disk.flush();
    const before = allocatedBlocks(file);
    t.ok(before >= (2 * MiB) / 512, 'backing file allocated by the write');
    // The unaligned ends are left alone; the aligned middle is discarded.
    await disk.trim(MiB + 100, 2 * MiB - 200, true);
    const after = allocatedBlocks(file);
    if (native) t.ok(after < before / 4, `discard punched the backing: ${before} -> ${after}`);
    else t.equal(after, before, 'no-op without the addon');
  });

  t.test(`loop device, ${label}: zero keeps the data around it`, async (t) => {
    const { dev } = loopDisk(t, SIZE);
    const disk = await openWith(t, dev, native);
    const before = pattern(4 * MiB, 9);
    await disk.write(before, 0, false);
    await disk.zero(511, 3 * MiB + 3, { noHole: true, fastZero: false, fua: true });
    const back = Buffer.alloc(4 * MiB);
    await disk.read(back, 0);
    t.ok(back.subarray(0, 511).equals(before.subarray(0, 511)));
    t.ok(isAllZero(back.subarray(511, 511 + 3 * MiB + 3)));
    t.ok(back.subarray(511 + 3 * MiB + 3).equals(before.subarray(511 + 3 * MiB + 3)));
  });
}

t.test('loop device: read-only', async (t) => {
  const { file, dev } = loopDisk(t, SIZE);
  fs.writeFileSync(file, pattern(4096, 10), { flag: 'r+' });
  const disk = await FileDisk.open(dev, { readOnly: true });
  t.teardown(() => disk.close());
  t.equal(disk.capabilities.readOnly, true);
  const back = Buffer.alloc(4096);
  await disk.read(back, 0);
  t.ok(back.equals(pattern(4096, 10)));
  await t.rejects(disk.write(Buffer.alloc(512), 0, false), { code: 'EPERM' });
  await t.rejects(disk.trim(0, 4096, false), { code: 'EPERM' });
});

t.test('loop device: extents report one data extent', async (t) => {
  const { dev } = loopDisk(t, SIZE);
  const disk = await openWith(t, dev, true);
  t.same(await disk.extents(MiB, 2 * MiB), [{ length: 2 * MiB, hole: false, zero: false }]);
});

async function openWith(t: TestContext, dev: string, native: boolean): Promise<FileDisk> {
  const disk = await FileDisk.open(dev, { native });
  t.teardown(() => disk.close());
  return disk;
}
