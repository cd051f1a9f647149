// Which keywords each option section accepts, how their values are read and written back, and
// the defaults. Ranges and DRBD units follow drbd_limits.h (DRBD 8.4 and 9); drbd.md §1.3.
import { oneOf } from './errors.js';
import { didYouMean } from './suggest.js';
import type {
  DiskOptions,
  NetOptions,
  Protocol,
  Quorum,
  ResourceOptions,
  StartupOptions,
} from './types.js';
import {
  formatBytes,
  formatRateKiB,
  parseBoolean,
  parseScaledIntInRange,
  parseRateKiB,
  parseSectors,
  parseSizeBytes,
  parseScaledNumber,
  ValueError,
} from './values.js';

export type SettingKey =
  | 'top.protocol'
  | `net.${keyof NetOptions}`
  | `disk.${keyof DiskOptions}`
  | `startup.${keyof StartupOptions}`
  | `options.${keyof ResourceOptions}`;

export interface OptionSpec {
  kind: 'option';
  keyword: string;
  key: SettingKey;
  minArgs: number;
  maxArgs: number;
  /** What a value looks like, for "expected a value for ..." messages. */
  expect: string;
  parse(args: readonly string[]): unknown;
  /** The value back in drbd.conf syntax (the text after the keyword). */
  format(value: unknown): string;
}

/**
 * Accepted for compatibility, without effect in urbd. `reject` names values that would promise
 * something urbd does not do (encryption, RDMA), which must not pass silently.
 */
export interface IgnoredSpec {
  kind: 'ignored';
  keyword: string;
  reject?: (args: readonly string[]) => string | undefined;
}

export type Spec = OptionSpec | IgnoredSpec;

export type OptionSection = 'net' | 'disk' | 'startup' | 'options' | 'syncer' | 'global';

const one = (
  keyword: string,
  key: SettingKey,
  expect: string,
  parse: (v: string) => unknown,
  format: (v: unknown) => string,
): OptionSpec => ({
  kind: 'option',
  keyword,
  key,
  minArgs: 1,
  maxArgs: 1,
  expect,
  parse: (args) => parse(args[0]),
  format,
});

const int = (keyword: string, key: SettingKey, min: number, max: number): OptionSpec =>
  one(
    keyword,
    key,
    `a whole number from ${min} to ${max}`,
    (v) => parseScaledIntInRange(keyword, v, min, max),
    String,
  );

/** DRBD values in tenths of a second, kept as milliseconds. */
const tenths = (keyword: string, key: SettingKey, min: number, max: number): OptionSpec =>
  one(
    keyword,
    key,
    `a whole number from ${min} to ${max} (unit 0.1 s)`,
    (v) => parseScaledIntInRange(keyword, v, min, max, 'unit 0.1 s') * 100,
    (ms) => String((ms as number) / 100),
  );

/** DRBD values in seconds; `toMs` says whether the typed field is milliseconds. */
const seconds = (
  keyword: string,
  key: SettingKey,
  min: number,
  max: number,
  toMs: boolean,
): OptionSpec =>
  one(
    keyword,
    key,
    `a whole number of seconds from ${min} to ${max}`,
    (v) => parseScaledIntInRange(keyword, v, min, max, 'unit 1 s') * (toMs ? 1000 : 1),
    (v) => String((v as number) / (toMs ? 1000 : 1)),
  );

const rate = (keyword: string, key: SettingKey, minKiB: number, maxKiB: number): OptionSpec =>
  one(
    keyword,
    key,
    'a rate such as 100M (bare numbers are KiB/s)',
    (v) => parseRateKiB(keyword, v, minKiB, maxKiB),
    (v) => formatRateKiB(v as number),
  );

const sectors = (keyword: string, key: SettingKey, min: number, max: number): OptionSpec =>
  one(
    keyword,
    key,
    'a size such as 1M (bare numbers are 512-byte sectors)',
    (v) => parseSectors(keyword, v, min, max),
    String,
  );

/** drbd.conf 8.3 wrote flags bare (`allow-two-primaries;`); 8.4 added yes/no. Both mean the same. */
const bool = (keyword: string, key: SettingKey): OptionSpec => ({
  kind: 'option',
  keyword,
  key,
  minArgs: 0,
  maxArgs: 1,
  expect: 'yes or no',
  parse: (args) => (args.length === 0 ? true : parseBoolean(keyword, args[0])),
  format: (v) => (v ? 'yes' : 'no'),
});

