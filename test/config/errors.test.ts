import t from 'tap';
import { ConfigError, loadConfig, parseConfigText } from '../../src/config/index.js';
import { configError, F, twoHosts } from './helpers.js';

/** [what, config text, the exact message]. Positions are FILE:LINE:COL, 1-based. */
type Case = [string, string, string];

const check = (cases: Case[]) =>
  t.test(cases[0][0], async (t) => {
    for (const [what, text, message] of cases) {
      const e = configError(() => parseConfigText(text, F));
      t.equal(e.message, message, what);
      t.ok(e instanceof ConfigError);
      const [, line, col] = /^[^:]*:(\d+):(\d+): /.exec(e.message) ?? [];
      t.same([e.line, e.col], [Number(line), Number(col)], `${what}: line and col fields`);
    }
  });

// twoHosts(extra) puts `extra` on line 5 and "on alpha" on line 6; "on beta" is line 7.

check([
  [
    'unknown keywords are suggested when close',
    twoHosts('  disk { al-extent 100; }'),
    `${F}:5:10: unknown keyword "al-extent" in disk section; did you mean "al-extents"?`,
  ],
  [
    'no suggestion when nothing is close',
    twoHosts('  disk { frobnicate 1; }'),
    `${F}:5:10: unknown keyword "frobnicate" in disk section; expected "size", "on-io-error", "fencing", "al-extents", "al-updates", "resync-rate", "resync-after", "c-plan-ahead", "c-delay-target", "c-fill-target", "c-max-rate", "c-min-rate", "max-buffers", "disk-barrier", "disk-flushes", "disk-drain", "md-flushes", "no-disk-barrier", "no-disk-flushes", "no-disk-drain", "no-md-flushes", "disk-timeout", "read-balancing", "rs-discard-granularity", "discard-zeroes-if-aligned", "disable-write-same", "max-bio-bvecs", "use-bmbv", "unplug-watermark", "bitmap", "block-size", "discard-granularity", "resync-without-replication" or "peer-tiebreaker"`,
  ],
  [
    'a keyword known in another section says where it belongs',
    twoHosts('  net { al-extents 100; }'),
    `${F}:5:9: "al-extents" belongs in the disk section, not in the net section`,
  ],
  [
    'an option at resource level',
    twoHosts('  ko-count 3;'),
    `${F}:5:3: "ko-count" belongs in the net section, not in the resource section`,
  ],
  [
    'unknown resource-level keyword',
    twoHosts('  devise minor 1;'),
    `${F}:5:3: unknown keyword "devise" in resource section; did you mean "device"?`,
  ],
  [
    'unknown on-section keyword',
    twoHosts('', ' adress 10.0.0.9:1;'),
    `${F}:6:37: unknown keyword "adress" in on section; did you mean "address"?`,
  ],
  [
    'unknown top-level keyword',
    'resorce r0 { }',
    `${F}:1:1: unknown keyword "resorce" in the top level; did you mean "resource"?`,
  ],
  [
    'an option at top level',
    'protocol C;',
    `${F}:1:1: "protocol" must be inside a resource or common section (it belongs in the net section)`,
  ],
  [
    'unknown keyword in common',
    'common { nett { } }',
    `${F}:1:10: unknown keyword "nett" in common section; did you mean "net"?`,
  ],
  [
    'unknown handler',
    twoHosts('  handlers { split-brian "/bin/x"; }'),
    `${F}:5:14: unknown keyword "split-brian" in handlers section; did you mean "split-brain"?`,
  ],
  [
    'unknown global option',
    'global { usage-cont no; }',
    `${F}:1:10: unknown keyword "usage-cont" in global section; did you mean "usage-count"?`,
  ],
  [
    'unknown keyword in a volume',
    twoHosts('  volume 0 { adress 1; }'),
    `${F}:5:14: unknown keyword "adress" in volume section; expected "device", "disk", "meta-disk" or "flexible-meta-disk"`,
  ],
]);

