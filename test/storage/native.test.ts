import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import t from 'tap';

import { loadNative, type NativeBinding } from '../../src/storage/native.js';
import {
  allocatedBlocks,
  isAllZero,
  KiB,
  loopDisk,
  MiB,
  pattern,
  sparseFile,
  tempDir,
  type TestContext,
} from './helpers.js';

const loaded = loadNative();
if (loaded === null) throw new Error('native addon not built: run npm run build:native');
const native: NativeBinding = loaded;

function openFile(t: TestContext, file: string, flags: string): number {
  const fd = fs.openSync(file, flags);
  t.teardown(() => fs.closeSync(fd));
  return fd;
}

/** An fd that is neither file nor device: lseek and fallocate both answer ESPIPE. */
function fifoFd(t: TestContext): number {
  const fifo = path.join(tempDir(t), 'fifo');
  execFileSync('mkfifo', [fifo]);
  // O_RDWR on a FIFO opens at once on Linux, with no peer needed.
  return openFile(t, fifo, 'r+');
}

t.test('errors carry errno name, number and syscall', async (t) => {
  const file = sparseFile(t, MiB);
  const fd = openFile(t, file, 'r+');
  t.throws(() => native.blockDeviceSize(fd), {
    code: 'ENOTTY',
    errno: 25,
    syscall: 'ioctl',
    message: /^ioctl\(BLKGETSIZE64\): /,
  });
  const fifo = fifoFd(t);
  t.throws(() => native.seekData(fifo, 0), {
    code: 'ESPIPE',
    errno: 29,
    syscall: 'lseek',
    message: 'lseek(SEEK_DATA): Illegal seek',
  });
  t.throws(() => native.seekHole(fifo, 0), { code: 'ESPIPE' });
  await t.rejects(native.punchHole(fifo, 0, 4096), { code: 'ESPIPE', syscall: 'fallocate' });
  await t.rejects(native.discard(fd, 0, 4096), {
    code: 'ENOTTY',
    syscall: 'ioctl',
    message: /^ioctl\(BLKDISCARD\): /,
  });
  await t.rejects(native.zeroOut(fd, 0, 4096), { code: 'ENOTTY', message: /^ioctl\(BLKZEROOUT\)/ });

  const closed = fs.openSync(file, 'r');
  fs.closeSync(closed);
  await t.rejects(native.punchHole(closed, 0, 4096), {
    code: 'EBADF',
    errno: 9,
    message: 'fallocate(PUNCH_HOLE): Bad file descriptor',
  });
  const readOnly = openFile(t, file, 'r');
  await t.rejects(native.zeroRange(readOnly, 0, 4096), {
    code: 'EBADF',
    message: /^fallocate\(ZERO_RANGE\): /,
  });
  t.equal(await native.punchHole(fd, 0, 1), undefined, 'success resolves to undefined');
});

t.test('arguments are validated', async (t) => {
  const fd = openFile(t, sparseFile(t, MiB), 'r+');
  const bad = [-1, 1.5, 2 ** 53 + 2, Number.NaN, Infinity, '4096', undefined];
  for (const v of bad) {
    await t.rejects(native.punchHole(fd, v as number, 1), { code: 'EINVAL' }, `offset ${v}`);
    await t.rejects(native.zeroRange(fd, 0, v as number), { code: 'EINVAL' }, `length ${v}`);
    t.throws(() => native.seekData(fd, v as number), { code: 'EINVAL' });
  }
  await t.rejects(native.discard('3' as unknown as number, 0, 1), { code: 'EINVAL' });
  t.throws(() => native.blockDeviceSize(2.5), { code: 'EINVAL' });
  t.throws(() => native.seekHole(-1, 0), { code: 'EBADF' }, 'negative fds reach the kernel');
  t.equal(native.seekHole(fd, 2 ** 53), -1, '2^53 itself is accepted');
});

t.test('async calls return promises', async (t) => {
  const fd = openFile(t, sparseFile(t, MiB), 'r+');
  const p = native.punchHole(fd, 0, 4096);
  t.type(p, Promise);
  await p;
});

t.test('seekData / seekHole walk a sparse file', async (t) => {
  const file = sparseFile(t, 8 * MiB);
  const fd = openFile(t, file, 'r+');
  fs.writeSync(fd, pattern(64 * KiB, 1), 0, 64 * KiB, 3 * MiB);
  fs.fdatasyncSync(fd);
  t.equal(native.seekData(fd, 0), 3 * MiB);
  t.equal(native.seekHole(fd, 3 * MiB), 3 * MiB + 64 * KiB);
  t.equal(native.seekHole(fd, 0), 0);
  t.equal(native.seekData(fd, 4 * MiB), -1, 'no data after the last extent');
  t.equal(native.seekHole(fd, 8 * MiB), -1, 'past EOF');
  t.equal(native.seekData(fd, 9 * MiB), -1);
});

