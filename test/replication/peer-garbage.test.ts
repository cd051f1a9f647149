// End to end: whatever is not a good peer, thrown at the peer port of a real, listening urbd
// daemon (beta) while its real peer (alpha) is disconnected: random bytes, an HTTP request,
// truncated and oversize frames, hand-built Hellos that fail the checks or authentication, a
// verbatim replay of a recorded genuine connection, and a flood of 200 garbage connections.
// After each: beta still runs and answers `urbdadm status`, its log has exactly one line per
// connection saying why it was refused, no link was adopted, beta's backing disk did not
// change, and alpha can still connect. (The same refusals at the unit level, against a bare
// PeerListener, are in link.test.ts.)
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

import t from 'tap';

import { authAnswer, CHALLENGE_BYTES, LINK_ID_BYTES } from '../../src/replication/auth.js';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameDecoder,
} from '../../src/replication/frame.js';
import { WRONG_SECRET } from '../../src/replication/handshake.js';
import {
  PROTOCOL_MAX,
  PROTOCOL_MIN,
  type Channel,
  type Hello,
  type PeerMessage,
} from '../../src/replication/schema.js';
import { exportUri } from '../helpers/daemon.js';
import { diffBlocks, startPair, status, waitFor, waitInSync } from '../helpers/pair.js';
import {
  allBytes,
  readRange,
  run,
  sha256File,
  showRun,
  sleep,
  tmpDir,
  type LogLine,
} from '../helpers/server.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const HOST = '127.0.0.1';
const SIZE = 8 << 20;
const SECRET = 'garbage-test-secret';
const REFUSED = 'refused a peer connection';
const EOF_MID_FRAME =
  'peer closed the incoming socket in the middle of a frame during the handshake';

// ---- the pair, with a recording forwarder between alpha and beta ----------------------------

/** What one connection through the recorder carried: up = alpha → beta, down = back. */
interface Capture {
  up: Buffer[];
  down: Buffer[];
  closed: Promise<void>;
}

function closedOf(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.closed ? resolve() : s.once('close', () => resolve())));
}

/** A plain forwarder on 127.0.0.1:port to targetPort that keeps every byte both ways. */
async function startRecorder(port: number, targetPort: number): Promise<Capture[]> {
  const captures: Capture[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: HOST, port: targetPort });
    const cap: Capture = {
      up: [],
      down: [],
      closed: Promise.all([closedOf(client), closedOf(upstream)]).then(() => undefined),
    };
    captures.push(cap);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    }
    client.on('data', (d: Buffer) => cap.up.push(d));
    upstream.on('data', (d: Buffer) => cap.down.push(d));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  t.teardown(async () => {
    const gone = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    await gone;
  });
  return captures;
}

/** The port a node's resource file gives it (startPair wrote both files). */
async function addressPort(file: string, node: string): Promise<number> {
  const text = await readFile(file, 'utf8');
  const m = new RegExp(`on ${node} \\{[^}]*address 127\\.0\\.0\\.1:(\\d+);`).exec(text);
  if (!m) throw new Error(`no address for ${node} in ${file}`);
  return Number(m[1]);
}

const dir = tmpDir(t);
const pair = await startPair(t, dir, {
  sizeBytes: SIZE,
  proxy: true,
  net: `cram-hmac-alg sha256; shared-secret "${SECRET}";`,
});
const betaPort = await addressPort(path.join(dir, 'beta.conf'), 'beta');
// alpha.conf points at the helper's proxy: put a recorder on that port instead. alpha, if it
// got through the proxy already, loses that link and dials again within connect-int (1 s).
const recorderPort = pair.proxy!.port;
await pair.proxy!.close();
const captures = await startRecorder(recorderPort, betaPort);

// ---- talking to beta's peer port by hand ----------------------------------------------------

interface Decoded {
  msg: PeerMessage;
  payload: Buffer | undefined;
}

