// Issue 14: files drbdadm reads whose meaning carries over to urbd. Each case has its own fixture
// (test/fixtures/config/shipped, linstor) or a small inline file.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  dumpConfig,
  hostFor,
  loadConfig,
  parseConfigText,
  resourceFor,
} from '../../src/config/index.js';
import { configError, F, tree, twoHosts, withoutSources } from './helpers.js';

const FIXTURES = join(fileURLToPath(import.meta.url), '../../../../test/fixtures/config');

t.test(
  'the shipped layout: global_common.conf included by drbd.conf and by each .res',
  async (t) => {
    const cfg = loadConfig(join(FIXTURES, 'shipped/drbd.conf'));
    t.same(
      cfg.resources.map((r) => r.name),
      ['mysql', 'rabbitmq'],
    );
    t.same(cfg.ignored.filter((i) => i.keyword === 'usage-count').length, 1, 'global is read once');
    const mysql = resourceFor(cfg, 'mysql');
    t.equal(mysql.handlers['fence-peer'], '/usr/lib/drbd/crm-fence-peer.9.sh', 'outdate-peer');
    t.equal(
      mysql.handlers['split-brain'],
      '/usr/lib/drbd/notify-split-brain.sh root $DRBD_RESOURCE',
      '"\\$X" is $X',
    );
    t.equal(mysql.disk.alExtents, 6 * 1024, 'al-extents 6k');
    t.equal(mysql.net.maxBuffers, 36 * 1024, 'max-buffers 36k');
    t.equal(mysql.net.maxEpochSize, 8 * 1024, 'max-epoch-size 8k');
    t.equal(mysql.startup.wfcTimeoutS, 120);
    t.equal(hostFor(mysql, 'alice').metaDisk, 'internal', 'an omitted meta-disk is internal');
    t.equal(hostFor(mysql, 'alice').name, 'alice.example.com', '--node alice finds the FQDN');
    t.equal(hostFor(mysql, 'BOB').name, 'Bob.example.com', 'case does not matter');
    const rabbit = resourceFor(cfg, 'rabbitmq');
    t.equal(rabbit.protocol, 'C', 'a connection repeating protocol C is no conflict');
    t.same(
      rabbit.startup.becomePrimaryOn,
      ['Alice'],
      'become-primary-on names the host as written',
    );
    t.same(
      cfg.ignored.map((i) => `${i.where}: ${i.text}`),
      [
        'top level: require-drbd-module-version-ge 9.1.0',
        'global: usage-count no',
        'common: skip { ... }',
        'common net: sndbuf-size 0',
      ],
    );

    t.same(
      withoutSources(parseConfigText(dumpConfig(cfg), '/tmp/dumped.conf').resources),
      withoutSources(cfg.resources),
      'dump parses back to the same configuration',
    );

    // Each .res file can also be read on its own: it pulls in the common part itself.
    const alone = loadConfig(join(FIXTURES, 'shipped/drbd.d/mysql.res'));
    t.equal(resourceFor(alone, 'mysql').net.maxBuffers, 36 * 1024);
  },
);

t.test('a LINSTOR-generated resource file', async (t) => {
  const cfg = loadConfig(join(FIXTURES, 'linstor/pvc-3c6b1f0e.res'));
  const r = resourceFor(cfg, 'pvc-3c6b1f0e');
  t.equal(r.protocol, 'C');
  t.equal(r.options.autoPromote, false);
  t.equal(r.net.rrConflict, 'retry-connect');
  t.same(
    r.hosts.map((h) => [h.name, h.nodeId, h.address?.host, h.disk, h.metaDisk, h.device.minor]),
    [
      ['nodeA', 0, '10.43.0.11', '/dev/linstor_thin/pvc-3c6b1f0e_00000', 'internal', 1003],
      ['nodeB', 1, '10.43.0.12', '/dev/linstor_thin/pvc-3c6b1f0e_00000', 'internal', 1003],
      ['nodeC', 2, '10.43.0.13', 'none', undefined, 1003],
    ],
  );
  t.same(
    [...new Set(cfg.ignored.map((i) => `${i.where}: ${i.text}`))],
    [
      'resource pvc-3c6b1f0e on nodeA disk: discard-zeroes-if-aligned no',
      'resource pvc-3c6b1f0e on nodeA disk: rs-discard-granularity 65536',
      'resource pvc-3c6b1f0e on nodeB disk: discard-zeroes-if-aligned no',
      'resource pvc-3c6b1f0e on nodeB disk: rs-discard-granularity 65536',
      'resource pvc-3c6b1f0e on nodeC disk: discard-zeroes-if-aligned no',
    ],
  );
  t.same(
    withoutSources(parseConfigText(dumpConfig(cfg), '/tmp/dumped.conf').resources),
    withoutSources(cfg.resources),
    'dump parses back to the same configuration',
  );
});

