// Real NBD clients (libnbd tools, qemu, fio) against `urbd serve`; every data path is
// checked against the backing file or a checksum, not only the tool's exit code.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  allBytes,
  makeDisk,
  readRange,
  run,
  sha256File,
  startServer,
  tmpDir,
  writeRange,
  showRun as show,
  type RunResult,
} from '../helpers/server.js';

t.setTimeout(180000);

const MiB = 1 << 20;

async function ok(tt: Tap, cmd: string, args: string[], timeoutMs = 60000): Promise<RunResult> {
  const r = await run(cmd, args, { timeoutMs });
  tt.equal(r.code, 0, `${cmd} ${args.join(' ')} exits 0`, {
    diagnostic: r.code !== 0,
    output: show(r),
  });
  return r;
}

type Tap = Test;

interface NbdinfoExport {
  'export-name': string;
  'export-size': number;
  description?: string;
  is_read_only: boolean;
  is_rotational: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_cache: boolean;
  can_multi_conn: boolean;
  contexts?: string[];
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
}

interface NbdinfoJson {
  protocol: string;
  structured: boolean;
  exports: NbdinfoExport[];
}

t.test('nbdinfo: size, flags, block sizes, JSON and the export list', async (t) => {
  const dir = tmpDir(t);
  const alpha = await makeDisk(dir, 16 * MiB, undefined, 'alpha.img');
  const beta = await makeDisk(dir, 8 * MiB, undefined, 'beta.img');
  // no extension, so the default name is the same whether or not it is stripped
  const gamma = await makeDisk(dir, 3 * MiB, undefined, 'gamma');
  const srv = await startServer(
    [
      '--disk',
      alpha,
      '--disk',
      beta,
      '--disk',
      gamma,
      '--export',
      'alpha',
      '--export',
      'beta',
      '--description',
      'urbd test disks',
      '--listen',
      '127.0.0.1:0',
    ],
    { t },
  );

  const size = await ok(t, 'nbdinfo', ['--size', srv.uri()]);
  t.equal(size.stdout.trim(), String(16 * MiB), 'default export "" is the first disk');
  for (const [name, bytes] of [
    ['alpha', 16 * MiB],
    ['beta', 8 * MiB],
    ['gamma', 3 * MiB],
  ] as const) {
    const r = await ok(t, 'nbdinfo', ['--size', srv.uri(name)]);
    t.equal(r.stdout.trim(), String(bytes), `size of export ${name}`);
  }

  for (const what of [
    'connect',
    'read',
    'write',
    'flush',
    'fua',
    'trim',
    'zero',
    'multi-conn',
    'cache',
    'structured-reply',
  ]) {
    const r = await run('nbdinfo', ['--can', what, srv.uri()], { timeoutMs: 20000 });
    t.equal(r.code, 0, `nbdinfo --can ${what} → yes (exit 0)`, { output: show(r) });
  }
  const ro = await run('nbdinfo', ['--is', 'read-only', srv.uri()], { timeoutMs: 20000 });
  t.equal(ro.code, 2, 'nbdinfo --is read-only → no (exit 2) on a writable server', {
    output: show(ro),
  });

  const j = await ok(t, 'nbdinfo', ['--json', srv.uri()]);
  const info = JSON.parse(j.stdout) as NbdinfoJson;
  t.equal(info.protocol, 'newstyle-fixed', 'fixed newstyle');
  t.equal(info.structured, true, 'structured replies negotiated');
  t.equal(info.exports.length, 1, 'one export described');
  const e = info.exports[0]!;
  // INFO_NAME may canonicalise "" to the default export's real name
  t.ok(
    ['', 'alpha'].includes(e['export-name']),
    `export name "" or its canonical name (${e['export-name']})`,
  );
  t.equal(e['export-size'], 16 * MiB, 'export size');
  t.equal(e.is_read_only, false, 'writable');
  t.match(
    e,
    {
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_cache: true,
      can_multi_conn: true,
    },
    'advertised capabilities',
  );
  t.ok(e.contexts?.includes('base:allocation'), 'base:allocation context offered', {
    contexts: e.contexts,
  });
  t.equal(e.block_size_minimum, 1, 'minimum block size 1');
  t.equal(e.block_size_preferred, 4096, 'preferred block size 4096');
  t.equal(e.block_size_maximum, 32 * MiB, 'maximum block size 32 MiB');
  t.equal(e.description, 'urbd test disks', 'description from --description');

  const l = await ok(t, 'nbdinfo', ['--list', '--json', srv.uri()]);
  const list = JSON.parse(l.stdout) as NbdinfoJson;
  const byName = new Map(list.exports.map((x) => [x['export-name'], x]));
  t.same([...byName.keys()].sort(), ['alpha', 'beta', 'gamma'], 'every disk listed under its name');
  t.equal(byName.get('alpha')?.['export-size'], 16 * MiB, 'listed size of alpha');
  t.equal(byName.get('beta')?.['export-size'], 8 * MiB, 'listed size of beta');
  t.equal(byName.get('gamma')?.['export-size'], 3 * MiB, 'listed size of gamma');

  const missing = await run('nbdinfo', ['--size', srv.uri('no-such-export')], { timeoutMs: 20000 });
  t.not(missing.code, 0, 'an unknown export name is refused', { output: show(missing) });

  // The named exports really are distinct disks: a write to beta lands in beta's file only.
  await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 4096 4096', srv.uri('beta')]);
  t.ok(
    allBytes(await readRange(beta, 4096, 4096), 0x3c),
    'write through export beta reached beta.img',
  );
  t.ok(allBytes(await readRange(alpha, 4096, 4096), 0), 'alpha.img untouched');
  t.ok(allBytes(await readRange(gamma, 4096, 4096), 0), 'gamma untouched');

  t.equal(await srv.stop(), 0, 'server exits 0 on SIGTERM');
});

