// The peer link over real TCP on 127.0.0.1: two sockets per link, authentication, refusals
// with one-line reasons on both sides, liveness, and nothing left open afterwards.
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import net from 'node:net';

import t from 'tap';

import { FrameChannel } from '../../src/replication/channel.js';
import { encodeFrame, FRAME_HEADER_BYTES, FRAME_MAGIC } from '../../src/replication/frame.js';
import { runHandshake, WRONG_SECRET } from '../../src/replication/handshake.js';
import {
  dialPeer,
  LinkError,
  PeerLink,
  PeerListener,
  type CloseKind,
  type LinkIdentity,
  type LinkTimers,
} from '../../src/replication/link.js';
import type { Channel, PeerMessage } from '../../src/replication/schema.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const TIMERS: LinkTimers = { pingIntMs: 5000, pingTimeoutMs: 2000, handshakeTimeoutMs: 1000 };
const ALPHA: LinkIdentity = { resource: 'r0', node: 'alpha', nodeId: 0 };
const BETA: LinkIdentity = { resource: 'r0', node: 'beta', nodeId: 1 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function openFds(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

const fdsAtStart = await openFds();

/** A listener that records refusals and links; closed (with its links) in teardown. */
async function listen(
  t: Test,
  me: LinkIdentity = BETA,
  expectPeer = 'alpha',
  timers: LinkTimers = TIMERS,
): Promise<{ listener: PeerListener; refused: string[]; links: PeerLink[] }> {
  const listener = await PeerListener.listen({ host: HOST, port: 0 }, me, expectPeer, timers);
  const refused: string[] = [];
  const links: PeerLink[] = [];
  listener.on('refused', (_remote: string, reason: string) => refused.push(reason));
  listener.on('link', (link: PeerLink) => links.push(link));
  t.teardown(async () => {
    for (const l of links) l.close('test over');
    await listener.close();
  });
  return { listener, refused, links };
}

interface Got {
  msg: PeerMessage;
  payload: Buffer | undefined;
  channel: Channel;
}

/** Records a link's messages and its close event. */
function record(link: PeerLink): { got: Got[]; closes: Array<[string, CloseKind]> } {
  const got: Got[] = [];
  const closes: Array<[string, CloseKind]> = [];
  link.on('message', (msg: PeerMessage, payload: Buffer | undefined, channel: Channel) =>
    got.push({ msg, payload, channel }),
  );
  link.on('close', (reason: string, kind: CloseKind) => closes.push([reason, kind]));
  return { got, closes };
}

/** A dialed link (a, from alpha) and the accepted one (b, on beta), both recorded. */
async function pair(
  t: Test,
  opts: { a?: Partial<LinkIdentity>; b?: Partial<LinkIdentity>; timers?: LinkTimers } = {},
) {
  const timers = opts.timers ?? TIMERS;
  const l = await listen(t, { ...BETA, ...opts.b }, 'alpha', timers);
  const accepted = new Promise<PeerLink>((resolve) => l.listener.once('link', resolve));
  const a = await dialPeer(
    { host: HOST, port: l.listener.port },
    { ...ALPHA, ...opts.a },
    'beta',
    timers,
  );
  t.teardown(() => a.close('test over'));
  const b = await accepted;
  return { a, b, ra: record(a), rb: record(b), ...l };
}

/** Dial and expect a refusal: the dialer's LinkError and the listener's reason. */
async function refusedBoth(
  t: Test,
  dialer: LinkIdentity,
  expectPeer: string,
  acceptor: LinkIdentity,
  acceptorExpects: string,
): Promise<{ dialErr: LinkError; listenerReason: string; listener: PeerListener }> {
  const l = await listen(t, acceptor, acceptorExpects);
  let dialErr: unknown;
  try {
    const link = await dialPeer({ host: HOST, port: l.listener.port }, dialer, expectPeer, TIMERS);
    link.close('unexpected success');
  } catch (err) {
    dialErr = err;
  }
  t.ok(dialErr instanceof LinkError, 'the dial fails with a LinkError');
  await waitFor('the refusal', () => l.refused.length > 0);
  t.equal(l.links.length, 0, 'no link on the listener');
  return { dialErr: dialErr as LinkError, listenerReason: l.refused[0]!, listener: l.listener };
}

/** The handshake of one socket, done by hand from the exported pieces. */
async function rawDial(
  port: number,
  channel: Channel,
  linkId: Buffer,
  opts: { me?: LinkIdentity; expect?: string; protocols?: { min: number; max: number } } = {},
): Promise<FrameChannel> {
  const socket = await connectRaw(port);
  const ch = new FrameChannel(socket, channel);
  await runHandshake(ch, {
    me: opts.me ?? ALPHA,
    expectPeer: opts.expect ?? 'beta',
    timeoutMs: 1000,
    dial: { channel, linkId },
    protocols: opts.protocols,
  });
  return ch;
}

function connectRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    s.once('error', reject);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
  });
}