/** Every frame in a byte stream, and the decoder's complaint if it stopped early. */
function decodeAll(chunks: Buffer[]): { frames: Decoded[]; error?: string } {
  const frames: Decoded[] = [];
  const dec = new FrameDecoder((f) => frames.push({ msg: f.msg, payload: f.payload }));
  try {
    for (const c of chunks) dec.push(c);
  } catch (err) {
    return { frames, error: (err as Error).message };
  }
  return { frames };
}

/**
 * One connection as beta's log knows it. Ephemeral ports get reused within a run, so a log
 * line is this connection's only if it names `local` and comes after `since`.
 */
interface Conn {
  /** How beta names this connection in its log: 127.0.0.1:port. */
  local: string;
  /** beta's log length when the connection was opened. */
  since: number;
}

/** A raw TCP connection to beta's peer port; what beta sends back is decoded as it comes. */
interface Raw extends Conn {
  socket: net.Socket;
  frames: PeerMessage[];
  closed: Promise<void>;
}

async function openRaw(): Promise<Raw> {
  const since = pair.beta.logs.length;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: HOST, port: betaPort });
    s.once('error', reject);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
  });
  socket.on('error', () => {}); // beta hangs up on us, sometimes with a reset: expected
  const frames: PeerMessage[] = [];
  const dec = new FrameDecoder((f) => frames.push(f.msg));
  let bad = false;
  socket.on('data', (c: Buffer) => {
    if (bad) return;
    try {
      dec.push(c);
    } catch {
      bad = true;
    }
  });
  return {
    socket,
    local: `${socket.localAddress}:${socket.localPort}`,
    since,
    frames,
    closed: closedOf(socket),
  };
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 10000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function header(controlLen: number, dataLen: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(FRAME_MAGIC, 0);
  h.writeUInt32BE(controlLen >>> 0, 4);
  h.writeUInt32BE(dataLen >>> 0, 8);
  return h;
}

/** A Hello as alpha would send it with the shared secret, with `o` changed. */
function hello(o: Partial<Hello> = {}): Buffer {
  return Buffer.concat(
    encodeFrame('hello', {
      protocolMin: PROTOCOL_MIN,
      protocolMax: PROTOCOL_MAX,
      resource: 'r0',
      node: 'alpha',
      nodeId: 0,
      channel: 'DATA',
      linkId: randomBytes(LINK_ID_BYTES),
      challenge: randomBytes(CHALLENGE_BYTES),
      features: [],
      hmacAlg: 'sha256',
      ...o,
    }),
  );
}

/** Random bytes that do not start with the frame magic. */
function garbage(n: number): Buffer {
  const b = randomBytes(n);
  if (n >= 4 && b.readUInt32BE(0) === FRAME_MAGIC) b[0] ^= 0xff;
  return b;
}

// ---- beta's log and state -------------------------------------------------------------------

const refusalLines = (c: Conn): LogLine[] =>
  pair.beta.logs
    .slice(c.since)
    .filter((l) => l.json?.msg === REFUSED && l.json['remote'] === c.local);

/** The reason of beta's refusal line for this connection, once it is logged. */
async function refusalOf(c: Conn, timeoutMs = 10000): Promise<string> {
  const line = await until(`a refusal line for ${c.local}`, () => refusalLines(c)[0], timeoutMs);
  return String(line.json!['reason']);
}

const linksAdopted = (): number =>
  pair.beta.logs.filter((l) => l.json?.msg === 'peer connected').length;

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/**
 * Runs `fn` against the listening beta, then checks what every scenario must leave behind:
 * beta running and answering status, exactly one refusal line per connection `fn` returned,
 * no link adopted, the backing disk unchanged, and alpha still able to connect.
 */
