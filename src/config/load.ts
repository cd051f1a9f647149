// Entry points: read the file (and its includes), interpret the top level, resolve every
// resource, then check what can only be checked across resources.
import { errorAt, posText, q } from './errors.js';
import { parseWithIncludes, readConfigFile } from './files.js';
import { shortHostName } from './hostname.js';
import type { Token } from './lexer.js';
import type { RawResource } from './host.js';
import { readResource } from './resource.js';
import { type Resolved, resolveResource } from './resolve.js';
import {
  homeOf,
  type LoadContext,
  readOptionSection,
  recordIgnored,
  requireNoArgs,
  requireValues,
  Scope,
  unknownKeyword,
} from './sections.js';
import type { Statement } from './syntax.js';
import type { UrbdConfig } from './types.js';
import { addressKey } from './values.js';

export function loadConfig(file: string): UrbdConfig {
  return parseConfigText(readConfigFile(file), file);
}

/** Parses `text` as the contents of `file`; includes are resolved relative to dirname(file). */
export function parseConfigText(text: string, file: string): UrbdConfig {
  const statements = parseWithIncludes(text, file, checkTopKeyword);
  return interpret(statements, file);
}

const TOP_KEYWORDS = ['global', 'common', 'resource', 'include', 'skip'];
/** drbd-utils 9 checks the kernel module's version against these; urbd has no module to check. */
const MODULE_VERSION = ['require-drbd-module-version-eq', 'require-drbd-module-version-ge'];

/** Reports a top-level keyword as soon as it is read (see ParseOptions.checkTopKeyword). */
function checkTopKeyword(tok: Token): void {
  const kw = tok.text;
  if (TOP_KEYWORDS.includes(kw) || MODULE_VERSION.includes(kw)) return;
  const home = homeOf(kw);
  if (home !== undefined) {
    throw errorAt(
      tok,
      `${q(kw)} must be inside a resource or common section (it belongs in ${home})`,
    );
  }
  throw unknownKeyword(tok, 'the top level', [...TOP_KEYWORDS, ...MODULE_VERSION]);
}
const COMMON_SECTIONS = ['net', 'disk', 'startup', 'options', 'handlers', 'syncer'] as const;

function readCommon(s: Statement, scope: Scope, ctx: LoadContext): void {
  requireNoArgs(s);
  if (s.block === undefined) throw errorAt(s.terminator, 'expected "{" after "common"');
  for (const c of s.block) {
    const kw = c.keyword.text;
    if (kw === 'skip') {
      recordIgnored(ctx, c, 'common');
    } else if ((COMMON_SECTIONS as readonly string[]).includes(kw)) {
      readOptionSection(c, kw as (typeof COMMON_SECTIONS)[number], scope, ctx, 'common');
    } else if (kw === 'protocol') {
      // 8.3 allowed protocol directly in common; read it as the net option it is.
      readOptionSection({ ...c, args: [], block: [c] }, 'net', scope, ctx, 'common');
    } else {
      throw unknownKeyword(
        c.keyword,
        'common section',
        [...COMMON_SECTIONS, 'protocol'],
        homeOf(kw),
      );
    }
  }
}

function interpret(statements: Statement[], file: string): UrbdConfig {
  const ctx: LoadContext = { ignored: [] };
  let common: Scope | undefined;
  let commonAt: Token | undefined;
  let globalAt: Token | undefined;
  const raws: RawResource[] = [];
  for (const s of statements) {
    const kw = s.keyword.text;
    switch (kw) {
      case 'global':
        if (globalAt !== undefined) {
          throw errorAt(s.keyword, `"global" is given twice (first at ${posText(globalAt)})`);
        }
        globalAt = s.keyword;
        readOptionSection(s, 'global', new Scope('global'), ctx, 'global');
        break;
      case 'common':
        if (commonAt !== undefined) {
          throw errorAt(s.keyword, `"common" is given twice (first at ${posText(commonAt)})`);
        }
        commonAt = s.keyword;
        common = new Scope('common');
        readCommon(s, common, ctx);
        break;
      case 'resource': {
        const raw = readResource(s, ctx);
        const prev = raws.find((r) => r.name === raw.name);
        if (prev !== undefined) {
          throw errorAt(
            s.keyword,
            `resource ${q(raw.name)} is defined twice (first at ${posText(prev.stmt.keyword)})`,
          );
        }
        raws.push(raw);
        break;
      }
      case 'skip':
        recordIgnored(ctx, s, 'top level');
        break;
      default:
        if (MODULE_VERSION.includes(kw)) {
          requireValues(s, 1, 1, 'a DRBD version such as 9.1.0');
          recordIgnored(ctx, s, 'top level');
          break;
        }
        // Statements that did not come through the parser's check (none today) fail the same way.
        checkTopKeyword(s.keyword);
        throw unknownKeyword(s.keyword, 'the top level', TOP_KEYWORDS);
    }
  }
  const resolved = raws.map((r) => resolveResource(r, common));
  checkResyncAfter(resolved, file);
  checkSharedResources(resolved);
  return { file, resources: resolved.map((r) => r.config), ignored: ctx.ignored };
}

