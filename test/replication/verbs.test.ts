// The replication verbs end to end (drbd.md §1.2, §3.5, §6.8): connect / disconnect,
// wait-connect / wait-sync, pause-sync / resume-sync with progress in status, skipping the
// initial sync of two blank disks, protocols A and B, and a SyncTarget promoted to Primary
// that reads through its peer.
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

// Room for every write below (the last ends at 12M + 64k); the initial syncs stay short.
const SIZE = 16 << 20;

t.test('connect, disconnect, wait-connect, wait-sync, pause-sync, resume-sync', async (t) => {
  const dir = tmpDir(t);
  // A slow fixed-rate resync (1 MiB/s over 16 MiB) so that it can be watched, paused and
  // interrupted even on a loaded machine, where every urbdadm call takes a while (a dozen
  // calls run before the disconnect; the paused and disconnected spells copy nothing).
  const p = await startPair(t, dir, {
    sizeBytes: 16 << 20,
    disk: 'c-plan-ahead 0; resync-rate 1M;',
  });
  const wc = await p.alpha.adm(['wait-connect', '--timeout', '20', 'r0']);
  t.equal(wc.code, 0, 'wait-connect returns once connected', { output: showRun(wc) });
  const ws0 = await p.alpha.adm(['wait-sync', '--timeout', '1', 'r0']);
  t.equal(ws0.code, 5, 'wait-sync times out on two Inconsistent disks (exit 5)');
  t.match(ws0.stderr, /not in sync after 1 s/);

  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
  const syncing = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.replication === 'SyncSource',
    'syncing',
  );
  t.equal(syncing.peers[0]!.peerDisk, 'Inconsistent');
  const txt = await p.alpha.adm(['status', 'r0']);
  t.match(
    txt.stdout,
    /replication:SyncSource peer-disk:Inconsistent done:\d+\.\d\d rate:/,
    'status shows progress',
  );
  const bt = await p.beta.adm(['status', 'r0']);
  t.match(bt.stdout, /disk:Inconsistent/);
  t.match(bt.stdout, /replication:SyncTarget peer-disk:UpToDate done:/);

  t.equal((await p.beta.adm(['pause-sync', 'r0'])).code, 0, 'pause-sync');
  await waitFor(p.alpha, (s) => s.peers[0]!.replication === 'PausedSyncS', 'PausedSyncS');
  const b1 = await waitFor(p.beta, (s) => s.peers[0]!.replication === 'PausedSyncT', 'PausedSyncT');
  await new Promise((r) => setTimeout(r, 500));
  const b2 = await status(p.beta);
  t.equal(b2.device.outOfSync, b1.device.outOfSync, 'nothing is copied while paused');
  t.equal((await p.beta.adm(['resume-sync', 'r0'])).code, 0, 'resume-sync');
  await waitFor(p.beta, (s) => s.peers[0]!.replication === 'SyncTarget', 'resumed');

  const dc = await p.alpha.adm(['disconnect', 'r0']);
  t.equal(dc.code, 0, 'disconnect during the resync');
  const a = await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'StandAlone', 'StandAlone');
  t.equal(a.peers[0]!.lastError, undefined, 'an asked-for disconnect is no error');
  await waitFor(p.beta, (s) => s.peers[0]!.connection === 'Connecting', 'beta waits for alpha');
  const again = await p.alpha.adm(['disconnect', 'r0']);
  t.equal(again.code, 0, 'disconnect of a StandAlone resource is a no-op');
  const c = await p.alpha.adm(['connect', 'r0']);
  t.equal(c.code, 0, 'connect');
  const c2 = await p.alpha.adm(['connect', 'r0']);
  t.equal(c2.code, 10, 'connect twice is refused');
  t.match(c2.stderr, /already (Connecting|Connected)/);
  // The resync continues where it stopped (bitmap-based, rule bitmap-peer on beta).
  const rules = (n: typeof p.beta) =>
    n.logs.map((l) => String(l.json?.msg)).filter((m) => m.startsWith('handshake:'));
  await waitFor(p.beta, (s) => s.peers[0]!.replication === 'SyncTarget', 'target again');
  t.equal(rules(p.beta).at(-1), 'handshake: target by rule bitmap-peer');
  const started = Date.now();
  const ws = await p.alpha.adm(['wait-sync', '--timeout', '120', 'r0']);
  t.equal(ws.code, 0, 'wait-sync returns once in sync', { output: showRun(ws) });
  t.ok(Date.now() - started > 1000, 'the fixed resync-rate was kept (not a timed goal: a floor)');
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, 16 << 20);
  t.equal(d.count, 0, 'identical', { first: d.first });
});

