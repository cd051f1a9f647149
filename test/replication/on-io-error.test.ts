// A Primary's backing disk that starts failing under writes (drbd.md §1.3 on-io-error):
// nbdkit's error filter behind nbdfuse fails every request to alpha's disk once the test
// creates the inject file.
//   - detach (the default): the disk is detached, alpha goes on as a Diskless Primary
//     through beta, the client sees no error, a failed local read is read again from beta,
//     and every acknowledged change is on beta's disk and served by alpha;
//   - pass_on: the client gets EIO, the disk stays, the blocks are marked out of sync;
//   - call-local-io-error: the disk is detached as with detach, and the handler runs.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { failingFile } from '../helpers/block-stack.js';
import { exportUri } from '../helpers/daemon.js';
import { handlerScript } from '../helpers/handler-script.js';
import { promoteAndSync, qemuIo, startPair, status, waitFor } from '../helpers/pair.js';
import { AckLedger, seededRandom, startWriter } from '../helpers/acked-writer.js';
import { run, showRun, sleep, tmpDir } from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;
const SIZE = 16 * MiB;
/** The acknowledged-writes ledger covers the first 8 MiB; the rest is for a read check. */
const BLOCKS = 2048;

async function failingPair(t: Test, disk: string, handlers = '') {
  const dir = tmpDir(t);
  const failing = await failingFile(t, path.join(dir, 'failing'), SIZE / MiB);
  const p = await startPair(t, dir, {
    sizeBytes: SIZE,
    alphaDisk: failing.file,
    alphaMeta: path.join(dir, 'alpha.urbd-md'),
    disk,
    handlers,
  });
  await promoteAndSync(p);
  return { dir, p, ...failing };
}

const diskless = (s: Awaited<ReturnType<typeof status>>): boolean =>
  s.device.diskState === 'Diskless' && s.peers[0]!.replication === 'Established';

t.test('on-io-error detach: the Primary serves on through its peer', async (t) => {
  const { dir, p, inject, dropCache } = await failingPair(t, '');
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x77 12M 1M']);
  t.equal(w.code, 0, 'a write while the disk works', { output: showRun(w) });
  t.equal((await dropCache()).code, 0, "alpha's disk file leaves the page cache");

  const ledger = new AckLedger(BLOCKS);
  const writer = await startWriter({
    uri: exportUri(p.alpha),
    ledger,
    rand: seededRandom(7),
    depth: 8,
    fuaShare: 0.1,
    trimShare: 0.05,
    zeroShare: 0.05,
    flushShare: 0.05,
    label: 'alpha',
  });
  await sleep(300);
  writeFileSync(inject, '');
  const r = await qemuIo(exportUri(p.alpha), ['read -P 0x77 12M 1M']);
  t.equal(r.code, 0, 'a read of the failing disk is answered from beta', { output: showRun(r) });
  t.notMatch(r.stdout, /Pattern verification failed/, 'with the right data');
  const s = await waitFor(p.alpha, diskless, 'Diskless and connected', 30000);
  t.equal(s.role, 'Primary', 'still Primary');
  const atDetach = writer.acked;
  await sleep(500);
  const done = await writer.stop();
  t.equal(done.failed, 0, 'no request failed');
  t.ok(done.acked > atDetach, `writes go on through beta (${atDetach} → ${done.acked})`);
  const lines = p.alpha.logs.filter((l) => /^local disk I\/O error/.test(String(l.json?.msg)));
  t.equal(lines.length, 1, 'one log line says why', { lines: lines.map((l) => l.raw) });
  t.match(String(lines[0]?.json?.msg), /detaching the disk; I\/O goes on through beta/);

  const onBeta = await ledger.check(p.betaDisk);
  t.same(onBeta.slice(0, 10), [], "every acknowledged change is on beta's disk");
  const copy = path.join(dir, 'through-alpha.img');
  const c = await run('nbdcopy', [exportUri(p.alpha), copy], { timeoutMs: 60000 });
  t.equal(c.code, 0, 'alpha serves the whole device', { output: showRun(c) });
  const served = await ledger.check(copy);
  t.same(served.slice(0, 10), [], 'and reads back every acknowledged change');
  const st = await p.alpha.adm(['status', 'r0']);
  t.match(st.stdout, /disk:Diskless/, 'status shows Diskless', { output: showRun(st) });
});

t.test('on-io-error pass_on: the client gets the error', async (t) => {
  const { p, inject } = await failingPair(t, 'on-io-error pass_on;');
  writeFileSync(inject, '');
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x55 1M 64k']);
  t.match(w.stdout + w.stderr, /Input\/output error/, 'EIO', { output: showRun(w) });
  const s = await status(p.alpha);
  t.equal(s.device.diskState, 'UpToDate', 'the disk stays');
  t.ok(
    s.device.outOfSync >= 64 * 1024,
    `its blocks are marked out of sync (${s.device.outOfSync})`,
  );
});

t.test('on-io-error call-local-io-error: the handler runs, the disk is detached', async (t) => {
  const dir = tmpDir(t);
  const h = handlerScript(dir);
  const { p, inject } = await failingPair(
    t,
    'on-io-error call-local-io-error;',
    h.handlers(['local-io-error']),
  );
  t.same(h.calls(), [], 'no call while the disk works');
  writeFileSync(inject, '');
  const w = await qemuIo(exportUri(p.alpha), ['write -P 0x66 1M 64k', 'read -P 0x66 1M 64k']);
  t.equal(w.code, 0, 'the write completes through beta', { output: showRun(w) });
  t.notMatch(w.stdout, /Pattern verification failed/);
  const calls = await h.waitCalls((cs) => cs.length >= 1, 'local-io-error called');
  t.equal(calls[0]!.name, 'local-io-error');
  t.equal(calls[0]!.node, 'alpha');
  await waitFor(p.alpha, diskless, 'Diskless and connected', 30000);
  t.equal(h.calls().length, 1, 'called once');
});
