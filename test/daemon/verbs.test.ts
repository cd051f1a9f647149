// The urbdadm verbs lifecycle.test.ts leaves out, end to end: real urbd daemons, the real
// CLI, real NBD clients. Generation identifiers (get-gi, show-gi, new-current-uuid),
// outdate, detach/attach, secondary --force, apply-al after a crash, a shrunk backing disk,
// al-updates no, dump, several resources at once and events --now --json; each with its
// exact output or one-line message and drbdadm's exit code (0 done, 1 usage, 10 failed,
// 11 state change refused, 20 no daemon).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import {
  adm,
  type NodeSpec,
  oneNodeConfig,
  startDaemon,
  failsWith,
  ok,
} from '../helpers/daemon.js';
import { openExport } from '../helpers/raw-client.js';
import {
  makeDisk,
  run,
  showRun as show,
  type Teardown,
  tmpDir,
  waitFor,
  within,
} from '../helpers/server.js';

t.setTimeout(240000);
// Every subtest has its own directory, run directory and daemon: they can run side by side.
t.jobs = 4;

const MiB = 1 << 20;
const JUST_CREATED = '0000000000000004';
const ZERO = '0000000000000000';

interface Node {
  dir: string;
  disk: string;
  spec: NodeSpec;
  sock: string;
}

/** r0 on a fresh sparse disk of its own, with metadata created (no daemon yet). */
async function freshNode(
  t: Teardown,
  opts: { size?: number; diskSection?: string } = {},
): Promise<Node> {
  const dir = tmpDir(t, 'urbd-verbs-');
  const disk = await makeDisk(dir, opts.size ?? 64 * MiB);
  const config = oneNodeConfig(dir, {
    node: 'alpha',
    disk,
    ...(opts.diskSection !== undefined ? { diskSection: opts.diskSection } : {}),
  });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const r = await adm(spec, ['create-md', 'r0']);
  if (r.code !== 0) throw new Error(`create-md failed: ${show(r)}`);
  return { dir, disk, spec, sock: path.join(spec.runDir, 'r0.nbd') };
}

/** The get-gi tuple; `flags` is the nine digits without colons (c u p n f o x a d). */
interface Gi {
  current: string;
  bitmap: string;
  h1: string;
  h2: string;
  flags: string;
}

