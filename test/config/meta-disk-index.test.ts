// Issue 14, point 2: DRBD 8.4's indexed external meta-data (`meta-disk FILE [N]`) gives each index
// its own slot; urbd's metadata is one SQLite file per resource, so two indexes of one file would
// share it. The whole config is refused (as drbdadm refuses a broken one), so neither create-md
// nor dump-md can reach the other resource's metadata; a file per resource works.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { adm, type NodeSpec } from '../helpers/daemon.js';
import { makeDisk, showRun as show, type Teardown, tmpDir } from '../helpers/server.js';

const MiB = 1 << 20;

/** r0 with `meta-disk DIR/x.md [0]`, r1 with `meta-disk DIR/<r1Meta>`, both on node alpha. */
async function setup(t: Teardown, r1Meta: string): Promise<{ dir: string; spec: NodeSpec }> {
  const dir = tmpDir(t, 'urbd-mdindex-');
  await makeDisk(dir, 16 * MiB, undefined, 'd0.img');
  await makeDisk(dir, 16 * MiB, undefined, 'd1.img');
  const config = path.join(dir, 'urbd.conf');
  fs.writeFileSync(
    config,
    `resource r0 { device minor 0; disk ${dir}/d0.img; meta-disk ${dir}/x.md [0]; on alpha { } }
resource r1 { device minor 1; disk ${dir}/d1.img; meta-disk ${dir}/${r1Meta}; on alpha { } }
`,
  );
  return { dir, spec: { node: 'alpha', config, runDir: path.join(dir, 'run') } };
}

t.test('two indexes of one meta-disk file: create-md and dump-md refuse both', async (t) => {
  const { dir, spec } = await setup(t, 'x.md [1]');
  const lines = fs.readFileSync(spec.config, 'utf8').split('\n');
  const at = (line: number) => `${spec.config}:${line}:${lines[line - 1].indexOf('meta-disk') + 1}`;
  const why = `${at(2)}: meta-disk ${dir}/x.md [1] on host "alpha" is already used by resource r0 (meta-disk [0] at ${at(1)}); urbd keeps each resource's metadata in a file of its own, not in indexed slots: give each resource its own meta-disk file`;
  for (const args of [
    ['create-md', 'r0'],
    ['create-md', 'r1'],
    ['create-md', '--force', 'r1'],
    ['dump-md', 'r0'],
    ['dump-md', 'r1'],
  ]) {
    const r = await adm(spec, args);
    t.equal(r.code, 10, `${args.join(' ')}: exit 10 (${show(r)})`);
    const verb = `${args[0]} ${args[args.length - 1]}`;
    t.equal(r.stderr, `urbdadm: ${verb}: ${why}\n`, `${verb}: one line naming both resources`);
  }
  t.notOk(fs.existsSync(`${dir}/x.md`), 'no metadata was written');
});

t.test('an indexed meta-disk file of its own per resource works', async (t) => {
  const { dir, spec } = await setup(t, 'y.md [1]');
  for (const res of ['r0', 'r1']) {
    const r = await adm(spec, ['create-md', res]);
    t.equal(r.code, 0, `create-md ${res} (${show(r)})`);
  }
  t.ok(fs.existsSync(`${dir}/x.md`) && fs.existsSync(`${dir}/y.md`), 'one file per resource');
  let r = await adm(spec, ['wipe-md', '--force', 'r0']);
  t.equal(r.code, 0, `wipe-md r0 (${show(r)})`);
  r = await adm(spec, ['dump-md', 'r1']);
  t.equal(r.code, 0, `dump-md r1 still reads its own metadata (${show(r)})`);
  r = await adm(spec, ['dump-md', 'r0']);
  t.not(r.code, 0, `dump-md r0: its metadata is gone (${show(r)})`);
});
