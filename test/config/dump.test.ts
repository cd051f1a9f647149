import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  dumpConfig,
  loadConfig,
  parseConfigText,
  type UrbdConfig,
} from '../../src/config/index.js';
import { HANDLER_INERT, INERT } from '../../src/config/inert.js';
import { DUMP_SECTIONS, HANDLER_NAMES } from '../../src/config/schema.js';
import { F, twoHosts, withoutSources } from './helpers.js';

const FIXTURES = join(fileURLToPath(import.meta.url), '../../../../test/fixtures/config');

function roundTrip(t: Test, cfg: UrbdConfig, what: string): string {
  const text = dumpConfig(cfg);
  const again = parseConfigText(text, '/tmp/dumped.conf');
  t.same(
    withoutSources(again.resources),
    withoutSources(cfg.resources),
    `${what}: same typed result`,
  );
  // Only the "where it was defined" comments may differ.
  const body = (s: string) => s.replace(/^# resource .* at .*$/gm, '');
  t.equal(
    body(dumpConfig({ ...again, file: cfg.file, ignored: cfg.ignored })),
    body(text),
    `${what}: dump is stable`,
  );
  return text;
}

t.test('dump of a small config, exactly', async (t) => {
  const cfg = parseConfigText(
    `global { usage-count no; }
common { disk { disk-barrier no; } }
resource r0 {
  device /dev/drbd0; disk "/srv/my disk.img"; meta-disk /dev/sdc1 [2];
  net { shared-secret "s3 \\"cret\\""; cram-hmac-alg sha256; }
  disk { disk-flushes no; size 4G; resync-after r1; }
  handlers { split-brain "/bin/echo \\\\ split"; }
  startup { become-primary-on both; }
  on alpha { node-id 0; address 10.0.0.1:7789; nbd-listen [::1]:10809; nbd-listen 127.0.0.1:10809; }
  on beta { node-id 1; address ipv6 [fd00::2]:7789; disk none; }
}
resource r1 { device minor 1; disk /x; meta-disk internal; on alpha { } }
`,
    F,
  );
  const text = roundTrip(t, cfg, 'small');
  t.equal(
    dumpConfig(cfg, ['r0']),
    `# ${F}, as urbd reads it: includes expanded, common and defaults applied
# ignored by urbd (global): usage-count no;
# ignored by urbd (common disk): disk-barrier no;

# resource r0 at ${F}:3:1
resource r0 {
    net {
        protocol C;
        timeout 60;
        connect-int 10;
        ping-int 10;
        ping-timeout 5;
        ko-count 7;
        max-buffers 2048; # ignored by urbd: urbd allocates receive buffers as writes arrive
        max-epoch-size 2048;
        allow-two-primaries no;
        after-sb-0pri disconnect;
        after-sb-1pri disconnect;
        after-sb-2pri disconnect;
        always-asbp no;
        rr-conflict disconnect;
        cram-hmac-alg sha256;
        shared-secret "s3 \\"cret\\"";
        csums-after-crash-only no;
        use-rle yes; # ignored by urbd: bitmaps are always sent run-length encoded
        on-congestion block; # ignored by urbd: writes always wait for a congested link, as with on-congestion block
        congestion-fill 0; # ignored by urbd: writes always wait for a congested link, as with on-congestion block
        congestion-extents 1237; # ignored by urbd: writes always wait for a congested link, as with on-congestion block
        socket-check-timeout 0; # ignored by urbd: a dead link is found by ping-int and ping-timeout
        fencing dont-care;
        discard-my-data no;
    }
    disk {
        size 4G;
        on-io-error detach;
        al-extents 1237;
        al-updates yes;
        resync-rate 100M;
        resync-after r1; # ignored by urbd: resyncs of different resources run side by side
        c-plan-ahead 20;
        c-delay-target 10; # ignored by urbd: the resync controller follows c-fill-target and the rates only
        c-fill-target 100;
        c-max-rate 4G;
        c-min-rate 10M;
    }
    handlers {
        split-brain "/bin/echo \\\\ split";
    }
    startup {
        wfc-timeout 0; # ignored by urbd: urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout
        degr-wfc-timeout 0; # ignored by urbd: urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout
        outdated-wfc-timeout 0; # ignored by urbd: urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout
        wait-after-sb no; # ignored by urbd: urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout
        become-primary-on alpha beta; # ignored by urbd: nothing promotes at start-up; promote with urbdadm primary or urbd-failover
    }
    options {
        on-no-data-accessible io-error;
        auto-promote yes; # ignored by urbd: a Secondary refuses NBD clients instead of promoting itself; promote with urbdadm primary
        auto-promote-timeout 20; # ignored by urbd: a Secondary refuses NBD clients instead of promoting itself; promote with urbdadm primary
        quorum off;
        quorum-minimum-redundancy off;
        on-no-quorum suspend-io;
        on-suspended-primary-outdated disconnect; # ignored by urbd: a suspended Primary that meets newer data stays StandAlone with its reason; demote it with urbdadm secondary --force
        handler-timeout 60;
    }
    on alpha {
        node-id 0;
        address ipv4 10.0.0.1:7789;
        device /dev/nbd0 minor 0;
        disk "/srv/my disk.img";
        meta-disk /dev/sdc1 [2];
        nbd-listen ipv6 [::1]:10809;
        nbd-listen ipv4 127.0.0.1:10809;
    }
    on beta {
        node-id 1;
        address ipv6 [fd00::2]:7789;
        device /dev/nbd0 minor 0;
        disk none;
    }
    # ignored by urbd (resource r0): meta-disk /dev/sdc1 [2]; (only the index is ignored: the metadata is the file /dev/sdc1, one per resource)
    # ignored by urbd (resource r0 disk): disk-flushes no;
}
`,
  );
  t.ok(text.includes('resource r1 {'), 'all resources without a filter');
  t.equal(cfg.resources[0].net.sharedSecret, 's3 "cret"');
  t.equal(cfg.resources[0].handlers['split-brain'], '/bin/echo \\ split');
});

t.test('dump round-trips the fixtures and a config with every option changed', async (t) => {
  roundTrip(t, loadConfig(join(FIXTURES, 'drbd84/drbd.conf')), 'drbd84');
  roundTrip(t, loadConfig(join(FIXTURES, 'drbd9/drbd.conf')), 'drbd9');
  const everything = parseConfigText(
    twoHosts(`  net { protocol A; timeout 33; connect-int 7; ping-int 8; ping-timeout 9; ko-count 0;
    max-buffers 99; max-epoch-size 77; allow-two-primaries yes; after-sb-0pri discard-node-beta;
    after-sb-1pri consensus; after-sb-2pri violently-as0p; always-asbp yes; rr-conflict auto-discard;
    cram-hmac-alg sha1; shared-secret "#x;{}"; data-integrity-alg crc32c; csums-alg md5;
    csums-after-crash-only yes; verify-alg sha256; use-rle no; on-congestion pull-ahead;
    congestion-fill 3; congestion-extents 11; socket-check-timeout 4; fencing resource-and-stonith;
    discard-my-data yes; }
  disk { size 1; on-io-error call-local-io-error; al-extents 7; al-updates no; resync-rate 1;
    c-plan-ahead 0; c-delay-target 100; c-fill-target 0; c-max-rate 250; c-min-rate 3G; }
  startup { wfc-timeout 300000; degr-wfc-timeout 1; outdated-wfc-timeout 2; wait-after-sb yes; become-primary-on beta; }
  options { on-no-data-accessible suspend-io; auto-promote no; auto-promote-timeout 0; quorum 3;
    quorum-minimum-redundancy all; on-no-quorum io-error; on-suspended-primary-outdated force-secondary;
    handler-timeout 3600; }
  handlers { before-resync-target "a"; after-resync-target "b"; before-resync-source "c";
    pri-on-incon-degr "d"; pri-lost-after-sb "e"; fence-peer "f"; unfence-peer "g"; local-io-error "h";
    pri-lost "i"; initial-split-brain "j"; split-brain "k"; out-of-sync "l"; quorum-lost "m"; disconnected ""; }`),
    F,
  );
  const text = roundTrip(t, everything, 'every option');
  t.ok(text.includes('        size 1;'), 'one sector is written bare');
  t.ok(text.includes('        c-min-rate 3G;'));
  t.ok(text.includes('        disconnected "";'));
  t.ok(text.includes('        handler-timeout 3600;'));
});

t.test('dump marks every option urbd does not act on, and only those', async (t) => {
  const text = dumpConfig(
    parseConfigText(
      twoHosts(`  handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh"; }
  net { cram-hmac-alg sha1; shared-secret s; data-integrity-alg crc32c; csums-alg md5; verify-alg sha1; }
  disk { size 1G; resync-after r1; } startup { become-primary-on alpha; }`) +
        'resource r1 { device minor 1; disk /dev/sdc; on alpha { } }',
      F,
    ),
  );
  const keywords = new Map<string, string | null>();
  for (const { specs } of DUMP_SECTIONS) {
    for (const spec of specs) keywords.set(spec.keyword, INERT[spec.key]);
  }
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^ {8}([a-z0-9-]+) [^#]*;( # ignored by urbd: (.*))?$/.exec(line);
    if (m === null || line.includes('crm-fence-peer')) continue;
    const reason = keywords.get(m[1]);
    if (reason === undefined) continue;
    seen.add(m[1]);
    t.equal(m[3] ?? null, reason, `${m[1]}: ${reason === null ? 'in force' : 'marked ignored'}`);
  }
  t.equal(seen.size, keywords.size, 'every option is in the dump');
  t.match(
    text,
    '        auto-promote yes; # ignored by urbd: a Secondary refuses NBD clients instead of promoting itself; promote with urbdadm primary\n',
  );
  t.match(text, '        fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh";\n', 'fence-peer in force');
});

t.test('dump shows the handlers urbd calls as in force, the others as ignored', async (t) => {
  const handlers = HANDLER_NAMES.map((n) => `${n} "/usr/local/bin/h ${n}";`).join(' ');
  const text = dumpConfig(parseConfigText(twoHosts(`  handlers { ${handlers} }`), F));
  const called = [
    'fence-peer',
    'unfence-peer',
    'split-brain',
    'initial-split-brain',
    'pri-lost-after-sb',
    'before-resync-target',
    'after-resync-target',
    'local-io-error',
    'quorum-lost',
    'out-of-sync',
    'disconnected',
  ];
  for (const n of HANDLER_NAMES) {
    const line = text.split('\n').find((l) => l.startsWith(`        ${n} "`));
    if (called.includes(n)) {
      t.equal(HANDLER_INERT[n], null, `${n} is called`);
      t.equal(line, `        ${n} "/usr/local/bin/h ${n}";`, `${n}: in force`);
    } else {
      t.type(HANDLER_INERT[n], 'string', `${n} is not called`);
      t.equal(
        line,
        `        ${n} "/usr/local/bin/h ${n}"; # ignored by urbd: ${HANDLER_INERT[n]}`,
        `${n}: marked ignored with its reason`,
      );
    }
  }
  t.match(
    text,
    '        pri-lost "/usr/local/bin/h pri-lost"; # ignored by urbd: urbd calls pri-lost-after-sb after a split brain; pri-lost is not called\n',
  );
});
