// The newcomer's walk-through from README, as a test: a resource file, create-md, up,
// primary --force, a filesystem on the export, down, up, primary, and the files are there.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { attachBlockStack } from '../helpers/block-stack.js';
import { oneNodeConfig, startPrimary } from '../helpers/daemon.js';
import { makeDisk, run, showRun as show, tmpDir } from '../helpers/server.js';

t.setTimeout(180000);

const MiB = 1 << 20;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('ext4 on a resource survives down and up', async (t) => {
  const dir = tmpDir(t, 'urbd-dfs-');
  const disk = await makeDisk(dir, 128 * MiB);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const { d, uri } = await startPrimary(t, spec);
  const gi = (await d.adm(['get-gi', 'r0'])).stdout;

  const files = { 'a.bin': randomBytes(8 * MiB), 'b.txt': Buffer.from('hello from urbd\n') };
  {
    const stack = await attachBlockStack(t, uri, path.join(dir, 's1'));
    const mkfs = await run('mkfs.ext4', ['-q', '-F', stack.loop], { timeoutMs: 60000 });
    t.equal(mkfs.code, 0, 'mkfs.ext4', { output: show(mkfs) });
    t.equal((await stack.mount()).code, 0, 'mount');
    for (const [n, data] of Object.entries(files)) await writeFile(path.join(stack.mnt, n), data);
    t.equal((await stack.umount()).code, 0, 'umount');
    t.equal(await stack.detach(), 0, 'nbdfuse exits 0');
  }
  const down = await d.adm(['down', 'r0']);
  t.equal(down.code, 0, 'down', { output: show(down) });
  t.equal((await d.adm(['up', 'r0'])).code, 0, 'up again');
  t.equal((await d.adm(['primary', 'r0'])).code, 0, 'primary, no --force needed');
  t.equal((await d.adm(['get-gi', 'r0'])).stdout, gi, 'generation UUIDs intact');
  {
    const stack = await attachBlockStack(t, uri, path.join(dir, 's2'));
    const fsck = await run('e2fsck', ['-fn', stack.loop], { timeoutMs: 60000 });
    t.equal(fsck.code, 0, 'e2fsck clean', { output: show(fsck) });
    t.equal((await stack.mount()).code, 0, 'mount again');
    for (const [n, data] of Object.entries(files)) {
      t.equal(sha(await readFile(path.join(stack.mnt, n))), sha(data), `${n} intact`);
    }
    t.equal((await stack.umount()).code, 0, 'umount');
    t.equal(await stack.detach(), 0, 'nbdfuse exits 0');
  }
  t.equal((await d.adm(['down', 'r0'])).code, 0, 'down');
  t.equal(await d.stop(), 0, 'urbd exits 0');
});
