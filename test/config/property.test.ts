import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { ConfigError, dumpConfig, parseConfigText } from '../../src/config/index.js';
import { tokenize } from '../../src/config/lexer.js';
import { tree, withoutSources } from './helpers.js';

/** Runs `fn`; anything thrown other than a ConfigError is returned as a failure. */
function onlyConfigErrors(fn: () => unknown): boolean {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return true;
    throw e;
  }
  return true;
}

// Words that steer random input into the parser's deeper paths. `include` is left out so the
// test never reads files outside its own empty directory.
const WORDS = [
  'resource',
  'r0',
  'r1',
  'on',
  'alpha',
  'beta',
  'gamma',
  'net',
  'disk',
  'device',
  'minor',
  '0',
  '1',
  '/dev/drbd0',
  '/dev/sdb',
  'none',
  'meta-disk',
  'flexible-meta-disk',
  'internal',
  '[0]',
  'address',
  'ipv4',
  'ipv6',
  '10.0.0.1:7789',
  '[::1]:7789',
  'protocol',
  'C',
  'D',
  'common',
  'global',
  'usage-count',
  'no',
  'yes',
  'volume',
  'connection',
  'connection-mesh',
  'host',
  'hosts',
  'path',
  'port',
  'node-id',
  'nbd-listen',
  'skip',
  'handlers',
  'split-brain',
  'startup',
  'options',
  'quorum',
  'majority',
  'become-primary-on',
  'both',
  'resync-after',
  'size',
  '10G',
  'syncer',
  'rate',
  'after-sb-0pri',
  'discard-node-alpha',
  'floating',
  'timeout',
  '600',
  'tls',
  'transport',
  'al-extents',
  '{',
  '}',
  ';',
  '"quoted"',
  '"open',
  '#',
  '\n',
  '\\',
];

t.test('the lexer throws nothing but ConfigError', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) =>
      onlyConfigErrors(() => tokenize(s, 'fuzz.conf')),
    ),
    { numRuns: 2000 },
  );
  t.pass('no other exception');
});

t.test('parseConfigText throws nothing but ConfigError', async (t) => {
  const { dir, cleanup } = tree({});
  t.teardown(cleanup);
  const file = join(dir, 'fuzz.conf');
  const soup = fc
    .array(fc.oneof(fc.constantFrom(...WORDS), fc.string({ maxLength: 5 })), { maxLength: 80 })
    .chain((words) =>
      fc
        .array(fc.constantFrom(' ', '\n', '\t', ''), {
          minLength: words.length,
          maxLength: words.length,
        })
        .map((seps) => words.map((w, i) => w + seps[i]).join('')),
    );
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), soup), (text) =>
      onlyConfigErrors(() => parseConfigText(text, file)),
    ),
    { numRuns: 3000 },
  );
  t.pass('no other exception');
});

