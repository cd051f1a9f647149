// A refused WRITE is answered only once its whole payload has arrived (and been thrown away).
// libnbd matches a reply against the requests it has finished sending: a reply that overtakes
// the payload is "no matching cookie" to it, and the handle dies.
import t, { type Test } from 'tap';
import {
  CMD,
  CMD_FLAG,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  RawNbdClient,
  openExport,
} from '../helpers/raw-client.js';
import { libnbd, type Outcome } from '../helpers/libnbd.js';
import { allBytes, makeDisk, readRange, sleep, startServer, tmpDir } from '../helpers/server.js';

t.setTimeout(180000);

const MiB = 1 << 20;
const SIZE = 48 * MiB;

async function serve(t: Test, extra: string[] = []) {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, SIZE, 0x5a);
  const srv = await startServer(['--disk', disk, '--listen', '127.0.0.1:0', ...extra], { t });
  return { disk, srv };
}

type Refusals = Record<string, Outcome>;

t.test('libnbd (strict mode off): refused writes fail alone, the handle lives on', async (t) => {
  const rw = await serve(t);
  const ro = await serve(t, ['--read-only']);
  for (const structured of [true, false]) {
    const how = structured ? 'structured replies' : 'simple replies';
    const py = structured ? 'True' : 'False';
    const w = await libnbd<Refusals>(
      rw.srv.uri(),
      `
h = handle(uri, structured=${py})
out["past_end"] = attempt(lambda: h.pwrite(b"\\x11" * ${4 * MiB}, ${SIZE - 4096}))
out["after_past_end"] = alive(h)
out["too_long"] = attempt(lambda: h.pwrite(b"\\x11" * ${32 * MiB + 4096}, 0))
out["after_too_long"] = alive(h)
out["no_hole"] = attempt(lambda: h.pwrite(b"\\x11" * ${MiB}, 0, nbd.CMD_FLAG_NO_HOLE))
out["after_no_hole"] = alive(h)
out["good"] = attempt(lambda: h.pwrite(b"\\x22" * 4096, 8192))
`,
    );
    t.match(w.past_end, { ok: false, errno: 'ENOSPC' }, `${how}: 4 MiB WRITE past the end: ENOSPC`);
    t.match(w.after_past_end, { ok: true }, `${how}: the handle still reads`);
    t.match(w.too_long, { ok: false, errno: 'EINVAL' }, `${how}: 32 MiB + 4 KiB WRITE: EINVAL`);
    t.match(w.after_too_long, { ok: true }, `${how}: the handle still reads`);
    t.match(w.no_hole, { ok: false, errno: 'EINVAL' }, `${how}: WRITE with NO_HOLE: EINVAL`);
    t.match(w.after_no_hole, { ok: true }, `${how}: the handle still reads`);
    t.match(w.good, { ok: true }, `${how}: and a good WRITE after them works`);
    t.ok(allBytes(await readRange(rw.disk, 8192, 4096), 0x22), `${how}: it reached the disk`);

    const r = await libnbd<Refusals>(
      ro.srv.uri(),
      `
h = handle(uri, structured=${py})
out["ro"] = attempt(lambda: h.pwrite(b"\\x11" * ${4 * MiB}, 0))
out["after_ro"] = alive(h)
out["ro_fua"] = attempt(lambda: h.pwrite(b"\\x11" * ${MiB}, 0, nbd.CMD_FLAG_FUA))
out["after_ro_fua"] = alive(h)
`,
    );
    t.match(r.ro, { ok: false, errno: 'EPERM' }, `${how}: 4 MiB WRITE on read-only: EPERM`);
    t.match(r.after_ro, { ok: true }, `${how}: the handle still reads`);
    t.match(r.ro_fua, { ok: false, errno: 'EPERM' }, `${how}: WRITE+FUA on read-only: EPERM`);
    t.match(r.after_ro_fua, { ok: true }, `${how}: the handle still reads`);
  }
  t.ok(allBytes(await readRange(rw.disk, 0, 4096), 0x5a), 'no refused WRITE touched the disk');
  t.ok(allBytes(await readRange(rw.disk, SIZE - 4096, 4096), 0x5a), 'not even at the end');
  t.ok(allBytes(await readRange(ro.disk, 0, MiB), 0x5a), 'the read-only disk is unchanged');
});

t.test('raw socket: no reply to a refused WRITE until its last payload byte', async (t) => {
  const rw = await serve(t);
  const ro = await serve(t, ['--read-only']);
  const cases: [string, string, { offset: number; length: number; flags?: number }, number][] = [
    ['read-only', ro.srv.tcp, { offset: 0, length: 4 * MiB }, NBD_EPERM],
    ['past the end', rw.srv.tcp, { offset: SIZE - 4096, length: 4 * MiB }, NBD_ENOSPC],
    ['over the maximum', rw.srv.tcp, { offset: 0, length: 32 * MiB + 1 }, NBD_EINVAL],
    ['NO_HOLE flag', rw.srv.tcp, { offset: 0, length: 8192, flags: CMD_FLAG.NO_HOLE }, NBD_EINVAL],
  ];
  for (const structuredReplies of [false, true]) {
    for (const [name, tcp, w, error] of cases) {
      const what = `${name} (${structuredReplies ? 'structured' : 'simple'} replies)`;
      const { client: c } = await openExport(tcp, '', { structuredReplies });
      t.teardown(() => c.destroy());
      const payload = Buffer.alloc(w.length, 0x11);
      const half = Math.floor(w.length / 2);
      const cookie = 0x1122334455667788n;
      await c.write(
        RawNbdClient.encodeRequest({
          type: CMD.WRITE,
          cookie,
          ...w,
          payload: payload.subarray(0, half),
        }),
      );
      // A reply sent at the header would be here long before this; the old server's was.
      await sleep(300);
      t.equal(c.available, 0, `${what}: nothing answered while the payload is incomplete`);
      await c.write(payload.subarray(half));
      const replies = [];
      for (;;) {
        const r = await c.readReply();
        replies.push(r);
        if (r.kind === 'simple' || r.flags & 1) break;
      }
      const last = replies.at(-1)!;
      t.equal(last.cookie, cookie, `${what}: then the reply, with the WRITE's cookie`);
      const got =
        last.kind === 'simple'
          ? last.error
          : last.payload.length >= 4
            ? last.payload.readUInt32BE(0)
            : -1;
      t.equal(got, error, `${what}: error ${error}`);
      const rd = await c.readData(4096, 4096);
      t.equal(rd.error, 0, `${what}: the stream is in step: a READ follows`);
      t.ok(rd.data && allBytes(rd.data, 0x5a), `${what}: with the disk's data`);
      await c.disconnect();
    }
  }
  t.ok(allBytes(await readRange(rw.disk, 0, 8192), 0x5a), 'nothing refused reached the disk');
});
