// FLUSH and FUA on a replicated pair (DESIGN.md write path 4-5): whatever was flushed or
// FUA-written before the reply survives a power loss of both nodes, on both nodes. The
// disks forget every unflushed write when the plug is pulled (power-loss-disk.ts), and an
// unflushed write on the primary is shown to vanish, so the store really forgets.
// Also a peer whose disk hangs: after timeout × ko-count the primary expels it.
import t from 'tap';
import path from 'node:path';
import { readRange, run, showRun, sleep, spawnTracked, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import { powerLossDisk } from '../helpers/power-loss-disk.js';
import { diffBlocks, promoteAndSync, startPair, status, waitInSync } from '../helpers/pair.js';

const SIZE = 16 << 20;
const MiB = 1 << 20;

function filled(buf: Buffer, v: number): boolean {
  return buf.every((b) => b === v);
}

t.test('flushed and FUA writes survive a power loss of both nodes', async (t) => {
  const dir = tmpDir(t);
  const a = await powerLossDisk(t, dir, { sizeBytes: SIZE, name: 'alpha' });
  const b = await powerLossDisk(t, dir, { sizeBytes: SIZE, name: 'beta' });
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    alphaDisk: a.path,
    betaDisk: b.path,
    alphaMeta: path.join(dir, 'alpha.md'),
    betaMeta: path.join(dir, 'beta.md'),
  });
  await promoteAndSync(p);
  // nbdsh: no flush on close, unlike qemu-io. 1 MiB FUA, then 1 MiB flushed (the FUA's own
  // flush cannot cover it), then 1 MiB neither, three times: alpha's disk flushes ahead once
  // as many writes as came before the last flush (two) have followed it (FlushPlan), so the
  // third write after the flush is one that nothing flushes.
  // Debian's python3-libnbd, run by the system python (a python on PATH may lack it).
  const w = await run(
    '/usr/bin/python3',
    [
      '-m',
      'nbd',
      '-u',
      exportUri(p.alpha),
      '-c',
      'h.pwrite(b"\\x22" * 1048576, 2 * 1048576, nbd.CMD_FLAG_FUA)',
      '-c',
      'h.pwrite(b"\\x11" * 1048576, 0)',
      '-c',
      'h.flush()',
      '-c',
      'h.pwrite(b"\\x33" * 1048576, 4 * 1048576)',
      '-c',
      'h.pwrite(b"\\x44" * 1048576, 6 * 1048576)',
      '-c',
      'h.pwrite(b"\\x55" * 1048576, 8 * 1048576)',
    ],
    { timeoutMs: 60000 },
  );
  t.equal(w.code, 0, 'writes through NBD', { output: showRun(w) });
  // The plug is pulled on both nodes at once.
  await Promise.all([p.alpha.kill9(), p.beta.kill9()]);
  await Promise.all([a.powerLoss(), b.powerLoss()]);
  for (const [name, disk] of [
    ['alpha', a],
    ['beta', b],
  ] as const) {
    t.ok(
      filled(await readRange(disk.backingFile, 0, MiB), 0x11),
      `${name}: the flushed write survived`,
    );
    t.ok(
      filled(await readRange(disk.backingFile, 2 * MiB, MiB), 0x22),
      `${name}: the FUA write survived`,
    );
  }
  t.ok(
    filled(await readRange(a.backingFile, 8 * MiB, MiB), 0),
    'alpha: the unflushed write was lost (the store really forgets)',
  );
  // Power back on: the crashed primary's AL brings the pair back in sync.
  await Promise.all([a.restart(), b.restart()]);
  await p.restart('alpha');
  await p.restart('beta');
  t.equal((await p.beta.adm(['up', 'r0'])).code, 0);
  t.equal((await p.alpha.adm(['up', 'r0'])).code, 0);
  await waitInSync(p);
  const d = await diffBlocks(a.path, b.path, SIZE);
  t.equal(d.count, 0, 'identical after the restart', { first: d.first });
});

t.test('a peer whose disk hangs is expelled after timeout × ko-count', async (t) => {
  const dir = tmpDir(t);
  const b = await powerLossDisk(t, dir, { sizeBytes: SIZE, name: 'beta' });
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    betaDisk: b.path,
    betaMeta: path.join(dir, 'beta.md'),
    net: 'timeout 10; ko-count 2;',
  });
  await promoteAndSync(p);
  const pid = b.pids!.nbdkit;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone
    }
  });
  const writer = spawnTracked(
    'qemu-io',
    ['-f', 'raw', '-c', 'write -P 0x44 0 1M', '-c', 'flush', exportUri(p.alpha)],
    { t },
  );
  const code = await writer.exited;
  t.equal(code, 0, 'the write completed on alpha alone');
  const a = await status(p.alpha);
  // Expelled, and named for the missing ack (alpha may have dialled again since).
  t.ok(
    p.alpha.logs.some(
      (l) =>
        l.json?.msg === 'connection lost' &&
        /did not acknowledge a write/.test(String(l.json?.reason)),
    ),
    'beta was expelled for the missing ack',
  );
  t.ok(a.device.outOfSync >= MiB, 'the write is marked out of sync');
  process.kill(pid, 'SIGCONT');
  await sleep(200);
  await waitInSync(p);
  const d = await diffBlocks(p.alphaDisk, b.path, SIZE);
  t.equal(d.count, 0, 'identical once the disk came back', { first: d.first });
});