/** Proves the listener still works: a good peer links up and exchanges a message. */
async function goodPeerWorks(
  t: Test,
  listener: PeerListener,
  me: LinkIdentity = ALPHA,
): Promise<void> {
  const accepted = new Promise<PeerLink>((resolve) => listener.once('link', resolve));
  const a = await dialPeer({ host: HOST, port: listener.port }, me, 'beta', TIMERS);
  const b = await accepted;
  const rb = record(b);
  a.send('barrier', { epoch: 1, writes: 0 });
  await waitFor('a message over the good link', () => rb.got.length === 1);
  a.close('done');
  await waitFor('the close on the listener side', () => rb.closes.length === 1);
  t.pass('the listener still accepts a good peer');
}

async function waitConnections(listener: PeerListener, n: number): Promise<void> {
  const until = Date.now() + 3000;
  while ((await listener.connections()) !== n) {
    if (Date.now() > until)
      throw new Error(`listener still has ${await listener.connections()} connections`);
    await sleep(10);
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i + 4 <= n; i += 4096) b.writeUInt32BE((i / 4096 + seed) >>> 0, i);
  for (let i = 0; i < n; i++) if (i % 4096 >= 4) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

t.test('a link without a secret: both sockets, both directions', async (t) => {
  const { a, b, ra, rb } = await pair(t);
  t.equal(a.peerNode, 'beta');
  t.equal(a.peerNodeId, 1);
  t.equal(b.peerNode, 'alpha');
  t.equal(b.peerNodeId, 0);
  t.equal(a.protocol, 1);
  t.equal(a.linkId, b.linkId, 'one link id on both sides');
  t.same(a.features, []);

  a.send('data', { seq: 1, offset: 0, length: 3 }, Buffer.from('abc'));
  a.send('writeAck', { seq: 9 });
  b.send('barrierAck', { epoch: 4, writes: 2 });
  b.send('rsRequest', { offset: 4096, length: 4096 });
  await waitFor('two messages each way', () => ra.got.length === 2 && rb.got.length === 2);
  const byType = (g: Got[]): Record<string, Got> =>
    Object.fromEntries(g.map((x) => [x.msg.type, x]));
  const atB = byType(rb.got);
  const atA = byType(ra.got);
  t.equal(atB['data']!.channel, 'DATA');
  t.equal(atB['data']!.payload!.toString(), 'abc');
  t.equal(atB['writeAck']!.channel, 'META');
  t.same(atB['writeAck']!.msg.body, { seq: 9 });
  t.equal(atA['barrierAck']!.channel, 'META');
  t.equal(atA['rsRequest']!.channel, 'DATA');
  t.ok(Date.now() - a.lastHeardMs < 1000, 'lastHeardMs is recent');
});

t.test('a link with a shared secret (sha256 and sha1) and common features', async (t) => {
  for (const hmacAlg of [undefined, 'sha1', 'sha512']) {
    const { a, b, rb } = await pair(t, {
      a: { secret: 'open sesame', hmacAlg, features: ['trim', 'zero', 'x'] },
      b: { secret: 'open sesame', hmacAlg, features: ['zero', 'trim', 'y'] },
    });
    t.same(a.features, ['trim', 'zero'], `${hmacAlg ?? 'default'}: features both offer`);
    t.same(b.features, ['zero', 'trim']);
    a.send('ping', { id: 1 }); // answered inside the link, never delivered
    a.send('state', { role: 'Primary', disk: 'UpToDate' });
    await waitFor('a state message', () => rb.got.length === 1);
    t.equal(rb.got[0]!.msg.type, 'state');
  }
});

t.test('order is kept on each socket, with the two interleaved', async (t) => {
  const { a, rb } = await pair(t);
  const N = 5000;
  for (let i = 0; i < N; i++) {
    a.send('data', { seq: i, length: 8 }, pattern(8, i));
    a.send('writeAck', { seq: i });
    if (i % 7 === 0) a.send('barrier', { epoch: i });
  }
  await waitFor('all frames', () => rb.got.length === 2 * N + Math.ceil(N / 7));
  const data = rb.got.filter((g) => g.channel === 'DATA');
  const meta = rb.got.filter((g) => g.channel === 'META');
  const dataSeq = data
    .filter((g) => g.msg.type === 'data')
    .map((g) => (g.msg.body as { seq: number }).seq);
  const ackSeq = meta.map((g) => (g.msg.body as { seq: number }).seq);
  t.same(
    dataSeq,
    Array.from({ length: N }, (_, i) => i),
    'data in order',
  );
  t.same(
    ackSeq,
    Array.from({ length: N }, (_, i) => i),
    'acks in order',
  );
  // Barriers sit between the writes they followed.
  let last = -1;
  let ordered = true;
  for (const g of data) {
    if (g.msg.type === 'data') last = g.msg.body.seq;
    else if (g.msg.type === 'barrier' && g.msg.body.epoch !== last) ordered = false;
  }
  t.ok(ordered, 'barriers keep their place among the writes');
  t.ok(
    data.every((g) => g.msg.type !== 'data' || g.payload!.equals(pattern(8, g.msg.body.seq))),
    'payloads intact',
  );
});

t.test('payloads of 0, 1, 4096, 1 MiB and 32 MiB arrive byte-exact; onSent fires', async (t) => {
  const { a, rb } = await pair(t);
  const sizes = [0, 1, 4096, MiB, 32 * MiB];
  const sent: Array<Error | undefined | 'pending'> = [];
  const bufs = sizes.map((n, i) => (n > MiB ? randomBytes(n) : pattern(n, i)));
  sizes.forEach((n, i) => {
    sent.push('pending');
    a.send('data', { seq: i, length: n }, bufs[i], (err) => (sent[i] = err));
  });
  // The same sizes again, as payloads in pieces.
  sizes.forEach((n, i) => {
    const cut = Math.floor(n / 3);
    const pieces = [
      bufs[i]!.subarray(0, cut),
      bufs[i]!.subarray(cut, n - 1),
      bufs[i]!.subarray(n - 1),
    ];
    a.send('rsReply', { offset: i, length: n }, n === 0 ? [] : pieces);
  });
  await waitFor('all payloads', () => rb.got.length === 2 * sizes.length, 10_000);
  rb.got.forEach((g, j) => {
    const i = j % sizes.length;
    const n = sizes[i]!;
    if (n === 0) t.equal(g.payload, undefined, `${g.msg.type} ${n}: no payload`);
    else t.ok(g.payload!.equals(bufs[i]!), `${g.msg.type} ${n}: byte-exact`);
  });
  await waitFor('every onSent', () => sent.every((s) => s !== 'pending'));
  t.same(
    sent,
    sizes.map(() => undefined),
    'onSent fired without an error for each',
  );
});

t.test('an ack on META gets through while DATA is paused with megabytes queued', async (t) => {
  const { a, b, ra, rb } = await pair(t);
  b.pauseData();
  await sleep(10);
  const chunk = pattern(MiB, 5);
  const FRAMES = 64;
  let sentCount = 0;
  for (let i = 0; i < FRAMES; i++)
    a.send('data', { seq: i, length: MiB }, chunk, () => sentCount++);
  // Let the kernel buffers fill: what is left is stuck behind the paused reader.
  await sleep(100);
  const backlog = a.dataBacklog;
  t.ok(backlog > 16 * MiB, `${(backlog / MiB).toFixed(1)} MiB still queued on the sender`);
  t.equal(rb.got.length, 0, 'no data delivered while paused');

  const before = Date.now();
  a.send('writeAck', { seq: 12345 });
  await waitFor('the ack', () => rb.got.length === 1, 2000);
  t.same(rb.got[0]!.msg, { type: 'writeAck', body: { seq: 12345 } });
  t.equal(rb.got[0]!.channel, 'META');
  t.ok(a.dataBacklog > 16 * MiB, 'delivered while the data backlog is still there');
  t.comment(
    `ack delivered in ${Date.now() - before} ms past ${(backlog / MiB).toFixed(1)} MiB of data`,
  );

  // The other way too: b's acks reach a, though b does not read its data.
  b.send('writeAck', { seq: 1 });
  await waitFor('an ack to the sender', () => ra.got.length === 1);

  b.resumeData();
  await waitFor('the data', () => rb.got.length === 1 + FRAMES, 10_000);
  const seqs = rb.got.slice(1).map((g) => (g.msg.body as { seq: number }).seq);
  t.same(
    seqs,
    Array.from({ length: FRAMES }, (_, i) => i),
    'then every write, in order',
  );
  t.ok(
    rb.got.slice(1).every((g) => g.payload!.equals(chunk)),
    'intact',
  );
  await waitFor('every onSent', () => sentCount === FRAMES);
  t.equal(a.dataBacklog, 0);
});

t.test('close() emits close once on both sides, with the reason', async (t) => {
  const { a, b, ra, rb } = await pair(t);
  a.close('admin said down');
  a.close('again');
  b.close('too late?');
  await waitFor('both closes', () => ra.closes.length === 1 && rb.closes.length === 1);
  await sleep(20);
  t.same(ra.closes, [['admin said down', 'TearDown']]);
  t.equal(rb.closes.length, 1);
  let err: Error | undefined;
  a.send('barrier', { epoch: 1 }, undefined, (e) => (err = e));
  await waitFor('onSent after close', () => err !== undefined);
  t.match(err!.message, /^not sent: /);
});

t.test('the other side hears the goodbye', async (t) => {
  const { a, ra, rb } = await pair(t);
  a.close('admin said down');
  await waitFor('both closes', () => ra.closes.length === 1 && rb.closes.length === 1);
  t.same(rb.closes, [['peer closed the link: admin said down', 'Goodbye']]);
});

t.test('mismatches are refused with the exact reason on both sides', async (t) => {
  const cases: Array<{
    name: string;
    dialer: LinkIdentity;
    expect?: string;
    acceptor: LinkIdentity;
    acceptorExpects?: string;
    dialReason: string;
    listenReason: string;
    kind: CloseKind;
  }> = [
    {
      name: 'wrong secret',
      dialer: { ...ALPHA, secret: 'one' },
      acceptor: { ...BETA, secret: 'two' },
      dialReason: WRONG_SECRET,
      listenReason: WRONG_SECRET,
      kind: 'AuthFailure',
    },
    {
      name: 'secret on the dialer only',
      dialer: { ...ALPHA, secret: 'one' },
      acceptor: BETA,
      dialReason: 'shared-secret configured on this node only',
      listenReason: 'shared-secret configured on the peer only',
      kind: 'AuthFailure',
    },
    {
      name: 'secret on the acceptor only',
      dialer: ALPHA,
      acceptor: { ...BETA, secret: 'two' },
      dialReason: 'shared-secret configured on the peer only',
      listenReason: 'shared-secret configured on this node only',
      kind: 'AuthFailure',
    },
    {
      name: 'different cram-hmac-alg',
      dialer: { ...ALPHA, secret: 's', hmacAlg: 'sha1' },
      acceptor: { ...BETA, secret: 's' },
      dialReason: 'cram-hmac-alg differs: peer uses "sha256", we use sha1',
      listenReason: 'cram-hmac-alg differs: peer uses "sha1", we use sha256',
      kind: 'AuthFailure',
    },
    {
      name: 'wrong resource',
      dialer: { ...ALPHA, resource: 'r1' },
      acceptor: BETA,
      dialReason: 'wrong resource: peer "beta" has resource "r0", we have "r1"',
      listenReason: 'wrong resource: peer "alpha" has resource "r1", we have "r0"',
      kind: 'ProtocolError',
    },
    {
      name: 'the dialer reached the wrong node',
      dialer: ALPHA,
      expect: 'gamma',
      acceptor: BETA,
      dialReason: 'unexpected peer "beta" (expected "gamma")',
      listenReason: 'peer refused the connection: unexpected peer "beta" (expected "gamma")',
      kind: 'ProtocolError',
    },
    {
      name: 'an unexpected node dialed',
      dialer: { ...ALPHA, node: 'delta' },
      acceptor: BETA,
      dialReason: 'peer refused the connection: unexpected peer "delta" (expected "alpha")',
      listenReason: 'unexpected peer "delta" (expected "alpha")',
      kind: 'AuthFailure',
    },
  ];
  for (const c of cases) {
    const r = await refusedBoth(
      t,
      c.dialer,
      c.expect ?? 'beta',
      c.acceptor,
      c.acceptorExpects ?? 'alpha',
    );
    t.equal(r.dialErr.message, c.dialReason, `${c.name}: the dialer says why`);
    t.equal(r.listenerReason, c.listenReason, `${c.name}: the listener says why`);
    t.equal(r.dialErr.kind, c.kind, `${c.name}: kind`);
    await goodPeerWorks(
      t,
      r.listener,
      c.acceptor.secret ? { ...ALPHA, secret: c.acceptor.secret } : ALPHA,
    );
  }
});

t.test('no common protocol version', async (t) => {
  const l = await listen(t);
  let err: unknown;
  try {
    await rawDial(l.listener.port, 'DATA', randomBytes(16), { protocols: { min: 2, max: 3 } });
  } catch (e) {
    err = e;
  }
  t.equal(
    (err as Error).message,
    'no common protocol version (peer speaks protocol 1–1, we speak 2–3)',
  );
  await waitFor('the refusal', () => l.refused.length === 1);
  t.equal(l.refused[0], 'no common protocol version (peer speaks protocol 2–3, we speak 1–1)');
  await goodPeerWorks(t, l.listener);
});

function hdr(controlLen: number, dataLen: number, magic = FRAME_MAGIC): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(magic, 0);
  h.writeUInt32BE(controlLen, 4);
  h.writeUInt32BE(dataLen, 8);
  return h;
}

