// The OCF agents under scripts/ocf against real urbd daemons: ocf-tester on both (installed
// under a provider directory of their own in /usr/lib/ocf/resource.d, removed afterwards),
// Pacemaker's own execution of validate-all (crm_resource --validate), the promotion score
// written into a CIB file, the stock Filesystem agent on the device path urbd-attach keeps,
// and crm_simulate on the shipped example CIB: the order of actions when the promoted node
// fails, and when the service's monitor fails.
import t, { type Test } from 'tap';
import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { detachExport } from '../../src/failover/attach.js';
import { loopsBackedBy } from '../../src/failover/attach-sys.js';
import { isMounted } from '../helpers/block-stack.js';
import { adm, oneNodeConfig, startDaemon, URBDADM_CLI, type NodeSpec } from '../helpers/daemon.js';
import {
  makeDisk,
  run,
  showRun,
  tmpDir,
  type RunResult,
  type Teardown,
} from '../helpers/server.js';

t.setTimeout(180000);

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../..');
const AGENTS = path.join(REPO, 'scripts/ocf');
const EXAMPLE_CIB = path.join(AGENTS, 'example-cib.xml');
const FAILOVER_CLI = path.resolve(here, '../../src/cli/urbd-failover.js');
const OCF_ROOT = '/usr/lib/ocf';
const PROVIDER = `urbd-test-${process.pid}`;
const URBDADM = `${process.execPath} ${URBDADM_CLI}`;
const URBD_FAILOVER = `${process.execPath} ${FAILOVER_CLI}`;

/** Copies both agents to OCF_ROOT/resource.d/PROVIDER (mode 755); removed in teardown. */
function installAgents(t: Teardown): string {
  const dir = path.join(OCF_ROOT, 'resource.d', PROVIDER);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const a of ['urbd', 'urbd-attach']) {
    copyFileSync(path.join(AGENTS, a), path.join(dir, a));
    chmodSync(path.join(dir, a), 0o755);
  }
  return dir;
}

/** Runs an agent action the way Pacemaker does: OCF_RESKEY_* in the environment. */
function agent(
  file: string,
  action: string,
  params: Record<string, string>,
  extra: Record<string, string> = {},
): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OCF_ROOT,
    OCF_RESOURCE_INSTANCE: 'p_test',
    OCF_RESKEY_CRM_meta_timeout: '20000',
    OCF_RESKEY_CRM_meta_interval: '10000',
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) env[`OCF_RESKEY_${k}`] = v;
  return run(file, [action], { env, timeoutMs: 30000 });
}

function ocfTester(file: string, name: string, params: Record<string, string>) {
  const args = ['-n', name];
  for (const [k, v] of Object.entries(params)) args.push('-o', `${k}=${v}`);
  return run('ocf-tester', [...args, file], { timeoutMs: 90000 });
}

/** One-node r0 on `dir`, metadata created and a daemon running; r0 not up. */
async function node(t: Teardown, dir: string): Promise<NodeSpec & { up: () => Promise<void> }> {
  const disk = await makeDisk(dir, 64 << 20);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec: NodeSpec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const md = await adm(spec, ['create-md', 'r0']);
  if (md.code !== 0) throw new Error(`create-md: ${showRun(md)}`);
  await startDaemon(spec, { t });
  return {
    ...spec,
    // UpToDate data: the first promotion with --force, then Secondary again.
    up: async () => {
      for (const v of [['up'], ['primary', '--force'], ['secondary']]) {
        const r = await adm(spec, [...v, 'r0']);
        if (r.code !== 0) throw new Error(`${v.join(' ')}: ${showRun(r)}`);
      }
    },
  };
}

