// From raw resources to the typed result: defaults, then `common`, then the resource's own values;
// resource-level device/disk/meta-disk/nbd-listen, then the host's. Checks that need the whole
// resource (hosts named in options, node-ids, addresses) happen here.
import { errorAt, posText, q } from './errors.js';
import { type FailoverSections, readFailover } from './failover.js';
import type { Statement } from './syntax.js';
import { findByHostName } from './hostname.js';
import type { Token } from './lexer.js';
import { defaults, type SettingKey } from './schema.js';
import type { Scope, Setting } from './sections.js';
import type { Field, MetaDiskValue, RawHost, RawResource } from './host.js';
import type { Address, HostConfig, ResourceConfig } from './types.js';
import { hoist } from './overlay.js';
import { addressKey } from './values.js';

/** A host with the positions of the values it ended up with, for checks across resources. */
export interface ResolvedHost {
  config: HostConfig;
  device: Field<unknown>;
  disk: Field<unknown>;
  metaDisk?: Field<unknown>;
  listens: Array<{ address: Address; at: Token; kind: string }>;
}

export interface Resolved {
  config: ResourceConfig;
  hosts: ResolvedHost[];
  /** The settings that produced each typed option, for positions in later checks. */
  settings: Map<string, Setting>;
}

function pos(tok: Token): { file: string; line: number; col: number } {
  return { file: tok.file, line: tok.line, col: tok.col };
}

function resolveHost(raw: RawResource, h: RawHost, many: boolean): ResolvedHost {
  const own = h.fields;
  const base = raw.defaults;
  const where = `host ${q(h.name)} of resource ${raw.name}`;
  const device = own.device ?? base.device;
  if (device === undefined) {
    throw errorAt(
      h.stmt.keyword,
      `${where} has no device; add "device minor N;" to "on ${h.name}" or to the resource`,
    );
  }
  const disk = own.disk ?? base.disk;
  if (disk === undefined) {
    throw errorAt(
      h.stmt.keyword,
      `${where} has no disk; add "disk PATH;" (or "disk none;" for a diskless node) to "on ${h.name}" or to the resource`,
    );
  }
  // DRBD's default is internal meta-data, so an omitted meta-disk means the same here.
  const metaDisk: Field<MetaDiskValue> = own.metaDisk ??
    base.metaDisk ?? { value: { path: 'internal' }, keyword: h.stmt.keyword, args: [] };
  if (own.address === undefined && many) {
    throw errorAt(
      h.stmt.keyword,
      `${where} has no address; with more than one host, every "on" section needs "address IP:PORT;"`,
    );
  }
  const listens = own.nbdListen.length > 0 ? own.nbdListen : base.nbdListen;
  const config: HostConfig = {
    name: h.name,
    device: { ...device.value },
    disk: disk.value,
    nbdListen: listens.map((l) => ({ ...l.value })),
    source: pos(h.stmt.keyword),
  };
  if (own.nodeId !== undefined) config.nodeId = own.nodeId.value;
  if (own.address !== undefined) config.address = { ...own.address.value };
  const diskless = disk.value === 'none';
  if (!diskless) {
    config.metaDisk = metaDisk.value.path;
    if (metaDisk.value.index !== undefined) config.metaDiskIndex = metaDisk.value.index;
  }
  const all = [
    ...(own.address === undefined
      ? []
      : [{ address: own.address.value, at: own.address.keyword, kind: 'address' }]),
    ...listens.map((l) => ({ address: l.value, at: l.keyword, kind: 'nbd-listen' })),
  ];
  return {
    config,
    device,
    disk,
    metaDisk: diskless ? undefined : metaDisk,
    listens: all,
  };
}

function checkNodeIds(raw: RawResource, hosts: ResolvedHost[]): void {
  const withId = raw.hosts.filter((h) => h.fields.nodeId !== undefined);
  const without = raw.hosts.find((h) => h.fields.nodeId === undefined);
  if (without !== undefined && withId.length > 0) {
    const other = withId[0];
    throw errorAt(
      without.stmt.keyword,
      `host ${q(without.name)} of resource ${raw.name} has no node-id; give every host a node-id or none (host ${q(other.name)} has one at ${posText(other.fields.nodeId?.keyword as Token)})`,
    );
  }
  if (without !== undefined && hosts.length > 2) {
    throw errorAt(
      without.stmt.keyword,
      `host ${q(without.name)} of resource ${raw.name} has no node-id; a resource with more than two hosts needs "node-id N;" in every "on" section`,
    );
  }
  const seen = new Map<number, RawHost>();
  for (const h of withId) {
    const id = h.fields.nodeId as Field<number>;
    const prev = seen.get(id.value);
    if (prev !== undefined) {
      throw errorAt(
        id.args[0],
        `node-id ${id.value} is already used by host ${q(prev.name)} (at ${posText(prev.fields.nodeId?.keyword as Token)})`,
      );
    }
    seen.set(id.value, h);
  }
}

function checkAddresses(raw: RawResource): void {
  const seen = new Map<string, RawHost>();
  for (const h of raw.hosts) {
    const a = h.fields.address;
    if (a === undefined) continue;
    const key = addressKey(a.value);
    const prev = seen.get(key);
    if (prev !== undefined) {
      throw errorAt(
        a.args[a.args.length - 1] ?? a.keyword,
        `address ${key} is already used by host ${q(prev.name)} (at ${posText(prev.fields.address?.keyword as Token)})`,
      );
    }
    seen.set(key, h);
  }
}

