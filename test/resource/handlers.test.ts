// Handler scripts (handlers.ts): DRBD's environment, exit codes, the timeout that kills a hanging
// script with its children, shutdown, and what fence-peer's exit code means (drbd.md §8.2).
// The runner tests run real shell scripts written to a temporary directory.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import t from 'tap';
import {
  buildHandlerEnv,
  fenceOutcome,
  type HandlerContext,
  type HandlerResult,
  HandlerRunner,
  OUTPUT_TAIL,
} from '../../src/resource/handlers.js';
import { tmpDir, waitFor } from '../helpers/server.js';

// ---- fenceOutcome ----------------------------------------------------------------------------

const DISKS = ['UpToDate', 'Consistent', 'Outdated', 'Inconsistent', 'Diskless', 'DUnknown'];
const FENCING = ['resource-only', 'resource-and-stonith'] as const;

function result(over: Partial<HandlerResult>): HandlerResult {
  return {
    name: 'fence-peer',
    exitCode: 0,
    signal: null,
    timedOut: false,
    durationMs: 12,
    output: '',
    ...over,
  };
}

t.test('fenceOutcome: every exit code, disk state and fencing mode', async (t) => {
  let checked = 0;
  for (let code = 0; code <= 255; code++) {
    for (const disk of DISKS) {
      for (const fencing of FENCING) {
        const o = fenceOutcome(result({ exitCode: code }), disk, fencing);
        const what = `exit ${code}, my disk ${disk}, ${fencing}`;
        t.notOk(o.message.includes('\n'), `${what}: one line`);
        t.equal(o.outdateSelf, code === 6, `${what}: outdateSelf`);
        if (code === 3) {
          t.same(
            [o.verdict, o.peerDisk, o.success],
            ['peer-inconsistent', 'Inconsistent', true],
            what,
          );
        } else if (code === 4) {
          t.same([o.verdict, o.peerDisk, o.success], ['peer-outdated', 'Outdated', true], what);
        } else if (code === 5 && disk === 'UpToDate') {
          t.same(
            [o.verdict, o.peerDisk, o.success],
            ['peer-unreachable-assumed-dead', 'Outdated', true],
            what,
          );
        } else if (code === 5) {
          t.same([o.verdict, o.peerDisk, o.success], ['peer-unreachable', undefined, false], what);
          t.match(o.message, `my disk is ${disk}, not UpToDate`, `${what}: says why`);
        } else if (code === 6) {
          t.same(
            [o.verdict, o.peerDisk, o.success],
            ['peer-primary-outdate-self', undefined, false],
            what,
          );
        } else if (code === 7) {
          t.same([o.verdict, o.peerDisk, o.success], ['peer-stonithed', 'Outdated', true], what);
          t.equal(
            o.message.includes('unusual'),
            fencing === 'resource-only',
            `${what}: unusual unless resource-and-stonith`,
          );
        } else {
          t.same([o.verdict, o.peerDisk, o.success], ['failed', undefined, false], what);
          t.match(o.message, `exit code ${code}`, `${what}: names the exit code`);
        }
        checked++;
      }
    }
  }
  t.equal(checked, 256 * DISKS.length * FENCING.length);
});

t.test('fenceOutcome: a signal, a timeout or a handler that did not start fail', async (t) => {
  const cases: Array<[string, Partial<HandlerResult>, string]> = [
    ['SIGTERM', { exitCode: null, signal: 'SIGTERM' }, 'killed by SIGTERM'],
    ['SIGKILL', { exitCode: null, signal: 'SIGKILL' }, 'killed by SIGKILL'],
    ['SIGSEGV', { exitCode: null, signal: 'SIGSEGV' }, 'killed by SIGSEGV'],
    // Timed out, then exited by itself with a good code while being killed: still failed.
    ['timed out, exit 4', { exitCode: 4, timedOut: true, durationMs: 60000 }, 'timed out'],
    ['timed out, exit 7', { exitCode: 7, timedOut: true, durationMs: 60000 }, 'timed out'],
    [
      'timed out, killed',
      { exitCode: null, signal: 'SIGTERM', timedOut: true, durationMs: 60000 },
      'timed out after 60.0 s',
    ],
    [
      'could not start',
      { exitCode: null, output: 'could not start: spawn /bin/sh ENOENT' },
      'could not start',
    ],
  ];
  for (const [what, over, message] of cases) {
    for (const disk of DISKS) {
      for (const fencing of FENCING) {
        const o = fenceOutcome(result(over), disk, fencing);
        t.same(
          [o.verdict, o.peerDisk, o.outdateSelf, o.success],
          ['failed', undefined, false, false],
          `${what}, ${disk}, ${fencing}`,
        );
        t.match(o.message, message);
        t.notOk(o.message.includes('\n'));
      }
    }
  }
  const multiLine = fenceOutcome(
    result({ exitCode: null, output: 'could not start:\nline two' }),
    'UpToDate',
    'resource-only',
  );
  t.notOk(multiLine.message.includes('\n'), 'output with newlines becomes one line');
});

