// The test-controlled TCP proxy (test/helpers/tcp-proxy.ts) against a plain echo server.
import { randomBytes } from 'node:crypto';
import net from 'node:net';

import t from 'tap';

import { sleep, type Teardown, waitFor } from '../helpers/server.js';
import { startProxy } from '../helpers/tcp-proxy.js';

/** An echo server on 127.0.0.1, closed in teardown. */
async function echoServer(t: Teardown): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

/** A client connection that records what it receives and how it ended. */
interface Client {
  socket: net.Socket;
  received: () => Buffer;
  closed: Promise<{ error?: string }>;
  /** Resolves once `n` bytes in all have arrived. */
  waitBytes: (n: number) => Promise<void>;
}

function connect(t: Teardown, port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const chunks: Buffer[] = [];
    let total = 0;
    const waiters: { n: number; resolve: () => void }[] = [];
    let error: string | undefined;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      for (const w of waiters.splice(0)) {
        if (total >= w.n) w.resolve();
        else waiters.push(w);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    const closed = new Promise<{ error?: string }>((r) =>
      socket.once('close', () => r(error === undefined ? {} : { error })),
    );
    t.teardown(() => {
      socket.destroy();
      return closed;
    });
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => Buffer.concat(chunks),
        closed,
        waitBytes: (n) =>
          total >= n ? Promise.resolve() : new Promise((r) => waiters.push({ n, resolve: r })),
      }),
    );
    socket.once('error', reject);
  });
}

/** Does a fresh connection through the proxy echo? 'closed' if it is dropped first. */
async function probe(t: Teardown, port: number): Promise<'echo' | 'closed' | 'silent'> {
  let c: Client;
  try {
    c = await connect(t, port);
  } catch {
    return 'closed';
  }
  const msg = randomBytes(64);
  c.socket.write(msg);
  const r = await Promise.race([
    c.waitBytes(msg.length).then(() => 'echo' as const),
    c.closed.then(() => 'closed' as const),
    sleep(2000).then(() => 'silent' as const),
  ]);
  c.socket.destroy();
  await c.closed;
  return r === 'echo' && c.received().equals(msg) ? 'echo' : r;
}

t.test('forwards 1 MiB byte-exact in both directions', async (t) => {
  const echo = await echoServer(t);
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, t });
  t.not(proxy.port, echo.port);
  const c = await connect(t, proxy.port);
  const data = randomBytes(1 << 20);
  c.socket.write(data);
  await c.waitBytes(data.length);
  t.ok(c.received().equals(data), 'echoed bytes are the bytes sent');
  t.equal(proxy.stats.bytesForwarded.up, data.length);
  t.equal(proxy.stats.bytesForwarded.down, data.length);
  t.equal(proxy.stats.connections, 1);
  // A half-close travels through: the echo server ends its side, so the client sees EOF.
  c.socket.end();
  t.same(await c.closed, {}, 'clean close');
});

t.test('two simultaneous connections are two independent pairs', async (t) => {
  const echo = await echoServer(t);
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, t });
  const a = await connect(t, proxy.port);
  const b = await connect(t, proxy.port);
  const da = randomBytes(200_000);
  const db = randomBytes(300_000);
  a.socket.write(da);
  b.socket.write(db);
  await Promise.all([a.waitBytes(da.length), b.waitBytes(db.length)]);
  t.ok(a.received().equals(da), 'first connection echoes its own bytes');
  t.ok(b.received().equals(db), 'second connection echoes its own bytes');
  t.equal(echo.accepted(), 2, 'the target saw two connections');
  t.equal(proxy.stats.connections, 2);
  t.equal(proxy.stats.open, 2);
});

