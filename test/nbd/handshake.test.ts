// The fixed-newstyle handshake, option by option, through the raw client: what libnbd and
// qemu would never send, plus the structured-reply wire format they would hide from us.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import {
  CMD,
  CMD_FLAG,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  NBDMAGIC,
  NBD_EINVAL,
  OPT,
  RawNbdClient,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  TFLAG,
  type StructuredChunk,
} from '../helpers/raw-client.js';
import { makeDisk, readRange, sleep, startServer, tmpDir, writeRange } from '../helpers/server.js';

t.setTimeout(90000);

const MiB = 1 << 20;
const hex = (n: number) => `0x${n.toString(16)}`;

async function serve(t: Test, extra: string[] = []) {
  const dir = tmpDir(t);
  const main = await makeDisk(dir, 8 * MiB, undefined, 'main.img');
  const data = randomBytes(MiB);
  await writeRange(main, 0, data);
  const second = await makeDisk(dir, 2 * MiB, 0x42, 'second.img');
  const srv = await startServer(
    [
      '--disk',
      main,
      '--disk',
      second,
      '--export',
      'main',
      '--export',
      'second',
      '--description',
      'handshake test',
      '--listen',
      '127.0.0.1:0',
      ...extra,
    ],
    { t },
  );
  const clients: RawNbdClient[] = [];
  const connect = async () => {
    const c = await RawNbdClient.connect(srv.tcp);
    clients.push(c);
    return c;
  };
  t.teardown(() => clients.forEach((c) => c.destroy()));
  return { srv, main, second, data, connect };
}

t.test('greeting and handshake flags', async (t) => {
  const { connect } = await serve(t);
  const c = await connect();
  const g = await c.readGreeting();
  t.equal(g.magic, NBDMAGIC, 'NBDMAGIC');
  t.equal(g.optMagic, IHAVEOPT, 'IHAVEOPT (newstyle)');
  t.equal(
    g.flags,
    FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
    'FIXED_NEWSTYLE and NO_ZEROES, nothing else',
  );
});

t.test('unknown and unsupported options get ERR_UNSUP and the handshake goes on', async (t) => {
  const { connect, data } = await serve(t);
  const c = await connect();
  await c.handshake();
  await c.sendOption(0x7654321, Buffer.from('junk'));
  let r = await c.readOptionReply();
  t.equal(r.option, 0x7654321, 'option echoed');
  t.equal(r.type, REP.ERR_UNSUP, 'ERR_UNSUP');
  await c.sendOption(0xdead, Buffer.alloc(0));
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_UNSUP, 'empty unknown option: ERR_UNSUP');
  await c.sendOption(OPT.PEEK_EXPORT);
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_UNSUP, 'withdrawn PEEK_EXPORT: ERR_UNSUP');
  await c.sendOption(OPT.STARTTLS);
  r = await c.readOptionReply();
  t.ok(
    r.type === REP.ERR_UNSUP || r.type === REP.ERR_POLICY,
    `STARTTLS refused without TLS (${hex(r.type)})`,
  );
  // a large unknown option is consumed, not mistaken for more options
  await c.sendOption(0x1234, Buffer.alloc(3000, 0x49));
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_UNSUP, '3000-byte unknown option: ERR_UNSUP');
  const info = await c.go('main');
  t.equal(info.size, BigInt(8 * MiB), 'GO still works afterwards');
  const rd = await c.readData(0, 4096);
  t.equal(rd.error, 0, 'and so does a READ');
  t.same(rd.data, data.subarray(0, 4096), 'with the right data');
});

t.test('LIST names every export', async (t) => {
  const { connect } = await serve(t);
  const c = await connect();
  await c.handshake();
  const l = await c.optList();
  t.equal(l.final.type, REP.ACK, 'ends with ACK');
  t.same(l.exports.map((e) => e.name).sort(), ['main', 'second'], 'both names');
  await c.sendOption(OPT.LIST, Buffer.from('x'));
  const bad = await c.readOptionReply();
  t.equal(bad.type, REP.ERR_INVALID, 'LIST with a payload: ERR_INVALID');
  const l2 = await c.optList();
  t.equal(l2.exports.length, 2, 'the next LIST still works');
});

