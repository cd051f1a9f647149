/**
 * urbd-failover with three real urbd daemons (alpha, beta with disks; gamma the diskless
 * tiebreaker) and a supervisor on each, on one host: the chain comes up by itself on the
 * node that may promote, a failed monitor restarts the service in place, a planned
 * switchover under load moves it, a stop that cannot complete escalates and keeps the
 * device where it is, and a Primary cut off from both peers stops and lets beta take over.
 * The service is a small writer script (scripts/services/writer); MariaDB and
 * RabbitMQ have end-to-end tests of their own.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { tmpDir, sleep, waitFor as waitUntil } from '../helpers/server.js';
import { status } from '../helpers/pair.js';
import { waitHealthy, waitStatus } from '../helpers/trio.js';
import {
  failoverTrio,
  serviceBlock,
  startSupervisor,
  waitSupervisor,
} from '../helpers/failover.js';

const WRITER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../scripts/services/writer',
);

function writerService(run: string): string {
  const cmd = (a: string) => `${WRITER} ${a} ${run}`;
  return serviceBlock(
    'writer',
    { start: cmd('start'), stop: cmd('stop'), monitor: cmd('monitor') },
    20,
  );
}

function setup(
  t: Test,
  extra = '',
  own: Partial<Record<'alpha' | 'beta', string>> = {},
  onNoQuorum: 'io-error' | 'suspend-io' = 'io-error',
) {
  return failoverTrio(t, {
    extra,
    onNoQuorum,
    perNode: (n, dir) => `${writerService(`${dir}/svc-${n}`)} ${own[n] ?? ''}`,
  });
}

/**
 * Lines of a file on the replicated filesystem, read without blocking: this process also runs
 * the TCP proxies between the daemons, and a synchronous read that waits for the mount's
 * writeback (which waits for replication through those proxies) held every link until the
 * ping timeout cut them all, and the trio lost quorum mid-test (CI, stop 23).
 */
async function lines(file: string): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l !== '').length;
}

t.test(
  'the chain comes up on alpha, restarts a dead service in place, and a switchover moves it to beta',
  async (t) => {
    const { trio, dir, sup } = await setup(t);
    const up = await waitSupervisor(sup.alpha, (r) => r.phase === 'running', 'running on alpha');
    t.equal(up.role, 'Primary');
    t.same(
      up.lastFailover?.phases.map((p) => p.phase).filter((p) => p !== 'decide'),
      ['promote', 'attach', `mount ${dir}/mnt-alpha`, 'service writer'],
      'each phase timed, in order',
    );
    const b = await sup.beta.resource();
    t.equal(b.phase, 'stopped');
    t.match(b.decision, /alpha is Primary/);
    t.match((await sup.gamma.status()).unmanaged, [{ resource: 'r0', why: /tiebreaker/ }]);
    const text = await sup.alpha.cli(['status']);
    t.match(text.stdout, /r0 role:Primary phase:running auto-promote:yes/);
    t.match(text.stdout, /last takeover: start ok in \d+ ms/);

    // The service dies: the monitor restarts it here (migration-threshold 3 allows two restarts).
    await waitFor(
      async () => (await lines(`${dir}/mnt-alpha/writer.log`)) > 5,
      'the writer writes',
    );
    process.kill(Number(readFileSync(`${dir}/svc-alpha/writer.pid`, 'utf8')), 'SIGKILL');
    const restarted = await waitSupervisor(
      sup.alpha,
      (r) => r.lastTransition?.kind === 'restart' && r.lastTransition.ok && r.phase === 'running',
      'restarted in place',
    );
    t.equal(restarted.failures, 1);
    t.equal(restarted.role, 'Primary', 'still on alpha');

    // A planned switchover, with the writer writing.
    const before = await lines(`${dir}/mnt-alpha/writer.log`);
    const sw = await sup.alpha.cli(['switchover', 'r0', '--to', 'beta']);
    t.equal(sw.code, 0, sw.stderr);
    t.match(sw.stdout, /stopped here in \d+ ms/);
    const onBeta = await waitSupervisor(sup.beta, (r) => r.phase === 'running', 'running on beta');
    t.equal(onBeta.role, 'Primary');
    const a = await sup.alpha.resource();
    t.equal(a.phase, 'stopped');
    t.ok(a.bannedForMs > 0, 'alpha stays away after handing it over');
    await waitFor(
      async () => (await lines(`${dir}/mnt-beta/writer.log`)) > before + 5,
      'the writer goes on on beta',
    );
    const log = (await readFile(`${dir}/mnt-beta/writer.log`, 'utf8')).trim().split('\n');
    t.same(
      log.map((l) => Number(l.split(' ')[0])),
      log.map((_, i) => i + 1),
      'every line alpha wrote is on beta, numbered without a gap',
    );
    await waitHealthy(trio);
  },
);

