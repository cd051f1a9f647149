// Metadata on a disk that starts failing: nbdkit's error filter (writes fail while an inject
// file exists) → nbdfuse → loop → ext4, with the SQLite metadata on that ext4. Once an
// activity-log commit has failed with an I/O error its outcome is unknown, so the resource
// must fail every later write, hot extents included, rather than trust its log in memory;
// reads go on, the daemon goes on, and nothing acknowledged is lost.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { failingExt4 } from '../helpers/block-stack.js';
import { oneNodeConfig, startPrimary } from '../helpers/daemon.js';
import { makeDisk, readRange, run, showRun as show, tmpDir } from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;
const EXTENT = 4 * MiB;

t.test('an AL commit that hits EIO fails every later write, loses nothing', async (t) => {
  const dir = tmpDir(t, 'urbd-mdeio-');
  const { stack, inject } = await failingExt4(t, dir);

  const disk = await makeDisk(dir, 256 * MiB);
  const config = oneNodeConfig(dir, {
    node: 'alpha',
    disk,
    meta: path.join(stack.mnt, 'r0.urbd-md'),
    diskSection: 'al-extents 7;',
  });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const { d, uri } = await startPrimary(t, spec);
  const w1 = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', uri]);
  t.equal(w1.code, 0, 'a write while the metadata disk is healthy', { output: show(w1) });

  fs.writeFileSync(inject, '');
  // Cold extents, one after the other, until a commit fails.
  const cmds: string[] = [];
  for (let e = 1; e < 40; e++) cmds.push('-c', `write -P 0x22 ${e * EXTENT} 4k`);
  const w2 = await run('qemu-io', ['-f', 'raw', ...cmds, uri], { timeoutMs: 60000 });
  t.match(
    w2.stdout + w2.stderr,
    /Input\/output error/,
    'a cold-extent write fails once the metadata disk fails',
    {
      output: show(w2),
    },
  );
  const line = await d.waitForLog((l) => /^metadata write failed/.test(String(l.json?.msg)), 10000);
  t.match(String(line.json?.err), /I\/O error|SQLITE_IOERR/, 'the log names the I/O error', {
    line: line.raw,
  });
  fs.rmSync(inject);

  // Extent 0 is hot, but the log in memory can no longer be trusted: the write is refused.
  const w3 = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 4k', uri]);
  t.match(w3.stdout + w3.stderr, /Input\/output error/, 'a write to a hot extent fails too', {
    output: show(w3),
  });
  t.ok(
    (await readRange(disk, 0, 4096)).every((b) => b === 0x11),
    'and did not reach the disk',
  );
  const r = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x11 0 4k', uri]);
  t.equal(r.code, 0, 'reads are still served', { output: show(r) });
  t.notMatch(r.stdout, /Pattern verification failed/);
  const st = await d.adm(['status', 'r0']);
  t.equal(st.code, 0, 'the daemon still answers', { output: show(st) });
  t.equal(d.proc.exitCode, undefined, 'and runs');
  // Every write acknowledged before the failure is on the data disk.
  for (const [i, m] of [
    ...(w2.stdout + w2.stderr).matchAll(/wrote 4096\/4096 bytes at offset (\d+)/g),
  ].entries()) {
    const b = await readRange(disk, Number(m[1]), 4096);
    t.ok(
      b.every((x) => x === 0x22),
      `acknowledged write ${i} at ${m[1]} is on the disk`,
    );
  }
  t.equal(await d.stop(), 0, 'urbd stops');
});