t.test('cut resets every connection and refuses new ones; heal restores', async (t) => {
  const echo = await echoServer(t);
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, t });
  const a = await connect(t, proxy.port);
  const b = await connect(t, proxy.port);
  a.socket.write('hello');
  await a.waitBytes(5);
  proxy.cut();
  const [ea, eb] = await Promise.all([a.closed, b.closed]);
  t.equal(ea.error, 'ECONNRESET', 'first client sees a reset');
  t.equal(eb.error, 'ECONNRESET', 'second client sees a reset');
  t.ok(await waitFor(() => proxy.stats.open === 0, 2000), 'both pairs are gone');
  const before = echo.accepted();
  t.equal(await probe(t, proxy.port), 'closed', 'a new connection is dropped while cut');
  t.equal(echo.accepted(), before, 'the target never saw it');
  t.ok(proxy.stats.refused >= 1);
  proxy.heal();
  t.equal(await probe(t, proxy.port), 'echo', 'forwarding again after heal');
});

t.test('blackhole drops bytes and keeps connections open', async (t) => {
  const echo = await echoServer(t);
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, t });
  const c = await connect(t, proxy.port);
  c.socket.write('ping');
  await c.waitBytes(4);
  proxy.blackhole();
  const up = proxy.stats.bytesForwarded.up;
  c.socket.write(randomBytes(4096));
  const late = await connect(t, proxy.port);
  late.socket.write('anyone?');
  const accepted = echo.accepted();
  await sleep(300);
  t.equal(c.received().length, 4, 'nothing more arrived');
  t.equal(late.received().length, 0, 'a connection made while black-holed gets nothing');
  t.equal(proxy.stats.bytesForwarded.up, up, 'nothing was forwarded');
  t.equal(echo.accepted(), accepted, 'the target never saw the new connection');
  t.notOk(c.socket.destroyed, 'the old socket is still open');
  t.notOk(late.socket.destroyed, 'the new socket is still open');
  // Heal resets the black-holed pairs (bytes were lost out of their streams).
  proxy.heal();
  const [ec, el] = await Promise.all([c.closed, late.closed]);
  t.equal(ec.error, 'ECONNRESET');
  t.equal(el.error, 'ECONNRESET');
  t.equal(await probe(t, proxy.port), 'echo', 'new connections work after heal');
});

t.test('delay holds every chunk at least that long, in order', async (t) => {
  const echo = await echoServer(t);
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, t });
  const c = await connect(t, proxy.port);
  const DELAY = 150;
  proxy.delay(DELAY);
  const start = process.hrtime.bigint();
  c.socket.write('x');
  await c.waitBytes(1);
  const rttMs = Number(process.hrtime.bigint() - start) / 1e6;
  // Both directions go through the proxy, so a round trip is held twice.
  t.ok(rttMs >= 2 * DELAY - 1, `round trip ${rttMs.toFixed(1)} ms >= 2 x ${DELAY} ms`);
  // Order is kept when the delay changes while bytes are held.
  const first = randomBytes(50_000);
  c.socket.write(first);
  await sleep(20);
  proxy.delay(0);
  const second = randomBytes(50_000);
  c.socket.write(second);
  await c.waitBytes(1 + first.length + second.length);
  t.ok(
    c
      .received()
      .subarray(1)
      .equals(Buffer.concat([first, second])),
    'order kept',
  );
});

t.test('close leaves no open handles and is idempotent', async (t) => {
  const echo = await echoServer(t);
  const tcpHandles = () =>
    process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
  await sleep(200); // let sockets from earlier tests finish closing
  const before = tcpHandles();
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
  const c = await connect(t, proxy.port);
  c.socket.write('abc');
  await c.waitBytes(3);
  proxy.blackhole();
  const late = await connect(t, proxy.port);
  proxy.delay(100);
  await proxy.close();
  await proxy.close();
  await Promise.all([c.closed, late.closed]);
  // The echo server's side of the pair closes when the RST reaches it.
  await waitFor(() => tcpHandles() <= before, 2000, 10);
  t.ok(tcpHandles() <= before, `no TCP handle outlives close(): ${tcpHandles()} <= ${before}`);
  t.equal(await probe(t, proxy.port), 'closed', 'nothing listens any more');
});

t.test('listens on a given port', async (t) => {
  const echo = await echoServer(t);
  const first = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
  const port = first.port;
  await first.close();
  const again = await startProxy({
    target: { host: '127.0.0.1', port: echo.port },
    listenPort: port,
    t,
  });
  t.equal(again.port, port);
  t.equal(await probe(t, port), 'echo');
});
