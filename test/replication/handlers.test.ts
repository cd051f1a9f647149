// Every handler urbd calls (docs/quorum.md §6), end to end: real daemons on loopback, one real
// shell script behind every handler (test/helpers/handler-script.ts), each call counted per
// node and its DRBD environment checked. fence-peer and unfence-peer are in fencing.test.ts;
// out-of-sync is never called (no online verify).
//
//   - before-resync-target / after-resync-target around a resync onto beta; a failing
//     before-resync-target drops the connection and leaves beta's data alone;
//   - disconnected when an established connection ends;
//   - initial-split-brain and split-brain on both nodes for an unresolved split brain;
//   - pri-lost-after-sb on the Primary under after-sb-1pri call-pri-lost-after-sb;
//   - local-io-error on a failing backing disk, once (the disk is detached);
//   - quorum-lost on a Primary that lost quorum (three nodes).
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { makeDisk, sha256File, showRun, sleep, tmpDir } from '../helpers/server.js';
import { exportUri, ok } from '../helpers/daemon.js';
import { diffBlocks, qemuIo, status, waitFor } from '../helpers/pair.js';
import {
  peerOf,
  promoteAndSyncTrio,
  startTrio,
  type Trio,
  type TrioNode,
  waitDisconnected,
  waitHealthy,
} from '../helpers/trio.js';
import { type HandlerCall, type HandlerScript, handlerScript } from '../helpers/handler-script.js';

const SIZE = 4 << 20;
const TIMEOUT = 30000;
const ID: Record<TrioNode, string> = { alpha: '0', beta: '1', gamma: '2' };

/** `node:name` of each call, sorted: the calls of two nodes interleave in any order. */
const summary = (calls: HandlerCall[]): string[] => calls.map((c) => `${c.node}:${c.name}`).sort();

/** The one call of `name` on `node`, with its count asserted. */
function only(t: Test, calls: HandlerCall[], node: TrioNode, name: string): HandlerCall {
  const mine = calls.filter((c) => c.node === node && c.name === name);
  t.equal(mine.length, 1, `${name} called once on ${node}`);
  return mine[0]!;
}

/**
 * DRBD's environment of a call on `me` (about `peer`, when the call is about one): the
 * variables docs/quorum.md §6 and handlers.ts buildHandlerEnv document.
 */
function checkEnv(
  t: Test,
  trio: Trio,
  c: HandlerCall,
  me: TrioNode,
  peer: TrioNode | undefined,
  upToDate?: string,
): void {
  const e = c.env;
  const what = `${c.name} on ${me}`;
  t.equal(e.DRBD_RESOURCE, 'r0', `${what}: DRBD_RESOURCE`);
  t.equal(e.DRBD_MINOR, ID[me], `${what}: DRBD_MINOR`);
  t.equal(e.DRBD_CONF, trio.configs[me], `${what}: DRBD_CONF is ${me}'s resource file`);
  t.equal(e.DRBD_MY_NODE_ID, ID[me], `${what}: DRBD_MY_NODE_ID`);
  t.equal(e.DRBD_NODE_ID_0, 'alpha', `${what}: DRBD_NODE_ID_0`);
  t.equal(e.DRBD_NODE_ID_1, 'beta', `${what}: DRBD_NODE_ID_1`);
  if (trio.nodes.includes('gamma')) t.equal(e.DRBD_NODE_ID_2, 'gamma', `${what}: DRBD_NODE_ID_2`);
  if (peer === undefined) {
    t.equal(e.DRBD_PEER, undefined, `${what}: about no peer, no DRBD_PEER`);
    t.equal(e.DRBD_PEER_NODE_ID, undefined, `${what}: no DRBD_PEER_NODE_ID`);
  } else {
    t.equal(e.DRBD_PEER, peer, `${what}: DRBD_PEER`);
    t.equal(e.DRBD_PEER_NODE_ID, ID[peer], `${what}: DRBD_PEER_NODE_ID`);
    t.equal(e.DRBD_PEER_ADDRESS, '127.0.0.1', `${what}: DRBD_PEER_ADDRESS`);
  }
  if (upToDate !== undefined) t.equal(e.UP_TO_DATE_NODES, upToDate, `${what}: UP_TO_DATE_NODES`);
}

async function write(t: Test, trio: Trio, node: TrioNode, cmd: string): Promise<void> {
  const r = await qemuIo(exportUri(trio.node(node)), [cmd]);
  t.equal(r.code, 0, `${node}: ${cmd}`, { output: showRun(r) });
}

