// A real filesystem on the export. This host has no nbd.ko, so nbdfuse + a loop device
// stand in for the kernel client: ext4 → loop → FUSE file → nbdfuse (libnbd, multi-conn)
// → urbd. Exercises FLUSH (fsync, journal commits), TRIM (mkfs discard, fstrim) and
// large 1 KiB-aligned I/O, and checks the result both through the stack and directly in the
// backing file.
import t from 'tap';
import { attachBlockStack } from '../helpers/block-stack.js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  makeDisk,
  readRange,
  run,
  startServer,
  tmpDir,
  showRun as show,
} from '../helpers/server.js';

t.setTimeout(150000);

const MiB = 1 << 20;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('ext4 over nbdfuse + loop: write, remount, verify, fstrim, fsck', async (t) => {
  const dir = tmpDir(t, 'urbd-fs-');
  const disk = await makeDisk(dir, 256 * MiB);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });

  // nbdfuse + loop, unwound top-down in teardown before the server is killed.
  const stack = await attachBlockStack(t, srv.uri(), dir);
  const loop = stack.loop;
  t.match(loop, /^\/dev\/loop\d+$/, 'got a loop device');
  const mnt = stack.mnt;

  const mkfs = await run('mkfs.ext4', ['-q', '-F', loop], { timeoutMs: 60000 });
  t.equal(mkfs.code, 0, 'mkfs.ext4', { output: show(mkfs) });
  const magic = await readRange(disk, 1024 + 56, 2);
  t.equal(magic.readUInt16LE(0), 0xef53, 'ext4 superblock magic is in the backing file');

  const mount = await run('mount', [loop, mnt], { timeoutMs: 30000 });
  t.equal(mount.code, 0, 'mount', { output: show(mount) });
  if (mount.code !== 0) return;

  const files: Record<string, Buffer> = {
    'big.bin': randomBytes(24 * MiB),
    'small.bin': randomBytes(12345),
    'sub/one.bin': randomBytes(MiB + 7),
  };
  await mkdir(path.join(mnt, 'sub'));
  for (const [name, data] of Object.entries(files)) {
    const fh = await open(path.join(mnt, name), 'w');
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
  }
  const s = await run('sync', [], { timeoutMs: 30000 });
  t.equal(s.code, 0, 'sync');

  t.equal((await run('umount', [mnt], { timeoutMs: 30000 })).code, 0, 'umount');
  t.equal((await run('mount', [loop, mnt], { timeoutMs: 30000 })).code, 0, 'remount');
  for (const [name, data] of Object.entries(files)) {
    t.equal(sha(await readFile(path.join(mnt, name))), sha(data), `${name} intact after remount`);
  }

  // delete one file so fstrim has freed blocks to discard
  await unlink(path.join(mnt, 'sub/one.bin'));
  await run('sync', [], { timeoutMs: 30000 });
  const trim = await run('fstrim', ['-v', mnt], { timeoutMs: 60000 });
  t.equal(trim.code, 0, 'fstrim', { output: show(trim) });
  t.match(trim.stdout, /trimmed/, 'fstrim reports trimmed bytes');
  for (const name of ['big.bin', 'small.bin']) {
    t.equal(
      sha(await readFile(path.join(mnt, name))),
      sha(files[name]!),
      `${name} intact after fstrim`,
    );
  }

  t.equal((await run('umount', [mnt], { timeoutMs: 30000 })).code, 0, 'final umount');
  const fsck = await run('e2fsck', ['-fn', loop], { timeoutMs: 60000 });
  t.equal(fsck.code, 0, 'e2fsck -fn through the NBD stack is clean', { output: show(fsck) });

  t.equal(await stack.detach(), 0, 'loop detached, FUSE unmounted, nbdfuse exits 0');

  // Everything the clients were told is written must be in the backing file itself.
  const direct = await run('e2fsck', ['-fn', disk], { timeoutMs: 60000 });
  t.equal(direct.code, 0, 'e2fsck -fn on the backing file is clean', { output: show(direct) });
  const cat = await run('debugfs', ['-R', 'dump /small.bin ' + path.join(dir, 'small.out'), disk], {
    timeoutMs: 30000,
  });
  t.equal(cat.code, 0, 'debugfs dump from the backing file', { output: show(cat) });
  t.equal(
    sha(await readFile(path.join(dir, 'small.out'))),
    sha(files['small.bin']!),
    'small.bin in backing file',
  );
  const big = await run('debugfs', ['-R', 'dump /big.bin ' + path.join(dir, 'big.out'), disk], {
    timeoutMs: 30000,
  });
  t.equal(big.code, 0, 'debugfs dump big.bin', { output: show(big) });
  t.equal(
    sha(await readFile(path.join(dir, 'big.out'))),
    sha(files['big.bin']!),
    'big.bin in backing file',
  );

  t.ok(srv.isAlive(), 'server still running');
  t.equal(await srv.stop(), 0, 'server exits 0 on SIGTERM');
});