function enumError(keyword: string, values: readonly string[], text: string): ValueError {
  return new ValueError(
    `${keyword} must be ${oneOf(values)}, not ${JSON.stringify(text)}${didYouMean(text, values)}`,
  );
}

const choice = (keyword: string, key: SettingKey, values: readonly string[]): OptionSpec =>
  one(
    keyword,
    key,
    oneOf(values),
    (v) => {
      if (!values.includes(v)) throw enumError(keyword, values, v);
      return v;
    },
    String,
  );

const text = (
  keyword: string,
  key: SettingKey,
  expect: string,
  maxLength = Infinity,
  format: (v: unknown) => string = quoteIfNeeded,
): OptionSpec =>
  one(
    keyword,
    key,
    expect,
    (v) => {
      if (v.length === 0) throw new ValueError(`${keyword} must not be empty`);
      if (v.length > maxLength) {
        throw new ValueError(`${keyword} must be at most ${maxLength} characters long`);
      }
      return v;
    },
    format,
  );

const ignored = (...keywords: string[]): IgnoredSpec[] =>
  keywords.map((keyword) => ({ kind: 'ignored', keyword }));

/** Writes a value as a bare word when the lexer would read it back unchanged, else quoted. */
export function quoteIfNeeded(value: unknown): string {
  const s = String(value);
  return /^[^\s{};"#\\]+$/.test(s) ? s : quote(s);
}

export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

const PROTOCOLS = ['A', 'B', 'C'];

export const AFTER_SB_0PRI = [
  'disconnect',
  'discard-younger-primary',
  'discard-older-primary',
  'discard-zero-changes',
  'discard-least-changes',
  'discard-node-NAME',
];
export const AFTER_SB_1PRI = [
  'disconnect',
  'consensus',
  'discard-secondary',
  'call-pri-lost-after-sb',
  'violently-as0p',
];
export const AFTER_SB_2PRI = ['disconnect', 'call-pri-lost-after-sb', 'violently-as0p'];

const afterSb0pri = one(
  'after-sb-0pri',
  'net.afterSb0pri',
  oneOf(AFTER_SB_0PRI),
  (v) => {
    // The host named in discard-node-NAME is checked once the resource's hosts are known.
    if (/^discard-node-./.test(v)) return v;
    if (!AFTER_SB_0PRI.includes(v) || v === 'discard-node-NAME') {
      throw enumError('after-sb-0pri', AFTER_SB_0PRI, v);
    }
    return v;
  },
  String,
);

const QUORUM_MAX = 32;

function quorumSpec(keyword: string, key: SettingKey): OptionSpec {
  const expect = `off, majority, all or a number of nodes from 1 to ${QUORUM_MAX}`;
  return one(
    keyword,
    key,
    expect,
    (v): Quorum => {
      if (v === 'off' || v === 'majority' || v === 'all') return v;
      const n = parseScaledNumber(v);
      if (n === undefined || n < 1 || n > QUORUM_MAX) {
        throw new ValueError(`${keyword} must be ${expect}, not ${JSON.stringify(v)}`);
      }
      return n;
    },
    String,
  );
}

const fencing = choice('fencing', 'net.fencing', [
  'dont-care',
  'resource-only',
  'resource-and-stonith',
]);
const maxBuffers = int('max-buffers', 'net.maxBuffers', 32, 131072);
const AL_EXTENTS_MIN = 7;
const AL_EXTENTS_MAX = 65534;
const alExtents = int('al-extents', 'disk.alExtents', AL_EXTENTS_MIN, AL_EXTENTS_MAX);
const resyncRate = (keyword: string): OptionSpec => rate(keyword, 'disk.resyncRateKiB', 1, 8 << 20);
const resyncAfter = (keyword: string): OptionSpec =>
  one(
    keyword,
    'disk.resyncAfter',
    'a resource name',
    // DRBD 9 writes resync-after r0/0 (resource/volume); urbd has one volume per resource.
    (v) => v.replace(/\/[0-9]+$/, ''),
    String,
  );
const cPlanAhead = tenths('c-plan-ahead', 'disk.cPlanAheadMs', 0, 300);
const cDelayTarget = tenths('c-delay-target', 'disk.cDelayTargetMs', 1, 100);
const cFillTarget = sectors('c-fill-target', 'disk.cFillTargetSectors', 0, 1 << 20);
const cMaxRate = rate('c-max-rate', 'disk.cMaxRateKiB', 250, 4 << 20);
const cMinRate = rate('c-min-rate', 'disk.cMinRateKiB', 0, 4 << 20);
const alg = (keyword: string, key: SettingKey): OptionSpec =>
  text(keyword, key, 'an algorithm name such as sha256');
const useRle = bool('use-rle', 'net.useRle');
const onNoDataAccessible = choice('on-no-data-accessible', 'options.onNoDataAccessible', [
  'io-error',
  'suspend-io',
]);

/** DRBD's limit on the disk size: 1 PiB. */
const MAX_SIZE_BYTES = 2 ** 50;

const NET: Spec[] = [
  choice('protocol', 'top.protocol', PROTOCOLS),
  tenths('timeout', 'net.timeoutMs', 1, 600),
  seconds('connect-int', 'net.connectIntMs', 1, 120, true),
  seconds('ping-int', 'net.pingIntMs', 1, 120, true),
  tenths('ping-timeout', 'net.pingTimeoutMs', 1, 300),
  int('ko-count', 'net.koCount', 0, 200),
  maxBuffers,
  int('max-epoch-size', 'net.maxEpochSize', 1, 20000),
  bool('allow-two-primaries', 'net.allowTwoPrimaries'),
  afterSb0pri,
  choice('after-sb-1pri', 'net.afterSb1pri', AFTER_SB_1PRI),
  choice('after-sb-2pri', 'net.afterSb2pri', AFTER_SB_2PRI),
  bool('always-asbp', 'net.alwaysAsbp'),
  choice('rr-conflict', 'net.rrConflict', [
    'disconnect',
    'call-pri-lost',
    'violently',
    'retry-connect',
    'auto-discard',
  ]),
  alg('cram-hmac-alg', 'net.cramHmacAlg'),
  // drbd.md §1.3: the secret is at most 64 characters.
  text('shared-secret', 'net.sharedSecret', 'a secret of at most 64 characters', 64, (v) =>
    quote(String(v)),
  ),
  alg('data-integrity-alg', 'net.dataIntegrityAlg'),
  alg('csums-alg', 'net.csumsAlg'),
  bool('csums-after-crash-only', 'net.csumsAfterCrashOnly'),
  alg('verify-alg', 'net.verifyAlg'),
  useRle,
  choice('on-congestion', 'net.onCongestion', ['block', 'pull-ahead', 'disconnect']),
  sectors('congestion-fill', 'net.congestionFillSectors', 0, 10 << 21),
  int('congestion-extents', 'net.congestionExtents', AL_EXTENTS_MIN, AL_EXTENTS_MAX),
  tenths('socket-check-timeout', 'net.socketCheckTimeoutMs', 0, 300),
  fencing,
  bool('discard-my-data', 'net.discardMyData'),
  ...ignored(
    'sndbuf-size',
    'rcvbuf-size',
    'tcp-cork',
    'no-tcp-cork',
    'unplug-watermark',
    'load-balance-paths',
    'allow-remote-read',
    'rdma-ctrl-rcvbuf-size',
    'rdma-ctrl-sndbuf-size',
    'tls-keyring',
    'tls-privkey',
    'tls-certificate',
  ),
  {
    kind: 'ignored',
    keyword: 'transport',
    reject: (args) =>
      args.length === 1 && args[0] === 'tcp'
        ? undefined
        : `transport ${JSON.stringify(args.join(' '))} is not supported by urbd; only tcp`,
  },
  {
    // Ignoring "tls yes" would leave replication traffic unencrypted while the admin thinks otherwise.
    kind: 'ignored',
    keyword: 'tls',
    reject: (args) =>
      args.length === 1 && args[0] === 'no'
        ? undefined
        : 'tls is not supported by urbd: replication traffic is not encrypted; use a private network or a VPN',
  },
];

const DISK: Spec[] = [
  one(
    'size',
    'disk.sizeBytes',
    'a size such as 10G (bare numbers are 512-byte sectors)',
    // DRBD's size 0 means "no explicit size", the same as leaving it out.
    (v) => parseSizeBytes('size', v, MAX_SIZE_BYTES) || undefined,
    (v) => formatBytes(v as number),
  ),
  choice('on-io-error', 'disk.onIoError', ['detach', 'pass_on', 'call-local-io-error']),
  fencing,
  alExtents,
  bool('al-updates', 'disk.alUpdates'),
  resyncRate('resync-rate'),
  resyncAfter('resync-after'),
  cPlanAhead,
  cDelayTarget,
  cFillTarget,
  cMaxRate,
  cMinRate,
  // A net option in 8.4, a peer-device (disk section) option in 9.1+.
  maxBuffers,
  ...ignored(
    'disk-barrier',
    'disk-flushes',
    'disk-drain',
    'md-flushes',
    'no-disk-barrier',
    'no-disk-flushes',
    'no-disk-drain',
    'no-md-flushes',
    'disk-timeout',
    'read-balancing',
    'rs-discard-granularity',
    'discard-zeroes-if-aligned',
    'disable-write-same',
    'max-bio-bvecs',
    'use-bmbv',
    'unplug-watermark',
    'bitmap',
    'block-size',
    'discard-granularity',
    'resync-without-replication',
    'peer-tiebreaker',
  ),
];

/** DRBD 8.3's syncer section; drbdadm 8.4 still reads it and moves each option to its new home. */
const SYNCER: Spec[] = [
  resyncRate('rate'),
  resyncAfter('after'),
  alExtents,
  cPlanAhead,
  cDelayTarget,
  cFillTarget,
  cMaxRate,
  cMinRate,
  useRle,
  alg('verify-alg', 'net.verifyAlg'),
  alg('csums-alg', 'net.csumsAlg'),
  onNoDataAccessible,
  ...ignored(
    'cpu-mask',
    'delay-probe-volume',
    'delay-probe-interval',
    'throttle-threshold',
    'hold-off-threshold',
  ),
];

const OPTIONS: Spec[] = [
  onNoDataAccessible,
  bool('auto-promote', 'options.autoPromote'),
  tenths('auto-promote-timeout', 'options.autoPromoteTimeoutMs', 0, 600),
  quorumSpec('quorum', 'options.quorum'),
  quorumSpec('quorum-minimum-redundancy', 'options.quorumMinimumRedundancy'),
  choice('on-no-quorum', 'options.onNoQuorum', ['io-error', 'suspend-io']),
  choice('on-suspended-primary-outdated', 'options.onSuspendedPrimaryOutdated', [
    'disconnect',
    'force-secondary',
  ]),
  // A urbd extension, not in DRBD (whose kernel waits for a helper without limit): how long a
  // handler script may run before urbd kills it and its children and counts it as failed.
  seconds('handler-timeout', 'options.handlerTimeoutMs', 1, 3600, true),
  ...ignored(
    'cpu-mask',
    'peer-ack-window',
    'peer-ack-delay',
    'twopc-timeout',
    'twopc-retry-timeout',
    'max-io-depth',
    'nr-requests',
    'quorum-dynamic-voters',
  ),
];

const STARTUP: Spec[] = [
  seconds('wfc-timeout', 'startup.wfcTimeoutS', 0, 300000, false),
  seconds('degr-wfc-timeout', 'startup.degrWfcTimeoutS', 0, 300000, false),
  seconds('outdated-wfc-timeout', 'startup.outdatedWfcTimeoutS', 0, 300000, false),
  bool('wait-after-sb', 'startup.waitAfterSb'),
  {
    kind: 'option',
    keyword: 'become-primary-on',
    key: 'startup.becomePrimaryOn',
    minArgs: 1,
    maxArgs: Infinity,
    expect: 'host names or both',
    // Names are checked against the resource's hosts once those are known.
    parse: (args) => [...args],
    format: (v) => (v as string[]).map(quoteIfNeeded).join(' '),
  },
  ...ignored('stacked-timeouts'),
];

/** Everything in `global` is about the DRBD installation, not about data: none of it applies. */
const GLOBAL: Spec[] = ignored(
  'usage-count',
  'minor-count',
  'dialog-refresh',
  'disable-ip-verification',
  'udev-always-use-vnr',
  'cmd-timeout-short',
  'cmd-timeout-medium',
  'cmd-timeout-long',
);

function table(specs: Spec[]): Map<string, Spec> {
  return new Map(specs.map((s) => [s.keyword, s]));
}

export const SECTIONS: Record<OptionSection, Map<string, Spec>> = {
  net: table(NET),
  disk: table(DISK),
  startup: table(STARTUP),
  options: table(OPTIONS),
  syncer: table(SYNCER),
  global: table(GLOBAL),
};

/** drbd.md §1.1: the helpers drbdadm knows, plus DRBD 9's quorum-lost and disconnected. */
export const HANDLER_NAMES = [
  'before-resync-target',
  'after-resync-target',
  'before-resync-source',
  'pri-on-incon-degr',
  'pri-lost-after-sb',
  'fence-peer',
  'unfence-peer',
  'local-io-error',
  'pri-lost',
  'initial-split-brain',
  'split-brain',
  'out-of-sync',
  'quorum-lost',
  'disconnected',
] as const;

export type HandlerName = (typeof HANDLER_NAMES)[number];

export const HANDLERS: string[] = [...HANDLER_NAMES];

/** Handler names drbdadm still reads under their old spelling. */
export const HANDLER_ALIASES: Readonly<Record<string, string>> = { 'outdate-peer': 'fence-peer' };

/** The section each option is written back into by `dump`: its modern (DRBD 9) home. */
export const DUMP_SECTIONS: ReadonlyArray<{
  section: 'net' | 'disk' | 'startup' | 'options';
  specs: OptionSpec[];
}> = (() => {
  const seen = new Set<SettingKey>();
  return (['net', 'disk', 'startup', 'options'] as const).map((section) => {
    const specs: OptionSpec[] = [];
    for (const spec of SECTIONS[section].values()) {
      if (spec.kind !== 'option' || seen.has(spec.key)) continue;
      seen.add(spec.key);
      specs.push(spec);
    }
    return { section, specs };
  });
})();

export interface TypedOptions {
  protocol: Protocol;
  net: NetOptions;
  disk: DiskOptions;
  startup: StartupOptions;
  options: ResourceOptions;
}

/**
 * DRBD's defaults (drbd_limits.h), except the resync rates. DRBD's 250 KiB/s resync-rate and
 * c-min-rate and its 100 MiB/s c-max-rate date from 100 Mbit links and make a resync of today's
 * disks take days or starve it under load (drbd.md §6.4, §12 item 5); urbd runs on LANs of 1 Gbit/s
 * and up, so it resyncs at 100 MiB/s when fixed-rate, keeps at least 10 MiB/s under application I/O,
 * and lets the dynamic controller run an idle link at full speed (c-max-rate at its 4 GiB/s
 * maximum: a cap of 1 GiB/s held a 1 GiB full sync on this project's machine under what the link
 * and the disk do).
 */
export function defaults(): TypedOptions {
  return {
    protocol: 'C',
    net: {
      timeoutMs: 6000,
      connectIntMs: 10000,
      pingIntMs: 10000,
      pingTimeoutMs: 500,
      koCount: 7,
      maxBuffers: 2048,
      maxEpochSize: 2048,
      allowTwoPrimaries: false,
      afterSb0pri: 'disconnect',
      afterSb1pri: 'disconnect',
      afterSb2pri: 'disconnect',
      alwaysAsbp: false,
      rrConflict: 'disconnect',
      csumsAfterCrashOnly: false,
      useRle: true,
      onCongestion: 'block',
      congestionFillSectors: 0,
      congestionExtents: 1237,
      socketCheckTimeoutMs: 0,
      fencing: 'dont-care',
      discardMyData: false,
    },
    disk: {
      onIoError: 'detach',
      alExtents: 1237,
      alUpdates: true,
      resyncRateKiB: 100 * 1024,
      cPlanAheadMs: 2000,
      cFillTargetSectors: 100,
      cDelayTargetMs: 1000,
      cMaxRateKiB: 4 * 1024 * 1024,
      cMinRateKiB: 10 * 1024,
    },
    startup: {
      wfcTimeoutS: 0,
      degrWfcTimeoutS: 0,
      outdatedWfcTimeoutS: 0,
      waitAfterSb: false,
      becomePrimaryOn: [],
    },
    options: {
      onNoDataAccessible: 'io-error',
      autoPromote: true,
      autoPromoteTimeoutMs: 2000,
      quorum: 'off',
      quorumMinimumRedundancy: 'off',
      onNoQuorum: 'suspend-io',
      onSuspendedPrimaryOutdated: 'disconnect',
      handlerTimeoutMs: 60_000,
    },
  };
}