/** Settings from `common`, overridden by the resource's own. */
function mergedSettings(common: Scope | undefined, own: Scope): Map<string, Setting> {
  return new Map<string, Setting>([...(common?.settings ?? []), ...own.settings]);
}

/** Per-connection and per-host options become the resource's (see overlay.ts). */
function hoistSubsections(raw: RawResource, common: Scope | undefined): void {
  const base = defaults();
  const inherited = (key: string): unknown => {
    const c = common?.settings.get(key as SettingKey);
    if (c !== undefined) return c.value;
    const [group, name] = key.split('.');
    if (group === 'top') return base.protocol;
    return (base as unknown as Record<string, Record<string, unknown>>)[group]?.[name];
  };
  hoist(
    raw.scope,
    raw.connections.map((scope) => ({ scope })),
    inherited,
  );
  hoist(
    raw.scope,
    raw.hosts.map((h) => ({
      scope: h.scope,
      // A diskless host has no disk for disk options to concern.
      concerns: (key: string) =>
        !key.startsWith('disk.') || (h.fields.disk ?? raw.defaults.disk)?.value !== 'none',
    })),
    inherited,
  );
}

/**
 * urbd replicates a Primary's writes to one data peer, so a resource holds at most two nodes
 * with a disk; a third node is the diskless tiebreaker that only votes (quorum.ts). Three
 * data nodes would leave one of them silently behind, so the file is refused.
 */
function checkDataNodes(raw: RawResource, hosts: ReturnType<typeof resolveHost>[]): void {
  if (raw.hosts.length > 3) {
    throw errorAt(
      raw.hosts[3]!.stmt.keyword,
      `resource ${raw.name} has ${raw.hosts.length} hosts; urbd supports up to three (two with a disk and a diskless tiebreaker)`,
    );
  }
  const diskful = hosts.filter((h) => h.config.disk !== undefined && h.config.disk !== 'none');
  if (diskful.length > 2) {
    throw errorAt(
      raw.hosts[2]!.stmt.keyword,
      `resource ${raw.name} has three hosts with a disk; urbd replicates to one data peer, so the third host must be "disk none;" (a diskless tiebreaker that only votes)`,
    );
  }
}

function readFailoverSections(raw: RawResource): FailoverSections | undefined {
  const names = raw.hosts.map((h) => h.name);
  const own = raw.hosts.filter((h) => h.failover !== undefined);
  if (raw.failover === undefined && own.length === 0) return undefined;
  const sections: FailoverSections = { hosts: {} };
  if (raw.failover) sections.resource = readFailover(raw.failover, names);
  for (const h of own) sections.hosts[h.name] = readFailover(h.failover as Statement, names);
  return sections;
}

export function resolveResource(raw: RawResource, common: Scope | undefined): Resolved {
  if (raw.hosts.length === 0) {
    throw errorAt(
      raw.stmt.keyword,
      `resource ${raw.name} has no "on HOST" section; every node that holds it needs one`,
    );
  }
  hoistSubsections(raw, common);
  const many = raw.hosts.length > 1;
  const hosts = raw.hosts.map((h) => resolveHost(raw, h, many));
  checkNodeIds(raw, hosts);
  checkAddresses(raw);
  checkDataNodes(raw, hosts);

  const typed = defaults();
  const settings = mergedSettings(common, raw.scope);
  const handlers: Record<string, string> = {};
  for (const [key, s] of settings) {
    const dot = key.indexOf('.');
    const group = key.slice(0, dot);
    const name = key.slice(dot + 1);
    if (group === 'handlers') handlers[name] = s.value as string;
    else if (group === 'top') typed.protocol = s.value as ResourceConfig['protocol'];
    else {
      const target = typed[group as 'net' | 'disk' | 'startup' | 'options'] as unknown as Record<
        string,
        unknown
      >;
      if (s.value === undefined) delete target[name];
      else target[name] = s.value;
    }
  }

  const names = raw.hosts.map((h) => h.name);
  const hostList = names.join(', ');
  const sb0 = settings.get('net.afterSb0pri' satisfies SettingKey);
  const victim = /^discard-node-(.*)$/.exec(typed.net.afterSb0pri);
  if (victim !== null && sb0 !== undefined) {
    const host = findByHostName(raw.hosts, victim[1]);
    if (host === undefined) {
      throw errorAt(
        sb0.args[0],
        `after-sb-0pri ${typed.net.afterSb0pri} names no host of resource ${raw.name} (hosts: ${hostList})`,
      );
    }
    typed.net.afterSb0pri = `discard-node-${host.name}`;
  }
  const bpo = settings.get('startup.becomePrimaryOn' satisfies SettingKey);
  if (bpo !== undefined) {
    const out: string[] = [];
    for (const tok of bpo.args) {
      const host = findByHostName(raw.hosts, tok.text);
      const add = tok.text === 'both' ? names : host === undefined ? [] : [host.name];
      if (tok.text !== 'both' && host === undefined) {
        throw errorAt(
          tok,
          `become-primary-on names ${q(tok.text)}, which is not a host of resource ${raw.name} (hosts: ${hostList})`,
        );
      }
      for (const n of add) if (!out.includes(n)) out.push(n);
    }
    typed.startup.becomePrimaryOn = out;
  }

  const config: ResourceConfig = {
    name: raw.name,
    source: pos(raw.stmt.keyword),
    protocol: typed.protocol,
    net: typed.net,
    disk: typed.disk,
    handlers,
    startup: typed.startup,
    options: typed.options,
    hosts: hosts.map((h) => h.config),
  };
  const failover = readFailoverSections(raw);
  if (failover !== undefined) config.failover = failover;
  return { config, hosts, settings };
}
