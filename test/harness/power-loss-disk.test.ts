// The disk that forgets unflushed writes (test/helpers/power-loss-disk.ts), driven with the
// same plain fs calls the urbd daemon uses: pwrite, fdatasync, and an O_DSYNC fd.
import fs from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';

import t from 'tap';

import { isMounted } from '../helpers/block-stack.js';
import { powerLossDisk } from '../helpers/power-loss-disk.js';
import {
  alive,
  readRange,
  sleep,
  spawnTracked,
  tmpDir,
  within,
  writeRange,
} from '../helpers/server.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const BLOCK = 4096;
const { O_RDWR, O_WRONLY, O_DSYNC } = fs.constants;

async function has(file: string, offset: number, byte: number): Promise<boolean> {
  const b = await readRange(file, offset, BLOCK);
  return b.length === BLOCK && b.every((x) => x === byte);
}

/** The NBD requests in a log filter file, in order: 'W<offset>' for a write, 'F' for a flush. */
async function requests(logFile: string): Promise<string[]> {
  const out: string[] = [];
  for (const line of (await readFile(logFile, 'latin1')).split('\n')) {
    const w = / Write id=\d+ offset=(0x[0-9a-f]+) count=0x[0-9a-f]+ fua=(\d)/.exec(line);
    if (w) out.push(`W${Number(w[1])}${w[2] === '1' ? '+fua' : ''}`);
    else if (/ Flush id=\d+ \.\.\.$/.test(line)) out.push('F');
  }
  return out;
}

t.test('unflushed writes are lost; fdatasync and O_DSYNC writes survive', async (t) => {
  const dir = tmpDir(t);
  const logFile = path.join(dir, 'nbd.log');
  const disk = await powerLossDisk(t, dir, { sizeBytes: SIZE, logFile });
  t.equal(fs.statSync(disk.path).size, SIZE, 'the file has the disk size');

  const fh = await open(disk.path, O_RDWR);
  const dsync = await open(disk.path, O_WRONLY | O_DSYNC);
  try {
    await fh.write(Buffer.alloc(BLOCK, 0xa1), 0, BLOCK, 0);
    await fh.datasync();
    await dsync.write(Buffer.alloc(BLOCK, 0xc3), 0, BLOCK, 2 * MiB);
    // Last, with no flush after it: lost on power loss.
    await fh.write(Buffer.alloc(BLOCK, 0xb2), 0, BLOCK, MiB);
    t.ok(await has(disk.path, MiB, 0xb2), 'the unflushed write reads back before the loss');
    t.notOk(await has(disk.backingFile, MiB, 0xb2), 'and has not reached the backing file');
    t.ok(await has(disk.backingFile, 0, 0xa1), 'the fdatasynced write is in the backing file');

    // What the chain made of those calls, as nbdkit saw them above the cache.
    const seen = await requests(logFile);
    const at = (r: string) => seen.indexOf(r);
    t.ok(at('W0') >= 0 && seen.indexOf('F', at('W0')) > at('W0'), 'fdatasync → NBD FLUSH');
    const w2 = at(`W${2 * MiB}`);
    t.ok(w2 >= 0 && seen[w2 + 1] === 'F', `O_DSYNC write → WRITE then FLUSH: ${seen.join(' ')}`);
    const w1 = at(`W${MiB}`);
    t.ok(w1 >= 0 && !seen.slice(w1).includes('F'), 'no flush after the plain write');

    // The "daemon" still holds both fds when the power goes.
    await disk.powerLoss();
    t.equal(disk.pids, undefined, 'no chain after the power loss');
    t.notOk(await isMounted(disk.mountDir), 'the FUSE layer is unmounted');
    const err = await fh.read(Buffer.alloc(BLOCK), 0, BLOCK, 0).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.code,
    );
    t.ok(err !== undefined, `I/O on a held fd fails after the power loss (${err})`);
  } finally {
    await fh.close().catch(() => undefined);
    await dsync.close().catch(() => undefined);
  }

  t.notOk(await has(disk.backingFile, MiB, 0xb2), 'unflushed write gone from the backing file');
  t.ok(await has(disk.backingFile, 0, 0xa1), 'fdatasynced write survived');
  t.ok(await has(disk.backingFile, 2 * MiB, 0xc3), 'O_DSYNC write survived');

  await disk.restart();
  t.ok(await has(disk.path, 0, 0xa1), 'after restart: fdatasynced write');
  t.ok(await has(disk.path, 2 * MiB, 0xc3), 'after restart: O_DSYNC write');
  t.ok(await has(disk.path, MiB, 0), 'after restart: the unflushed block reads as zeroes');
});

