import t from 'tap';
import { hostFor, parseConfigText, resourceFor, type UrbdConfig } from '../../src/config/index.js';
import { F, twoHosts } from './helpers.js';

const parse = (text: string): UrbdConfig => parseConfigText(text, F);
const r0 = (text: string) => resourceFor(parse(text), 'r0');

const EXAMPLE = `# comment
global { usage-count no; }
common { net { protocol C; } disk { al-extents 1237; } handlers { split-brain "/usr/lib/drbd/notify-split-brain.sh root"; } startup { wfc-timeout 0; } options { } }
resource r0 {
  protocol C;
  device /dev/drbd0;
  disk /dev/vg/lv;
  meta-disk internal;
  net { cram-hmac-alg sha256; shared-secret "s3cret"; after-sb-0pri discard-zero-changes; }
  disk { on-io-error detach; resync-rate 100M; c-max-rate 400M; al-updates yes; }
  handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh"; }
  startup { wfc-timeout 10; degr-wfc-timeout 60; become-primary-on alpha; }
  options { on-no-data-accessible io-error; auto-promote no; quorum majority; }
  on alpha { address 10.0.0.1:7789; node-id 0; disk /var/lib/urbd/alpha.img; meta-disk /var/lib/urbd/alpha.md; device minor 0; nbd-listen 127.0.0.1:10809; }
  on beta  { address ipv4 10.0.0.2:7789; node-id 1; }
}
`;

t.test('the example from the design: every field typed, inherited and defaulted', async (t) => {
  const cfg = parse(EXAMPLE);
  t.equal(cfg.file, F);
  t.equal(cfg.resources.length, 1);
  const res = cfg.resources[0];
  t.equal(res.name, 'r0');
  t.same(res.source, { file: F, line: 4, col: 1 });
  t.equal(res.protocol, 'C');
  t.same(res.net, {
    timeoutMs: 6000,
    connectIntMs: 10000,
    pingIntMs: 10000,
    pingTimeoutMs: 500,
    koCount: 7,
    maxBuffers: 2048,
    maxEpochSize: 2048,
    allowTwoPrimaries: false,
    afterSb0pri: 'discard-zero-changes',
    afterSb1pri: 'disconnect',
    afterSb2pri: 'disconnect',
    alwaysAsbp: false,
    rrConflict: 'disconnect',
    cramHmacAlg: 'sha256',
    sharedSecret: 's3cret',
    csumsAfterCrashOnly: false,
    useRle: true,
    onCongestion: 'block',
    congestionFillSectors: 0,
    congestionExtents: 1237,
    socketCheckTimeoutMs: 0,
    fencing: 'dont-care',
    discardMyData: false,
  });
  t.same(res.disk, {
    onIoError: 'detach',
    alExtents: 1237,
    alUpdates: true,
    resyncRateKiB: 102400,
    cPlanAheadMs: 2000,
    cFillTargetSectors: 100,
    cDelayTargetMs: 1000,
    cMaxRateKiB: 409600,
    cMinRateKiB: 10240,
  });
  t.same(res.handlers, {
    'split-brain': '/usr/lib/drbd/notify-split-brain.sh root',
    'fence-peer': '/usr/lib/drbd/crm-fence-peer.9.sh',
  });
  t.same(res.startup, {
    wfcTimeoutS: 10,
    degrWfcTimeoutS: 60,
    outdatedWfcTimeoutS: 0,
    waitAfterSb: false,
    becomePrimaryOn: ['alpha'],
  });
  t.same(res.options, {
    onNoDataAccessible: 'io-error',
    autoPromote: false,
    autoPromoteTimeoutMs: 2000,
    quorum: 'majority',
    quorumMinimumRedundancy: 'off',
    onNoQuorum: 'suspend-io',
    onSuspendedPrimaryOutdated: 'disconnect',
    handlerTimeoutMs: 60000,
  });
  t.same(res.hosts, [
    {
      name: 'alpha',
      nodeId: 0,
      address: { family: 'ipv4', host: '10.0.0.1', port: 7789 },
      disk: '/var/lib/urbd/alpha.img',
      metaDisk: '/var/lib/urbd/alpha.md',
      device: { path: '/dev/nbd0', minor: 0 },
      nbdListen: [{ family: 'ipv4', host: '127.0.0.1', port: 10809 }],
      source: { file: F, line: 14, col: 3 },
    },
    {
      name: 'beta',
      nodeId: 1,
      address: { family: 'ipv4', host: '10.0.0.2', port: 7789 },
      disk: '/dev/vg/lv',
      metaDisk: 'internal',
      device: { path: '/dev/nbd0', minor: 0 },
      nbdListen: [],
      source: { file: F, line: 15, col: 3 },
    },
  ]);
  t.same(cfg.ignored, [
    {
      keyword: 'usage-count',
      where: 'global',
      text: 'usage-count no',
      source: { file: F, line: 2, col: 10 },
    },
  ]);
  t.equal(hostFor(res, 'beta').disk, '/dev/vg/lv');
});

