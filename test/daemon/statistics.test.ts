// status --statistics and events --statistics against two real daemons: drbdsetup's
// counters (read, written, al-writes, bm-writes, sent, received, out-of-sync, pending,
// unacked) add up to what a resync and a client's writes moved, and the event stream
// reports a resync's progress.
import t from 'tap';
import { followLogs, showRun, spawnTracked, tmpDir } from '../helpers/server.js';
import { exportUri, URBDADM_CLI } from '../helpers/daemon.js';
import { inSync, qemuIo, startPair, status, waitFor, waitInSync } from '../helpers/pair.js';

const SIZE = 16 << 20;
const KiB = 1024;

t.test('status --statistics and events --statistics', async (t) => {
  const dir = tmpDir(t);
  // A fixed 4 MiB/s resync of 16 MiB: several progress lines, whatever the machine's load.
  const p = await startPair(t, dir, { sizeBytes: SIZE, disk: 'c-plan-ahead 0; resync-rate 4M;' });
  await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected', 30000);

  const plain = await p.alpha.adm(['events', '--now', 'r0']);
  t.notMatch(plain.stdout, /sent:/, 'events without --statistics: state only');
  const now = await p.alpha.adm(['events', '--now', '--statistics', 'r0']);
  t.match(
    now.stdout,
    /^exists device name:r0 volume:0 minor:0 disk:Inconsistent client:no size:16384 read:\d+ written:\d+ al-writes:\d+ bm-writes:\d+ lower-pending:\d+$/m,
  );
  t.match(
    now.stdout,
    /^exists peer-device name:r0 peer-node-id:1 conn-name:beta volume:0 replication:Established peer-disk:Inconsistent received:\d+ sent:\d+ out-of-sync:\d+ pending:0 unacked:0$/m,
  );

  const spec = p.alpha;
  const events = spawnTracked(
    process.execPath,
    [
      URBDADM_CLI,
      ...['--node', spec.node, '--config', spec.config, '--run-dir', spec.runDir],
      ...['events', '--json', '--statistics', 'r0'],
    ],
    { t },
  );
  const stream = followLogs(events);
  await stream.waitForLog((l) => l.json?.object === '-', 20000);

  const pri = await p.alpha.adm(['primary', '--force', 'r0']);
  t.equal(pri.code, 0, 'primary --force starts the full sync', { output: showRun(pri) });
  await waitInSync(p);
  await stream.waitForLog(
    (l) =>
      l.json?.object === 'peer-device' &&
      (l.json.fields as Record<string, unknown>).replication === 'Established',
    20000,
  );
  const progress = stream.logs
    .map((l) => l.json as { kind: string; object: string; fields: Record<string, unknown> })
    .filter((e) => e.object === 'peer-device' && e.fields.done !== undefined);
  const done = progress.map((e) => Number(e.fields.done));
  t.ok(progress.length >= 2, `resync progress reported (${progress.length} lines)`);
  t.same(
    done,
    [...done].sort((a, b) => a - b),
    'done only grows',
  );
  t.ok(
    progress.every(
      (e) => e.fields.replication === 'SyncSource' && e.fields['peer-disk'] === 'Inconsistent',
    ),
    'progress lines carry the whole state',
  );
  t.ok(
    progress.every((e) => typeof e.fields.sent === 'number' && typeof e.fields.dbdt1 === 'number'),
    'and the counters',
  );
  await events.stop();

  // A client writes 1 MiB through the Primary.
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x5a 0 1M', 'flush']);
  t.equal(w.code, 0, 'qemu-io writes 1 MiB', { output: showRun(w) });
  await waitFor(p.alpha, (s) => inSync(s) && s.peers[0]!.statistics.pending === 0, 'quiet');

  const a = await status(p.alpha);
  const b = await status(p.beta);
  t.ok(a.device.statistics.written >= 1 << 20, 'alpha wrote the client data');
  t.ok(a.device.statistics.read >= SIZE, 'alpha read the whole disk for the resync');
  t.ok(a.device.statistics.alWrites >= 1, 'an activity-log transaction for the cold extent');
  t.ok(a.device.statistics.bmWrites >= 1, 'the bitmap reached the metadata');
  t.ok(a.peers[0]!.statistics.sent >= SIZE + (1 << 20), 'sent: the resync and the write');
  t.equal(a.peers[0]!.statistics.received, 0, 'alpha received no data');
  t.ok(b.peers[0]!.statistics.received >= SIZE + (1 << 20), 'beta received both');
  t.ok(b.device.statistics.written >= SIZE + (1 << 20), 'and wrote both');
  await waitFor(p.beta, (s) => s.peers[0]!.statistics.unacked === 0, 'beta acked everything');

  const text = await p.alpha.adm(['status', '--statistics', 'r0']);
  t.equal(text.code, 0);
  const lines = text.stdout.split('\n');
  t.equal(lines[0], 'r0 role:Primary');
  t.equal(lines[1], '  disk:UpToDate');
  t.match(
    lines[2],
    /^ {6}size:16384 read:(\d+) written:(\d+) al-writes:\d+ bm-writes:\d+ lower-pending:\d+$/,
  );
  t.equal(lines[3], '  beta role:Secondary');
  t.equal(lines[4], '    peer-disk:UpToDate');
  const m = /^ {8}received:0 sent:(\d+) out-of-sync:0 pending:0 unacked:0$/.exec(lines[5]!);
  t.ok(m, `peer counters line: ${lines[5]}`);
  t.ok(Number(m?.[1]) >= (SIZE + (1 << 20)) / KiB, 'sent in KiB');
  const verbose = await p.beta.adm(['status', '--verbose', '--statistics', 'r0']);
  t.match(
    verbose.stdout,
    /^ {4}volume:0 replication:Established peer-disk:UpToDate out-of-sync:0\n {8}received:\d+ sent:0 out-of-sync:0 pending:0 unacked:0$/m,
  );
});
