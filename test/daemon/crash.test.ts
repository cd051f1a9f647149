// Crash safety of the activity log and bitmap (drbd.md §4.3-§4.5): fio writes through NBD
// while urbd is killed with SIGKILL at random moments. After every restart, `up` must open
// the metadata, replay the activity log, and leave every block that differs from the
// initial (all-zero) disk either set in the bitmap. With 7 AL extents and writes spread
// over 64, extents are evicted all the time, so the "persist the bitmap page before the
// extent leaves the log" path is exercised on nearly every write.
import t from 'tap';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { adm, oneNodeConfig, startDaemon } from '../helpers/daemon.js';
import { makeDisk, showRun as show, sleep, spawnTracked, tmpDir } from '../helpers/server.js';

t.setTimeout(240000);

const MiB = 1 << 20;
const DISK = 256 * MiB;
const ROUNDS = 6;
const ZERO_BLOCK = Buffer.alloc(4096);

/** 4 KiB blocks of `file` that are not all zero. */
async function changedBlocks(file: string): Promise<number[]> {
  const out: number[] = [];
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let off = 0; off < DISK; off += buf.length) {
      await fh.read(buf, 0, buf.length, off);
      for (let b = 0; b < buf.length; b += 4096) {
        if (!buf.subarray(b, b + 4096).equals(ZERO_BLOCK)) out.push((off + b) / 4096);
      }
    }
  } finally {
    await fh.close();
  }
  return out;
}

t.test('kill -9 during writes: every changed block is in the bitmap after apply-al', async (t) => {
  const dir = tmpDir(t, 'urbd-crash-');
  const disk = await makeDisk(dir, DISK);
  const config = oneNodeConfig(dir, { node: 'alpha', disk, diskSection: 'al-extents 7;' });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const sock = path.join(spec.runDir, 'r0.nbd');
  t.equal((await adm(spec, ['create-md', 'r0'])).code, 0, 'create-md');

  let applied = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const d = await startDaemon(spec, { t });
    const up = await d.adm(['up', 'r0']);
    t.equal(up.code, 0, `round ${round}: up after the crash opens the metadata`, {
      output: show(up),
    });
    if (d.logs.some((l) => /applied the activity log/.test(String(l.json?.msg)))) applied++;
    const pri = await d.adm(['primary', ...(round === 0 ? ['--force'] : []), 'r0']);
    t.equal(pri.code, 0, `round ${round}: primary`, { output: show(pri) });

    const fio = spawnTracked(
      'fio',
      [
        '--name=crash',
        // Jobs as threads, not forked processes: killing fio by PID then kills every job,
        // and no orphan keeps writing (or holding our pipes) after the test.
        '--thread',
        '--ioengine=nbd',
        `--uri=nbd+unix:///r0?socket=${sock}`,
        '--rw=randwrite',
        '--bsrange=4k-16k',
        // Slow enough that most of the disk stays untouched, so "covered" means something.
        '--rate_iops=400',
        '--iodepth=16',
        `--size=${DISK}`,
        '--time_based',
        '--runtime=30',
        '--randrepeat=0',
      ],
      { t },
    );
    await sleep(400 + Math.floor(Math.random() * 2500));
    await d.kill9();
    await fio.stop(5000);
  }

  // The last crash, checked offline. What is on disk right after the kill (the bitmap
  // pages plus the extents in the activity log) must cover every changed block; apply-al
  // must then turn exactly that union into bitmap bits.
  type Dump = {
    clean: boolean;
    activityLog: { extents: number[] };
    bitmap: { ranges: Array<[number, number]>; setBits: number };
  };
  const before = await adm(spec, ['dump-md', '--json', 'r0']);
  t.equal(before.code, 0, 'dump-md of the crashed metadata', { output: show(before) });
  const crashed = JSON.parse(before.stdout) as Dump;
  t.equal(crashed.clean, false, 'the metadata says the stop was unclean');
  const covered = new Uint8Array(DISK / 4096);
  for (const [s, e] of crashed.bitmap.ranges) covered.fill(1, s, e);
  for (const x of crashed.activityLog.extents) covered.fill(1, x * 1024, (x + 1) * 1024);
  const changed = await changedBlocks(disk);
  t.ok(
    changed.length > 500 && changed.length < covered.length / 2,
    `fio changed ${changed.length} of ${covered.length} blocks`,
  );
  const missing = changed.filter((b) => covered[b] !== 1);
  t.same(
    missing.slice(0, 20),
    [],
    `every changed block is in the bitmap or an active extent (${missing.length} missing of ${changed.length})`,
  );

  const a = await adm(spec, ['apply-al', 'r0']);
  t.equal(a.code, 0, 'apply-al after the last crash', { output: show(a) });
  t.match(a.stdout, /applied \d+ activity-log extents/, 'the log was applied');
  t.ok(applied >= ROUNDS - 1, `up applied the log after each earlier crash (${applied})`);
  const after = JSON.parse((await adm(spec, ['dump-md', '--json', 'r0'])).stdout) as Dump;
  t.equal(after.clean, true, 'apply-al left the metadata clean');
  t.same(after.activityLog.extents, [], 'and the log empty');
  t.equal(
    after.bitmap.setBits,
    covered.reduce((n, b) => n + b, 0),
    'the bitmap is exactly the union of the old bitmap and the active extents',
  );
});
