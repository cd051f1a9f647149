// A backing file on a filesystem that runs out of space: writes into its holes fail with
// ENOSPC, the client is told so, the server says it in its log and keeps serving, and what
// was written before is still there.
import { execFileSync } from 'node:child_process';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';

import { run, startServer, tmpDir } from '../helpers/server.js';

const MiB = 1024 * 1024;

t.test('ENOSPC from the backing filesystem reaches the client; the server lives on', async (t) => {
  t.setTimeout(60_000);
  const dir = tmpDir(t);
  const mnt = path.join(dir, 'small');
  await mkdir(mnt);
  // 4 MiB of real space under a 32 MiB sparse disk.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'urbd-test', mnt]);
  t.teardown(() => execFileSync('umount', [mnt]));
  const disk = path.join(mnt, 'disk.img');
  await writeFile(disk, '');
  await truncate(disk, 32 * MiB);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const u = srv.uri();

  const first = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', u]);
  t.equal(first.code, 0, 'a write that fits succeeds', { stderr: first.stderr });

  const tooMuch = await run('qemu-io', [
    '-f',
    'raw',
    '-t',
    'none',
    '-c',
    'write -P 0x22 2M 16M',
    u,
  ]);
  t.match(
    tooMuch.stdout + tooMuch.stderr,
    /No space left on device/,
    'the client hears ENOSPC for the write that does not fit',
  );
  t.ok(
    srv.logs.some((l) => l.json?.code === 'ENOSPC' && /WRITE failed/.test(String(l.json?.msg))),
    'the server logged the failure',
  );
  t.ok(srv.isAlive(), 'the server is still running');

  const back = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x11 0 1M', u]);
  t.equal(back.code, 0, 'the data written before is intact and readable', {
    stdout: back.stdout,
  });
  t.notMatch(back.stdout, /verification failed/);
  t.equal(await srv.stop(), 0, 'and it stops cleanly');
});
