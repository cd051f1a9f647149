// Checksum-based resync end to end (drbd.md §6.5): after a Primary crash the activity-log
// extents are resynced, but with csums-alg the SyncTarget sends digests and the SyncSource
// sends data only where they differ. With csums-after-crash-only the initial full sync
// sends everything.
import { open } from 'node:fs/promises';
import t from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitInSync,
} from '../helpers/pair.js';

t.setTimeout(240000);

const SIZE = 64 << 20;

t.test('a resync after a crash of a nearly identical disk moves almost no data', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    net: 'csums-alg sha256; csums-after-crash-only yes;',
  });
  await promoteAndSync(p);
  const first = (await status(p.beta)).peers[0]!.resyncTraffic;
  t.equal(first.inSyncReceivedBytes, 0, 'the initial sync (no crash) used no checksums');
  t.equal(first.dataReceivedBytes, SIZE, 'and copied everything');

  const w = await qemuIo(exportUri(p.alpha), [
    'write -P 0x11 0 1M',
    'write -P 0x22 8M 1M',
    'write -P 0x33 20M 1M',
  ]);
  t.equal(w.code, 0, 'writes on alpha', { output: showRun(w) });
  await p.alpha.kill9();
  t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0, 'beta disconnects');
  // One block of an activity-log extent differs on beta: the one the crash resync must send.
  const fd = await open(p.betaDisk, 'r+');
  await fd.write(Buffer.from([0xee]), 0, 1, 8 * 1048576 + 4096 * 3);
  await fd.close();
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 1, 'one block differs');

  await p.restart('alpha');
  t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up after the crash');
  t.equal((await p.beta.adm(['connect', 'r0'])).code, 0, 'beta connects');
  await waitInSync(p);
  const started = p.alpha.logs.find((l) => l.json?.msg === 'resync started as SyncSource');
  const marked = Number(started?.json?.bytes);
  t.ok(marked >= 3 << 20, `the activity-log extents were marked (${marked} bytes)`);
  t.ok(
    p.beta.logs.some((l) => /^checksum-based resync/.test(String(l.json?.msg))),
    'beta (SyncTarget) used checksums after the crash',
  );

  const a = (await status(p.alpha)).peers[0]!.resyncTraffic;
  const b = (await status(p.beta)).peers[0]!.resyncTraffic;
  t.equal(a.dataSentBytes + a.inSyncSentBytes, marked, 'every marked byte was answered');
  t.ok(a.dataSentBytes > 0, `the differing block was sent (${a.dataSentBytes} bytes)`);
  t.ok(
    a.dataSentBytes * 10 <= marked,
    `only a small fraction crossed the link: ${a.dataSentBytes} of ${marked} bytes`,
  );
  t.equal(b.inSyncReceivedBytes - first.inSyncReceivedBytes, a.inSyncSentBytes, 'beta agrees');
  t.equal(b.dataReceivedBytes - first.dataReceivedBytes, a.dataSentBytes, 'beta agrees on data');
  const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the resync', { first: d.first });
});