const HELLO = Buffer.concat(
  encodeFrame('hello', {
    protocolMin: 1,
    protocolMax: 1,
    resource: 'r0',
    node: 'alpha',
    nodeId: 0,
    channel: 'DATA',
    linkId: randomBytes(16),
  }),
);

t.test('bad bytes are refused with a reason; the listener keeps working', async (t) => {
  const l = await listen(t);
  const cases: Array<[string, Buffer, RegExp]> = [
    [
      'garbage',
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      /^bad magic 0x47455420 \(not a urbd peer\?\) during the handshake$/,
    ],
    [
      'truncated frame, then EOF',
      HELLO.subarray(0, HELLO.length - 5),
      /^peer closed the incoming socket in the middle of a frame during the handshake$/,
    ],
    [
      'oversize data length',
      hdr(10, 64 * MiB),
      /^data of 67108864 bytes exceeds the 0-byte limit during the handshake$/,
    ],
    [
      'oversize control length',
      hdr(2 * MiB, 0),
      /^control message of 2097152 bytes exceeds the 65536-byte limit during the handshake$/,
    ],
    [
      'a valid hello, then garbage',
      Buffer.concat([HELLO, Buffer.from('garbage garbage')]),
      /^bad magic 0x67617262 \(not a urbd peer\?\) during the handshake$/,
    ],
    [
      'not a hello first',
      Buffer.concat(encodeFrame('ping', { id: 1 })),
      /^expected hello in the handshake, got ping$/,
    ],
    [
      'a hello without a channel',
      Buffer.concat(
        encodeFrame('hello', { protocolMin: 1, protocolMax: 1, linkId: randomBytes(16) }),
      ),
      /^malformed hello: channel CHANNEL_UNSPECIFIED$/,
    ],
  ];
  for (const [name, bytes, re] of cases) {
    const n = l.refused.length;
    const s = await connectRaw(l.listener.port);
    s.on('error', () => {});
    s.resume();
    s.end(bytes);
    await waitFor(`${name}: refusal`, () => l.refused.length > n);
    t.match(l.refused[n]!, re, name);
    s.destroy();
    await goodPeerWorks(t, l.listener);
  }
});