check([
  [
    'a second value',
    twoHosts('  protocol C D;'),
    `${F}:5:14: expected ";" after value of "protocol"`,
  ],
  [
    'a missing semicolon swallows the next line',
    twoHosts('  protocol C'),
    `${F}:6:3: expected ";" after value of "protocol"`,
  ],
  [
    'a flag given a block',
    twoHosts('  net { always-asbp { } }'),
    `${F}:5:21: expected ";" after "always-asbp"`,
  ],
  [
    'a missing value',
    twoHosts('  protocol;'),
    `${F}:5:11: expected a value for "protocol" (A, B or C)`,
  ],
  [
    'a missing value in a section',
    twoHosts('  disk { resync-rate; }'),
    `${F}:5:21: expected a value for "resync-rate" (a rate such as 100M (bare numbers are KiB/s))`,
  ],
  ['a section without a block', twoHosts('  net;'), `${F}:5:6: expected "{" after "net"`],
  [
    'a section with a name',
    twoHosts('  net fast { }'),
    `${F}:5:7: "net" takes no name; expected "{" after "net"`,
  ],
  [
    'resource without a name',
    'resource { }',
    `${F}:1:10: expected a resource name after "resource"`,
  ],
  ['resource with two names', 'resource r0 r1 { }', `${F}:1:13: expected "{" after "resource r0"`],
  ['resource without a block', 'resource r0;', `${F}:1:12: expected "{" after "resource r0"`],
  [
    'bad resource name',
    'resource "r 0" { }',
    `${F}:1:10: resource name "r 0" may only contain letters, digits and "_", "-", ".", "+" (not first)`,
  ],
  [
    'unterminated string',
    twoHosts('  net { shared-secret "abc; }'),
    `${F}:5:23: unterminated string; expected a closing " on the same line`,
  ],
  [
    'unclosed resource',
    'resource r0 {\n  device minor 0;\n',
    `${F}:3:1: unexpected end of file: "resource r0" opened at 1:1 is not closed`,
  ],
]);