// ---- buildHandlerEnv ------------------------------------------------------------------------

const v4 = (host: string, port: number) => ({ family: 'ipv4' as const, host, port });

function context(over: Partial<HandlerContext> = {}): HandlerContext {
  const hosts = [
    { name: 'alpha', nodeId: 0, address: v4('10.0.0.1', 7789) },
    { name: 'beta', nodeId: 1, address: v4('10.0.0.2', 7789) },
    { name: 'gamma', nodeId: 2, address: v4('10.0.0.3', 7789) },
  ];
  return {
    resource: 'r0',
    minor: 3,
    volume: 0,
    configFile: '/etc/urbd/urbd.conf',
    backingDisk: '/dev/vg/r0',
    me: hosts[0]!,
    hosts,
    peer: hosts[1],
    upToDateNodes: ['alpha', 'gamma'],
    ...over,
  };
}

/** Every DRBD variable of context(), with its value. */
const FULL_ENV = {
  DRBD_RESOURCE: 'r0',
  DRBD_CONF: '/etc/urbd/urbd.conf',
  DRBD_MINOR: '3',
  DRBD_MINOR_0: '3',
  DRBD_VOLUME: '0',
  DRBD_BACKING_DEV: '/dev/vg/r0',
  DRBD_LL_DISK: '/dev/vg/r0',
  DRBD_MY_ADDRESS: '10.0.0.1',
  DRBD_MY_AF: 'ipv4',
  DRBD_MY_NODE_ID: '0',
  DRBD_NODE_ID_0: 'alpha',
  DRBD_NODE_ID_1: 'beta',
  DRBD_NODE_ID_2: 'gamma',
  DRBD_PEERS: 'beta gamma',
  DRBD_PEER: 'beta',
  DRBD_PEER_ADDRESS: '10.0.0.2',
  DRBD_PEER_AF: 'ipv4',
  DRBD_PEER_NODE_ID: '1',
  UP_TO_DATE_NODES: '0x00000005',
};

t.test('buildHandlerEnv: every variable, as DRBD names and formats it', async (t) => {
  t.same(buildHandlerEnv(context()), FULL_ENV);
});

t.test('buildHandlerEnv: without a peer, a disk, node ids or UpToDate nodes', async (t) => {
  const hosts = [
    { name: 'alpha', address: { family: 'ipv6' as const, host: 'fd00::1', port: 7789 } },
    { name: 'beta' },
  ];
  t.same(
    buildHandlerEnv({
      resource: 'r1',
      minor: 0,
      volume: 0,
      configFile: '/etc/urbd/urbd.conf',
      me: hosts[0]!,
      hosts,
    }),
    {
      DRBD_RESOURCE: 'r1',
      DRBD_CONF: '/etc/urbd/urbd.conf',
      DRBD_MINOR: '0',
      DRBD_MINOR_0: '0',
      DRBD_VOLUME: '0',
      DRBD_MY_ADDRESS: 'fd00::1',
      DRBD_MY_AF: 'ipv6',
      DRBD_PEERS: 'beta',
    },
  );
  const peerV6 = {
    name: 'beta',
    nodeId: 9,
    address: { family: 'ipv6' as const, host: 'fd00::2', port: 7789 },
  };
  const env = buildHandlerEnv(context({ peer: peerV6 }));
  t.equal(env.DRBD_PEER_ADDRESS, 'fd00::2');
  t.equal(env.DRBD_PEER_AF, 'ipv6');
  t.equal(env.DRBD_PEER_NODE_ID, '9');
  t.same(buildHandlerEnv(context({ peer: { name: 'beta' } })).DRBD_PEER, 'beta');
  t.notOk('DRBD_PEER_ADDRESS' in buildHandlerEnv(context({ peer: { name: 'beta' } })));
});

