// The `failover { }` section: what urbd-failover runs on the node that holds the resource,
// in order (promote → attach → mount → services → addresses; stop is the reverse), and its
// policy. It may appear at resource level and inside `on HOST` (per-node values: mount
// points, service commands); docs/failover.md has the grammar. urbd itself ignores it, but
// reads it with the rest of the file, so a broken section is reported at file:line by every
// tool, and `urbdadm dump` shows it.
import { errorAt, q } from './errors.js';
import type { Token } from './lexer.js';
import { quote, quoteIfNeeded } from './schema.js';
import { convert, requireValues, unknownKeyword } from './sections.js';
import type { Statement } from './syntax.js';
import type { Pos } from './types.js';
import { parseBoolean, parseIntInRange } from './values.js';

export type AttachMethod = 'auto' | 'nbd-client' | 'nbdfuse';

export interface ServiceConfig {
  /** The systemd unit (`service mariadb;` → mariadb.service), or a name for commands. */
  name: string;
  /** Set for a command service: `service NAME { start "…"; stop "…"; monitor "…"; }`. */
  commands?: { start: string; stop: string; monitor: string };
  timeoutMs: number;
}

export interface MountConfig {
  dir: string;
  fstype: string;
  /** mount -o; empty for the defaults. */
  options: string;
  /** Run the filesystem's own preen check (e2fsck -p) before mounting; ext2/3/4 only. */
  fsck: boolean;
  timeoutMs: number;
}

export interface AddressConfig {
  /** ADDRESS/PREFIX, IPv4 or IPv6. */
  cidr: string;
  dev: string;
  timeoutMs: number;
}

export type StopFailure =
  { action: 'exit' } | { action: 'block' } | { action: 'fence'; command: string };

/** One node's failover chain and policy: the resource-level section with its `on HOST` one applied. */
export interface FailoverConfig {
  attach: { method: AttachMethod; device?: string; timeoutMs: number };
  mount?: MountConfig;
  services: ServiceConfig[];
  addresses: AddressConfig[];
  promoteTimeoutMs: number;
  monitorIntervalMs: number;
  /** Failed monitors (within failureTimeoutMs) restarted in place before the node gives up. */
  migrationThreshold: number;
  failureTimeoutMs: number;
  /** A node takes the resource over at most once within this interval. */
  minFailoverIntervalMs: number;
  /** Who goes first when several nodes may promote; the others wait promoteDelayMs each. */
  preferredNodes: string[];
  promoteDelayMs: number;
  /** Move back to a more preferred node once it is UpToDate again (default no). */
  failback: boolean;
  /** Promote without quorum, relying on the fence-peer handler (two data nodes, no tiebreaker). */
  twoNode: boolean;
  onStopFailure: StopFailure;
}

/** What one `failover { }` section says; the resource's and a host's are merged per node. */
export interface FailoverPart {
  source: Pos;
  settings: Partial<Omit<FailoverConfig, 'services' | 'addresses' | 'mount'>>;
  mount?: MountConfig;
  services: ServiceConfig[];
  /** Given: replaces the resource-level list. */
  addresses?: AddressConfig[];
}

export interface FailoverSections {
  resource?: FailoverPart;
  /** Host name → that host's own section. */
  hosts: Record<string, FailoverPart>;
}

export const FAILOVER_DEFAULTS: Omit<FailoverConfig, 'services' | 'addresses' | 'mount'> = {
  attach: { method: 'auto', timeoutMs: 30_000 },
  promoteTimeoutMs: 30_000,
  monitorIntervalMs: 5_000,
  migrationThreshold: 3,
  failureTimeoutMs: 600_000,
  minFailoverIntervalMs: 20_000,
  preferredNodes: [],
  promoteDelayMs: 2_000,
  failback: false,
  twoNode: false,
  onStopFailure: { action: 'exit' },
};

const STEP_TIMEOUT = { mount: 60_000, service: 90_000, address: 10_000 };
const KEYWORDS = [
  'attach',
  'mount',
  'service',
  'address',
  'promote-timeout',
  'monitor-interval',
  'migration-threshold',
  'failure-timeout',
  'min-failover-interval',
  'preferred-nodes',
  'promote-delay',
  'failback',
  'two-node',
  'on-stop-failure',
];
const DAY_S = 86_400;

function pos(tok: Token): Pos {
  return { file: tok.file, line: tok.line, col: tok.col };
}

function seconds(s: Statement, min: number, max: number): number {
  requireValues(s, 1, 1, `seconds, ${min} to ${max}`);
  return convert(s, ([v]) => parseIntInRange(s.keyword.text, v, min, max)) * 1000;
}

