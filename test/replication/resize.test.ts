// Online resize (README "Verbs", drbd.md §1.2): the device grows while connected and
// serving, after both backing disks grew; the new area is resynced from the Primary (or taken
// as identical with --assume-clean); NBD clients see the new size on their next connection;
// what cannot be done is refused with its reason, and shrinking names both sizes.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { DiskMeta } from '../../src/resource/disk-meta.js';
import { attachBlockStack } from '../helpers/block-stack.js';
import { exportUri, failsWith, ok, type DaemonHandle } from '../helpers/daemon.js';
import {
  diffBlocks,
  type Pair,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitInSync,
} from '../helpers/pair.js';
import { makeDisk, run, spawnTracked, tmpDir } from '../helpers/server.js';

const MiB = 1 << 20;

function logged(n: DaemonHandle, from: number, re: RegExp): boolean {
  return n.logs.slice(from).some((l) => re.test(String(l.json?.msg)));
}

async function nbdSize(n: DaemonHandle): Promise<number> {
  const r = await run('nbdinfo', ['--size', exportUri(n)], { timeoutMs: 20000 });
  if (r.code !== 0) throw new Error(`nbdinfo: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** What df says the filesystem mounted at `mnt` holds, in bytes. */
async function fsBytes(mnt: string): Promise<number> {
  const df = await run('df', ['-B1', '--output=size', mnt]);
  return Number(df.stdout.split('\n')[1]);
}

async function sizes(p: Pair): Promise<number[]> {
  return [(await status(p.alpha)).device.size, (await status(p.beta)).device.size];
}

t.test('refusals, nothing to do, and --assume-clean', { timeout: 120000 }, async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 8 * MiB });
  await promoteAndSync(p);

  const same = await p.beta.adm(['resize', 'r0']);
  ok(t, same, 'resize with disks that did not grow');
  t.match(same.stdout, /nothing to do: the device already is 8388608 bytes.*grow them first/);

  failsWith(
    t,
    await p.alpha.adm(['resize', '--size', '4M', 'r0']),
    10,
    /refusing to shrink a device that holds data: it is 8388608 bytes and --size asks for 4194304 \(ERR_RESIZE_SHRINK\)/,
    'shrink',
  );

  await truncate(p.alphaDisk, 12 * MiB);
  const one = await p.alpha.adm(['resize', 'r0']);
  ok(t, one, 'only one disk grew');
  t.match(one.stdout, /nothing to do: .*12582912 on alpha, 8388608 on beta/, 'names both disks');
  failsWith(
    t,
    await p.alpha.adm(['resize', '--size', '12M', 'r0']),
    10,
    /--size asks for 12582912 bytes but the backing disk on beta has only 8388608 \(ERR_DISK_TOO_SMALL\)/,
    '--size past the smaller disk',
  );

  ok(t, await p.beta.adm(['disconnect', 'r0']), 'disconnect');
  failsWith(
    t,
    await p.alpha.adm(['resize', 'r0']),
    10,
    /beta is not connected \(.*\): both disks grow together, so connect first \(ERR_RESIZE_DISCONNECTED\)/,
    'disconnected',
  );
  ok(t, await p.beta.adm(['connect', 'r0']), 'connect');
  await waitInSync(p);

  await truncate(p.betaDisk, 16 * MiB);
  const from = p.beta.logs.length;
  // As with drbdadm, the size in the file is the size asked for, read when the verb runs.
  for (const conf of ['alpha.conf', 'beta.conf']) {
    const file = path.join(dir, conf);
    await writeFile(
      file,
      (await readFile(file, 'utf8')).replace(/disk \{[^}]*\}/, 'disk { size 10M; }'),
    );
  }
  const grown = await p.beta.adm(['resize', '--assume-clean', 'r0']);
  ok(t, grown, 'resize --assume-clean on the Secondary, disk { size 10M } in the file');
  t.match(grown.stdout, /r0: grown from 8388608 to 10485760 bytes/);
  t.same(await sizes(p), [10 * MiB, 10 * MiB], 'both nodes hold the new size');
  t.equal(await nbdSize(p.alpha), 10 * MiB, 'a new NBD connection sees it');
  const st = await status(p.beta);
  t.equal(st.peers[0]!.replication, 'Established', 'no resync');
  t.equal(st.peers[0]!.outOfSync ?? 0, 0, 'nothing out of sync');
  t.notOk(logged(p.beta, from, /^resync started/), 'no resync started');
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, 10 * MiB)).count, 0, 'disks identical');
});

t.test(
  'ext4 under fio grows: files and a loop device, resize from the Secondary, resize2fs',
  { timeout: 240000 },
  async (t) => {
    const dir = tmpDir(t);
    // beta's disk is a loop device over a file: it grows with truncate + losetup -c.
    const betaFile = await makeDisk(dir, 32 * MiB, undefined, 'beta-backing.img');
    const lo = await run('losetup', ['-f', '--show', betaFile]);
    if (lo.code !== 0) throw new Error(`losetup: ${lo.stderr}`);
    const betaLoop = lo.stdout.trim();
    t.teardown(() => run('losetup', ['-d', betaLoop]).then(() => undefined));
    const p = await startPair(t, dir, {
      sizeBytes: 32 * MiB,
      betaDisk: betaLoop,
      betaMeta: path.join(dir, 'beta.meta'),
    });
    await promoteAndSync(p);

    const stack = await attachBlockStack(t, exportUri(p.alpha), path.join(dir, 'stack1'));
    const mk = await run('mkfs.ext4', ['-q', '-F', stack.loop], { timeoutMs: 60000 });
    t.equal(mk.code, 0, 'mkfs.ext4', { output: mk.stderr });
    t.equal((await stack.mount()).code, 0, 'mount');
    const kept = path.join(stack.mnt, 'kept.bin');
    const dd = await run('dd', ['if=/dev/urandom', `of=${kept}`, 'bs=1M', 'count=4', 'conv=fsync']);
    t.equal(dd.code, 0, 'a file to keep');
    const keptSum = createHash('sha256')
      .update(await readFile(kept))
      .digest('hex');
    const fsBefore = await fsBytes(stack.mnt);

    // fio writes files in the mounted filesystem during the whole resize.
    const fio = spawnTracked(
      'fio',
      [
        '--name=load',
        `--directory=${stack.mnt}`,
        '--size=6M',
        '--rw=randwrite',
        '--bs=4k',
        '--ioengine=psync',
        '--fsync=32',
        '--time_based',
        '--runtime=8',
      ],
      { t },
    );

    await truncate(p.alphaDisk, 48 * MiB);
    await truncate(betaFile, 48 * MiB);
    const c = await run('losetup', ['-c', betaLoop]);
    t.equal(c.code, 0, 'losetup -c: the loop device takes the new size');

    const from = p.alpha.logs.length;
    const r = await p.beta.adm(['resize', 'r0']);
    ok(t, r, 'resize on the Secondary');
    t.match(r.stdout, /r0: grown from 33554432 to 50331648 bytes/, 'to the size both disks offer');
    t.ok(logged(p.beta, 0, /^resize: handed to the Primary/), 'beta handed it to alpha');
    await p.alpha.waitForLog(
      (l) =>
        p.alpha.logs.indexOf(l) >= from &&
        /^resync started as SyncSource/.test(String(l.json?.msg)),
      30000,
    );
    await waitInSync(p);
    t.same(await sizes(p), [48 * MiB, 48 * MiB], 'both nodes hold the new size');
    t.equal(await nbdSize(p.alpha), 48 * MiB, 'a new NBD connection sees the new size');

    const fioExit = await fio.exited;
    t.equal(fioExit, 0, 'fio wrote through the resize without an error', { output: fio.output() });

    // The attach picks the new size up on its next connection; ext4 grows online.
    t.equal((await stack.detach()) !== 'timeout', true, 'old attach detached');
    const stack2 = await attachBlockStack(t, exportUri(p.alpha), path.join(dir, 'stack2'));
    // Online growth (EXT4_IOC_RESIZE_FS) needs CAP_SYS_RESOURCE, which this sandbox's root
    // lacks; resize2fs grows the unmounted filesystem through the new attach instead.
    const fsck1 = await run('e2fsck', ['-fy', stack2.loop], { timeoutMs: 60000 });
    t.equal(fsck1.code, 0, 'e2fsck before resize2fs finds nothing', { output: fsck1.stdout });
    const rs = await run('resize2fs', [stack2.loop], { timeoutMs: 60000 });
    t.equal(rs.code, 0, 'resize2fs', { output: rs.stderr });
    t.equal((await stack2.mount()).code, 0, 'mount again');
    const fsAfter = await fsBytes(stack2.mnt);
    t.ok(fsAfter >= fsBefore + 14 * MiB, 'the filesystem grew by the new 16 MiB', {
      fsBefore,
      fsAfter,
    });
    const fill = await run('dd', [
      'if=/dev/urandom',
      `of=${path.join(stack2.mnt, 'new.bin')}`,
      'bs=1M',
      'count=20',
      'conv=fsync',
    ]);
    t.equal(fill.code, 0, 'more data than the old size could hold');
    const again = createHash('sha256')
      .update(await readFile(path.join(stack2.mnt, 'kept.bin')))
      .digest('hex');
    t.equal(again, keptSum, 'the file written before the resize is intact');
    t.equal((await stack2.umount()).code, 0, 'umount');
    const fsck = await run('e2fsck', ['-fn', stack2.loop], { timeoutMs: 60000 });
    t.equal(fsck.code, 0, 'e2fsck finds nothing', { output: fsck.stdout });
    await stack2.detach();
    await waitInSync(p);
    t.equal((await diffBlocks(p.alphaDisk, betaLoop, 48 * MiB)).count, 0, 'disks identical');
  },
);

t.test(
  'a resize that reached one node only is finished by the next handshake',
  { timeout: 120000 },
  async (t) => {
    const dir = tmpDir(t);
    const betaMeta = path.join(dir, 'beta.meta');
    const p = await startPair(t, dir, { sizeBytes: 8 * MiB, betaMeta });
    await promoteAndSync(p);
    const w = await qemuIo(exportUri(p.alpha), ['write -P 7 1M 1M']);
    t.equal(w.code, 0, 'data written before');

    // beta went down having grown (its metadata committed the new size and bits, as its
    // side of a resize does), alpha never did: a crash or a cut link in between.
    await p.beta.stop();
    await truncate(p.alphaDisk, 12 * MiB);
    await truncate(p.betaDisk, 12 * MiB);
    const meta = DiskMeta.open(betaMeta, {
      diskSize: 12 * MiB,
      alUpdates: true,
      log: pino({ level: 'silent' }),
      resource: 'r0',
    });
    meta.growTo(12 * MiB, true);
    meta.close();

    const from = p.alpha.logs.length;
    await p.restart('beta');
    ok(t, await p.beta.adm(['up', 'r0']), 'beta up');
    await waitInSync(p);
    t.ok(
      logged(
        p.alpha,
        from,
        /^device grown from 8388608 to 12582912 bytes; the new area is out of sync/,
      ),
      'alpha grew at the handshake',
    );
    t.ok(logged(p.alpha, from, /^resync started as SyncSource/), 'and resynced the new area');
    t.same(await sizes(p), [12 * MiB, 12 * MiB], 'both nodes hold the larger size');
    t.equal(await nbdSize(p.alpha), 12 * MiB, 'a new NBD connection sees it');
    t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, 12 * MiB)).count, 0, 'disks identical');
  },
);