check([
  ['protocol', twoHosts('  protocol D;'), `${F}:5:12: protocol must be A, B or C, not "D"`],
  [
    'enumeration with suggestion',
    twoHosts('  disk { on-io-error detatch; }'),
    `${F}:5:22: on-io-error must be detach, pass_on or call-local-io-error, not "detatch"; did you mean "detach"?`,
  ],
  [
    'after-sb-1pri',
    twoHosts('  net { after-sb-1pri discard-zero-changes; }'),
    `${F}:5:23: after-sb-1pri must be disconnect, consensus, discard-secondary, call-pri-lost-after-sb or violently-as0p, not "discard-zero-changes"`,
  ],
  [
    'after-sb-2pri',
    twoHosts('  net { after-sb-2pri consensus; }'),
    `${F}:5:23: after-sb-2pri must be disconnect, call-pri-lost-after-sb or violently-as0p, not "consensus"`,
  ],
  [
    'after-sb-0pri',
    twoHosts('  net { after-sb-0pri discard-node-; }'),
    `${F}:5:23: after-sb-0pri must be disconnect, discard-younger-primary, discard-older-primary, discard-zero-changes, discard-least-changes or discard-node-NAME, not "discard-node-"; did you mean "discard-node-NAME"?`,
  ],
  [
    'discard-node names no host',
    twoHosts('  net { after-sb-0pri discard-node-gamma; }'),
    `${F}:5:23: after-sb-0pri discard-node-gamma names no host of resource r0 (hosts: alpha, beta)`,
  ],
  [
    'fencing',
    twoHosts('  disk { fencing stonith; }'),
    `${F}:5:18: fencing must be dont-care, resource-only or resource-and-stonith, not "stonith"`,
  ],
  [
    'rr-conflict',
    twoHosts('  net { rr-conflict retry; }'),
    `${F}:5:21: rr-conflict must be disconnect, call-pri-lost, violently, retry-connect or auto-discard, not "retry"`,
  ],
  [
    'on-no-data-accessible',
    twoHosts('  options { on-no-data-accessible suspend; }'),
    `${F}:5:35: on-no-data-accessible must be io-error or suspend-io, not "suspend"`,
  ],
  [
    'handler-timeout below the range',
    twoHosts('  options { handler-timeout 0; }'),
    `${F}:5:29: handler-timeout must be a whole number from 1 to 3600 (unit 1 s), not "0"`,
  ],
  [
    'handler-timeout above the range',
    twoHosts('  options { handler-timeout 3601; }'),
    `${F}:5:29: handler-timeout must be a whole number from 1 to 3600 (unit 1 s), not "3601"`,
  ],
  [
    'on-congestion',
    twoHosts('  net { on-congestion pull_ahead; }'),
    `${F}:5:23: on-congestion must be block, pull-ahead or disconnect, not "pull_ahead"; did you mean "pull-ahead"?`,
  ],
  [
    'quorum',
    twoHosts('  options { quorum 33; }'),
    `${F}:5:20: quorum must be off, majority, all or a number of nodes from 1 to 32, not "33"`,
  ],
  [
    'al-extents below the range',
    twoHosts('  disk { al-extents 6; }'),
    `${F}:5:21: al-extents must be a whole number from 7 to 65534, not "6"`,
  ],
  [
    'al-extents above the range',
    twoHosts('  disk { al-extents 65535; }'),
    `${F}:5:21: al-extents must be a whole number from 7 to 65534, not "65535"`,
  ],
  [
    'timeout',
    twoHosts('  net { timeout 0; }'),
    `${F}:5:17: timeout must be a whole number from 1 to 600 (unit 0.1 s), not "0"`,
  ],
  [
    'connect-int',
    twoHosts('  net { connect-int 121; }'),
    `${F}:5:21: connect-int must be a whole number from 1 to 120 (unit 1 s), not "121"`,
  ],
  [
    'ko-count',
    twoHosts('  net { ko-count 201; }'),
    `${F}:5:18: ko-count must be a whole number from 0 to 200, not "201"`,
  ],
  [
    'max-buffers',
    twoHosts('  net { max-buffers 31; }'),
    `${F}:5:21: max-buffers must be a whole number from 32 to 131072, not "31"`,
  ],
  [
    'resync-rate',
    twoHosts('  disk { resync-rate 9G; }'),
    `${F}:5:22: resync-rate must be from 1 KiB/s to 8 GiB/s, not "9G"`,
  ],
  [
    'c-max-rate',
    twoHosts('  disk { c-max-rate 5G; }'),
    `${F}:5:21: c-max-rate must be from 250 KiB/s to 4 GiB/s, not "5G"`,
  ],
  [
    'c-plan-ahead',
    twoHosts('  disk { c-plan-ahead 301; }'),
    `${F}:5:23: c-plan-ahead must be a whole number from 0 to 300 (unit 0.1 s), not "301"`,
  ],
  [
    'size',
    twoHosts('  disk { size 2P; }'),
    `${F}:5:15: size must be a size such as 10G or 2048 (bare numbers are 512-byte sectors), not "2P"`,
  ],
  [
    'boolean',
    twoHosts('  net { allow-two-primaries maybe; }'),
    `${F}:5:29: allow-two-primaries must be yes or no, not "maybe"`,
  ],
  [
    'wfc-timeout',
    twoHosts('  startup { wfc-timeout -1; }'),
    `${F}:5:25: wfc-timeout must be a whole number from 0 to 300000 (unit 1 s), not "-1"`,
  ],
  [
    'shared-secret too long',
    twoHosts(`  net { shared-secret "${'x'.repeat(65)}"; }`),
    `${F}:5:23: shared-secret must be at most 64 characters long`,
  ],
  [
    'empty algorithm',
    twoHosts('  net { verify-alg ""; }'),
    `${F}:5:20: verify-alg must not be empty`,
  ],
  [
    'tls yes',
    twoHosts('  net { tls yes; }'),
    `${F}:5:13: tls is not supported by urbd: replication traffic is not encrypted; use a private network or a VPN`,
  ],
  [
    'rdma',
    twoHosts('  net { transport rdma; }'),
    `${F}:5:19: transport "rdma" is not supported by urbd; only tcp`,
  ],
  [
    'become-primary-on',
    twoHosts('  startup { become-primary-on alpha gamma; }'),
    `${F}:5:37: become-primary-on names "gamma", which is not a host of resource r0 (hosts: alpha, beta)`,
  ],
]);

