/**
 * The C ping-pong (pingpong.c) in Node: what one round trip between two Node processes costs
 * on this machine, and what urbd's framing adds to it. Beside the C one it splits the cost of
 * a replicated write's round trip at QD1 into what any pair of Node event loops pays and what
 * is urbd's own (docs/performance.md, "QD1 and write + fsync QD1").
 *
 *   node dist/scripts/bench/pingpong-node.js [--mode raw|frames] [--trips N] [--bytes B]
 *     [--write FILE]
 *
 * raw: the parent writes B bytes, the child echoes them, each side reading into one reused
 * buffer (`onread`), TCP_NODELAY, as urbd's sockets are set up.
 * frames: the parent sends a replicated-write frame (`data` + B bytes of payload) through a
 * FrameChannel; the child decodes it with a FrameReader and answers with a `writeAck` frame,
 * as a secondary does; with --write FILE (an existing file of at least 256 MiB) it first
 * writes the payload there.
 * Loopback only; the child exits when the parent closes the socket.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';

import { FrameChannel } from '../../src/replication/channel.js';
import { encodeFrame, releasePayload } from '../../src/replication/frame.js';
import { FrameReader } from '../../src/replication/frame-reader.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mode: { type: 'string', default: 'raw' },
    trips: { type: 'string', default: '20000' },
    bytes: { type: 'string', default: '4096' },
    write: { type: 'string' },
  },
});
const mode = values.mode === 'frames' ? 'frames' : 'raw';
const bytes = Number(values.bytes);
const trips = Number(values.trips);

if (positionals[0] === 'child') void child(Number(positionals[1]));
else void parent();

/** Connects to the parent and answers every message until the socket closes. */
async function child(port: number): Promise<void> {
  if (mode === 'raw') {
    const buf = Buffer.allocUnsafe(256 * 1024);
    const sock: net.Socket = net.connect({
      host: '127.0.0.1',
      port,
      noDelay: true,
      onread: {
        buffer: buf,
        callback: (n: number) => {
          sock.write(Buffer.from(buf.subarray(0, n)));
          return true;
        },
      },
    });
    sock.on('close', () => process.exit(0));
    sock.on('error', () => process.exit(1));
    return;
  }
  const reader = new FrameReader();
  const sock = net.connect({ host: '127.0.0.1', port, onread: reader.onread });
  const ch = new FrameChannel(sock, 'DATA', reader);
  const fd = values.write === undefined ? -1 : fs.openSync(values.write, 'r+');
  let at = 0;
  ch.attach(
    (f) => {
      if (f.msg.type !== 'data') return;
      // --write: the payload goes to the file first, as a secondary's lone write does
      // (FileDisk writes it on the loop when nothing else is in flight).
      if (fd >= 0) {
        fs.writeSync(fd, f.payload!, 0, f.payload!.length, at);
        at = (at + f.payload!.length) % (256 << 20);
      }
      releasePayload(f.payload, f.pooled);
      ch.send(encodeFrame('writeAck', { seq: f.msg.body.seq }));
    },
    () => process.exit(0),
  );
}

async function parent(): Promise<void> {
  const server = net.createServer({ pauseOnConnect: mode === 'frames' });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const childArgs = ['child', String(port), '--mode', mode];
  if (values.write !== undefined) childArgs.push('--write', values.write);
  const kid = fork(process.argv[1]!, childArgs, {
    stdio: 'inherit',
  });
  const accepted = await new Promise<net.Socket>((r) => server.once('connection', r));
  server.close();
  const payload = Buffer.alloc(bytes, 7);
  let t0 = 0n;
  const done = new Promise<number>((resolve) => {
    let left = trips;
    const finish = (): void => {
      resolve(Number(process.hrtime.bigint() - t0) / 1000 / trips);
    };
    if (mode === 'raw') {
      accepted.setNoDelay(true);
      let got = 0;
      accepted.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (got < bytes) return;
        got -= bytes;
        if (--left === 0) return finish();
        accepted.write(payload);
      });
      t0 = process.hrtime.bigint();
      accepted.write(payload);
      accepted.resume();
      return;
    }
    // The accepted socket reads into a FrameReader, as PeerListener's sockets do.
    const reader = new FrameReader();
    const sock = new net.Socket({
      handle: (accepted as unknown as { _handle: unknown })._handle,
      onread: reader.onread,
    } as net.SocketConstructorOpts);
    (accepted as unknown as { _handle: unknown })._handle = null;
    const ch = new FrameChannel(sock, 'DATA', reader);
    let seq = 0;
    const sendOne = (): void =>
      ch.send(encodeFrame('data', { seq: ++seq, epoch: 1, offset: 0, length: bytes }, payload));
    ch.attach(
      (f) => {
        if (f.msg.type !== 'writeAck') return;
        if (--left === 0) return finish();
        sendOne();
      },
      () => {},
    );
    t0 = process.hrtime.bigint();
    sendOne();
  });
  const perTrip = await done;
  console.log(`${mode}: ${trips} round trips of ${bytes} bytes, ${perTrip.toFixed(1)} µs each`);
  accepted.destroy();
  kid.kill();
  process.exit(0);
}
