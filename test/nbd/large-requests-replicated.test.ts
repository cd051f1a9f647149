// A READ or WRITE over 32 MiB from a client that never agreed to the block sizes reaches the
// target in parts of at most 32 MiB: a replicated resource ships each write to its peer in
// one frame, and frames carry at most 32 MiB. Proved on a real pair: the data is on both
// disks, and a diskless Primary reads it back through its peer.
import t from 'tap';
import { createHash } from 'node:crypto';
import { libnbd, type Outcome } from '../helpers/libnbd.js';
import { readRange, showRun, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import { promoteAndSync, startPair, status, waitFor } from '../helpers/pair.js';

t.setTimeout(300000);

const MiB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('48 MiB writes and reads through a replicated Primary', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 96 * MiB });
  await promoteAndSync(p);
  const offset = 4 * MiB + 4096;
  const w = await libnbd<{
    write: Outcome;
    fua: Outcome;
    read: Outcome;
    same: boolean;
    sha: string;
  }>(
    exportUri(p.alpha),
    `
import hashlib, os
h = handle(uri, block_sizes=False)
data = os.urandom(${48 * MiB})
out["write"] = attempt(lambda: h.pwrite(data, ${offset}))
out["fua"] = attempt(lambda: h.pwrite(data[:${40 * MiB}], ${offset + 48 * MiB}, nbd.CMD_FLAG_FUA))
got = []
out["read"] = attempt(lambda: got.append(h.pread(${48 * MiB}, ${offset})))
out["same"] = bool(got) and got[0] == data
out["sha"] = hashlib.sha256(data).hexdigest()
`,
    120000,
  );
  t.match(w.write, { ok: true }, '48 MiB WRITE succeeds');
  t.match(w.fua, { ok: true }, '40 MiB FUA WRITE succeeds');
  t.match(w.read, { ok: true }, '48 MiB READ succeeds');
  t.ok(w.same, 'and returns what was written');
  for (const [name, disk] of [
    ['alpha', p.alphaDisk],
    ['beta', p.betaDisk],
  ] as const) {
    t.equal(sha(await readRange(disk, offset, 48 * MiB)), w.sha, `${name}'s disk has the write`);
  }
  const fuaPart = sha(await readRange(p.alphaDisk, offset, 40 * MiB));
  t.equal(
    sha(await readRange(p.betaDisk, offset + 48 * MiB, 40 * MiB)),
    fuaPart,
    "beta's disk has the FUA write",
  );
  const s = await status(p.alpha);
  t.equal(s.peers[0]!.connection, 'Connected', 'the peer stayed connected', { status: s });
  t.equal(s.device.outOfSync, 0, 'nothing out of sync');

  // beta gives up its disk and becomes the Primary: its reads now go to alpha
  t.equal((await p.alpha.adm(['secondary', 'r0'])).code, 0, 'alpha steps down');
  const det = await p.beta.adm(['detach', 'r0']);
  t.equal(det.code, 0, 'beta detaches its disk', { output: showRun(det) });
  // A detach renews the peer session: promotion needs it decided again, with alpha UpToDate.
  await waitFor(
    p.beta,
    (x) =>
      x.device.diskState === 'Diskless' &&
      x.peers[0]!.connection === 'Connected' &&
      x.peers[0]!.peerDisk === 'UpToDate',
    'beta diskless, connected to an UpToDate alpha',
  );
  const pri = await p.beta.adm(['primary', 'r0']);
  t.equal(pri.code, 0, 'diskless beta is promoted', { output: showRun(pri) });
  const r = await libnbd<{ read: Outcome; sha: string }>(
    exportUri(p.beta),
    `
import hashlib
h = handle(uri, block_sizes=False)
got = []
out["read"] = attempt(lambda: got.append(h.pread(${48 * MiB}, ${offset})))
out["sha"] = hashlib.sha256(got[0]).hexdigest() if got else ""
`,
    120000,
  );
  t.match(r.read, { ok: true }, '48 MiB READ through the diskless Primary succeeds');
  t.equal(r.sha, w.sha, "and returns alpha's data");
});
