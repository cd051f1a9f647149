// systemd integration: the daemon says READY=1 on NOTIFY_SOCKET once it accepts requests
// and STOPPING=1 when SIGTERM starts an orderly stop (Type=notify), and the unit files in
// scripts/systemd pass `systemd-analyze verify`.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { URBDADM_CLI, oneNodeConfig, startDaemon } from '../helpers/daemon.js';
import { FAILOVER_CLI, startSupervisor } from '../helpers/failover.js';
import {
  run,
  showRun as show,
  spawnTracked,
  tmpDir,
  URBD_CLI,
  waitFor,
} from '../helpers/server.js';

t.setTimeout(60000);

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// A datagram socket that prints each message it receives as one line (what systemd does
// with NOTIFY_SOCKET, minus the acting on it).
const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    data = s.recv(4096)
    print(data.decode().replace("\\n", "|"), flush=True)
`;

t.test('READY=1 and STOPPING=1 reach NOTIFY_SOCKET', async (t) => {
  const dir = tmpDir(t, 'urbd-notify-');
  const sock = path.join(dir, 'notify.sock');
  const rx = spawnTracked('python3', ['-c', RECEIVER, sock], { t });
  t.ok(await waitFor(() => rx.output().includes('listening'), 10000), 'receiver up', {
    output: rx.output(),
  });
  const config = oneNodeConfig(dir, { node: 'alpha', disk: path.join(dir, 'none.img') });
  const d = await startDaemon(
    { node: 'alpha', config, runDir: path.join(dir, 'run') },
    { t, env: { ...process.env, NOTIFY_SOCKET: sock } },
  );
  t.ok(await waitFor(() => /READY=1/.test(rx.output()), 10000), 'READY=1 received', {
    output: rx.output(),
  });
  t.match(rx.output(), new RegExp(`MAINPID=${d.proc.pid}`), 'with our PID');
  t.equal(await d.stop(), 0, 'exit 0 on SIGTERM');
  t.ok(await waitFor(() => /STOPPING=1/.test(rx.output()), 10000), 'STOPPING=1 received', {
    output: rx.output(),
  });
  await rx.stop();
});

t.test('a NOTIFY_SOCKET nobody listens on is only a warning', async (t) => {
  const dir = tmpDir(t, 'urbd-notify2-');
  const config = oneNodeConfig(dir, { node: 'alpha', disk: path.join(dir, 'none.img') });
  const d = await startDaemon(
    { node: 'alpha', config, runDir: path.join(dir, 'run') },
    { t, env: { ...process.env, NOTIFY_SOCKET: path.join(dir, 'nobody-listens.sock') } },
  );
  const warned = await d.waitForLog((l) => l.json?.msg === 'cannot notify systemd', 10000);
  t.match(
    String(warned.json?.err),
    /sendto\(NOTIFY_SOCKET\): No such file or directory/,
    'a missing notify socket is logged with the reason',
  );
  const r = await d.adm(['status']);
  t.equal(r.code, 0, 'and the daemon works', { output: show(r) });
  t.equal(await d.stop(), 0);
});

t.test('the unit files pass systemd-analyze verify', async (t) => {
  const dir = tmpDir(t, 'urbd-units-');
  for (const unit of ['urbd.service', 'urbd@.service', 'urbd-failover.service']) {
    const src = path.join(repo, 'scripts/systemd', unit);
    t.ok(existsSync(src), `${unit} exists`);
    // verify insists that ExecStart binaries exist: point them at this checkout.
    const text = readFileSync(src, 'utf8')
      .replaceAll('/usr/local/bin/urbdadm', `${process.execPath} ${URBDADM_CLI}`)
      .replaceAll('/usr/local/bin/urbd-failover', `${process.execPath} ${FAILOVER_CLI}`)
      .replaceAll('/usr/local/bin/urbd', `${process.execPath} ${URBD_CLI}`);
    writeFileSync(path.join(dir, unit), text);
  }
  // The template needs an instance to be verified.
  writeFileSync(path.join(dir, 'urbd@r0.service'), readFileSync(path.join(dir, 'urbd@.service')));
  for (const unit of ['urbd.service', 'urbd@r0.service', 'urbd-failover.service']) {
    const r = await run('systemd-analyze', ['verify', '--man=no', path.join(dir, unit)], {
      timeoutMs: 30000,
    });
    // Outside a booted systemd, verify may still warn about the missing manager bus;
    // what must not appear is a complaint about our unit's own directives.
    const ours = r.stderr
      .split('\n')
      .filter((l) => l.includes(unit.replace('@r0', '@')) || l.includes(unit))
      .filter((l) => !/Failed to|bus|not running/i.test(l));
    t.same(ours, [], `${unit}: no complaints about its directives`, { output: show(r) });
  }
});

t.test(
  'urbd-failover: READY=1, STATUS=, WATCHDOG=1 pings, STOPPING=1; a broken file keeps it running',
  async (t) => {
    const dir = tmpDir(t, 'urbd-failover-notify-');
    const sock = path.join(dir, 'notify.sock');
    const rx = spawnTracked('python3', ['-c', RECEIVER, sock], { t });
    t.ok(await waitFor(() => rx.output().includes('listening'), 10000), 'receiver up');
    const config = path.join(dir, 'urbd.conf');
    writeFileSync(config, 'resource r0 { on alpha { disk /dev/null;\n'); // broken: not closed
    const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
    const sup = await startSupervisor(t, spec, { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000' });
    t.ok(await waitFor(() => /READY=1/.test(rx.output()), 10000), 'READY=1 received');
    t.ok(
      await waitFor(() => /STATUS=configuration error: .*urbd\.conf:2:/.test(rx.output()), 10000),
      'STATUS says what is wrong',
      { output: rx.output() },
    );
    t.ok(
      await waitFor(() => (rx.output().match(/WATCHDOG=1/g) ?? []).length >= 2, 10000),
      'the watchdog is pinged',
    );
    const st = await sup.status();
    t.match(st.configError, /urbd\.conf:2:\d+: unexpected end of file/);
    t.same(st.resources, []);
    // Fixed and reloaded (SIGHUP): the resource is read, though it has no failover section.
    writeFileSync(config, oneNodeConfigText());
    process.kill(sup.proc.pid, 'SIGHUP');
    t.ok(
      await waitFor(async () => (await sup.status()).configError === undefined, 10000),
      'reloaded',
    );
    process.kill(sup.proc.pid, 'SIGTERM');
    t.equal(await sup.proc.exited, 0, 'exit 0 on SIGTERM');
    t.ok(await waitFor(() => /STOPPING=1/.test(rx.output()), 10000), 'STOPPING=1 received');
    await rx.stop();

    function oneNodeConfigText(): string {
      return 'resource r0 { on alpha { address 127.0.0.1:7789; device minor 0; disk /dev/null; meta-disk internal; } }\n';
    }
  },
);
