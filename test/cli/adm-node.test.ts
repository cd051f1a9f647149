// urbdadm against one real urbd daemon (issue 14): --help names every exit code, the
// "start it with" hint names --config, `down --force` is the verb its refusal suggests,
// the daemon applies the file `--config` names, `events` for an unknown resource exits 10,
// `status --verbose` and `--json` agree on `serving`, and `status` is in colour on a
// terminal only (not into a pipe, not with NO_COLOR).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  adm,
  type NodeSpec,
  oneNodeConfig,
  startDaemon,
  URBDADM_CLI,
  failsWith,
  ok,
} from '../helpers/daemon.js';
import { openExport } from '../helpers/raw-client.js';
import { runInPty, SGR } from '../helpers/pty.js';
import {
  makeDisk,
  run,
  showRun as show,
  type Teardown,
  tmpDir,
  waitFor,
  within,
} from '../helpers/server.js';
import type { ResourceStatus } from '../../src/resource/status.js';

t.setTimeout(90000);
// Every subtest has its own directory, run directory and daemon.
t.jobs = 3;

const MiB = 1 << 20;

async function freshNode(t: Teardown): Promise<{ spec: NodeSpec; dir: string; sock: string }> {
  const dir = tmpDir(t, 'urbd-adm-');
  const disk = await makeDisk(dir, 16 * MiB);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const r = await adm(spec, ['create-md', 'r0']);
  if (r.code !== 0) throw new Error(`create-md failed: ${show(r)}`);
  return { spec, dir, sock: path.join(spec.runDir, 'r0.nbd') };
}

async function statusJson(spec: NodeSpec): Promise<ResourceStatus> {
  const r = await adm(spec, ['status', '--json', 'r0']);
  if (r.code !== 0) throw new Error(`status: ${show(r)}`);
  return (JSON.parse(r.stdout) as ResourceStatus[])[0]!;
}

t.test('--help lists every exit code; the no-daemon hint names --config', async (t) => {
  const help = await run(process.execPath, [URBDADM_CLI, '--help']);
  t.equal(help.code, 0);
  // commander wraps the description to the terminal's width.
  t.match(
    help.stdout.replace(/\s+/g, ' '),
    'Exit codes: 0 done, 1 usage, 5 a wait-* --timeout ran out, 10 failed, 11 state change ' +
      'refused, 20 no daemon.',
  );

  const n = await freshNode(t);
  failsWith(
    t,
    await adm(n.spec, ['up', 'r0']),
    20,
    new RegExp(
      `\\(start it with: urbd --node alpha --config ${n.spec.config} --run-dir ${n.spec.runDir}\\)\\n$`,
    ),
    'no daemon',
  );
});

t.test(
  'down is refused while a client is attached, suggesting --force; down --force works',
  async (t) => {
    const n = await freshNode(t);
    const d = await startDaemon(n.spec, { t });
    ok(t, await d.adm(['up', 'r0']), 'up');
    ok(t, await d.adm(['primary', '--force', 'r0']), 'primary --force');
    const { client } = await openExport({ path: n.sock }, 'r0');
    t.teardown(() => client.destroy());
    t.ok(
      await waitFor(async () => (await statusJson(n.spec)).device.export.clients === 1, 10000),
      'the client is counted',
    );
    const refused = await d.adm(['down', 'r0']);
    failsWith(t, refused, 11, /in use by 1 NBD client.*use --force to cut/, 'plain down');
    const help = await d.adm(['down', '--help']);
    t.match(help.stdout, /--force/, 'down --help offers the --force the refusal suggests');
    ok(t, await d.adm(['down', '--force', 'r0']), 'down --force');
    t.not(await within(client.closed, 10000), 'timeout', 'the client was cut off');
    t.equal((await d.adm(['status'])).stdout, '# no resources are up on alpha\n', 'r0 is down');
    const gi = await d.adm(['get-gi', 'r0']);
    t.match(
      gi.stdout,
      /:1:1:0:0:0:0:0:1:0\n$/,
      'down --force left the metadata clean, not Primary',
    );
  },
);