t.test(
  'a stop that cannot complete keeps the device and escalates (exit, then fence); the other node does not start the service',
  async (t) => {
    // alpha escalates by exiting (systemd's FailureAction reboots it), beta by a fence command.
    const fenced = path.join(tmpDir(t, 'urbd-fenced-'), 'fenced');
    const { trio, dir, sup } = await setup(t, '', {
      alpha: 'on-stop-failure exit;',
      beta: `on-stop-failure fence "echo $URBD_NODE: $URBD_REASON >> ${fenced}";`,
    });
    await waitSupervisor(sup.alpha, (r) => r.phase === 'running', 'running on alpha');
    const writerPid = readFileSync(`${dir}/svc-alpha/writer.pid`, 'utf8');
    writeFileSync(`${dir}/svc-alpha/stuck`, ''); // the writer will not die
    const sw = await sup.alpha.cli(['switchover', 'r0']);
    t.not(sw.code, 0, 'the switchover fails');
    t.equal(await sup.alpha.proc.exited, 3, 'the supervisor exits 3 to escalate');
    t.equal(
      (await status(trio.alpha)).role,
      'Primary',
      'alpha keeps the device: it may still be written',
    );
    await sleep(3000);
    const b = await sup.beta.resource();
    t.equal(b.phase, 'stopped', 'beta did not start it');
    t.match(b.decision, /alpha is Primary/);
    t.equal((await status(trio.beta)).role, 'Secondary');

    // systemd would reboot alpha; here the admin fixes the service and starts the supervisor
    // again: it probes, finds the chain up, and adopts it without restarting anything.
    rmSync(`${dir}/svc-alpha/stuck`);
    sup.alpha = await startSupervisor(t, trio.alpha);
    const adopted = await waitSupervisor(sup.alpha, (r) => r.phase === 'running', 'adopted');
    // Nothing was started again: every step was found running.
    t.same(
      (adopted.lastTransition?.phases ?? []).filter((p) => p.phase !== 'decide'),
      [],
      'nothing was started again',
    );
    t.equal(
      readFileSync(`${dir}/svc-alpha/writer.pid`, 'utf8'),
      writerPid,
      'the same writer runs on',
    );

    // Now on beta, whose stop fails too: it runs its fence command and stays blocked.
    t.equal((await sup.alpha.cli(['switchover', 'r0', '--to', 'beta'])).code, 0);
    await waitSupervisor(sup.beta, (r) => r.phase === 'running', 'running on beta');
    writeFileSync(`${dir}/svc-beta/stuck`, '');
    t.not((await sup.beta.cli(['switchover', 'r0'])).code, 0);
    const blocked = await waitSupervisor(sup.beta, (r) => r.phase === 'blocked', 'blocked on beta');
    t.match(blocked.blockedReason, /stop writer: exit code 1: writer: will not die/);
    t.match(
      readFileSync(fenced, 'utf8'),
      /^beta: stop writer: exit code 1/,
      'on-stop-failure fence ran with the reason',
    );
    await sleep(2000);
    t.equal((await sup.alpha.resource()).phase, 'stopped', 'alpha did not start it');
    const text = await sup.beta.cli(['status']);
    t.match(text.stdout, /blocked: stop writer/);
    // The admin fixes it and clears: the supervisor carries on.
    rmSync(`${dir}/svc-beta/stuck`);
    t.equal((await sup.beta.cli(['clear', 'r0'])).code, 0);
    await waitSupervisor(
      sup.beta,
      (r) => r.phase === 'running' && r.blockedReason === undefined,
      'running again after clear',
    );
  },
);

t.test(
  'a Primary cut off from both peers stops its chain; beta takes over; no split brain after healing',
  async (t) => {
    // suspend-io (urbd's default): alpha's writer hangs on held I/O, which must not hang
    // the stop.
    const { trio, dir, sup } = await setup(t, '', {}, 'suspend-io');
    await waitSupervisor(sup.alpha, (r) => r.phase === 'running', 'running on alpha');
    await waitFor(
      async () => (await lines(`${dir}/mnt-alpha/writer.log`)) > 5,
      'the writer writes',
    );
    trio.isolate('alpha');
    const onBeta = await waitSupervisor(
      sup.beta,
      (r) => r.phase === 'running',
      'running on beta',
      90000,
    );
    t.equal(onBeta.role, 'Primary');
    const a = await waitSupervisor(
      sup.alpha,
      (r) => r.phase === 'stopped',
      'stopped on alpha',
      90000,
    );
    t.match(a.lastTransition?.why, /lost quorum/);
    t.same(
      a.lastTransition?.phases
        .filter((p) => p.phase !== 'decide')
        .map((p) => [p.phase, p.ok])
        .slice(0, 2),
      [
        ['secondary --force (I/O held)', true],
        ['stop service writer', true],
      ],
      'held I/O is failed first, then the chain comes down',
    );
    t.equal((await status(trio.alpha)).role, 'Secondary', 'alpha demoted itself');
    trio.healAll();
    await waitHealthy(trio, 90000);
    const s = await waitStatus(
      trio.alpha,
      (x) => x.role === 'Secondary' && x.device.diskState === 'UpToDate',
    );
    t.notOk(
      s.peers.some((p) => /split/i.test(p.lastError ?? '')),
      'no split brain',
    );
    t.equal((await sup.beta.resource()).phase, 'running', 'beta keeps it (no failback)');
  },
);

async function waitFor(
  fn: () => boolean | Promise<boolean>,
  what: string,
  ms = 30000,
): Promise<void> {
  if (!(await waitUntil(fn, ms, 200))) throw new Error(`not ${what} within ${ms} ms`);
}
