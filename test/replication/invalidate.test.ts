// invalidate and invalidate-remote (README "Verbs"): a full resync the admin asks for, in
// the direction asked, ending with identical disks and generations that agree (a reconnect
// afterwards resyncs nothing); and each refusal with its reason.
import t, { type Test } from 'tap';
import { open } from 'node:fs/promises';
import { tmpDir } from '../helpers/server.js';
import { exportUri, failsWith, ok, type DaemonHandle } from '../helpers/daemon.js';
import type { LogLine } from '../helpers/server.js';
import {
  connected,
  diffBlocks,
  type Pair,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';

const SIZE = 16 << 20;
const BLOCK = 4096;
/** Blocks written behind a daemon's back: only the other side's copy of them is right. */
const STRAY = [0, 7, 1000, SIZE / BLOCK - 1];

/** Writes 0xee over the STRAY blocks of a backing file, as a failing disk or a mistake would. */
async function scribble(file: string): Promise<void> {
  const f = await open(file, 'r+');
  try {
    for (const b of STRAY) await f.write(Buffer.alloc(BLOCK, 0xee), 0, BLOCK, b * BLOCK);
    await f.sync();
  } finally {
    await f.close();
  }
}

async function blockByte(file: string, block: number): Promise<number> {
  const f = await open(file, 'r');
  try {
    const b = Buffer.alloc(1);
    await f.read(b, 0, 1, block * BLOCK);
    return b[0]!;
  } finally {
    await f.close();
  }
}

function logged(n: DaemonHandle, from: number, re: RegExp): boolean {
  return n.logs.slice(from).some((l) => re.test(String(l.json?.msg)));
}

/** The next log line from `n` matching `pred`, ignoring lines logged before `from`. */
function nextLog(
  n: DaemonHandle,
  from: number,
  pred: (l: LogLine) => boolean,
  timeoutMs = 30000,
): Promise<LogLine> {
  return n.waitForLog((l) => n.logs.indexOf(l) >= from && pred(l), timeoutMs);
}

/** Runs a full resync the admin asked for on `on` and waits until both are in sync again. */
async function fullResync(
  t: Test,
  p: Pair,
  on: DaemonHandle,
  verb: string,
  target: DaemonHandle,
): Promise<void> {
  const from = target.logs.length;
  ok(t, await on.adm([verb, 'r0']), `${verb} on ${on.node}`);
  const line = await nextLog(target, from, (l) => /^resync started as/.test(String(l.json?.msg)));
  t.equal(line.json?.msg, 'resync started as SyncTarget', `${target.node} is SyncTarget`);
  t.equal(line.json?.bytes, SIZE, 'of the whole device');
  await waitInSync(p);
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 0, 'disks identical');
}

/**
 * Disconnect and reconnect: the generations must agree. Alpha (Primary) starts a new one when
 * it loses beta, so the handshake makes beta SyncTarget of alpha's bitmap (rule bitmap-peer),
 * which must be empty: no split brain, no full sync, nothing to copy.
 */
async function reconnectFindsNothing(t: Test, p: Pair): Promise<void> {
  const from = p.beta.logs.length;
  ok(t, await p.beta.adm(['disconnect', 'r0']), 'beta disconnect');
  ok(t, await p.beta.adm(['connect', 'r0']), 'beta connect');
  const line = await nextLog(p.beta, from, (l) => /^handshake: /.test(String(l.json?.msg)));
  t.equal(line.json?.msg, 'handshake: target by rule bitmap-peer', 'generations agree');
  t.equal(line.json?.full, false, 'no full sync');
  t.equal(line.json?.peerDirty, 0, 'nothing to copy');
  t.equal(line.json?.selfDirty, 0, 'nothing marked on beta');
  await waitInSync(p);
}