t.test('buildHandlerEnv: UP_TO_DATE_NODES is 0x and 8 upper-case hex digits', async (t) => {
  const mask = (names: string[], hosts?: HandlerContext['hosts']) =>
    buildHandlerEnv(context({ upToDateNodes: names, ...(hosts ? { hosts } : {}) }))
      .UP_TO_DATE_NODES;
  t.equal(mask([]), '0x00000000', 'nobody');
  t.equal(mask(['beta']), '0x00000002');
  t.equal(mask(['alpha', 'beta', 'gamma']), '0x00000007');
  t.equal(mask(['delta']), '0x00000000', 'a name that is no host counts for nothing');
  const far = [
    { name: 'alpha', nodeId: 0 },
    { name: 'omega', nodeId: 31 },
    { name: 'mid', nodeId: 10 },
    { name: 'noid' },
  ];
  t.equal(mask(['omega'], far), '0x80000000', 'node id 31');
  t.equal(
    mask(['alpha', 'mid', 'omega', 'noid'], far),
    '0x80000401',
    'a host without id is left out',
  );
});

// ---- HandlerRunner --------------------------------------------------------------------------

interface LogLine {
  level: number;
  msg: string;
  handler?: string;
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
  durationMs?: number;
  output?: string;
}

function logger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log: Logger = pino(
    { level: 'debug' },
    { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) },
  );
  return { log, lines };
}

function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

/** Gone, or a zombie nobody has reaped yet (it runs nothing and holds nothing). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** The process group of a live process (field 5 of /proc/PID/stat). */
function pgrpOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

function readPid(file: string): number {
  return Number(readFileSync(file, 'utf8').trim());
}

