/**
 * MariaDB survives the Primary's death (issue 10's end-to-end test): a real mariadbd from
 * Debian's mariadb-server runs on alpha's mounted device, under urbd-failover, through
 * scripts/services/mariadb. A client commits numbered rows one at a time and records every
 * id whose COMMIT was acknowledged. alpha then dies as a node does (kill -9 of its urbd,
 * urbd-failover and mariadbd, its attach dropped); beta takes over by itself: promote,
 * attach, e2fsck, mount, InnoDB crash recovery. Every acknowledged id is there and CHECK
 * TABLE is clean. alpha comes back, rejoins as Secondary and resyncs, and with the
 * filesystem frozen both disks are identical.
 */
import { readFileSync } from 'node:fs';
import mariadb, { type Connection } from 'mariadb';
import t from 'tap';
import {
  failoverTrio,
  killNode,
  serviceBlock,
  startSupervisor,
  waitSupervisor,
} from '../helpers/failover.js';
import { mariadbCommands, runService } from '../helpers/services.js';
import { freePort, status } from '../helpers/pair.js';
import { run, sha256File, sleep } from '../helpers/server.js';
import { waitHealthy, waitStatus } from '../helpers/trio.js';

async function connect(port: number): Promise<Connection> {
  return mariadb.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 2000 });
}

t.test('kill -9 of the Primary: beta runs MariaDB with every acknowledged commit', async (t) => {
  const port = await freePort();
  // A 64 MiB volume: InnoDB's default 96 MiB redo log would not fit.
  const cmds = (n: 'alpha' | 'beta', dir: string) =>
    mariadbCommands({ run: `${dir}/db-${n}`, port, serverArgs: '--innodb-log-file-size=16M' });
  const f = await failoverTrio(t, { perNode: (n, dir) => serviceBlock('db', cmds(n, dir)) });
  // Whatever runs at the end is stopped by PID (teardowns run last in, first out: this one
  // before the chain is released).
  t.teardown(async () => {
    for (const n of ['alpha', 'beta'] as const) await runService(cmds(n, f.dir).kill);
  });
  const up = await waitSupervisor(
    f.sup.alpha,
    (r) => r.phase === 'running',
    'MariaDB on alpha',
    120000,
  );
  t.comment(
    `alpha took it: ${up.lastFailover?.phases.map((p) => `${p.phase} ${p.ms} ms`).join(', ')}`,
  );

  const c = await connect(port);
  await c.query('CREATE DATABASE app');
  await c.query('CREATE TABLE app.orders (id INT PRIMARY KEY, note VARCHAR(64)) ENGINE=InnoDB');
  const acked: number[] = [];
  let stop = false;
  // One row per transaction, autocommit: the INSERT returning means the commit was
  // acknowledged (innodb_flush_log_at_trx_commit=1: the redo log was flushed, and the flush
  // reached both disks).
  const committer = (async () => {
    for (let id = 1; !stop; id++) {
      try {
        await c.query('INSERT INTO app.orders VALUES (?, ?)', [id, `order ${id}`]);
        acked.push(id);
      } catch {
        return; // alpha is gone: what was not acknowledged may or may not be there
      }
    }
  })();
  while (acked.length < 200) await sleep(50);
  const dbPid = Number(readFileSync(`${f.dir}/db-alpha/mariadbd.pid`, 'utf8'));
  const killedAt = await killNode(f, 'alpha', [dbPid]);
  stop = true;
  await committer;
  await c.end().catch(() => undefined);
  t.ok(acked.length >= 200, `${acked.length} commits acknowledged on alpha before it died`);

  const onBeta = await waitSupervisor(
    f.sup.beta,
    (r) => r.phase === 'running',
    'MariaDB on beta',
    120000,
  );
  const runningMs = Date.now() - killedAt;
  t.equal(onBeta.role, 'Primary');
  // The first commit on beta: the clients' view of the failover.
  let b: Connection | undefined;
  for (let i = 0; i < 600 && !b; i++) {
    b = await connect(port).catch(() => undefined);
    if (!b) await sleep(100);
  }
  if (!b) throw new Error('no MariaDB on beta');
  await b.query('INSERT INTO app.orders VALUES (?, ?)', [1_000_000, 'after failover']);
  const firstCommitMs = Date.now() - killedAt;
  t.comment(
    `failover: kill → beta running ${runningMs} ms, → first commit ${firstCommitMs} ms; phases: ${onBeta.lastFailover?.phases
      .map((p) => `${p.phase} ${p.ms} ms`)
      .join(', ')}`,
  );
  const rows = (await b.query('SELECT id FROM app.orders')) as Array<{ id: number }>;
  const have = new Set(rows.map((r) => r.id));
  const lost = acked.filter((id) => !have.has(id));
  t.same(lost, [], `every acknowledged commit is on beta (${acked.length} of them)`);
  const check = (await b.query('CHECK TABLE app.orders')) as Array<{
    Msg_type: string;
    Msg_text: string;
  }>;
  t.same(
    check.map((r) => [r.Msg_type, r.Msg_text]),
    [['status', 'OK']],
    'CHECK TABLE is clean',
  );
  await b.end();

  // alpha comes back: its urbd and supervisor restart, it resyncs from beta and stays
  // Secondary (no failback).
  const alpha = await f.trio.restart('alpha');
  const upR = await alpha.adm(['up', 'r0']);
  t.equal(upR.code, 0, upR.stderr);
  f.sup.alpha = await startSupervisor(t, alpha);
  await waitHealthy(f.trio, 120000);
  const a = await waitSupervisor(
    f.sup.alpha,
    (r) => /beta is Primary/.test(r.decision),
    'alpha defers to beta',
  );
  t.equal(a.phase, 'stopped');
  t.equal((await status(alpha)).role, 'Secondary');

  // Quiesce beta (maintenance, MariaDB stopped, the filesystem frozen) and compare the disks.
  t.equal((await f.sup.beta.cli(['maintenance', 'on'])).code, 0);
  t.equal((await runService(cmds('beta', f.dir).stop)).code, 0);
  const freeze = await run('fsfreeze', ['-f', f.mnt.beta], { timeoutMs: 30000 });
  t.equal(freeze.code, 0, freeze.stderr);
  try {
    await waitStatus(f.trio.beta, (s) => s.peers.every((p) => p.outOfSync === 0), 30000, 'in sync');
    await sleep(500);
    t.equal(
      await sha256File(f.trio.disks.alpha),
      await sha256File(f.trio.disks.beta),
      'the disks are identical',
    );
  } finally {
    await run('fsfreeze', ['-u', f.mnt.beta], { timeoutMs: 30000 });
  }
});