t.test('INFO and GO report the same size, flags and block sizes', async (t) => {
  const { connect } = await serve(t);
  for (const [name, size] of [
    ['main', 8 * MiB],
    ['', 8 * MiB],
    ['second', 2 * MiB],
  ] as const) {
    const c = await connect();
    await c.handshake();
    const info = await c.optInfoOrGo(OPT.INFO, name, [
      INFO.BLOCK_SIZE,
      INFO.NAME,
      INFO.DESCRIPTION,
    ]);
    t.equal(info.replies.at(-1)?.type, REP.ACK, `INFO '${name}' ends with ACK`);
    t.equal(info.size, BigInt(size), `INFO '${name}' size`);
    const f = info.flags;
    t.ok(f & TFLAG.HAS_FLAGS, 'HAS_FLAGS');
    t.notOk(f & TFLAG.READ_ONLY, 'not read-only');
    for (const [flag, label] of [
      [TFLAG.SEND_FLUSH, 'FLUSH'],
      [TFLAG.SEND_FUA, 'FUA'],
      [TFLAG.SEND_TRIM, 'TRIM'],
      [TFLAG.SEND_WRITE_ZEROES, 'WRITE_ZEROES'],
      [TFLAG.CAN_MULTI_CONN, 'MULTI_CONN'],
      [TFLAG.SEND_CACHE, 'CACHE'],
    ] as const) {
      t.ok(f & flag, `${label} advertised (flags ${hex(f)})`);
    }
    t.notOk(f & TFLAG.SEND_DF, 'DF not advertised without structured replies');
    t.notOk(f & TFLAG.SEND_RESIZE, 'RESIZE not advertised');
    t.equal(f & ~0x0fff, 0, 'no undefined flag bits');
    t.same(info.blockSize, { min: 1, preferred: 4096, max: 32 * MiB }, 'BLOCK_SIZE 1/4096/32M');
    if (info.description !== undefined) t.equal(info.description, 'handshake test', 'description');
    const go = await c.go(name, [INFO.BLOCK_SIZE]);
    t.equal(go.size, info.size, 'GO size equals INFO size');
    t.equal(go.flags, info.flags, 'GO flags equal INFO flags');
    t.same(go.blockSize, info.blockSize, 'GO block sizes equal INFO block sizes');
    t.equal((await c.readData(BigInt(size) - 1n, 1)).error, 0, 'last byte readable');
    t.ok(await c.disconnect(), 'DISC closes the connection');
  }
});

t.test('unknown export names', async (t) => {
  const { connect } = await serve(t);
  const c = await connect();
  await c.handshake();
  let info = await c.optInfoOrGo(OPT.INFO, 'nope');
  t.equal(info.replies.at(-1)?.type, REP.ERR_UNKNOWN, 'INFO: ERR_UNKNOWN');
  info = await c.optInfoOrGo(OPT.GO, 'nope');
  t.equal(info.replies.at(-1)?.type, REP.ERR_UNKNOWN, 'GO: ERR_UNKNOWN');
  t.equal(info.replies.length, 1, 'no INFO replies before the error');
  const ok = await c.go('second');
  t.equal(ok.size, BigInt(2 * MiB), 'a later GO for a real export works');

  const e = await connect();
  await e.handshake();
  await e.sendOption(OPT.EXPORT_NAME, Buffer.from('nope'));
  const { closed, leftover } = await e.waitForClose(5000);
  t.ok(closed, 'EXPORT_NAME for an unknown export closes the connection');
  t.equal(leftover.length, 0, 'without sending anything');
});

