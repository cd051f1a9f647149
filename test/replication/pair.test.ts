// Two real daemons on loopback (drbd.md §3.5, §6): the initial full sync after
// `primary --force`, replication of every write, and a secondary that misses writes and gets
// back exactly what it missed. Every scenario ends with the two backing disks compared.
import t from 'tap';
import { showRun, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import { diffBlocks, qemuIo, startPair, status, waitFor, waitInSync } from '../helpers/pair.js';

const SIZE = 64 << 20;

t.test('initial full sync, replication, and a secondary that comes back', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: SIZE });
  // Two fresh disks connect and stay Inconsistent (rule just-created-both).
  const a0 = await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected');
  t.equal(a0.device.diskState, 'Inconsistent');
  const pri = await p.alpha.adm(['primary', '--force', 'r0']);
  t.equal(pri.code, 0, 'primary --force', { output: showRun(pri) });
  await waitInSync(p);
  t.ok(
    p.beta.logs.some((l) => /handshake: target by rule/.test(String(l.json?.msg))) ||
      p.beta.logs.some((l) => /resync started as SyncTarget/.test(String(l.json?.msg))),
    'beta was the SyncTarget of the initial sync',
  );
  let d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the initial sync');

  const uri = exportUri(p.alpha);
  const w = await qemuIo(uri, ['write -P 0x5a 0 4M', 'write -P 0xa5 -f 8M 1M', 'flush']);
  t.equal(w.code, 0, 'writes through NBD', { output: showRun(w) });
  d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'every acknowledged protocol C write is on the peer');

  // The secondary goes away while the primary writes 2 MiB in 8 places.
  await p.beta.stop();
  await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connecting', 'connecting');
  const cmds: string[] = [];
  for (let i = 0; i < 8; i++) cmds.push(`write -P ${i + 1} ${i * 6}M 256k`);
  const w2 = await qemuIo(uri, cmds);
  t.equal(w2.code, 0, 'writes while the peer is away', { output: showRun(w2) });
  const away = await status(p.alpha);
  t.equal(away.device.outOfSync, 2 << 20, 'exactly the 2 MiB written are out of sync');
  await p.restart('beta');
  const up = await p.beta.adm(['up', 'r0']);
  t.equal(up.code, 0, 'beta up', { output: showRun(up) });
  await waitInSync(p);
  const starts = p.alpha.logs.filter((l) =>
    /resync started as SyncSource/.test(String(l.json?.msg)),
  );
  t.equal(starts.length, 2, 'the initial sync, then one more resync');
  t.equal(
    starts.at(-1)?.json?.['bytes'],
    2 << 20,
    'the resync moved what was dirtied (2 MiB), not the 64 MiB disk',
  );
  const rules = p.alpha.logs
    .map((l) => String(l.json?.msg))
    .filter((m) => m.startsWith('handshake:'));
  t.equal(rules.at(-1), 'handshake: source by rule bitmap-self', 'decided by rule bitmap-self');
  d = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
  t.equal(d.count, 0, 'disks identical after the resync');
});