t.test('ocf:urbd:urbd', async (t) => {
  const dir = tmpDir(t, 'urbd-ocf-');
  const agents = installAgents(t);
  const ra = path.join(agents, 'urbd');
  const n = await node(t, dir);
  await n.up();
  t.equal((await adm(n, ['down', 'r0'])).code, 0, 'r0 down before the tests');
  const params = {
    resource: 'r0',
    config: n.config,
    run_dir: n.runDir,
    node: 'alpha',
    urbdadm: URBDADM,
  };

  const started = Date.now();
  const ot = await ocfTester(ra, 'p_urbd', params);
  t.equal(ot.code, 0, 'ocf-tester passes', { output: showRun(ot) });
  t.match(ot.stdout, /passed all tests/);
  t.notMatch(ot.stdout, /partially supports promotable clones/);
  t.comment(`ocf-tester on urbd: ${Date.now() - started} ms`);

  const v = await run(
    'crm_resource',
    ['--validate', '--class', 'ocf', '--provider', PROVIDER, '--agent', 'urbd'].concat(
      Object.entries(params).map(([k, x]) => `--option=${k}=${x}`),
    ),
    { timeoutMs: 30000, env: { ...process.env, OCF_ROOT } },
  );
  t.equal(v.code, 0, 'crm_resource --validate (Pacemaker runs validate-all)', {
    output: showRun(v),
  });
  const bad = await agent(ra, 'validate-all', { ...params, resource: 'nope' });
  t.equal(bad.code, 6, 'validate-all of an unknown resource: OCF_ERR_CONFIGURED');
  t.match(bad.stderr, /ocf-exit-reason:.*nope/, 'says why');

  // Probes where nothing runs: no daemon on the run directory, or no urbdadm at all.
  const probe = { OCF_RESKEY_CRM_meta_interval: '0' };
  const empty = path.join(dir, 'empty-run');
  mkdirSync(empty);
  t.equal((await agent(ra, 'monitor', { ...params, run_dir: empty }, probe)).code, 7, 'no daemon');
  t.equal(
    (await agent(ra, 'monitor', { ...params, urbdadm: '/nonexistent/urbdadm' }, probe)).code,
    7,
    'urbdadm missing: a probe says not running',
  );
  t.equal((await agent(ra, 'stop', { ...params, run_dir: empty })).code, 0, 'stop, no daemon');

  // The promotion score lands in the CIB (a file here, as crm_attribute allows).
  const cib = path.join(dir, 'cib.xml');
  const sim = await run(
    'crm_simulate',
    ['-x', EXAMPLE_CIB, '-S', '--node-up', 'alpha', '--node-up', 'beta', '-O', cib],
    { timeoutMs: 30000 },
  );
  t.equal(sim.code, 0, 'a CIB with both nodes up', { output: showRun(sim) });
  // Pacemaker runs an anonymous clone's instances under the primitive's id (no ":0"), and
  // the scheduler reads master-<that id>.
  const inCib = { CIB_file: cib, OCF_RESOURCE_INSTANCE: 'p_urbd_r0' };
  const onAlpha = { ...inCib, OCF_RESKEY_CRM_meta_on_node: 'alpha' };
  const score = async (): Promise<string> => {
    const r = await run(
      'crm_attribute',
      ['-N', 'alpha', '-n', 'master-p_urbd_r0', '-l', 'reboot', '-G', '-q'],
      { timeoutMs: 30000, env: { ...process.env, CIB_file: cib } },
    );
    return r.code === 0 ? r.stdout.trim() : 'none';
  };
  t.equal(await score(), 'none', 'no score before start');
  t.equal((await agent(ra, 'start', params, onAlpha)).code, 0, 'start');
  t.equal(await score(), '10000', 'UpToDate: score 10000 after start');
  t.equal((await agent(ra, 'monitor', params, onAlpha)).code, 0, 'monitor: 0 (Secondary)');
  t.equal((await agent(ra, 'promote', params, onAlpha)).code, 0, 'promote');
  t.equal((await agent(ra, 'monitor', params, onAlpha)).code, 8, 'monitor: 8 (Primary)');
  t.equal(await score(), '10000', 'still 10000 as Primary');
  const custom = await agent(ra, 'monitor', { ...params, score_uptodate: '777' }, onAlpha);
  t.equal(custom.code, 8, 'monitor');
  t.equal(await score(), '777', 'score_uptodate is used');
  t.equal((await agent(ra, 'demote', params, onAlpha)).code, 0, 'demote');
  t.equal((await agent(ra, 'stop', params, onAlpha)).code, 0, 'stop');
  t.equal(await score(), 'none', 'score deleted at stop');
  t.equal((await agent(ra, 'monitor', params, onAlpha)).code, 7, 'monitor: 7');
});

