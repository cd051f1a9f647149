// The crashed-primary flag with two real daemons (drbd.md §3.6.2 rule 40, §4.5): a Primary
// killed with SIGKILL comes back flagged, pushes its activity-log extents to the peer, and
// the flag is gone once the resync ends, in show-gi, status --verbose and dump-md alike. A
// later reconnect of the identical disks then resyncs nothing, and a crash of the other node
// is that node's alone (crashed-primary-peer, not crashed-primary-both). show-gi's connected
// flag reads 1 while connected.
import t from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { type DaemonHandle, exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  promoteAndSync,
  qemuIo,
  startPair,
  status,
  waitFor,
  waitInSync,
} from '../helpers/pair.js';

// Two pairs, each with a crash and two or three resyncs: slow on a loaded machine.
t.setTimeout(480000);

const SIZE = 32 << 20;
const GI_LINE = /^(?:[0-9A-F]{16}:){4}(?:[01]:){8}[01]$/m;

/** The flag digits of a get-gi line, found alone (get-gi) or among show-gi's labels. */
function giFlags(out: string): { connected: string; crashed: string; gi: string } {
  const gi = GI_LINE.exec(out)?.[0];
  if (gi === undefined) throw new Error(`no get-gi line in: ${out}`);
  const f = gi.split(':').slice(4);
  return { connected: f[3]!, crashed: f[6]!, gi };
}

async function gi(
  n: DaemonHandle,
  verb: 'get-gi' | 'show-gi',
): Promise<ReturnType<typeof giFlags>> {
  const r = await n.adm([verb, 'r0']);
  if (r.code !== 0) throw new Error(`${verb} on ${n.node}: ${showRun(r)}`);
  return giFlags(r.stdout);
}

const messages = (n: DaemonHandle): string[] => n.logs.map((l) => String(l.json?.msg));
const handshakes = (n: DaemonHandle): string[] =>
  messages(n).filter((m) => m.startsWith('handshake:'));
const resyncs = (n: DaemonHandle): number =>
  messages(n).filter((m) => m.startsWith('resync started')).length;

type Dump = { flags: { crashedPrimary: boolean; connectedIndicator: boolean }; clean: boolean };

