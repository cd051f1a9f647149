// A read-only export advertises no SEND_FUA (FUA is about writes, which it refuses), and still
// SEND_FLUSH; a writable one advertises both. Seen by libnbd, nbdinfo and the raw handshake.
import t from 'tap';
import { INFO, OPT, RawNbdClient, TFLAG } from '../helpers/raw-client.js';
import { libnbd } from '../helpers/libnbd.js';
import { makeDisk, run, showRun, startServer, tmpDir } from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;

t.test('SEND_FUA only on a writable export', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 4 * MiB, 0x33);
  for (const ro of [true, false]) {
    const what = ro ? 'read-only' : 'writable';
    const srv = await startServer(
      ['--disk', disk, '--listen', '127.0.0.1:0', ...(ro ? ['--read-only'] : [])],
      { t },
    );

    const seen = await libnbd<{ ro: boolean; fua: boolean; flush: boolean; flushed: boolean }>(
      srv.uri(),
      `
h = handle(uri)
out["ro"] = h.is_read_only() == 1
out["fua"] = h.can_fua() == 1
out["flush"] = h.can_flush() == 1
out["flushed"] = attempt(lambda: h.flush())["ok"]
`,
    );
    t.same(
      seen,
      { ro, fua: !ro, flush: true, flushed: true },
      `${what}: libnbd sees read-only=${ro}, fua=${!ro}, flush (which works)`,
    );

    const fua = await run('nbdinfo', ['--can', 'fua', srv.uri()], { timeoutMs: 20000 });
    t.equal(fua.code, ro ? 2 : 0, `${what}: nbdinfo --can fua → ${ro ? 'no' : 'yes'}`, {
      output: showRun(fua),
    });

    // both ways into transmission, with and without structured replies
    for (const sr of [false, true]) {
      const c = await RawNbdClient.connect(srv.tcp);
      t.teardown(() => c.destroy());
      await c.handshake();
      if (sr) await c.optStructuredReply();
      const info = await c.optInfoOrGo(OPT.INFO, '', [INFO.BLOCK_SIZE]);
      const go = await c.go('', []);
      for (const [how, flags] of [
        ['INFO', info.flags],
        ['GO', go.flags],
      ] as const) {
        const label = `${what}, ${how}${sr ? ' after STRUCTURED_REPLY' : ''}`;
        t.equal(Boolean(flags & TFLAG.READ_ONLY), ro, `${label}: READ_ONLY=${ro}`);
        t.equal(Boolean(flags & TFLAG.SEND_FUA), !ro, `${label}: SEND_FUA=${!ro}`);
        t.ok(flags & TFLAG.SEND_FLUSH, `${label}: SEND_FLUSH`);
      }
      await c.disconnect();
    }
    const old = await RawNbdClient.connect(srv.tcp);
    t.teardown(() => old.destroy());
    await old.handshake();
    const { flags } = await old.exportName('');
    t.equal(Boolean(flags & TFLAG.SEND_FUA), !ro, `${what}, EXPORT_NAME: SEND_FUA=${!ro}`);
    old.destroy();
    t.equal(await srv.stop(), 0, `${what}: server exits 0`);
  }
});