t.test('up applies the file --config names, not the one the daemon started with', async (t) => {
  const n = await freshNode(t);
  // The daemon's own file knows no resource at all.
  const daemonConf = path.join(n.dir, 'daemon.conf');
  writeFileSync(daemonConf, '# nothing here yet\n');
  const d = await startDaemon({ ...n.spec, config: daemonConf }, { t });
  // urbdadm names the file that holds r0: the daemon reads that one.
  ok(t, await adm(n.spec, ['up', 'r0']), 'up with --config naming the file with r0');
  t.equal((await statusJson(n.spec)).device.diskState, 'Inconsistent', 'r0 is up');
  ok(t, await adm(n.spec, ['down', 'r0']), 'down');
  ok(t, await adm(n.spec, ['attach', 'r0']), 'attach of a resource not up brings it up');
  ok(t, await adm(n.spec, ['down', 'r0']), 'down again');

  // An error names the file urbdadm gave, not the daemon's.
  const other = path.join(n.dir, 'other.conf');
  writeFileSync(other, '# no resources\n');
  const r = await adm({ ...n.spec, config: other }, ['up', 'r0']);
  t.equal(r.code, 10, 'a resource the named file lacks: exit 10', { output: show(r) });
  t.match(r.stderr, `no resource "r0" in ${other}`);
  t.notMatch(r.stderr, daemonConf, "the daemon's file is not the one that counts");
  const down = await adm({ ...n.spec, config: other }, ['down', 'r0']);
  t.equal(down.code, 10, 'down checks the named file too (missing-ok only for a known name)');
  t.match(down.stderr, other);
  t.ok(d.proc.exitCode === undefined, 'the daemon runs on');
});

t.test(
  'events for a resource that does not exist exits 10; a configured one streams',
  async (t) => {
    const n = await freshNode(t);
    const d = await startDaemon(n.spec, { t });
    failsWith(
      t,
      await d.adm(['events', 'r9'], { timeoutMs: 20000 }),
      10,
      /^urbdadm: events r9: no resource "r9" in /,
      'events r9',
    );
    failsWith(
      t,
      await d.adm(['events', '--json', 'r9'], { timeoutMs: 20000 }),
      10,
      /no resource "r9"/,
      'events --json r9',
    );
    // r0 is configured but down: a listener may wait for it to come up.
    const now = await d.adm(['events', '--now', 'r0']);
    ok(t, now, 'events --now r0 (down)');
    t.equal(now.stdout, 'exists -\n', 'nothing of r0 yet, then the end-of-state marker');
    ok(t, await d.adm(['up', 'r0']), 'up');
    const up = await d.adm(['events', '--now', 'r0']);
    t.match(up.stdout, /^exists resource name:r0 role:Secondary/m);
  },
);

t.test('status --verbose and --json agree on serving, Secondary and Primary', async (t) => {
  const n = await freshNode(t);
  const d = await startDaemon(n.spec, { t });
  ok(t, await d.adm(['up', 'r0']), 'up');
  let s = await statusJson(n.spec);
  t.equal(s.device.export.listening, true, 'a Secondary listens, to say why it refuses');
  t.equal(s.device.export.serving, false, 'JSON: a Secondary does not serve');
  t.match(s.device.export.refusal, /Secondary/);
  let v = await d.adm(['status', '--verbose', 'r0']);
  t.match(v.stdout, /^ {4}export:\S+r0\.nbd clients:0 serving:no$/m, 'text: serving:no');

  ok(t, await d.adm(['primary', '--force', 'r0']), 'primary --force');
  s = await statusJson(n.spec);
  t.equal(s.device.export.serving, true, 'JSON: a Primary serves');
  t.equal(s.device.export.refusal, undefined);
  v = await d.adm(['status', '--verbose', 'r0']);
  t.match(v.stdout, /^ {4}export:\S+r0\.nbd clients:0 serving:yes$/m, 'text: serving:yes');
});

t.test('status is in colour on a terminal, plain into a pipe or with NO_COLOR', async (t) => {
  const n = await freshNode(t);
  const d = await startDaemon(n.spec, { t });
  ok(t, await d.adm(['up', 'r0']), 'up');
  const admArgs = [
    URBDADM_CLI,
    '--node',
    'alpha',
    '--config',
    n.spec.config,
    '--run-dir',
    n.spec.runDir,
  ];
  const tty = await runInPty(process.execPath, [...admArgs, 'status', 'r0'], {
    env: { NO_COLOR: undefined },
  });
  t.equal(tty.code, 0, 'status on a terminal', { output: show(tty) });
  t.match(
    tty.stdout,
    'disk:\x1b[1m\x1b[31mInconsistent\x1b[39m\x1b[22m',
    'an Inconsistent disk stands out in bold red',
  );
  t.match(tty.stdout, /^r0 role:Secondary\r?$/m, 'a Secondary is plain');

  const noColour = await runInPty(process.execPath, [...admArgs, 'status', 'r0'], {
    env: { NO_COLOR: '1' },
  });
  t.equal(noColour.code, 0);
  t.match(noColour.stdout, /disk:Inconsistent/);
  t.notMatch(noColour.stdout, SGR, 'NO_COLOR: no escapes');

  const json = await runInPty(process.execPath, [...admArgs, 'status', '--json', 'r0'], {
    env: { NO_COLOR: undefined },
  });
  t.notMatch(json.stdout, SGR, '--json is never coloured');

  const piped = await d.adm(['status', 'r0']);
  ok(t, piped, 'status into a pipe');
  t.equal(piped.stdout, 'r0 role:Secondary\n  disk:Inconsistent\n', 'plain text');
  t.ok(!SGR.test(piped.stdout), 'no escapes into a pipe');
});
