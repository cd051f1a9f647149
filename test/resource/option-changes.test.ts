// What adjust / net-options / disk-options may change on a running resource, and at what
// cost (option-changes.ts): every option of every section, the `on` sections, addresses.
import t from 'tap';
import { parseConfigText, type ResourceConfig } from '../../src/config/index.js';
import { DUMP_SECTIONS } from '../../src/config/schema.js';
import {
  type ChangePlan,
  describePlan,
  planChanges,
  type RunningConfig,
} from '../../src/resource/option-changes.js';

function running(extra = '', alphaPort = 7001, betaPort = 7002): RunningConfig {
  const cfg = parseConfigText(
    `resource r0 {
  ${extra}
  on alpha { node-id 0; address 127.0.0.1:${alphaPort}; device minor 0; disk /tmp/a.img; meta-disk internal; }
  on beta { node-id 1; address 127.0.0.1:${betaPort}; device minor 0; disk /tmp/b.img; meta-disk internal; }
}
`,
    '/etc/urbd/urbd.conf',
  );
  const config = cfg.resources[0]!;
  return { config, host: config.hosts.find((h) => h.name === 'alpha')! };
}

function plan(p: ReturnType<typeof planChanges>): ChangePlan {
  if ('refused' in p) throw new Error(`refused: ${p.refused}`);
  return p;
}

/** Options whose new value needs a new peer session. */
const RECONNECT = [
  'protocol',
  'timeout',
  'ping-int',
  'ping-timeout',
  'ko-count',
  'max-epoch-size',
  'allow-two-primaries',
  'after-sb-0pri',
  'after-sb-1pri',
  'after-sb-2pri',
  'always-asbp',
  'cram-hmac-alg',
  'shared-secret',
];
/** Refused while the disk is attached, applied while detached. */
const ATTACHED = ['al-extents', 'al-updates'];
/** Refused while up. */
const UP = ['size'];

/** A value of the same type as `v`, different from it. */
function other(v: unknown): unknown {
  if (typeof v === 'number') return v + 1;
  if (typeof v === 'boolean') return !v;
  if (typeof v === 'string') return `${v}x`;
  if (Array.isArray(v)) return [...(v as string[]), 'beta'];
  return 'sha256'; // an unset text option
}

t.test('every option of every section is classified', async (t) => {
  const base = running();
  for (const { section, specs } of DUMP_SECTIONS) {
    for (const spec of specs) {
      const [group, field] = spec.key.split('.') as [string, string];
      const config = structuredClone(base.config) as ResourceConfig;
      const target =
        group === 'top'
          ? (config as unknown as Record<string, unknown>)
          : (config as unknown as Record<string, Record<string, unknown>>)[group]!;
      target[field] = other(target[field]);
      const wanted = { config, host: config.hosts[0]! };
      const what = `${section} ${spec.keyword}`;
      const attached = planChanges(base, wanted, true);
      const detached = planChanges(base, wanted, false);
      if (UP.includes(spec.keyword)) {
        t.ok('refused' in attached && 'refused' in detached, `${what}: refused`);
        t.match((attached as { refused: string }).refused, `${spec.keyword} cannot change`);
        continue;
      }
      if (ATTACHED.includes(spec.keyword)) {
        t.ok('refused' in attached, `${what}: refused while attached`);
        t.match((attached as { refused: string }).refused, /while the disk of r0 is attached/);
        t.notOk('refused' in detached, `${what}: applied while detached`);
      }
      const p = plan(detached);
      t.equal(p.changes.length, 1, `${what}: one change`);
      t.equal(p.changes[0]!.keyword, spec.keyword);
      const reconnect = RECONNECT.includes(spec.keyword);
      t.equal(p.changes[0]!.reconnect, reconnect, `${what}: reconnect ${reconnect}`);
      t.same(
        p.reconnect,
        reconnect ? [{ peer: 'beta', why: `${spec.keyword} changed` }] : [],
        `${what}: peers to reconnect`,
      );
    }
  }
});

t.test('nothing changed: an empty plan', async (t) => {
  const p = plan(planChanges(running(), running(), true));
  t.same(p, { changes: [], reconnect: [] });
  t.same(describePlan('r0', p), []);
});

t.test('a changed peer address reconnects that peer; our own reconnects all', async (t) => {
  const moved = running('', 7001, 7003);
  const p = plan(planChanges(running(), moved, true));
  t.same(p.changes, [
    {
      keyword: 'address of beta',
      from: '127.0.0.1:7002',
      to: '127.0.0.1:7003',
      reconnect: true,
    },
  ]);
  t.same(p.reconnect, [{ peer: 'beta', why: 'address of beta changed' }]);
  const own = plan(planChanges(running(), running('', 7009), true));
  t.same(own.reconnect, [{ peer: 'beta', why: 'address of alpha changed' }]);
  t.same(describePlan('r0', own), [
    'r0: address of alpha 127.0.0.1:7001 → 127.0.0.1:7009',
    'r0: reconnect to beta (address of alpha changed)',
  ]);
});

