// Hostile and broken clients. Each rule is followed by a good request on the same
// connection (where the connection must survive) and a good client afterwards, and the
// backing file is checked so that a refused request provably changed nothing.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { stat } from 'node:fs/promises';
import {
  CMD,
  CMD_FLAG,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  REQUEST_MAGIC,
  RawNbdClient,
  describeReply,
  openExport,
  type SimpleReply,
} from '../helpers/raw-client.js';
import {
  allBytes,
  makeDisk,
  readRange,
  run,
  sleep,
  startServer,
  tmpDir,
  waitFor,
  within,
  spawnTracked,
  URBD_CLI,
} from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;
const SIZE = 48 * MiB; // larger than the 32 MiB request cap, so "too long" is not also "past the end"

async function setup(t: Test, extra: string[] = [], fill = 0x5a) {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, SIZE, fill);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0', ...extra], { t });
  const opened: RawNbdClient[] = [];
  t.teardown(() => opened.forEach((c) => c.destroy()));
  const open = async (name = '') => {
    const { client } = await openExport(srv.tcp, name);
    opened.push(client);
    return client;
  };
  return { dir, disk, srv, open, track: (c: RawNbdClient) => opened.push(c) };
}

/** A READ that must succeed and return `fill` bytes: proves the stream is still in sync. */
async function goodRead(t: Test, c: RawNbdClient, what: string, offset = 4096, fill = 0x5a) {
  const r = await c.readData(offset, 4096);
  t.equal(r.error, 0, `${what}: a following READ succeeds`);
  t.ok(r.data && allBytes(r.data, fill), `${what}: and returns the disk's data`);
}

async function nbdinfoWorks(t: Test, uri: string) {
  const r = await run('nbdinfo', ['--size', uri], { timeoutMs: 20000 });
  t.equal(r.code, 0, 'nbdinfo (a fresh, well-behaved client) still connects', { stderr: r.stderr });
  t.equal(r.stdout.trim(), String(SIZE), 'and sees the right size');
}