t.test('a silent connection is dropped after the handshake timeout', async (t) => {
  const timers = { ...TIMERS, handshakeTimeoutMs: 200 };
  const l = await listen(t, BETA, 'alpha', timers);
  const s = await connectRaw(l.listener.port);
  const closed = new Promise((r) => s.on('close', r));
  s.resume();
  await waitFor('refusal', () => l.refused.length === 1);
  t.equal(l.refused[0], 'handshake not finished within 200 ms');
  await closed;
  t.pass('the server closed it');
});

t.test('a META socket whose DATA socket never comes is closed', async (t) => {
  const timers = { ...TIMERS, handshakeTimeoutMs: 200 };
  const l = await listen(t, BETA, 'alpha', timers);
  const meta = await rawDial(l.listener.port, 'META', randomBytes(16));
  const closed = new Promise((r) => meta.socket.on('close', r));
  meta.resume();
  await waitFor('refusal', () => l.refused.length === 1);
  t.equal(l.refused[0], 'META socket without a DATA socket within 200 ms');
  await closed;
  t.equal(l.links.length, 0);
  t.equal(await l.listener.connections(), 0);
});

t.test('a replayed authResponse does not get in (fresh challenge)', async (t) => {
  const secret = 'correct horse';
  const l = await listen(t, { ...BETA, secret });
  // A recording proxy between a real dialer and the listener.
  const recorded: Buffer[][] = [];
  const proxy = net.createServer((client) => {
    const chunks: Buffer[] = [];
    recorded.push(chunks);
    const upstream = net.connect({ host: HOST, port: l.listener.port });
    client.on('data', (c: Buffer) => chunks.push(c));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, HOST, r));
  t.teardown(() => new Promise<void>((r) => proxy.close(() => r())));
  const port = (proxy.address() as net.AddressInfo).port;
  const accepted = new Promise<PeerLink>((r) => l.listener.once('link', r));
  const a = await dialPeer({ host: HOST, port }, { ...ALPHA, secret }, 'beta', TIMERS);
  await accepted;
  a.close('recorded');
  await waitFor('both proxied sockets recorded', () => recorded.length === 2);

  // Replay the dialer's bytes of each socket, verbatim, on fresh connections.
  for (const [i, chunks] of recorded.entries()) {
    const n = l.refused.length;
    const s = await connectRaw(l.listener.port);
    s.on('error', () => {});
    s.resume();
    s.write(Buffer.concat(chunks));
    await waitFor('refusal', () => l.refused.length > n);
    t.equal(l.refused[n], WRONG_SECRET, `socket ${i}: the old answer is refused`);
    s.destroy();
  }
  t.equal(l.links.length, 1, 'only the genuine link');
  await goodPeerWorks(t, l.listener, { ...ALPHA, secret });
});

