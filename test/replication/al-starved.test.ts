// A pair whose writes touch far more extents than the activity log holds (al-extents 7 over
// 32 extents): every slot is soon referenced by changes that wait for their epoch's barrier
// ack, so the writes waiting for a slot make the primary close its epoch at once
// (ActivityLog onStarved → TransferLog.closeEpoch). The pair must neither stall nor lose or
// mix up a write: fio verifies every block it wrote, and both disks end the same.
import t from 'tap';
import { tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import { runFio } from '../helpers/fio.js';
import { diffBlocks, promoteAndSync, startPair, status, waitFor } from '../helpers/pair.js';

const SIZE = 128 << 20;
const WRITTEN = 16 << 20;

t.test('random writes over 32 extents with al-extents 7 on a protocol C pair', async (t) => {
  t.setTimeout(180_000);
  const p = await startPair(t, tmpDir(t), { sizeBytes: SIZE, disk: 'al-extents 7;' });
  await promoteAndSync(p);
  const before = await status(p.alpha);
  const f = await runFio(t, exportUri(p.alpha), {
    rw: 'randwrite',
    bs: '4k',
    iodepth: 32,
    size: SIZE,
    extra: [`--io_size=${WRITTEN}`, '--verify=crc32c', '--do_verify=1'],
    timeoutMs: 120_000,
  });
  t.equal(f.code, 0, 'fio wrote and verified every block', { output: f.output });
  t.equal(f.jobs[0]?.error, 0);
  t.equal(f.jobs[0]?.write.io_bytes, WRITTEN, 'all 4096 writes were acknowledged');
  const s = await waitFor(
    p.alpha,
    (x) => x.peers[0]!.statistics.pending === 0,
    'every change barrier-acked',
    30_000,
  );
  const alWrites = s.device.statistics.alWrites - before.device.statistics.alWrites;
  t.ok(alWrites > 100, `the activity log turned over (${alWrites} transactions)`);
  t.equal(s.peers[0]!.replication, 'Established', 'still replicating');
  const diff = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(diff.count, 0, 'alpha and beta hold the same bytes', diff);
});
