// The admin's day with one node, end to end: real urbd daemon, real urbdadm, real NBD
// clients. create-md → up → refusals → primary --force → write → down → up → data and
// generation UUIDs intact, with drbdadm's exit codes and one-line messages throughout.
import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { adm, oneNodeConfig, startDaemon, URBDADM_CLI } from '../helpers/daemon.js';
import { openExport } from '../helpers/raw-client.js';
import { freePort } from '../helpers/pair.js';
import {
  makeDisk,
  run,
  showRun as show,
  spawnTracked,
  tmpDir,
  URBD_CLI,
  waitFor,
} from '../helpers/server.js';
import fs from 'node:fs';

t.setTimeout(120000);

const MiB = 1 << 20;

function unixUri(socket: string): string {
  return `nbd+unix:///r0?socket=${socket}`;
}

t.test('create-md, up, primary, write, down, up: data and UUIDs survive', async (t) => {
  const dir = tmpDir(t, 'urbd-life-');
  const disk = await makeDisk(dir, 64 * MiB);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };

  let r = await adm(spec, ['create-md', 'r0']);
  t.equal(r.code, 0, 'create-md', { output: show(r) });
  t.match(r.stdout, /new metadata written to .*disk-.*\.img\.urbd-md/);
  r = await adm(spec, ['create-md', 'r0']);
  t.equal(r.code, 10, 'create-md refuses to overwrite');
  t.match(r.stderr, /already exists.*--force/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');

  r = await adm(spec, ['get-gi', 'r0']);
  t.equal(r.code, 0, 'get-gi offline', { output: show(r) });
  t.match(r.stdout, /^0000000000000004:0000000000000000:0000000000000000:0000000000000000/);

  r = await adm(spec, ['status']);
  t.equal(r.code, 20, 'no daemon: exit 20');
  t.match(r.stderr, /cannot reach urbd at .*urbd\.sock: no urbd is running there/);

  const d = await startDaemon(spec, { t });
  r = await d.adm(['status']);
  t.equal(r.code, 0);
  t.match(r.stdout, /no resources are up on alpha/);

  r = await d.adm(['up', 'r0']);
  t.equal(r.code, 0, 'up', { output: show(r) });
  r = await d.adm(['status', 'r0']);
  t.equal(r.stdout, 'r0 role:Secondary\n  disk:Inconsistent\n', 'fresh metadata is Inconsistent');
  r = await d.adm(['up', 'r0']);
  t.equal(r.code, 10, 'up twice');
  t.match(r.stderr, /r0 is already up on alpha/);

  const sock = path.join(spec.runDir, 'r0.nbd');
  let info = await run('nbdinfo', [unixUri(sock)]);
  t.not(info.code, 0, 'a Secondary refuses NBD clients', { output: show(info) });
  // qemu prints the server's reason (libnbd keeps it for LIBNBD_DEBUG=1).
  const q = await run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', unixUri(sock)]);
  t.not(q.code, 0);
  t.match(
    q.stderr,
    /server reported: resource r0 is Secondary on alpha; only the Primary serves its device \(urbdadm primary r0\)/,
    'and says why',
    { output: show(q) },
  );

  r = await d.adm(['primary', 'r0']);
  t.equal(r.code, 11, 'primary on Inconsistent data is refused');
  t.match(
    r.stderr,
    /State change failed: need access to UpToDate data.*--force.*\(SS_NO_UP_TO_DATE_DISK\)/,
  );

  r = await d.adm(['primary', '--force', 'r0']);
  t.equal(r.code, 0, 'primary --force', { output: show(r) });
  r = await d.adm(['role', 'r0']);
  t.equal(r.stdout, 'Primary\n');
  r = await d.adm(['dstate', 'r0']);
  t.equal(r.stdout, 'UpToDate\n', 'no peers configured: the local disk only');
  r = await d.adm(['cstate', 'r0']);
  t.equal(r.code, 0);

  const gi1 = (await d.adm(['get-gi', 'r0'])).stdout.split(':');
  t.not(gi1[0], '0000000000000004', 'primary --force started a new data generation');
  t.equal(gi1[1], '0000000000000004', 'the old current moved to the bitmap slot');

  r = await d.adm(['status', '--json', 'r0']);
  const st = JSON.parse(r.stdout) as Array<{
    device: { export: { socket: string; clients: number } };
  }>;
  t.equal(st[0]!.device.export.socket, sock, 'status --json names the export socket');

  info = await run('nbdinfo', ['--size', unixUri(sock)]);
  t.equal(info.stdout.trim(), String(64 * MiB), 'the Primary serves the device', {
    output: show(info),
  });
  const w = await run('qemu-io', [
    '-f',
    'raw',
    '-c',
    'write -P 0x5a 1M 3M',
    '-c',
    'flush',
    unixUri(sock),
  ]);
  t.equal(w.code, 0, 'qemu-io write', { output: show(w) });

  r = await d.adm(['dump-md', 'r0']);
  t.equal(r.code, 10, 'dump-md while attached is refused');
  t.match(r.stderr, /r0 is attached to the running urbd; dump-md needs it detached/);
  r = await d.adm(['create-md', '--force', 'r0']);
  t.equal(r.code, 10, 'create-md --force while attached is refused');

  // A client holding the device open blocks demotion and down, as an open /dev/drbd does.
  const holder = await openClient(sock);
  t.teardown(() => holder.destroy());
  r = await d.adm(['secondary', 'r0']);
  t.equal(r.code, 11, 'secondary while a client is attached');
  t.match(r.stderr, /in use by 1 NBD client.*\(SS_DEVICE_IN_USE\)/);
  r = await d.adm(['down', 'r0']);
  t.equal(r.code, 11, 'down while a client is attached');
  holder.destroy();
  await waitClients(d.adm.bind(d), 0);

  r = await d.adm(['down', 'r0']);
  t.equal(r.code, 0, 'down', { output: show(r) });
  r = await d.adm(['dump-md', '--json', 'r0']);
  t.equal(r.code, 0, 'dump-md once down', { output: show(r) });
  const md = JSON.parse(r.stdout) as { clean: boolean; flags: Record<string, boolean> };
  t.equal(md.clean, true, 'down left the metadata clean');
  t.equal(md.flags.primaryIndicator, false, 'and not Primary');
  t.equal(md.flags.consistent, true);

  r = await d.adm(['up', 'r0']);
  t.equal(r.code, 0, 'up again', { output: show(r) });
  r = await d.adm(['status', 'r0']);
  t.match(r.stdout, /disk:UpToDate/, 'consistent data comes back UpToDate (fencing dont-care)');
  r = await d.adm(['primary', 'r0']);
  t.equal(r.code, 0, 'primary without --force now', { output: show(r) });
  const gi2 = (await d.adm(['get-gi', 'r0'])).stdout.split(':');
  t.equal(gi2[0], gi1[0], 'the same data generation (no new current UUID: bitmap UUID was set)');
  const v = await run('qemu-io', [
    '-f',
    'raw',
    '-c',
    'read -P 0x5a 1M 3M',
    '-c',
    'read -P 0 0 1M',
    unixUri(sock),
  ]);
  t.equal(v.code, 0, 'data intact after down/up', { output: show(v) });
  t.notMatch(v.stdout, /Pattern verification failed/);

  t.equal(await d.stop(), 0, 'SIGTERM: exit 0');
  r = await adm(spec, ['dump-md', '--json', 'r0']);
  t.equal((JSON.parse(r.stdout) as { clean: boolean }).clean, true, 'SIGTERM left it clean');
});

