// Three real daemons (alpha and beta with disks, gamma the diskless tiebreaker), one TCP
// proxy per link, `quorum majority`: the cases of issue 9, each ending with the two disks
// compared block for block (docs/quorum.md).
import { spawn } from 'node:child_process';
import t, { type Test } from 'tap';

import { AckLedger, seededRandom, startWriter } from '../helpers/acked-writer.js';
import { exportUri, failsWith, ok } from '../helpers/daemon.js';
import { runFio } from '../helpers/fio.js';
import { diffBlocks, qemuIo, status } from '../helpers/pair.js';
import { tmpDir } from '../helpers/server.js';
import {
  peerOf,
  promoteAndSyncTrio,
  startTrio,
  type Trio,
  waitConnected,
  waitStatus,
} from '../helpers/trio.js';
import type { DaemonHandle } from '../helpers/daemon.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;

async function sameDisks(t: Test, trio: Trio): Promise<void> {
  const diff = await diffBlocks(trio.disks.alpha, trio.disks.beta, SIZE);
  t.equal(diff.count, 0, 'alpha and beta hold the same bytes', diff);
}

/** qemu-io in the background: its outcome once the request is answered (or the test ends). */
function writeInBackground(
  t: Test,
  uri: string,
  cmd: string,
): Promise<{ code: number | null; out: string }> {
  const p = spawn('qemu-io', ['-f', 'raw', '-c', cmd, uri], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(() => {
    if (p.exitCode === null) p.kill('SIGKILL');
  });
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out })));
}

const settled = <T>(p: Promise<T>): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);

const handshakeLines = (n: DaemonHandle): string[] =>
  n.logs
    .filter(
      (l) => typeof l.json?.['msg'] === 'string' && String(l.json['msg']).startsWith('handshake:'),
    )
    .map((l) => `${String(l.json!['msg'])} full=${String(l.json!['full'])}`);

t.test('alpha-beta cut while both see gamma: alpha keeps serving, beta is Outdated', async (t) => {
  t.setTimeout(240_000);
  const trio = await startTrio(t, tmpDir(t), { sizeBytes: SIZE, options: 'quorum majority;' });
  await promoteAndSyncTrio(trio);
  const uri = exportUri(trio.alpha);
  const fio = runFio(t, uri, { seconds: 8, rw: 'randwrite', bs: '4k', iodepth: 8, size: SIZE });
  await new Promise((r) => setTimeout(r, 2000));
  trio.blackhole('alpha', 'beta');
  const b = await waitStatus(
    trio.beta,
    (s) => s.device.diskState === 'Outdated',
    60_000,
    'Outdated',
  );
  t.equal(b.quorum.quorum, false, 'beta has no quorum');
  t.match(b.mayPromote, { may: false, reason: 'disk Outdated' }, 'beta says why it may not');
  const f = await fio;
  t.equal(f.code, 0, 'fio on alpha ran to its end without an error', { output: f.output });
  t.equal(f.jobs[0]?.error, 0);
  const a = await status(trio.alpha);
  t.equal(a.quorum.quorum, true, 'alpha kept quorum');
  t.equal(a.suspended, false, 'alpha is not suspended');
  t.equal(peerOf(a, 'beta').knownOutdated, true, 'alpha knows beta is Outdated');
  const w = await qemuIo(uri, ['write -P 0x61 12M 64k']);
  t.equal(w.code, 0, 'alpha still writes after the cut', { out: w.stdout + w.stderr });

  failsWith(t, await trio.beta.adm(['primary', 'r0']), 11, /Outdated|quorum/, 'primary on beta');
  failsWith(
    t,
    await trio.beta.adm(['primary', '--force', 'r0']),
    11,
    /no quorum/,
    'primary --force on beta: --force never beats quorum',
  );

  const before = handshakeLines(trio.beta).length;
  trio.heal('alpha', 'beta');
  await waitStatus(trio.beta, (s) => s.device.diskState === 'UpToDate', 60_000, 'UpToDate');
  await waitStatus(trio.alpha, (s) => peerOf(s, 'beta').replication === 'Established');
  const lines = handshakeLines(trio.beta).slice(before);
  t.ok(
    lines.some((l) => /target by rule bitmap-peer full=false/.test(l)),
    'beta resynced by bitmap',
    { lines },
  );
  await sameDisks(t, trio);
});

