// Fencing end to end (docs/quorum.md §5): two real daemons with `fencing resource-and-stonith`,
// a real fence-peer / unfence-peer shell script whose exit code the test sets per case, and a
// TCP proxy on the link to black-hole it. One pair serves every case in turn; each case heals
// the link and waits for the resync before the next, and ends with the disks compared.
//
//   1. exit 4 (peer outdated): the write held by the freeze completes, the peer is known
//      Outdated, and unfence-peer runs once the peer is UpToDate again;
//   2. exit 1 (failed): the write stays held until `resume-io`;
//   3. exit 6 (peer Primary): this node outdates itself and stays frozen; `secondary --force`;
//   4. a hanging handler is killed after handler-timeout and counts as failed;
//   5. `primary` on a disconnected Secondary runs fence-peer first: exit 4 promotes, exit 1
//      refuses (11) and only `--force` promotes.
import { existsSync } from 'node:fs';
import t, { type Test } from 'tap';
import { type RunResult, showRun, sleep, tmpDir } from '../helpers/server.js';
import { exportUri, failsWith, ok, type DaemonHandle } from '../helpers/daemon.js';
import { diffBlocks, qemuIo, status, waitFor } from '../helpers/pair.js';
import {
  peerOf,
  promoteAndSyncTrio,
  startTrio,
  type Trio,
  waitDisconnected,
  waitHealthy,
} from '../helpers/trio.js';
import { type HandlerCall, type HandlerScript, handlerScript } from '../helpers/handler-script.js';

const SIZE = 8 << 20;
const TIMEOUT = 30000;

/** A qemu-io write through `node`'s export, started now; `done` tells whether it finished. */
function startWrite(
  node: DaemonHandle,
  offset: string,
  pattern: number,
): { result: Promise<RunResult>; done: () => boolean } {
  let finished = false;
  const result = qemuIo(exportUri(node), [`write -P ${pattern} ${offset} 64k`]).then((r) => {
    finished = true;
    return r;
  });
  return { result, done: () => finished };
}

/** The daemon logged the end of a fence-peer call matching `pred` (its result fields). */
function fenceResultLogged(
  node: DaemonHandle,
  pred: (f: Record<string, unknown>) => boolean,
): Promise<unknown> {
  return node.waitForLog(
    (l) => l.json?.handler === 'fence-peer' && pred(l.json as Record<string, unknown>),
    TIMEOUT,
  );
}

/** DRBD's environment of a call on `me` about `peer` (docs/quorum.md §6, handlers.ts). */
function checkEnv(
  t: Test,
  trio: Trio,
  c: HandlerCall,
  me: 'alpha' | 'beta',
  peer: 'alpha' | 'beta',
  upToDate?: string,
): void {
  const id = { alpha: '0', beta: '1' };
  const e = c.env;
  t.equal(e.DRBD_RESOURCE, 'r0', `${c.name}: DRBD_RESOURCE`);
  t.equal(e.DRBD_MINOR, id[me], `${c.name}: DRBD_MINOR is ${me}'s minor`);
  t.equal(e.DRBD_CONF, trio.configs[me], `${c.name}: DRBD_CONF is ${me}'s resource file`);
  t.equal(e.DRBD_MY_NODE_ID, id[me], `${c.name}: DRBD_MY_NODE_ID`);
  t.equal(e.DRBD_NODE_ID_0, 'alpha', `${c.name}: DRBD_NODE_ID_0`);
  t.equal(e.DRBD_NODE_ID_1, 'beta', `${c.name}: DRBD_NODE_ID_1`);
  t.equal(e.DRBD_PEER, peer, `${c.name}: DRBD_PEER`);
  t.equal(e.DRBD_PEER_NODE_ID, id[peer], `${c.name}: DRBD_PEER_NODE_ID`);
  // The peer's host as the calling node's file gives it: 127.0.0.1 (a proxy's or the real port).
  t.equal(e.DRBD_PEER_ADDRESS, '127.0.0.1', `${c.name}: DRBD_PEER_ADDRESS`);
  t.equal(e.DRBD_PEER_AF, 'ipv4', `${c.name}: DRBD_PEER_AF`);
  if (upToDate !== undefined) t.equal(e.UP_TO_DATE_NODES, upToDate, `${c.name}: UP_TO_DATE_NODES`);
}

