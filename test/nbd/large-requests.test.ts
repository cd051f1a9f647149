// READ and WRITE over the advertised 32 MiB. A client that agreed to the block sizes (GO with
// NBD_INFO_BLOCK_SIZE) is held to them; one that never heard of them (EXPORT_NAME, or GO
// without the request, like the kernel's nbd-client) is served up to 64 MiB, as nbd-server
// and nbdkit serve the reference implementation's `integrityhuge` test (35-49 MB requests).
// An oversized READ answered with chunks gets EOVERFLOW, the spec's "retry smaller".
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  CMD,
  CMD_FLAG,
  NBD_EINVAL,
  NBD_EOVERFLOW,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  RawNbdClient,
  type StructuredChunk,
  openExport,
} from '../helpers/raw-client.js';
import { libnbd, type Outcome } from '../helpers/libnbd.js';
import { makeDisk, readRange, sleep, startServer, tmpDir } from '../helpers/server.js';

t.setTimeout(300000);

const MiB = 1 << 20;
const SIZE = 80 * MiB;
const ADVERTISED = 32 * MiB;
const UNAGREED_MAX = 64 * MiB;

async function serve(t: Test) {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, SIZE, 'random');
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0'], { t });
  const clients: RawNbdClient[] = [];
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const track = (c: RawNbdClient) => {
    clients.push(c);
    return c;
  };
  return { disk, srv, track };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Data for a WRITE that differs from the random disk everywhere it matters. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) b.writeUInt32BE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

t.test('libnbd without block-size negotiation: 48 MiB writes and reads', async (t) => {
  const { disk, srv } = await serve(t);
  for (const structured of [true, false]) {
    const how = structured ? 'structured replies' : 'simple replies';
    const offset = structured ? 2 * MiB : 20 * MiB;
    const out = await libnbd<{
      write: Outcome;
      read: Outcome;
      same: boolean;
      sha: string;
      maximum: number;
    }>(
      srv.uri(),
      `
import hashlib, os
h = handle(uri, block_sizes=False, structured=${structured ? 'True' : 'False'})
out["maximum"] = h.get_block_size(nbd.SIZE_MAXIMUM)
data = os.urandom(${48 * MiB})
out["write"] = attempt(lambda: h.pwrite(data, ${offset}))
got = []
out["read"] = attempt(lambda: got.append(h.pread(${48 * MiB}, ${offset})))
out["same"] = bool(got) and got[0] == data
out["sha"] = hashlib.sha256(data).hexdigest()
`,
      120000,
    );
    t.equal(out.maximum, 0, `${how}: no block sizes were asked for, none told`);
    t.match(out.write, { ok: true }, `${how}: 48 MiB WRITE succeeds`);
    t.match(out.read, { ok: true }, `${how}: 48 MiB READ succeeds`);
    t.ok(out.same, `${how}: and returns what was written`);
    t.equal(sha(await readRange(disk, offset, 48 * MiB)), out.sha, `${how}: the disk has it`);
  }
});