t.test('alpha cut from both: it freezes, beta takes over, alpha does not win', async (t) => {
  t.setTimeout(300_000);
  const trio = await startTrio(t, tmpDir(t), {
    sizeBytes: SIZE,
    options: 'quorum majority; on-no-quorum suspend-io;',
  });
  await promoteAndSyncTrio(trio);
  const blocks = (4 * MiB) / 4096;
  const ledger = new AckLedger(blocks);
  const writer = await startWriter({
    uri: exportUri(trio.alpha),
    ledger,
    rand: seededRandom(9),
    depth: 8,
    fuaShare: 0.1,
    flushShare: 0.05,
    label: 'alpha',
  });
  await new Promise((r) => setTimeout(r, 1500));
  trio.isolate('alpha');
  const a = await waitStatus(trio.alpha, (s) => s.suspended, 60_000, 'suspended');
  t.equal(a.quorum.quorum, false, 'alpha lost quorum');
  t.match(a.suspendedReason, /no quorum/, 'status says why I/O is held');
  const ackedAtFreeze = writer.acked;
  await new Promise((r) => setTimeout(r, 2000));
  t.equal(writer.acked, ackedAtFreeze, 'nothing is acknowledged on alpha while it is frozen');

  const b = await waitStatus(trio.beta, (s) => s.mayPromote.may === true, 60_000, 'promotable');
  t.equal(b.quorum.quorum, true, 'beta has quorum with gamma, which no longer sees alpha');
  ok(t, await trio.beta.adm(['primary', 'r0']), 'beta is promoted');
  const wb = await qemuIo(exportUri(trio.beta), ['write -P 0x5b 8M 1M']);
  t.equal(wb.code, 0, 'beta writes', { out: wb.stdout + wb.stderr });

  trio.healAll();
  const standAlone = await waitStatus(
    trio.alpha,
    (s) => peerOf(s, 'beta').connection === 'StandAlone',
    60_000,
    'StandAlone to beta',
  );
  // Both nodes decide the same from the same UUIDs; alpha records whichever refusal comes
  // first, its own or beta's (which names alpha as "the peer").
  t.match(
    peerOf(standAlone, 'beta').lastError,
    /I shall become SyncTarget, but I am Primary|The peer would become SyncTarget, but it is Primary/,
    'alpha refuses to overwrite itself while Primary, and says why',
  );
  await waitConnected(trio.alpha, 'gamma', 60_000);
  const still = await status(trio.alpha);
  t.equal(still.quorum.quorum, false, 'the tiebreaker alone does not give alpha quorum back');
  t.equal(still.suspended, true, 'alpha is still frozen');

  ok(t, await trio.alpha.adm(['secondary', '--force', 'r0']), 'secondary --force on alpha');
  const done = await writer.stop();
  t.ok(done.failed > 0 || done.acked > 0, 'the writer ended', done);
  const before = handshakeLines(trio.alpha).length;
  ok(t, await trio.alpha.adm(['connect', 'r0']), 'alpha connects again (the link to beta)');
  if ((await status(trio.beta)).peers.find((p) => p.name === 'alpha')?.connection === 'StandAlone')
    ok(
      t,
      await trio.beta.adm(['connect', '--peer', 'alpha', 'r0']),
      'beta connects to alpha again',
    );
  await waitStatus(
    trio.alpha,
    (s) => s.device.diskState === 'UpToDate' && peerOf(s, 'beta').replication === 'Established',
    90_000,
    'synced from beta',
  );
  const lines = handshakeLines(trio.alpha).slice(before);
  t.ok(
    lines.some((l) => /target/.test(l)),
    'alpha became the SyncTarget of beta',
    { lines },
  );
  await sameDisks(t, trio);
  t.same(await ledger.check(trio.disks.beta), [], 'every write alpha acknowledged is on beta');
  t.same(await ledger.check(trio.disks.alpha), [], 'and on alpha');
  const rb = await qemuIo(exportUri(trio.beta), ['read -P 0x5b 8M 1M']);
  t.equal(rb.code, 0, "beta's write is there");
  t.notMatch(rb.stdout, /Pattern verification failed/, "beta's write survived alpha's return");
});