check([
  [
    'resource defined twice',
    `${twoHosts()}resource r0 { }`,
    `${F}:9:1: resource "r0" is defined twice (first at ${F}:1:1)`,
  ],
  [
    'keyword twice in one section',
    twoHosts('  disk { al-extents 100; al-extents 200; }'),
    `${F}:5:26: "al-extents" is given twice in resource r0 (first at ${F}:5:10)`,
  ],
  [
    'the same option in two sections of a resource',
    twoHosts('  protocol A; net { protocol C; }'),
    `${F}:5:21: "protocol" is given twice in resource r0 (first at ${F}:5:3)`,
  ],
  [
    'an 8.3 alias and its 8.4 name',
    twoHosts('  syncer { rate 10M; } disk { resync-rate 20M; }'),
    `${F}:5:31: "resync-rate" is given twice in resource r0 (first as "rate" at ${F}:5:12)`,
  ],
  [
    'a handler twice',
    twoHosts('  handlers { split-brain "a"; } handlers { split-brain "b"; }'),
    `${F}:5:44: "split-brain" is given twice in resource r0 (first at ${F}:5:14)`,
  ],
  [
    'an option twice in common',
    'common { net { timeout 10; } net { timeout 20; } }',
    `${F}:1:36: "timeout" is given twice in common (first at ${F}:1:16)`,
  ],
  [
    'device twice at resource level',
    twoHosts('  device minor 1;'),
    `${F}:5:3: "device" is given twice in resource r0 (first at ${F}:2:3)`,
  ],
  [
    'disk twice in one host',
    twoHosts('', ' disk /a; disk /b;'),
    `${F}:6:46: "disk" is given twice in "on alpha" (first at ${F}:6:37)`,
  ],
  [
    'meta-disk and flexible-meta-disk',
    twoHosts('  flexible-meta-disk internal;'),
    `${F}:5:3: "flexible-meta-disk" is given twice in resource r0 (first as "meta-disk" at ${F}:4:3)`,
  ],
  [
    'common twice',
    'common { }\ncommon { }',
    `${F}:2:1: "common" is given twice (first at ${F}:1:1)`,
  ],
  [
    'global twice',
    'global { }\nglobal { }',
    `${F}:2:1: "global" is given twice (first at ${F}:1:1)`,
  ],
  [
    'host twice',
    twoHosts('  on alpha { address 10.0.0.3:1; }'),
    `${F}:6:6: host "alpha" is given twice in resource r0 (first at ${F}:5:3)`,
  ],
  [
    'node-id twice',
    twoHosts('', ' node-id 1;').replace('on beta {', 'on beta { node-id 1;'),
    `${F}:7:21: node-id 1 is already used by host "alpha" (at ${F}:6:37)`,
  ],
  [
    'address twice in a resource',
    twoHosts().replace('10.0.0.2', '10.0.0.1'),
    `${F}:7:21: address 10.0.0.1:7789 is already used by host "alpha" (at ${F}:6:14)`,
  ],
]);

check([
  [
    'host without device',
    twoHosts().replace('  device minor 0;', ''),
    `${F}:6:3: host "alpha" of resource r0 has no device; add "device minor N;" to "on alpha" or to the resource`,
  ],
  [
    'host without disk',
    twoHosts().replace('  disk /dev/sdb;', ''),
    `${F}:6:3: host "alpha" of resource r0 has no disk; add "disk PATH;" (or "disk none;" for a diskless node) to "on alpha" or to the resource`,
  ],
  [
    'host without address',
    twoHosts().replace('address 10.0.0.2:7789;', ''),
    `${F}:7:3: host "beta" of resource r0 has no address; with more than one host, every "on" section needs "address IP:PORT;"`,
  ],
  [
    'resource without hosts',
    'resource r0 { device minor 0; }',
    `${F}:1:1: resource r0 has no "on HOST" section; every node that holds it needs one`,
  ],
  [
    'node-id on some hosts only',
    twoHosts('', ' node-id 0;'),
    `${F}:7:3: host "beta" of resource r0 has no node-id; give every host a node-id or none (host "alpha" has one at ${F}:6:37)`,
  ],
  [
    'three hosts without node-ids',
    twoHosts('  on gamma { address 10.0.0.3:7789; }'),
    `${F}:5:3: host "gamma" of resource r0 has no node-id; a resource with more than two hosts needs "node-id N;" in every "on" section`,
  ],
  [
    'node-id out of range',
    twoHosts('', ' node-id 32;'),
    `${F}:6:45: node-id must be a whole number from 0 to 31, not "32"`,
  ],
]);

