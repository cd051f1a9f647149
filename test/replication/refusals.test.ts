// Handshakes that must not connect (DESIGN.md "Peer protocol"): a wrong shared secret,
// unrelated data, devices of different sizes. Each leaves the resource StandAlone with a
// one-line reason in status, and no byte is copied.
import t from 'tap';
import { tmpDir } from '../helpers/server.js';
import { diffBlocks, startPair, status, waitFor } from '../helpers/pair.js';

const SIZE = 16 << 20;

t.test('wrong shared secret', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    net: 'cram-hmac-alg sha256; shared-secret "right";',
    betaNet: 'cram-hmac-alg sha256; shared-secret "wrong";',
  });
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection === 'StandAlone',
    'StandAlone',
    20000,
  );
  t.match(a.peers[0]!.lastError, /secret/, 'alpha says why');
  const b = await status(p.beta);
  t.not(b.peers[0]!.connection, 'Connected');
  t.match(b.peers[0]!.lastError ?? '', /secret|auth/, 'beta says why');
  const txt = await p.alpha.adm(['status', 'r0']);
  t.match(txt.stdout, /connection:StandAlone/);
  t.match(txt.stdout, /last-error:/);
});

t.test('unrelated data', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  // Each node starts its own generation alone: nothing in common.
  for (const n of [p.alpha, p.beta]) t.equal((await n.adm(['disconnect', 'r0'])).code, 0);
  for (const n of [p.alpha, p.beta]) {
    t.equal((await n.adm(['primary', '--force', 'r0'])).code, 0);
    t.equal((await n.adm(['secondary', 'r0'])).code, 0);
    t.equal((await n.adm(['new-current-uuid', 'r0'])).code, 0);
  }
  await p.beta.adm(['connect', 'r0']);
  await p.alpha.adm(['connect', 'r0']);
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection === 'StandAlone' && s.peers[0]!.lastError !== undefined,
    'refused',
    20000,
  );
  t.match(a.peers[0]!.lastError, /[Uu]nrelated/, 'unrelated data named');
  const b = await waitFor(p.beta, (s) => s.peers[0]!.connection === 'StandAlone', 'refused', 20000);
  t.match(b.peers[0]!.lastError, /[Uu]nrelated/);
  t.equal(b.device.diskState, 'UpToDate', 'nothing was overwritten');
});

t.test('different sizes: fresh metadata takes the smaller size', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE, betaSizeBytes: SIZE / 2 });
  const a = await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected');
  t.equal(a.device.size, SIZE / 2, "alpha's fresh device took beta's smaller size");
  t.ok(
    p.alpha.logs.some((l) => /device shrunk to beta's smaller size/.test(String(l.json?.msg))),
    'and said so',
  );
  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
  t.equal((await p.alpha.adm(['wait-sync', '--timeout', '60', 'r0'])).code, 0, 'in sync');
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE / 2);
  t.equal(d.count, 0);
});

t.test('different sizes: a device holding data is never shrunk', async (t) => {
  const dir = tmpDir(t);
  // alpha gets data of its own before it ever meets beta, which is fresh and smaller.
  const p = await startPair(t, dir, { sizeBytes: SIZE, betaSizeBytes: SIZE / 2, up: ['alpha'] });
  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
  t.equal((await p.beta.adm(['up', 'r0'])).code, 0);
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection === 'StandAlone' && s.peers[0]!.lastError !== undefined,
    'refused',
    20000,
  );
  // Whichever side decides first refuses; the other reports the peer's refusal.
  t.match(
    a.peers[0]!.lastError,
    /sizes differ: (16777216 bytes on alpha, 8388608 on beta|8388608 bytes on beta, 16777216 on alpha); refusing to shrink the device on alpha, which holds data/,
  );
  t.equal(a.device.size, SIZE, "alpha's device keeps its size");
  const b = await waitFor(p.beta, (s) => s.peers[0]!.connection === 'StandAlone', 'refused', 20000);
  t.match(b.peers[0]!.lastError, /refusing to shrink the device on alpha/);
});
