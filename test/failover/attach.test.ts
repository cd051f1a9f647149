// The export of a real urbd Primary attached as a block device (nbdfuse + loop here: this
// kernel has no nbd driver), with ext4 on it; detach refuses while mounted and cleans up after
// kill -9 of the daemon or of nbdfuse. nbd-client is covered for what it is given (its
// arguments, the choice of method and of /dev/nbdN), since it cannot run here.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  attachExport,
  attachState,
  chooseMethod,
  detachExport,
  deviceLinkPath,
  nbdClientArgs,
  nbdfuseArgs,
  type AttachSpec,
} from '../../src/failover/attach.js';
import {
  firstFreeNbd,
  isMountPoint,
  loopBackingFile,
  loopsBackedBy,
  parseMountinfo,
  processAlive,
} from '../../src/failover/attach-sys.js';
import { adm, oneNodeConfig, startDaemon, type NodeSpec } from '../helpers/daemon.js';
import { isMounted } from '../helpers/block-stack.js';
import { makeDisk, run, showRun, tmpDir, type Teardown } from '../helpers/server.js';
import { fileURLToPath } from 'node:url';

t.setTimeout(120000);

const FAILOVER_CLI = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../src/cli/urbd-failover.js',
);

t.test('nbd-client: arguments, method and device choice', async (t) => {
  t.same(nbdClientArgs('/run/urbd/r0.nbd', '/dev/nbd3', 'r0'), [
    '-unix',
    '/run/urbd/r0.nbd',
    '/dev/nbd3',
    '-N',
    'r0',
    '-b',
    '4096',
  ]);
  t.notOk(nbdClientArgs('/s', '/dev/nbd0', 'r0').includes('-persist'), 'no -persist');
  t.same(nbdfuseArgs('/st/p', '/st/fuse/disk', '/run/urbd/r0.nbd', 'r0'), [
    '-P',
    '/st/p',
    '/st/fuse/disk',
    'nbd+unix:///r0?socket=/run/urbd/r0.nbd',
  ]);
  t.equal(chooseMethod('auto', true), 'nbd-client');
  t.equal(chooseMethod('auto', false), 'nbdfuse');
  t.equal(chooseMethod('nbdfuse', true), 'nbdfuse');
  t.equal(chooseMethod('nbd-client', false), 'nbd-client', 'explicit choice is kept');

  // A fake /sys/class/block: nbd0 and nbd2 connected (a pid file), nbd10 and nbd1 free.
  const sys = tmpDir(t, 'urbd-fakesys-');
  for (const n of ['nbd0', 'nbd1', 'nbd2', 'nbd10', 'loop0']) mkdirSync(path.join(sys, n));
  writeFileSync(path.join(sys, 'nbd0', 'pid'), '1\n');
  writeFileSync(path.join(sys, 'nbd2', 'pid'), '1\n');
  t.equal(firstFreeNbd(sys), '/dev/nbd1', 'the lowest numbered free nbd device');
  writeFileSync(path.join(sys, 'nbd1', 'pid'), '1\n');
  t.equal(firstFreeNbd(sys), '/dev/nbd10', 'numeric order, not string order');
  writeFileSync(path.join(sys, 'nbd10', 'pid'), '1\n');
  t.equal(firstFreeNbd(sys), undefined, 'none free');
  t.equal(firstFreeNbd(path.join(sys, 'nope')), undefined, 'no nbd driver at all');
});

t.test('mountinfo parsing', async (t) => {
  const m = parseMountinfo(
    '36 35 7:3 / /mnt/my\\040data rw,relatime shared:1 - ext4 /dev/loop3 rw\n' +
      '40 35 0:50 / /run/urbd/failover/r0/fuse rw - fuse /dev/fuse rw,user_id=0\n',
  );
  t.same(m, [
    { majMin: '7:3', mountPoint: '/mnt/my data', fsType: 'ext4', source: '/dev/loop3' },
    {
      majMin: '0:50',
      mountPoint: '/run/urbd/failover/r0/fuse',
      fsType: 'fuse',
      source: '/dev/fuse',
    },
  ]);
});