t.test('out-of-range, unknown and invalid requests keep the connection', async (t) => {
  const { disk, srv, open } = await setup(t);
  const c = await open();

  t.equal((await c.readData(SIZE, 4096)).error, NBD_EINVAL, 'READ at the end: EINVAL');
  await goodRead(t, c, 'past-end READ');
  t.equal(
    (await c.readData(SIZE - 512, 1024)).error,
    NBD_EINVAL,
    'READ straddling the end: EINVAL',
  );
  t.equal((await c.readData(2n ** 63n, 512)).error, NBD_EINVAL, 'READ at offset 2^63: EINVAL');
  t.equal(
    (await c.readData(2n ** 64n - 512n, 1024)).error,
    NBD_EINVAL,
    'READ whose end wraps 2^64: EINVAL',
  );
  await goodRead(t, c, 'huge-offset READ');

  t.equal(await c.writeData(SIZE, Buffer.alloc(4096, 1)), NBD_ENOSPC, 'WRITE at the end: ENOSPC');
  await goodRead(t, c, 'past-end WRITE');
  t.equal(
    await c.writeData(SIZE - 512, Buffer.alloc(1024, 1)),
    NBD_ENOSPC,
    'WRITE straddling the end: ENOSPC',
  );
  await goodRead(t, c, 'straddling WRITE');
  t.equal(
    await c.writeData(2n ** 64n - 512n, Buffer.alloc(1024, 1)),
    NBD_ENOSPC,
    'WRITE wrapping 2^64: ENOSPC',
  );
  t.equal((await stat(disk)).size, SIZE, 'the backing file did not grow');

  t.equal(await c.command(CMD.TRIM, SIZE, 4096), NBD_EINVAL, 'TRIM past the end: EINVAL');
  await goodRead(t, c, 'past-end TRIM');
  const z = await c.command(CMD.WRITE_ZEROES, SIZE - 4096, 8192);
  t.ok(z === NBD_ENOSPC || z === NBD_EINVAL, `WRITE_ZEROES past the end fails (${z})`);
  t.ok(allBytes(await readRange(disk, SIZE - 4096, 4096), 0x5a), 'and zeroed nothing');
  t.equal((await stat(disk)).size, SIZE, 'the backing file did not grow');

  const cookie = 0xdeadbeefcafef00dn;
  await c.send({ type: 0x42, offset: 0, length: 512, cookie });
  const unk = await c.readSimpleReply();
  t.equal(unk.error, NBD_EINVAL, 'unknown command 0x42: EINVAL');
  t.equal(unk.cookie, cookie, 'cookie echoed byte for byte');
  await goodRead(t, c, 'unknown command');
  t.equal(await c.command(0xffff, 0, 0), NBD_EINVAL, 'unknown command 0xffff: EINVAL');
  await goodRead(t, c, 'unknown command 0xffff');

  for (const flag of [0x8000, 0x0100, 0x0040]) {
    t.equal(
      (await c.readData(0, 512, flag)).error,
      NBD_EINVAL,
      `READ with unknown flag 0x${flag.toString(16)}: EINVAL`,
    );
    await goodRead(t, c, `unknown flag 0x${flag.toString(16)}`);
  }

  t.equal(
    await c.writeData(8192, Buffer.alloc(4096, 0x99), CMD_FLAG.NO_HOLE),
    NBD_EINVAL,
    'WRITE with NO_HOLE: EINVAL',
  );
  await goodRead(t, c, 'WRITE with NO_HOLE (payload drained)');
  t.ok(allBytes(await readRange(disk, 8192, 4096), 0x5a), 'the refused WRITE was not applied');

  // 32 MiB is the limit: exactly 32 MiB works, one byte more is refused
  const big = await c.readData(MiB, 32 * MiB);
  t.equal(big.error, 0, 'READ of exactly 32 MiB succeeds');
  t.ok(big.data && allBytes(big.data, 0x5a), 'with the right data');
  t.equal((await c.readData(0, 32 * MiB + 1)).error, NBD_EINVAL, 'READ of 32 MiB + 1: EINVAL');
  await goodRead(t, c, 'oversized READ');
  const tooBig = Buffer.alloc(32 * MiB + 4096, 0x77);
  t.equal(await c.writeData(0, tooBig), NBD_EINVAL, 'WRITE of 32 MiB + 4 KiB: EINVAL');
  await goodRead(t, c, 'oversized WRITE (payload drained)');
  t.ok(allBytes(await readRange(disk, 0, 4096), 0x5a), 'the oversized WRITE was not applied');
  t.ok(allBytes(await readRange(disk, 32 * MiB, 4096), 0x5a), 'not even its tail');
  const exact = Buffer.alloc(32 * MiB, 0x66);
  t.equal(await c.writeData(8 * MiB, exact), 0, 'WRITE of exactly 32 MiB succeeds');
  t.ok(allBytes(await readRange(disk, 40 * MiB - 4096, 4096), 0x66), 'and reaches the disk');

  // valid commands with flags the server must accept
  t.equal((await c.readData(0, 512, CMD_FLAG.FUA)).error, 0, 'READ with FUA is accepted');
  t.equal(await c.command(CMD.FLUSH, 0, 0), 0, 'FLUSH');
  t.equal(await c.command(CMD.CACHE, 0, 65536), 0, 'CACHE');
  t.equal(await c.command(CMD.TRIM, 44 * MiB, MiB), 0, 'TRIM in range');
  t.equal(
    await c.command(CMD.WRITE_ZEROES, 4096, 4096, CMD_FLAG.NO_HOLE | CMD_FLAG.FUA),
    0,
    'WRITE_ZEROES NO_HOLE|FUA',
  );
  t.same((await c.readData(4096, 4096)).data, Buffer.alloc(4096), 'reads back as zeroes');
  t.equal(await c.command(CMD.WRITE_ZEROES, 12288, 4096), 0, 'WRITE_ZEROES (hole allowed)');
  t.same((await c.readData(12288, 4096)).data, Buffer.alloc(4096), 'reads back as zeroes');
  t.equal(
    await c.command(CMD.BLOCK_STATUS, 0, 4096),
    NBD_EINVAL,
    'BLOCK_STATUS without SR: EINVAL',
  );
  await goodRead(t, c, 'BLOCK_STATUS', 16384);

  // unaligned 1-byte granularity (minimum block size 1)
  t.equal(await c.writeData(100001, Buffer.from('xyz')), 0, '3-byte WRITE at an odd offset');
  t.same(
    (await c.readData(100000, 5)).data,
    Buffer.from([0x5a, 0x78, 0x79, 0x7a, 0x5a]),
    'read back exactly',
  );

  // many requests in flight, answered once each with matching cookies
  const cookies = new Set<bigint>();
  const batch: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    const ck = 1000n + BigInt(i) * 0x100000001n;
    cookies.add(ck);
    batch.push(
      RawNbdClient.encodeRequest({
        type: CMD.READ,
        offset: 16384 + i * 512,
        length: 512,
        cookie: ck,
      }),
    );
  }
  await c.write(Buffer.concat(batch));
  for (let i = 0; i < 64; i++) {
    const r = await c.readReply(() => 512);
    t.ok(r.kind === 'simple' && r.error === 0 && cookies.delete(r.cookie), `pipelined reply ${i}`, {
      reply: describeReply(r),
    });
  }
  t.equal(cookies.size, 0, 'every pipelined request answered exactly once');

  t.ok(srv.isAlive(), 'server alive');
  await nbdinfoWorks(t, srv.uri());
});

