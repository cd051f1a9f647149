// Real-world layouts: drbd-utils 8.4's drbd.conf + drbd.d/, and a DRBD 9 three-node setup.
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import t from 'tap';
import { hostFor, loadConfig, resourceFor } from '../../src/config/index.js';

// Compiled tests run from dist/test/config; the fixtures stay in the source tree.
const FIXTURES = join(fileURLToPath(import.meta.url), '../../../../test/fixtures/config');

t.test('DRBD 8.4: global_common.conf + r0.res + r1.res', async (t) => {
  const cfg = loadConfig(join(FIXTURES, 'drbd84/drbd.conf'));
  t.same(
    cfg.resources.map((r) => r.name),
    ['r0', 'r1'],
  );

  const r0 = resourceFor(cfg, 'r0');
  t.equal(r0.protocol, 'C');
  t.equal(r0.net.cramHmacAlg, 'sha1');
  t.equal(r0.net.sharedSecret, 'FooFunFactory');
  t.equal(r0.net.csumsAlg, 'md5');
  t.equal(r0.net.verifyAlg, 'sha1', 'from common');
  t.equal(r0.net.afterSb0pri, 'discard-zero-changes');
  t.equal(r0.net.afterSb1pri, 'discard-secondary');
  t.equal(r0.net.maxBuffers, 8000);
  t.equal(r0.net.maxEpochSize, 8000);
  t.equal(r0.net.fencing, 'resource-only', '8.4 writes fencing in the disk section');
  t.equal(r0.disk.resyncRateKiB, 40 * 1024, 'the resource overrides common');
  t.equal(r0.disk.cMaxRateKiB, 110 * 1024);
  t.equal(r0.disk.alExtents, 3389);
  t.equal(r0.startup.wfcTimeoutS, 120);
  t.equal(r0.startup.degrWfcTimeoutS, 60);
  t.equal(r0.handlers['fence-peer'], '/usr/lib/drbd/crm-fence-peer.sh');
  t.equal(r0.handlers['after-resync-target'], '/usr/lib/drbd/crm-unfence-peer.sh');
  t.match(r0.handlers['pri-on-incon-degr'], /echo b > \/proc\/sysrq-trigger ; reboot -f$/);
  t.equal(r0.handlers['out-of-sync'], undefined, 'commented out');
  t.same(
    r0.hosts.map((h) => [
      h.name,
      h.address?.host,
      h.address?.port,
      h.device.path,
      h.disk,
      h.metaDisk,
    ]),
    [
      ['alice', '10.1.1.31', 7789, '/dev/nbd1', '/dev/sda7', 'internal'],
      ['bob', '10.1.1.32', 7789, '/dev/nbd1', '/dev/sda7', 'internal'],
    ],
  );

  const r1 = resourceFor(cfg, 'r1');
  t.equal(r1.disk.resyncRateKiB, 33 * 1024, 'from common');
  t.equal(r1.disk.resyncAfter, 'r0');
  t.same(r1.startup.becomePrimaryOn, ['alice']);
  const alice = hostFor(r1, 'alice');
  t.same(alice.device, { path: '/dev/nbd2', minor: 2 });
  t.equal(alice.disk, '/dev/vg_alice/web');
  t.equal(alice.metaDisk, '/dev/sdc1');
  t.equal(alice.metaDiskIndex, 0);
  t.equal(hostFor(r1, 'bob').disk, '/dev/vg_bob/web');

  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    [
      'global: usage-count no',
      'common options: cpu-mask 0',
      'common disk: disk-barrier no',
      'common disk: disk-flushes no',
      'common net: sndbuf-size 0',
      'resource r1 on alice: meta-disk /dev/sdc1 [0]',
      'resource r1 on bob: meta-disk /dev/sdc1[0]',
    ],
  );
});

t.test('DRBD 9: node-ids, a diskless tiebreaker, connection-mesh, connection paths', async (t) => {
  const cfg = loadConfig(join(FIXTURES, 'drbd9/drbd.conf'));
  const r0 = resourceFor(cfg, 'r0');
  t.same(
    r0.hosts.map((h) => [h.name, h.nodeId, h.disk, h.metaDisk]),
    [
      ['alpha', 0, '/dev/vg0/r0', 'internal'],
      ['beta', 1, '/dev/vg0/r0', 'internal'],
      ['gamma', 2, 'none', undefined],
    ],
  );
  t.equal(r0.net.pingIntMs, 5000, 'from the connection-mesh net section');
  t.equal(r0.net.timeoutMs, 3000);
  t.equal(r0.net.fencing, 'resource-only', '9 writes fencing in the net section');
  t.equal(r0.net.rrConflict, 'retry-connect');
  t.equal(r0.options.quorum, 'majority');
  t.equal(r0.options.onNoQuorum, 'io-error');
  t.equal(r0.options.onSuspendedPrimaryOutdated, 'force-secondary');
  t.equal(r0.disk.cPlanAheadMs, 0);
  t.equal(r0.disk.resyncRateKiB, 2 * 1024 * 1024);
  t.equal(r0.handlers['quorum-lost'], '/usr/lib/drbd/notify-quorum-lost.sh root');
  t.equal(r0.handlers.disconnected, '/bin/true');

  const r1 = resourceFor(cfg, 'r1');
  t.same(
    r1.hosts.map((h) => h.address),
    [
      { family: 'ipv6', host: 'fd00:1::31', port: 7001 },
      { family: 'ipv6', host: 'fd00:1::32', port: 7001 },
    ],
  );
  t.same(r1.hosts[0].device, { path: '/dev/nbd1', minor: 1 });
  t.equal(r1.net.verifyAlg, 'sha256');
  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    [
      'global: usage-count no',
      'global: udev-always-use-vnr',
      'common disk: rs-discard-granularity 65536',
      'common net: transport tcp',
      'common net: tls no',
    ],
  );
});