async function cutAndWait(trio: Trio): Promise<void> {
  trio.cut('alpha', 'beta');
  await waitDisconnected(trio.alpha, 'beta');
  await waitDisconnected(trio.beta, 'alpha');
}

async function disksIdentical(t: Test, trio: Trio, size = SIZE): Promise<void> {
  const d = await diffBlocks(trio.disks.alpha, trio.disks.beta, size);
  t.equal(d.count, 0, 'the two disks are identical', { first: d.first });
}

/** Until `node` is StandAlone towards `peer` with a last error matching `re`. */
function waitStandAlone(trio: Trio, node: TrioNode, peer: TrioNode, re: RegExp) {
  return waitFor(
    trio.node(node),
    (s) => {
      const p = peerOf(s, peer);
      return p.connection === 'StandAlone' && re.test(p.lastError ?? '');
    },
    `StandAlone with an error matching ${re}`,
    TIMEOUT,
  );
}

t.test('resync, disconnected and split-brain handlers', async (t) => {
  const dir = tmpDir(t);
  const h: HandlerScript = handlerScript(dir);
  const trio = await startTrio(t, dir, {
    withTiebreaker: false,
    sizeBytes: SIZE,
    handlers: h.handlers([
      'before-resync-target',
      'after-resync-target',
      'initial-split-brain',
      'split-brain',
      'pri-lost-after-sb',
      'disconnected',
    ]),
  });
  await promoteAndSyncTrio(trio, 60000);

  await t.test('the initial sync onto beta', async (t) => {
    const calls = await h.waitCalls(
      (cs) => cs.some((c) => c.name === 'after-resync-target'),
      'after-resync-target called',
    );
    t.same(
      summary(calls),
      ['beta:after-resync-target', 'beta:before-resync-target'],
      'before- and after-resync-target once each, on the SyncTarget only',
    );
    t.equal(calls[0]!.name, 'before-resync-target', 'before-resync-target first');
    checkEnv(t, trio, calls[0]!, 'beta', 'alpha');
    checkEnv(t, trio, calls[1]!, 'beta', 'alpha', '0x00000003');
  });

  await t.test('a cut link, writes, a resync onto beta', async (t) => {
    h.reset();
    await cutAndWait(trio);
    let calls = await h.waitCalls((cs) => cs.length >= 2, 'disconnected on both nodes');
    t.same(
      summary(calls),
      ['alpha:disconnected', 'beta:disconnected'],
      'disconnected once on each node',
    );
    checkEnv(t, trio, only(t, calls, 'alpha', 'disconnected'), 'alpha', 'beta');
    checkEnv(t, trio, only(t, calls, 'beta', 'disconnected'), 'beta', 'alpha');

    await write(t, trio, 'alpha', 'write -P 0x21 1M 256k');
    trio.heal('alpha', 'beta');
    await waitHealthy(trio, 60000);
    calls = await h.waitCalls(
      (cs) => cs.some((c) => c.name === 'after-resync-target'),
      'after-resync-target called',
    );
    t.same(
      summary(calls),
      [
        'alpha:disconnected',
        'beta:after-resync-target',
        'beta:before-resync-target',
        'beta:disconnected',
      ],
      'the reconnect: before- and after-resync-target once each on beta, nothing else',
    );
    const before = only(t, calls, 'beta', 'before-resync-target');
    const after = only(t, calls, 'beta', 'after-resync-target');
    t.ok(calls.indexOf(before) < calls.indexOf(after), 'before-resync-target came first');
    checkEnv(t, trio, before, 'beta', 'alpha');
    checkEnv(t, trio, after, 'beta', 'alpha', '0x00000003');
    await disksIdentical(t, trio);
  });

  await t.test('before-resync-target fails: the connection drops, beta is untouched', async (t) => {
    await cutAndWait(trio);
    await write(t, trio, 'alpha', 'write -P 0x31 2M 256k');
    const betaBefore = await sha256File(trio.disks.beta);
    h.reset();
    h.set('before-resync-target', 1);
    trio.heal('alpha', 'beta');
    const b = await waitStandAlone(trio, 'beta', 'alpha', /before-resync-target/);
    t.match(
      peerOf(b, 'alpha').lastError,
      /before-resync-target handler failed \(exit code 1\)/,
      "beta's last error names the handler and its exit code",
    );
    const calls = h.calls({ name: 'before-resync-target' });
    t.same(summary(calls), ['beta:before-resync-target'], 'called once, on beta');
    checkEnv(t, trio, calls[0]!, 'beta', 'alpha');
    t.equal(h.calls({ name: 'after-resync-target' }).length, 0, 'no after-resync-target');
    t.equal(await sha256File(trio.disks.beta), betaBefore, "beta's disk was not written");
    t.equal(peerOf(b, 'alpha').replication, 'Off', 'no resync running');

    // Recovery: the handler works again, connect.
    h.set('before-resync-target', 0);
    h.reset();
    for (const n of ['alpha', 'beta'] as const) {
      const s = await status(trio.node(n));
      if (peerOf(s, n === 'alpha' ? 'beta' : 'alpha').connection === 'StandAlone') {
        ok(t, await trio.node(n).adm(['connect', 'r0']), `connect on ${n}`);
      }
    }
    await waitHealthy(trio, 60000);
    const again = await h.waitCalls(
      (cs) => cs.some((c) => c.name === 'after-resync-target'),
      'after-resync-target called',
    );
    t.same(
      summary(again.filter((c) => c.name !== 'disconnected')),
      ['beta:after-resync-target', 'beta:before-resync-target'],
      'the resync after the reconnect: each once',
    );
    await disksIdentical(t, trio);
  });

  await t.test('split brain, default after-sb policies (disconnect)', async (t) => {
    await cutAndWait(trio);
    ok(t, await trio.beta.adm(['primary', 'r0']), 'beta promoted while apart');
    await write(t, trio, 'alpha', 'write -P 0x41 3M 64k');
    await write(t, trio, 'beta', 'write -P 0x42 3M 64k');
    h.reset();
    trio.heal('alpha', 'beta');
    await waitStandAlone(trio, 'alpha', 'beta', /Split-Brain/);
    await waitStandAlone(trio, 'beta', 'alpha', /Split-Brain/);
    const calls = await h.waitCalls(
      (cs) => cs.filter((c) => /split-brain/.test(c.name)).length >= 4,
      'both split-brain handlers on both nodes',
    );
    const sb = calls.filter((c) => c.name !== 'disconnected');
    t.same(
      summary(sb),
      [
        'alpha:initial-split-brain',
        'alpha:split-brain',
        'beta:initial-split-brain',
        'beta:split-brain',
      ],
      'initial-split-brain and split-brain once on each node, no pri-lost-after-sb',
    );
    for (const [me, peer] of [
      ['alpha', 'beta'],
      ['beta', 'alpha'],
    ] as const) {
      checkEnv(t, trio, only(t, sb, me, 'initial-split-brain'), me, peer);
      checkEnv(t, trio, only(t, sb, me, 'split-brain'), me, peer);
    }
    t.equal(
      calls.filter((c) => c.name === 'disconnected').length,
      0,
      'no disconnected: the refused handshake never established a connection',
    );
  });
});