t.test('defaults with an empty resource: DRBD values, LAN resync rates', async (t) => {
  const res = r0(twoHosts());
  t.equal(res.protocol, 'C');
  t.equal(res.net.timeoutMs, 6000);
  t.equal(res.net.afterSb0pri, 'disconnect');
  t.equal(res.net.fencing, 'dont-care');
  t.equal(res.disk.resyncRateKiB, 100 * 1024);
  t.equal(res.disk.cMinRateKiB, 10 * 1024);
  t.equal(res.disk.cMaxRateKiB, 4 * 1024 * 1024);
  t.equal(res.disk.alExtents, 1237);
  t.equal(res.disk.sizeBytes, undefined);
  t.equal(res.disk.resyncAfter, undefined);
  t.same(res.handlers, {});
  t.equal(res.options.autoPromote, true);
  t.equal(res.options.onNoQuorum, 'suspend-io');
  t.equal(res.options.handlerTimeoutMs, 60000, 'handler-timeout: 60 s');
  t.same(res.startup.becomePrimaryOn, []);
});

t.test('DRBD units become milliseconds, KiB/s, sectors and bytes', async (t) => {
  const res = r0(
    twoHosts(`  net { timeout 35; connect-int 3; ping-int 4; ping-timeout 7; socket-check-timeout 2; congestion-fill 1M; }
  disk { c-plan-ahead 5; c-delay-target 3; c-fill-target 1M; resync-rate 2048; c-min-rate 0; size 2048; }
  options { auto-promote-timeout 15; handler-timeout 90; } startup { outdated-wfc-timeout 9; }`),
  );
  t.equal(res.net.timeoutMs, 3500);
  t.equal(res.net.connectIntMs, 3000);
  t.equal(res.net.pingIntMs, 4000);
  t.equal(res.net.pingTimeoutMs, 700);
  t.equal(res.net.socketCheckTimeoutMs, 200);
  t.equal(res.net.congestionFillSectors, 2048);
  t.equal(res.disk.cPlanAheadMs, 500);
  t.equal(res.disk.cDelayTargetMs, 300);
  t.equal(res.disk.cFillTargetSectors, 2048);
  t.equal(res.disk.resyncRateKiB, 2048, 'bare rate is KiB/s');
  t.equal(res.disk.cMinRateKiB, 0);
  t.equal(res.disk.sizeBytes, 1024 * 1024, 'bare size is sectors');
  t.equal(res.options.autoPromoteTimeoutMs, 1500);
  t.equal(res.options.handlerTimeoutMs, 90000, 'handler-timeout is in seconds');
  t.equal(res.startup.outdatedWfcTimeoutS, 9);
  t.equal(r0(twoHosts('  disk { size 10G; }')).disk.sizeBytes, 10 * 1024 ** 3);
  t.equal(r0(twoHosts('  disk { size 0; }')).disk.sizeBytes, undefined, 'size 0 means automatic');
});