t.test('EXPORT_NAME with and without NO_ZEROES', async (t) => {
  const { connect, second } = await serve(t);
  const a = await connect();
  await a.handshake(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
  const ra = await a.exportName('second');
  t.equal(ra.size, BigInt(2 * MiB), 'size');
  t.ok(ra.flags & TFLAG.HAS_FLAGS, 'flags');
  t.equal(ra.padding.length, 0, 'no padding with NO_ZEROES');
  const rd = await a.readData(0, 4096);
  t.same(
    rd.data,
    await readRange(second, 0, 4096),
    'first READ after EXPORT_NAME (no stray bytes)',
  );

  const b = await connect();
  await b.handshake(FLAG_C_FIXED_NEWSTYLE);
  const rb = await b.exportName('');
  t.equal(rb.size, BigInt(8 * MiB), 'default export via EXPORT_NAME ""');
  t.equal(rb.padding.length, 124, '124 bytes of padding without NO_ZEROES');
  t.ok(
    rb.padding.every((x) => x === 0),
    'all zero',
  );
  t.equal((await b.readData(0, 512)).error, 0, 'READ works after the padding');
});

t.test('ABORT is acknowledged, then the server closes', async (t) => {
  const { connect } = await serve(t);
  const c = await connect();
  await c.handshake();
  await c.sendOption(OPT.ABORT);
  const r = await c.readOptionReply();
  t.equal(r.option, OPT.ABORT, 'reply to ABORT');
  t.equal(r.type, REP.ACK, 'ACK');
  t.ok((await c.waitForClose(5000)).closed, 'then the connection closes');
  // a client that aborts and does not wait for the ACK must not disturb the server
  const d = await connect();
  await d.handshake();
  await d.sendOption(OPT.ABORT);
  d.destroy();
  const e = await connect();
  await e.handshake();
  t.equal((await e.go('main')).size, BigInt(8 * MiB), 'next client is served');
});

t.test('unknown client flags close the connection', async (t) => {
  const { connect, srv } = await serve(t);
  for (const flags of [
    FLAG_C_FIXED_NEWSTYLE | 0x4,
    0xffffffff,
    FLAG_C_FIXED_NEWSTYLE | 0x80000000,
  ]) {
    const c = await connect();
    await c.readGreeting();
    await c.sendClientFlags(flags);
    await c.sendOption(OPT.LIST).catch(() => undefined);
    const { closed, leftover } = await c.waitForClose(5000);
    t.ok(closed, `client flags ${hex(flags)}: connection closed`);
    t.equal(leftover.length, 0, 'no option reply was sent');
  }
  const ok = await connect();
  await ok.handshake();
  t.equal((await ok.go('main')).size, BigInt(8 * MiB), 'a good client is still served');
  await srv
    .waitForLog((l) => /flag/i.test(l.raw) && l.json?.msg !== 'listening', 5000)
    .then(
      () => t.pass('the reason (client flags) is logged'),
      (e: Error) => t.fail(`no log line mentions the flags: ${e.message}`),
    );
});

t.test('malformed options: ERR_INVALID or a hard close, never a hang', async (t) => {
  const { connect, srv } = await serve(t);
  const c = await connect();
  await c.handshake();

  // name length points past the end of the option payload
  const p1 = Buffer.alloc(10);
  p1.writeUInt32BE(100, 0);
  await c.sendOption(OPT.GO, p1);
  let r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_INVALID, 'GO with an overlong name length: ERR_INVALID');

  // the info-request count promises more entries than were sent
  const p2 = RawNbdClient.infoPayload('main', [INFO.BLOCK_SIZE]);
  p2.writeUInt16BE(5, 4 + 4);
  await c.sendOption(OPT.INFO, p2);
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_INVALID, 'INFO with a short info-request list: ERR_INVALID');

  // payload too short to hold even the name length
  await c.sendOption(OPT.GO, Buffer.alloc(2));
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_INVALID, 'GO with a 2-byte payload: ERR_INVALID');

  await c.sendOption(OPT.STRUCTURED_REPLY, Buffer.from('zz'));
  r = await c.readOptionReply();
  t.equal(r.type, REP.ERR_INVALID, 'STRUCTURED_REPLY with a payload: ERR_INVALID');

  const go = await c.go('main');
  t.equal(go.size, BigInt(8 * MiB), 'the same connection still reaches transmission');

  // A declared length far beyond any sane option: the server may refuse or hang up, but
  // it must not sit waiting for 2 GiB that will never come while holding the connection.
  const d = await connect();
  await d.handshake();
  await d.sendOption(OPT.GO, Buffer.alloc(0), 0x7fffffff);
  const outcome = await d.readOptionReply(5000).then(
    (x) => `reply ${hex(x.type)}`,
    () => (d.isEnded ? 'closed' : 'nothing within 5 s'),
  );
  t.ok(
    outcome === 'closed' || outcome.startsWith('reply 0x8'),
    `2 GiB option: error or close (${outcome})`,
  );
  t.ok(srv.isAlive(), 'server alive');
  const e = await connect();
  await e.handshake();
  t.equal((await e.go('second')).size, BigInt(2 * MiB), 'next client is served');
});