t.test('zero-length requests are answered without a disconnect', async (t) => {
  const { srv, open } = await setup(t);
  // the spec leaves the result open; only a disconnect (or a crash) is wrong
  const cases: [string, (c: RawNbdClient) => Promise<number>][] = [
    ['READ', async (c) => (await c.readData(4096, 0)).error],
    ['WRITE', (c) => c.writeData(4096, Buffer.alloc(0))],
    ['TRIM', (c) => c.command(CMD.TRIM, 4096, 0)],
    ['WRITE_ZEROES', (c) => c.command(CMD.WRITE_ZEROES, 4096, 0)],
    ['CACHE', (c) => c.command(CMD.CACHE, 4096, 0)],
  ];
  for (const [name, fn] of cases) {
    const c = await open();
    try {
      const err = await fn(c);
      t.ok([0, NBD_EINVAL, NBD_ENOSPC].includes(err), `zero-length ${name} answered (${err})`);
      await goodRead(t, c, `zero-length ${name}`);
    } catch (e) {
      t.fail(`zero-length ${name}: ${(e as Error).message}`);
    }
    // an exit takes a moment to be noticed; give it the chance to show
    const died = await within(srv.exited, 300);
    t.equal(died, 'timeout', `server alive after zero-length ${name}`);
    if (died !== 'timeout') {
      t.comment(srv.stderr().slice(-1500));
      return;
    }
  }
  await nbdinfoWorks(t, srv.uri());
});

t.test('read-only export: WRITE/TRIM/WRITE_ZEROES → EPERM, payload drained', async (t) => {
  const { disk, srv, open } = await setup(t, ['--read-only']);
  const c = await open();
  t.equal(await c.writeData(0, Buffer.alloc(65536, 0x11)), NBD_EPERM, 'WRITE: EPERM');
  await goodRead(t, c, 'WRITE on read-only');
  t.equal(
    await c.writeData(0, Buffer.alloc(512, 0x11), CMD_FLAG.FUA),
    NBD_EPERM,
    'WRITE+FUA: EPERM',
  );
  await goodRead(t, c, 'WRITE+FUA on read-only');
  t.equal(await c.command(CMD.TRIM, 0, 65536), NBD_EPERM, 'TRIM: EPERM');
  await goodRead(t, c, 'TRIM on read-only');
  t.equal(await c.command(CMD.WRITE_ZEROES, 0, 65536), NBD_EPERM, 'WRITE_ZEROES: EPERM');
  await goodRead(t, c, 'WRITE_ZEROES on read-only');
  t.ok(allBytes(await readRange(disk, 0, 65536), 0x5a), 'backing file unchanged');
  t.equal((await c.readData(SIZE, 512)).error, NBD_EINVAL, 'past-end READ is still EINVAL');
  t.ok(srv.isAlive(), 'server alive');
});

t.test('bad request magic closes that connection only, and is logged', async (t) => {
  const { srv, open } = await setup(t);
  const bystander = await open();
  await goodRead(t, bystander, 'bystander before');
  const closedCount = 3;
  for (let i = 0; i < closedCount; i++) {
    const c = await open();
    await c.send({ magic: 0x12345678 + i, type: CMD.READ, offset: 0, length: 512 });
    const { closed, leftover } = await c.waitForClose(5000);
    t.ok(closed, `bad magic #${i}: connection closed`);
    t.equal(leftover.length, 0, 'without a reply');
  }
  // a request magic that is right for extended headers but never negotiated
  const ext = await open();
  await ext.send({ magic: 0x21e41c71, type: CMD.READ, offset: 0, length: 512 });
  t.ok((await ext.waitForClose(5000)).closed, 'un-negotiated extended-header magic: closed');
  await goodRead(t, bystander, 'bystander after');
  await nbdinfoWorks(t, srv.uri());
  const lines = await waitFor(() => {
    const n = srv.logs.filter((l) => /magic/i.test(l.raw)).length;
    return n >= closedCount + 1 ? n : 0;
  }, 5000);
  t.ok(lines, `one log line per bad-magic connection mentions "magic" (${lines ?? 0} lines)`, {
    logs: srv.logs.slice(-10).map((l) => l.raw),
  });
});