t.test('punchHole and zeroRange', async (t) => {
  const file = sparseFile(t, 4 * MiB);
  const fd = openFile(t, file, 'r+');
  fs.writeSync(fd, pattern(4 * MiB, 2), 0, 4 * MiB, 0);
  fs.fdatasyncSync(fd);
  const full = allocatedBlocks(file);

  await native.punchHole(fd, 0, 2 * MiB);
  t.ok(allocatedBlocks(file) <= full / 2 + 64, 'punched blocks are freed');
  await native.zeroRange(fd, 2 * MiB + 1, MiB);
  t.ok(allocatedBlocks(file) >= full / 2, 'zeroRange keeps blocks');
  t.equal(fs.statSync(file).size, 4 * MiB, 'KEEP_SIZE');

  const back = Buffer.alloc(4 * MiB);
  fs.readSync(fd, back, 0, back.length, 0);
  t.ok(isAllZero(back.subarray(0, 2 * MiB)), 'punched range reads zero');
  t.ok(isAllZero(back.subarray(2 * MiB + 1, 3 * MiB + 1)), 'zeroed range reads zero');
  t.ok(back.subarray(3 * MiB + 1).equals(pattern(4 * MiB, 2).subarray(3 * MiB + 1)));
  t.equal(back[2 * MiB], pattern(4 * MiB, 2)[2 * MiB], 'byte before the zeroed range kept');
});

t.test('block device calls on a loop device', async (t) => {
  const { file, dev } = loopDisk(t, 8 * MiB + 512);
  const fd = openFile(t, dev, 'r+');
  t.equal(native.blockDeviceSize(fd), 8 * MiB + 512);

  fs.writeSync(fd, pattern(MiB, 3), 0, MiB, 0);
  fs.fdatasyncSync(fd);
  await native.zeroOut(fd, 4096, 8192);
  const back = Buffer.alloc(MiB);
  fs.readSync(fd, back, 0, back.length, 0);
  t.ok(back.subarray(0, 4096).equals(pattern(MiB, 3).subarray(0, 4096)));
  t.ok(isAllZero(back.subarray(4096, 12288)), 'BLKZEROOUT zeroed and dropped the cached pages');
  t.ok(back.subarray(12288).equals(pattern(MiB, 3).subarray(12288)));

  const before = allocatedBlocks(file);
  await native.discard(fd, 0, MiB);
  t.ok(allocatedBlocks(file) < before, 'BLKDISCARD punched the backing file');

  await t.rejects(native.zeroOut(fd, 100, 512), { code: 'EINVAL', syscall: 'ioctl' });
  await t.rejects(native.discard(fd, 512, 100), { code: 'EINVAL' });
  await t.rejects(native.punchHole(fd, 1, 512), { code: 'EINVAL', syscall: 'fallocate' });
  await t.rejects(native.zeroOut(fd, 0, 16 * MiB), { code: 'EINVAL' }, 'past the end');
});

/** AnonHugePages of this process, in KiB. */
function anonHugeKiB(): number {
  const m = /AnonHugePages:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return Number(m![1]);
}

t.test('allocHuge: fresh memory on huge pages where the kernel allows', async (t) => {
  const a = native.allocHuge(3 * MiB);
  t.equal(a.length, 3 * MiB, 'the length asked for (the mapping is rounded up)');
  t.equal(a.byteOffset, 0);
  const before = anonHugeKiB();
  a.set(pattern(3 * MiB, 7));
  const b = native.allocHuge(2 * MiB);
  b.fill(0x5a);
  t.ok(a.equals(pattern(3 * MiB, 7)), 'two buffers never overlap');
  t.ok(b.every((x) => x === 0x5a));
  // The mode Debian ships is [madvise], where the advice is what makes huge pages appear.
  const mode = /\[(\w+)\]/.exec(
    fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'),
  )![1];
  const grew = anonHugeKiB() - before;
  if (mode === 'never') t.equal(grew, 0, 'THP off: ordinary pages');
  else t.ok(grew >= 4096, `THP ${mode}: the touched 2 MiB ranges are huge pages (${grew} KiB)`);
  for (const v of [0, -1, 1.5, 2 ** 31, Number.NaN, '4096', undefined]) {
    t.throws(() => native.allocHuge(v as number), { code: 'EINVAL' }, `bytes ${v}`);
  }
});