/** The `{ timeout N; }` block a step may carry (a service block also holds its commands). */
function readStepBlock(
  s: Statement,
  defaultMs: number,
  extra: (b: Statement) => boolean = () => false,
  extraWords: string[] = [],
): number {
  let timeoutMs = defaultMs;
  for (const b of s.block ?? []) {
    if (b.keyword.text === 'timeout') timeoutMs = seconds(b, 1, DAY_S);
    else if (!extra(b)) {
      throw unknownKeyword(b.keyword, `${s.keyword.text} section`, ['timeout', ...extraWords]);
    }
  }
  return timeoutMs;
}

function readAttach(s: Statement): FailoverConfig['attach'] {
  const args = s.args;
  if (args.length === 0)
    throw errorAt(s.terminator, 'expected auto, nbd-client or nbdfuse after "attach"');
  const method = args[0].text;
  if (method !== 'auto' && method !== 'nbd-client' && method !== 'nbdfuse') {
    throw errorAt(
      args[0],
      `attach takes auto, nbd-client [/dev/nbdN] or nbdfuse, not ${q(method)}`,
    );
  }
  let device: string | undefined;
  if (args.length > 1) {
    if (method !== 'nbd-client') throw errorAt(args[1], `only "attach nbd-client" takes a device`);
    if (!/^\/dev\/nbd[0-9]+$/.test(args[1].text)) {
      throw errorAt(args[1], `expected an nbd device such as /dev/nbd0, not ${q(args[1].text)}`);
    }
    device = args[1].text;
  }
  if (args.length > 2)
    throw errorAt(args[2], `expected ";" after ${q(`attach ${method} ${device}`)}`);
  const timeoutMs = readStepBlock(s, FAILOVER_DEFAULTS.attach.timeoutMs);
  return { method, ...(device !== undefined ? { device } : {}), timeoutMs };
}

function readMount(s: Statement): MountConfig {
  const args = s.args;
  if (args.length === 0) throw errorAt(s.terminator, 'expected a directory after "mount"');
  if (args.length > 3)
    throw errorAt(args[3], 'mount takes DIR [FSTYPE [OPTIONS]]; expected ";" or "{"');
  const dir = args[0].text;
  if (!dir.startsWith('/') || dir === '/') {
    throw errorAt(args[0], `mount needs an absolute directory other than /, not ${q(dir)}`);
  }
  const fstype = args[1]?.text ?? 'ext4';
  if (!/^[a-z0-9.]+$/.test(fstype)) throw errorAt(args[1], `not a filesystem type: ${q(fstype)}`);
  let fsck = /^ext[234]$/.test(fstype);
  const timeoutMs = readStepBlock(
    s,
    STEP_TIMEOUT.mount,
    (b) => {
      if (b.keyword.text !== 'fsck') return false;
      requireValues(b, 1, 1, 'yes or no');
      fsck = convert(b, ([v]) => parseBoolean('fsck', v));
      if (fsck && !/^ext[234]$/.test(fstype)) {
        throw errorAt(
          b.args[0],
          `fsck yes is for ext2/3/4 (e2fsck -p); ${fstype} checks itself at mount`,
        );
      }
      return true;
    },
    ['fsck'],
  );
  return { dir, fstype, options: args[2]?.text ?? '', fsck, timeoutMs };
}

const UNIT = /^[A-Za-z0-9:_.@\\-]+$/;

function readService(s: Statement): ServiceConfig {
  const args = s.args;
  if (args.length === 0)
    throw errorAt(s.terminator, 'expected a systemd unit or a name after "service"');
  if (args.length > 1)
    throw errorAt(args[1], `expected ";" or "{" after ${q(`service ${args[0].text}`)}`);
  const name = args[0].text;
  if (!UNIT.test(name)) throw errorAt(args[0], `not a unit or service name: ${q(name)}`);
  const cmds: Record<string, string> = {};
  const timeoutMs = readStepBlock(
    s,
    STEP_TIMEOUT.service,
    (b) => {
      const kw = b.keyword.text;
      if (kw !== 'start' && kw !== 'stop' && kw !== 'monitor') return false;
      requireValues(b, 1, 1, 'a shell command in quotes');
      cmds[kw] = b.args[0].text;
      return true;
    },
    ['start', 'stop', 'monitor'],
  );
  const given = Object.keys(cmds);
  if (given.length > 0 && given.length < 3) {
    const missing = ['start', 'stop', 'monitor'].filter((k) => !(k in cmds));
    throw errorAt(
      s.keyword,
      `service ${name} gives ${given.join(', ')} but not ${missing.join(', ')}: a command service needs start, stop and monitor (or none, for a systemd unit)`,
    );
  }
  return {
    name,
    ...(given.length === 3
      ? { commands: { start: cmds.start, stop: cmds.stop, monitor: cmds.monitor } }
      : {}),
    timeoutMs,
  };
}