/** Whatever a failed test left: unmount, detach, and by hand if detach itself fails. */
function cleanupAfter(t: Teardown, spec: AttachSpec, mnt: string): void {
  t.teardown(async () => {
    for (let i = 0; i < 3 && (await isMounted(mnt)); i++) await run('umount', [mnt]);
    if (await isMounted(mnt)) await run('umount', ['-l', mnt]);
    try {
      await detachExport(spec);
      return;
    } catch {
      // fall through: by hand
    }
    const fuseFile = path.join(spec.stateDir, 'fuse', 'disk');
    for (const l of loopsBackedBy(fuseFile)) await run('losetup', ['-d', l]);
    await run('fusermount3', ['-u', '-z', path.join(spec.stateDir, 'fuse')]);
    try {
      const rec = JSON.parse(readFileSync(path.join(spec.stateDir, 'attach.json'), 'utf8')) as {
        nbdfusePid?: number;
      };
      if (rec.nbdfusePid && processAlive(rec.nbdfusePid, fuseFile)) {
        process.kill(rec.nbdfusePid, 'SIGKILL');
      }
    } catch {
      // no record
    }
  });
}

t.test('nbdfuse + loop against a real Primary', async (t) => {
  const dir = tmpDir(t, 'urbd-attach-');
  const disk = await makeDisk(dir, 128 << 20);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const node: NodeSpec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const md = await adm(node, ['create-md', 'r0']);
  t.equal(md.code, 0, 'create-md', { output: showRun(md) });
  let d = await startDaemon(node, { t });
  const spec: AttachSpec = {
    resource: 'r0',
    socket: path.join(node.runDir, 'r0.nbd'),
    method: 'nbdfuse',
    stateDir: path.join(dir, 'state'),
    timeoutMs: 20000,
  };
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  cleanupAfter(t, spec, mnt); // registered after the daemon: runs before it is stopped
  const fuseFile = path.join(spec.stateDir, 'fuse', 'disk');
  const noLeftovers = (what: string): void => {
    t.same(loopsBackedBy(fuseFile), [], `${what}: no loop device backed by the FUSE file`);
    t.notOk(isMountPoint(path.join(spec.stateDir, 'fuse')), `${what}: FUSE unmounted`);
    t.notOk(existsSync(deviceLinkPath(spec.stateDir)), `${what}: no device symlink`);
  };

  t.same(await attachState(spec), { state: 'detached' }, 'detached before anything');
  await detachExport(spec); // nothing there: fine

  const up = await d.adm(['up', 'r0']);
  t.equal(up.code, 0, 'up', { output: showRun(up) });
  await t.rejects(attachExport(spec), /cannot attach r0: nbdfuse exited: .*r0/, 'a Secondary');
  t.same(await attachState(spec), { state: 'detached' }, 'a failed attach leaves nothing');
  noLeftovers('after a failed attach');

  const pri = await d.adm(['primary', '--force', 'r0']);
  t.equal(pri.code, 0, 'primary --force', { output: showRun(pri) });
  const a = await attachExport(spec);
  t.match(a, { device: /^\/dev\/loop\d+$/, method: 'nbdfuse' }, 'attached');
  t.equal(loopBackingFile(a.device), fuseFile, 'the loop device is backed by the FUSE file');
  t.equal(
    readFileSync(`/sys/class/block/${path.basename(a.device)}/loop/dio`, 'utf8').trim(),
    '1',
    'direct I/O',
  );
  t.equal(
    Number(readFileSync(`/sys/class/block/${path.basename(a.device)}/size`, 'utf8')) * 512,
    128 << 20,
    'the device has the export size',
  );
  t.same(await attachState(spec), { state: 'attached', device: a.device, method: 'nbdfuse' });
  const rec1 = readFileSync(path.join(spec.stateDir, 'attach.json'), 'utf8');
  t.same(await attachExport(spec), a, 'attach again: the same device');
  t.equal(readFileSync(path.join(spec.stateDir, 'attach.json'), 'utf8'), rec1, 'record untouched');

  // Another process sees it (the OCF agent's view): the CLI with the same state dir.
  const cli = (args: string[]) =>
    run(process.execPath, [FAILOVER_CLI, '--run-dir', node.runDir, ...args], { timeoutMs: 30000 });
  const st = await cli(['attach-status', 'r0', '--state-dir', spec.stateDir, '--json']);
  t.equal(st.code, 0, 'attach-status in another process: attached', { output: showRun(st) });
  t.match(JSON.parse(st.stdout), { state: 'attached', device: a.device, link: /device$/ });

  const mkfs = await run('mkfs.ext4', ['-q', '-F', deviceLinkPath(spec.stateDir)]);
  t.equal(mkfs.code, 0, 'mkfs.ext4 through the symlink', { output: showRun(mkfs) });
  const m = await run('mount', [deviceLinkPath(spec.stateDir), mnt]);
  t.equal(m.code, 0, 'mount through the symlink', { output: showRun(m) });
  writeFileSync(path.join(mnt, 'hello'), 'across the export\n');
  await run('sync', []);

  await t.rejects(
    detachExport(spec),
    new RegExp(`cannot detach r0: ${a.device} is mounted on ${mnt}$`),
    'detach while mounted is refused',
  );
  const cliDetach = await cli(['detach', 'r0', '--state-dir', spec.stateDir]);
  t.equal(cliDetach.code, 10, 'the CLI too: exit 10');
  t.match(cliDetach.stderr, /^urbd-failover: cannot detach r0: .* is mounted on .*\n$/, 'one line');
  t.same(await attachState(spec), { state: 'attached', device: a.device, method: 'nbdfuse' });

  t.equal((await run('umount', [mnt])).code, 0, 'umount');
  const pid = (JSON.parse(rec1) as { nbdfusePid: number }).nbdfusePid;
  await detachExport(spec);
  t.same(await attachState(spec), { state: 'detached' }, 'detached');
  t.notOk(processAlive(pid, fuseFile), 'nbdfuse has exited');
  noLeftovers('after detach');
  await detachExport(spec); // again: fine

  // Re-attach from the CLI: the data is there.
  const att = await cli(['attach', 'r0', '--state-dir', spec.stateDir, '--method', 'nbdfuse']);
  t.equal(att.code, 0, 'urbd-failover attach', { output: showRun(att) });
  t.match(att.stdout, /^\/dev\/loop\d+\n$/, 'prints the device');
  t.equal((await run('mount', [att.stdout.trim(), mnt])).code, 0, 'mount again');
  t.equal(readFileSync(path.join(mnt, 'hello'), 'utf8'), 'across the export\n', 'data is there');
  t.equal((await run('umount', [mnt])).code, 0, 'umount');

  // nbdfuse killed: failed, and detach cleans up.
  const rec2 = JSON.parse(readFileSync(path.join(spec.stateDir, 'attach.json'), 'utf8')) as {
    nbdfusePid: number;
  };
  process.kill(rec2.nbdfusePid, 'SIGKILL');
  const s2 = await attachState(spec);
  t.match(s2, { state: 'failed', reason: /nbdfuse \(pid \d+\) is not running/ }, 'nbdfuse dead');
  await detachExport(spec);
  noLeftovers('after nbdfuse died');

  // The daemon killed (-9) under a mounted filesystem: detach refuses until unmounted, then
  // releases everything although the server is gone.
  const a3 = await attachExport(spec);
  t.equal((await run('mount', [a3.device, mnt])).code, 0, 'mount');
  await d.kill9();
  t.match(
    await attachState(spec),
    { state: 'failed', reason: /nothing answers on the export socket/ },
    'the server gone: failed',
  );
  await t.rejects(detachExport(spec), /is mounted on/, 'still refused while mounted');
  const um = await run('umount', [mnt], { timeoutMs: 30000 });
  t.equal(um.code, 0, 'umount of the orphaned filesystem', { output: showRun(um) });
  await detachExport(spec);
  t.same(await attachState(spec), { state: 'detached' }, 'detached after the daemon died');
  noLeftovers('after the daemon died');

  // And a fresh daemon serves it again (the state dir is reusable).
  d = await startDaemon(node, { t });
  t.equal((await d.adm(['up', 'r0'])).code, 0, 'up again');
  t.equal((await d.adm(['primary', 'r0'])).code, 0, 'primary again');
  const a4 = await attachExport(spec);
  t.match(a4.device, /^\/dev\/loop\d+$/, 'attached after the restart');
  await detachExport(spec);
  noLeftovers('at the end');
});