t.test('structured replies: meta contexts, chunked READ, error chunks, block status', async (t) => {
  const { connect, data } = await serve(t);
  const c = await connect();
  await c.handshake();
  const sr = await c.optStructuredReply();
  t.equal(sr.type, REP.ACK, 'STRUCTURED_REPLY acknowledged');

  const listed = await c.optMetaContext(OPT.LIST_META_CONTEXT, 'main', []);
  t.equal(listed.final.type, REP.ACK, 'LIST_META_CONTEXT ends with ACK');
  t.ok(listed.contexts.has('base:allocation'), 'base:allocation listed');
  const unknown = await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['nosuch:thing']);
  t.equal(unknown.final.type, REP.ACK, 'unknown namespace: ACK');
  t.equal(unknown.contexts.size, 0, 'and no context selected');
  const set = await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['base:allocation']);
  t.equal(set.final.type, REP.ACK, 'SET_META_CONTEXT ends with ACK');
  const ctx = set.contexts.get('base:allocation');
  t.type(ctx, 'number', 'base:allocation selected with an id');
  const info = await c.go('main');
  t.ok(info.flags & TFLAG.HAS_FLAGS, 'GO after SR');

  // READ over written data and a hole
  const rd = await c.readData(MiB - 4096, 8192);
  t.equal(rd.error, 0, 'READ across data and hole');
  t.ok(
    rd.chunks.every((x) => x.kind === 'chunk'),
    'READ answered only with structured chunks',
  );
  const last = rd.chunks.at(-1) as StructuredChunk;
  t.ok(last.flags & REPLY_FLAG_DONE, 'last chunk has DONE');
  t.equal(
    rd.chunks.filter((x) => x.kind === 'chunk' && x.flags & REPLY_FLAG_DONE).length,
    1,
    'exactly one DONE',
  );
  const expect = Buffer.concat([data.subarray(MiB - 4096), Buffer.alloc(4096)]);
  t.same(rd.data, expect, 'reassembled READ equals the disk');
  let covered = 0;
  for (const ch of rd.chunks as StructuredChunk[]) {
    if (ch.type === REPLY_TYPE.OFFSET_DATA) covered += ch.payload.length - 8;
    if (ch.type === REPLY_TYPE.OFFSET_HOLE) covered += ch.payload.readUInt32BE(8);
  }
  t.equal(covered, 8192, 'data/hole chunks cover exactly the requested range');

  // errors on READ must be structured too
  const past = await c.readData(8 * MiB, 512);
  t.equal(past.error, NBD_EINVAL, 'past-end READ: EINVAL');
  const errChunk = past.chunks.at(-1);
  t.equal(errChunk?.kind, 'chunk', 'as a structured chunk, not a simple reply');
  if (errChunk?.kind === 'chunk') {
    t.ok(
      errChunk.type === REPLY_TYPE.ERROR || errChunk.type === REPLY_TYPE.ERROR_OFFSET,
      'an error chunk',
    );
    t.ok(errChunk.flags & REPLY_FLAG_DONE, 'with DONE');
  }

  // block status: written first MiB is data, the rest a hole
  const cookie = await c.send({ type: CMD.BLOCK_STATUS, offset: 0, length: 8 * MiB });
  const replies = [];
  for (;;) {
    const r = await c.readReply();
    t.equal(r.cookie, cookie, 'block status reply cookie');
    replies.push(r);
    if (r.kind === 'simple' || r.flags & REPLY_FLAG_DONE) break;
  }
  const bs = replies.find((r) => r.kind === 'chunk' && r.type === REPLY_TYPE.BLOCK_STATUS) as
    StructuredChunk | undefined;
  t.ok(bs, 'a BLOCK_STATUS chunk');
  if (bs) {
    t.equal(bs.payload.readUInt32BE(0), ctx, 'for the selected context id');
    const extents: { length: number; flags: number }[] = [];
    for (let i = 4; i + 8 <= bs.payload.length; i += 8) {
      extents.push({ length: bs.payload.readUInt32BE(i), flags: bs.payload.readUInt32BE(i + 4) });
    }
    t.ok(extents.length >= 1, 'at least one extent');
    t.ok(
      extents.every((e) => e.length > 0),
      'no zero-length extents',
    );
    t.equal(extents[0]!.flags & 1, 0, 'offset 0 is data');
    let off = 0;
    let holeAt6M = -1;
    for (const e of extents) {
      if (off <= 6 * MiB && 6 * MiB < off + e.length) holeAt6M = e.flags & 1;
      off += e.length;
    }
    if (off > 6 * MiB) t.equal(holeAt6M, 1, 'offset 6 MiB is a hole', { extents });
  }
  const one = await c.send({
    type: CMD.BLOCK_STATUS,
    offset: 0,
    length: 8 * MiB,
    flags: CMD_FLAG.REQ_ONE,
  });
  const oneReplies = [];
  for (;;) {
    const r = await c.readReply();
    t.equal(r.cookie, one, 'REQ_ONE reply cookie');
    oneReplies.push(r);
    if (r.kind === 'simple' || r.flags & REPLY_FLAG_DONE) break;
  }
  const oneBs = oneReplies.find((r) => r.kind === 'chunk' && r.type === REPLY_TYPE.BLOCK_STATUS) as
    StructuredChunk | undefined;
  t.equal(oneBs?.payload.length, 4 + 8, 'REQ_ONE: exactly one extent');
  t.ok((oneBs?.payload.readUInt32BE(4) ?? Infinity) <= 8 * MiB, 'no longer than asked');

  const w = await c.writeData(2 * MiB, Buffer.alloc(4096, 0x61));
  t.equal(w, 0, 'WRITE with structured replies on');
  t.same((await c.readData(2 * MiB, 4096)).data, Buffer.alloc(4096, 0x61), 'read back');
});