function readAddress(s: Statement): AddressConfig {
  const args = s.args;
  const cidr = args[0]?.text;
  if (cidr === undefined)
    throw errorAt(s.terminator, 'expected ADDRESS/PREFIX dev IFACE after "address"');
  const m = /^([0-9.]+|[0-9a-fA-F:]+)\/([0-9]{1,3})$/.exec(cidr);
  if (m === null || Number(m[2]) > (m[1].includes(':') ? 128 : 32)) {
    throw errorAt(args[0], `expected ADDRESS/PREFIX such as 10.0.0.100/24, not ${q(cidr)}`);
  }
  if (args[1]?.text !== 'dev' || args[2] === undefined) {
    throw errorAt(args[1] ?? s.terminator, `expected "dev IFACE" after ${q(`address ${cidr}`)}`);
  }
  if (args.length > 3)
    throw errorAt(args[3], `expected ";" after ${q(`address ${cidr} dev ${args[2].text}`)}`);
  return { cidr, dev: args[2].text, timeoutMs: readStepBlock(s, STEP_TIMEOUT.address) };
}

function readStopFailure(s: Statement): StopFailure {
  const a = s.args;
  const what = a[0]?.text;
  if (what === 'exit' || what === 'block') {
    requireValues(s, 1, 1, 'exit, block or fence "COMMAND"');
    return { action: what };
  }
  if (what === 'fence') {
    requireValues(s, 2, 2, 'fence "COMMAND"');
    return { action: 'fence', command: a[1].text };
  }
  throw errorAt(
    a[0] ?? s.terminator,
    `on-stop-failure takes exit, block or fence "COMMAND"${what ? `, not ${q(what)}` : ''}`,
  );
}

/** Reads one `failover { }` section; `hosts` are the resource's host names (for preferred-nodes). */
export function readFailover(s: Statement, hosts: readonly string[]): FailoverPart {
  if (s.args.length > 0) throw errorAt(s.args[0], 'expected "{" after "failover"');
  if (s.block === undefined) throw errorAt(s.terminator, 'expected "{" after "failover"');
  const part: FailoverPart = { source: pos(s.keyword), settings: {}, services: [] };
  const set = part.settings;
  const seen = new Map<string, Token>();
  for (const b of s.block) {
    const kw = b.keyword.text;
    const prev = seen.get(kw);
    if (prev !== undefined && kw !== 'service' && kw !== 'address') {
      throw errorAt(
        b.keyword,
        `${q(kw)} is given twice in this failover section (first at ${prev.line}:${prev.col})`,
      );
    }
    seen.set(kw, b.keyword);
    switch (kw) {
      case 'attach':
        set.attach = readAttach(b);
        break;
      case 'mount':
        part.mount = readMount(b);
        break;
      case 'service': {
        const svc = readService(b);
        if (part.services.some((x) => x.name === svc.name)) {
          throw errorAt(b.args[0], `service ${svc.name} is given twice in this failover section`);
        }
        part.services.push(svc);
        break;
      }
      case 'address':
        (part.addresses ??= []).push(readAddress(b));
        break;
      case 'promote-timeout':
        set.promoteTimeoutMs = seconds(b, 1, DAY_S);
        break;
      case 'monitor-interval':
        set.monitorIntervalMs = seconds(b, 1, 3600);
        break;
      case 'migration-threshold':
        requireValues(b, 1, 1, 'a count, 1 to 1000');
        set.migrationThreshold = convert(b, ([v]) => parseIntInRange(kw, v, 1, 1000));
        break;
      case 'failure-timeout':
        set.failureTimeoutMs = seconds(b, 1, DAY_S);
        break;
      case 'min-failover-interval':
        set.minFailoverIntervalMs = seconds(b, 0, DAY_S);
        break;
      case 'promote-delay':
        set.promoteDelayMs = seconds(b, 0, 600);
        break;
      case 'preferred-nodes': {
        requireValues(b, 1, 32, 'host names of this resource');
        for (const t of b.args) {
          if (!hosts.includes(t.text)) {
            throw errorAt(
              t,
              `preferred-nodes names ${q(t.text)}, which is not a host of this resource (hosts: ${hosts.join(', ')})`,
            );
          }
        }
        set.preferredNodes = b.args.map((t) => t.text);
        break;
      }
      case 'failback':
        requireValues(b, 1, 1, 'yes or no');
        set.failback = convert(b, ([v]) => parseBoolean(kw, v));
        break;
      case 'two-node':
        requireValues(b, 1, 1, 'yes or no');
        set.twoNode = convert(b, ([v]) => parseBoolean(kw, v));
        break;
      case 'on-stop-failure':
        set.onStopFailure = readStopFailure(b);
        break;
      default:
        throw unknownKeyword(b.keyword, 'failover section', KEYWORDS);
    }
  }
  return part;
}

