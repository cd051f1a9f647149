// A failed flush stays failed. When writeback fails, Linux reports the error to one fdatasync
// and may then mark the pages clean, so the next fdatasync "succeeds" with the data gone. A
// server that passed that on would promise a client durability it does not have.
//
// A real failing disk, from parts that run here: nbdkit's memory plugin with its error filter
// (writes fail while an inject file exists) → nbdfuse → loop device → ext4, and urbd's backing
// file on that ext4. Writes land in the page cache; the flush hits the failing writes.
import fs from 'node:fs';
import { rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';

import { failingExt4 } from '../helpers/block-stack.js';
import { CMD, CMD_FLAG, NBD_EIO, openExport } from '../helpers/raw-client.js';
import { startServer, tmpDir } from '../helpers/server.js';

const MiB = 1024 * 1024;

t.test('after a failed flush every later flush fails, even once the disk recovers', async (t) => {
  t.setTimeout(90_000);
  const dir = tmpDir(t, 'urbd-flushfail-');
  const { stack, inject } = await failingExt4(t, dir);
  const disk = path.join(stack.mnt, 'disk.img');
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