t.test('every enumeration value is accepted', async (t) => {
  const accept = (section: string, kw: string, values: string[]) => {
    for (const v of values) {
      t.doesNotThrow(() => r0(twoHosts(`  ${section} { ${kw} ${v}; }`)), `${kw} ${v}`);
    }
  };
  accept('net', 'protocol', ['A', 'B', 'C']);
  accept('net', 'after-sb-0pri', [
    'disconnect',
    'discard-younger-primary',
    'discard-older-primary',
    'discard-zero-changes',
    'discard-least-changes',
    'discard-node-alpha',
    'discard-node-beta',
  ]);
  accept('net', 'after-sb-1pri', [
    'disconnect',
    'consensus',
    'discard-secondary',
    'call-pri-lost-after-sb',
    'violently-as0p',
  ]);
  accept('net', 'after-sb-2pri', ['disconnect', 'call-pri-lost-after-sb', 'violently-as0p']);
  accept('net', 'rr-conflict', [
    'disconnect',
    'call-pri-lost',
    'violently',
    'retry-connect',
    'auto-discard',
  ]);
  accept('net', 'on-congestion', ['block', 'pull-ahead', 'disconnect']);
  accept('net', 'fencing', ['dont-care', 'resource-only', 'resource-and-stonith']);
  accept('disk', 'fencing', ['dont-care', 'resource-only', 'resource-and-stonith']);
  accept('disk', 'on-io-error', ['detach', 'pass_on', 'call-local-io-error']);
  accept('options', 'on-no-data-accessible', ['io-error', 'suspend-io']);
  accept('options', 'on-no-quorum', ['io-error', 'suspend-io']);
  accept('options', 'on-suspended-primary-outdated', ['disconnect', 'force-secondary']);
  accept('options', 'quorum', ['off', 'majority', 'all', '1', '32']);
  accept('options', 'quorum-minimum-redundancy', ['off', 'majority', 'all', '2']);
  t.equal(r0(twoHosts('  options { quorum 2; }')).options.quorum, 2);
  t.equal(
    r0(twoHosts('  net { after-sb-0pri discard-node-beta; }')).net.afterSb0pri,
    'discard-node-beta',
  );
});

t.test('booleans: yes, no, or bare as in DRBD 8.3', async (t) => {
  const res = r0(
    twoHosts(
      '  net { allow-two-primaries; always-asbp yes; use-rle no; csums-after-crash-only; discard-my-data; }\n  disk { al-updates no; } startup { wait-after-sb; } options { auto-promote no; }',
    ),
  );
  t.equal(res.net.allowTwoPrimaries, true);
  t.equal(res.net.alwaysAsbp, true);
  t.equal(res.net.useRle, false);
  t.equal(res.net.csumsAfterCrashOnly, true);
  t.equal(res.net.discardMyData, true);
  t.equal(res.disk.alUpdates, false);
  t.equal(res.startup.waitAfterSb, true);
  t.equal(res.options.autoPromote, false);
});

t.test('algorithms and the shared secret', async (t) => {
  const res = r0(
    twoHosts(
      '  net { cram-hmac-alg sha1; shared-secret "a b;c"; data-integrity-alg crc32c; csums-alg md5; verify-alg "sha256"; }',
    ),
  );
  t.equal(res.net.cramHmacAlg, 'sha1');
  t.equal(res.net.sharedSecret, 'a b;c');
  t.equal(res.net.dataIntegrityAlg, 'crc32c');
  t.equal(res.net.csumsAlg, 'md5');
  t.equal(res.net.verifyAlg, 'sha256');
  t.equal(
    r0(twoHosts(`  net { shared-secret "${'x'.repeat(64)}"; }`)).net.sharedSecret?.length,
    64,
  );
});

t.test(
  'fencing lands in net whether written in disk (8.4) or net (9); protocol in net or resource',
  async (t) => {
    t.equal(r0(twoHosts('  disk { fencing resource-only; }')).net.fencing, 'resource-only');
    t.equal(
      r0(twoHosts('  net { fencing resource-and-stonith; }')).net.fencing,
      'resource-and-stonith',
    );
    t.equal(r0(twoHosts('  protocol A;')).protocol, 'A');
    t.equal(r0(twoHosts('  net { protocol B; }')).protocol, 'B');
    t.equal(
      r0(twoHosts('  disk { max-buffers 8000; }')).net.maxBuffers,
      8000,
      'max-buffers in disk (9.1+)',
    );
  },
);