/** Heals the link, waits for both nodes UpToDate and connected, compares the disks. */
async function healAndCompare(t: Test, trio: Trio): Promise<void> {
  trio.heal('alpha', 'beta');
  await waitHealthy(trio, 60000);
  const d = await diffBlocks(trio.disks.alpha, trio.disks.beta, SIZE);
  t.equal(d.count, 0, 'after the resync the two disks are identical', { first: d.first });
}

/** `get-gi` on a node: current and bitmap UUIDs. */
async function gi(node: DaemonHandle): Promise<{ current: string; bitmap: string }> {
  const r = await node.adm(['get-gi', 'r0']);
  if (r.code !== 0) throw new Error(`get-gi on ${node.node}: ${showRun(r)}`);
  const [current, bitmap] = r.stdout.trim().split(':');
  return { current: current!, bitmap: bitmap! };
}

/**
 * After resume-io on a fencing freeze the writes go on without the peer: they must start a
 * new data generation (DRBD's NEW_CUR_UUID at resume-io), or a peer promoted meanwhile would
 * make this node a plain SyncTarget at the reconnect and its writes would vanish unnoticed.
 */
async function checkNewGeneration(
  t: Test,
  node: DaemonHandle,
  before: { current: string; bitmap: string },
): Promise<void> {
  t.equal(before.bitmap, '0000000000000000', 'before the cut: no bitmap UUID (in sync)');
  const after = await gi(node);
  t.not(after.current, before.current, 'writes after resume-io are in a new data generation');
  t.equal(
    BigInt(`0x${after.bitmap}`) & ~1n,
    BigInt(`0x${before.current}`) & ~1n,
    'the generation the peer holds is the bitmap UUID',
  );
}

/** Black-holes the link and starts a write on alpha, the Primary. */
function cutUnderWrite(trio: Trio, offset: string, pattern: number): ReturnType<typeof startWrite> {
  trio.blackhole('alpha', 'beta');
  return startWrite(trio.alpha, offset, pattern);
}