t.test('the script sees exactly the documented DRBD variables', async (t) => {
  const dir = tmpDir(t);
  const out = path.join(dir, 'env');
  // env -0: values may hold newlines. An inherited DRBD_ variable must not leak through.
  const dump = script(dir, 'dump-env.sh', `env -0 > "${out}"`);
  process.env.DRBD_STALE_FROM_PARENT = 'x';
  process.env.UP_TO_DATE_NODES = '0xFFFFFFFF';
  t.teardown(() => {
    delete process.env.DRBD_STALE_FROM_PARENT;
    delete process.env.UP_TO_DATE_NODES;
  });
  const { log } = logger();
  const runner = new HandlerRunner({ commands: { 'fence-peer': dump }, timeoutMs: 60000, log });
  const r = await runner.run('fence-peer', context(), { DRBD_CSTATE: 'Connecting' });
  t.equal(r?.exitCode, 0, 'ran');
  const env = Object.fromEntries(
    readFileSync(out, 'utf8')
      .split('\0')
      .filter((l) => l !== '')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const drbd = Object.fromEntries(
    Object.entries(env).filter(([k]) => k.startsWith('DRBD_') || k === 'UP_TO_DATE_NODES'),
  );
  t.same(drbd, { ...FULL_ENV, DRBD_CSTATE: 'Connecting' }, 'DRBD variables, nothing more');
  t.equal(env.PATH, process.env.PATH, "the daemon's own environment is passed on");
});

t.test('exit codes and output come back; one log line per call', async (t) => {
  const dir = tmpDir(t);
  const exitWith = script(dir, 'exit.sh', 'echo "out $1"; echo "err $1" >&2; exit "$1"');
  const { log, lines } = logger();
  for (const code of [0, 1, 3, 4, 5, 6, 7, 255]) {
    const runner = new HandlerRunner({
      commands: { 'fence-peer': `${exitWith} ${code}` },
      timeoutMs: 60000,
      log,
    });
    const before = lines.length;
    const r = (await runner.run('fence-peer', context()))!;
    t.equal(r.name, 'fence-peer');
    t.equal(r.exitCode, code, `exit ${code}`);
    t.equal(r.signal, null);
    t.equal(r.timedOut, false);
    t.equal(r.output, `out ${code}\nerr ${code}`, 'stdout, then stderr');
    t.ok(r.durationMs >= 0 && r.durationMs < 60000);
    t.equal(lines.length, before + 1, 'one log line');
    const line = lines.at(-1)!;
    t.equal(line.handler, 'fence-peer');
    t.equal(line.exitCode, code);
    t.equal(line.timedOut, false);
    t.equal(line.output, r.output);
    t.equal(line.level, code === 0 ? 30 : 40, 'info when it succeeded, warn otherwise');
  }
});

t.test('output is kept bounded: the tail of each stream', async (t) => {
  const dir = tmpDir(t);
  const noisy = script(
    dir,
    'noisy.sh',
    'i=0; while [ $i -lt 2000 ]; do echo "line $i of stdout"; echo "line $i of stderr" >&2; i=$((i+1)); done',
  );
  const runner = new HandlerRunner({
    commands: { 'out-of-sync': noisy },
    timeoutMs: 60000,
    log: logger().log,
  });
  const r = (await runner.run('out-of-sync', context()))!;
  t.equal(r.exitCode, 0);
  t.ok(r.output.length <= 2 * OUTPUT_TAIL + 1, `bounded (${r.output.length} characters)`);
  t.match(r.output, 'line 1999 of stdout\n');
  t.ok(r.output.endsWith('line 1999 of stderr'));
  t.notOk(r.output.includes('line 0 of'), 'the head is dropped');
});

t.test('an unconfigured handler returns undefined and runs nothing', async (t) => {
  const { log, lines } = logger();
  const runner = new HandlerRunner({ commands: { 'split-brain': 'true' }, timeoutMs: 1000, log });
  t.equal(await runner.run('fence-peer', context()), undefined);
  t.equal(lines.length, 0, 'nothing logged');
  t.equal((await runner.run('split-brain', context()))?.exitCode, 0);
});

t.test('a command that does not exist fails with a clear result', async (t) => {
  const { log, lines } = logger();
  const runner = new HandlerRunner({
    commands: { 'split-brain': '/nonexistent/urbd-no-such-handler' },
    timeoutMs: 60000,
    log,
  });
  const r = (await runner.run('split-brain', context()))!;
  t.equal(r.exitCode, 127, "the shell's 127");
  t.match(r.output, /urbd-no-such-handler.*not found/);
  t.match(lines.at(-1)!.msg, 'exit code 127 (command not found)');
  t.equal(fenceOutcome(r, 'UpToDate', 'resource-only').verdict, 'failed');

  const noShell = new HandlerRunner({
    commands: { 'split-brain': 'true' },
    timeoutMs: 60000,
    log,
    shell: '/nonexistent/sh',
  });
  const s = (await noShell.run('split-brain', context()))!;
  t.same([s.exitCode, s.signal, s.timedOut], [null, null, false], 'no process at all');
  t.match(s.output, /could not start: .*ENOENT/);
  t.match(lines.at(-1)!.msg, 'handler split-brain: could not start');
  t.equal(fenceOutcome(s, 'UpToDate', 'resource-only').verdict, 'failed');
});

/** A script that hangs in `sleep 600` after starting another `sleep 600` in the background. */
function hanging(dir: string, trapTerm = false): string {
  return script(
    dir,
    trapTerm ? 'hang-ignoring-term.sh' : 'hang.sh',
    [
      trapTerm ? "trap '' TERM" : '',
      `sleep 600 &`,
      `echo $! > "${dir}/child.pid"`,
      `echo $$ > "${dir}/shell.pid"`,
      // Not exec: the shell stays, waiting for its foreground sleep.
      `sleep 600`,
      `echo not reached`,
    ].join('\n'),
  );
}

t.test('a hanging handler is killed with its children after the timeout', async (t) => {
  const dir = tmpDir(t);
  const { log, lines } = logger();
  const runner = new HandlerRunner({
    commands: { 'fence-peer': hanging(dir) },
    timeoutMs: 3000,
    log,
  });
  const pending = runner.run('fence-peer', context());
  t.ok(await waitFor(() => existsSync(path.join(dir, 'shell.pid')), 30000), 'running');
  const [group] = runner.runningGroups();
  const r = (await pending)!;
  t.equal(r.timedOut, true, 'timed out');
  t.equal(r.signal, 'SIGTERM', 'sh -c died of SIGTERM');
  t.ok(r.durationMs >= 2900 && r.durationMs < 60000, `took ${r.durationMs} ms`);
  const shell = readPid(path.join(dir, 'shell.pid'));
  const child = readPid(path.join(dir, 'child.pid'));
  t.ok(await waitFor(() => gone(group!), 10000), `sh -c ${group} is gone`);
  t.ok(await waitFor(() => gone(shell), 10000), `script shell ${shell} is gone`);
  t.ok(await waitFor(() => gone(child), 10000), `background child ${child} is gone`);
  t.same(runner.runningGroups(), [], 'no longer tracked');
  t.equal(fenceOutcome(r, 'UpToDate', 'resource-and-stonith').verdict, 'failed');
  t.equal(lines.length, 1);
  t.equal(lines[0]!.timedOut, true);
  t.match(lines[0]!.msg, 'timed out after');
});

t.test('a handler that ignores SIGTERM gets SIGKILL after the grace period', async (t) => {
  const dir = tmpDir(t);
  const runner = new HandlerRunner({
    // The trap in the command too: sh -c itself ignores SIGTERM.
    commands: { 'fence-peer': `trap '' TERM; ${hanging(dir, true)}` },
    timeoutMs: 1000,
    killGraceMs: 1000,
    log: logger().log,
  });
  const r = (await runner.run('fence-peer', context()))!;
  t.equal(r.timedOut, true);
  t.equal(r.signal, 'SIGKILL', 'SIGTERM was ignored');
  t.ok(r.durationMs >= 1900, `SIGKILL came after the grace period (${r.durationMs} ms)`);
  const shell = readPid(path.join(dir, 'shell.pid'));
  const child = readPid(path.join(dir, 'child.pid'));
  t.ok(await waitFor(() => gone(shell), 10000), `shell ${shell} is gone`);
  t.ok(await waitFor(() => gone(child), 10000), `background child ${child} is gone`);
});

t.test('shutdown() kills running handlers; later calls do not start', async (t) => {
  const dir = tmpDir(t);
  const { log, lines } = logger();
  const runner = new HandlerRunner({
    commands: { 'fence-peer': hanging(dir), 'split-brain': `touch "${dir}/ran"` },
    timeoutMs: 600000,
    log,
  });
  const pending = runner.run('fence-peer', context());
  const started = await waitFor(
    () => existsSync(path.join(dir, 'shell.pid')) && existsSync(path.join(dir, 'child.pid')),
    30000,
  );
  t.ok(started, 'the handler is running');
  t.equal(runner.runningGroups().length, 1, 'tracked');
  t.equal(
    pgrpOf(readPid(path.join(dir, 'shell.pid'))),
    runner.runningGroups()[0],
    'by its process group',
  );
  await runner.shutdown();
  const r = (await pending)!;
  t.equal(r.timedOut, false, 'not a timeout');
  t.equal(r.signal, 'SIGTERM');
  const shell = readPid(path.join(dir, 'shell.pid'));
  const child = readPid(path.join(dir, 'child.pid'));
  t.ok(await waitFor(() => gone(shell), 10000), `shell ${shell} is gone`);
  t.ok(await waitFor(() => gone(child), 10000), `background child ${child} is gone`);
  t.same(runner.runningGroups(), []);

  const after = (await runner.run('split-brain', context()))!;
  t.same([after.exitCode, after.signal], [null, null], 'a failed result');
  t.match(after.output, 'urbd is stopping');
  t.notOk(existsSync(path.join(dir, 'ran')), 'nothing was started');
  t.equal(lines.length, 2, 'each call logged once');
});
