// FrameChannel's write side over real TCP on 127.0.0.1: frames of one tick are corked into
// one write, and flush() sends them at once.
import net from 'node:net';

import t from 'tap';

import { FrameChannel } from '../../src/replication/channel.js';
import { encodeFrame } from '../../src/replication/frame.js';
import { waitFor } from '../helpers/server.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const HOST = '127.0.0.1';

/** A sending channel and the epochs of the barrier frames the other end has received. */
async function pair(t: Test): Promise<{
  tx: FrameChannel;
  got: number[];
}> {
  const got: number[] = [];
  let rx: FrameChannel | undefined;
  const server = net.createServer((s) => {
    rx = new FrameChannel(s, 'DATA');
    rx.attach(
      (f) => {
        if (f.msg.type === 'barrier') got.push(f.msg.body.epoch);
      },
      () => {},
    );
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  const port = (server.address() as net.AddressInfo).port;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    s.once('error', reject);
    s.once('connect', () => resolve(s));
  });
  const tx = new FrameChannel(socket, 'DATA');
  tx.attach(
    () => {},
    () => {},
  );
  t.ok(await waitFor(() => rx !== undefined, 3000, 2), 'the server accepted');
  t.teardown(async () => {
    tx.destroy();
    rx?.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { tx, got };
}

const barrier = (epoch: number): Buffer[] => encodeFrame('barrier', { epoch, writes: 0 });

t.test('flush() hands the frames of this tick to the kernel at once', async (t) => {
  const { tx, got } = await pair(t);
  tx.send(barrier(1));
  tx.send(barrier(2));
  t.ok(tx.writableLength > 0, 'corked until the tick ends');
  tx.flush();
  t.equal(tx.writableLength, 0, 'sent by flush()');
  tx.flush();
  tx.send(barrier(3));
  t.ok(tx.writableLength > 0, 'a later frame of the same tick is corked again');
  t.ok(await waitFor(() => got.length === 3, 3000, 2), 'three frames arrived');
  t.same(got, [1, 2, 3]);
  t.equal(tx.writableLength, 0);
  tx.flush();
  t.equal(tx.writableLength, 0, 'flush() with nothing queued does nothing');
});