t.test('pri-lost-after-sb under after-sb-1pri call-pri-lost-after-sb', async (t) => {
  const dir = tmpDir(t);
  const h = handlerScript(dir);
  const trio = await startTrio(t, dir, {
    withTiebreaker: false,
    sizeBytes: SIZE,
    net: 'after-sb-1pri call-pri-lost-after-sb;',
    handlers: h.handlers(['initial-split-brain', 'split-brain', 'pri-lost-after-sb']),
  });
  await promoteAndSyncTrio(trio, 60000);
  await cutAndWait(trio);
  ok(t, await trio.beta.adm(['primary', 'r0']), 'beta promoted while apart');
  await write(t, trio, 'alpha', 'write -P 0x51 0 64k');
  await write(t, trio, 'beta', 'write -P 0x52 0 64k');
  ok(t, await trio.beta.adm(['secondary', 'r0']), 'beta Secondary again');
  trio.heal('alpha', 'beta');
  await waitStandAlone(trio, 'alpha', 'beta', /Split-Brain/);
  await waitStandAlone(trio, 'beta', 'alpha', /Split-Brain/);
  let calls = await h.waitCalls((cs) => cs.length >= 5, 'five handler calls');
  t.same(
    summary(calls),
    [
      'alpha:initial-split-brain',
      'alpha:pri-lost-after-sb',
      'alpha:split-brain',
      'beta:initial-split-brain',
      'beta:split-brain',
    ],
    'one Primary: pri-lost-after-sb once on the Primary (alpha), never on the Secondary',
  );
  checkEnv(t, trio, only(t, calls, 'alpha', 'pri-lost-after-sb'), 'alpha', 'beta');

  // Two Primaries: after-sb-2pri (disconnect) applies, not the 1pri policy.
  h.reset();
  ok(t, await trio.beta.adm(['primary', 'r0']), 'beta Primary again (StandAlone)');
  ok(t, await trio.alpha.adm(['connect', 'r0']), 'connect on alpha');
  ok(t, await trio.beta.adm(['connect', 'r0']), 'connect on beta');
  await waitStandAlone(trio, 'alpha', 'beta', /Split-Brain/);
  await waitStandAlone(trio, 'beta', 'alpha', /Split-Brain/);
  calls = await h.waitCalls((cs) => cs.length >= 4, 'four handler calls');
  // The calls run when the handshake decides, before the refusal: by now all are logged.
  await status(trio.alpha);
  t.same(
    summary(h.calls()),
    [
      'alpha:initial-split-brain',
      'alpha:split-brain',
      'beta:initial-split-brain',
      'beta:split-brain',
    ],
    'two Primaries under after-sb-2pri disconnect: no pri-lost-after-sb',
  );
});