t.test('refusals and bad input get one line and the right exit code', async (t) => {
  const dir = tmpDir(t, 'urbd-refuse-');
  const disk = await makeDisk(dir, 16 * MiB);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  const d = await startDaemon(spec, { t });

  let r = await d.adm(['up', 'r0']);
  t.equal(r.code, 10, 'up without metadata');
  t.match(r.stderr, /no metadata at .*urbd-md; run urbdadm create-md r0/);
  r = await d.adm(['status', 'r0']);
  t.equal(r.code, 10, 'a failed up leaves nothing behind');

  r = await d.adm(['up', 'r9']);
  t.equal(r.code, 10);
  t.match(r.stderr, /no resource "r9"/);
  r = await adm({ ...spec, node: 'gamma' }, ['create-md', 'r0']);
  t.equal(r.code, 10);
  t.match(r.stderr, /has no "on gamma" section/);
  r = await d.adm(['frobnicate', 'r0']);
  t.equal(r.code, 1, 'unknown verb is a usage error');
  r = await d.adm(['primary']);
  t.equal(r.code, 1, 'missing RES is a usage error');

  const broken = path.join(dir, 'broken.conf');
  fs.writeFileSync(broken, 'resource r0 {\n  disk { al-extent 7; }\n}\n');
  r = await adm({ ...spec, config: broken }, ['dump']);
  t.equal(r.code, 10, 'broken config');
  t.match(
    r.stderr,
    new RegExp(`${broken}:2:10: unknown keyword "al-extent".*did you mean "al-extents"`),
  );

  r = await d.adm(['create-md', 'r0']);
  t.equal(r.code, 0);
  r = await d.adm(['wipe-md', 'r0']);
  t.equal(r.code, 1, 'wipe-md without a terminal needs --force');
  r = await d.adm(['wipe-md', '--force', 'r0']);
  t.equal(r.code, 0, 'wipe-md --force', { output: show(r) });
  r = await d.adm(['dump-md', 'r0']);
  t.equal(r.code, 10, 'nothing left to dump');
  t.match(r.stderr, /no metadata at/);

  // Garbage on the control socket gets an error reply; the daemon carries on.
  const reply = await rawControl(path.join(spec.runDir, 'urbd.sock'), 'this is not json\n');
  t.match(reply, /"ok":false.*request is not JSON/);
  r = await d.adm(['status']);
  t.equal(r.code, 0, 'daemon still answers');
  t.equal(d.proc.exitCode, undefined, 'daemon still running');
});