t.test(
  'common applies to every resource; the resource overrides; handlers merge by name',
  async (t) => {
    const cfg = parse(`common {
  protocol A;
  net { timeout 20; ko-count 3; }
  disk { resync-rate 10M; on-io-error pass_on; }
  handlers { split-brain "/bin/sb"; fence-peer "/bin/fence-common"; }
  startup { wfc-timeout 30; }
  options { quorum all; }
}
${twoHosts('  net { ko-count 9; protocol C; } disk { resync-rate 50M; } handlers { fence-peer "/bin/fence-r0"; } options { quorum off; }')}
resource r1 {
  device minor 1; disk /dev/sdc; meta-disk internal;
  on alpha { address 10.0.0.1:7790; }
  on beta { address 10.0.0.2:7790; }
}
`);
    const [a, b] = cfg.resources;
    t.equal(a.protocol, 'C');
    t.equal(a.net.timeoutMs, 2000);
    t.equal(a.net.koCount, 9);
    t.equal(a.disk.resyncRateKiB, 50 * 1024);
    t.equal(a.disk.onIoError, 'pass_on');
    t.same(a.handlers, { 'split-brain': '/bin/sb', 'fence-peer': '/bin/fence-r0' });
    t.equal(a.startup.wfcTimeoutS, 30);
    t.equal(a.options.quorum, 'off');
    t.equal(b.protocol, 'A');
    t.equal(b.net.koCount, 3);
    t.equal(b.disk.resyncRateKiB, 10 * 1024);
    t.same(b.handlers, { 'split-brain': '/bin/sb', 'fence-peer': '/bin/fence-common' });
    t.equal(b.options.quorum, 'all');
  },
);

t.test('common may come after the resources it applies to', async (t) => {
  const res = r0(`${twoHosts()}\ncommon { net { ko-count 2; } }\n`);
  t.equal(res.net.koCount, 2);
});

t.test(
  'on HOST values override resource-level device, disk, meta-disk and nbd-listen',
  async (t) => {
    const res = r0(`resource r0 {
  device minor 3;
  disk /dev/sdb;
  meta-disk internal;
  nbd-listen 127.0.0.1:10809;
  on alpha { address 10.0.0.1:7789; device minor 4; disk /data/a.img; meta-disk /data/a.md; nbd-listen 0.0.0.0:10810; nbd-listen [::1]:10811; }
  on beta { address 10.0.0.2:7789; }
}`);
    const [alpha, beta] = res.hosts;
    t.same(alpha.device, { path: '/dev/nbd4', minor: 4 });
    t.equal(alpha.disk, '/data/a.img');
    t.equal(alpha.metaDisk, '/data/a.md');
    t.same(alpha.nbdListen, [
      { family: 'ipv4', host: '0.0.0.0', port: 10810 },
      { family: 'ipv6', host: '::1', port: 10811 },
    ]);
    t.same(beta.device, { path: '/dev/nbd3', minor: 3 });
    t.equal(beta.disk, '/dev/sdb');
    t.equal(beta.metaDisk, 'internal');
    t.same(beta.nbdListen, [{ family: 'ipv4', host: '127.0.0.1', port: 10809 }]);
  },
);

t.test('device: /dev/drbdN, /dev/nbdN, minor N, both; a custom name is ignored', async (t) => {
  const dev = (spec: string) => r0(twoHosts().replace('device minor 0;', spec)).hosts[0].device;
  t.same(dev('device /dev/drbd7;'), { path: '/dev/nbd7', minor: 7 });
  t.same(dev('device /dev/nbd2;'), { path: '/dev/nbd2', minor: 2 });
  t.same(dev('device minor 5;'), { path: '/dev/nbd5', minor: 5 });
  t.same(dev('device /dev/drbd5 minor 5;'), { path: '/dev/nbd5', minor: 5 });
  t.same(dev('device "/dev/drbd1";'), { path: '/dev/nbd1', minor: 1 });
  const cfg = parse(twoHosts().replace('device minor 0;', 'device /dev/drbd_r0 minor 6;'));
  t.same(cfg.resources[0].hosts[1].device, { path: '/dev/nbd6', minor: 6 });
  t.same(cfg.ignored, [
    {
      keyword: 'device',
      where: 'resource r0',
      text: 'device /dev/drbd_r0 minor 6',
      note: 'only the name is ignored: the device is /dev/nbd6',
      source: { file: F, line: 2, col: 3 },
    },
  ]);
});