const GI_LINE = /^([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):([01](?::[01]){8})$/;

function parseGi(line: string): Gi {
  const m = GI_LINE.exec(line);
  if (!m) throw new Error(`not a get-gi line: ${JSON.stringify(line)}`);
  return { current: m[1]!, bitmap: m[2]!, h1: m[3]!, h2: m[4]!, flags: m[5]!.replace(/:/g, '') };
}

async function getGi(spec: NodeSpec): Promise<Gi> {
  const r = await adm(spec, ['get-gi', 'r0']);
  if (r.code !== 0 || !r.stdout.endsWith('\n')) throw new Error(`get-gi: ${show(r)}`);
  return parseGi(r.stdout.slice(0, -1));
}

/** Bit 0 of a UUID: "Primary in this generation". */
function primaryBit(uuid: string): number {
  return parseInt(uuid.slice(-1), 16) & 1;
}

/** The UUID with bit 0 cleared, for "same generation" comparisons. */
function generation(uuid: string): string {
  return (BigInt(`0x${uuid}`) & ~1n).toString(16).toUpperCase().padStart(16, '0');
}

/** Out-of-sync KiB of the local device, from `status --verbose`. */
async function outOfSyncKiB(spec: NodeSpec): Promise<number> {
  const r = await adm(spec, ['status', '--verbose', 'r0']);
  const m = /^ {4}size:\d+ out-of-sync:(\d+) /m.exec(r.stdout);
  if (!m) throw new Error(`no out-of-sync in status --verbose: ${show(r)}`);
  return Number(m[1]);
}

/** qemu-io writes through the NBD export, flushed. */
async function qemuWrite(t: Test, sock: string, ...ranges: string[]): Promise<void> {
  const args = ['-f', 'raw'];
  for (const r of ranges) args.push('-c', `write -P 0x5a ${r}`);
  args.push('-c', 'flush', `nbd+unix:///r0?socket=${sock}`);
  const w = await run('qemu-io', args, { timeoutMs: 20000 });
  t.equal(w.code, 0, `qemu-io write ${ranges.join(', ')}`, { output: show(w) });
}

async function dumpJson(spec: NodeSpec): Promise<{
  clean: boolean;
  flags: Record<string, boolean>;
  uuids: { current: string; bitmap: string; history: [string, string] };
  bitmap: { bits: number; setBits: number; ranges: Array<[number, number]> };
}> {
  const r = await adm(spec, ['dump-md', '--json', 'r0']);
  if (r.code !== 0) throw new Error(`dump-md: ${show(r)}`);
  return JSON.parse(r.stdout) as Awaited<ReturnType<typeof dumpJson>>;
}

t.test('get-gi and show-gi, offline and online: the flags follow the state', async (t) => {
  const n = await freshNode(t);
  let r = await adm(n.spec, ['show-gi', 'r0']);
  ok(t, r, 'show-gi offline, no daemon');
  const lines = r.stdout.split('\n');
  t.equal(lines[0], '        +--<  Current data generation UUID  >-');
  t.equal(lines[4], '        V                V                V                V');
  t.equal(lines[5], `${JUST_CREATED}:${ZERO}:${ZERO}:${ZERO}:0:0:0:0:0:0:0:1:0`, 'the tuple');
  t.equal(lines[6], ' '.repeat(68) + Array(9).fill('^').join(' '), 'one arrow per flag');
  t.equal(
    lines[7],
    '                                      -<  Data consistency flag  >--+ | | | | | | | |',
  );
  t.match(
    r.stdout,
    /-< {2}This node was a crashed primary, and has not seen its peer since {2}>--\+ \| \|\n/,
  );
  t.match(r.stdout, /\nmeta-data: clean\nal-extents: 1237\n$/, 'clean, and the AL size');

  // create-md: only al-clean (digit 8) is set.
  let gi = await getGi(n.spec);
  t.same(gi, { current: JUST_CREATED, bitmap: ZERO, h1: ZERO, h2: ZERO, flags: '000000010' });
  r = await adm(n.spec, ['get-gi', 'r9']);
  failsWith(t, r, 10, /^urbdadm: get-gi r9: no resource "r9" in .*urbd\.conf/, 'get-gi r9');

  const d = await startDaemon(n.spec, { t });
  t.same(await getGi(n.spec), gi, 'daemon running, r0 down: read from the file');
  ok(t, await adm(d, ['up', 'r0']), 'up');
  gi = await getGi(n.spec);
  t.equal(gi.flags, '000000000', 'attached: al-clean cleared until an orderly stop');
  r = await adm(d, ['show-gi', 'r0']);
  ok(t, r, 'show-gi online');
  t.equal(r.stdout.split('\n')[5], `${JUST_CREATED}:${ZERO}:${ZERO}:${ZERO}:0:0:0:0:0:0:0:0:0`);
  t.match(
    r.stdout,
    /\nmeta-data: in use \(attached to the running urbd\)\n/,
    'online the store is in use, not "needs apply-al"',
  );

  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  const forced = await getGi(n.spec);
  t.equal(forced.flags, '111000000', 'consistent, up-to-date, primary');
  t.not(generation(forced.current), generation(JUST_CREATED), 'a new data generation');
  t.equal(primaryBit(forced.current), 1, 'written while Primary: bit 0 set');
  t.equal(forced.bitmap, JUST_CREATED, 'the old current moved to the bitmap slot');
  t.match((await adm(d, ['show-gi', 'r0'])).stdout, /:1:1:1:0:0:0:0:0:0\n/);

  ok(t, await adm(d, ['down', 'r0']), 'down');
  const down = await getGi(n.spec);
  t.equal(down.flags, '110000010', 'demoted and stopped cleanly: primary cleared, al-clean set');
  t.equal(down.current, generation(forced.current), 'the same generation, bit 0 cleared');
  t.equal(primaryBit(down.current), 0);
  t.equal(down.bitmap, JUST_CREATED);
  r = await adm(n.spec, ['show-gi', 'r0']);
  t.match(r.stdout, /\nmeta-data: clean\n/, 'down left it clean');
});

t.test('new-current-uuid, offline and online; --clear-bitmap clears out-of-sync', async (t) => {
  const n = await freshNode(t);
  // drbd.md §3.5: B is pushed into history (a zero B pushes nothing), then B := C, C := new.
  let r = await adm(n.spec, ['new-current-uuid', 'r0']);
  ok(t, r, 'new-current-uuid offline');
  t.equal(r.stdout, '');
  const off1 = await getGi(n.spec);
  t.equal(off1.bitmap, JUST_CREATED, 'the old current is the bitmap UUID');
  t.equal(off1.h1, ZERO, 'a zero bitmap UUID is not pushed into history');
  t.equal(primaryBit(off1.current), 0, 'not Primary: bit 0 clear');
  t.equal(off1.flags, '000000010', 'the flags are untouched');
  ok(t, await adm(n.spec, ['new-current-uuid', 'r0']), 'and again');
  const off2 = await getGi(n.spec);
  t.same(
    [off2.bitmap, off2.h1, off2.h2],
    [off1.current, JUST_CREATED, ZERO],
    'B pushed to H1, then the old current became B',
  );
  t.not(off2.current, off1.current);

  const d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up');
  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  const before = await getGi(n.spec);
  t.equal(before.bitmap, off2.current, 'the forced promotion rotated once more');
  await qemuWrite(t, n.sock, '0 1M', '8M 64k');
  t.equal(await outOfSyncKiB(n.spec), 1024 + 64, 'a standalone Primary marks every write');

  r = await adm(d, ['new-current-uuid', 'r0']);
  ok(t, r, 'new-current-uuid online');
  t.equal(r.stdout, '');
  const on1 = await getGi(n.spec);
  t.same(
    [on1.bitmap, on1.h1, on1.h2],
    [before.current, before.bitmap, before.h1],
    'H2 := H1, H1 := B, B := C',
  );
  t.not(generation(on1.current), generation(before.current), 'a fresh current UUID');
  t.equal(primaryBit(on1.current), 1, 'generated while Primary: bit 0 set');
  t.equal(primaryBit(on1.bitmap), 1, 'B keeps the Primary bit of the old current');
  t.equal(await outOfSyncKiB(n.spec), 1088, 'without --clear-bitmap the bitmap stays');

  r = await adm(d, ['new-current-uuid', '--clear-bitmap', 'r0']);
  ok(t, r, 'new-current-uuid --clear-bitmap online');
  const on2 = await getGi(n.spec);
  t.same(
    [on2.bitmap, on2.h1, on2.h2],
    [ZERO, on1.bitmap, on1.h1],
    'B pushed into history; with the bitmap cleared nothing is tracked (B = 0)',
  );
  t.not(on2.current, on1.current);
  t.equal(await outOfSyncKiB(n.spec), 0, 'status --verbose: out-of-sync:0');

  // Offline --clear-bitmap clears the stored pages.
  await qemuWrite(t, n.sock, '16M 4k');
  ok(t, await adm(d, ['down', 'r0']), 'down (persists the bitmap)');
  t.equal((await dumpJson(n.spec)).bitmap.setBits, 1, 'one block out of sync on disk');
  ok(t, await adm(d, ['new-current-uuid', '--clear-bitmap', 'r0']), 'offline --clear-bitmap');
  const md = await dumpJson(n.spec);
  t.equal(md.bitmap.setBits, 0, 'dump-md: the bitmap is clear');
  t.equal(md.uuids.history[0], `0x${on2.h1}`, 'B was 0: history unchanged');
  t.equal(md.uuids.bitmap, `0x${ZERO}`);
  t.not(md.uuids.current, `0x${generation(on2.current)}`);
});

t.test('outdate: online, offline, and where it is refused', async (t) => {
  const n = await freshNode(t);
  let r = await adm(n.spec, ['outdate', 'r0']);
  failsWith(
    t,
    r,
    11,
    /^urbdadm: outdate r0: State change failed: the disk is Inconsistent, already worse than Outdated \(SS_LOWER_THAN_OUTDATED\)$/m,
    'offline outdate of Inconsistent data',
  );
  const d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up');
  r = await adm(d, ['outdate', 'r0']);
  failsWith(
    t,
    r,
    11,
    /^urbdadm: outdate r0: State change failed: the disk is Inconsistent, already worse than Outdated \(SS_LOWER_THAN_OUTDATED\)$/m,
    'online outdate of Inconsistent data',
  );

  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  r = await adm(d, ['outdate', 'r0']);
  failsWith(
    t,
    r,
    11,
    /State change failed: refusing to outdate a Primary: it would be left without UpToDate data \(SS_NO_UP_TO_DATE_DISK\)$/m,
    'outdate on a Primary',
  );
  ok(t, await adm(d, ['secondary', 'r0']), 'secondary');
  t.equal((await adm(d, ['dstate', 'r0'])).stdout, 'UpToDate\n');
  ok(t, await adm(d, ['outdate', 'r0']), 'outdate an UpToDate Secondary');
  t.equal((await adm(d, ['dstate', 'r0'])).stdout, 'Outdated\n', 'dstate Outdated');
  t.equal((await getGi(n.spec)).flags.slice(0, 3), '100', 'persisted: consistent, not up-to-date');
  ok(t, await adm(d, ['outdate', 'r0']), 'outdating Outdated data again is no change');

  r = await adm(d, ['primary', 'r0']);
  failsWith(
    t,
    r,
    11,
    /State change failed: need access to UpToDate data: the local disk is Outdated \(use --force.*\(SS_NO_UP_TO_DATE_DISK\)$/m,
    'primary on Outdated data',
  );
  const gi = await getGi(n.spec);
  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force on Outdated data');
  t.equal((await adm(d, ['dstate', 'r0'])).stdout, 'UpToDate\n');
  const forced = await getGi(n.spec);
  t.equal(forced.bitmap, gi.current, 'forced: a new data generation');
  t.equal(forced.flags.slice(0, 3), '111');

  ok(t, await adm(d, ['down', 'r0']), 'down');
  r = await adm(d, ['outdate', 'r0']);
  ok(t, r, 'offline outdate (daemon running, r0 down)');
  t.equal(r.stdout, '');
  t.equal((await getGi(n.spec)).flags, '100000010', 'consistent, not up-to-date, clean');
  ok(t, await adm(d, ['up', 'r0']), 'up');
  t.equal((await adm(d, ['status', 'r0'])).stdout, 'r0 role:Secondary\n  disk:Outdated\n');
});

t.test('detach and attach', async (t) => {
  const n = await freshNode(t);
  const d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up');
  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  let r = await adm(d, ['detach', 'r0']);
  failsWith(
    t,
    r,
    11,
    /^urbdadm: detach r0: State change failed: refusing to detach a Primary that has no UpToDate peer \(demote it first\) \(SS_NO_UP_TO_DATE_DISK\)$/m,
    'detach a Primary',
  );
  ok(t, await adm(d, ['secondary', 'r0']), 'secondary');
  r = await adm(d, ['detach', 'r0']);
  ok(t, r, 'detach a Secondary');
  t.equal(r.stdout, '');
  t.equal((await adm(d, ['status', 'r0'])).stdout, 'r0 role:Secondary\n  disk:Diskless\n');
  r = await adm(d, ['status', '--verbose', 'r0']);
  t.match(r.stdout, /^ {4}size:0 out-of-sync:0 al-active:0\/1237$/m, 'no disk: no sizes');
  t.match(r.stdout, /^ {4}export:\S+r0\.nbd clients:0 serving:no$/m, 'the export stays');

  const q = await run('qemu-io', [
    '-f',
    'raw',
    '-c',
    'read 0 512',
    `nbd+unix:///r0?socket=${n.sock}`,
  ]);
  t.not(q.code, 0, 'NBD refused', { output: show(q) });
  t.match(
    q.stderr,
    /server reported: resource r0 is Secondary on alpha; only the Primary serves its device/,
  );
  r = await adm(d, ['primary', 'r0']);
  failsWith(
    t,
    r,
    11,
    /State change failed: no local disk \(Diskless\) and no UpToDate peer to read from \(SS_NO_UP_TO_DATE_DISK\)$/m,
    'primary while Diskless',
  );
  r = await adm(d, ['detach', 'r0']);
  failsWith(
    t,
    r,
    11,
    /State change failed: the device has no disk attached \(SS_IS_DISKLESS\)$/m,
    'detach twice',
  );

  r = await adm(d, ['dump-md', '--json', 'r0']);
  ok(t, r, 'dump-md while up but Diskless');
  const md = JSON.parse(r.stdout) as { clean: boolean; flags: Record<string, boolean> };
  t.equal(md.clean, true, 'detach closed the store cleanly');
  t.same(
    [md.flags.consistent, md.flags.wasUpToDate, md.flags.primaryIndicator],
    [true, true, false],
  );
  t.equal((await getGi(n.spec)).flags, '110000010', 'get-gi reads the file while Diskless');

  r = await adm(d, ['attach', 'r0']);
  ok(t, r, 'attach');
  t.equal((await adm(d, ['status', 'r0'])).stdout, 'r0 role:Secondary\n  disk:UpToDate\n');
  r = await adm(d, ['attach', 'r0']);
  failsWith(t, r, 10, /: r0 is already attached \(ERR_DISK_CONFIGURED\)$/m, 'attach twice');
  r = await adm(d, ['dump-md', 'r0']);
  failsWith(
    t,
    r,
    10,
    /r0 is attached to the running urbd; dump-md needs it detached/,
    'dump-md attached',
  );
  ok(t, await adm(d, ['primary', 'r0']), 'primary after attach, no --force needed');
});

t.test('secondary --force cuts NBD clients off; down then works', async (t) => {
  const n = await freshNode(t);
  const d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up');
  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  const { client } = await openExport({ path: n.sock }, 'r0');
  t.teardown(() => client.destroy());
  const clients = async (): Promise<number> => {
    const r = await adm(d, ['status', '--json', 'r0']);
    return (JSON.parse(r.stdout) as Array<{ device: { export: { clients: number } } }>)[0]!.device
      .export.clients;
  };
  t.ok(await waitFor(async () => (await clients()) === 1, 10000), 'the client is counted');
  failsWith(
    t,
    await adm(d, ['secondary', 'r0']),
    11,
    /in use by 1 NBD client.*\(SS_DEVICE_IN_USE\)$/m,
    'plain secondary',
  );
  const r = await adm(d, ['secondary', '--force', 'r0']);
  ok(t, r, 'secondary --force');
  t.equal(r.stdout, '');
  t.not(await within(client.closed, 10000), 'timeout', 'the client was cut off');
  t.equal((await adm(d, ['role', 'r0'])).stdout, 'Secondary\n');
  t.ok(await waitFor(async () => (await clients()) === 0, 10000), 'no clients left');
  t.ok(
    d.logs.some((l) => l.json?.msg === 'secondary --force: NBD clients cut off'),
    'the daemon logs it',
  );
  ok(t, await adm(d, ['down', 'r0']), 'plain down afterwards');
  t.equal((await getGi(n.spec)).flags, '110000010', 'down left it clean and not Primary');
});

t.test(
  'apply-al: nothing on a clean store; extents and crashed-primary after kill -9',
  async (t) => {
    const n = await freshNode(t);
    let r = await adm(n.spec, ['apply-al', 'r0']);
    ok(t, r, 'apply-al on fresh metadata');
    t.equal(r.stdout, 'r0: metadata is clean; nothing to apply\n');

    let d = await startDaemon(n.spec, { t });
    ok(t, await adm(d, ['up', 'r0']), 'up');
    r = await adm(d, ['apply-al', 'r0']);
    failsWith(
      t,
      r,
      10,
      /^urbdadm: apply-al r0: r0 is attached to the running urbd; apply-al needs it detached \(urbdadm down r0\)$/m,
      'apply-al while attached',
    );
    ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
    // Two 4 MiB extents: 0 and 2. Nothing of the bitmap reaches the disk before demotion.
    await qemuWrite(t, n.sock, '0 1M', '8M 1M');
    await d.kill9();

    t.equal((await getGi(n.spec)).flags, '111000000', 'a crashed Primary: unclean, primary set');
    r = await adm(n.spec, ['apply-al', 'r0']);
    ok(t, r, 'apply-al after kill -9');
    t.equal(
      r.stdout,
      'r0: applied 2 activity-log extents (2048 bits set); it was a crashed Primary\n',
    );
    r = await adm(n.spec, ['show-gi', 'r0']);
    t.equal(
      r.stdout.split('\n')[5]!.slice(68),
      '1:1:1:0:0:0:1:1:0',
      'crashed-primary and al-clean',
    );
    t.match(r.stdout, /\nmeta-data: clean\n/);
    const md = await dumpJson(n.spec);
    t.equal(md.flags.crashedPrimary, true, 'dump-md: crashedPrimary');
    t.equal(md.bitmap.setBits, 2048, 'every bit of both extents');
    t.same(md.bitmap.ranges, [
      [0, 1024],
      [2048, 3072],
    ]);
    r = await adm(n.spec, ['apply-al', 'r0']);
    t.equal(r.stdout, 'r0: metadata is clean; nothing to apply\n', 'applied once only');

    d = await startDaemon(n.spec, { t });
    ok(t, await adm(d, ['up', 'r0']), 'up after the crash');
    r = await adm(d, ['status', '--verbose', 'r0']);
    t.match(r.stdout, /^ {4}size:65536 out-of-sync:8192 al-active:0\/1237 crashed-primary:yes$/m);
    t.equal(
      (await getGi(n.spec)).flags,
      '110000100',
      'attached as Secondary: primary-indicator rewritten, crashed-primary kept',
    );
    // A crash now, as Secondary, marks nothing more; the crashed-primary flag of the first
    // crash is kept, since the peer has not had that tail yet (drbd.md §4.5).
    await d.kill9();
    r = await adm(n.spec, ['apply-al', 'r0']);
    t.equal(
      r.stdout,
      'r0: applied 0 activity-log extents (0 bits set); it was a crashed Primary\n',
      'a Secondary crashed: nothing more marked, the earlier crash still owed to the peer',
    );
    t.equal((await dumpJson(n.spec)).bitmap.setBits, 2048);
  },
);

t.test('a backing disk smaller than the metadata says: up refused, nothing changed', async (t) => {
  const n = await freshNode(t, { size: 64 * MiB });
  const before = await adm(n.spec, ['dump-md', '--json', 'r0']);
  t.equal(before.code, 0);
  fs.truncateSync(n.disk, 32 * MiB);
  const d = await startDaemon(n.spec, { t });
  let r = await adm(d, ['up', 'r0']);
  failsWith(
    t,
    r,
    10,
    /^urbdadm: up r0: \S+\.urbd-md: the metadata says the device is 67108864 bytes but the backing disk has only 33554432; refusing to attach \(was the disk shrunk or swapped\?\) \(ERR_OPEN_MD\)$/m,
    'up on a shrunk disk',
  );
  t.equal((await adm(d, ['status'])).stdout, '# no resources are up on alpha\n', 'nothing left up');
  r = await adm(d, ['attach', 'r0']);
  failsWith(t, r, 10, /67108864 bytes but the backing disk has only 33554432/, 'attach too');
  const after = await adm(n.spec, ['dump-md', '--json', 'r0']);
  t.equal(after.stdout, before.stdout, 'dump-md identical before and after');
  t.equal(fs.statSync(n.disk).size, 32 * MiB, 'and the disk was not grown back');
});

t.test('al-updates no: a crash as Primary owes a full resync', async (t) => {
  const n = await freshNode(t, { diskSection: 'al-updates no;' });
  let d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up');
  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force');
  t.equal((await getGi(n.spec)).flags, '111000001', 'al-disabled is recorded');
  await qemuWrite(t, n.sock, '8M 1M');
  let r = await adm(d, ['status', '--verbose', 'r0']);
  t.match(r.stdout, /out-of-sync:1024 al-active:0\/1237$/m, 'written, but no extent in the log');
  await d.kill9();

  d = await startDaemon(n.spec, { t });
  ok(t, await adm(d, ['up', 'r0']), 'up after kill -9');
  r = await adm(d, ['status', '--verbose', 'r0']);
  t.match(
    r.stdout,
    /^ {4}size:65536 out-of-sync:65536 al-active:0\/1237 crashed-primary:yes$/m,
    'every bit set: out-of-sync equals the device size',
  );
  const gi = await getGi(n.spec);
  t.equal(gi.flags, '110000101', 'full-sync done and dropped; crashed-primary, al-disabled');
  ok(t, await adm(d, ['down', 'r0']), 'down');
  const md = await dumpJson(n.spec);
  t.equal(md.bitmap.setBits, md.bitmap.bits, 'the full bitmap reached the disk');
});

t.test('dump: the parsed configuration, or exit 10 for an unknown resource', async (t) => {
  const n = await freshNode(t);
  let r = await adm(n.spec, ['dump']);
  ok(t, r, 'dump');
  t.match(r.stdout, /^resource r0 \{$/m);
  t.match(
    r.stdout,
    /^ {4}disk \{\n {8}on-io-error detach;\n {8}al-extents 1237;\n {8}al-updates yes;$/m,
    'defaults filled in',
  );
  t.match(r.stdout, /^ {8}protocol C;$/m);
  t.match(r.stdout, new RegExp(`^ {8}disk ${n.disk.replace(/[.]/g, '\\.')};$`, 'm'));
  t.match(r.stdout, /^ {8}address ipv4 127\.0\.0\.1:7789;$/m);
  const all = r.stdout;
  r = await adm(n.spec, ['dump', 'r0']);
  t.equal(r.stdout, all, 'dump r0 is the same with one resource');
  r = await adm(n.spec, ['dump', 'r9']);
  failsWith(
    t,
    r,
    10,
    /^urbdadm: dump: no resource "r9" in \S+urbd\.conf \(resources: r0\)$/m,
    'dump r9',
  );
});

t.test('RES all, and several resources where one fails: the worst exit wins', async (t) => {
  const dir = tmpDir(t, 'urbd-verbs-all-');
  const a = await makeDisk(dir, 16 * MiB, undefined, 'a.img');
  const b = await makeDisk(dir, 16 * MiB, undefined, 'b.img');
  const config = path.join(dir, 'urbd.conf');
  fs.writeFileSync(
    config,
    `resource r0 {
  on alpha { node-id 0; address 127.0.0.1:7789; device minor 0; disk ${a}; meta-disk internal; }
}
resource r1 {
  on alpha { node-id 0; address 127.0.0.1:7790; device minor 1; disk ${b}; meta-disk internal; }
}
`,
  );
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  let r = await adm(spec, ['create-md', 'all']);
  ok(t, r, 'create-md all');
  t.equal(r.stdout.split('\n').filter((l) => /new metadata written/.test(l)).length, 2);
  failsWith(t, await adm(spec, ['role', 'all']), 20, /cannot reach urbd/, 'role all, no daemon');

  const d = await startDaemon(spec, { t });
  ok(t, await adm(d, ['up', 'all']), 'up all');
  r = await adm(d, ['status', 'all']);
  ok(t, r, 'status all');
  t.equal(
    r.stdout,
    'r0 role:Secondary\n  disk:Inconsistent\n\nr1 role:Secondary\n  disk:Inconsistent\n',
  );
  t.equal((await adm(d, ['status'])).stdout, r.stdout, 'status with no RES is status all');
  t.equal((await adm(d, ['role', 'all'])).stdout, 'Secondary\nSecondary\n', 'role all');
  t.equal((await adm(d, ['dstate', 'all'])).stdout, 'Inconsistent\nInconsistent\n');

  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force r0');
  r = await adm(d, ['primary', 'all']);
  failsWith(
    t,
    r,
    11,
    /^urbdadm: primary r1: State change failed: need access to UpToDate data: the local disk is Inconsistent/m,
    'primary all: r1 refused',
  );
  t.equal((await adm(d, ['role', 'all'])).stdout, 'Primary\nSecondary\n', 'r0 still promoted');

  r = await adm(d, ['up', 'r9', 'r1']);
  t.equal(r.code, 10, 'up r9 r1: worst of 10 and 10');
  t.match(r.stderr, /^urbdadm: up r9: no resource "r9"/m);
  t.match(r.stderr, /^urbdadm: up r1: r1 is already up on alpha \(ERR_RES_IN_USE\)$/m);
  t.equal(r.stderr.trim().split('\n').length, 2, 'one line per failure');

  r = await adm(d, ['secondary', 'r9', 'r1', 'r0']);
  t.equal(r.code, 10, 'secondary r9 r1 r0: r9 fails, the others run');
  t.equal(
    r.stderr,
    'urbdadm: secondary r9: r9: no such resource is up on alpha (ERR_RES_NOT_KNOWN)\n',
  );
  t.equal((await adm(d, ['role', 'all'])).stdout, 'Secondary\nSecondary\n', 'r0 demoted anyway');

  ok(t, await adm(d, ['primary', '--force', 'r0']), 'primary --force r0');
  r = await adm(d, ['primary', 'r1', 'r9']);
  t.equal(r.code, 11, 'primary r1 r9: 11 (refused) beats 10 (failed)');
  t.equal(r.stderr.trim().split('\n').length, 2);
  ok(t, await adm(d, ['secondary', 'all']), 'secondary all');
  t.equal((await adm(d, ['role', 'all'])).stdout, 'Secondary\nSecondary\n');

  r = await adm(d, ['down', 'r9', 'r0']);
  failsWith(
    t,
    r,
    10,
    /^urbdadm: down r9: no resource "r9" in \S+urbd\.conf \(resources: r0, r1\) \(ERR_RES_NOT_KNOWN\)$/m,
    'down r9 r0',
  );
  r = await adm(d, ['status', 'r0', 'r1']);
  t.equal(r.code, 10, 'status of a resource that is not up');
  t.equal(r.stderr, 'urbdadm: r0: no such resource is up on alpha\n', 'r0 went down all the same');
  t.equal(r.stdout, 'r1 role:Secondary\n  disk:Inconsistent\n', 'the rest is still shown');
  // drbdsetup's down is missing-ok: down of a configured resource that is not up is done.
  ok(t, await adm(d, ['down', 'r0']), 'down r0 again: nothing to do');
  ok(t, await adm(d, ['down', 'all']), 'down all with r0 down already');
  t.equal((await adm(d, ['status'])).stdout, '# no resources are up on alpha\n');
});

t.test('events --now --json: one object per line, exists, then the - marker', async (t) => {
  const n = await freshNode(t);
  failsWith(
    t,
    await adm(n.spec, ['events', '--now', '--json']),
    20,
    /^urbdadm: events: cannot reach urbd/,
    'no daemon',
  );
  const d = await startDaemon(n.spec, { t });
  const parse = (out: string): Array<Record<string, unknown>> =>
    out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  let r = await adm(d, ['events', '--now', '--json']);
  ok(t, r, 'nothing up');
  let ev = parse(r.stdout);
  t.equal(ev.length, 1, 'only the end marker');
  t.match(ev[0], { kind: 'exists', object: '-', fields: {} });

  ok(t, await adm(d, ['up', 'r0']), 'up');
  r = await adm(d, ['events', '--now', '--json']);
  ok(t, r, 'events --now --json');
  t.ok(r.stdout.endsWith('\n'), 'newline-terminated');
  ev = parse(r.stdout);
  t.same(
    ev.map((e) => [e.kind, e.object]),
    [
      ['exists', 'resource'],
      ['exists', 'device'],
      ['exists', '-'],
    ],
  );
  t.same(ev[0]!.fields, { name: 'r0', role: 'Secondary', suspended: 'no' });
  t.match(ev[1]!.fields, { name: 'r0', volume: 0, minor: 0, disk: 'Inconsistent' });
  for (const e of ev) {
    t.same(Object.keys(e), ['kind', 'object', 'fields', 'time']);
    t.ok(!Number.isNaN(Date.parse(String(e.time))), 'an ISO time');
  }
  // A resource the configuration does not know is exit 10, as for every other verb.
  failsWith(
    t,
    await adm(d, ['events', '--now', '--json', 'r9']),
    10,
    /^urbdadm: events r9: no resource "r9" in /,
    'events r9',
  );
  ok(t, await adm(d, ['down', 'r0']), 'down');
  r = await adm(d, ['events', '--now', '--json', 'r0']);
  t.same(
    parse(r.stdout).map((e) => e.object),
    ['-'],
    'a configured resource that is down: only the marker',
  );
});