function checkResyncAfter(all: Resolved[], file: string): void {
  const byName = new Map(all.map((r) => [r.config.name, r]));
  const names = [...byName.keys()].join(', ');
  for (const r of all) {
    const after = r.config.disk.resyncAfter;
    const setting = r.settings.get('disk.resyncAfter');
    if (after === undefined || setting === undefined) continue;
    const at = setting.args[0];
    if (after === r.config.name) {
      throw errorAt(at, `resource ${r.config.name} cannot resync after itself`);
    }
    if (!byName.has(after)) {
      throw errorAt(
        at,
        `resync-after names ${q(after)}, which is not a resource in ${file} (resources: ${names})`,
      );
    }
    const chain = [r.config.name];
    for (let next: string | undefined = after; next !== undefined;) {
      chain.push(next);
      if (next === r.config.name) {
        throw errorAt(at, `resync-after makes a cycle: ${chain.join(' -> ')}`);
      }
      if (chain.length > all.length + 1) break;
      next = byName.get(next)?.config.disk.resyncAfter;
    }
  }
}

/** One node cannot give the same minor, listening address or backing file to two resources. */
function checkSharedResources(all: Resolved[]): void {
  const minors = new Map<string, { res: string; at: Token }>();
  const listens = new Map<string, { res: string; at: Token; kind: string }>();
  const paths = new Map<string, { res: string; at: Token; kind: string; index?: number }>();
  for (const r of all) {
    const res = r.config.name;
    for (const h of r.hosts) {
      const host = h.config.name;
      // One node may spell its name differently in two resources (alice, Alice.example.com).
      const node = shortHostName(host);
      const minorKey = `${node}\0${h.config.device.minor}`;
      const m = minors.get(minorKey);
      if (m !== undefined) {
        throw errorAt(
          h.device.keyword,
          `minor ${h.config.device.minor} on host ${q(host)} is already used by resource ${m.res} (at ${posText(m.at)})`,
        );
      }
      minors.set(minorKey, { res, at: h.device.keyword });
      for (const l of h.listens) {
        const key = `${node}\0${addressKey(l.address)}`;
        const prev = listens.get(key);
        if (prev !== undefined && !(prev.res === res && prev.at === l.at)) {
          throw errorAt(
            l.at,
            `${addressKey(l.address)} on host ${q(host)} is already used by resource ${prev.res} (${prev.kind} at ${posText(prev.at)})`,
          );
        }
        listens.set(key, { res, at: l.at, kind: l.kind });
      }
      const uses: Array<{ path: string; at: Token; kind: string; index?: number }> = [];
      if (h.config.disk !== undefined && h.config.disk !== 'none') {
        uses.push({ path: h.config.disk, at: h.disk.keyword, kind: 'disk' });
      }
      if (h.config.metaDisk !== undefined && h.config.metaDisk !== 'internal' && h.metaDisk) {
        uses.push({
          path: h.config.metaDisk,
          at: h.metaDisk.keyword,
          kind: 'meta-disk',
          index: h.config.metaDiskIndex,
        });
      }
      for (const u of uses) {
        const key = `${node}\0${u.path}`;
        const prev = paths.get(key);
        if (prev !== undefined) {
          // DRBD gives each index its own 128 MiB slot of a device; urbd's metadata is one SQLite
          // file, so two indexes of one file would silently share (and overwrite) one metadata.
          const indexed = prev.index !== undefined || u.index !== undefined;
          const slot = (i?: number): string => (i === undefined ? '' : ` [${i}]`);
          throw errorAt(
            u.at,
            `${u.kind} ${u.path}${slot(u.index)} on host ${q(host)} is already used by resource ${prev.res} (${prev.kind}${slot(prev.index)} at ${posText(prev.at)})` +
              (indexed && prev.kind === 'meta-disk' && u.kind === 'meta-disk'
                ? "; urbd keeps each resource's metadata in a file of its own, not in indexed slots: give each resource its own meta-disk file"
                : ''),
          );
        }
        paths.set(key, { res, ...u });
      }
    }
  }
}
