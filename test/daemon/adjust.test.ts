// adjust, net-options, disk-options and show against two real daemons (drbd.md §1.2):
// an edited resource file applied to a running resource, a refused change named, runtime
// options that leave the file alone, a peer address moved off a proxy.
import { readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { showRun, sleep, tmpDir } from '../helpers/server.js';
import type { DaemonHandle } from '../helpers/daemon.js';
import { connected, startPair, waitFor } from '../helpers/pair.js';

function edit(file: string, from: RegExp | string, to: string): void {
  const text = readFileSync(file, 'utf8');
  const next = text.replace(from, to);
  if (next === text) throw new Error(`${file}: nothing matched ${String(from)}`);
  writeFileSync(file, next);
}

/** How many peer sessions this daemon has started so far. */
const sessions = (n: DaemonHandle): number =>
  n.logs.filter((l) => l.json?.msg === 'peer connected').length;

async function show(n: DaemonHandle): Promise<string> {
  const r = await n.adm(['show', 'r0']);
  if (r.code !== 0) throw new Error(`show on ${n.node}: ${showRun(r)}`);
  return r.stdout;
}

t.test('adjust: up when down, options applied, reconnects as needed, refusals named', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 16 << 20, up: ['beta'] });

  const dryUp = await p.alpha.adm(['adjust', '-d', 'r0']);
  t.equal(dryUp.stdout, 'r0: up\n', 'adjust -d of a resource that is down');
  t.equal((await p.alpha.adm(['status', 'r0'])).code, 10, '-d did not bring it up');
  const up = await p.alpha.adm(['adjust', 'r0']);
  t.equal(up.code, 0, 'adjust of a resource that is down brings it up', { output: showRun(up) });
  await waitFor(p.alpha, connected, 'connected after adjust-as-up', 30000);
  const same = await p.alpha.adm(['adjust', '--dry-run', 'r0']);
  t.equal(same.stdout, 'r0: nothing to change\n', 'adjust -d with the file unchanged');

  // Net and disk options in the file change.
  edit(p.alpha.config, 'ping-int 1;', 'ping-int 3; max-epoch-size 100;');
  edit(p.alpha.config, /disk \{ *\}/, 'disk { c-max-rate 200M; }');
  const before = sessions(p.alpha);
  const dry = await p.alpha.adm(['adjust', '-d', 'r0']);
  t.equal(dry.code, 0);
  t.equal(
    dry.stdout,
    [
      'r0: ping-int 1 → 3',
      'r0: max-epoch-size 2048 → 100',
      'r0: c-max-rate 4G → 200M',
      'r0: reconnect to beta (ping-int changed)',
      '',
    ].join('\n'),
    'adjust -d says what it would do',
  );
  t.match(await show(p.alpha), /ping-int\s+1;/, '-d changed nothing');
  const adj = await p.alpha.adm(['adjust', 'r0']);
  t.equal(adj.code, 0, 'adjust', { output: showRun(adj) });
  t.equal(adj.stdout, '', 'adjust is silent, as drbdadm adjust');
  const running = await show(p.alpha);
  t.match(running, /ping-int\s+3;/, 'show: the new ping-int');
  t.match(running, /max-epoch-size\s+100;/);
  t.match(running, /c-max-rate\s+200M;/);
  await waitFor(p.alpha, connected, 'connected again', 30000);
  t.equal(sessions(p.alpha), before + 1, 'one new session carries the new net options');

  // A disk option alone needs no reconnect.
  edit(p.alpha.config, 'c-max-rate 200M;', 'c-max-rate 300M; resync-rate 50M;');
  t.equal((await p.alpha.adm(['adjust', 'r0'])).code, 0);
  t.match(await show(p.alpha), /c-max-rate\s+300M;/);
  t.equal(sessions(p.alpha), before + 1, 'rates change in place');
  t.ok(connected(await waitFor(p.alpha, () => true, 'status')), 'still connected');

  // What cannot change while up is refused, with the option named, and nothing applied.
  const text = readFileSync(p.alpha.config, 'utf8');
  edit(p.alpha.config, 'c-max-rate 300M;', 'c-max-rate 400M;');
  edit(p.alpha.config, p.alphaDisk, `${p.alphaDisk}.other`);
  const refused = await p.alpha.adm(['adjust', 'r0']);
  t.equal(refused.code, 10, 'a disk path change is refused (exit 10)');
  t.match(
    refused.stderr,
    /^urbdadm: adjust r0: disk of alpha cannot change while r0 is up \(.*alpha\.img → .*alpha\.img\.other\); urbdadm down r0, then up, to apply it \(ERR_ADJUST\)\n$/,
  );
  t.match(await show(p.alpha), /c-max-rate\s+300M;/, 'nothing of a refused adjust is applied');
  writeFileSync(p.alpha.config, text);
  edit(p.alpha.config, 'node-id 0;', 'node-id 7;');
  const nodeId = await p.alpha.adm(['adjust', 'r0']);
  t.equal(nodeId.code, 10);
  t.match(nodeId.stderr, /node-id of alpha cannot change while r0 is up \(0 → 7\)/);
  writeFileSync(p.alpha.config, text);

  // Protocol: a setting both nodes must agree on. Each node adjusts; a node the
  // handshake left StandAlone in between is connected by its next adjust.
  for (const n of [p.alpha, p.beta]) edit(n.config, 'protocol C;', 'protocol B;');
  for (const n of [p.beta, p.alpha, p.beta, p.alpha]) {
    const r = await n.adm(['adjust', 'r0']);
    t.equal(r.code, 0, `adjust on ${n.node}`, { output: showRun(r) });
  }
  await waitFor(p.alpha, connected, 'connected with protocol B', 30000);
  await waitFor(p.beta, connected, 'beta connected with protocol B', 30000);
  for (const n of [p.alpha, p.beta]) t.match(await show(n), /protocol\s+B;/);
});

