// A diskless node (drbd.md §2.6 rule 5, §5.5): `disk none` on beta. As Primary it serves the
// device from alpha's disk: reads are remote reads, writes and flushes go through the
// transfer log to alpha.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { makeDisk, readRange, run, showRun, tmpDir } from '../helpers/server.js';
import { adm, exportUri, startDaemon } from '../helpers/daemon.js';
import { freePort, status, waitFor } from '../helpers/pair.js';

const SIZE = 16 << 20;

t.test('a diskless Primary reads and writes through its peer', async (t) => {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, SIZE, undefined, 'alpha.img');
  const [pa, pb] = [await freePort(), await freePort()];
  const config = path.join(dir, 'urbd.conf');
  fs.writeFileSync(
    config,
    `resource r0 {
  net { connect-int 1; ping-int 1; ping-timeout 10; }
  on alpha { node-id 0; address 127.0.0.1:${pa}; device minor 0; disk ${disk}; meta-disk internal; }
  on beta { node-id 1; address 127.0.0.1:${pb}; device minor 1; disk none; }
}
`,
  );
  const alpha = { node: 'alpha', config, runDir: path.join(dir, 'run-alpha') };
  const beta = { node: 'beta', config, runDir: path.join(dir, 'run-beta') };
  t.equal((await adm(alpha, ['create-md', 'r0'])).code, 0);
  const da = await startDaemon(alpha, { t });
  const db = await startDaemon(beta, { t });
  t.equal((await db.adm(['up', 'r0'])).code, 0, 'a diskless node comes up');
  t.equal((await da.adm(['up', 'r0'])).code, 0);
  t.equal((await da.adm(['wait-connect', '--timeout', '20', 'r0'])).code, 0);
  t.equal((await da.adm(['primary', '--force', 'r0'])).code, 0);
  t.equal((await da.adm(['secondary', 'r0'])).code, 0);
  const b0 = await waitFor(db, (s) => s.peers[0]!.peerDisk === 'UpToDate', 'peer UpToDate');
  t.equal(b0.device.diskState, 'Diskless');
  t.equal(b0.device.size, SIZE, "beta's device has alpha's size");
  const pri = await db.adm(['primary', 'r0']);
  t.equal(pri.code, 0, 'a diskless node is promoted with an UpToDate peer', {
    output: showRun(pri),
  });
  const w = await run(
    'qemu-io',
    [
      '-f',
      'raw',
      '-c',
      'write -P 0x5d 1M 2M',
      '-c',
      'write -P 0x5e -f 8M 64k',
      '-c',
      'flush',
      '-c',
      'read -P 0x5d 1M 2M',
      '-c',
      'read -P 0 0 1M',
      exportUri(beta),
    ],
    { timeoutMs: 60000 },
  );
  t.equal(w.code, 0, 'writes and reads through the diskless Primary', { output: showRun(w) });
  t.ok(
    (await readRange(disk, 1 << 20, 2 << 20)).every((b) => b === 0x5d),
    "on alpha's disk",
  );
  t.ok(
    (await readRange(disk, 8 << 20, 64 << 10)).every((b) => b === 0x5e),
    'the FUA write too',
  );
  const a = await status(da);
  t.equal(a.peers[0]!.role, 'Primary');
  t.equal(a.peers[0]!.peerDisk, 'Diskless');
  t.equal(a.device.outOfSync, 0, 'nothing out of sync on the disk holder');
  // The peer goes: the diskless Primary has no data left, and says so.
  await da.stop();
  const b = await waitFor(db, (s) => s.peers[0]!.connection !== 'Connected', 'peer gone');
  t.match(b.device.export.refusal ?? '', /no UpToDate data/);
  const r = await run('qemu-io', ['-f', 'raw', '-c', 'read 0 4k', exportUri(beta)], {
    timeoutMs: 30000,
  });
  t.not(r.code, 0, 'no client is served without data');
});