async function againstBeta(t: Test, fn: () => Promise<Conn[]>): Promise<void> {
  const before = await sha256File(pair.betaDisk);
  const links = linksAdopted();
  const remotes = await fn();
  await sleep(300); // a second line, if there were one, would be here by now
  t.equal(pair.beta.proc.exitCode, undefined, 'beta still runs');
  const st = await pair.beta.adm(['status', 'r0']);
  t.equal(st.code, 0, 'urbdadm status on beta works', { output: showRun(st) });
  t.match(st.stdout, /connection:Connecting/, 'beta is still listening for its peer');
  const wrong = remotes
    .map((c) => ({ remote: c.local, lines: refusalLines(c).length }))
    .filter(({ lines }) => lines !== 1);
  t.same(wrong, [], `exactly one "${REFUSED}" line for each of ${remotes.length} connection(s)`);
  const multiLine = remotes
    .flatMap((r) => refusalLines(r).map((l) => String(l.json!['reason'])))
    .filter((reason) => /[\r\n]/.test(reason));
  t.same(multiLine, [], 'every reason is one line');
  t.equal(linksAdopted(), links, 'no peer link was adopted');
  t.equal(await sha256File(pair.betaDisk), before, "beta's backing disk is unchanged");
  await alphaReconnects(t);
}

/** alpha connects (`urbdadm connect r0`), both reach Connected and in sync, then it leaves. */
async function alphaReconnects(t: Test): Promise<void> {
  const c = await pair.alpha.adm(['connect', 'r0']);
  t.equal(c.code, 0, 'urbdadm connect r0 on alpha', { output: showRun(c) });
  await waitInSync(pair, 30000);
  t.pass('alpha connected again (Connected, Established, UpToDate on both)');
  await alphaLeaves(t);
}

async function alphaLeaves(t: Test): Promise<void> {
  const d = await pair.alpha.adm(['disconnect', 'r0']);
  t.equal(d.code, 0, 'urbdadm disconnect r0 on alpha', { output: showRun(d) });
  await waitFor(pair.beta, (s) => s.peers[0]!.connection === 'Connecting', 'Connecting', 10000);
}

function qemuWrite(cmd: string): Promise<import('../helpers/server.js').RunResult> {
  return run('qemu-io', ['-f', 'raw', '-c', cmd, exportUri(pair.alpha)], { timeoutMs: 30000 });
}

// ---- the scenarios ----------------------------------------------------------------------------