t.test('crash, resync, flag cleared; identical disks resync nothing; a second crash', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  await promoteAndSync(p);
  for (const n of [p.alpha, p.beta]) {
    for (const verb of ['get-gi', 'show-gi'] as const) {
      const f = await gi(n, verb);
      t.equal(f.connected, '1', `${n.node} ${verb}: connected flag 1 while connected`);
      t.equal(f.crashed, '0', `${n.node} ${verb}: not a crashed primary`);
    }
  }

  // alpha is killed as Primary with writes in 3 activity-log extents.
  const w = await qemuIo(exportUri(p.alpha), [
    'write -P 0x11 0 1M',
    'write -P 0x22 8M 1M',
    'write -P 0x33 20M 1M',
  ]);
  t.equal(w.code, 0, 'writes on alpha', { output: showRun(w) });
  await p.alpha.kill9();
  // beta stays away while alpha comes back, so the flag can be seen before it is dealt with.
  t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0, 'beta disconnects');
  await p.restart('alpha');
  t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up after the crash');
  const alone = await status(p.alpha);
  t.equal(alone.device.crashedPrimary, true, 'status: crashed-primary');
  t.equal(alone.role, 'Secondary');
  const verbose = await p.alpha.adm(['status', '--verbose', 'r0']);
  t.match(verbose.stdout, /crashed-primary:yes/, 'status --verbose says crashed-primary:yes');
  const lonely = await gi(p.alpha, 'show-gi');
  t.equal(lonely.crashed, '1', 'show-gi: crashed primary');
  t.equal(lonely.connected, '0', 'show-gi: not connected');

  t.equal((await p.beta.adm(['connect', 'r0'])).code, 0, 'beta connects');
  await waitInSync(p);
  t.equal(
    handshakes(p.alpha).at(-1),
    'handshake: source by rule crashed-primary-self',
    'alpha pushed its activity-log extents',
  );
  t.equal(
    handshakes(p.beta).at(-1),
    'handshake: target by rule crashed-primary-peer',
    'beta received them',
  );
  t.ok(
    messages(p.alpha).some((m) => m.startsWith('crashed-primary cleared: connected')),
    'alpha logged why the flag went',
  );
  for (const n of [p.alpha, p.beta]) {
    const s = await status(n);
    t.equal(s.device.crashedPrimary, false, `${n.node}: status says no crashed primary`);
    const v = await n.adm(['status', '--verbose', 'r0']);
    t.notMatch(v.stdout, /crashed-primary/, `${n.node}: status --verbose has no crashed-primary`);
    for (const verb of ['get-gi', 'show-gi'] as const) {
      const f = await gi(n, verb);
      t.equal(f.crashed, '0', `${n.node} ${verb}: crashed-primary flag cleared`);
      t.equal(f.connected, '1', `${n.node} ${verb}: connected flag 1`);
    }
  }
  let d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the resync', { first: d.first });

  // A clean down: the flag stays cleared on disk.
  t.equal((await p.alpha.adm(['down', 'r0'])).code, 0, 'alpha down');
  const dump = await p.alpha.adm(['dump-md', '--json', 'r0']);
  t.equal(dump.code, 0, 'dump-md', { output: showRun(dump) });
  const md = JSON.parse(dump.stdout) as Dump;
  t.equal(md.flags.crashedPrimary, false, 'dump-md: crashedPrimary false');
  t.equal(md.clean, true, 'dump-md: clean');
  t.equal(md.flags.connectedIndicator, false, 'dump-md: a resource that is down is not connected');

  // The same two disks meet again: nothing to do.
  const before = resyncs(p.alpha) + resyncs(p.beta);
  t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up again');
  await waitInSync(p);
  t.equal(handshakes(p.alpha).at(-1), 'handshake: established by rule no-change');
  t.equal(handshakes(p.beta).at(-1), 'handshake: established by rule no-change');
  t.equal(resyncs(p.alpha) + resyncs(p.beta), before, 'no resync started');

  // Now beta is the Primary that crashes: its crash alone decides (rule 40).
  const pri = await p.beta.adm(['primary', 'r0']);
  t.equal(pri.code, 0, 'beta promoted', { output: showRun(pri) });
  const w2 = await qemuIo(exportUri(p.beta), ['write -P 0x44 4M 1M']);
  t.equal(w2.code, 0, 'writes on beta', { output: showRun(w2) });
  await p.beta.kill9();
  await waitFor(p.alpha, (s) => s.peers[0]!.connection !== 'Connected', 'beta lost', 30000);
  await p.restart('beta');
  t.equal((await p.beta.adm(['up', 'r0'])).code, 0, 'beta up after its crash');
  await waitInSync(p);
  t.equal(
    handshakes(p.alpha).at(-1),
    'handshake: target by rule crashed-primary-peer',
    'alpha: only beta crashed, beta is the source',
  );
  t.equal(handshakes(p.beta).at(-1), 'handshake: source by rule crashed-primary-self');
  for (const n of [p.alpha, p.beta]) {
    t.equal((await gi(n, 'get-gi')).crashed, '0', `${n.node}: cleared after the second resync`);
  }
  d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the second resync', { first: d.first });
});

t.test(
  'a crashed Primary promoted alone: new generation, flag cleared, tail still sent',
  async (t) => {
    const dir = tmpDir(t);
    const p = await startPair(t, dir, { sizeBytes: SIZE });
    await promoteAndSync(p);
    const w = await qemuIo(exportUri(p.alpha), ['write -P 0x55 0 1M', 'write -P 0x66 12M 1M']);
    t.equal(w.code, 0, 'writes on alpha', { output: showRun(w) });
    await p.alpha.kill9();
    t.equal((await p.beta.adm(['disconnect', 'r0'])).code, 0, 'beta disconnects');
    await p.restart('alpha');
    t.equal((await p.alpha.adm(['up', 'r0'])).code, 0, 'alpha up after the crash');
    const crashed = await status(p.alpha);
    t.equal(crashed.device.crashedPrimary, true, 'alpha: crashed-primary');
    const tail = crashed.device.outOfSync;
    t.ok(tail >= 2 * (4 << 20), `both hot extents are out of sync (${tail} bytes)`);

    const pri = await p.alpha.adm(['primary', 'r0']);
    t.equal(pri.code, 0, 'alpha promoted while alone', { output: showRun(pri) });
    t.equal((await status(p.alpha)).device.crashedPrimary, false, 'flag cleared');
    t.equal((await gi(p.alpha, 'get-gi')).crashed, '0', 'get-gi: flag cleared');
    t.ok(
      messages(p.alpha).includes('crashed-primary cleared: promoted into a new data generation'),
      'alpha logged why',
    );

    // The crashed tail is in the bitmap, tracked against the old generation: bitmap-self.
    t.equal((await p.beta.adm(['connect', 'r0'])).code, 0, 'beta connects');
    await waitInSync(p);
    t.equal(handshakes(p.alpha).at(-1), 'handshake: source by rule bitmap-self');
    const started = p.alpha.logs.filter((l) => l.json?.msg === 'resync started as SyncSource');
    t.equal(started.at(-1)?.json?.['bytes'], tail, 'the resync sent the whole crashed tail');
    const d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
    t.equal(d.count, 0, 'disks identical', { first: d.first });
  },
);
