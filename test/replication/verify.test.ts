// Online verify end to end (drbd.md §6.6): blocks changed behind the Secondary daemon's back
// are found (exactly those, one log line per range), marked on both nodes, and resynced by
// disconnect + connect; a verify under fio writes finds nothing, from either node.
import { open } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { exportUri, type DaemonHandle } from '../helpers/daemon.js';
import { runFio } from '../helpers/fio.js';
import {
  diffBlocks,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';

const SIZE = 64 << 20;
const BLOCKS = SIZE / 4096;

/** Runs `verify` on `n` and waits for it to end; returns the status then. */
async function verify(t: Test, n: DaemonHandle, args: string[] = []) {
  const before = n.logs.length;
  const r = await n.adm(['verify', ...args, 'r0']);
  t.equal(r.code, 0, `verify ${args.join(' ')} on ${n.node}`, { output: showRun(r) });
  const until = Date.now() + 60000;
  const ended = () =>
    n.logs.slice(before).some((l) => /^online verify (finished|stopped)/.test(String(l.json?.msg)));
  while (!ended() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const s = await waitFor(n, (x) => x.peers[0]!.verify?.running === false, 'verify ended');
  const found = n.logs
    .slice(before)
    .map((l) => /^Out of sync: start=(\d+), size=(\d+)/.exec(String(l.json?.msg)))
    .filter((m) => m !== null)
    .map((m) => [Number(m[1]), Number(m[2])]);
  return { s, found };
}

t.test(
  'verify finds exactly the blocks changed behind the daemon, connect resyncs them',
  async (t) => {
    const dir = tmpDir(t);
    const p = await startPair(t, dir, { sizeBytes: SIZE, net: 'verify-alg sha256;' });
    await promoteAndSync(p);
    const w = await qemuIo(exportUri(p.alpha), ['write -P 0x5a 0 4M', 'write -P 0x33 60M 1M']);
    t.equal(w.code, 0, 'writes', { output: showRun(w) });

    const clean = await verify(t, p.alpha);
    t.same(clean.found, [], 'two identical disks: nothing found');
    t.equal(clean.s.device.outOfSync, 0, 'and nothing marked');
    t.equal(clean.s.peers[0]!.verify?.verifiedBlocks, BLOCKS, 'every block compared');

    // One byte in block 100, three whole blocks 2000-2002, one byte in the last block.
    const fd = await open(p.betaDisk, 'r+');
    await fd.write(Buffer.from([0xff]), 0, 1, 100 * 4096 + 17);
    await fd.write(Buffer.alloc(3 * 4096, 0xee), 0, 3 * 4096, 2000 * 4096);
    await fd.write(Buffer.from([0x01]), 0, 1, SIZE - 1);
    await fd.close();
    t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, SIZE)).count, 5, 'five blocks differ');

    const found = await verify(t, p.alpha);
    t.same(
      found.found,
      [
        [800, 8],
        [16000, 24],
        [(BLOCKS - 1) * 8, 8],
      ],
      'exactly those ranges are logged, in sectors',
    );
    t.equal(found.s.device.outOfSync, 5 * 4096, 'marked on the VerifySource');
    t.equal(found.s.peers[0]!.verify?.outOfSyncBlocks, 5, 'counted');
    t.equal(found.s.peers[0]!.replication, 'Established', 'no resync starts by itself');
    const b = await waitFor(p.beta, (s) => s.device.outOfSync === 5 * 4096, 'marked on beta');
    t.equal(b.peers[0]!.verify?.role, 'VerifyT');

    t.equal((await p.alpha.adm(['disconnect', 'r0'])).code, 0, 'disconnect');
    await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'StandAlone', 'StandAlone');
    t.equal((await p.alpha.adm(['connect', 'r0'])).code, 0, 'connect');
    await waitInSync(p, 60000);
    const rules = p.alpha.logs
      .map((l) => String(l.json?.msg))
      .filter((m) => m.startsWith('handshake:'));
    // A Primary that disconnects starts a new generation (bitmap-self); two Secondaries with
    // equal UUIDs resync the bits left set all the same (peer-handshake.ts, leftover bits).
    t.match(rules.at(-1), /^handshake: source by rule bitmap-self$/, 'the Primary is source');
    const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
    t.equal(d.count, 0, 'identical after the resync', { first: d.first });
    const again = await verify(t, p.beta);
    t.same(again.found, [], 'a verify from the Secondary finds nothing left');

    // --start / --stop: only that range is compared.
    const part = await verify(t, p.alpha, ['--start', '8', '--stop', '80']);
    t.equal(part.s.peers[0]!.verify?.verifiedBlocks, 9, 'sectors 8..80 are blocks 1..9');
  },
);

t.test('verify under fio writes reports no false positives, from either node', async (t) => {
  const dir = tmpDir(t);
  // A quarter of SIZE: each verify pass is four times shorter, so 6 s of writes still see
  // several passes from each node.
  const size = SIZE / 4;
  const p = await startPair(t, dir, { sizeBytes: size, net: 'verify-alg crc32c;' });
  await promoteAndSync(p);
  const fio = runFio(t, exportUri(p.alpha), {
    seconds: 6,
    size,
    bs: '4k',
    iodepth: 16,
  });
  let runs = 0;
  let fioDone = false;
  void fio.then(() => (fioDone = true));
  while (!fioDone && runs < 12) {
    const n = runs % 2 === 0 ? p.alpha : p.beta;
    const r = await verify(t, n);
    t.same(r.found, [], `verify ${runs + 1} from ${n.node} under writes finds nothing`);
    runs++;
  }
  const f = await fio;
  t.equal(f.code, 0, 'fio ran clean', { output: f.output });
  t.ok(runs >= 2, 'verify ran while fio wrote (both directions)');
  await waitInSync(p, 30000);
  t.equal((await status(p.alpha)).device.outOfSync, 0, 'nothing marked');
  t.equal((await diffBlocks(p.alphaDisk, p.betaDisk, size)).count, 0, 'identical');
});

t.test('verify refusals', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 8 << 20, betaNet: 'verify-alg whirlpool9;' });
  const noAlg = await p.alpha.adm(['verify', 'r0']);
  t.equal(noAlg.code, 10, 'no verify-alg');
  t.match(noAlg.stderr, /verify needs verify-alg/);
  const bad = await p.beta.adm(['verify', 'r0']);
  t.equal(bad.code, 10, 'an unknown digest');
  t.match(bad.stderr, /verify-alg "whirlpool9" is not a digest this node offers/);
  const arg = await p.alpha.adm(['verify', '--start', 'x', 'r0']);
  t.not(arg.code, 0, 'a bad sector');
  t.match(arg.stderr, /--start must be a sector number/);
});
