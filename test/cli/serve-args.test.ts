// `urbd serve` refuses what it cannot serve with exit code 1 and one line on stderr that names
// the problem, and touches no disk on the way out.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';

import { makeDisk, run, startServer, tmpDir, URBD_CLI } from '../helpers/server.js';

const MiB = 1024 * 1024;

async function serve(args: string[]) {
  return run(process.execPath, [URBD_CLI, 'serve', ...args], { timeoutMs: 20_000 });
}

t.test('bad arguments and unusable disks', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, MiB, 0x5a);
  const before = await readFile(disk);
  await mkdir(path.join(dir, 'adir'));
  const cases: [string, string[], RegExp][] = [
    ['no --disk', ['--listen', '127.0.0.1:0'], /at least one --disk/],
    ['no --listen', ['--disk', disk], /at least one --listen/],
    [
      'missing file',
      ['--disk', path.join(dir, 'nope.img'), '--listen', '127.0.0.1:0'],
      /nope\.img/,
    ],
    ['a directory', ['--disk', path.join(dir, 'adir'), '--listen', '127.0.0.1:0'], /adir/],
    ['/dev/null', ['--disk', '/dev/null', '--listen', '127.0.0.1:0'], /\/dev\/null/],
    ['listen without port', ['--disk', disk, '--listen', '127.0.0.1'], /HOST:PORT/],
    ['port out of range', ['--disk', disk, '--listen', '127.0.0.1:70000'], /out of range/],
    ['unix: without path', ['--disk', disk, '--listen', 'unix:'], /socket path/],
    [
      'more names than disks',
      ['--disk', disk, '--export', 'a', '--export', 'b', '--listen', '127.0.0.1:0'],
      /2 --export names for 1 --disk/,
    ],
    [
      'bad max-connections',
      ['--disk', disk, '--listen', '127.0.0.1:0', '--max-connections', '0'],
      /positive integer/,
    ],
    [
      'unknown option',
      ['--disk', disk, '--listen', '127.0.0.1:0', '--frobnicate'],
      /unknown option/,
    ],
  ];
  for (const [name, args, why] of cases) {
    const r = await serve(args);
    t.equal(r.code, 1, `${name}: exit code 1`);
    t.match(r.stderr, why, `${name}: says why`, { stderr: r.stderr });
  }
  t.ok((await readFile(disk)).equals(before), 'the disk is untouched');
});

t.test('a listener that is taken: TCP port, live unix socket, and a non-socket file', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, MiB);
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const r1 = await serve(['--disk', disk, '--listen', `127.0.0.1:${port}`]);
  t.equal(r1.code, 1, 'TCP port in use: exit 1');
  t.match(r1.stderr, /EADDRINUSE/, 'TCP port in use: says so');

  const sock = path.join(dir, 'nbd.sock');
  const first = await startServer(['--disk', disk, '--listen', `unix:${sock}`], { t });
  const r2 = await serve(['--disk', disk, '--listen', `unix:${sock}`]);
  t.equal(r2.code, 1, 'live unix socket: exit 1');
  t.match(r2.stderr, /in use by another server/, 'live unix socket: says so');
  t.ok(first.isAlive(), 'the first server is unharmed');
  const info = await run('nbdinfo', ['--size', first.unixUri()]);
  t.equal(info.stdout.trim(), String(MiB), 'and still serves on its socket');
  t.equal(await first.stop(), 0, 'first server stops cleanly');

  const plain = path.join(dir, 'plain-file');
  await writeFile(plain, 'not a socket');
  const r3 = await serve(['--disk', disk, '--listen', `unix:${plain}`]);
  t.equal(r3.code, 1, 'a regular file where the socket goes: exit 1');
  t.match(r3.stderr, /not a socket/, 'says it is not a socket');
  t.equal(await readFile(plain, 'utf8'), 'not a socket', 'and leaves the file alone');
});

t.test('a stale unix socket left by a dead server is replaced', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, MiB);
  const sock = path.join(dir, 'stale.sock');
  // A server killed with SIGKILL leaves its socket file behind, with nobody listening.
  const victim = spawn(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`,
  ]);
  t.teardown(() => victim.kill('SIGKILL'));
  await once(victim.stdout, 'data');
  victim.kill('SIGKILL');
  await once(victim, 'exit');
  t.ok(existsSync(sock), 'the dead server left its socket file');
  const srv = await startServer(['--disk', disk, '--listen', `unix:${sock}`], { t });
  const info = await run('nbdinfo', ['--size', srv.unixUri()]);
  t.equal(info.code, 0, 'nbdinfo through the reclaimed socket');
  t.equal(info.stdout.trim(), String(MiB));
});
