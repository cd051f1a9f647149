// urbdadm against a real pair of daemons (issue 14): wait-connect on a node that went
// StandAlone after an authentication failure returns at once with the reason; a dialer
// refused because its peer was not up yet connects as soon as the peer is, not a
// connect-int later; wait-sync on a terminal draws a progress bar with rate and ETA (and
// into a pipe prints nothing).
import t from 'tap';
import { type DaemonHandle, URBDADM_CLI } from '../helpers/daemon.js';
import { startPair, status, waitFor } from '../helpers/pair.js';
import { runInPty, SGR } from '../helpers/pty.js';
import { showRun, tmpDir } from '../helpers/server.js';

t.setTimeout(180000);

const ESC = String.fromCharCode(0x1b);

/** urbdadm's argv for a node, for running it on a pty. */
function admArgv(n: DaemonHandle, args: string[]): string[] {
  return [URBDADM_CLI, '--node', n.node, '--config', n.config, '--run-dir', n.runDir, ...args];
}

t.test('wait-connect on a node left StandAlone by a wrong secret returns with why', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, {
    sizeBytes: 8 << 20,
    net: 'cram-hmac-alg sha256; shared-secret "right";',
    betaNet: 'cram-hmac-alg sha256; shared-secret "wrong";',
  });
  await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'StandAlone', 'StandAlone', 30000);
  // No --timeout: before the fix this waited forever (the run's own limit would kill it).
  const r = await p.alpha.adm(['wait-connect', 'r0'], { timeoutMs: 60000 });
  t.equal(r.timedOut, false, 'it returns');
  t.equal(r.code, 10, 'exit 10: the command failed', { output: showRun(r) });
  t.match(
    r.stderr,
    /^urbdadm: wait-connect r0: r0: beta is StandAlone \(.*(secret|auth).*\); it stays so until "urbdadm connect r0"\n$/,
    'one line with the reason and the way out',
  );
  t.equal(r.stdout, '');
  const ws = await p.alpha.adm(['wait-sync', 'r0'], { timeoutMs: 60000 });
  t.equal(ws.code, 10, 'wait-sync says the same', { output: showRun(ws) });
  t.match(ws.stderr, /beta is StandAlone/);

  // beta, which listens, keeps listening for a right peer; on a terminal, its wait says
  // what it turned away while waiting.
  const bw = await runInPty(
    process.execPath,
    admArgv(p.beta, ['wait-connect', '--timeout', '3', 'r0']),
  );
  t.equal(bw.code, 5, 'beta: wait-connect times out (exit 5)', { output: showRun(bw) });
  t.match(
    bw.stdout,
    /urbdadm: r0: still waiting: alpha: refused a connection from .*(secret|auth)/,
  );
  t.match(bw.stdout, /not connected after 3 s/);
  const bp = await p.beta.adm(['wait-connect', '--timeout', '1', 'r0']);
  t.equal(bp.code, 5);
  t.equal(
    bp.stderr,
    'urbdadm: wait-connect r0: r0: not connected after 1 s\n',
    'a script gets one line',
  );

  // On a terminal the StandAlone state and its error stand out.
  const tty = await runInPty(process.execPath, admArgv(p.alpha, ['status', 'r0']), {
    env: { NO_COLOR: undefined },
  });
  t.equal(tty.code, 0, { output: showRun(tty) });
  t.match(tty.stdout, 'connection:\x1b[1m\x1b[31mStandAlone\x1b[39m\x1b[22m', 'StandAlone in red');
  const red = (re: string): string => `${ESC}\\[1m${ESC}\\[31m${re}${ESC}\\[39m${ESC}\\[22m`;
  t.match(tty.stdout, new RegExp(`last-error:${red('".*"')}`), 'the error in red');
  t.ok(SGR.test(tty.stdout));
});

t.test('a dialer refused while its peer was down connects once the peer is up', async (t) => {
  const dir = tmpDir(t);
  // connect-int 120 s: without the quick redial after a refusal, alpha would next try two
  // minutes later, and the wait below would run out first.
  const p = await startPair(t, dir, { sizeBytes: 8 << 20, net: 'connect-int 120;', up: ['alpha'] });
  const refused = await waitFor(
    p.alpha,
    (s) => /ECONNREFUSED/.test(s.peers[0]!.lastError ?? ''),
    'refused by beta, which is not up',
    30000,
  );
  t.equal(refused.peers[0]!.connection, 'Connecting');
  t.equal((await p.beta.adm(['up', 'r0'])).code, 0, 'beta up (listens)');
  const r = await p.alpha.adm(['wait-connect', '--timeout', '60', 'r0']);
  t.equal(r.code, 0, 'alpha connects well within connect-int', { output: showRun(r) });
  const b = await status(p.beta);
  t.equal(b.peers[0]!.connection, 'Connected');
  t.ok(
    p.alpha.logs.some((l) => l.json?.msg === 'peer connected'),
    'the link was set up by the dialer',
  );
});

t.test('wait-sync draws a progress bar on a terminal, nothing into a pipe', async (t) => {
  const dir = tmpDir(t);
  // 12 MiB at a fixed 2 MiB/s: a resync of about 6 s, drawn many times at 10 polls a second.
  const p = await startPair(t, dir, {
    sizeBytes: 12 << 20,
    disk: 'c-plan-ahead 0; resync-rate 2M;',
  });
  t.equal((await p.alpha.adm(['wait-connect', '--timeout', '30', 'r0'])).code, 0);
  // The waiters start while both disks are still Inconsistent, so each sees the resync
  // from its start, however slowly it starts itself.
  const ws = ['wait-sync', '--timeout', '120', 'r0'];
  const waiting = Promise.all([
    runInPty(process.execPath, admArgv(p.alpha, ws), { timeoutMs: 150000 }),
    // Ctrl-C while the bar is drawn: the terminal gets its cursor and line wrap back.
    runInPty(process.execPath, admArgv(p.alpha, ws), {
      timeoutMs: 150000,
      interruptOn: 'SyncSource |',
    }),
    p.beta.adm(ws, { timeoutMs: 150000 }),
  ]);
  t.equal((await p.alpha.adm(['primary', '--force', 'r0'])).code, 0, 'primary --force');
  const [tty, ctrlC, piped] = await waiting;

  t.equal(tty.code, 0, 'wait-sync on a terminal: done', { output: showRun(tty) });
  t.match(
    tty.stdout,
    /r0 beta SyncSource \|[█░]{30}\| \d+% \| \d+\.\d MiB\/s \| eta (\d+:\d\d|\?)/,
    'the bar: state, percentage, rate, ETA',
  );
  t.match(tty.stdout, /r0 beta Established \|█{30}\| 100% \| [^|]+ \| eta 0:00/, 'ends full');

  t.equal(ctrlC.code, 130, 'Ctrl-C: exit 130, as an interrupted command', {
    output: showRun(ctrlC),
  });
  t.match(ctrlC.stdout, `${ESC}[?25l`, 'the bar hid the cursor');
  t.match(ctrlC.stdout, new RegExp(`${ESC}\\[\\?25h[^]*${ESC}\\[\\?7h`), 'and gave it back');

  t.equal(piped.code, 0, 'wait-sync into a pipe: done', { output: showRun(piped) });
  t.equal(piped.stdout + piped.stderr, '', 'and silent');
});