t.test('nbdinfo --map reports data and a hole on a sparse disk', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 8 * MiB);
  await writeRange(disk, 0, randomBytes(MiB));
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const r = await ok(t, 'nbdinfo', ['--map', '--json', srv.uri()]);
  const map = JSON.parse(r.stdout) as {
    offset: number;
    length: number;
    type: number;
    description: string;
  }[];
  t.ok(map.length >= 2, 'more than one extent', { map });
  const total = map.reduce((n, x) => n + x.length, 0);
  t.equal(total, 8 * MiB, 'extents cover the whole disk');
  const at = (off: number) => map.find((x) => x.offset <= off && off < x.offset + x.length);
  t.equal((at(0)?.type ?? -1) & 1, 0, 'the written first MiB is data', { map });
  t.equal((at(4 * MiB)?.type ?? 0) & 1, 1, 'the never-written middle is a hole', { map });
  t.equal((at(8 * MiB - 1)?.type ?? 0) & 1, 1, 'the tail is a hole', { map });
});

t.test('a --read-only server refuses writes and still serves reads', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 4 * MiB, 0x77);
  const srv = await startServer(['--disk', disk, '--read-only', '--listen', '127.0.0.1:0'], { t });
  const j = JSON.parse((await ok(t, 'nbdinfo', ['--json', srv.uri()])).stdout) as NbdinfoJson;
  t.equal(j.exports[0]?.is_read_only, true, 'nbdinfo shows is_read_only');
  const isRo = await run('nbdinfo', ['--is', 'read-only', srv.uri()], { timeoutMs: 20000 });
  t.equal(isRo.code, 0, 'nbdinfo --is read-only → yes', { output: show(isRo) });
  const canWrite = await run('nbdinfo', ['--can', 'write', srv.uri()], { timeoutMs: 20000 });
  t.equal(canWrite.code, 2, 'nbdinfo --can write → no (exit 2)', { output: show(canWrite) });
  await ok(t, 'qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x77 0 1M', srv.uri()]);
  const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 64k', srv.uri()], {
    timeoutMs: 20000,
  });
  t.not(w.code, 0, 'qemu-io write to a read-only export fails', { output: show(w) });
  t.ok(allBytes(await readRange(disk, 0, 65536), 0x77), 'backing file unchanged');
});

t.test('unix-socket and TCP listeners serve the same export', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 4 * MiB);
  const sock = path.join(dir, 'nbd.sock');
  const srv = await startServer(
    ['--disk', disk, '--listen', `unix:${sock}`, '--listen', '127.0.0.1:0'],
    { t },
  );
  t.equal(srv.unixPath, sock, 'listening line reports the socket path');
  t.ok(srv.tcp.startsWith('nbd://127.0.0.1:'), 'and a TCP address');
  const u = `nbd+unix:///?socket=${sock}`;
  const size = await ok(t, 'nbdinfo', ['--size', u]);
  t.equal(size.stdout.trim(), String(4 * MiB), 'size over the unix socket');
  await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'write -P 0x5e 1M 64k', u]);
  await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'read -P 0x5e 1M 64k', srv.uri()]);
  t.ok(allBytes(await readRange(disk, MiB, 65536), 0x5e), 'backing file holds the data');
});