/** A listener's link to a raw peer (both sockets dialled by hand, nothing answered by itself). */
async function rawPeer(
  t: Test,
  timers: LinkTimers,
): Promise<{ link: PeerLink; meta: FrameChannel; r: ReturnType<typeof record> }> {
  const l = await listen(t, BETA, 'alpha', timers);
  const linkId = randomBytes(16);
  const accepted = new Promise<PeerLink>((r) => l.listener.once('link', r));
  const data = await rawDial(l.listener.port, 'DATA', linkId);
  const meta = await rawDial(l.listener.port, 'META', linkId);
  t.teardown(() => {
    data.destroy();
    meta.destroy();
  });
  const link = await accepted;
  return { link, meta, r: record(link) };
}

t.test('ping: answered while alive, timeout when the peer goes silent', async (t) => {
  const fast = { pingIntMs: 50, pingTimeoutMs: 150, handshakeTimeoutMs: 1000 };
  const { ra, rb } = await pair(t, { timers: fast });
  await sleep(400);
  t.same(ra.closes, [], 'an idle link with a live peer stays up');
  t.same(rb.closes, []);

  const { r } = await rawPeer(t, fast);
  const started = Date.now();
  // The raw peer never reads: our pings go unanswered.
  await waitFor('the ping timeout', () => r.closes.length === 1, 2000);
  t.same(r.closes, [['peer did not answer a ping within 150 ms', 'Timeout']]);
  t.ok(Date.now() - started >= 150, `closed after ${Date.now() - started} ms`);
});