t.test('on-no-quorum io-error: an isolated Primary fails writes', async (t) => {
  t.setTimeout(180_000);
  const trio = await startTrio(t, tmpDir(t), {
    sizeBytes: SIZE,
    options: 'quorum majority; on-no-quorum io-error;',
  });
  await promoteAndSyncTrio(trio);
  trio.isolate('alpha');
  await waitStatus(trio.alpha, (s) => !s.quorum.quorum, 60_000, 'no quorum');
  const w = await qemuIo(exportUri(trio.alpha), ['write -P 0x11 0 64k']);
  t.match(w.stdout + w.stderr, /write failed: Input\/output error/, 'the write fails with EIO', {
    out: w.stdout + w.stderr,
  });
  t.equal((await status(trio.alpha)).suspended, false, 'nothing is held');
  trio.healAll();
  await waitStatus(trio.alpha, (s) => s.quorum.quorum, 60_000, 'quorum back');
  const w2 = await qemuIo(exportUri(trio.alpha), ['write -P 0x12 0 64k']);
  t.equal(w2.code, 0, 'writes work again once quorum is back', { out: w2.stdout + w2.stderr });
  await waitStatus(trio.beta, (s) => peerOf(s, 'alpha').replication === 'Established');
  await sameDisks(t, trio);
});

t.test('tiebreaker down; last man standing after a graceful down, not after a crash', async (t) => {
  t.setTimeout(300_000);
  const trio = await startTrio(t, tmpDir(t), { sizeBytes: SIZE, options: 'quorum majority;' });
  await promoteAndSyncTrio(trio);
  const uri = exportUri(trio.alpha);
  await trio.gamma.kill9();
  await waitStatus(trio.alpha, (s) => peerOf(s, 'gamma').connection !== 'Connected');
  let a = await status(trio.alpha);
  t.equal(a.quorum.quorum, true, 'alpha keeps quorum with beta while gamma is down');
  t.equal((await qemuIo(uri, ['write -P 0x21 0 64k'])).code, 0, 'alpha writes');

  ok(t, await trio.beta.adm(['down', 'r0']), 'beta goes down gracefully');
  a = await waitStatus(trio.alpha, (s) => peerOf(s, 'beta').knownOutdated, 30_000, 'beta left');
  t.equal(a.quorum.quorum, true, 'last man standing: alpha keeps quorum');
  t.equal((await qemuIo(uri, ['write -P 0x22 64k 64k'])).code, 0, 'and writes');

  ok(t, await trio.beta.adm(['up', 'r0']), 'beta comes back');
  await waitStatus(
    trio.beta,
    (s) => s.device.diskState === 'UpToDate' && peerOf(s, 'alpha').replication === 'Established',
    60_000,
    'beta synced',
  );
  await trio.beta.kill9();
  a = await waitStatus(trio.alpha, (s) => !s.quorum.quorum, 60_000, 'quorum lost');
  t.equal(peerOf(a, 'beta').knownOutdated, false, 'a crashed node is not known Outdated');
  const held = writeInBackground(t, uri, 'write -P 0x23 128k 64k');
  t.equal(await settled(held), false, 'a write on alpha is held without quorum');
  t.equal((await status(trio.alpha)).suspended, true, 'alpha is suspended');

  const beta = await trio.restart('beta');
  ok(t, await beta.adm(['up', 'r0']), 'beta restarts');
  const r = await held;
  t.equal(r.code, 0, 'the held write completes once beta is back', { out: r.out });
  t.notMatch(r.out, /error/i);
  await waitStatus(
    beta,
    (s) => s.device.diskState === 'UpToDate' && peerOf(s, 'alpha').replication === 'Established',
    60_000,
    'beta synced again',
  );
  await sameDisks(t, trio);
  const rb = await qemuIo(uri, ['read -P 0x23 128k 64k']);
  t.notMatch(rb.stdout, /Pattern verification failed/, 'the held write landed');
});