check([
  [
    'second volume',
    twoHosts('  volume 0 { } volume 1 { }'),
    `${F}:5:16: urbd serves one volume per resource; resource r0 already has volume 0 (at ${F}:5:10)`,
  ],
  [
    'second volume inside on',
    twoHosts('  volume 0 { }', ' volume 1 { }'),
    `${F}:6:37: urbd serves one volume per resource; resource r0 already has volume 0 (at ${F}:5:10)`,
  ],
  [
    'floating',
    twoHosts('  floating 10.0.0.9:7789 { }'),
    `${F}:5:3: "floating" sections are not supported by urbd; use "on HOST { address IP:PORT; }"`,
  ],
  [
    'stacked-on-top-of',
    twoHosts('  stacked-on-top-of r1 { }'),
    `${F}:5:3: stacked resources ("stacked-on-top-of") are not supported by urbd; use a plain resource`,
  ],
  ['proxy', twoHosts('', ' proxy { }'), `${F}:6:37: DRBD Proxy ("proxy") is not supported by urbd`],
  [
    'on with two names',
    twoHosts('  on gamma delta { }'),
    `${F}:5:12: "on" takes one host name; write a separate "on" section for "delta"`,
  ],
  ['on without a name', twoHosts('  on { }'), `${F}:5:6: expected a host name after "on"`],
  [
    'a per-host disk option only one host gives',
    twoHosts('', ' disk { al-extents 100; }'),
    `${F}:6:44: "al-extents" is given in "on alpha" but not in "on beta"; urbd uses one value per resource: give it at resource level, or the same in each such section`,
  ],
  [
    'per-host net options that disagree with the resource',
    twoHosts('  net { ping-int 3; }', ' net { ping-int 4; }'),
    `${F}:6:52: "ping-int" is 4 in "on alpha" but 3 in resource r0 (at ${F}:5:9); urbd uses one value per resource`,
  ],
  [
    'per-host options sections other than disk and net',
    twoHosts('', ' options { }'),
    `${F}:6:37: "options" sections are not allowed inside "on alpha"; urbd applies options to the whole resource, so put it at resource level`,
  ],
  [
    'on inside on',
    twoHosts('', ' on x { }'),
    `${F}:6:37: "on" is not allowed inside "on alpha"; put it at resource level`,
  ],
  [
    'address at resource level',
    twoHosts('  address 10.0.0.9:7789;'),
    `${F}:5:3: "address" belongs inside an "on HOST" section`,
  ],
  [
    'device with an unknown name',
    twoHosts().replace('device minor 0;', 'device /dev/sdx;'),
    `${F}:2:10: cannot tell the minor number from "/dev/sdx"; write "device minor N;" or "device /dev/sdx minor N;"`,
  ],
  [
    'device and minor disagree',
    twoHosts().replace('device minor 0;', 'device /dev/drbd1 minor 0;'),
    `${F}:2:27: device /dev/drbd1 is minor 1, not 0`,
  ],
  [
    'device minor without a number',
    twoHosts().replace('device minor 0;', 'device minor;'),
    `${F}:2:15: expected a minor number after "minor"`,
  ],
  [
    'device with junk after the path',
    twoHosts().replace('device minor 0;', 'device /dev/drbd1 major 0;'),
    `${F}:2:21: expected ";" or "minor N" after "device /dev/drbd1"`,
  ],
  [
    'minor out of range',
    twoHosts().replace('device minor 0;', 'device minor 1048576;'),
    `${F}:2:16: minor must be a whole number from 0 to 1048575, not "1048576"`,
  ],
  [
    'relative disk path',
    twoHosts().replace('disk /dev/sdb;', 'disk vg/lv;'),
    `${F}:3:8: disk must be an absolute path or none, not "vg/lv"`,
  ],
  [
    'bad meta-disk index',
    twoHosts().replace('meta-disk internal;', 'meta-disk /dev/sdc1 [x];'),
    `${F}:4:23: expected a meta-data index such as [0], not "[x]"`,
  ],
  [
    'internal with an index',
    twoHosts().replace('meta-disk internal;', 'meta-disk internal [0];'),
    `${F}:4:22: expected ";" after "meta-disk internal"`,
  ],
  [
    'bad address',
    twoHosts('', '').replace('10.0.0.1:7789', '10.0.0.1:0'),
    `${F}:6:22: port must be from 1 to 65535, not "0"`,
  ],
  [
    'bad address family',
    twoHosts().replace('address 10.0.0.1:7789', 'address sdp 10.0.0.1:7789'),
    `${F}:6:22: address family "sdp" is not supported by urbd; use ipv4 or ipv6`,
  ],
  [
    'bad nbd-listen',
    twoHosts('  nbd-listen localhost:10809;'),
    `${F}:5:14: "localhost" is not an IPv4 address (urbd needs numeric addresses)`,
  ],
  [
    'nbd-listen on the replication address',
    twoHosts('', ' nbd-listen 10.0.0.1:7789;'),
    `${F}:6:37: 10.0.0.1:7789 on host "alpha" is already used by resource r0 (address at ${F}:6:14)`,
  ],
  [
    'disk and meta-disk on the same path',
    twoHosts().replace('meta-disk internal;', 'meta-disk /dev/sdb;'),
    `${F}:4:3: meta-disk /dev/sdb on host "alpha" is already used by resource r0 (disk at ${F}:3:3)`,
  ],
]);

