// A failed flush stays failed. When writeback fails, Linux reports the error to one fdatasync
// and may then mark the pages clean, so the next fdatasync "succeeds" with the data gone. A
// server that passed that on would promise a client durability it does not have.
//
// A real failing disk, from parts that run here: nbdkit's memory plugin with its error filter
// (writes fail while an inject file exists) → nbdfuse → loop device → ext4, and urbd's backing
// file on that ext4. Writes land in the page cache; the flush hits the failing writes.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';

import { CMD, CMD_FLAG, NBD_EIO, openExport } from '../helpers/raw-client.js';
import { run, sleep, spawnTracked, startServer, tmpDir, waitFor } from '../helpers/server.js';

const MiB = 1024 * 1024;

function mounted(dir: string): boolean {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

t.test('after a failed flush every later flush fails, even once the disk recovers', async (t) => {
  t.setTimeout(90_000);
  const dir = tmpDir(t, 'urbd-flushfail-');
  const inject = path.join(dir, 'inject');
  const sock = path.join(dir, 'nbdkit.sock');
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  await mkdir(fuseDir);
  await mkdir(mnt);

  spawnTracked(
    'nbdkit',
    ['-f', '-U', sock, '--filter=error', 'memory', '64M', 'error-pwrite=EIO'].concat([
      'error-pwrite-rate=100%',
      `error-pwrite-file=${inject}`,
    ]),
    { t },
  );
  t.ok(await waitFor(() => fs.existsSync(sock), 10_000), 'nbdkit is up');
  const fuseFile = path.join(fuseDir, 'disk');
  spawnTracked('nbdfuse', [fuseFile, `nbd+unix:///?socket=${sock}`], { t });
  t.ok(await waitFor(() => fs.existsSync(fuseFile), 10_000), 'nbdfuse is up');
  let loop = '';
  // Registered last, so it runs first: unmount, detach, then the processes are killed.
  t.teardown(async () => {
    if (mounted(mnt)) execFileSync('umount', [mnt]);
    if (loop) execFileSync('losetup', ['-d', loop]);
    await run('fusermount3', ['-u', fuseDir]);
    await sleep(100);
  });
  loop = execFileSync('losetup', ['-f', '--show', fuseFile], { encoding: 'utf8' }).trim();
  execFileSync('mkfs.ext4', ['-q', '-F', loop]);
  execFileSync('mount', [loop, mnt]);
  const disk = path.join(mnt, 'disk.img');
  await writeFile(disk, '');
  await truncate(disk, 16 * MiB);

  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const { client } = await openExport(srv.tcp);
  t.teardown(() => client.destroy());

  t.equal(await client.writeData(0, Buffer.alloc(65536, 1)), 0, 'a write on a healthy disk');
  t.equal(await client.command(CMD.FLUSH, 0, 0), 0, 'and its flush succeed');

  await writeFile(inject, '');
  t.equal(await client.writeData(0, Buffer.alloc(65536, 2)), 0, 'a write into the page cache');
  t.equal(await client.command(CMD.FLUSH, 0, 0), NBD_EIO, 'the flush over failed writeback is EIO');

  await rm(inject);
  // The kernel has already said its piece: a fresh fdatasync on the file now succeeds.
  const fd = fs.openSync(disk, 'r+');
  t.doesNotThrow(() => fs.fdatasyncSync(fd), 'the kernel no longer reports the lost write');
  fs.closeSync(fd);

  t.equal(await client.writeData(MiB, Buffer.alloc(65536, 3)), 0, 'writes still go through');
  t.equal(
    await client.command(CMD.FLUSH, 0, 0),
    NBD_EIO,
    'but urbd still refuses to promise durability',
  );
  t.equal(
    await client.writeData(2 * MiB, Buffer.alloc(4096, 4), CMD_FLAG.FUA),
    NBD_EIO,
    'for FUA writes too',
  );
  t.ok(
    srv.logs.some((l) => /an earlier flush failed/.test(String(l.json?.err))),
    'and its log says why',
  );
  t.ok(srv.isAlive(), 'the server keeps running');
  await srv.stop();
});
