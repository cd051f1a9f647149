// Issue 14: `on alpha.example.test { }` is the node started as `--node alpha`, and `on Beta`
// the node `beta`, as drbdadm matches host names. Two real daemons must find each other.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { adm, startDaemon } from '../helpers/daemon.js';
import { connected, freePort, waitFor } from '../helpers/pair.js';
import { makeDisk, showRun as show, tmpDir } from '../helpers/server.js';

t.setTimeout(90000);

t.test('FQDN and capitalised on sections, short lower-case --node names', async (t) => {
  const dir = tmpDir(t, 'urbd-hostnames-');
  const disks = [
    await makeDisk(dir, 16 << 20, undefined, 'a.img'),
    await makeDisk(dir, 16 << 20, undefined, 'b.img'),
  ];
  const [pa, pb] = [await freePort(), await freePort()];
  const config = path.join(dir, 'urbd.conf');
  fs.writeFileSync(
    config,
    `resource r0 {
  device minor 0;
  net { connect-int 1; ping-int 1; ping-timeout 10; }
  on alpha.example.test { node-id 0; address 127.0.0.1:${pa}; disk ${disks[0]}; }
  on Beta { node-id 1; address 127.0.0.1:${pb}; disk ${disks[1]}; }
  connection-mesh { hosts ALPHA beta; }
}
`,
  );
  const specs = ['alpha', 'beta'].map((node) => ({
    node,
    config,
    runDir: path.join(dir, `run-${node}`),
  }));
  for (const s of specs) {
    const r = await adm(s, ['create-md', 'r0']);
    t.equal(r.code, 0, `create-md on ${s.node} (${show(r)})`);
  }
  const daemons = [];
  for (const s of specs) daemons.push(await startDaemon(s, { t }));
  for (const d of daemons) {
    const r = await d.adm(['up', 'all']);
    t.equal(r.code, 0, `up all on ${d.node} finds r0 (${show(r)})`);
  }
  for (const d of daemons) await waitFor(d, connected, 'connected');
  t.pass('both nodes connected');
  for (const d of daemons) {
    t.equal((await d.adm(['down', 'r0'])).code, 0);
    await d.stop();
  }
});