t.test('restart twice in a row; each is a power cycle', async (t) => {
  const dir = tmpDir(t);
  const disk = await powerLossDisk(t, dir, { sizeBytes: SIZE, name: 'twice' });
  t.equal(path.basename(disk.path), 'twice', 'named after opts.name');
  const first = disk.pids!;

  const fh = await open(disk.path, O_RDWR);
  await fh.write(Buffer.alloc(BLOCK, 0x11), 0, BLOCK, 0);
  await fh.datasync();
  await fh.close();
  await writeRange(disk.path, BLOCK, Buffer.alloc(BLOCK, 0x22)); // no flush

  await disk.restart(); // while up: a power loss, then a new chain
  t.notOk(alive(first.nbdkit) || alive(first.nbdfuse), 'the first chain is gone');
  const second = disk.pids!;
  t.not(second.nbdkit, first.nbdkit, 'a new nbdkit');
  t.ok(await has(disk.path, 0, 0x11), 'flushed data after the first restart');
  t.ok(await has(disk.path, BLOCK, 0), 'unflushed data lost in the first restart');

  const fh2 = await open(disk.path, O_RDWR);
  await fh2.write(Buffer.alloc(BLOCK, 0x33), 0, BLOCK, 2 * BLOCK);
  await fh2.datasync();
  await fh2.close();
  await disk.restart();
  t.notOk(alive(second.nbdkit) || alive(second.nbdfuse), 'the second chain is gone');
  t.ok(await has(disk.path, 0, 0x11), 'first flushed write after the second restart');
  t.ok(await has(disk.path, 2 * BLOCK, 0x33), 'second flushed write after the second restart');

  await disk.powerLoss();
  await disk.powerLoss(); // a no-op when down
  await disk.restart();
  t.ok(await has(disk.path, 2 * BLOCK, 0x33), 'restart after an explicit power loss');
});

for (const stopped of ['nbdkit', 'nbdfuse'] as const) {
  t.test(
    `a writer blocked in the mount (${stopped} stopped) does not hang powerLoss`,
    async (t) => {
      const dir = tmpDir(t);
      const disk = await powerLossDisk(t, dir, { sizeBytes: SIZE });
      const pids = disk.pids!;
      process.kill(pids[stopped], 'SIGSTOP');
      const writer = spawnTracked(
        'dd',
        ['if=/dev/zero', `of=${disk.path}`, 'bs=4096', 'count=1', 'seek=7'].concat([
          'conv=notrunc,nocreat,fdatasync',
        ]),
        { t },
      );
      // Blocked = still running a second later, waiting in the kernel on the stopped FUSE
      // server (the wait channel's name varies with the kernel and with load, so it is only
      // reported, not matched).
      const wchan = (): string => {
        try {
          return fs.readFileSync(`/proc/${writer.pid}/wchan`, 'utf8');
        } catch {
          return '(gone)';
        }
      };
      await sleep(1000);
      const blocked = writer.exitCode === undefined;
      t.comment(`writer wait channel: ${wchan()}`);
      t.ok(blocked, 'the writer is stuck in the FUSE mount');
      t.equal(await within(disk.powerLoss(), 30000), undefined, 'powerLoss finished');
      t.notOk(alive(pids.nbdkit) || alive(pids.nbdfuse), 'both processes are gone');
      t.not(await within(writer.exited, 10000), 'timeout', 'the writer was released');
      t.not(writer.exitCode, 0, 'and its write failed');
      t.notOk(await isMounted(disk.mountDir), 'unmounted');
      await disk.restart();
      t.ok(await has(disk.path, 7 * BLOCK, 0), 'a working disk after restart');
    },
  );
}

t.test('close leaves no processes or mounts, even with the file held open', async (t) => {
  const dir = tmpDir(t);
  const disk = await powerLossDisk(t, dir, { sizeBytes: SIZE });
  const pids = disk.pids!;
  t.ok(alive(pids.nbdkit) && alive(pids.nbdfuse), 'the chain runs');
  t.ok(await isMounted(disk.mountDir), 'the FUSE layer is mounted');
  const held = await open(disk.path, O_RDWR);
  await held.write(Buffer.alloc(BLOCK, 0x44), 0, BLOCK, 0);
  await held.datasync();
  await disk.close();
  await disk.close();
  t.notOk(alive(pids.nbdkit), 'nbdkit is gone');
  t.notOk(alive(pids.nbdfuse), 'nbdfuse is gone');
  const mounts = await readFile('/proc/mounts', 'utf8');
  t.notOk(mounts.includes(dir), 'nothing under the test dir is mounted');
  await held.close().catch(() => undefined);
  t.ok(await has(disk.backingFile, 0, 0x44), 'flushed data is in the backing file');
  await t.rejects(disk.restart(), /after close/);
  t.notOk(
    fs.readdirSync(dir).some((f) => f.endsWith('.sock')),
    'no stale socket left behind',
  );
});