/**
 * The chain and policy for `node`: the host's section over the resource's. A host's
 * `service X` replaces the resource's `service X` where it stands (new names go last), its
 * `mount` replaces the mount, its addresses replace the addresses, its settings win.
 * undefined when neither section exists.
 */
export function failoverFor(
  sections: FailoverSections | undefined,
  node: string,
): FailoverConfig | undefined {
  if (sections === undefined) return undefined;
  const base = sections.resource;
  const own = sections.hosts[node];
  if (base === undefined && own === undefined) return undefined;
  const services = [...(base?.services ?? [])];
  for (const s of own?.services ?? []) {
    const i = services.findIndex((x) => x.name === s.name);
    if (i >= 0) services[i] = s;
    else services.push(s);
  }
  const mount = own?.mount ?? base?.mount;
  return {
    ...FAILOVER_DEFAULTS,
    ...base?.settings,
    ...own?.settings,
    ...(mount !== undefined ? { mount } : {}),
    services,
    addresses: own?.addresses ?? base?.addresses ?? [],
  };
}

/** A section back in resource-file syntax (for dump), indented by `indent`. */
export function formatFailover(
  part: FailoverPart,
  indent: string,
  withDefaults: boolean,
): string[] {
  const I = indent + '    ';
  const s: Partial<FailoverConfig> = withDefaults
    ? { ...FAILOVER_DEFAULTS, ...part.settings }
    : part.settings;
  const lines = [`${indent}failover {`];
  const sec = (ms: number) => String(ms / 1000);
  const block = (timeoutMs: number, dflt: number, inner: string[] = []): string => {
    const body = [
      ...inner,
      ...(timeoutMs !== dflt || withDefaults ? [`timeout ${sec(timeoutMs)};`] : []),
    ];
    return body.length === 0 ? ';' : ` { ${body.join(' ')} }`;
  };
  if (s.attach) {
    const a = s.attach;
    lines.push(
      `${I}attach ${a.method}${a.device ? ` ${a.device}` : ''}${block(a.timeoutMs, FAILOVER_DEFAULTS.attach.timeoutMs)}`,
    );
  }
  if (part.mount) {
    const m = part.mount;
    const fsckDefault = /^ext[234]$/.test(m.fstype);
    const inner = m.fsck !== fsckDefault || withDefaults ? [`fsck ${m.fsck ? 'yes' : 'no'};`] : [];
    const opts = m.options !== '' ? ` ${quote(m.options)}` : '';
    lines.push(
      `${I}mount ${quoteIfNeeded(m.dir)} ${m.fstype}${opts}${block(m.timeoutMs, STEP_TIMEOUT.mount, inner)}`,
    );
  }
  for (const v of part.services) {
    const inner = v.commands
      ? [
          `start ${quote(v.commands.start)};`,
          `stop ${quote(v.commands.stop)};`,
          `monitor ${quote(v.commands.monitor)};`,
        ]
      : [];
    lines.push(`${I}service ${v.name}${block(v.timeoutMs, STEP_TIMEOUT.service, inner)}`);
  }
  for (const a of part.addresses ?? []) {
    lines.push(`${I}address ${a.cidr} dev ${a.dev}${block(a.timeoutMs, STEP_TIMEOUT.address)}`);
  }
  const scalar = (kw: string, v: string | undefined): void => {
    if (v !== undefined) lines.push(`${I}${kw} ${v};`);
  };
  const ms = (v: number | undefined) => (v === undefined ? undefined : sec(v));
  const yn = (v: boolean | undefined) => (v === undefined ? undefined : v ? 'yes' : 'no');
  scalar('promote-timeout', ms(s.promoteTimeoutMs));
  scalar('monitor-interval', ms(s.monitorIntervalMs));
  scalar('migration-threshold', s.migrationThreshold?.toString());
  scalar('failure-timeout', ms(s.failureTimeoutMs));
  scalar('min-failover-interval', ms(s.minFailoverIntervalMs));
  if (s.preferredNodes && s.preferredNodes.length > 0)
    scalar('preferred-nodes', s.preferredNodes.join(' '));
  scalar('promote-delay', ms(s.promoteDelayMs));
  scalar('failback', yn(s.failback));
  scalar('two-node', yn(s.twoNode));
  if (s.onStopFailure) {
    const f = s.onStopFailure;
    scalar('on-stop-failure', f.action === 'fence' ? `fence ${quote(f.command)}` : f.action);
  }
  lines.push(`${indent}}`);
  return lines;
}