t.test('qemu-io: pattern writes, FUA, write-zeroes, discard, flush, aio', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 8 * MiB, 0x5a);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const u = srv.uri();
  const seq = [
    'write -q -P 0xab 0 64k',
    'read -q -P 0xab 0 64k',
    'write -q -f -P 0xcd 1M 4k',
    'read -q -P 0xcd 1M 4k',
    'write -q -z 2M 64k',
    'read -q -P 0 2M 64k',
    'write -q -z -u 3M 64k',
    'read -q -P 0 3M 64k',
    'discard -q 4M 1M',
    'flush',
    'aio_write -P 0x11 4M 128k',
    'aio_write -P 0x22 5M 128k',
    'aio_flush',
    'read -q -P 0x11 4M 128k',
    'read -q -P 0x22 5M 128k',
    // unaligned and odd-sized I/O (minimum block size 1)
    'write -q -P 0x33 7340000 333',
    'read -q -P 0x33 7340000 333',
  ];
  const r = await ok(t, 'qemu-io', ['-f', 'raw', ...seq.flatMap((c) => ['-c', c]), u]);
  t.notMatch(r.stdout + r.stderr, /failed|error/i, 'no command reported a failure');

  // cache=none: writes without FUA, then a read from a fresh connection
  await ok(t, 'qemu-io', [
    '-f',
    'raw',
    '-t',
    'none',
    '-c',
    'write -q -P 0x44 6M 256k',
    '-c',
    'flush',
    u,
  ]);
  await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'read -q -P 0x44 6M 256k', u]);

  // FAST_ZERO may be refused with ENOTSUP; anything else is a failure, and success must zero.
  const fz = await run('qemu-io', ['-f', 'raw', '-c', 'write -q -z -n 3M 64k', u], {
    timeoutMs: 20000,
  });
  if (fz.code === 0) {
    await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'read -q -P 0 3M 64k', u]);
  } else {
    t.match(fz.stdout + fz.stderr, /not supported/i, 'fast zero refused only with ENOTSUP', {
      output: show(fz),
    });
  }

  // the same bytes, read straight from the backing file
  const expect: [number, number, number][] = [
    [0, 65536, 0xab],
    [65536, 4096, 0x5a],
    [MiB, 4096, 0xcd],
    [2 * MiB, 65536, 0],
    [3 * MiB, 65536, 0],
    [4 * MiB, 131072, 0x11],
    [5 * MiB, 131072, 0x22],
    [6 * MiB, 262144, 0x44],
    [7340000, 333, 0x33],
    [7340333, 100, 0x5a],
    [7340000 - 100, 100, 0x5a],
  ];
  for (const [off, len, val] of expect) {
    t.ok(
      allBytes(await readRange(disk, off, len), val),
      `backing file [${off}, +${len}) = 0x${val.toString(16)}`,
    );
  }

  // The checks above must be able to fail: a wrong pattern is reported and exits 1.
  const bad = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xee 0 4k', u], {
    timeoutMs: 20000,
  });
  t.equal(bad.code, 1, 'a deliberately wrong pattern makes qemu-io exit 1', { output: show(bad) });
  t.match(bad.stdout + bad.stderr, /Pattern verification failed/, 'and it says why');
});

t.test('qemu-img convert into the export and compare', async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src.bin');
  await writeFile(src, randomBytes(6 * MiB));
  await truncate(src, 16 * MiB);
  const disk = await makeDisk(dir, 16 * MiB, 0xff);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const u = srv.uri();

  const info = await ok(t, 'qemu-img', ['info', '--output=json', u]);
  t.equal(
    (JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'],
    16 * MiB,
    'qemu-img info size',
  );

  await ok(t, 'qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, u], 60000);
  const cmp = await ok(t, 'qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, u]);
  t.match(cmp.stdout, /Images are identical/, 'qemu-img compare: identical');
  t.equal(
    await sha256File(disk),
    await sha256File(src),
    'backing file equals the source (sparse tail zeroed)',
  );

  await ok(t, 'qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x01 12345 1', u]);
  const diff = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, u], {
    timeoutMs: 60000,
  });
  t.equal(diff.code, 1, 'one changed byte makes compare exit 1', { output: show(diff) });
  // qemu-img reports the start of the differing sector
  const at = Number(/Content mismatch at offset (\d+)/.exec(diff.stdout)?.[1] ?? -1);
  t.ok(at <= 12345 && at > 12345 - 4096, `mismatch reported at the changed byte's block (${at})`);
});

