// Links that break and nodes that die (drbd.md §3.6.4, §4.6, §5.3): a link cut during heavy
// writes, a primary killed by SIGKILL and restarted, and a failover where the old primary
// rejoins as SyncTarget. Each scenario ends with the backing disks compared block by block.
import t from 'tap';
import { run, showRun, sleep, spawnTracked, tmpDir } from '../helpers/server.js';
import { type DaemonHandle, exportUri } from '../helpers/daemon.js';
import {
  connected,
  diffBlocks,
  promoteAndSync,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';

const SIZE = 64 << 20;

function handshakes(n: DaemonHandle): string[] {
  return n.logs.map((l) => String(l.json?.msg)).filter((m) => m.startsWith('handshake:'));
}

function fio(
  t: import('../helpers/server.js').Teardown,
  uri: string,
  seconds: number,
  extra: string[] = [],
) {
  return spawnTracked(
    'fio',
    [
      '--name=load',
      '--thread',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randwrite',
      '--bsrange=4k-64k',
      '--iodepth=16',
      `--size=${SIZE}`,
      '--time_based',
      `--runtime=${seconds}`,
      '--randrepeat=0',
      ...extra,
    ],
    { t },
  );
}

t.test('link cut and black-holed during heavy writes', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE, proxy: true, net: 'ping-timeout 5;' });
  await promoteAndSync(p);
  const load = fio(t, exportUri(p.alpha), 6);
  await sleep(1000);
  p.proxy!.cut();
  await waitFor(p.alpha, (s) => s.peers[0]!.connection !== 'Connected', 'disconnected', 20000);
  await sleep(800);
  p.proxy!.heal();
  await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'reconnected', 30000);
  await sleep(500);
  p.proxy!.blackhole();
  await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection !== 'Connected',
    'dead peer detected',
    30000,
  );
  p.proxy!.heal();
  const code = await load.exited;
  t.equal(code, 0, 'fio finished without an I/O error');
  t.ok(
    p.alpha.logs.some((l) => /did not answer a ping/.test(String(l.json?.reason))),
    'the black hole was detected by ping-timeout',
  );
  await waitInSync(p);
  const rules = handshakes(p.alpha);
  t.ok(
    rules.filter((r) => r === 'handshake: source by rule bitmap-self').length >= 2,
    "each reconnect resynced from alpha's bitmap",
    { rules },
  );
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the link came back', { first: d.first });
  const a = await status(p.alpha);
  t.equal(a.device.outOfSync, 0, 'nothing left out of sync');
});

t.test('primary kill -9 and restart: the AL-covered blocks are resynced', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await promoteAndSync(p);
  const load = fio(t, exportUri(p.alpha), 20);
  await sleep(1500);
  await p.alpha.kill9();
  await load.stop(5000);
  await p.restart('alpha');
  const up = await p.alpha.adm(['up', 'r0']);
  t.equal(up.code, 0, 'alpha up after the crash', { output: showRun(up) });
  await waitFor(p.alpha, connected, 'connected', 30000);
  await waitInSync(p);
  t.ok(
    p.alpha.logs.some((l) => /applied the activity log/.test(String(l.json?.msg))),
    'the activity log was applied',
  );
  t.equal(
    handshakes(p.alpha).at(-1),
    'handshake: source by rule crashed-primary-self',
    'the crashed primary pushed its AL extents',
  );
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical', { first: d.first });
});

t.test(
  'failover: the old primary rejoins as SyncTarget and its unreplicated tail is overwritten',
  async (t) => {
    const dir = tmpDir(t);
    const p = await startPair(t, dir, { sizeBytes: SIZE });
    await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected');
    t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
    await waitInSync(p);
    const load = fio(t, exportUri(p.alpha), 20);
    await sleep(1500);
    await p.alpha.kill9();
    await load.stop(5000);
    await waitFor(p.beta, (s) => s.peers[0]!.connection !== 'Connected', 'peer lost', 30000);
    const pri = await p.beta.adm(['primary', 'r0']);
    t.equal(pri.code, 0, 'beta promoted', { output: showRun(pri) });
    const w = await run(
      'qemu-io',
      ['-f', 'raw', '-c', 'write -P 0x77 1M 3M', '-c', 'flush', exportUri(p.beta)],
      { timeoutMs: 60000 },
    );
    t.equal(w.code, 0, 'beta takes writes', { output: showRun(w) });
    await p.restart('alpha');
    t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up');
    await waitInSync(p);
    t.ok(
      p.alpha.logs.some((l) => /resync started as SyncTarget/.test(String(l.json?.msg))),
      'alpha was SyncTarget',
    );
    const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
    t.equal(d.count, 0, "disks identical: alpha took beta's data", { first: d.first });
    const a = await status(p.alpha);
    t.equal(a.role, 'Secondary');
  },
);