t.test('a client that vanishes mid-request changes nothing', async (t) => {
  const { disk, srv, open } = await setup(t);
  const c = await open();
  await c.send({ type: CMD.WRITE, offset: 0, length: 65536, payload: Buffer.alloc(1000, 0x55) });
  await sleep(200);
  c.destroy();
  const h = await open();
  await h.write(
    RawNbdClient.encodeRequest({ type: CMD.WRITE, offset: 65536, length: 4096 }).subarray(0, 10),
  );
  await sleep(100);
  h.destroy();
  await sleep(300);
  t.ok(srv.isAlive(), 'server alive');
  const d = await open();
  const r = await d.readData(0, 65536 + 4096);
  t.equal(r.error, 0, 'new connection reads');
  t.ok(r.data && allBytes(r.data, 0x5a), 'old data everywhere: the partial WRITE was not applied');
  t.ok(allBytes(await readRange(disk, 0, 65536), 0x5a), 'backing file unchanged');
  t.equal(await d.command(CMD.FLUSH, 0, 0), 0, 'FLUSH on the new connection');
  await nbdinfoWorks(t, srv.uri());
});

t.test('a half-sent handshake does not block other clients', async (t) => {
  const { srv, open, track } = await setup(t);
  const stuckFlags = await RawNbdClient.connect(srv.tcp);
  track(stuckFlags);
  await stuckFlags.readGreeting();
  await stuckFlags.write(Buffer.from([0, 0])); // 2 of 4 client-flag bytes
  const stuckOpt = await RawNbdClient.connect(srv.tcp);
  track(stuckOpt);
  await stuckOpt.handshake();
  await stuckOpt.sendOption(7, Buffer.alloc(4), 100); // GO header promising 100 bytes, 4 sent
  const silent = await RawNbdClient.connect(srv.tcp);
  track(silent);

  const c = await open();
  t.equal(await c.writeData(4096, Buffer.alloc(4096, 0x31)), 0, 'another client writes');
  t.same((await c.readData(4096, 4096)).data, Buffer.alloc(4096, 0x31), 'and reads');
  await nbdinfoWorks(t, srv.uri());
  const q = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x31 4096 4096', srv.uri()], {
    timeoutMs: 20000,
  });
  t.equal(q.code, 0, 'qemu-io is served too', { stderr: q.stderr });
  t.ok(srv.isAlive(), 'server alive');
});

t.test('a flood of connections beyond --max-connections', async (t) => {
  const { srv, open } = await setup(t, ['--max-connections', '64']);
  const N = 300;
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  const outcomes = await Promise.all(
    Array.from(
      { length: N },
      () =>
        new Promise<'greeted' | 'closed' | 'pending'>((resolve) => {
          const s = net.connect(srv.port, '127.0.0.1');
          sockets.push(s);
          let got = 0;
          const timer = setTimeout(() => resolve('pending'), 10000);
          s.on('data', (d) => {
            got += d.length;
            if (got >= 18) {
              clearTimeout(timer);
              resolve('greeted');
            }
          });
          s.on('error', () => undefined);
          s.on('close', () => {
            clearTimeout(timer);
            resolve('closed');
          });
        }),
    ),
  );
  // give the server a moment to close any it greeted but should not keep
  await sleep(1000);
  const held = sockets.filter(
    (s, i) => outcomes[i] === 'greeted' && !s.destroyed && s.readyState === 'open',
  ).length;
  const closed = outcomes.filter((o) => o === 'closed').length;
  const pending = outcomes.filter((o) => o === 'pending').length;
  t.ok(held <= 64, `at most 64 connections held open (${held})`);
  t.ok(held >= 32, `the allowed ones were served (${held})`);
  t.ok(closed >= N - 64, `the excess was closed (${closed} closed)`);
  t.equal(pending, 0, 'no connection left hanging without a greeting or a close');
  t.ok(srv.isAlive(), 'server alive during the flood');
  sockets.forEach((s) => s.destroy());

  // the server has to notice the closes before a slot frees up
  const c = await waitFor(() => open().catch(() => undefined), 5000, 200);
  t.ok(c, 'a good client is served once the flood is gone');
  if (c) await goodRead(t, c, 'after the flood');
  await nbdinfoWorks(t, srv.uri());
  t.ok(srv.isAlive(), 'server alive');
});