t.test('an answer that arrived while this process was not running is read first', async (t) => {
  // The peer answers at once, then this whole process is held (as a blocked event loop or
  // a starved CPU would hold a daemon) past the ping timeout: the answer waits unread in
  // the socket when the timer comes due, and must still count.
  const fast = { pingIntMs: 50, pingTimeoutMs: 150, handshakeTimeoutMs: 1000 };
  const { link, meta, r } = await rawPeer(t, fast);
  let answered = 0;
  meta.attach(
    (f) => {
      const msg = f.msg;
      if (msg.type !== 'ping') return;
      meta.send(encodeFrame('pingAck', { id: msg.body.id }));
      answered++;
      if (answered !== 2) return;
      // The answer is handed to the kernel on the next tick; hold the process after it.
      process.nextTick(() => {
        const until = Date.now() + 3 * fast.pingTimeoutMs;
        while (Date.now() < until);
      });
    },
    () => {},
  );
  meta.resume();
  await waitFor('four pings answered', () => answered >= 4, 3000);
  t.same(r.closes, [], 'the link stays up');
  t.notOk(link.isClosed, 'not closed');
});

t.test('after the handshake: bad frames are protocol errors, EOF a broken pipe', async (t) => {
  const cases: Array<
    [string, (data: FrameChannel, meta: FrameChannel) => void, RegExp, CloseKind]
  > = [
    [
      'a second hello',
      (d) => d.send(encodeFrame('hello', { node: 'alpha' })),
      /^unexpected hello after the handshake$/,
      'ProtocolError',
    ],
    [
      'an ack on DATA',
      (d) => d.send(encodeFrame('writeAck', { seq: 1 })),
      /^writeAck arrived on the DATA socket$/,
      'ProtocolError',
    ],
    [
      'data on META',
      (_d, m) => m.send(encodeFrame('data', { seq: 1 })),
      /^data arrived on the META socket$/,
      'ProtocolError',
    ],
    [
      'garbage on DATA',
      (d) => d.socket.write('garbage!garbage!'),
      /^bad magic 0x67617262 \(not a urbd peer\?\)$/,
      'ProtocolError',
    ],
    [
      'oversize data after the handshake',
      (d) => d.socket.write(hdr(10, 64 * MiB)),
      /^data of 67108864 bytes exceeds the 33554432-byte limit$/,
      'ProtocolError',
    ],
    [
      'a truncated frame, then EOF',
      (d) => d.socket.end(Buffer.concat(encodeFrame('barrier', { epoch: 1 })).subarray(0, 14)),
      /^peer closed the DATA socket in the middle of a frame$/,
      'BrokenPipe',
    ],
    ['EOF on META', (_d, m) => m.socket.end(), /^peer closed the META socket$/, 'BrokenPipe'],
    [
      'reset on DATA',
      (d) => d.socket.resetAndDestroy(),
      /^DATA socket: read ECONNRESET$/,
      'BrokenPipe',
    ],
  ];
  const l = await listen(t);
  for (const [name, act, re, kind] of cases) {
    const linkId = randomBytes(16);
    const accepted = new Promise<PeerLink>((r) => l.listener.once('link', r));
    const data = await rawDial(l.listener.port, 'DATA', linkId);
    const meta = await rawDial(l.listener.port, 'META', linkId);
    const r = record(await accepted);
    data.resume();
    meta.resume();
    await sleep(5);
    act(data, meta);
    await waitFor(`${name}: close`, () => r.closes.length === 1);
    t.match(r.closes[0]![0], re, name);
    t.equal(r.closes[0]![1], kind, `${name}: ${kind}`);
    data.destroy();
    meta.destroy();
  }
  await waitConnections(l.listener, 0);
  t.pass('every socket of those links is closed');
});

