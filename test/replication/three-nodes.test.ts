// Three nodes of one resource (drbd.md §2.6): alpha and beta with disks, gamma the diskless
// tiebreaker, every node connected with every other, one TCP proxy per link. Nothing here
// is about quorum.
import t, { type Test } from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import { diffBlocks, qemuIo, status } from '../helpers/pair.js';
import { runFio } from '../helpers/fio.js';
import {
  linkUp,
  peerOf,
  promoteAndSyncTrio,
  startTrio,
  type Trio,
  waitConnected,
  waitDisconnected,
  waitHealthy,
  waitStatus,
} from '../helpers/trio.js';

const SIZE = 16 << 20;

async function assertConnected(t: Test, trio: Trio): Promise<void> {
  const a = await status(trio.alpha);
  t.same(
    a.peers.map((p) => p.name).sort(),
    ['beta', 'gamma'],
    'alpha lists two peers: beta and gamma',
  );
  const ab = peerOf(a, 'beta');
  t.equal(ab.connection, 'Connected', 'alpha-beta Connected');
  t.equal(ab.peerDisk, 'UpToDate', "beta's disk UpToDate after the initial sync");
  t.equal(a.device.diskState, 'UpToDate', "alpha's disk UpToDate");
  t.equal(a.role, 'Primary', 'alpha Primary');
  const ag = peerOf(a, 'gamma');
  t.equal(ag.connection, 'Connected', 'alpha-gamma Connected');
  t.equal(ag.peerDisk, 'Diskless', 'gamma is Diskless');

  const g = await status(trio.gamma);
  t.same(g.peers.map((p) => p.name).sort(), ['alpha', 'beta'], 'gamma lists alpha and beta');
  t.equal(g.device.diskState, 'Diskless', "gamma's own disk: Diskless");
  t.ok(linkUp(g, 'alpha') && linkUp(g, 'beta'), 'gamma connected to both');
  t.equal(peerOf(g, 'alpha').role, 'Primary', 'gamma sees alpha Primary');

  const b = await status(trio.beta);
  t.same(b.peers.map((p) => p.name).sort(), ['alpha', 'gamma'], 'beta lists alpha and gamma');
  t.ok(linkUp(b, 'alpha') && linkUp(b, 'gamma'), 'beta connected to both');
  t.equal(peerOf(b, 'gamma').peerDisk, 'Diskless', 'beta sees gamma Diskless');
}

t.test('three nodes: connect, replicate, survive one cut link', async (t) => {
  const dir = tmpDir(t);
  const trio = await startTrio(t, dir, { sizeBytes: SIZE });
  await promoteAndSyncTrio(trio, 40000);

  // (a) every node sees the other two.
  await assertConnected(t, trio);

  // (b) writes on alpha reach beta.
  const w = await qemuIo(exportUri(trio.alpha), [
    'write -P 0x3c 0 1M',
    'write -P 0xa5 5M 256k',
    'write -P 0x5a -f 12M 64k',
    'flush',
  ]);
  t.equal(w.code, 0, 'qemu-io writes through alpha', { output: showRun(w) });
  const fio = await runFio(t, exportUri(trio.alpha), {
    seconds: 2,
    rw: 'randwrite',
    bs: '4k',
    iodepth: 8,
    size: SIZE,
  });
  t.equal(fio.code, 0, 'fio ran against alpha', { output: fio.output });
  t.equal(fio.jobs[0]?.error, 0, 'fio job without error');
  t.ok((fio.jobs[0]?.write.io_bytes ?? 0) > 0, 'fio wrote something');
  // Protocol C: acknowledged means on beta's disk.
  let d = await diffBlocks(trio.disks.alpha, trio.disks.beta, SIZE);
  t.equal(d.count, 0, 'the two backing disks are identical', { first: d.first });

  // (c) cut alpha-gamma: alpha-beta stays up, gamma comes back after the heal.
  const before = trio.link('alpha', 'beta').stats.connections;
  trio.cut('alpha', 'gamma');
  await waitDisconnected(trio.alpha, 'gamma', 20000);
  await waitDisconnected(trio.gamma, 'alpha', 20000);
  const a = await status(trio.alpha);
  t.ok(linkUp(a, 'beta'), 'alpha-beta still Connected while alpha-gamma is cut');
  t.equal(peerOf(a, 'beta').peerDisk, 'UpToDate', 'beta still UpToDate');
  t.ok(linkUp(await status(trio.gamma), 'beta'), 'gamma-beta still Connected');
  const w2 = await qemuIo(exportUri(trio.alpha), ['write -P 0x77 2M 512k', 'flush']);
  t.equal(w2.code, 0, 'alpha still writes with one link cut', { output: showRun(w2) });
  trio.heal('alpha', 'gamma');
  await waitConnected(trio.alpha, 'gamma', 30000);
  await waitConnected(trio.gamma, 'alpha', 30000);
  await waitHealthy(trio, 30000);
  t.equal(
    trio.link('alpha', 'beta').stats.connections,
    before,
    'the alpha-beta link was never re-established',
  );
  const g = await waitStatus(
    trio.gamma,
    (s) => peerOf(s, 'alpha').role === 'Primary',
    10000,
    'seeing alpha Primary',
  );
  t.equal(peerOf(g, 'alpha').connection, 'Connected', 'gamma reconnected to alpha');
  d = await diffBlocks(trio.disks.alpha, trio.disks.beta, SIZE);
  t.equal(d.count, 0, 'the disks are still identical', { first: d.first });
});

t.test('three nodes through connection-mesh and connection sections', async (t) => {
  const dir = tmpDir(t);
  const trio = await startTrio(t, dir, { sizeBytes: SIZE, connectionSections: true });
  await promoteAndSyncTrio(trio, 40000);
  await assertConnected(t, trio);
  const w = await qemuIo(exportUri(trio.alpha), ['write -P 0x11 3M 1M', 'flush']);
  t.equal(w.code, 0, 'qemu-io writes through alpha', { output: showRun(w) });
  const d = await diffBlocks(trio.disks.alpha, trio.disks.beta, SIZE);
  t.equal(d.count, 0, 'the two backing disks are identical', { first: d.first });
});

t.test('withTiebreaker: false is a two-node pair', async (t) => {
  const dir = tmpDir(t);
  const trio = await startTrio(t, dir, { sizeBytes: SIZE, withTiebreaker: false });
  t.throws(() => trio.gamma, 'no gamma');
  t.same(trio.nodes, ['alpha', 'beta'], 'alpha and beta only');
  t.throws(() => trio.link('alpha', 'gamma'), 'no alpha-gamma link');
  const a = await waitConnected(trio.alpha, 'beta', 30000);
  t.same(
    a.peers.map((p) => p.name),
    ['beta'],
    'alpha has one peer',
  );
  trio.cut('alpha', 'beta');
  await waitDisconnected(trio.alpha, 'beta', 20000);
  trio.healAll();
  await waitConnected(trio.alpha, 'beta', 30000);
  t.pass('the one link is cut and healed through the proxy');
});