t.test(
  'meta-disk: internal, a path, an 8.4 index in either spelling, flexible-meta-disk',
  async (t) => {
    const md = (spec: string) => {
      const h = resourceFor(parse(twoHosts().replace('meta-disk internal;', spec)), 'r0').hosts[0];
      return [h.metaDisk, h.metaDiskIndex];
    };
    t.same(md('meta-disk internal;'), ['internal', undefined]);
    t.same(md('meta-disk /dev/sdc1;'), ['/dev/sdc1', undefined]);
    t.same(md('meta-disk /dev/sdc1 [0];'), ['/dev/sdc1', 0]);
    t.same(md('meta-disk /dev/sdc1[3];'), ['/dev/sdc1', 3]);
    t.same(md('flexible-meta-disk /dev/sdd;'), ['/dev/sdd', undefined]);
    t.same(md('flexible-meta-disk internal;'), ['internal', undefined]);
  },
);

t.test('disk none makes a diskless host that needs no meta-disk', async (t) => {
  const res = r0(`resource r0 {
  device minor 0;
  on alpha { address 10.0.0.1:7789; disk /dev/sdb; meta-disk internal; }
  on tiebreaker { address 10.0.0.3:7789; disk none; }
}`);
  t.equal(res.hosts[1].disk, 'none');
  t.equal(res.hosts[1].metaDisk, undefined);
  t.equal(
    r0(twoHosts('', ' disk none;')).hosts[0].metaDisk,
    undefined,
    'inherited meta-disk is dropped',
  );
});

t.test('a single-host resource needs no address', async (t) => {
  const res = r0('resource r0 { device minor 0; disk /x.img; meta-disk internal; on solo { } }');
  t.equal(res.hosts.length, 1);
  t.equal(res.hosts[0].address, undefined);
  t.equal(res.hosts[0].nodeId, undefined);
});

t.test('DRBD 8.4 volumes, at resource level or inside on, one volume per resource', async (t) => {
  const a = r0(`resource r0 {
  volume 0 { device /dev/drbd1; disk /dev/sdb; meta-disk internal; disk { al-extents 100; } }
  on alpha { address 10.0.0.1:7789; }
  on beta { address 10.0.0.2:7789; volume 0 { disk /dev/sdc; } }
}`);
  t.same(a.hosts[0].device, { path: '/dev/nbd1', minor: 1 });
  t.equal(a.hosts[0].disk, '/dev/sdb');
  t.equal(a.hosts[1].disk, '/dev/sdc');
  t.equal(
    a.disk.alExtents,
    100,
    'disk options inside a resource-level volume apply to the resource',
  );
  const b = r0(`resource r0 {
  on alpha { volume 7 { device minor 1; disk /dev/sdb; meta-disk internal; } address 10.0.0.1:7789; }
  on beta { volume 7 { device minor 1; disk /dev/sdb; meta-disk internal; } address 10.0.0.2:7789; }
}`);
  t.equal(b.hosts[1].disk, '/dev/sdb');
});