t.test('fencing resource-and-stonith with a real fence-peer script', async (t) => {
  const dir = tmpDir(t);
  const h: HandlerScript = handlerScript(dir);
  const trio = await startTrio(t, dir, {
    withTiebreaker: false,
    sizeBytes: SIZE,
    net: 'fencing resource-and-stonith;',
    options: 'handler-timeout 3;',
    handlers: h.handlers(['fence-peer', 'unfence-peer']),
  });
  await promoteAndSyncTrio(trio, 60000);
  t.same(h.calls(), [], 'no handler runs while the link is healthy');

  await t.test(
    'fence-peer exit 4: the peer is outdated and the held write completes',
    async (t) => {
      h.reset();
      h.set('fence-peer', 4);
      const first = await qemuIo(exportUri(trio.alpha), ['write -P 0x11 0 64k']);
      t.equal(first.code, 0, 'a write while connected succeeds', { output: showRun(first) });

      const w = cutUnderWrite(trio, '1M', 0x12);
      const r = await w.result;
      t.equal(r.code, 0, 'the write across the cut completes', { output: showRun(r) });
      t.notMatch(r.stdout + r.stderr, /failed/i, 'qemu-io reports no failure');
      const calls = h.calls();
      t.same(
        calls.map((c) => `${c.node}:${c.name}:${c.behaviour}`),
        ['alpha:fence-peer:4'],
        'fence-peer ran once, on alpha, before the write completed',
      );
      checkEnv(t, trio, calls[0]!, 'alpha', 'beta', '0x00000001');

      const a = await status(trio.alpha);
      t.equal(peerOf(a, 'beta').knownOutdated, true, 'alpha knows beta is Outdated');
      t.equal(a.suspended, false, 'I/O is not suspended');

      await healAndCompare(t, trio);
      const after = await h.waitCalls(
        (cs) => cs.some((c) => c.name === 'unfence-peer'),
        'unfence-peer called',
      );
      const unfence = after.filter((c) => c.name === 'unfence-peer');
      t.same(
        unfence.map((c) => c.node),
        ['alpha'],
        'unfence-peer ran once, on alpha, once beta was UpToDate',
      );
      checkEnv(t, trio, unfence[0]!, 'alpha', 'beta', '0x00000003');
      t.equal(
        after.filter((c) => c.name === 'fence-peer').length,
        1,
        'fence-peer did not run again',
      );
      t.equal(
        peerOf(await status(trio.alpha), 'beta').knownOutdated,
        false,
        'beta no longer Outdated',
      );
    },
  );

  await t.test('fence-peer exit 1: the write is held until resume-io', async (t) => {
    h.reset();
    h.set('fence-peer', 1);
    const before = await gi(trio.alpha);
    const w = cutUnderWrite(trio, '2M', 0x22);
    await h.waitCalls((cs) => cs.length === 1, 'fence-peer called');
    await fenceResultLogged(trio.alpha, (f) => f.exitCode === 1);
    const s = await waitFor(trio.alpha, (x) => x.suspended, 'suspended', TIMEOUT);
    t.match(s.suspendedReason, /fence-peer/, 'suspended for fencing');
    // Not a measure of speed: the write must simply still be held while I/O is frozen.
    await sleep(3000);
    t.notOk(w.done(), 'the write is still held after the handler failed');
    t.equal((await status(trio.alpha)).suspended, true, 'still suspended');
    t.same(
      h.calls().map((c) => `${c.node}:${c.name}:${c.behaviour}`),
      ['alpha:fence-peer:1'],
      'fence-peer ran once, on alpha',
    );

    ok(t, await trio.alpha.adm(['resume-io', 'r0']), 'resume-io on alpha');
    const r = await w.result;
    t.equal(r.code, 0, 'the held write completes after resume-io', { output: showRun(r) });
    t.notMatch(r.stdout + r.stderr, /failed/i, 'qemu-io reports no failure');
    t.equal((await status(trio.alpha)).suspended, false, 'no longer suspended');
    await checkNewGeneration(t, trio.alpha, before);

    await healAndCompare(t, trio);
    t.same(
      h.calls().map((c) => c.name),
      ['fence-peer'],
      'no unfence-peer: beta was never fenced',
    );
  });

  await t.test('fence-peer exit 6: alpha outdates itself and stays frozen', async (t) => {
    h.reset();
    h.set('fence-peer', 6);
    const w = cutUnderWrite(trio, '3M', 0x33);
    const s = await waitFor(
      trio.alpha,
      (x) => x.device.diskState === 'Outdated',
      'Outdated',
      TIMEOUT,
    );
    t.equal(s.role, 'Primary', 'alpha is still Primary');
    const s2 = await waitFor(trio.alpha, (x) => x.suspended, 'suspended', TIMEOUT);
    t.equal(s2.suspended, true, 'I/O stays frozen');
    t.notOk(w.done(), 'the write is held');
    t.same(
      h.calls().map((c) => `${c.node}:${c.name}:${c.behaviour}`),
      ['alpha:fence-peer:6'],
      'fence-peer ran once, on alpha',
    );

    ok(t, await trio.alpha.adm(['secondary', '--force', 'r0']), 'secondary --force on alpha');
    const r = await w.result;
    t.ok(r.code !== 0 || /failed|error/i.test(r.stdout + r.stderr), 'the held write fails', {
      output: showRun(r),
    });
    const a = await status(trio.alpha);
    t.equal(a.role, 'Secondary', 'alpha Secondary');
    t.equal(a.suspended, false, 'nothing suspended any more');

    await healAndCompare(t, trio);
    ok(t, await trio.alpha.adm(['primary', 'r0']), 'alpha Primary again');
  });

  await t.test(
    'a hanging fence-peer is killed after handler-timeout and counts as failed',
    async (t) => {
      h.reset();
      h.set('fence-peer', 'hang');
      const w = cutUnderWrite(trio, '4M', 0x44);
      const [call] = await h.waitCalls((cs) => cs.length === 1, 'fence-peer called');
      const proc = `/proc/${call!.pid}`;
      await fenceResultLogged(trio.alpha, (f) => f.timedOut === true);
      const gone = await waitUntil(() => !existsSync(proc), 10000);
      t.ok(gone, `the hanging handler (pid ${call!.pid}, exec sleep 600) is gone`);
      const s = await waitFor(trio.alpha, (x) => x.suspended, 'suspended', TIMEOUT);
      t.equal(s.suspended, true, 'I/O frozen after the timeout');
      t.notOk(w.done(), 'the write is held');
      t.same(
        h.calls().map((c) => `${c.node}:${c.name}:${c.behaviour}`),
        ['alpha:fence-peer:hang'],
        'fence-peer ran once, on alpha',
      );

      ok(t, await trio.alpha.adm(['resume-io', 'r0']), 'resume-io on alpha');
      const r = await w.result;
      t.equal(r.code, 0, 'the held write completes after resume-io', { output: showRun(r) });
      t.notMatch(r.stdout + r.stderr, /failed/i, 'qemu-io reports no failure');

      await healAndCompare(t, trio);
    },
  );

  await t.test('primary on a disconnected Secondary runs fence-peer first', async (t) => {
    ok(t, await trio.alpha.adm(['secondary', 'r0']), 'alpha Secondary');
    await waitFor(trio.beta, (s) => peerOf(s, 'alpha').role === 'Secondary', 'alpha Secondary');

    // exit 4: promoted.
    h.reset();
    h.set('fence-peer', 4);
    trio.cut('alpha', 'beta');
    await waitDisconnected(trio.beta, 'alpha');
    await waitDisconnected(trio.alpha, 'beta');
    ok(t, await trio.beta.adm(['primary', 'r0']), 'primary on beta, fence-peer exit 4');
    let calls = h.calls();
    t.same(
      calls.map((c) => `${c.node}:${c.name}:${c.behaviour}`),
      ['beta:fence-peer:4'],
      'fence-peer ran once, on beta, before it was promoted',
    );
    checkEnv(t, trio, calls[0]!, 'beta', 'alpha', '0x00000002');
    const b = await status(trio.beta);
    t.equal(b.role, 'Primary', 'beta Primary');
    t.equal(peerOf(b, 'alpha').knownOutdated, true, 'beta knows alpha is Outdated');
    const wb = await qemuIo(exportUri(trio.beta), ['write -P 0x55 5M 64k']);
    t.equal(wb.code, 0, 'beta writes', { output: showRun(wb) });
    await healAndCompare(t, trio);
    calls = await h.waitCalls((cs) => cs.some((c) => c.name === 'unfence-peer'), 'unfenced');
    t.same(
      calls.map((c) => `${c.node}:${c.name}`),
      ['beta:fence-peer', 'beta:unfence-peer'],
      'unfence-peer ran once, on beta',
    );

    // exit 1: refused, then --force.
    ok(t, await trio.beta.adm(['secondary', 'r0']), 'beta Secondary');
    await waitFor(trio.alpha, (s) => peerOf(s, 'beta').role === 'Secondary', 'beta Secondary');
    h.reset();
    h.set('fence-peer', 1);
    trio.cut('alpha', 'beta');
    await waitDisconnected(trio.beta, 'alpha');
    await waitDisconnected(trio.alpha, 'beta');
    const refused = await trio.beta.adm(['primary', 'r0']);
    failsWith(t, refused, 11, /not known to be Outdated/, 'primary with fence-peer failing');
    t.same(
      h.calls().map((c) => `${c.node}:${c.name}:${c.behaviour}`),
      ['beta:fence-peer:1'],
      'fence-peer ran once for the refused promotion',
    );
    t.equal((await status(trio.beta)).role, 'Secondary', 'beta stayed Secondary');
    ok(t, await trio.beta.adm(['primary', '--force', 'r0']), 'primary --force promotes anyway');
    t.same(
      h.calls().map((c) => `${c.node}:${c.name}:${c.behaviour}`),
      ['beta:fence-peer:1', 'beta:fence-peer:1'],
      'the forced promotion tried fence-peer once more',
    );
    t.equal((await status(trio.beta)).role, 'Primary', 'beta Primary');
    const wb2 = await qemuIo(exportUri(trio.beta), ['write -P 0x56 6M 64k']);
    t.equal(wb2.code, 0, 'beta writes', { output: showRun(wb2) });
    await healAndCompare(t, trio);
    t.notOk(
      h.calls().some((c) => c.name === 'unfence-peer'),
      'no unfence-peer: alpha was never fenced',
    );
  });
});

async function waitUntil(fn: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > until) return false;
    await sleep(100);
  }
  return true;
}