// One pair through every case in turn: a pair costs seconds to start and sync.
t.test('invalidate and invalidate-remote', async (t) => {
  const p = await startPair(t, tmpDir(t), { sizeBytes: SIZE });

  await t.test('refused between two fresh (Inconsistent) disks', async (t) => {
    await waitFor(p.alpha, connected, 'connected', 30000);
    failsWith(
      t,
      await p.alpha.adm(['invalidate', 'r0']),
      11,
      /peer's disk is Inconsistent, not UpToDate/,
      'invalidate while the peer is Inconsistent',
    );
    failsWith(
      t,
      await p.alpha.adm(['invalidate-remote', 'r0']),
      11,
      /local disk is Inconsistent, not UpToDate/,
      'invalidate-remote from an Inconsistent disk',
    );
    await promoteAndSync(p);
    const w = await qemuIo(exportUri(p.alpha), [`write -P 0x5a 0 ${SIZE}`]);
    t.equal(w.code, 0, 'pattern written through alpha');
  });

  await t.test("invalidate on the Secondary: the Primary's data replaces it", async (t) => {
    await scribble(p.betaDisk);
    t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, STRAY.length, 'beta differs');
    const from = p.alpha.logs.length;
    // The application keeps writing through alpha meanwhile: none of it may be lost.
    const half = SIZE / 2;
    const [w] = await Promise.all([
      qemuIo(exportUri(p.alpha), [`write -P 0x77 0 ${half}`]),
      fullResync(t, p, p.beta, 'invalidate', p.beta),
    ]);
    t.equal(w!.code, 0, 'writes during the invalidate acknowledged', { output: w!.stderr });
    await waitInSync(p);
    t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 0, 'still identical');
    t.equal(await blockByte(p.betaDisk, 7), 0x77, 'the writes made during it are on beta');
    t.equal(await blockByte(p.betaDisk, SIZE / BLOCK - 1), 0x5a, "alpha's data won");
    t.ok(logged(p.alpha, from, /resync started as SyncSource/), 'alpha was the source');
    const back = await qemuIo(exportUri(p.alpha), [`write -P 0x5a 0 ${half}`]);
    t.equal(back.code, 0, 'pattern restored');
  });

  await t.test('invalidate-remote on the Primary: the peer takes its data', async (t) => {
    await scribble(p.betaDisk);
    await fullResync(t, p, p.alpha, 'invalidate-remote', p.beta);
    t.equal(await blockByte(p.betaDisk, 1000), 0x5a, "alpha's data won");
    await reconnectFindsNothing(t, p);
  });

  await t.test('invalidate on the Primary: it resyncs from the Secondary, serving', async (t) => {
    await scribble(p.alphaDisk);
    await fullResync(t, p, p.alpha, 'invalidate', p.alpha);
    t.equal(await blockByte(p.alphaDisk, 0), 0x5a, "beta's copy won");
    const r = await qemuIo(exportUri(p.alpha), [`read -P 0x5a 0 ${SIZE}`]);
    t.equal(r.code, 0, 'alpha serves the data', { output: r.stdout + r.stderr });
    t.equal((await status(p.alpha)).role, 'Primary', 'alpha stayed Primary');
    await reconnectFindsNothing(t, p);
  });

  await t.test('refused towards a Primary and during a resync', async (t) => {
    failsWith(
      t,
      await p.beta.adm(['invalidate-remote', 'r0']),
      11,
      /peer is Primary: run `urbdadm invalidate` on it/,
      'invalidate-remote towards a Primary',
    );
    // Paused first, so the resync is still there to be refused.
    ok(t, await p.beta.adm(['pause-sync', 'r0']), 'pause-sync on beta');
    ok(t, await p.beta.adm(['invalidate', 'r0']), 'invalidate on beta');
    await waitFor(p.beta, (s) => s.peers[0]!.replication === 'PausedSyncT', 'PausedSyncT');
    failsWith(
      t,
      await p.beta.adm(['invalidate', 'r0']),
      11,
      /resync is already running \(PausedSyncT\)/,
      'invalidate during a resync',
    );
    failsWith(
      t,
      await p.alpha.adm(['invalidate-remote', 'r0']),
      11,
      /resync is already running \(PausedSyncS\)/,
      'invalidate-remote during a resync',
    );
    ok(t, await p.beta.adm(['resume-sync', 'r0']), 'resume-sync');
    await waitInSync(p);
  });

  await t.test('disconnected: a Secondary is resynced at the next connection', async (t) => {
    ok(t, await p.beta.adm(['disconnect', 'r0']), 'beta disconnect');
    await waitFor(p.alpha, (s) => s.peers[0]!.connection !== 'Connected', 'disconnected');
    failsWith(
      t,
      await p.alpha.adm(['invalidate', 'r0']),
      11,
      /not connected to an UpToDate peer/,
      'invalidate on the disconnected Primary',
    );
    failsWith(
      t,
      await p.beta.adm(['invalidate-remote', 'r0']),
      11,
      /needs an established connection/,
      'invalidate-remote while disconnected',
    );
    await scribble(p.betaDisk);
    ok(t, await p.beta.adm(['invalidate', 'r0']), 'invalidate on the disconnected beta');
    t.equal((await status(p.beta)).device.diskState, 'Inconsistent', 'beta is Inconsistent');
    const from = p.beta.logs.length;
    ok(t, await p.beta.adm(['connect', 'r0']), 'beta connect');
    const line = await nextLog(p.beta, from, (l) => /^resync started as/.test(String(l.json?.msg)));
    t.equal(line.json?.msg, 'resync started as SyncTarget', 'beta is SyncTarget');
    t.equal(line.json?.bytes, SIZE, 'of the whole device');
    await waitInSync(p);
    t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 0, 'disks identical');
    t.equal(await blockByte(p.betaDisk, 7), 0x5a, "alpha's data won");
  });

  await t.test('refused without a disk', async (t) => {
    ok(t, await p.beta.adm(['detach', 'r0']), 'detach beta');
    failsWith(
      t,
      await p.beta.adm(['invalidate', 'r0']),
      11,
      /disk is Diskless: there is no local data/,
      'invalidate on a diskless node',
    );
    await waitFor(p.alpha, (s) => s.peers[0]!.peerDisk === 'Diskless', 'peer Diskless');
    failsWith(
      t,
      await p.alpha.adm(['invalidate-remote', 'r0']),
      11,
      /peer's disk is Diskless/,
      'invalidate-remote towards a diskless peer',
    );
  });
});
