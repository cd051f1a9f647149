import t from 'tap';
import {
  dumpConfig,
  failoverFor,
  parseConfigText,
  FAILOVER_DEFAULTS,
} from '../../src/config/index.js';
import { configError, F } from './helpers.js';

const THREE = (resourceFailover: string, alphaFailover = '', betaFailover = ''): string =>
  [
    'resource r0 {',
    '  device minor 0;',
    '  meta-disk internal;',
    '  options { quorum majority; }',
    resourceFailover,
    `  on alpha { node-id 0; disk /dev/sdb; address 127.0.0.1:7789; ${alphaFailover} }`,
    `  on beta { node-id 1; disk /dev/sdb; address 127.0.0.1:7790; ${betaFailover} }`,
    '  on tb { node-id 2; disk none; address 127.0.0.1:7791; }',
    '  connection-mesh { hosts alpha beta tb; }',
    '}',
    '',
  ].join('\n');

const FULL = `failover {
    attach nbdfuse;
    mount /srv/db ext4 "noatime";
    service mariadb;
    service broker { start "/usr/bin/broker start"; stop "/usr/bin/broker stop"; monitor "/usr/bin/broker check"; timeout 60; }
    address 10.0.0.100/24 dev eth0;
    monitor-interval 3;
    migration-threshold 2;
    min-failover-interval 30;
    preferred-nodes beta alpha;
    on-stop-failure fence "/usr/local/bin/fence-me";
  }`;

t.test('a resource-level section gives every node the same chain, with defaults', async (t) => {
  const cfg = parseConfigText(THREE(FULL), F);
  const res = cfg.resources[0];
  const fa = failoverFor(res.failover, 'alpha');
  t.ok(fa);
  t.same(fa!.attach, { method: 'nbdfuse', timeoutMs: 30000 });
  t.same(fa!.mount, {
    dir: '/srv/db',
    fstype: 'ext4',
    options: 'noatime',
    fsck: true,
    timeoutMs: 60000,
  });
  t.same(
    fa!.services.map((s) => [s.name, s.commands?.start, s.timeoutMs]),
    [
      ['mariadb', undefined, 90000],
      ['broker', '/usr/bin/broker start', 60000],
    ],
  );
  t.same(fa!.addresses, [{ cidr: '10.0.0.100/24', dev: 'eth0', timeoutMs: 10000 }]);
  t.equal(fa!.monitorIntervalMs, 3000);
  t.equal(fa!.migrationThreshold, 2);
  t.equal(fa!.minFailoverIntervalMs, 30000);
  t.equal(fa!.failureTimeoutMs, FAILOVER_DEFAULTS.failureTimeoutMs);
  t.same(fa!.preferredNodes, ['beta', 'alpha']);
  t.same(fa!.onStopFailure, { action: 'fence', command: '/usr/local/bin/fence-me' });
  t.same(failoverFor(res.failover, 'beta'), fa);
  t.equal(failoverFor(parseConfigText(THREE(''), F).resources[0].failover, 'alpha'), undefined);
});

t.test('an `on HOST` section overrides per node: mount, a service by name, settings', async (t) => {
  const text = THREE(
    FULL,
    'failover { mount /mnt/alpha ext4; service broker { start "a-start"; stop "a-stop"; monitor "a-mon"; } service extra; }',
    'failover { address 10.0.0.101/24 dev eth1; monitor-interval 1; }',
  );
  const res = parseConfigText(text, F).resources[0];
  const a = failoverFor(res.failover, 'alpha')!;
  t.equal(a.mount?.dir, '/mnt/alpha');
  t.equal(a.mount?.options, '');
  t.same(
    a.services.map((s) => [s.name, s.commands?.start]),
    [
      ['mariadb', undefined],
      ['broker', 'a-start'],
      ['extra', undefined],
    ],
    'replaced in place, new ones last',
  );
  t.equal(a.monitorIntervalMs, 3000);
  const b = failoverFor(res.failover, 'beta')!;
  t.equal(b.mount?.dir, '/srv/db');
  t.same(b.addresses, [{ cidr: '10.0.0.101/24', dev: 'eth1', timeoutMs: 10000 }]);
  t.equal(b.monitorIntervalMs, 1000);
  // Only a host section: the others have none.
  const only = parseConfigText(THREE('', 'failover { mount /m; }'), F).resources[0];
  t.ok(failoverFor(only.failover, 'alpha'));
  t.equal(failoverFor(only.failover, 'beta'), undefined);
});

t.test(
  'dump shows the sections, and reading the dump gives every node the same chain',
  async (t) => {
    const text = THREE(
      FULL,
      'failover { mount /mnt/alpha xfs; service broker { start "a s"; stop "a \\"t\\""; monitor "m"; } }',
      'failover { two-node yes; }',
    );
    const cfg = parseConfigText(text, F);
    const dumped = dumpConfig(cfg);
    t.match(dumped, /\n {4}failover \{\n {8}attach nbdfuse \{ timeout 30; \}/);
    t.match(dumped, /on alpha \{[^]*failover \{\n {12}mount \/mnt\/alpha xfs;/);
    const again = parseConfigText(dumped, '/tmp/dumped.conf');
    for (const node of ['alpha', 'beta', 'tb']) {
      t.same(
        failoverFor(again.resources[0].failover, node),
        failoverFor(cfg.resources[0].failover, node),
        `${node}: same chain after dump`,
      );
    }
    t.equal(
      dumpConfig({ ...again, file: cfg.file }).replace(/^# resource .*$/gm, ''),
      dumped.replace(/^# resource .*$/gm, ''),
    );
  },
);

t.test('mistakes are reported at file:line:col', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['failover { mount srv; }', /5:\d+: .*absolute directory/],
    ['failover { attach nbdfuse /dev/nbd0; }', /only "attach nbd-client" takes a device/],
    ['failover { attach floppy; }', /attach takes auto, nbd-client/],
    ['failover { service db { start "x"; } }', /needs start, stop and monitor/],
    ['failover { service db; service db; }', /given twice/],
    ['failover { address 10.0.0.1 dev eth0; }', /ADDRESS\/PREFIX/],
    ['failover { address 10.0.0.1/24; }', /dev IFACE/],
    ['failover { preferred-nodes gamma; }', /not a host of this resource/],
    ['failover { monitor-interval 0; }', /monitor-interval/],
    ['failover { on-stop-failure reboot; }', /exit, block or fence/],
    ['failover { mount /m xfs { fsck yes; } }', /fsck yes is for ext2\/3\/4/],
    ['failover { moutn /m; }', /did you mean "mount"/],
    ['failover { mount /a; mount /b; }', /given twice/],
    ['failover { } failover { }', /a second "failover" section/],
    ['failover { service db { timeout 5; restart 3; } }', /restart/],
  ];
  for (const [section, re] of cases) {
    const e = configError(() => parseConfigText(THREE(section), F));
    t.match(e.message, re, section);
    t.match(e.message, /urbd\.conf:5:/, `${section}: on its line`);
  }
});