const second = (body: string) =>
  `${twoHosts()}resource r1 {\n${body}\n  on alpha { address 10.0.0.1:7790; }\n  on beta { address 10.0.0.2:7790; }\n}\n`;

check([
  [
    'minor reused on a host',
    second('  device minor 0; disk /dev/sdc; meta-disk internal;'),
    `${F}:10:3: minor 0 on host "alpha" is already used by resource r0 (at ${F}:2:3)`,
  ],
  [
    'address reused on a host',
    second('  device minor 1; disk /dev/sdc; meta-disk internal;').replace(':7790', ':7789'),
    `${F}:11:14: 10.0.0.1:7789 on host "alpha" is already used by resource r0 (address at ${F}:6:14)`,
  ],
  [
    'disk reused on a host',
    second('  device minor 1; disk /dev/sdb; meta-disk internal;'),
    `${F}:10:19: disk /dev/sdb on host "alpha" is already used by resource r0 (disk at ${F}:3:3)`,
  ],
  [
    'external meta-disk slot reused',
    second('  device minor 1; disk /dev/sdc; meta-disk /dev/md [1];').replace(
      'meta-disk internal;',
      'meta-disk /dev/md [1];',
    ),
    `${F}:10:34: meta-disk /dev/md [1] on host "alpha" is already used by resource r0 (meta-disk [1] at ${F}:4:3); urbd keeps each resource's metadata in a file of its own, not in indexed slots: give each resource its own meta-disk file`,
  ],
  [
    // DRBD would give each index its own slot; urbd's metadata is one file, so both would share it.
    'external meta-disk shared under two indexes',
    second('  device minor 1; disk /dev/sdc; meta-disk /srv/x.md [1];').replace(
      'meta-disk internal;',
      'meta-disk /srv/x.md [0];',
    ),
    `${F}:10:34: meta-disk /srv/x.md [1] on host "alpha" is already used by resource r0 (meta-disk [0] at ${F}:4:3); urbd keeps each resource's metadata in a file of its own, not in indexed slots: give each resource its own meta-disk file`,
  ],
  [
    'external meta-disk shared, one indexed',
    second('  device minor 1; disk /dev/sdc; meta-disk /srv/x.md;').replace(
      'meta-disk internal;',
      'meta-disk /srv/x.md[0];',
    ),
    `${F}:10:34: meta-disk /srv/x.md on host "alpha" is already used by resource r0 (meta-disk [0] at ${F}:4:3); urbd keeps each resource's metadata in a file of its own, not in indexed slots: give each resource its own meta-disk file`,
  ],
  [
    'resync-after an unknown resource',
    twoHosts('  disk { resync-after r9; }'),
    `${F}:5:23: resync-after names "r9", which is not a resource in ${F} (resources: r0)`,
  ],
  [
    'resync-after itself',
    twoHosts('  disk { resync-after r0; }'),
    `${F}:5:23: resource r0 cannot resync after itself`,
  ],
  [
    'resync-after cycle',
    second(
      '  device minor 1; disk /dev/sdc; meta-disk internal; disk { resync-after r0; }',
    ).replace('  meta-disk internal;\n', '  meta-disk internal;\n  disk { resync-after r1; }\n'),
    `${F}:5:23: resync-after makes a cycle: r0 -> r1 -> r0`,
  ],
]);

