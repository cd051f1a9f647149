/**
 * What `adjust` (and net-options / disk-options) may change on a resource that is up, and
 * what each change costs: drbdadm adjust's comparison of the running configuration with the
 * file (drbd.md §1.2). Pure: the running and the wanted configuration in, a plan or a
 * one-line refusal naming the option out.
 *
 * Three kinds of option:
 *   - read where they are used (rates, connect-int, fencing, ...): the new value simply
 *     takes effect;
 *   - fixed when a peer session starts (protocol, timeouts, pings, epochs, split-brain
 *     policies, the secret): every peer that is connected or connecting is dropped and
 *     connected again, so the new session is built with them (and the handshake checks the
 *     ones both nodes must agree on);
 *   - fixed while the resource is up or its disk attached (node ids, disk, meta-disk,
 *     device, size, activity-log shape, NBD listeners, the set of hosts): refused.
 */
import { DUMP_SECTIONS, type SettingKey } from '../config/schema.js';
import type { HostConfig, ResourceConfig } from '../config/types.js';
import { addressKey } from '../config/values.js';

export interface RunningConfig {
  config: ResourceConfig;
  /** This node's `on` section. */
  host: HostConfig;
}

export interface OptionChange {
  /** The drbd.conf keyword, e.g. "ping-int". */
  keyword: string;
  /** Values as drbd.conf writes them. */
  from: string;
  to: string;
  /** Whether connected peers are reconnected for it. */
  reconnect: boolean;
}

export interface ChangePlan {
  changes: OptionChange[];
  /** Peers to drop and connect again, each with the reason (first change that needs it). */
  reconnect: Array<{ peer: string; why: string }>;
}

export interface Refused {
  refused: string;
}

/** Options a peer session is built with (link timers, transfer log, handshake, identity). */
const SESSION_KEYS: ReadonlySet<SettingKey> = new Set<SettingKey>([
  'top.protocol',
  'net.timeoutMs',
  'net.pingIntMs',
  'net.pingTimeoutMs',
  'net.koCount',
  'net.maxEpochSize',
  'net.allowTwoPrimaries',
  'net.afterSb0pri',
  'net.afterSb1pri',
  'net.afterSb2pri',
  'net.alwaysAsbp',
  'net.cramHmacAlg',
  'net.sharedSecret',
]);

/** Options fixed by the metadata the attached disk was opened with. */
const ATTACHED_KEYS: ReadonlySet<SettingKey> = new Set<SettingKey>([
  'disk.alExtents',
  'disk.alUpdates',
]);

/** Options the device was sized with: changing them is an online resize, not built yet. */
const UP_KEYS: ReadonlySet<SettingKey> = new Set<SettingKey>(['disk.sizeBytes']);