// The server reads sockets into its own buffers (socket-reader.ts) unless told to keep Node's
// stream reads; both paths must carry the same bytes.
for (const streamReads of [false, true]) {
  const how = streamReads ? 'Node stream reads' : 'reads into our buffers';
  t.test(`nbdcopy with two connections: upload, download, checksums (${how})`, async (t) => {
    const dir = tmpDir(t);
    const src = path.join(dir, 'src.bin');
    await writeFile(src, randomBytes(32 * MiB));
    await truncate(src, 64 * MiB);
    // the export starts non-zero, so the sparse tail only matches if zeroing really happens
    const disk = await makeDisk(dir, 64 * MiB, 0xa5);
    const env = { ...process.env, URBD_NBD_STREAM_READS: streamReads ? '1' : '0' };
    const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t, env });
    const u = srv.uri();
    const want = await sha256File(src);

    const up = await ok(t, 'nbdcopy', ['-v', '--connections=2', '--flush', src, u], 90000);
    t.match(up.stderr, /connections=2/, 'nbdcopy kept 2 connections (multi-conn advertised)');
    t.match(up.stderr, /dst1: nbd_connect_uri: leave: ret=0/, 'second connection established');
    t.equal(await sha256File(disk), want, 'backing file equals the source');

    const back = path.join(dir, 'back.bin');
    await ok(t, 'nbdcopy', ['--connections=2', u, back], 90000);
    t.equal(await sha256File(back), want, 'downloaded copy equals the source');

    // the size must also match (a sha256 of a shorter file would differ anyway; say so clearly)
    const sz = await ok(t, 'nbdinfo', ['--size', u]);
    t.equal(sz.stdout.trim(), String(64 * MiB), 'export size unchanged');
  });
}

interface FioJob {
  jobname: string;
  error: number;
  write: { io_bytes: number };
  read: { io_bytes: number };
}

async function fio(t: Tap, outFile: string, args: string[]): Promise<FioJob[]> {
  const r = await ok(t, 'fio', [...args, '--output-format=json', `--output=${outFile}`], 120000);
  t.notMatch(r.stdout + r.stderr, /verify|bad magic|crc32c/i, 'no verification complaints', {
    output: show(r),
  });
  const text = await readFile(outFile, 'utf8');
  return (JSON.parse(text.slice(text.indexOf('{'))) as { jobs: FioJob[] }).jobs;
}

t.test('fio nbd engine: random writes verified with crc32c, one and two connections', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 64 * MiB);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const common = [
    '--ioengine=nbd',
    `--uri=${srv.uri()}`,
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=16',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--do_verify=1',
    // fio would otherwise leave *-verify.state files in the working directory.
    '--verify_state_save=0',
  ];

  const one = await fio(t, path.join(dir, 'fio1.json'), [
    '--name=one',
    ...common,
    '--size=64M',
    '--fsync=256',
  ]);
  t.equal(one.length, 1, 'one job');
  t.equal(one[0]?.error, 0, 'job error 0');
  t.equal(one[0]?.write.io_bytes, 64 * MiB, 'wrote the whole 64 MiB');
  t.equal(one[0]?.read.io_bytes, 64 * MiB, 'read all of it back for verification');

  // two jobs = two NBD connections, each on its own half so they never overwrite each other
  const two = await fio(t, path.join(dir, 'fio2.json'), [
    '--name=two',
    ...common,
    '--numjobs=2',
    '--size=32M',
    '--offset_increment=32M',
    '--bs=8k',
  ]);
  t.equal(two.length, 2, 'two jobs');
  for (const j of two) {
    t.equal(j.error, 0, `${j.jobname}: error 0`);
    t.equal(j.write.io_bytes, 32 * MiB, `${j.jobname}: wrote 32 MiB`);
    t.equal(j.read.io_bytes, 32 * MiB, `${j.jobname}: verified 32 MiB`);
  }
  t.ok(srv.isAlive(), 'server still running');
});
