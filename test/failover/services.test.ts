// scripts/services/mariadb and scripts/services/rabbitmq with the real servers on a plain
// temporary directory (no urbd): start / monitor / stop in OCF codes, idempotence, and what
// a SIGKILL of the whole instance (a dying node) keeps: every acknowledged MariaDB commit
// and every confirmed persistent RabbitMQ message, after the crash recovery of the next
// start. Every instance is stopped (or killed) by PID at teardown, pass or fail.
import t, { type Test } from 'tap';
import { readFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../helpers/pair.js';
import { showRun, tmpDir } from '../helpers/server.js';
import {
  consumeAll,
  killService,
  mariadbCommands,
  numberedCommitter,
  processGone,
  processTree,
  publishConfirmed,
  rabbitCommands,
  readNumbered,
  runService,
  stopAtTeardown,
  waitAcked,
  type ServiceCommands,
} from '../helpers/services.js';

t.setTimeout(180000);
// the two servers are independent: run both subtests at once (RabbitMQ's boot dominates)
t.jobs = 2;

/** Run a command and return its exit code and how long it took. */
async function timed(cmd: string, env?: Record<string, string>) {
  const t0 = Date.now();
  const r = await runService(cmd, { env, timeoutMs: 90000 });
  return { ...r, ms: Date.now() - t0 };
}

/** The pids recorded in a run directory's pid files. */
function recordedPids(run: string, files: string[]): number[] {
  return files
    .map((f) => path.join(run, f))
    .filter((f) => existsSync(f))
    .map((f) => Number(readFileSync(f, 'utf8').trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

async function lifecycleChecks(tt: Test, c: ServiceCommands) {
  const again = await timed(c.start);
  tt.equal(again.code, 0, `start when running is 0\n${showRun(again)}`);
  const mon = await timed(c.monitor);
  tt.equal(mon.code, 0, `monitor of a running server is 0\n${showRun(mon)}`);
}

t.test(
  'mariadb: commits survive SIGKILL, crash recovery, CHECK TABLE, monitor codes',
  async (tt) => {
    const dir = tmpDir(tt, 'urbd-svc-db-');
    const port = await freePort();
    const run = path.join(dir, 'run');
    const c = mariadbCommands({ data: path.join(dir, 'data'), run, port, timeoutS: 60 });
    stopAtTeardown(tt, c);

    // URBD_MOUNT that is not a mount point: refused, and nothing written under it
    const mnt = path.join(dir, 'mnt');
    mkdirSync(mnt);
    const unmounted = mariadbCommands({ run: path.join(dir, 'run-unmounted'), port });
    const refused = await timed(unmounted.start, { URBD_MOUNT: mnt });
    tt.not(refused.code, 0, 'start refuses an unmounted URBD_MOUNT');
    tt.match(refused.stderr, /not mounted/, showRun(refused));
    tt.notOk(existsSync(path.join(mnt, 'mysql')), 'no datadir created on the root filesystem');

    tt.equal((await timed(c.monitor)).code, 7, 'monitor before the first start is 7');
    const first = await timed(c.start);
    tt.equal(first.code, 0, `first start (initialises the datadir)\n${showRun(first)}`);
    tt.comment(`mariadb first start (mariadb-install-db + boot): ${first.ms} ms`);
    await lifecycleChecks(tt, c);

    // commit numbered rows one by one and SIGKILL the server while they are flowing
    const committer = await numberedCommitter(port);
    await waitAcked(committer, 200, 20000);
    await killService(c);
    await committer.done;
    tt.ok(committer.error, 'the committer saw the server die');
    const acked = [...committer.acked];
    tt.ok(acked.length >= 200, `${acked.length} commits acknowledged before the kill`);
    tt.equal((await timed(c.monitor)).code, 7, 'monitor after kill is 7');
    tt.ok(
      recordedPids(run, ['mariadbd.pid']).every(processGone),
      'no mariadbd process of the instance is left',
    );

    const recovered = await timed(c.start);
    tt.equal(recovered.code, 0, `start after SIGKILL\n${showRun(recovered)}`);
    tt.comment(`mariadb start with crash recovery: ${recovered.ms} ms`);
    const { ids, check } = await readNumbered(port);
    const missing = acked.filter((id) => !ids.has(id));
    tt.same(missing, [], 'every acknowledged commit is present');
    const allowed = new Set(acked);
    if (committer.inDoubt !== undefined) allowed.add(committer.inDoubt);
    tt.same(
      [...ids].filter((id) => !allowed.has(id)),
      [],
      'no row that was never committed (only the in-doubt one may be extra)',
    );
    tt.equal(check, 'OK', 'CHECK TABLE is OK');
    tt.equal((await timed(c.monitor)).code, 0, 'monitor after recovery is 0');

    const stop = await timed(c.stop);
    tt.equal(stop.code, 0, `stop\n${showRun(stop)}`);
    tt.comment(`mariadb clean stop: ${stop.ms} ms`);
    tt.equal((await timed(c.monitor)).code, 7, 'monitor after stop is 7');
    tt.equal((await timed(c.stop)).code, 0, 'stop when stopped is 0');
  },
);

t.test('rabbitmq: confirmed persistent messages survive SIGKILL of the instance', async (tt) => {
  const dir = tmpDir(tt, 'urbd-svc-mq-');
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
  const run = path.join(dir, 'run');
  const c = rabbitCommands({ data: path.join(dir, 'data'), run, port, distPort, epmdPort });
  stopAtTeardown(tt, c);
  const pidFiles = ['launcher.pid', 'rabbitmq.pid', 'epmd.pid'];

  tt.equal((await timed(c.monitor)).code, 7, 'monitor before the first start is 7');
  const first = await timed(c.start);
  tt.equal(first.code, 0, `first start\n${showRun(first)}`);
  tt.comment(`rabbitmq first start (empty database): ${first.ms} ms`);
  await lifecycleChecks(tt, c);
  const pids = recordedPids(run, pidFiles);
  tt.equal(pids.length, 3, 'launcher, broker and epmd pids recorded');
  // the start script, beam.smp, erl_child_setup (a session of its own) and its children
  const group = processTree(pids[0]!);
  tt.ok(group.length >= 3, `the instance has ${group.length} processes besides epmd`);

  const queue = 'urbd-durable';
  const { confirmed, error } = await publishConfirmed(port, queue, 300);
  tt.equal(error, undefined, 'publishing with confirms works');
  tt.equal(confirmed.length, 300, 'all 300 persistent messages confirmed');

  await killService(c);
  tt.equal((await timed(c.monitor)).code, 7, 'monitor after kill is 7');
  tt.ok(
    [...pids, ...group].every(processGone),
    'no process of the instance is left (script, broker, its helpers, epmd)',
  );

  const recovered = await timed(c.start);
  tt.equal(recovered.code, 0, `start after SIGKILL\n${showRun(recovered)}`);
  tt.comment(`rabbitmq start with recovery of ${confirmed.length} messages: ${recovered.ms} ms`);
  const got = await consumeAll(port, queue, { idleMs: 500, timeoutMs: 20000 });
  const have = new Set(got);
  tt.same(
    confirmed.filter((n) => !have.has(n)),
    [],
    `every confirmed message is delivered after the restart (${got.length} received)`,
  );

  const stopPids = recordedPids(run, pidFiles);
  const stop = await timed(c.stop);
  tt.equal(stop.code, 0, `stop\n${showRun(stop)}`);
  tt.comment(`rabbitmq clean stop: ${stop.ms} ms`);
  tt.ok(stopPids.every(processGone), 'stop leaves no process behind (epmd included)');
  tt.equal((await timed(c.monitor)).code, 7, 'monitor after stop is 7');
  tt.equal((await timed(c.stop)).code, 0, 'stop when stopped is 0');
});