function valueOf(res: ResourceConfig, key: SettingKey): unknown {
  const [group, field] = key.split('.') as [string, string];
  if (group === 'top') return (res as unknown as Record<string, unknown>)[field];
  return (res as unknown as Record<string, Record<string, unknown>>)[group]![field];
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function shown(v: unknown, format: (v: unknown) => string): string {
  return v === undefined || (Array.isArray(v) && v.length === 0) ? '(unset)' : format(v);
}

/** "a → b" for a refusal message; secrets are never echoed. */
function fromTo(keyword: string, from: string, to: string): string {
  return keyword === 'shared-secret' ? '' : ` (${from} → ${to})`;
}

/**
 * Compares the running configuration with the wanted one. `attached`: the resource has its
 * disk attached now (the activity-log options are then fixed too).
 */
export function planChanges(
  running: RunningConfig,
  wanted: RunningConfig,
  attached: boolean,
): ChangePlan | Refused {
  const res = running.config.name;
  const fixed = (what: string, from: string, to: string): Refused => ({
    refused: `${what} cannot change while ${res} is up${fromTo(what, from, to)}; urbdadm down ${res}, then up, to apply it`,
  });

  const hostRefusal = checkHosts(running, wanted, fixed);
  if (hostRefusal) return hostRefusal;

  const changes: OptionChange[] = [];
  for (const { specs } of DUMP_SECTIONS) {
    for (const spec of specs) {
      const a = valueOf(running.config, spec.key);
      const b = valueOf(wanted.config, spec.key);
      if (same(a, b)) continue;
      const from = shown(a, (v) => spec.format(v));
      const to = shown(b, (v) => spec.format(v));
      if (UP_KEYS.has(spec.key)) return fixed(spec.keyword, from, to);
      if (attached && ATTACHED_KEYS.has(spec.key)) {
        return {
          refused: `${spec.keyword} cannot change while the disk of ${res} is attached${fromTo(spec.keyword, from, to)}; detach and attach to apply it`,
        };
      }
      changes.push({ keyword: spec.keyword, from, to, reconnect: SESSION_KEYS.has(spec.key) });
    }
  }
  for (const name of new Set([
    ...Object.keys(running.config.handlers),
    ...Object.keys(wanted.config.handlers),
  ])) {
    const a = running.config.handlers[name];
    const b = wanted.config.handlers[name];
    if (a === b) continue;
    changes.push({
      keyword: `handler ${name}`,
      from: a ?? '(unset)',
      to: b ?? '(unset)',
      reconnect: false,
    });
  }

  const reconnect: ChangePlan['reconnect'] = [];
  const peers = running.config.hosts.filter((h) => h.name !== running.host.name);
  const sessionChange = changes.find((c) => c.reconnect);
  const ownAddress = addressChange(running.host, wanted.host);
  for (const p of peers) {
    const next = wanted.config.hosts.find((h) => h.name === p.name)!;
    const peerAddress = addressChange(p, next);
    if (peerAddress) {
      changes.push({ keyword: `address of ${p.name}`, ...peerAddress, reconnect: true });
    }
    const why = peerAddress
      ? `address of ${p.name} changed`
      : ownAddress
        ? `address of ${running.host.name} changed`
        : sessionChange
          ? `${sessionChange.keyword} changed`
          : undefined;
    if (why !== undefined) reconnect.push({ peer: p.name, why });
  }
  if (ownAddress) {
    changes.push({ keyword: `address of ${running.host.name}`, ...ownAddress, reconnect: true });
  }
  return { changes, reconnect };
}

function addressChange(a: HostConfig, b: HostConfig): { from: string; to: string } | undefined {
  if (same(a.address, b.address)) return undefined;
  const f = (h: HostConfig): string => (h.address ? addressKey(h.address) : '(unset)');
  return { from: f(a), to: f(b) };
}

/** The `on` sections: the same hosts, each with the same identity and storage. */
function checkHosts(
  running: RunningConfig,
  wanted: RunningConfig,
  fixed: (what: string, from: string, to: string) => Refused,
): Refused | undefined {
  const names = (c: RunningConfig): string =>
    c.config.hosts
      .map((h) => h.name)
      .sort()
      .join(', ');
  if (names(running) !== names(wanted)) {
    return fixed('the set of hosts', names(running), names(wanted));
  }
  for (const a of running.config.hosts) {
    const b = wanted.config.hosts.find((h) => h.name === a.name)!;
    const fields: Array<[string, unknown, unknown, (v: unknown) => string]> = [
      ['node-id', a.nodeId, b.nodeId, String],
      ['device', a.device, b.device, (v) => (v as HostConfig['device']).path],
    ];
    if (a.name === running.host.name) {
      fields.push(
        ['disk', a.disk, b.disk, String],
        ['meta-disk', [a.metaDisk, a.metaDiskIndex], [b.metaDisk, b.metaDiskIndex], metaText],
        ['nbd-listen', a.nbdListen, b.nbdListen, listenText],
      );
    }
    for (const [what, x, y, fmt] of fields) {
      if (same(x, y)) continue;
      return fixed(`${what} of ${a.name}`, shown(x, fmt), shown(y, fmt));
    }
  }
  return undefined;
}

function metaText(v: unknown): string {
  const [path, index] = v as [string | undefined, number | undefined];
  return `${path ?? '(none)'}${index === undefined ? '' : ` [${index}]`}`;
}

function listenText(v: unknown): string {
  return (v as HostConfig['nbdListen']).map(addressKey).join(' ');
}

/** The plan as lines for `adjust --dry-run` (and the daemon's log). */
export function describePlan(res: string, plan: ChangePlan): string[] {
  if (plan.changes.length === 0) return [];
  const lines = plan.changes.map(
    (c) =>
      `${res}: ${c.keyword} ${c.keyword === 'shared-secret' ? 'changed' : `${c.from} → ${c.to}`}`,
  );
  for (const r of plan.reconnect) lines.push(`${res}: reconnect to ${r.peer} (${r.why})`);
  return lines;
}
