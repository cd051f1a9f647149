/**
 * The address step (`address CIDR dev IFACE`) for real, inside a network namespace this
 * test creates (a veth pair that exists only there): start adds the address, monitor sees
 * it, start and stop are idempotent, stop removes it. The step runs in a child process
 * under `ip netns exec`, since a process cannot move itself into a namespace.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { run, tmpDir } from '../helpers/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const STEPS = path.resolve(here, '../../src/failover/steps.js');
const SHELL = path.resolve(here, '../../src/resource/shell-command.js');

t.test('address: add, monitor, idempotent start and stop, remove', async (t) => {
  const ns = `urbd-addr-${process.pid}`;
  const add = await run('ip', ['netns', 'add', ns], { timeoutMs: 10000 });
  t.equal(add.code, 0, add.stderr);
  t.teardown(() => run('ip', ['netns', 'del', ns], { timeoutMs: 10000 }).then(() => undefined));
  for (const args of [
    ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'],
    ['link', 'set', 'v0', 'up'],
  ]) {
    const r = await run('ip', ['-n', ns, ...args], { timeoutMs: 10000 });
    t.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
  }
  const script = path.join(tmpDir(t, 'urbd-addr-'), 'step.mjs');
  writeFileSync(
    script,
    `import { addressStep } from ${JSON.stringify(STEPS)};
import { ShellCommands } from ${JSON.stringify(SHELL)};
const ctx = { resource: 'r0', node: 'alpha', shell: new ShellCommands() };
const step = addressStep(ctx, { cidr: '10.99.0.100/24', dev: 'v0', timeoutMs: 10000 });
const seen = [(await step.monitor()).state];
await step.start();
seen.push((await step.monitor()).state);
await step.start();
seen.push((await step.monitor()).state);
await step.stop();
seen.push((await step.monitor()).state);
await step.stop();
try {
  await addressStep(ctx, { cidr: '10.99.0.101/24', dev: 'nosuch0', timeoutMs: 10000 }).start();
  seen.push('no error');
} catch (err) {
  seen.push(err.message);
}
console.log(JSON.stringify(seen));
`,
  );
  const r = await run('ip', ['netns', 'exec', ns, process.execPath, script], { timeoutMs: 60000 });
  t.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout.trim().split('\n').pop()!) as string[];
  t.same(seen.slice(0, 4), ['stopped', 'running', 'running', 'stopped']);
  t.match(
    seen[4],
    /ip addr show dev nosuch0: exit code 1: Device "nosuch0" does not exist/,
    'a missing interface: one line',
  );
  const left = await run('ip', ['-n', ns, '-o', 'addr', 'show', 'dev', 'v0'], { timeoutMs: 10000 });
  t.notMatch(left.stdout, /10\.99\.0\.100/, 'the address is gone');
});