t.test('BLOCK_STATUS without a selected context is refused', async (t) => {
  const { connect } = await serve(t);
  const c = await connect();
  await c.handshake();
  t.equal((await c.optStructuredReply()).type, REP.ACK, 'SR on');
  await c.go('main');
  t.equal(await c.command(CMD.BLOCK_STATUS, 0, 4096), NBD_EINVAL, 'EINVAL');
  t.equal((await c.readData(0, 16)).error, 0, 'connection still usable');
});

t.test('--handshake-timeout closes stalled handshakes only', async (t) => {
  const { connect } = await serve(t, ['--handshake-timeout', '2']);
  const stalled = await connect();
  await stalled.readGreeting();
  const midOption = await connect();
  await midOption.handshake();
  await midOption.write(Buffer.alloc(8, 0x49)); // half an option header
  const working = await connect();
  await working.handshake();
  await working.go('main');
  const started = Date.now();
  const [a, b] = await Promise.all([stalled.waitForClose(10000), midOption.waitForClose(10000)]);
  t.ok(a.closed, 'a client that never sends its flags is dropped');
  t.ok(b.closed, 'a client stuck mid-option is dropped');
  t.ok(Date.now() - started < 9000, 'within a few seconds');
  await sleep(500);
  t.equal((await working.readData(0, 4096)).error, 0, 'an idle client in transmission is kept');
});

t.test('multi-conn: what one connection wrote, another reads', async (t) => {
  const { connect, main } = await serve(t);
  const a = await connect();
  await a.handshake();
  await a.go('main');
  const b = await connect();
  await b.handshake();
  await b.go('main');
  const data = randomBytes(65536);
  t.equal(await a.writeData(3 * MiB, data), 0, 'write on A');
  t.same((await b.readData(3 * MiB, 65536)).data, data, 'B reads it once A has the reply');
  t.equal(await b.command(CMD.FLUSH, 0, 0), 0, 'FLUSH on B');
  t.same(await readRange(main, 3 * MiB, 65536), data, 'in the backing file');
  const more = randomBytes(4096);
  t.equal(await b.writeData(3 * MiB + 100, more, CMD_FLAG.FUA), 0, 'FUA write on B');
  t.same((await a.readData(3 * MiB + 100, 4096)).data, more, 'A reads it');
});