t.test('new-current-uuid --clear-bitmap skips the initial sync of two blank disks', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await p.alpha.adm(['wait-connect', '--timeout', '20', 'r0']);
  const r = await p.alpha.adm(['new-current-uuid', '--clear-bitmap', 'r0']);
  t.equal(r.code, 0, 'new-current-uuid --clear-bitmap', { output: showRun(r) });
  await waitInSync(p, 20000);
  const ws = await p.beta.adm(['wait-sync', '--timeout', '10', 'r0']);
  t.equal(ws.code, 0, 'both UpToDate without a resync');
  t.notOk(
    [...p.alpha.logs, ...p.beta.logs].some((l) => /resync started/.test(String(l.json?.msg))),
    'no resync ran',
  );
  const ga = await p.alpha.adm(['get-gi', 'r0']);
  const gb = await p.beta.adm(['get-gi', 'r0']);
  t.equal(ga.stdout.split(':')[0], gb.stdout.split(':')[0], 'same current UUID on both');
  t.equal((await p.alpha.adm(['primary', 'r0'])).code, 0, 'primary without --force');
});

for (const protocol of ['A', 'B'] as const) {
  t.test(`protocol ${protocol}: writes replicate, FLUSH waits for the peer`, async (t) => {
    const dir = tmpDir(t);
    const p = await startPair(t, dir, { sizeBytes: SIZE, protocol });
    await promoteAndSync(p);
    const w = await qemuIo(exportUri(p.alpha), [
      'write -P 0x61 0 8M',
      'write -P 0x62 -f 9M 1M',
      'write -P 0x63 12M 64k',
      'flush',
    ]);
    t.equal(w.code, 0, 'writes', { output: showRun(w) });
    // A flush returns after the peer's barrier ack: everything is on beta now.
    const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
    t.equal(d.count, 0, 'identical after the flush', { first: d.first });
  });
}

t.test('a SyncTarget promoted to Primary reads through its peer', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, {
    sizeBytes: 16 << 20,
    disk: 'c-plan-ahead 0; resync-rate 4M;',
  });
  await p.alpha.adm(['wait-connect', '--timeout', '20', 'r0']);
  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0);
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x71 8M 4M', 'flush']);
  t.equal(w.code, 0);
  await waitFor(p.beta, (s) => s.peers[0]!.replication === 'SyncTarget', 'target');
  t.equal((await p.beta.adm(['pause-sync', 'r0'])).code, 0);
  t.equal((await p.alpha.adm(['secondary', 'r0'])).code, 0, 'alpha demoted');
  const pri = await p.beta.adm(['primary', 'r0']);
  t.equal(pri.code, 0, 'an Inconsistent SyncTarget may be Primary with an UpToDate peer', {
    output: showRun(pri),
  });
  const r = await qemuIo(exportUri(p.beta), ['read -P 0x71 8M 4M', 'write -P 0x72 0 1M']);
  t.equal(r.code, 0, 'reads come from alpha; writes are taken', { output: showRun(r) });
  const b = await status(p.beta);
  t.equal(b.device.diskState, 'Inconsistent', 'beta is still Inconsistent');
  t.equal((await p.beta.adm(['resume-sync', 'r0'])).code, 0);
  await waitInSync(p, 60000);
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, 16 << 20);
  t.equal(d.count, 0, 'identical', { first: d.first });
});

t.test('detach and attach on a connected secondary', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 16 << 20 });
  await promoteAndSync(p);
  t.equal((await p.beta.adm(['detach', 'r0'])).code, 0, 'detach on beta');
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.connection === 'Connected' && s.peers[0]!.peerDisk === 'Diskless',
    'beta connected without its disk',
  );
  t.equal(a.peers[0]!.replication, 'Established');
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x3c 1M 1M']);
  t.equal(w.code, 0, 'alpha writes alone', { output: showRun(w) });
  t.equal((await status(p.alpha)).device.outOfSync, 1 << 20, 'and tracks what beta misses');
  t.equal((await p.beta.adm(['attach', 'r0'])).code, 0, 'attach on beta');
  await waitInSync(p);
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, 16 << 20);
  t.equal(d.count, 0, 'identical after the resync', { first: d.first });
});

t.test('outdate on a connected Secondary: the Primary sees it, primary is refused', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 16 << 20 });
  await promoteAndSync(p);
  t.equal((await p.beta.adm(['outdate', 'r0'])).code, 0, 'outdate on the connected beta');
  const a = await waitFor(
    p.alpha,
    (s) => s.peers[0]!.peerDisk === 'Outdated',
    'alpha sees beta Outdated',
  );
  t.equal(a.peers[0]!.connection, 'Connected', 'still connected');
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x3d 0 1M']);
  t.equal(w.code, 0, 'alpha writes on, replicating to beta', { output: showRun(w) });
  t.equal((await p.alpha.adm(['secondary', 'r0'])).code, 0);
  t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0);
  const r = await p.beta.adm(['primary', 'r0']);
  t.equal(r.code, 11, 'alone, an Outdated node refuses primary without --force');
  t.match(r.stderr, /Outdated/);
  // The next handshake finds nothing to sync: beta is UpToDate again.
  t.equal((await p.beta.adm(['connect', 'r0'])).code, 0);
  await waitInSync(p);
  t.equal((await status(p.beta)).device.diskState, 'UpToDate');
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, 16 << 20);
  t.equal(d.count, 0, 'identical', { first: d.first });
});