t.test('dial failures say why', async (t) => {
  const expectFail = async (p: Promise<PeerLink>, re: RegExp, kind: CloseKind, name: string) => {
    let err: unknown;
    try {
      (await p).close('unexpected');
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof LinkError, `${name}: LinkError`);
    t.match((err as Error).message, re, name);
    t.equal((err as LinkError).kind, kind, `${name}: ${kind}`);
  };
  // Nothing listening.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, HOST, r));
  const freePort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  await expectFail(
    dialPeer({ host: HOST, port: freePort }, ALPHA, 'beta', TIMERS),
    /^cannot connect to 127\.0\.0\.1:\d+: ECONNREFUSED$/,
    'NetworkFailure',
    'refused',
  );

  // Something that is not urbd, talking, and something silent.
  const sockets = new Set<net.Socket>();
  const banner = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.resume();
    s.write('SSH-2.0-OpenSSH_9.6\r\n');
  });
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.resume();
  });
  for (const srv of [banner, silent]) await new Promise<void>((r) => srv.listen(0, HOST, r));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    for (const srv of [banner, silent]) await new Promise<void>((r) => srv.close(() => r()));
  });
  const portOf = (srv: net.Server): number => (srv.address() as net.AddressInfo).port;
  await expectFail(
    dialPeer({ host: HOST, port: portOf(banner) }, ALPHA, 'beta', TIMERS),
    /^bad magic 0x5353482d \(not a urbd peer\?\) during the handshake$/,
    'ProtocolError',
    'banner',
  );
  await expectFail(
    dialPeer({ host: HOST, port: portOf(silent) }, ALPHA, 'beta', {
      ...TIMERS,
      handshakeTimeoutMs: 150,
    }),
    /^handshake not finished within 150 ms$/,
    'Timeout',
    'silent',
  );
  const ac = new AbortController();
  const p = dialPeer({ host: HOST, port: portOf(silent) }, ALPHA, 'beta', TIMERS, {
    signal: ac.signal,
  });
  setTimeout(() => ac.abort('shutting down'), 30);
  const abortedAt = Date.now();
  await expectFail(p, /^dial aborted: shutting down$/, 'TearDown', 'abort');
  t.ok(Date.now() - abortedAt < 500, 'an abort ends the dial at once');
  const plain = new AbortController();
  plain.abort();
  await expectFail(
    dialPeer({ host: HOST, port: portOf(silent) }, ALPHA, 'beta', TIMERS, { signal: plain.signal }),
    /^dial aborted$/,
    'TearDown',
    'already aborted',
  );
  await t.rejects(
    dialPeer(
      { host: HOST, port: portOf(silent) },
      { ...ALPHA, secret: 'x', hmacAlg: 'rot13' },
      'beta',
      TIMERS,
    ),
    /unknown cram-hmac-alg "rot13"/,
  );
});

t.test('nothing is left open', async (t) => {
  let now = await openFds();
  const until = Date.now() + 3000;
  while (now > fdsAtStart && Date.now() < until) {
    await sleep(20);
    now = await openFds();
  }
  t.ok(now <= fdsAtStart, `open descriptors: ${fdsAtStart} at the start, ${now} now`);
});
