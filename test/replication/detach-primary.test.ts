// `urbdadm detach` on a Primary under writes (drbd.md §1.2): the writes in flight finish on
// both disks before the disk goes, the connections switch to reading and writing through
// the peer without a single error, and nothing acknowledged is lost: the peer's disk holds
// every acknowledged change, the Diskless Primary serves them, and the detached disk comes
// back as a SyncTarget that ends identical to the peer's.
import t from 'tap';
import path from 'node:path';
import { run, showRun, sleep, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  promoteAndSync,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';
import { AckLedger, seededRandom, startWriter } from '../helpers/acked-writer.js';

t.setTimeout(120000);

const SIZE = 32 << 20;
const BLOCKS = 4096;

t.test('detach of a Primary under writes: no client error, nothing lost', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await promoteAndSync(p);
  const ledger = new AckLedger(BLOCKS);
  const rand = seededRandom(5);
  const writer = await startWriter({
    uri: exportUri(p.alpha),
    ledger,
    rand,
    depth: 16,
    fuaShare: 0.1,
    trimShare: 0.05,
    zeroShare: 0.05,
    flushShare: 0.05,
    label: 'alpha',
  });
  await sleep(500);
  const before = writer.acked;
  const det = await p.alpha.adm(['detach', 'r0']);
  t.equal(det.code, 0, 'detach on the Primary', { output: showRun(det) });
  const a = await waitFor(
    p.alpha,
    (s) => s.device.diskState === 'Diskless' && s.peers[0]!.replication === 'Established',
    'Diskless and connected',
    30000,
  );
  t.equal(a.role, 'Primary', 'still Primary');
  t.equal(a.peers[0]!.peerDisk, 'UpToDate', 'serving through an UpToDate peer');
  const atDetach = writer.acked;
  await sleep(700);
  const done = await writer.stop();
  t.equal(done.failed, 0, 'no request failed');
  t.ok(atDetach > before, `writes went on during the detach (${before} → ${atDetach})`);
  t.ok(done.acked > atDetach, `and after it, through the peer (${atDetach} → ${done.acked})`);

  const onBeta = await ledger.check(p.betaDisk);
  t.same(onBeta.slice(0, 10), [], "every acknowledged change is on the peer's disk");
  const copy = path.join(dir, 'through-alpha.img');
  const c = await run('nbdcopy', [exportUri(p.alpha), copy], { timeoutMs: 60000 });
  t.equal(c.code, 0, 'the Diskless Primary serves the whole device', { output: showRun(c) });
  const served = await ledger.check(copy);
  t.same(served.slice(0, 10), [], 'and reads back every acknowledged change');

  // The detached disk missed what went to beta alone: it comes back as a SyncTarget.
  const att = await p.alpha.adm(['attach', 'r0']);
  t.equal(att.code, 0, 'attach again', { output: showRun(att) });
  await waitInSync(p);
  t.equal((await status(p.alpha)).device.diskState, 'UpToDate', 'alpha UpToDate again');
  const onAlpha = await ledger.check(p.alphaDisk);
  t.same(onAlpha.slice(0, 10), [], "every acknowledged change is on alpha's disk again");
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 0, 'disks identical');
});

t.test('detach refused while the peer is not UpToDate loses nothing', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await promoteAndSync(p);
  t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0, 'beta disconnects');
  await waitFor(p.alpha, (s) => s.peers[0]!.connection !== 'Connected', 'alone');
  const det = await p.alpha.adm(['detach', 'r0']);
  t.equal(det.code, 11, 'detach refused');
  t.match(det.stderr, /no UpToDate peer/);
  const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', exportUri(p.alpha)]);
  t.equal(w.code, 0, 'the Primary still writes to its disk', { output: showRun(w) });
  t.equal((await status(p.alpha)).device.diskState, 'UpToDate');
});
