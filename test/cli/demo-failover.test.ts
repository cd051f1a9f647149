// `npm run demo -- --failover` (scripts/demo-failover): alpha takes r0 by itself, dies
// (kill -9), beta takes over with every line alpha's writer wrote, alpha comes back as a
// Secondary; URBD_DEMO_ONCE=1 ends it there, and it leaves nothing behind: no process of
// its own, no mount, no loop device.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort } from '../helpers/pair.js';
import { alive, run, spawnTracked, tmpDir, within } from '../helpers/server.js';

t.setTimeout(420000);

const here = path.dirname(fileURLToPath(import.meta.url));
const DEMO = path.resolve(here, '../../../scripts/demo');

/** Processes whose command line or working directory names `dir` (the demo's own). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${e}/cwd`);
      } catch {
        // a kernel thread, or gone
      }
      if (cmd.includes(dir) || cwd.startsWith(dir)) pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Mount points under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Loop devices whose backing file lies under `dir`. */
function loopsUnder(dir: string): string[] {
  const loops: string[] = [];
  for (const e of readdirSync('/sys/block')) {
    if (!e.startsWith('loop')) continue;
    try {
      if (
        readFileSync(`/sys/block/${e}/loop/backing_file`, 'utf8')
          .trim()
          .startsWith(dir + '/')
      )
        loops.push(`/dev/${e}`);
    } catch {
      // not bound
    }
  }
  return loops;
}

t.test('alpha dies, beta takes over with all of the writer lines, alpha rejoins', async (t) => {
  const dir = tmpDir(t, 'urbd-demo-failover-');
  // Runs before the directory is removed: if the demo died half-way, whatever it left is
  // stopped here by PID, and its mounts and loop devices released.
  t.teardown(async () => {
    for (const pid of processesUnder(dir)) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const m of mountsUnder(dir)) await run('umount', ['-l', m], { timeoutMs: 20000 });
    for (const l of loopsUnder(dir)) await run('losetup', ['-d', l], { timeoutMs: 20000 });
  });
  const env = {
    ...process.env,
    URBD_DEMO_DIR: dir,
    URBD_DEMO_SIZE: '32M',
    URBD_DEMO_ONCE: '1',
    URBD_DEMO_ALPHA_PORT: String(await freePort()),
    URBD_DEMO_BETA_PORT: String(await freePort()),
    URBD_DEMO_WITNESS_PORT: String(await freePort()),
  };
  const demo = spawnTracked('bash', [DEMO, '--failover'], { t, env });
  const code = await within(demo.exited, 300000);
  const out = demo.output();
  t.equal(code, 0, 'the demo ends by itself (URBD_DEMO_ONCE=1)', { output: out.slice(-4000) });

  t.match(out, /urbd-failover on alpha .*\nr0 role:Primary phase:running auto-promote:yes/);
  t.match(out, /=== [\d:]+ kill -9 alpha: urbd \d+, urbd-failover \d+, writer \d+ ===/);
  t.match(out, /urbd-failover on beta .*\nr0 role:Primary phase:running/);
  t.match(
    out,
    /beta's takeover, phase by phase.*\n +decide +\d+ ms\n +promote +\d+ ms\n +attach +\d+ ms\n +mount \S+ +\d+ ms\n +service writer +\d+ ms\n/,
  );
  t.match(out, /kill → chain running on beta: +\d+ ms/);
  t.match(out, /kill → first new writer line on beta: +\d+ ms \(line \d+\)/);
  t.match(
    out,
    /alpha's writer wrote (\d+) lines: (all \d+ are on beta, unchanged|the first \d+ are on beta; the last one's fsync had not returned)/,
  );
  t.notMatch(out, /LOST/);
  t.match(out, /urbd-failover on alpha .*\nr0 role:Secondary phase:stopped/, 'alpha rejoins');
  t.match(out, /beta keeps r0 \(no failback\): phase running, role Primary/);
  t.match(out, /stopped \(logs: /);

  t.same(processesUnder(dir), [], 'no daemon, supervisor, nbdfuse or writer is left');
  t.same(mountsUnder(dir), [], 'nothing is mounted under the demo directory');
  t.same(loopsUnder(dir), [], 'no loop device is backed by its files');
  for (const n of ['alpha', 'beta', 'witness']) {
    const r = await run(
      process.execPath,
      [
        path.resolve(here, '../../src/cli/urbdadm.js'),
        '--node',
        n,
        '--config',
        `${dir}/urbd.conf`,
        '--run-dir',
        `${dir}/run-${n}`,
        'status',
      ],
      { timeoutMs: 30000 },
    );
    t.equal(r.code, 20, `no urbd answers for ${n}`);
  }
});