t.test(
  'a recorded genuine connection, replayed verbatim, is refused at authentication',
  async (t) => {
    await waitFor(pair.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected', 20000);
    const pri = await pair.alpha.adm(['primary', '--force', 'r0']);
    t.equal(pri.code, 0, 'primary --force on alpha', { output: showRun(pri) });
    await waitInSync(pair, 30000);
    const w1 = await qemuWrite('write -P 0x11 0 64k');
    t.equal(w1.code, 0, 'a 64 KiB write of 0x11 through NBD on alpha', { output: showRun(w1) });
    t.ok(allBytes(await readRange(pair.betaDisk, 0, 65536), 0x11), 'replicated to beta');
    await alphaLeaves(t);
    await Promise.all(captures.map((c) => c.closed));

    // The DATA socket that carried the write, and the META socket of the same link.
    const decoded = captures.map((c) => ({ c, up: decodeAll(c.up), down: decodeAll(c.down) }));
    const helloOf = (frames: Decoded[]): Hello | undefined => {
      const m = frames[0]?.msg;
      return m?.type === 'hello' ? m.body : undefined;
    };
    const data = [...decoded]
      .reverse()
      .find((d) =>
        d.up.frames.some(
          (f) =>
            f.msg.type === 'data' &&
            f.msg.body.offset === 0 &&
            f.payload !== undefined &&
            allBytes(f.payload, 0x11),
        ),
      );
    if (!data) throw new Error('no recorded connection carried the write');
    const dataHello = helloOf(data.up.frames)!;
    const meta = decoded.find((d) => {
      const h = helloOf(d.up.frames);
      return h?.channel === 'META' && Buffer.from(h.linkId).equals(Buffer.from(dataHello.linkId));
    });
    if (!meta) throw new Error('no recorded META socket for that link');
    t.equal(dataHello.channel, 'DATA', 'the write went on the DATA socket');
    const types = data.up.frames.map((f) => f.msg.type);
    t.same(types.slice(0, 3), ['hello', 'authResponse', 'authResult'], 'the capture has the auth');
    t.ok(types.includes('barrier'), 'and barriers');
    t.comment(
      `captured alpha→beta: DATA ${data.c.up.reduce((n, b) => n + b.length, 0)} bytes, ` +
        `${types.length} frames (${types.filter((x) => x === 'data').length} data); ` +
        `META ${meta.up.frames.length} frames`,
    );

    // Make the replay visible: beta gets 0x22 over the range the captured write set to 0x11.
    const w2 = await qemuWrite('write -P 0x22 0 64k');
    t.equal(w2.code, 0, 'alpha writes 0x22 while disconnected', { output: showRun(w2) });
    await alphaReconnects(t);
    t.ok(allBytes(await readRange(pair.betaDisk, 0, 65536), 0x22), 'beta has 0x22 now');

    await againstBeta(t, async () => {
      const remotes: Conn[] = [];
      for (const [name, d] of [
        ['DATA', data],
        ['META', meta],
      ] as const) {
        const raw = await openRaw();
        remotes.push(raw);
        raw.socket.end(Buffer.concat(d.c.up));
        const reason = await refusalOf(raw);
        t.equal(reason, WRONG_SECRET, `${name} replay refused: "${reason}"`);
        await raw.closed;
        const got = raw.frames.map((m) => m.type);
        t.same(got, ['hello', 'authResponse', 'authResult'], `${name}: beta's side of the refusal`);
        const fresh = raw.frames[0]!.type === 'hello' ? raw.frames[0]!.body.challenge : undefined;
        const old = helloOf(d.down.frames)!.challenge;
        t.notOk(Buffer.from(old).equals(Buffer.from(fresh ?? [])), `${name}: a fresh challenge`);
        const res = raw.frames[2];
        t.same(
          res?.type === 'authResult' ? res.body : undefined,
          { ok: false, reason: WRONG_SECRET },
          `${name}: beta told the replayer why`,
        );
      }
      return remotes;
    });
    t.ok(
      allBytes(await readRange(pair.betaDisk, 0, 65536), 0x22),
      'the replayed write is not on beta',
    );
  },
);

t.test('random bytes and an HTTP request', async (t) => {
  await againstBeta(t, async () => {
    const big = garbage(64 * 1024);
    const magicHex = big.readUInt32BE(0).toString(16).padStart(8, '0');
    const cases: Array<[string, Buffer, string]> = [
      [
        'nothing, then EOF',
        Buffer.alloc(0),
        'peer closed the incoming socket during the handshake',
      ],
      ['1 random byte', garbage(1), EOF_MID_FRAME],
      ['11 random bytes', garbage(11), EOF_MID_FRAME],
      ['64 KiB random', big, `bad magic 0x${magicHex} (not a urbd peer?) during the handshake`],
      [
        'GET / HTTP/1.0',
        Buffer.from('GET / HTTP/1.0\r\n\r\n'),
        'bad magic 0x47455420 (not a urbd peer?) during the handshake',
      ],
    ];
    const remotes: Conn[] = [];
    for (const [name, bytes, expected] of cases) {
      const raw = await openRaw();
      remotes.push(raw);
      raw.socket.end(bytes);
      const reason = await refusalOf(raw);
      t.equal(reason, expected, `${name}: "${reason}"`);
      await raw.closed;
      t.same(raw.frames, [], `${name}: beta sent nothing back`);
    }
    const s = await status(pair.beta);
    t.equal(
      s.peers[0]!.lastError,
      `refused a connection from ${remotes.at(-1)!.local}: ${cases.at(-1)![2]}`,
      'status names the last refusal',
    );
    return remotes;
  });
});

t.test('truncated and oversize frames', async (t) => {
  await againstBeta(t, async () => {
    const remotes: Conn[] = [];
    // A header that promises 100 bytes, 10 of them sent, and the connection kept open: only
    // the handshake timeout (5 s) can end it. The other cases run meanwhile.
    const silent = await openRaw();
    remotes.push(silent);
    silent.socket.write(Buffer.concat([header(100, 0), garbage(10)]));
    const started = Date.now();

    const h = hello();
    const cases: Array<[string, Buffer, string | RegExp]> = [
      [
        'a header promising 100 bytes, 10 sent, EOF',
        Buffer.concat([header(100, 0), garbage(10)]),
        EOF_MID_FRAME,
      ],
      ['a bare header, EOF', header(64, 0), EOF_MID_FRAME],
      ['half a valid Hello, EOF', h.subarray(0, h.length >> 1), EOF_MID_FRAME],
      ['5 bytes of a header, EOF', header(64, 0).subarray(0, 5), EOF_MID_FRAME],
      [
        'control length 0xffffffff',
        header(0xffffffff, 0),
        'control message of 4294967295 bytes exceeds the 65536-byte limit during the handshake',
      ],
      [
        'data length 0xffffffff',
        Buffer.concat([header(10, 0xffffffff), garbage(10)]),
        'data of 4294967295 bytes exceeds the 0-byte limit during the handshake',
      ],
      ['control length 0', header(0, 0), 'frame without a control message during the handshake'],
      [
        'an undecodable control message',
        Buffer.concat([header(8, 0), Buffer.alloc(8, 0xff)]),
        /^undecodable control message: .+ during the handshake$/,
      ],
    ];
    for (const [name, bytes, expected] of cases) {
      const raw = await openRaw();
      remotes.push(raw);
      raw.socket.end(bytes);
      const reason = await refusalOf(raw);
      if (typeof expected === 'string') t.equal(reason, expected, `${name}: "${reason}"`);
      else t.match(reason, expected, `${name}: "${reason}"`);
      await raw.closed;
    }

    const reason = await refusalOf(silent, 10000);
    const waited = Date.now() - started;
    t.equal(
      reason,
      'handshake not finished within 5000 ms',
      `an open truncated frame: "${reason}"`,
    );
    t.ok(waited >= 4500 && waited < 8000, `refused after the handshake timeout (${waited} ms)`);
    await silent.closed;
    t.pass('beta closed the connection');
    return remotes;
  });
});

t.test('a valid Hello with the wrong resource, node or secret', async (t) => {
  await againstBeta(t, async () => {
    const remotes: Conn[] = [];
    const refusedAfterHello: Array<[string, Buffer, string]> = [
      [
        'wrong resource',
        hello({ resource: 'r9' }),
        'wrong resource: peer "alpha" has resource "r9", we have "r0"',
      ],
      ['a stranger', hello({ node: 'mallory' }), 'unexpected peer "mallory" (expected "alpha")'],
      [
        'no secret where one is configured',
        hello({ challenge: Buffer.alloc(0), hmacAlg: '' }),
        'shared-secret configured on this node only',
      ],
    ];
    for (const [name, bytes, expected] of refusedAfterHello) {
      const raw = await openRaw();
      remotes.push(raw);
      raw.socket.end(bytes);
      const reason = await refusalOf(raw);
      t.equal(reason, expected, `${name}: "${reason}"`);
      await raw.closed;
      t.same(
        raw.frames.map((m) => m.type),
        ['hello', 'authResult'],
        `${name}: beta answered the Hello, then refused`,
      );
      const res = raw.frames[1];
      t.same(
        res?.type === 'authResult' ? res.body : undefined,
        { ok: false, reason: expected },
        `${name}: and told us why`,
      );
    }

    // A peer-supplied name must not smuggle a line break into the one-line reason.
    const sneaky = await openRaw();
    remotes.push(sneaky);
    sneaky.socket.end(hello({ resource: 'r0\nfake: log line' }));
    const sneakyReason = await refusalOf(sneaky);
    t.match(sneakyReason, /^wrong resource: /, `a newline in the resource name is refused`);
    t.notMatch(sneakyReason, /[\r\n]/, 'and the reason stays one line');
    t.match(sneakyReason, /resource "r0\\nfake: log line"/, 'the name is shown quoted');
    await sneaky.closed;

    // A long name: how long a reason a stranger can make beta log and keep as last-error.
    const long = await openRaw();
    remotes.push(long);
    long.socket.end(hello({ node: 'm'.repeat(60000) }));
    const longReason = await refusalOf(long);
    t.match(
      longReason,
      /^unexpected peer "m{64}…" \(expected "alpha"\)$/,
      'a 60000-byte node name is cut',
    );
    await long.closed;

    // The whole exchange, answered with the wrong secret, on both channels.
    for (const channel of ['DATA', 'META'] as Channel[]) {
      const raw = await openRaw();
      remotes.push(raw);
      const challenge = randomBytes(CHALLENGE_BYTES);
      raw.socket.write(hello({ channel, challenge }));
      const theirs = await until(`beta's hello on ${channel}`, () => {
        const m = raw.frames[0];
        return m?.type === 'hello' ? m.body : undefined;
      });
      t.equal(theirs.challenge.length, CHALLENGE_BYTES, `${channel}: beta sent a challenge`);
      const wrong = authAnswer('sha256', 'not the secret', theirs.challenge, 'alpha', channel);
      raw.socket.end(Buffer.concat(encodeFrame('authResponse', { hmac: wrong })));
      const reason = await refusalOf(raw);
      t.equal(reason, WRONG_SECRET, `${channel}, wrong secret: "${reason}"`);
      await raw.closed;
      t.same(
        raw.frames.map((m) => m.type),
        ['hello', 'authResponse', 'authResult'],
        `${channel}: beta answered, then refused`,
      );
      const answer = raw.frames[1];
      t.ok(
        answer?.type === 'authResponse' &&
          Buffer.from(answer.body.hmac).equals(
            authAnswer('sha256', SECRET, challenge, 'beta', channel),
          ),
        `${channel}: beta's own answer was right (the exchange reached authentication)`,
      );
    }
    return remotes;
  });
});

t.test('a flood of 200 garbage connections', async (t) => {
  const pid = pair.beta.proc.pid;
  const baseline = await fdCount(pid);
  let peak = baseline;
  await againstBeta(t, async () => {
    const N = 200;
    const raws = await Promise.all(Array.from({ length: N }, () => openRaw()));
    for (let i = 0; i < 5; i++) {
      peak = Math.max(peak, await fdCount(pid));
      await sleep(40);
    }
    const payloads = raws.map((_, i) => {
      switch (i % 4) {
        case 0:
          return Buffer.alloc(0);
        case 1:
          return garbage(1 + (i % 64));
        case 2:
          return Buffer.from('GET / HTTP/1.0\r\n\r\n');
        default:
          return garbage(4096);
      }
    });
    raws.forEach((r, i) => r.socket.end(payloads[i]));
    const remotes: Conn[] = raws;
    const missing = await until(
      'a refusal line for every flood connection',
      () => {
        const left = remotes.filter((r) => refusalLines(r).length === 0);
        return left.length === 0 ? [] : undefined;
      },
      20000,
    ).catch(() => remotes.filter((r) => refusalLines(r).length === 0));
    t.same(missing, [], 'all 200 refused and logged');
    await Promise.all(raws.map((r) => r.closed));
    const reasons = new Map<string, number>();
    for (const r of remotes) {
      const why = String(refusalLines(r)[0]?.json!['reason']).replace(/0x[0-9a-f]{8}/, '0x…');
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
    }
    t.comment(`flood reasons: ${JSON.stringify([...reasons])}`);
    let after = await fdCount(pid);
    const deadline = Date.now() + 10000;
    while (after > baseline + 2 && Date.now() < deadline) {
      await sleep(100);
      after = await fdCount(pid);
    }
    t.ok(
      after <= baseline + 2,
      `beta's fds back near baseline: ${baseline} before, ${peak} during, ${after} after`,
    );
    return remotes;
  });
});

t.test('at the end: alpha connects and the disks are identical', async (t) => {
  const c = await pair.alpha.adm(['connect', 'r0']);
  t.equal(c.code, 0, 'urbdadm connect r0 on alpha', { output: showRun(c) });
  await waitInSync(pair, 30000);
  const d = await diffBlocks(pair.alphaDisk, pair.betaDisk, SIZE);
  t.equal(d.count, 0, 'no block differs between alpha and beta');
  t.ok(allBytes(await readRange(pair.betaDisk, 0, 65536), 0x22), 'beta holds the last write');
});