t.test('ocf:urbd:urbd-attach', async (t) => {
  const dir = tmpDir(t, 'urbd-ocf-attach-');
  const agents = installAgents(t);
  const ra = path.join(agents, 'urbd-attach');
  const n = await node(t, dir);
  await n.up();
  t.equal((await adm(n, ['primary', 'r0'])).code, 0, 'r0 Primary');
  const stateDir = path.join(dir, 'state');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  const spec = {
    resource: 'r0',
    socket: path.join(n.runDir, 'r0.nbd'),
    method: 'nbdfuse' as const,
    stateDir,
    timeoutMs: 20000,
  };
  t.teardown(async () => {
    if (await isMounted(mnt)) await run('umount', ['-l', mnt]);
    await detachExport(spec).catch(() => undefined);
  });
  const params = {
    resource: 'r0',
    run_dir: n.runDir,
    state_dir: stateDir,
    method: 'nbdfuse',
    urbd_failover: URBD_FAILOVER,
  };
  const started = Date.now();
  const ot = await ocfTester(ra, 'p_attach', params);
  t.equal(ot.code, 0, 'ocf-tester passes', { output: showRun(ot) });
  t.match(ot.stdout, /passed all tests/);
  t.comment(`ocf-tester on urbd-attach: ${Date.now() - started} ms`);
  const fuseFile = path.join(stateDir, 'fuse', 'disk');
  t.same(loopsBackedBy(fuseFile), [], 'no loop device left behind');

  const v = await run(
    'crm_resource',
    ['--validate', '--class', 'ocf', '--provider', PROVIDER, '--agent', 'urbd-attach'].concat(
      Object.entries(params).map(([k, x]) => `--option=${k}=${x}`),
    ),
    { timeoutMs: 30000, env: { ...process.env, OCF_ROOT } },
  );
  t.equal(v.code, 0, 'crm_resource --validate', { output: showRun(v) });
  const badMethod = await agent(ra, 'validate-all', { ...params, method: 'floppy' });
  t.equal(badMethod.code, 6, 'validate-all: a bad method is OCF_ERR_CONFIGURED');
  const probe = { OCF_RESKEY_CRM_meta_interval: '0' };
  t.equal(
    (await agent(ra, 'monitor', { ...params, urbd_failover: '/nonexistent/x' }, probe)).code,
    7,
    'urbd-failover missing: a probe says not running',
  );

  // Start, then the stock Filesystem agent on the symlink, as the example CIB does.
  t.equal((await agent(ra, 'start', params)).code, 0, 'start');
  t.equal((await agent(ra, 'monitor', params)).code, 0, 'monitor: 0');
  const link = path.join(stateDir, 'device');
  t.ok(existsSync(link), 'STATE_DIR/device is there');
  const mkfs = await run('mkfs.ext4', ['-q', '-F', link], { timeoutMs: 60000 });
  t.equal(mkfs.code, 0, 'mkfs.ext4', { output: showRun(mkfs) });
  const fsParams = { device: link, directory: mnt, fstype: 'ext4' };
  const fsAgent = path.join(OCF_ROOT, 'resource.d/heartbeat/Filesystem');
  const canFs = existsSync(fsAgent) && (await run('sh', ['-c', 'command -v modprobe'])).code === 0;
  if (canFs) {
    const fsStart = await agent(fsAgent, 'start', fsParams);
    t.equal(fsStart.code, 0, 'ocf:heartbeat:Filesystem start on the symlink', {
      output: showRun(fsStart),
    });
    const deep = await agent(fsAgent, 'monitor', fsParams, { OCF_CHECK_LEVEL: '10' });
    t.equal(deep.code, 0, 'Filesystem monitor, depth 10 (reads the device)');
  } else {
    t.comment('no modprobe here (package kmod): the Filesystem agent refuses; mounting by hand');
    t.equal((await run('mount', [link, mnt])).code, 0, 'mount');
  }
  t.ok(await isMounted(mnt), 'mounted');

  const refused = await agent(ra, 'stop', params);
  t.equal(refused.code, 1, 'stop while mounted: OCF_ERR_GENERIC (Pacemaker escalates)');
  t.match(refused.stderr, /ocf-exit-reason:.*is mounted on/, 'says why');
  t.equal((await agent(ra, 'monitor', params)).code, 0, 'still attached');

  if (canFs) t.equal((await agent(fsAgent, 'stop', fsParams)).code, 0, 'Filesystem stop');
  else t.equal((await run('umount', [mnt])).code, 0, 'umount');
  t.equal((await agent(ra, 'stop', params)).code, 0, 'stop');
  t.equal((await agent(ra, 'monitor', params)).code, 7, 'monitor: 7');
  t.same(loopsBackedBy(fuseFile), [], 'nothing left');
});

/** The resource actions of a crm_simulate run, in the order it executed them. */
function executed(out: string): string[] {
  const from = out.indexOf('Executing Cluster Transition:');
  const to = out.indexOf('Revised Cluster Status:');
  return out
    .slice(from, to < 0 ? undefined : to)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('* Resource action:') || l.startsWith('* Fencing'))
    .map((l) => l.replace(/^\* (Resource action:\s+)?/, '').replace(/\s+/g, ' '));
}

function indexOf(t: Test, actions: string[], re: RegExp): number {
  const i = actions.findIndex((a) => re.test(a));
  t.ok(i >= 0, `executed: ${re.source}`, { actions });
  return i;
}

