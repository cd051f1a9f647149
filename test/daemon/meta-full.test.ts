// Metadata on a full filesystem: activating a cold activity-log extent needs a metadata
// transaction, and when SQLite cannot write it the write must fail (EIO to the client)
// before any data reaches the disk, while the daemon keeps serving and says why in one line.
import t from 'tap';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { isMounted } from '../helpers/block-stack.js';
import { oneNodeConfig, startPrimary } from '../helpers/daemon.js';
import { makeDisk, readRange, run, showRun as show, tmpDir } from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;
const EXTENT = 4 * MiB;

t.test('a full metadata filesystem fails writes to cold extents, loses nothing', async (t) => {
  const dir = tmpDir(t, 'urbd-mdfull-');
  const mdDir = path.join(dir, 'md');
  mkdirSync(mdDir);
  const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=320k', 'tmpfs', mdDir]);
  t.equal(m.code, 0, 'a 320 KiB tmpfs for the metadata', { output: show(m) });
  // Registered before the daemon, so it runs after the daemon has been stopped.
  t.teardown(async () => {
    if (await isMounted(mdDir)) await run('umount', [mdDir]);
  });
  const disk = await makeDisk(dir, 1024 * MiB);
  const config = oneNodeConfig(dir, {
    node: 'alpha',
    disk,
    meta: path.join(mdDir, 'r0.urbd-md'),
    diskSection: 'al-extents 7;',
  });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const { d, uri } = await startPrimary(t, spec);

  // One 4 KiB write into each of 256 extents, every one of them cold: each costs an AL
  // transaction (and, with 7 slots, persisting the evicted extent's bitmap page).
  const cmds: string[] = [];
  for (let e = 0; e < 256; e++) cmds.push('-c', `write -P 0x77 ${e * EXTENT} 4k`);
  const w = await run('qemu-io', ['-f', 'raw', ...cmds, uri], { timeoutMs: 60000 });
  t.match(w.stdout + w.stderr, /Input\/output error/, 'writes start failing with EIO', {
    output: show(w),
  });
  // Which writes were acknowledged: qemu-io prints "wrote 4096/4096 bytes at offset N".
  const acked = [...(w.stdout + w.stderr).matchAll(/wrote 4096\/4096 bytes at offset (\d+)/g)].map(
    (x) => Number(x[1]),
  );
  t.ok(
    acked.length > 0 && acked.length < 256,
    `${acked.length} writes acknowledged before the disk filled`,
  );
  for (const off of acked) {
    const b = await readRange(disk, off, 4096);
    if (!b.every((x) => x === 0x77)) t.fail(`acknowledged write at ${off} is not on the disk`);
  }
  // A refused write never reached the data disk: the extent was not active.
  const refusedAt = 255 * EXTENT;
  if (!acked.includes(refusedAt)) {
    t.ok(
      (await readRange(disk, refusedAt, 4096)).every((x) => x === 0),
      'a failed write left no data',
    );
  }
  const line = await d.waitForLog((l) => /^metadata write failed/.test(String(l.json?.msg)), 5000);
  t.match(String(line.json?.err), /full/i, 'the log says why, in one line', { line: line.raw });
  const st = await d.adm(['status', 'r0']);
  t.equal(st.code, 0, 'the daemon still answers', { output: show(st) });
  t.equal(d.proc.exitCode, undefined, 'and is still running');
  // Reads and writes to extents that are already active keep working.
  const first = acked[0]!;
  const again = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0x77 ${first} 4k`, uri]);
  t.equal(again.code, 0, 'reads still served', { output: show(again) });
  t.notMatch(again.stdout, /Pattern verification failed/);
});
