// `urbdadm dump`: the effective configuration in drbd.conf syntax, like `drbdadm dump`, with
// includes expanded, `common` folded into each resource and every default written out, so an
// admin sees exactly what the daemon will use. Parsing the output gives the same typed result.
import { formatFailover } from './failover.js';
import { handlerInertReason, inertReason } from './inert.js';
import { resourceFor } from './lookup.js';
import { DUMP_SECTIONS, quote, quoteIfNeeded } from './schema.js';
import type { HostConfig, IgnoredOption, ResourceConfig, UrbdConfig } from './types.js';
import { formatAddress } from './values.js';

const I = '    ';

function valueOf(res: ResourceConfig, key: string): unknown {
  const [group, field] = key.split('.');
  if (group === 'top') return (res as unknown as Record<string, unknown>)[field];
  const g = (res as unknown as Record<string, Record<string, unknown>>)[group];
  return g[field];
}

function ignoredLine(e: IgnoredOption, indent: string): string {
  const note = e.note === undefined ? '' : ` (${e.note})`;
  return `${indent}# ignored by urbd (${e.where}): ${e.text};${note}`;
}

/** An option urbd reads but does not act on keeps its value (dump parses back the same) and says so. */
function inert(line: string, reason: string | undefined): string {
  return reason === undefined ? line : `${line} # ignored by urbd: ${reason}`;
}

function dumpHost(h: HostConfig, res: ResourceConfig): string[] {
  const lines = [`${I}on ${h.name} {`];
  if (h.nodeId !== undefined) lines.push(`${I}${I}node-id ${h.nodeId};`);
  if (h.address !== undefined) lines.push(`${I}${I}address ${formatAddress(h.address)};`);
  lines.push(`${I}${I}device ${h.device.path} minor ${h.device.minor};`);
  if (h.disk !== undefined) lines.push(`${I}${I}disk ${quoteIfNeeded(h.disk)};`);
  if (h.metaDisk !== undefined) {
    const index = h.metaDiskIndex === undefined ? '' : ` [${h.metaDiskIndex}]`;
    lines.push(`${I}${I}meta-disk ${quoteIfNeeded(h.metaDisk)}${index};`);
  }
  for (const l of h.nbdListen) lines.push(`${I}${I}nbd-listen ${formatAddress(l)};`);
  const own = res.failover?.hosts[h.name];
  if (own !== undefined) lines.push(...formatFailover(own, `${I}${I}`, false));
  lines.push(`${I}}`);
  return lines;
}

function dumpResource(res: ResourceConfig, ignored: IgnoredOption[]): string[] {
  const where = `resource ${res.name}`;
  const lines = [
    `# resource ${res.name} at ${res.source.file}:${res.source.line}:${res.source.col}`,
    `resource ${res.name} {`,
  ];
  for (const { section, specs } of DUMP_SECTIONS) {
    const body: string[] = [];
    for (const spec of specs) {
      const v = valueOf(res, spec.key);
      if (v === undefined || (Array.isArray(v) && v.length === 0)) continue;
      body.push(inert(`${I}${I}${spec.keyword} ${spec.format(v)};`, inertReason(spec.key)));
    }
    lines.push(`${I}${section} {`, ...body, `${I}}`);
    if (section === 'disk') {
      const names = Object.keys(res.handlers);
      if (names.length > 0) {
        lines.push(`${I}handlers {`);
        for (const n of names) {
          lines.push(inert(`${I}${I}${n} ${quote(res.handlers[n])};`, handlerInertReason(n)));
        }
        lines.push(`${I}}`);
      }
    }
  }
  // urbd-failover's section (urbd itself does not read it): the resource's with every
  // default written out, each host's own values inside its `on` section.
  if (res.failover !== undefined) {
    const base = res.failover.resource ?? { source: res.source, settings: {}, services: [] };
    lines.push(...formatFailover(base, I, true));
  }
  for (const h of res.hosts) lines.push(...dumpHost(h, res));
  for (const e of ignored) {
    if (e.where === where || e.where.startsWith(`${where} `)) lines.push(ignoredLine(e, I));
  }
  lines.push('}');
  return lines;
}

export function dumpConfig(cfg: UrbdConfig, resourceNames?: string[]): string {
  const resources =
    resourceNames === undefined ? cfg.resources : resourceNames.map((n) => resourceFor(cfg, n));
  const lines = [`# ${cfg.file}, as urbd reads it: includes expanded, common and defaults applied`];
  for (const e of cfg.ignored) {
    if (!e.where.startsWith('resource ')) lines.push(ignoredLine(e, ''));
  }
  for (const r of resources) lines.push('', ...dumpResource(r, cfg.ignored));
  return `${lines.join('\n')}\n`;
}