t.test('per-host disk and net sections: the same value everywhere applies', async (t) => {
  const res = resourceFor(
    parseConfigText(
      `resource r0 {
  device minor 0; disk /dev/sdb;
  on alpha { address 10.0.0.1:7789; volume 0 { disk { resync-rate 40M; } } net { ko-count 3; } }
  on beta { address 10.0.0.2:7789; disk { resync-rate 40M; } net { ko-count 3; } }
  on gamma { address 10.0.0.3:7789; disk none; net { ko-count 3; } node-id 2; }
}
`
        .replace('alpha {', 'alpha { node-id 0;')
        .replace('beta {', 'beta { node-id 1;'),
      F,
    ),
    'r0',
  );
  t.equal(res.disk.resyncRateKiB, 40 * 1024, 'a diskless host need not give disk options');
  t.equal(res.net.koCount, 3);
  const e = configError(() =>
    parseConfigText(
      twoHosts('', ' disk { c-max-rate 1G; }').replace('beta {', 'beta { disk { c-max-rate 2G; }'),
      F,
    ),
  );
  t.match(
    e.message,
    /"c-max-rate" is 2G in "on beta" but 1G in "on alpha" \(at .*:6:44\); urbd uses one value per resource$/,
  );
});

t.test('host names: short names and case match, in every place a host is named', async (t) => {
  const cfg = parseConfigText(
    `resource r0 {
  device minor 0; disk /dev/sdb;
  net { after-sb-0pri discard-node-BETA; }
  on Alpha.example.com { address 10.0.0.1:7789; }
  on beta.example.com { address 10.0.0.2:7789; }
  connection-mesh { hosts alpha Beta; }
}
`,
    F,
  );
  const r = resourceFor(cfg, 'r0');
  t.equal(
    r.net.afterSb0pri,
    'discard-node-beta.example.com',
    'the host as its on section names it',
  );
  t.equal(hostFor(r, 'ALPHA').name, 'Alpha.example.com');
  t.equal(hostFor(r, 'alpha.example.com').name, 'Alpha.example.com');
  t.throws(() => hostFor(r, 'gamma'), /has no "on gamma" section/);
  const twice = configError(() =>
    parseConfigText(twoHosts('', '').replace('on beta', 'on ALPHA.example.com'), F),
  );
  t.match(twice.message, /host "ALPHA.example.com" is given twice in resource r0/);
  const minor = configError(() =>
    parseConfigText(
      `${twoHosts()}resource r1 { device minor 0; disk /dev/sdc; on Alpha.lan { } }\n`,
      F,
    ),
  );
  t.match(minor.message, /minor 0 on host "Alpha.lan" is already used by resource r0/, 'one node');
});

t.test('skip sections are passed over without being read', async (t) => {
  const cfg = parseConfigText(twoHosts('  skip { "no closing quote { } ; still skipped\n  }'), F);
  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    ['resource r0: skip { ... }'],
  );
  t.equal(cfg.resources[0].hosts.length, 2);
  t.equal(
    configError(() => parseConfigText('skip {\n { \n', F)).message,
    `${F}:3:1: unexpected end of file: "skip" opened at 1:1 is not closed`,
  );
  t.equal(
    configError(() => parseConfigText('resource r0 { disk skip; skip on { "x }\n', F)).message,
    `${F}:2:1: unexpected end of file: "resource r0" opened at 1:1 is not closed`,
    'skip as a value is a word; as a keyword its block is unread (the quote is no string)',
  );
});

t.test('tiebreaker in a volume and the module version checks are ignored', async (t) => {
  const cfg = parseConfigText(
    `require-drbd-module-version-eq 9.2.8;\n${twoHosts('  volume 0 { device minor 0; tiebreaker yes; }').replace('  device minor 0;\n', '')}`,
    F,
  );
  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    ['top level: require-drbd-module-version-eq 9.2.8', 'resource r0: tiebreaker yes'],
  );
  t.match(dumpConfig(cfg), '# ignored by urbd (top level): require-drbd-module-version-eq 9.2.8;');
});