/** A valid statement for one option, with a random in-range value. */
const OPTIONS: Array<[string, fc.Arbitrary<string>]> = [
  ['net', fc.constantFrom('A', 'B', 'C').map((v) => `protocol ${v}`)],
  ['net', fc.integer({ min: 1, max: 600 }).map((v) => `timeout ${v}`)],
  ['net', fc.integer({ min: 1, max: 120 }).map((v) => `connect-int ${v}`)],
  ['net', fc.integer({ min: 1, max: 300 }).map((v) => `ping-timeout ${v}`)],
  ['net', fc.integer({ min: 0, max: 200 }).map((v) => `ko-count ${v}`)],
  ['net', fc.integer({ min: 32, max: 131072 }).map((v) => `max-buffers ${v}`)],
  ['net', fc.constantFrom('yes', 'no', '').map((v) => `allow-two-primaries ${v}`)],
  [
    'net',
    fc
      .constantFrom('disconnect', 'discard-least-changes', 'discard-node-alpha')
      .map((v) => `after-sb-0pri ${v}`),
  ],
  ['net', fc.constantFrom('consensus', 'violently-as0p').map((v) => `after-sb-1pri ${v}`)],
  [
    'net',
    fc
      .string({ minLength: 1, maxLength: 64 })
      .map((v) => `shared-secret "${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`),
  ],
  ['net', fc.constantFrom('block', 'pull-ahead').map((v) => `on-congestion ${v}`)],
  ['net', fc.integer({ min: 0, max: 10 << 21 }).map((v) => `congestion-fill ${v}`)],
  ['disk', fc.integer({ min: 1, max: 2 ** 30 }).map((v) => `size ${v}`)],
  ['disk', fc.integer({ min: 7, max: 65534 }).map((v) => `al-extents ${v}`)],
  ['disk', fc.integer({ min: 1, max: 8 << 20 }).map((v) => `resync-rate ${v}`)],
  ['disk', fc.integer({ min: 1, max: 4096 }).map((v) => `c-max-rate ${v}M`)],
  ['disk', fc.integer({ min: 0, max: 4 << 20 }).map((v) => `c-min-rate ${v}k`)],
  ['disk', fc.integer({ min: 0, max: 300 }).map((v) => `c-plan-ahead ${v}`)],
  ['disk', fc.integer({ min: 0, max: 2048 }).map((v) => `c-fill-target ${v}K`)],
  ['disk', fc.constantFrom('dont-care', 'resource-only').map((v) => `fencing ${v}`)],
  ['startup', fc.integer({ min: 0, max: 300000 }).map((v) => `wfc-timeout ${v}`)],
  [
    'startup',
    fc.constantFrom('alpha', 'beta', 'both', 'beta alpha').map((v) => `become-primary-on ${v}`),
  ],
  ['options', fc.constantFrom('off', 'majority', 'all', '2', '32').map((v) => `quorum ${v}`)],
  ['options', fc.integer({ min: 0, max: 600 }).map((v) => `auto-promote-timeout ${v}`)],
  ['options', fc.integer({ min: 1, max: 3600 }).map((v) => `handler-timeout ${v}`)],
  [
    'handlers',
    fc
      .string({ maxLength: 40 })
      .filter((v) => !v.includes('\n'))
      .map((v) => `fence-peer "${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`),
  ],
];

const ipv4 = fc
  .tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 0, max: 255 }))
  .map(([a, b]) => `10.${a}.${b}.1`);
const host = (name: string, port: number) =>
  fc
    .record({
      v6: fc.boolean(),
      ip: ipv4,
      minor: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
      disk: fc.constantFrom(undefined, '/dev/sdz', '"/srv/a b.img"', 'none'),
      meta: fc.constantFrom(undefined, '/dev/md [3]', '/var/lib/urbd/m.md'),
      listens: fc.array(fc.integer({ min: 1024, max: 2000 }), { maxLength: 2 }),
    })
    .map((h) => {
      const lines = [
        `address ${h.v6 ? `ipv6 [fd00::${port}]:${port}` : `${h.ip}:${port}`};`,
        h.minor === undefined ? '' : `device minor ${h.minor};`,
        h.disk === undefined ? '' : `disk ${h.disk};`,
        h.meta === undefined ? '' : `meta-disk ${h.meta};`,
        ...[...new Set(h.listens)].map((p) => `nbd-listen 127.0.0.1:${p};`),
      ];
      return `  on ${name} { ${lines.join(' ')} NODEID }`;
    });

t.test('dump then parse gives the same typed result for generated configs', async (t) => {
  const config = fc
    .record({
      options: fc
        .subarray(OPTIONS.map((_, i) => i))
        .chain((picked) =>
          fc.tuple(...picked.map((i) => OPTIONS[i][1].map((s) => [OPTIONS[i][0], s] as const))),
        ),
      alpha: host('alpha', 7001),
      beta: host('beta', 7002),
      ids: fc.boolean(),
    })
    .map(({ options, alpha, beta, ids }) => {
      const sections = new Map<string, string[]>();
      for (const [section, stmt] of options)
        sections.set(section, [...(sections.get(section) ?? []), `${stmt};`]);
      const body = [...sections].map(([s, stmts]) => `  ${s} { ${stmts.join(' ')} }`);
      const id = (n: number) => (ids ? `node-id ${n};` : '');
      return [
        'resource r0 {',
        '  device minor 9; disk /dev/sdb; meta-disk internal;',
        ...body,
        alpha.replace('NODEID', id(0)),
        beta.replace('NODEID', id(1)),
        '}',
      ].join('\n');
    });
  fc.assert(
    fc.property(config, (text) => {
      const cfg = parseConfigText(text, '/gen.conf');
      const again = parseConfigText(dumpConfig(cfg), '/dumped.conf');
      t.same(withoutSources(again.resources), withoutSources(cfg.resources));
      return true;
    }),
    { numRuns: 300 },
  );
});