t.test('local-io-error on a disk that runs out of space, once: the disk is detached', async (t) => {
  const size = 8 << 20;
  const dir = tmpDir(t);
  const mnt = path.join(dir, 'small');
  mkdirSync(mnt);
  // 2 MiB of real space under alpha's 8 MiB sparse disk. The disk is reached through a
  // symlink in `dir`, so its metadata (beside the path given) is not on the small tmpfs.
  // Teardowns run last-registered first: this one after the daemons have stopped.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'urbd-test', mnt]);
  t.teardown(() => execFileSync('umount', ['-l', mnt]));
  const real = await makeDisk(mnt, size, undefined, 'alpha.img');
  const alphaDisk = path.join(dir, 'alpha-disk.img');
  symlinkSync(real, alphaDisk);
  const h = handlerScript(dir);
  const trio = await startTrio(t, dir, {
    withTiebreaker: false,
    sizeBytes: size,
    diskFiles: { alpha: alphaDisk },
    disk: 'on-io-error call-local-io-error;',
    handlers: h.handlers(['local-io-error']),
  });
  await promoteAndSyncTrio(trio, 60000);
  t.same(h.calls(), [], 'no local-io-error while the disk works');

  const first = await qemuIo(exportUri(trio.alpha), ['write -P 0x61 0 4M']);
  // call-local-io-error detaches the disk as DRBD does: the write completes through beta.
  t.equal(first.code, 0, 'the write completes through beta', { output: showRun(first) });
  const calls = await h.waitCalls((cs) => cs.length >= 1, 'local-io-error called');
  const c = only(t, calls, 'alpha', 'local-io-error');
  checkEnv(t, trio, c, 'alpha', undefined);
  t.equal(c.env.DRBD_BACKING_DEV, alphaDisk, 'DRBD_BACKING_DEV is the configured disk');
  await waitFor(trio.alpha, (s) => s.device.diskState === 'Diskless', 'Diskless', TIMEOUT);

  const second = await qemuIo(exportUri(trio.alpha), ['write -P 0x62 4M 4M']);
  t.equal(second.code, 0, 'a second write goes to beta too', { output: showRun(second) });
  await status(trio.alpha);
  await sleep(1000);
  t.equal(h.calls().length, 1, 'one local-io-error: the disk left at the first error');
  t.equal(
    trio.alpha.logs.filter((l) => /^local disk I\/O error/.test(String(l.json?.msg))).length,
    1,
    'the daemon logged one error',
  );
  t.same(h.calls({ node: 'beta' }), [], 'nothing on beta, whose disk works');
});

t.test('quorum-lost on a Primary cut off from both peers', async (t) => {
  const dir = tmpDir(t);
  const h = handlerScript(dir);
  const trio = await startTrio(t, dir, {
    sizeBytes: SIZE,
    options: 'quorum majority;',
    handlers: h.handlers(['quorum-lost']),
  });
  await promoteAndSyncTrio(trio, 60000);
  t.same(h.calls(), [], 'no quorum-lost while all three are connected');
  trio.isolate('alpha');
  await waitFor(trio.alpha, (s) => !s.quorum.quorum, 'without quorum', TIMEOUT);
  const calls = await h.waitCalls((cs) => cs.length >= 1, 'quorum-lost called');
  await waitDisconnected(trio.beta, 'alpha');
  await waitDisconnected(trio.gamma, 'alpha');
  await status(trio.alpha);
  t.same(summary(h.calls()), ['alpha:quorum-lost'], 'quorum-lost once, on alpha only');
  const c = only(t, calls, 'alpha', 'quorum-lost');
  checkEnv(t, trio, c, 'alpha', undefined, '0x00000001');
});