t.test('DISC closes after answering outstanding requests', async (t) => {
  const { disk, open } = await setup(t);
  const c = await open();
  const a = Buffer.alloc(4096, 0x11);
  const b = Buffer.alloc(4096, 0x22);
  const msgs = [
    RawNbdClient.encodeRequest({
      type: CMD.WRITE,
      offset: 0,
      length: 4096,
      cookie: 1n,
      payload: a,
    }),
    RawNbdClient.encodeRequest({
      type: CMD.WRITE,
      offset: 4096,
      length: 4096,
      cookie: 2n,
      payload: b,
    }),
    RawNbdClient.encodeRequest({ type: CMD.READ, offset: 65536, length: 65536, cookie: 3n }),
    RawNbdClient.encodeRequest({ type: CMD.FLUSH, offset: 0, length: 0, cookie: 4n }),
    RawNbdClient.encodeRequest({ type: CMD.DISC, offset: 0, length: 0, cookie: 5n }),
  ];
  await c.write(Buffer.concat(msgs));
  const seen = new Map<bigint, SimpleReply>();
  for (let i = 0; i < 4; i++) {
    const r = await c.readSimpleReply(0).catch(() => undefined);
    if (!r) break;
    if (r.cookie === 3n && r.error === 0) r.data = await c.readExact(65536);
    seen.set(r.cookie, r);
  }
  t.same([...seen.keys()].sort(), [1n, 2n, 3n, 4n], 'all four requests answered before the close');
  t.ok(
    [...seen.values()].every((r) => r.error === 0),
    'all succeeded',
  );
  t.ok(seen.get(3n)?.data && allBytes(seen.get(3n)!.data!, 0x5a), 'READ data correct');
  const { closed, leftover } = await c.waitForClose(5000);
  t.ok(closed, 'server closed after DISC');
  t.equal(leftover.length, 0, 'no reply to DISC itself');
  t.ok(allBytes(await readRange(disk, 0, 4096), 0x11), 'first WRITE applied');
  t.ok(allBytes(await readRange(disk, 4096, 4096), 0x22), 'second WRITE applied');
});

t.test('SIGTERM: exit 0 with clients connected, sockets closed', async (t) => {
  const { srv, open, disk } = await setup(t);
  const c = await open();
  const data = randomBytes(65536);
  t.equal(await c.writeData(0, data), 0, 'a write before shutdown');
  const idle = await RawNbdClient.connect(srv.tcp);
  await idle.readGreeting();
  const code = await srv.stop(10000);
  t.equal(code, 0, 'exit code 0');
  t.ok((await c.waitForClose(2000)).closed, 'transmission-phase client disconnected');
  t.ok((await idle.waitForClose(2000)).closed, 'handshake-phase client disconnected');
  idle.destroy();
  t.same(await readRange(disk, 0, 65536), data, 'acknowledged write is in the backing file');
  const again = await RawNbdClient.connect(srv.tcp).then(
    (x) => {
      x.destroy();
      return true;
    },
    () => false,
  );
  t.notOk(again, 'nothing listens any more');
});

t.test('SIGTERM right after the listening line exits 0', async (t) => {
  // readiness is announced by the listening line; a supervisor may stop the server at once
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, MiB);
  const codes: (number | null | 'timeout')[] = [];
  for (let i = 0; i < 10; i++) {
    const p = spawnTracked(
      process.execPath,
      [URBD_CLI, 'serve', '--disk', disk, '--listen', '127.0.0.1:0'],
      {
        t,
      },
    );
    // signal from inside the data callback: as early as a supervisor reading the line could
    p.child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('"msg":"listening"')) process.kill(p.pid, 'SIGTERM');
    });
    codes.push(await within(p.exited, 10000));
  }
  t.same(codes, Array(10).fill(0), 'every run exits 0 (null = killed by the signal)');
});

t.test('unaligned raw garbage right after the handshake', async (t) => {
  const { srv, open } = await setup(t);
  const c = await open();
  // 28 bytes that happen to start with the right magic but then are truncated: the server
  // must wait for the rest, not misparse; finishing the header later works.
  const req = RawNbdClient.encodeRequest({
    type: CMD.READ,
    offset: 4096,
    length: 4096,
    cookie: 77n,
  });
  await c.write(req.subarray(0, 5));
  await sleep(100);
  await c.write(req.subarray(5, 17));
  await sleep(100);
  await c.write(req.subarray(17));
  const r = await c.readSimpleReply(4096);
  t.equal(r.cookie, 77n, 'header assembled from three fragments');
  t.ok(r.data && allBytes(r.data, 0x5a), 'correct data');
  const junk = Buffer.from(randomBytes(28));
  junk.writeUInt32BE((REQUEST_MAGIC ^ 0xffffffff) >>> 0, 0);
  await c.write(junk);
  t.ok((await c.waitForClose(5000)).closed, 'random garbage: closed');
  await nbdinfoWorks(t, srv.uri());
});