t.test('adjust: a changed peer address reconnects there', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 16 << 20, proxy: true });
  await waitFor(p.alpha, connected, 'connected through the proxy', 30000);
  const proxy = p.proxy!;
  const through = proxy.stats.connections;
  t.ok(through >= 2, 'both sockets went through the proxy');
  const direct = /on beta \{[^}]*address 127\.0\.0\.1:(\d+);/.exec(
    readFileSync(p.beta.config, 'utf8'),
  )![1]!;
  edit(p.alpha.config, `127.0.0.1:${proxy.port}`, `127.0.0.1:${direct}`);
  const before = sessions(p.alpha);
  const r = await p.alpha.adm(['adjust', 'r0']);
  t.equal(r.code, 0, 'adjust', { output: showRun(r) });
  await waitFor(p.alpha, (s) => connected(s) && sessions(p.alpha) > before, 'reconnected');
  t.equal(proxy.stats.connections, through, 'the new session did not use the proxy');
  proxy.cut();
  await sleep(300);
  t.ok(connected(await waitFor(p.alpha, () => true, 'status')), 'cutting the proxy cuts nothing');
  t.equal(sessions(p.alpha), before + 1);
});

t.test('net-options and disk-options change running values, not the file', async (t) => {
  const dir = tmpDir(t);
  const p = await startPair(t, dir, { sizeBytes: 16 << 20 });
  await waitFor(p.alpha, connected, 'connected', 30000);
  const file = readFileSync(p.alpha.config, 'utf8');
  const before = sessions(p.alpha);

  const net = await p.alpha.adm(['net-options', 'r0', '--ping-int', '5', '--ko-count=3']);
  t.equal(net.code, 0, 'net-options', { output: showRun(net) });
  let running = await show(p.alpha);
  t.match(running, /ping-int\s+5;/, 'show: ping-int');
  t.match(running, /ko-count\s+3;/, 'show: ko-count');
  await waitFor(p.alpha, (s) => connected(s) && sessions(p.alpha) > before, 'reconnected');

  const disk = await p.alpha.adm(['disk-options', '--c-max-rate=300M', 'r0']);
  t.equal(disk.code, 0, "disk-options, drbdadm's order (options, then RES)", {
    output: showRun(disk),
  });
  t.match(await show(p.alpha), /c-max-rate\s+300M;/);
  t.equal(sessions(p.alpha), before + 1, 'a disk option needs no reconnect');
  t.equal(readFileSync(p.alpha.config, 'utf8'), file, 'the resource file is untouched');

  const bad = await p.alpha.adm(['net-options', 'r0', '--pingint', '5']);
  t.equal(bad.code, 10);
  t.equal(
    bad.stderr,
    'urbdadm: net-options r0: unknown net option --pingint; did you mean "ping-int"? (ERR_OPTION)\n',
  );
  const range = await p.alpha.adm(['disk-options', 'r0', '--c-max-rate', '1']);
  t.equal(range.code, 10);
  t.match(range.stderr, /c-max-rate/);
  const usage = await p.alpha.adm(['net-options', 'r0']);
  t.equal(usage.code, 1, 'no option: usage');
  const help = await p.alpha.adm(['net-options', '--help']);
  t.equal(help.code, 0, 'net-options --help');
  t.match(help.stdout, /network options .*\n.*--ping-int/);
  const json = JSON.parse((await p.alpha.adm(['show', '--json', 'r0'])).stdout) as {
    net: { pingIntMs: number };
  };
  t.equal(json.net.pingIntMs, 5000, 'show --json');

  // adjust brings the file's values back, as drbdadm adjust undoes drbdsetup changes.
  const adj = await p.alpha.adm(['adjust', '-d', 'r0']);
  t.match(adj.stdout, /r0: ping-int 5 → 1\nr0: ko-count 3 → 7\nr0: c-max-rate 300M → 4G\n/);
  t.equal((await p.alpha.adm(['adjust', 'r0'])).code, 0);
  running = await show(p.alpha);
  t.match(running, /ping-int\s+1;/);
  t.match(running, /c-max-rate\s+4G;/);

  // adjust attaches a detached disk, as drbdadm's does.
  t.equal((await p.alpha.adm(['detach', 'r0'])).code, 0, 'detach');
  await waitFor(p.alpha, (s) => s.device.diskState === 'Diskless', 'Diskless');
  const dryAttach = await p.alpha.adm(['adjust', '-d', 'r0']);
  t.equal(dryAttach.stdout, `r0: attach ${p.alphaDisk}\n`);
  const attach = await p.alpha.adm(['adjust', 'r0']);
  t.equal(attach.code, 0, 'adjust attaches', { output: showRun(attach) });
  await waitFor(
    p.alpha,
    (s) => s.device.diskState === 'Inconsistent' && connected(s),
    'attached and connected',
  );

  const down = await p.beta.adm(['down', 'r0']);
  t.equal(down.code, 0);
  const gone = await p.beta.adm(['net-options', 'r0', '--ping-int', '5']);
  t.equal(gone.code, 10, 'net-options on a resource that is down');
  t.match(gone.stderr, /no such resource is up on beta/);
});
