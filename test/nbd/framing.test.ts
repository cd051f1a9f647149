// The request stream cut at arbitrary points: headers and payloads of pipelined WRITEs of
// every size, split across many small socket writes, must land byte for byte, on both of the
// server's read paths (its own buffers, where large payloads land in place, and Node's).
import { randomBytes } from 'node:crypto';
import t from 'tap';

import { CMD, openExport, RawNbdClient } from '../helpers/raw-client.js';
import { makeDisk, readRange, sleep, startServer, tmpDir } from '../helpers/server.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

/** A deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

for (const streamReads of [false, true]) {
  const how = streamReads ? 'Node stream reads' : 'reads into our buffers';
  t.test(`pipelined writes cut at random points land intact (${how})`, async (t) => {
    t.setTimeout(120_000);
    const dir = tmpDir(t);
    const disk = await makeDisk(dir, SIZE);
    const env = { ...process.env, URBD_NBD_STREAM_READS: streamReads ? '1' : '0' };
    const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t, env });
    const { client } = await openExport(srv.tcp);
    const rand = rng(streamReads ? 7 : 11);

    // Non-overlapping slots so the expected content does not depend on reply order.
    const sizes = [1, 512, 4096, 65536, 65537, 300_000, MiB, 3 * MiB + 5];
    const writes: { offset: number; data: Buffer }[] = [];
    let offset = 0;
    for (let i = 0; i < 48; i++) {
      const len = sizes[Math.floor(rand() * sizes.length)]!;
      if (offset + len > SIZE) break;
      writes.push({ offset, data: randomBytes(len) });
      offset += len + Math.floor(rand() * 4096);
    }
    const stream = Buffer.concat(
      writes.map((w, i) =>
        RawNbdClient.encodeRequest({
          type: CMD.WRITE,
          offset: w.offset,
          length: w.data.length,
          cookie: BigInt(i + 1),
          payload: w.data,
        }),
      ),
    );
    // Cut the stream into pieces from 1 byte to 256 KiB, with a pause now and then so the
    // server really sees them as separate reads.
    let at = 0;
    let pieces = 0;
    while (at < stream.length) {
      const n = 1 + Math.floor(rand() ** 3 * 256 * 1024);
      await client.write(stream.subarray(at, at + n));
      at += n;
      if (++pieces % 16 === 0) await sleep(1);
    }
    const seen = new Set<bigint>();
    for (let i = 0; i < writes.length; i++) {
      const r = await client.readSimpleReply(0, 30_000);
      t.equal(r.error, 0, `reply ${r.cookie} is a success`);
      seen.add(r.cookie);
    }
    t.equal(seen.size, writes.length, `every one of ${writes.length} writes answered once`);
    await client.disconnect();
    let bad = 0;
    for (const w of writes) {
      const got = await readRange(disk, w.offset, w.data.length);
      if (!got.equals(w.data)) bad++;
    }
    t.equal(
      bad,
      0,
      `all ${writes.length} writes (${pieces} socket writes) read back from the disk`,
    );
  });
}

for (const streamReads of [false, true]) {
  const how = streamReads ? 'Node stream reads' : 'reads into our buffers';
  t.test(`a client that half-closes still gets every reply (${how})`, async (t) => {
    const dir = tmpDir(t);
    const disk = await makeDisk(dir, 8 * MiB, 0x3c);
    const env = { ...process.env, URBD_NBD_STREAM_READS: streamReads ? '1' : '0' };
    const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t, env });
    const { client } = await openExport(srv.tcp);
    const payload = randomBytes(2 * MiB);
    const requests = [
      RawNbdClient.encodeRequest({
        type: CMD.WRITE,
        offset: 0,
        length: payload.length,
        cookie: 1n,
        payload,
      }),
      RawNbdClient.encodeRequest({ type: CMD.FLUSH, offset: 0, length: 0, cookie: 2n }),
      RawNbdClient.encodeRequest({ type: CMD.READ, offset: 4 * MiB, length: 65536, cookie: 3n }),
    ];
    await client.write(Buffer.concat(requests));
    // Shut our sending side: the server must answer all three, then close.
    client.socket.end();
    const got = new Map<bigint, number>();
    for (let i = 0; i < 3; i++) {
      const r = await client.readReply((c) => (c === 3n ? 65536 : 0), 15_000);
      if (r.kind === 'simple') got.set(r.cookie, r.error);
    }
    t.same([...got.keys()].sort(), [1n, 2n, 3n], 'all three requests answered');
    t.ok(
      [...got.values()].every((e) => e === 0),
      'all succeeded',
    );
    const { closed } = await client.waitForClose(5000);
    t.ok(closed, 'then the server closed the connection');
    t.ok((await readRange(disk, 0, payload.length)).equals(payload), 'the write landed');
  });
}
