// Split brain (drbd.md §7): both nodes write while apart, the handshake finds it (rule
// bitmap-both) and refuses with a reason on both sides; the admin's manual recovery
// (victim: secondary + connect --discard-my-data; survivor: connect) resyncs the victim from
// the survivor, and the victim's split-brain writes are gone.
import t from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';

const SIZE = 32 << 20;

t.test('split brain is detected, then resolved by hand with --discard-my-data', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await promoteAndSync(p);
  // The link goes; each side carries on alone as Primary and writes.
  t.equal((await p.alpha.adm(['disconnect', 'r0'])).code, 0);
  t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0);
  t.equal((await p.beta.adm(['primary', 'r0'])).code, 0, 'beta promoted while apart');
  t.equal((await qemuIo(exportUri(p.alpha), ['write -P 0xaa 0 1M'])).code, 0);
  const wb = await qemuIo(exportUri(p.beta), ['write -P 0xbb 4M 1M']);
  t.equal(wb.code, 0, 'beta writes too', { output: showRun(wb) });
  t.equal((await p.beta.adm(['secondary', 'r0'])).code, 0);
  await p.beta.adm(['connect', 'r0']);
  await p.alpha.adm(['connect', 'r0']);
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection === 'StandAlone' && s.peers[0]!.lastError !== undefined,
    'split brain refused',
    20000,
  );
  t.match(a.peers[0]!.lastError, /Split-Brain/i, 'alpha names the split brain');
  const b = await waitFor(p.beta, (s) => s.peers[0]!.connection === 'StandAlone', 'refused', 20000);
  t.match(b.peers[0]!.lastError, /Split-Brain/i, 'beta names the split brain');
  // Whichever node decides first refuses the other, which may then never decide itself.
  t.ok(
    [...p.alpha.logs, ...p.beta.logs].some((l) => /by rule bitmap-both/.test(String(l.json?.msg))),
    'found by rule bitmap-both',
  );
  // Manual recovery: beta is the victim.
  const cb = await p.beta.adm(['connect', '--discard-my-data', 'r0']);
  t.equal(cb.code, 0, 'connect --discard-my-data on the victim', { output: showRun(cb) });
  t.equal((await p.alpha.adm(['connect', 'r0'])).code, 0, 'connect on the survivor');
  await waitInSync(p);
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, "beta now holds alpha's data", { first: d.first });
  const r = await qemuIo(exportUri(p.alpha), ['read -P 0xaa 0 1M', 'read -P 0 4M 1M']);
  t.equal(r.code, 0, "alpha's write kept, beta's split-brain write gone", { output: showRun(r) });
  const bs = await status(p.beta);
  t.equal(bs.device.outOfSync, 0);
});

t.test('connect --discard-my-data is refused on a Primary', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 8 << 20 });
  await p.alpha.adm(['wait-connect', '--timeout', '20', 'r0']);
  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
  t.equal((await p.alpha.adm(['disconnect', 'r0'])).code, 0);
  const r = await p.alpha.adm(['connect', '--discard-my-data', 'r0']);
  t.equal(r.code, 11, 'state change refused');
  t.match(r.stderr, /a Primary cannot discard its data/);
});
