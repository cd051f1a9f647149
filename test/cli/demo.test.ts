// `npm run demo` (scripts/demo, issue 14): the live status names the node each block comes
// from (both blocks start "r0 role:…"), and stopping the demo takes r0 down on both nodes,
// with --force on alpha, and stops both daemons.
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../../src/control/client.js';
import { freePort } from '../helpers/pair.js';
import { alive, spawnTracked, tmpDir, waitFor } from '../helpers/server.js';

t.setTimeout(240000);

const here = path.dirname(fileURLToPath(import.meta.url));
const DEMO = path.resolve(here, '../../../scripts/demo');

/** The PID a daemon reports on its control socket, or undefined when none answers. */
async function daemonPid(runDir: string): Promise<number | undefined> {
  try {
    const c = await ControlClient.connect(runDir);
    try {
      return ((await c.request('ping')) as { pid: number }).pid;
    } finally {
      c.close();
    }
  } catch {
    return undefined;
  }
}

t.test('the live status says which block is alpha and which is beta', async (t) => {
  const dir = tmpDir(t, 'urbd-demo-');
  const env = {
    ...process.env,
    URBD_DEMO_DIR: dir,
    URBD_DEMO_SIZE: '16M',
    URBD_DEMO_PORT: String(await freePort()),
    URBD_DEMO_ALPHA_PORT: String(await freePort()),
    URBD_DEMO_BETA_PORT: String(await freePort()),
  };
  const demo = spawnTracked('bash', [DEMO], { t, env });
  // The daemons run in their own sessions (so that Ctrl-C reaches the script first): if
  // the demo dies half-way, they are stopped here by the PID they report.
  const pids: number[] = [];
  t.teardown(() => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  const labelled =
    /== node alpha ==\r?\nr0 role:Primary\r?\n {2}disk:UpToDate\r?\n(?: .*\r?\n)*== node beta ==\r?\nr0 role:Secondary\r?\n {2}disk:UpToDate\r?\n/;
  const seen = await waitFor(() => labelled.test(demo.output()), 180000, 200);
  for (const n of ['alpha', 'beta']) {
    const pid = await daemonPid(path.join(dir, `run-${n}`));
    if (pid !== undefined) pids.push(pid);
  }
  t.ok(seen, 'a block headed "== node alpha ==" (Primary), then "== node beta ==" (Secondary)', {
    output: demo.output().slice(-3000),
  });
  t.equal(pids.length, 2, 'both daemons answer');

  const code = await demo.stop(60000);
  t.equal(code, 0, 'the demo stops cleanly', { output: demo.output().slice(-3000) });
  t.match(demo.output(), /stopping: urbdadm down r0 on both nodes\n/);
  t.notMatch(demo.output(), /urbdadm: down/, 'down worked on both nodes');
  t.match(demo.output(), /stopped \(daemon logs: /);
  for (const pid of pids) t.notOk(alive(pid), `daemon ${pid} stopped`);
});