t.test('IPv6 addresses and node-ids', async (t) => {
  const res = r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  on alpha { node-id 4; address ipv6 [fd00::1]:7789; }
  on beta { node-id 31; address [fd00::2]:7789; }
}`);
  t.same(
    res.hosts.map((h) => [h.nodeId, h.address]),
    [
      [4, { family: 'ipv6', host: 'fd00::1', port: 7789 }],
      [31, { family: 'ipv6', host: 'fd00::2', port: 7789 }],
    ],
  );
});

t.test('become-primary-on: names or both', async (t) => {
  t.same(r0(twoHosts('  startup { become-primary-on both; }')).startup.becomePrimaryOn, [
    'alpha',
    'beta',
  ]);
  t.same(r0(twoHosts('  startup { become-primary-on beta alpha; }')).startup.becomePrimaryOn, [
    'beta',
    'alpha',
  ]);
});

t.test('resync-after names another resource, also as DRBD 9 resource/volume', async (t) => {
  const cfg = parse(`${twoHosts('  disk { resync-after r1/0; }')}
resource r1 { device minor 1; disk /dev/sdc; meta-disk internal; on alpha { address 10.0.0.1:7790; } on beta { address 10.0.0.2:7790; } disk { resync-after r2; } }
resource r2 { device minor 2; disk /dev/sdd; meta-disk internal; on alpha { address 10.0.0.1:7791; } on beta { address 10.0.0.2:7791; } }`);
  t.same(
    cfg.resources.map((r) => r.disk.resyncAfter),
    ['r1', 'r2', undefined],
  );
});

t.test('DRBD 8.3 syncer sections map to their 8.4 homes', async (t) => {
  const res = r0(
    twoHosts(
      '  syncer { rate 33M; after r1; al-extents 257; verify-alg sha1; csums-alg md5; use-rle no; cpu-mask 3; }',
    ) + 'resource r1 { device minor 1; disk /dev/sdc; meta-disk internal; on solo { } }',
  );
  t.equal(res.disk.resyncRateKiB, 33 * 1024);
  t.equal(res.disk.resyncAfter, 'r1');
  t.equal(res.disk.alExtents, 257);
  t.equal(res.net.verifyAlg, 'sha1');
  t.equal(res.net.csumsAlg, 'md5');
  t.equal(res.net.useRle, false);
});

t.test(
  'options without meaning for urbd are recorded as ignored, with where they were',
  async (t) => {
    const cfg =
      parse(`global { usage-count yes; minor-count 64; dialog-refresh 1; disable-ip-verification; }
common { disk { disk-barrier no; md-flushes no; } net { sndbuf-size 512k; tcp-cork no; transport tcp; tls no; } options { cpu-mask 0f; } }
${twoHosts('  disk { read-balancing prefer-remote; disk-timeout 0; rs-discard-granularity 0; discard-zeroes-if-aligned yes; disable-write-same yes; disk-drain no; disk-flushes no; }\n  net { rcvbuf-size 0; } startup { stacked-timeouts; } skip { anything { goes; } }')}`);
    t.same(
      cfg.ignored.map((i) => `${i.where}: ${i.text}`),
      [
        'global: usage-count yes',
        'global: minor-count 64',
        'global: dialog-refresh 1',
        'global: disable-ip-verification',
        'common disk: disk-barrier no',
        'common disk: md-flushes no',
        'common net: sndbuf-size 512k',
        'common net: tcp-cork no',
        'common net: transport tcp',
        'common net: tls no',
        'common options: cpu-mask 0f',
        'resource r0 disk: read-balancing prefer-remote',
        'resource r0 disk: disk-timeout 0',
        'resource r0 disk: rs-discard-granularity 0',
        'resource r0 disk: discard-zeroes-if-aligned yes',
        'resource r0 disk: disable-write-same yes',
        'resource r0 disk: disk-drain no',
        'resource r0 disk: disk-flushes no',
        'resource r0 net: rcvbuf-size 0',
        'resource r0 startup: stacked-timeouts',
        'resource r0: skip { ... }',
      ],
    );
    t.equal(cfg.ignored[0].keyword, 'usage-count');
  },
);

t.test('DRBD 9 connection-mesh: hosts and net options', async (t) => {
  const res = r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  on a { node-id 0; address 10.0.0.1:7789; }
  on b { node-id 1; address 10.0.0.2:7789; }
  on c { node-id 2; address 10.0.0.3:7789; disk none; }
  connection-mesh { hosts a b c; net { protocol A; ping-int 3; } }
}`);
  t.equal(res.protocol, 'A');
  t.equal(res.net.pingIntMs, 3000);
  t.equal(res.hosts.length, 3);
});

