// Misbehaving clients must not leave anything behind in the server: after hundreds of
// connections that break the protocol in every way we know, its open descriptors (sockets,
// files) are back where they started and it still serves a good client.
import { readdir } from 'node:fs/promises';
import t from 'tap';

import { CMD, openExport, RawNbdClient, REQUEST_MAGIC } from '../helpers/raw-client.js';
import { makeDisk, sleep, startServer, tmpDir, waitFor } from '../helpers/server.js';

const MiB = 1024 * 1024;

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

function header(type: number, offset: number, length: number, magic = REQUEST_MAGIC): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(magic, 0);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(7, 12);
  h.writeUInt32BE(offset, 20);
  h.writeUInt32BE(length, 24);
  return h;
}

/** One connection that misbehaves in way number `kind`, then goes away. */
async function misbehave(target: string, kind: number): Promise<void> {
  switch (kind % 6) {
    case 0: {
      // Greeting read, then gone without a word.
      const c = await RawNbdClient.connect(target);
      await c.readGreeting();
      c.destroy();
      return;
    }
    case 1: {
      // Half of the client flags, then gone.
      const c = await RawNbdClient.connect(target);
      await c.readGreeting();
      await c.write(Buffer.from([0, 0]));
      c.destroy();
      return;
    }
    case 2: {
      // Bad request magic: the server hangs up.
      const { client } = await openExport(target);
      await client.write(header(CMD.READ, 0, 4096, 0x12345678));
      await client.waitForClose();
      client.destroy();
      return;
    }
    case 3: {
      // A 1 MiB WRITE whose payload stops halfway.
      const { client } = await openExport(target);
      await client.write(Buffer.concat([header(CMD.WRITE, 0, MiB), Buffer.alloc(MiB / 2)]));
      client.destroy();
      return;
    }
    case 4: {
      // Many reads in flight, then gone before the replies.
      const { client } = await openExport(target);
      const burst = [];
      for (let i = 0; i < 32; i++) burst.push(header(CMD.READ, i * 65536, 65536));
      await client.write(Buffer.concat(burst));
      client.destroy();
      return;
    }
    default: {
      // Garbage instead of a handshake.
      const c = await RawNbdClient.connect(target);
      await c.write(Buffer.alloc(100, 0xff));
      await c.waitForClose();
      c.destroy();
    }
  }
}

t.test('hundreds of broken connections leak no descriptors', async (t) => {
  t.setTimeout(120_000);
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 16 * MiB);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });

  // A first good session loads everything the server opens lazily.
  const first = await openExport(srv.tcp);
  await first.client.readData(0, 4096);
  await first.client.disconnect();
  const closed = () => srv.logs.filter((l) => String(l.json?.msg).startsWith('connection closed'));
  await waitFor(() => closed().length >= 1, 5000);
  const baseline = await openFds(srv.pid);

  const rounds = 300;
  for (let i = 0; i < rounds; i += 20) {
    await Promise.all(
      Array.from({ length: 20 }, (_, j) => misbehave(srv.tcp, i + j).catch(() => undefined)),
    );
  }
  const allClosed = await waitFor(() => closed().length >= rounds + 1, 30_000);
  t.ok(allClosed, `the server logged every close (${closed().length} of ${rounds + 1})`);
  // Descriptors close asynchronously right after the log line; give them a moment.
  const settled = await waitFor(async () => (await openFds(srv.pid)) <= baseline, 10_000);
  t.ok(settled, `open descriptors back to ${baseline} (now ${await openFds(srv.pid)})`);

  const after = await openExport(srv.tcp);
  const read = await after.client.readData(0, 4096);
  t.equal(read.error, 0, 'a good client is still served');
  t.equal(read.data?.length, 4096, 'with the data it asked for');
  await after.client.disconnect();
  t.ok(srv.isAlive(), 'server alive');
  await sleep(10);
});