t.test('libnbd that agreed to the block sizes is held to 32 MiB', async (t) => {
  const { srv } = await serve(t);
  for (const structured of [true, false]) {
    const how = structured ? 'structured replies' : 'simple replies';
    const out = await libnbd<Record<string, Outcome> & { maximum: number }>(
      srv.uri(),
      `
h = handle(uri, structured=${structured ? 'True' : 'False'})
out["maximum"] = h.get_block_size(nbd.SIZE_MAXIMUM)
out["read"] = attempt(lambda: h.pread(${ADVERTISED + 4096}, 0))
out["after_read"] = alive(h)
out["write"] = attempt(lambda: h.pwrite(b"\\x11" * ${ADVERTISED + 4096}, 0))
out["after_write"] = alive(h)
out["exact"] = attempt(lambda: h.pread(${ADVERTISED}, 0))
`,
    );
    t.equal(out.maximum, ADVERTISED, `${how}: 32 MiB advertised`);
    const readError = structured ? 'EOVERFLOW' : 'EINVAL';
    t.match(out.read, { ok: false, errno: readError }, `${how}: 32 MiB + 4 KiB READ: ${readError}`);
    t.match(out.after_read, { ok: true }, `${how}: the handle still reads`);
    t.match(out.write, { ok: false, errno: 'EINVAL' }, `${how}: 32 MiB + 4 KiB WRITE: EINVAL`);
    t.match(out.after_write, { ok: true }, `${how}: the handle still reads`);
    t.match(out.exact, { ok: true }, `${how}: exactly 32 MiB is served`);
  }
  const df = await libnbd<Record<string, Outcome>>(
    srv.uri(),
    `
h = handle(uri, block_sizes=False)
out["df"] = attempt(lambda: h.pread(${40 * MiB}, 0, nbd.CMD_FLAG_DF))
out["after_df"] = alive(h)
out["df_small"] = attempt(lambda: h.pread(${ADVERTISED}, 0, nbd.CMD_FLAG_DF))
`,
  );
  t.match(df.df, { ok: false, errno: 'EOVERFLOW' }, '40 MiB "don\'t fragment" READ: EOVERFLOW');
  t.match(df.after_df, { ok: true }, 'the handle still reads');
  t.match(df.df_small, { ok: true }, 'a 32 MiB "don\'t fragment" READ is served');
});

t.test('raw EXPORT_NAME client: integrityhuge-sized requests, and the 64 MiB bound', async (t) => {
  const { disk, srv, track } = await serve(t);
  const c = track(await RawNbdClient.connect(srv.tcp));
  await c.handshake();
  const { size } = await c.exportName('');
  t.equal(size, BigInt(SIZE), 'in transmission through EXPORT_NAME');

  const file = await readFile(disk);
  const r49 = await c.readData(MiB, 49_000_000);
  t.equal(r49.error, 0, '49 MB READ succeeds');
  t.ok(r49.data?.equals(file.subarray(MiB, MiB + 49_000_000)), 'with the disk data');
  const w = pattern(49_000_000, 1);
  t.equal(await c.writeData(3 * MiB + 512, w), 0, '49 MB WRITE at an odd offset succeeds');
  t.ok((await readRange(disk, 3 * MiB + 512, w.length)).equals(w), 'and is on the disk');

  const r64 = await c.readData(8 * MiB, UNAGREED_MAX);
  t.equal(r64.error, 0, '64 MiB READ succeeds');
  t.equal(r64.data?.length, UNAGREED_MAX, 'all of it');
  t.equal((await c.readData(0, UNAGREED_MAX + 1)).error, NBD_EINVAL, '64 MiB + 1 READ: EINVAL');
  const over = Buffer.alloc(UNAGREED_MAX + 1, 0x77);
  t.equal(await c.writeData(0, over), NBD_EINVAL, '64 MiB + 1 WRITE: EINVAL (payload drained)');
  const after = await c.readData(0, 4096);
  t.ok(after.data?.equals(file.subarray(0, 4096)), 'the stream is in step, nothing was written');
  t.ok(await c.disconnect(), 'DISC closes');
});