t.test(
  'three hosts with a disk are refused: the third must be the diskless tiebreaker',
  async (t) => {
    t.throws(
      () =>
        r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  on a { node-id 0; address 10.0.0.1:7789; }
  on b { node-id 1; address 10.0.0.2:7789; }
  on c { node-id 2; address 10.0.0.3:7789; }
}`),
      /three hosts with a disk; urbd replicates to one data peer, so the third host must be "disk none;"/,
    );
    t.throws(
      () =>
        r0(`resource r0 {
  device minor 0; disk none;
  on a { node-id 0; address 10.0.0.1:7789; }
  on b { node-id 1; address 10.0.0.2:7789; }
  on c { node-id 2; address 10.0.0.3:7789; }
  on d { node-id 3; address 10.0.0.4:7789; }
}`),
      /has 4 hosts; urbd supports up to three/,
    );
  },
);

t.test(
  'DRBD 9 connection: host addresses, ports and a path supply or confirm addresses',
  async (t) => {
    const a = r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  connection {
    host alpha address 10.0.0.1:7789;
    host beta address ipv4 10.0.0.2:7789;
    net { verify-alg sha1; }
    disk { c-max-rate 500M; }
  }
  on alpha { }
  on beta { }
}`);
    t.same(
      a.hosts.map((h) => h.address?.host),
      ['10.0.0.1', '10.0.0.2'],
    );
    t.equal(a.net.verifyAlg, 'sha1');
    t.equal(a.disk.cMaxRateKiB, 500 * 1024);
    const b = r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  on alpha { address 10.0.0.1:7789; }
  on beta { address 10.0.0.2:7789; }
  connection c1 { path { host alpha address 10.0.0.1:7789; host beta port 7789; } }
}`);
    t.same(
      b.hosts.map((h) => h.address?.port),
      [7789, 7789],
    );
    const c = r0(`resource r0 {
  device minor 0; disk /dev/sdb; meta-disk internal;
  on alpha { }
  on beta { }
  connection { host alpha address 10.0.0.1:1 port 7000; host beta address [fd00::2]:7000; }
}`);
    t.same(
      c.hosts.map((h) => h.address),
      [
        { family: 'ipv4', host: '10.0.0.1', port: 7000 },
        { family: 'ipv6', host: 'fd00::2', port: 7000 },
      ],
    );
  },
);

t.test('include works inside a resource too', async (t) => {
  // An include that matches nothing is fine; this one exercises the splice inside a block.
  const res = r0(twoHosts('  include "/nonexistent-urbd-dir/*.inc";'));
  t.equal(res.hosts.length, 2);
});

t.test('several resources keep file order; names may use . _ - +', async (t) => {
  const cfg = parse(`resource b.1 { device minor 1; disk /b; meta-disk internal; on h { } }
resource a_2-x+ { device minor 2; disk /a; meta-disk internal; on h { } }`);
  t.same(
    cfg.resources.map((r) => r.name),
    ['b.1', 'a_2-x+'],
  );
});

t.test('an empty file is an empty config', async (t) => {
  t.same(parse(''), { file: F, resources: [], ignored: [] });
  t.same(parse('# nothing\n\n').resources, []);
});

t.test('8.3 style: protocol directly in common; skip anywhere', async (t) => {
  const cfg = parse(
    `skip { resource old { } }\ncommon { protocol B; skip { net { } } }\n${twoHosts()}`,
  );
  t.equal(cfg.resources[0].protocol, 'B');
  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    ['top level: skip { ... }', 'common: skip { ... }'],
  );
});

t.test('net options from a connection-mesh must agree with the resource', async (t) => {
  t.throws(
    () =>
      parse(
        twoHosts(
          '  net { ping-int 3; }\n  connection-mesh { hosts alpha beta; net { ping-int 4; } }',
        ),
      ),
    {
      message: `${F}:6:54: "ping-int" is 4 in connection-mesh but 3 in resource r0 (at ${F}:5:9); urbd uses one value per resource`,
    },
  );
});