t.test('k, m and g suffixes on plain numbers, as drbdadm', async (t) => {
  const r = resourceFor(
    parseConfigText(
      twoHosts('  net { max-buffers 128K; ko-count 0k; } disk { al-extents 1k; }'),
      F,
    ),
    'r0',
  );
  t.same([r.net.maxBuffers, r.net.koCount, r.disk.alExtents], [131072, 0, 1024]);
  t.equal(
    configError(() => parseConfigText(twoHosts('  net { max-buffers 1m; }'), F)).message,
    `${F}:5:21: max-buffers must be a whole number from 32 to 131072, not "1m"`,
  );
});

t.test('DRBD Proxy and unknown keywords say what was expected', async (t) => {
  const conn = (line: string) =>
    `resource r0 {\n  device minor 0; disk /dev/sdb;\n  on alice { }\n  on bob { }\n  connection {\n${line}\n    host bob address 10.0.0.2:7789;\n  }\n}\n`;
  t.equal(
    configError(() =>
      parseConfigText(
        conn(
          '    host alice address 10.0.0.1:7789 via proxy on alice-proxy { inside 127.0.0.1:7788; outside 10.0.0.5:7788; }',
        ),
        F,
      ),
    ).message,
    `${F}:6:38: DRBD Proxy ("via") is not supported by urbd`,
  );
  t.equal(
    configError(() => parseConfigText('rource r0 {\n  on alpha { }\n}\n', F)).message,
    `${F}:1:1: unknown keyword "rource" in the top level; did you mean "resource"?`,
  );
  t.equal(
    configError(() => parseConfigText('frobnicate;\n', F)).message,
    `${F}:1:1: unknown keyword "frobnicate" in the top level; expected "global", "common", "resource", "include", "skip", "require-drbd-module-version-eq" or "require-drbd-module-version-ge"`,
  );
});

t.test('a 5 MB file of junk is reported at its first offending token', async (t) => {
  const { dir, cleanup } = tree({});
  t.teardown(cleanup);
  // Words without a ";" until the end, where a string never closes: reading to the end first
  // would report the last line.
  const junk = `${'qwerty uiop asdf '.repeat(300_000)}\n"never closed\n`;
  const file = join(dir, 'junk.conf');
  writeFileSync(file, junk);
  t.ok(junk.length > 5_000_000);
  t.equal(
    configError(() => loadConfig(file)).message,
    `${file}:1:1: unknown keyword "qwerty" in the top level; expected "global", "common", "resource", "include", "skip", "require-drbd-module-version-eq" or "require-drbd-module-version-ge"`,
  );
  // Junk inside a section: the statement is cut off after 64 words, near where it starts.
  writeFileSync(file, `resource r0 {\n  ${'junk '.repeat(1_000_000)}\n"x\n`);
  t.match(
    configError(() => loadConfig(file)).message,
    `${file}:2:328: expected ";" after value of "junk" (too many words)`,
  );
});

t.test('the DRBD 9 guide shape: connection paths, peer-device options, a tiebreaker', async (t) => {
  const cfg = loadConfig(join(FIXTURES, 'guide9/r0.res'));
  const r = resourceFor(cfg, 'r0');
  t.equal(r.disk.cMaxRateKiB, 400 * 1024, 'the same c-max-rate in every connection');
  t.equal(r.protocol, 'C', 'protocol C in one connection is what the others get by default');
  t.equal(r.options.quorum, 'majority');
  t.equal(r.net.fencing, 'resource-only');
  t.equal(r.handlers['quorum-lost'], 'echo b > /proc/sysrq-trigger');
  t.same(
    r.hosts.map((h) => [h.name, h.nodeId, h.disk, h.device.minor]),
    [
      ['alice', 0, '/dev/vg0/r0', 1],
      ['bob', 1, '/dev/vg0/r0', 1],
      ['charlie', 2, 'none', 1],
    ],
  );
  t.same(
    cfg.ignored.map((i) => `${i.where}: ${i.text}`),
    ['resource r0 on charlie: tiebreaker yes', 'resource r0 on charlie: skip { ... }'],
  );
  t.same(
    withoutSources(parseConfigText(dumpConfig(cfg), '/tmp/dumped.conf').resources),
    withoutSources(cfg.resources),
    'dump parses back to the same configuration',
  );
});