t.test('raw GO without block sizes, structured replies: long READs come in chunks', async (t) => {
  const { disk, srv, track } = await serve(t);
  const c = track(await RawNbdClient.connect(srv.tcp));
  await c.handshake();
  await c.optStructuredReply();
  const info = await c.go('', []);
  t.equal(info.blockSize, undefined, 'no block sizes asked for, none sent');

  const len = 40 * MiB + 4096;
  const r = await c.readData(4096, len);
  t.equal(r.error, 0, '40 MiB READ succeeds');
  t.ok(r.data?.equals(await readRange(disk, 4096, len)), 'with the disk data');
  const chunks = r.chunks as StructuredChunk[];
  t.same(
    chunks.map((x) => [x.type, x.payload.length - 8, x.flags & REPLY_FLAG_DONE]),
    [
      [REPLY_TYPE.OFFSET_DATA, ADVERTISED, 0],
      [REPLY_TYPE.OFFSET_DATA, len - ADVERTISED, REPLY_FLAG_DONE],
    ],
    'two data chunks, none over the advertised 32 MiB; DONE on the last',
  );
  t.same(
    chunks.map((x) => Number(x.payload.readBigUInt64BE(0))),
    [4096, 4096 + ADVERTISED],
    'at consecutive offsets',
  );

  const df = await c.readData(0, 40 * MiB, CMD_FLAG.DF);
  t.equal(df.error, NBD_EOVERFLOW, '40 MiB "don\'t fragment" READ: EOVERFLOW');
  const tooLong = await c.readData(0, UNAGREED_MAX + 1);
  t.equal(tooLong.error, NBD_EOVERFLOW, '64 MiB + 1 READ: EOVERFLOW');
  t.same(
    tooLong.chunks.map((x) => x.kind === 'chunk' && x.type),
    [REPLY_TYPE.ERROR],
    'one error chunk, no data',
  );
  t.equal((await c.readData(0, 4096)).error, 0, 'the connection goes on');
});

t.test(
  'raw GO with block sizes and structured replies: 32 MiB + 1 READ is EOVERFLOW',
  async (t) => {
    const { srv, track } = await serve(t);
    const { client: c } = await openExport(srv.tcp, '', { structuredReplies: true });
    track(c);
    t.equal((await c.readData(0, ADVERTISED + 1)).error, NBD_EOVERFLOW, 'EOVERFLOW');
    t.equal((await c.readData(0, ADVERTISED)).error, 0, 'exactly 32 MiB is served');
  },
);

t.test('pipelined 64 MiB requests wait for room instead of piling up in memory', async (t) => {
  const { disk, srv, track } = await serve(t);
  const c = track(await RawNbdClient.connect(srv.tcp));
  await c.handshake();
  await c.exportName('');
  const file = await readFile(disk);
  const status = async (field: string) => {
    const text = await readFile(`/proc/${srv.pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)![1]) * 1024;
  };
  const before = await status('VmRSS');

  // 12 READs of 64 MiB (768 MiB) at once, and their replies left unread for a while: the
  // server holds what its in-flight cap allows (128 MiB) and the replies queued, not all 12.
  const N = 12;
  const offsets = Array.from({ length: N }, (_, i) => (i % 4) * 4 * MiB);
  c.socket.pause();
  const batch = offsets.map((offset, i) =>
    RawNbdClient.encodeRequest({ type: CMD.READ, offset, length: UNAGREED_MAX, cookie: BigInt(i) }),
  );
  await c.write(Buffer.concat(batch));
  // let the server go as far as it will while nothing is read
  await sleep(2000);
  c.socket.resume();
  const seen = new Set<bigint>();
  for (let i = 0; i < N; i++) {
    const r = await c.readReply(() => UNAGREED_MAX, 60000);
    t.ok(r.kind === 'simple' && r.error === 0, `reply ${i} succeeds`);
    if (r.kind !== 'simple' || !r.data) continue;
    const at = offsets[Number(r.cookie)]!;
    if (!r.data.equals(file.subarray(at, at + UNAGREED_MAX)))
      t.fail(`reply ${r.cookie}: wrong data`);
    seen.add(r.cookie);
  }
  t.equal(seen.size, N, 'every READ answered once');
  const peak = await status('VmHWM');
  t.comment(`server RSS before ${before >> 20} MiB, peak ${peak >> 20} MiB`);
  t.ok(
    peak - before < 512 * MiB,
    `the server's peak memory grew by ${(peak - before) >> 20} MiB, not the 768 MiB asked for`,
  );
});