t.test('crm_simulate on the example CIB', async (t) => {
  const dir = tmpDir(t, 'urbd-ocf-sim-');
  const started = Date.now();
  const sim = (args: string[]) => run('crm_simulate', args, { timeoutMs: 30000 });
  const attr = (cib: string, nodeName: string, v: string) =>
    run('crm_attribute', ['-N', nodeName, '-n', 'master-p_urbd_r0', '-v', v, '-l', 'reboot'], {
      timeoutMs: 30000,
      env: { ...process.env, CIB_file: cib },
    });
  const s1 = path.join(dir, 's1.xml');
  const s2 = path.join(dir, 's2.xml');
  const s3 = path.join(dir, 's3.xml');

  let r = await sim(['-x', EXAMPLE_CIB, '-S', '--node-up', 'alpha', '--node-up', 'beta', '-O', s1]);
  t.equal(r.code, 0, 'both nodes up', { output: showRun(r) });
  let acts = executed(r.stdout);
  t.ok(acts.includes('p_urbd_r0:0 start on alpha'), 'urbd started on alpha', { acts });
  t.notOk(
    acts.some((a) => / promote /.test(a)),
    'no promotion without a promotion score',
  );
  t.notOk(
    acts.some((a) => /^p_attach_r0 start/.test(a)),
    'nothing of the group starts',
  );
  const verify = await run('crm_verify', ['-x', s1], { timeoutMs: 30000 });
  t.equal(verify.code, 0, 'crm_verify: the configuration is valid', { output: showRun(verify) });

  // alpha UpToDate (the agent's monitor would set this): promoted there, then the group.
  t.equal((await attr(s1, 'alpha', '10000')).code, 0, 'score on alpha');
  r = await sim(['-x', s1, '-S', '-O', s2]);
  acts = executed(r.stdout);
  const order1 = [
    /^p_urbd_r0 promote on alpha$/,
    /^p_attach_r0 start on alpha$/,
    /^p_fs_r0 start on alpha$/,
    /^p_db start on alpha$/,
    /^p_vip start on alpha$/,
  ].map((re) => indexOf(t, acts, re));
  t.same(
    [...order1].sort((a, b) => a - b),
    order1,
    'promote, attach, Filesystem, db, address',
  );

  // beta catches up; nothing moves (stickiness).
  t.equal((await attr(s2, 'beta', '10000')).code, 0, 'score on beta');
  r = await sim(['-x', s2, '-S', '-O', s3]);
  t.same(executed(r.stdout), [], 'beta UpToDate too: nothing moves');

  // The promoted node fails.
  r = await sim(['-x', s3, '-S', '--node-fail', 'alpha']);
  t.equal(r.code, 0, 'alpha fails', { output: showRun(r) });
  acts = executed(r.stdout);
  const order2 = [
    /^Fencing alpha/,
    /^p_urbd_r0 promote on beta$/,
    /^p_attach_r0 start on beta$/,
    /^p_fs_r0 start on beta$/,
    /^p_db start on beta$/,
    /^p_vip start on beta$/,
  ].map((re) => indexOf(t, acts, re));
  t.same(
    [...order2].sort((a, b) => a - b),
    order2,
    'fence alpha, promote beta, then attach, Filesystem, db, address on beta',
    { acts },
  );
  t.notOk(
    acts.some((a) => / on alpha$/.test(a)),
    'nothing runs on the dead node',
    { acts },
  );

  // The service's monitor fails: restarted in place, urbd left alone.
  r = await sim(['-x', s3, '-S', '-i', 'p_db_monitor_20000@alpha=7']);
  t.equal(r.code, 0, 'p_db monitor fails', { output: showRun(r) });
  acts = executed(r.stdout);
  const order3 = [
    /^p_vip stop on alpha$/,
    /^p_db stop on alpha$/,
    /^p_db start on alpha$/,
    /^p_vip start on alpha$/,
  ].map((re) => indexOf(t, acts, re));
  t.same(
    [...order3].sort((a, b) => a - b),
    order3,
    'address down, db restarted, address up',
  );
  t.notOk(
    acts.some((a) => /^p_(urbd_r0|attach_r0|fs_r0)\S* (stop|demote|promote|start)/.test(a)),
    'the device, the attach and the filesystem stay',
    { acts },
  );
  t.match(r.stdout, /Recover\s+p_db\s+\(\s*alpha\s*\)/, 'Recover p_db (alpha)');
  t.comment(`crm_simulate runs: ${Date.now() - started} ms`);
});