t.test('what cannot change while up is refused, naming it', async (t) => {
  const cases: Array<[string, RunningConfig, RegExp]> = [];
  const swap = (text: string, from: string, to: string): RunningConfig => {
    const cfg = parseConfigText(text.replace(from, to), '/etc/urbd/urbd.conf').resources[0]!;
    return { config: cfg, host: cfg.hosts.find((h) => h.name === 'alpha')! };
  };
  const text = `resource r0 {
  on alpha { node-id 0; address 127.0.0.1:7001; device minor 0; disk /tmp/a.img; meta-disk internal; }
  on beta { node-id 1; address 127.0.0.1:7002; device minor 0; disk /tmp/b.img; meta-disk internal; }
}
`;
  cases.push(
    [
      'own node-id',
      swap(text, 'node-id 0;', 'node-id 2;'),
      /^node-id of alpha cannot change while r0 is up \(0 → 2\); urbdadm down r0, then up, to apply it$/,
    ],
    ['peer node-id', swap(text, 'node-id 1;', 'node-id 3;'), /^node-id of beta cannot change/],
    [
      'disk',
      swap(text, '/tmp/a.img', '/tmp/c.img'),
      /^disk of alpha cannot change .*\/tmp\/c\.img/,
    ],
    [
      'meta-disk',
      swap(text, 'disk /tmp/a.img; meta-disk internal;', 'disk /tmp/a.img; meta-disk /tmp/m;'),
      /^meta-disk of alpha cannot change/,
    ],
    [
      'device',
      swap(text, 'device minor 0; disk /tmp/a', 'device minor 4; disk /tmp/a'),
      /^device of alpha/,
    ],
    [
      'nbd-listen',
      swap(
        text,
        'meta-disk internal; }\n  on beta',
        'meta-disk internal; nbd-listen 127.0.0.1:10809; }\n  on beta',
      ),
      /^nbd-listen of alpha cannot change/,
    ],
    [
      'size',
      swap(text, 'resource r0 {', 'resource r0 { disk { size 10M; }'),
      /^size cannot change while r0 is up \(\(unset\) → 10M\)/,
    ],
    [
      'hosts',
      swap(
        text,
        '}\n}',
        '}\n  on gamma { node-id 2; address 127.0.0.1:7004; device minor 0; disk none; }\n}',
      ),
      /^the set of hosts cannot change while r0 is up \(alpha, beta → alpha, beta, gamma\)/,
    ],
  );
  const base = swap(text, '', '');
  for (const [what, wanted, re] of cases) {
    const p = planChanges(base, wanted, true);
    t.ok('refused' in p, `${what}: refused`);
    t.match((p as { refused: string }).refused, re, what);
    t.notMatch((p as { refused: string }).refused, /\n/, `${what}: one line`);
  }
  // The peer's disk is the peer's business: it may differ between the nodes' files.
  t.notOk('refused' in planChanges(base, swap(text, '/tmp/b.img', '/tmp/x.img'), true));
});

t.test('the secret is never echoed', async (t) => {
  const p = plan(
    planChanges(
      running('net { cram-hmac-alg sha256; shared-secret "old"; }'),
      running('net { cram-hmac-alg sha256; shared-secret "new"; }'),
      true,
    ),
  );
  const text = describePlan('r0', p).join('\n');
  t.notMatch(text, /old|new/);
  t.match(text, /shared-secret changed/);
});

t.test('several changes: one reconnect, named for the first session option', async (t) => {
  const p = plan(
    planChanges(
      running(),
      running('protocol B; net { ping-int 3; connect-int 2; } disk { c-max-rate 200M; }'),
      true,
    ),
  );
  t.same(
    p.changes.map((c) => [c.keyword, c.from, c.to, c.reconnect]),
    [
      ['protocol', 'C', 'B', true],
      ['connect-int', '10', '2', false],
      ['ping-int', '10', '3', true],
      ['c-max-rate', '4G', '200M', false],
    ],
  );
  t.same(p.reconnect, [{ peer: 'beta', why: 'protocol changed' }]);
});

t.test('handlers are compared too, and need no reconnect', async (t) => {
  const p = plan(planChanges(running(), running('handlers { split-brain "/bin/true"; }'), true));
  t.same(p.changes, [
    { keyword: 'handler split-brain', from: '(unset)', to: '/bin/true', reconnect: false },
  ]);
  t.same(p.reconnect, []);
});
