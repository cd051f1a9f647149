// Issue 13's sequence, replayed deterministically: a Primary that is SyncTarget (its own disk
// Inconsistent) loses its SyncSource while writes are in flight. Every write it acknowledged
// must be on the SyncSource's disk too, since that disk is the one the next resync copies
// from; what the SyncSource never confirmed must fail (EIO), not be acknowledged.
import t, { type Test } from 'tap';
import { sleep, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  type Pair,
  promoteAndSync,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';
import { AckLedger, seededRandom, startWriter } from '../helpers/acked-writer.js';

const SIZE = 64 << 20;
const BLOCKS = 4096;

/**
 * Steps 1–3 of the issue: writes on alpha across a 1.3 s cut, so beta comes back as
 * SyncTarget (the pause set meanwhile holds the resync from its first block); then a
 * switchover while paused: beta is Primary on an Inconsistent disk, reading through alpha.
 * The resync runs at a fixed 10 MiB/s: the tens of MiB the cut leaves out of sync then take
 * seconds, so alpha is surely lost while it runs (at full speed it could end first).
 */
async function primarySyncTarget(t: Test, options = '') {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    proxy: true,
    net: 'max-epoch-size 100; ping-timeout 5;',
    disk: 'c-plan-ahead 0; resync-rate 10M;',
    options,
  });
  await promoteAndSync(p);
  const ledger = new AckLedger(BLOCKS);
  const rand = seededRandom(13);
  const onAlpha = await startWriter({
    uri: exportUri(p.alpha),
    ledger,
    rand,
    depth: 8,
    label: 'alpha',
  });
  await sleep(300);
  p.proxy!.cut();
  await waitFor(p.alpha, (s) => s.peers[0]!.connection !== 'Connected', 'disconnected', 20000);
  t.equal((await p.alpha.adm(['pause-sync', 'r0'])).code, 0, 'pause-sync while disconnected');
  await sleep(1300);
  p.proxy!.heal();
  await waitFor(p.alpha, (s) => s.peers[0]!.replication === 'PausedSyncS', 'PausedSyncS', 30000);
  const first = await onAlpha.stop();
  t.equal(first.failed, 0, 'no write failed on the UpToDate primary');
  t.ok(first.acked > 0, `alpha acknowledged ${first.acked} changes`);

  t.equal((await p.alpha.adm(['secondary', 'r0'])).code, 0, 'alpha secondary');
  const pri = await p.beta.adm(['primary', 'r0']);
  t.equal(pri.code, 0, `beta primary: ${pri.stderr}`);
  const b = await status(p.beta);
  t.equal(b.device.diskState, 'Inconsistent', 'beta Primary on an Inconsistent disk');
  t.equal(b.peers[0]!.replication, 'PausedSyncT', 'beta PausedSyncT');
  t.same(b.peers[0]!.resyncSuspended, ['peer'], 'beta shows the pause as the peer’s');
  t.same((await status(p.alpha)).peers[0]!.resyncSuspended, ['user'], 'alpha shows its own');
  const resume = await p.beta.adm(['resume-sync', 'r0']);
  t.equal(resume.code, 10, 'resume-sync on beta refuses: the pause is alpha’s');
  t.match(resume.stderr, /paused on alpha.*resume-sync on alpha/, resume.stderr);
  const writer = () =>
    startWriter({
      uri: exportUri(p.beta),
      ledger,
      rand,
      depth: 8,
      fuaShare: 0.1,
      trimShare: 0.05,
      zeroShare: 0.05,
      flushShare: 0.05,
      label: 'beta',
    });
  return { p, ledger, writer };
}

/** Every acknowledged change is on both disks, and the disks are identical. */
async function nothingLost(t: Test, p: Pair, ledger: AckLedger): Promise<void> {
  await waitInSync(p);
  for (const [node, disk] of [
    ['alpha', p.alphaDisk],
    ['beta', p.betaDisk],
  ] as const) {
    const lost = await ledger.check(disk);
    t.same(lost.slice(0, 10), [], `every acknowledged change is on ${node}'s disk`);
  }
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 0, 'disks identical');
}

for (const fault of ['kill -9', 'link cut'] as const) {
  t.test(`switchover during a paused resync, then the SyncSource is lost (${fault})`, async (t) => {
    const { p, ledger, writer } = await primarySyncTarget(t);
    // 4: writers on beta; the resync resumes and alpha is lost with writes in flight.
    const onBeta = await writer();
    await sleep(500);
    t.equal((await p.alpha.adm(['resume-sync', 'r0'])).code, 0, 'resume-sync on alpha');
    await sleep(fault === 'kill -9' ? 20 : 200);
    const running = (await status(p.alpha)).peers[0]!;
    t.equal(running.replication, 'SyncSource', 'the resync is still running when alpha is lost');
    if (fault === 'kill -9') await p.alpha.kill9();
    else p.proxy!.cut();
    await waitFor(p.beta, (s) => s.peers[0]!.connection !== 'Connected', 'disconnected', 20000);
    await sleep(300);
    const second = await onBeta.stop();
    t.ok(second.acked > 0, `beta acknowledged ${second.acked} changes, failed ${second.failed}`);
    const alone = await status(p.beta);
    t.match(
      alone.device.export.refusal ?? '',
      /no UpToDate data/,
      'without its SyncSource beta serves nothing',
    );
    // 5: alpha comes back; the resync from alpha must not take back anything acknowledged.
    if (fault === 'kill -9') {
      await p.restart('alpha');
      t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up again');
    } else {
      p.proxy!.heal();
    }
    await nothingLost(t, p, ledger);
  });
}

t.test(
  'on-no-data-accessible suspend-io: held writes complete once the SyncSource is back',
  async (t) => {
    const { p, ledger, writer } = await primarySyncTarget(t, 'on-no-data-accessible suspend-io;');
    const onBeta = await writer();
    await sleep(500);
    t.equal((await p.alpha.adm(['resume-sync', 'r0'])).code, 0, 'resume-sync on alpha');
    await sleep(20);
    await p.alpha.kill9();
    const held = await waitFor(p.beta, (s) => s.suspended, 'suspended', 20000);
    t.ok(held.suspended, 'beta suspends its I/O instead of failing it');
    const before = onBeta.acked;
    await sleep(1000);
    t.equal(onBeta.acked, before, 'nothing completes while suspended');
    // Beta's own pause keeps it SyncTarget after the reconnect, reading through alpha.
    t.equal((await p.beta.adm(['pause-sync', 'r0'])).code, 0, 'pause-sync on beta');
    await p.restart('alpha');
    t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up again');
    await waitFor(p.beta, (s) => !s.suspended, 'resumed', 30000);
    await sleep(500);
    t.ok(onBeta.acked > before, `held and new changes complete after the reconnect`);

    // resume-io ends a suspension by failing what it holds.
    await p.alpha.kill9();
    await waitFor(p.beta, (s) => s.suspended, 'suspended again', 20000);
    t.equal((await p.beta.adm(['resume-io', 'r0'])).code, 0, 'resume-io');
    const done = await onBeta.stop();
    t.ok(done.failed > 0, `resume-io failed the held requests (${done.failed})`);
    t.notOk((await status(p.beta)).suspended, 'no longer suspended');
    t.equal((await p.beta.adm(['resume-sync', 'r0'])).code, 0, 'resume-sync on beta');
    await p.restart('alpha');
    t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up again');
    await nothingLost(t, p, ledger);
  },
);