const conn = (body: string) =>
  `resource r0 {\n  device minor 0; disk /dev/sdb; meta-disk internal;\n  on alpha { address 10.0.0.1:7789; }\n  on beta { }\n${body}\n}\n`;

check([
  [
    'connection names an unknown host',
    conn('  connection { host alpha; host gamma address 10.0.0.3:1; }'),
    `${F}:5:33: connection names "gamma", which has no "on gamma" section in resource r0`,
  ],
  [
    'connection disagrees with the on section',
    conn('  connection { host alpha address 10.0.0.9:7789; host beta address 10.0.0.2:7789; }'),
    `${F}:5:27: urbd uses one address per host: host "alpha" of resource r0 has 10.0.0.1:7789 (at ${F}:3:14), this connection says 10.0.0.9:7789`,
  ],
  [
    'a port for a host without an address',
    conn('  connection { host alpha; host beta port 7000; }'),
    `${F}:5:38: host "beta" has no address to apply this port to`,
  ],
  [
    'one path per connection',
    conn('  connection { path { host alpha; host beta address 10.0.0.2:1; } path { } }'),
    `${F}:5:67: urbd supports one path per connection (first at ${F}:5:16)`,
  ],
  [
    'a connection with one host',
    conn('  connection { host alpha; }'),
    `${F}:5:3: a connection joins exactly two hosts; this one names 1`,
  ],
  [
    'via a proxy',
    conn('  connection { host alpha via proxy on x; host beta; }'),
    `${F}:5:27: DRBD Proxy ("via") is not supported by urbd`,
  ],
  [
    'connection-mesh leaves a host out',
    conn('  connection-mesh { hosts alpha alpha; }'),
    `${F}:5:21: connection-mesh leaves out host "beta"; urbd connects every host of a resource with every other`,
  ],
  [
    'connection-mesh without hosts',
    conn('  connection-mesh { net { } }'),
    `${F}:5:3: connection-mesh needs a "hosts NAME NAME ...;" list`,
  ],
  [
    'unknown keyword in a connection',
    conn('  connection { hots alpha; }'),
    `${F}:5:16: unknown keyword "hots" in connection section; did you mean "host"?`,
  ],
]);

t.test('an unreadable config file is a whole-file error naming it', async (t) => {
  const e = configError(() => loadConfig('/nonexistent-urbd/urbd.conf'));
  t.equal(
    e.message,
    '/nonexistent-urbd/urbd.conf: cannot read config file: no such file or directory',
  );
  t.same([e.file, e.line, e.col], ['/nonexistent-urbd/urbd.conf', 0, 0]);
  t.equal(configError(() => loadConfig('/')).message, '/: cannot read config file: is a directory');
});