t.test('events: the current state, then changes as they happen', async (t) => {
  const dir = tmpDir(t, 'urbd-events-');
  const disk = await makeDisk(dir, 16 * MiB);
  const config = oneNodeConfig(dir, { node: 'alpha', disk });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  t.equal((await adm(spec, ['create-md', 'r0'])).code, 0);
  const d = await startDaemon(spec, { t });
  t.equal((await d.adm(['up', 'r0'])).code, 0);

  const now = await d.adm(['events', '--now']);
  t.equal(now.code, 0, 'events --now', { output: show(now) });
  t.match(now.stdout, /^exists resource name:r0 role:Secondary suspended:no$/m);
  t.match(now.stdout, /^exists device name:r0 volume:0 minor:0 disk:Inconsistent/m);
  t.match(now.stdout, /^exists -$/m);

  const stream = spawnTracked(
    process.execPath,
    [
      URBDADM_CLI,
      '--node',
      'alpha',
      '--config',
      config,
      '--run-dir',
      spec.runDir,
      'events',
      '--json',
    ],
    { t },
  );
  await waitFor(() => stream.output().includes('"object":"-"'), 10000);
  t.equal((await d.adm(['primary', '--force', 'r0'])).code, 0);
  const seen = await waitFor(
    () =>
      stream
        .output()
        .includes('"kind":"change","object":"resource","fields":{"name":"r0","role":"Primary"'),
    10000,
  );
  t.ok(seen, 'a change event for the promotion', { output: stream.output() });
  t.match(
    stream.output(),
    /"kind":"change","object":"device","fields":\{"name":"r0","volume":0,"minor":0,"disk":"UpToDate"/,
  );
  t.equal((await d.adm(['down', 'r0'])).code, 0);
  t.ok(
    await waitFor(() => stream.output().includes('"kind":"destroy","object":"resource"'), 10000),
    'destroy on down',
  );
  await stream.stop();
});

t.test('two daemons side by side on one host', async (t) => {
  const dir = tmpDir(t, 'urbd-two-');
  const a = await makeDisk(dir, 16 * MiB, undefined, 'a.img');
  const b = await makeDisk(dir, 16 * MiB, undefined, 'b.img');
  const config = path.join(dir, 'urbd.conf');
  const [pa, pb] = [await freePort(), await freePort()];
  fs.writeFileSync(
    config,
    `resource r0 {
  device minor 0;
  meta-disk internal;
  net { connect-int 1; }
  on alpha { node-id 0; address 127.0.0.1:${pa}; disk ${a}; }
  on beta  { node-id 1; address 127.0.0.1:${pb}; disk ${b}; }
}
`,
  );
  const alpha = { node: 'alpha', config, runDir: path.join(dir, 'run-alpha') };
  const beta = { node: 'beta', config, runDir: path.join(dir, 'run-beta') };
  for (const s of [alpha, beta]) t.equal((await adm(s, ['create-md', 'r0'])).code, 0);
  const da = await startDaemon(alpha, { t });
  const db = await startDaemon(beta, { t });
  t.equal((await da.adm(['up', 'all'])).code, 0);
  t.equal((await db.adm(['up', 'all'])).code, 0);
  t.equal((await da.adm(['wait-connect', '--timeout', '20', 'r0'])).code, 0, 'connected');
  t.equal((await da.adm(['primary', '--force', 'r0'])).code, 0);
  t.equal((await da.adm(['wait-sync', '--timeout', '60', 'r0'])).code, 0, 'initial sync done');
  const sa = await da.adm(['status', 'r0']);
  const sb = await db.adm(['status', 'r0']);
  t.equal(
    sa.stdout,
    'r0 role:Primary\n  disk:UpToDate\n  beta role:Secondary\n    peer-disk:UpToDate\n',
  );
  t.equal(
    sb.stdout,
    'r0 role:Secondary\n  disk:UpToDate\n  alpha role:Primary\n    peer-disk:UpToDate\n',
  );
  const v = await da.adm(['status', '--verbose', 'r0']);
  t.match(v.stdout, /^r0 node-id:0 role:Primary suspended:no$/m);
  t.match(v.stdout, /^ {2}beta node-id:1 connection:Connected role:Secondary$/m);
  t.match(v.stdout, /^ {4}volume:0 replication:Established peer-disk:UpToDate out-of-sync:0$/m);
  t.match(v.stdout, new RegExp(`export:${path.join(alpha.runDir, 'r0.nbd')}`));
  t.equal((await da.adm(['disconnect', 'r0'])).code, 0);
  const sd = await db.adm(['status', 'r0']);
  t.match(sd.stdout, /alpha connection:(StandAlone|Connecting)/, 'beta sees the link go');
  t.equal(await da.stop(), 0);
  t.equal(await db.stop(), 0);
});

t.test('a second daemon on the same run directory is refused', async (t) => {
  const dir = tmpDir(t, 'urbd-dup-');
  const config = oneNodeConfig(dir, { node: 'alpha', disk: path.join(dir, 'x.img') });
  const spec = { node: 'alpha', config, runDir: path.join(dir, 'run') };
  await startDaemon(spec, { t });
  const r = await run(
    process.execPath,
    [URBD_CLI, '--node', 'alpha', '--config', config, '--run-dir', spec.runDir],
    {
      timeoutMs: 15000,
    },
  );
  t.equal(r.code, 1, 'exit 1');
  t.match(
    r.stderr,
    /is in use by another server \(is another urbd running with this --run-dir\?\)/,
  );
});

/** A real client that finishes the handshake and then just holds the export open. */
async function openClient(socketPath: string): Promise<{ destroy(): void }> {
  const { client } = await openExport({ path: socketPath }, 'r0');
  return client;
}

async function waitClients(
  admFn: (a: string[]) => Promise<{ stdout: string }>,
  n: number,
): Promise<void> {
  await waitFor(async () => {
    const r = await admFn(['status', '--json', 'r0']);
    try {
      return (
        (JSON.parse(r.stdout) as Array<{ device: { export: { clients: number } } }>)[0]!.device
          .export.clients === n
      );
    } catch {
      return false;
    }
  }, 10000);
}

function rawControl(socketPath: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socketPath }, () => s.write(text));
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) {
        s.destroy();
        resolve(out);
      }
    });
    s.on('error', reject);
  });
}
