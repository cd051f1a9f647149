// Reading one `resource NAME { ... }` section: its option sections, its node-level defaults,
// its `on HOST` sections and volumes, and (once every host is known) its connections.
import { readConnection, readConnectionMesh } from './connection.js';
import { errorAt, posText, q } from './errors.js';
import {
  HOST_STATEMENTS,
  HostFields,
  type RawResource,
  readHostStatement,
  unsupported,
} from './host.js';
import { findByHostName } from './hostname.js';
import type { Token } from './lexer.js';
import { SECTIONS } from './schema.js';
import {
  convert,
  homeOf,
  type LoadContext,
  readOptionSection,
  recordIgnored,
  requireBlock,
  requireValues,
  Scope,
  unknownKeyword,
} from './sections.js';
import type { Statement } from './syntax.js';
import { parseIntInRange } from './values.js';

/** Names end up in socket paths, state file names and log lines: no spaces, no slashes. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
const NAME_RULE = 'letters, digits and "_", "-", ".", "+" (not first)';

function checkName(tok: Token, what: string): string {
  if (!NAME.test(tok.text)) {
    throw errorAt(tok, `${what} ${q(tok.text)} may only contain ${NAME_RULE}`);
  }
  return tok.text;
}

const VOLUME_MAX = 65534;
const HOST_KEYWORDS = [...HOST_STATEMENTS, 'volume'];
const RESOURCE_KEYWORDS = [
  'protocol',
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'nbd-listen',
  'volume',
  'on',
  'net',
  'startup',
  'options',
  'handlers',
  'syncer',
  'connection',
  'connection-mesh',
  'failover',
];

function readVolume(
  s: Statement,
  res: RawResource,
  fields: HostFields,
  ctx: LoadContext,
  where: string,
  inHost: boolean,
  scope: Scope,
): void {
  const [numTok] = requireValues(
    { ...s, block: undefined },
    1,
    1,
    `a volume number from 0 to ${VOLUME_MAX}`,
  );
  const number = convert({ ...s, args: [numTok] }, ([v]) =>
    parseIntInRange('volume', v, 0, VOLUME_MAX),
  );
  const body = requireBlock(s);
  if (res.volume === undefined) res.volume = numTok;
  else if (Number(res.volume.text) !== number) {
    throw errorAt(
      s.keyword,
      `urbd serves one volume per resource; resource ${res.name} already has volume ${res.volume.text} (at ${posText(res.volume)})`,
    );
  }
  for (const v of body) {
    // A DRBD 9 volume may name a tiebreaker; urbd has no quorum to break a tie in yet.
    if (v.keyword.text === 'skip' || v.keyword.text === 'tiebreaker') {
      recordIgnored(ctx, v, where);
      continue;
    }
    if (v.keyword.text === 'disk' && v.block !== undefined) {
      readOptionSection(v, 'disk', scope, ctx, where);
      continue;
    }
    if (['device', 'disk', 'meta-disk', 'flexible-meta-disk'].includes(v.keyword.text)) {
      readHostStatement(v, fields, ctx, where, inHost);
      continue;
    }
    throw unknownKeyword(v.keyword, 'volume section', [
      'device',
      'disk',
      'meta-disk',
      'flexible-meta-disk',
    ]);
  }
}

function onlyOnce(s: Statement, prev: Statement | undefined): Statement {
  if (prev !== undefined) {
    throw errorAt(
      s.keyword,
      `a second "failover" section here (the first is at ${posText(prev.keyword)}); write one`,
    );
  }
  return s;
}

function perHostOptions(s: Statement, fields: HostFields): Error {
  return errorAt(
    s.keyword,
    `${q(s.keyword.text)} sections are not allowed inside ${fields.label}; urbd applies options to the whole resource, so put it at resource level`,
  );
}

function readHost(s: Statement, res: RawResource, ctx: LoadContext): void {
  if (s.args.length === 0) throw errorAt(s.terminator, 'expected a host name after "on"');
  if (s.args.length > 1) {
    throw errorAt(
      s.args[1],
      `"on" takes one host name; write a separate "on" section for ${q(s.args[1].text)}`,
    );
  }
  const name = checkName(s.args[0], 'host name');
  const body = requireBlock(s);
  const prev = findByHostName(res.hosts, name);
  if (prev !== undefined) {
    throw errorAt(
      s.args[0],
      `host ${q(name)} is given twice in resource ${res.name} (first at ${posText(prev.stmt.keyword)})`,
    );
  }
  const fields = new HostFields(`"on ${name}"`);
  // Per-host disk and net options; hoist() decides whether they can apply to the resource.
  const scope = new Scope(`"on ${name}"`);
  const where = `resource ${res.name} on ${name}`;
  let failover: Statement | undefined;
  for (const h of body) {
    const kw = h.keyword.text;
    if (kw === 'skip') {
      recordIgnored(ctx, h, where);
      continue;
    }
    if (kw === 'volume') {
      readVolume(h, res, fields, ctx, where, true, scope);
      continue;
    }
    if ((kw === 'disk' || kw === 'net') && h.block !== undefined) {
      readOptionSection(h, kw, scope, ctx, where);
      continue;
    }
    if (kw === 'failover') {
      failover = onlyOnce(h, failover);
      continue;
    }
    if (readHostStatement(h, fields, ctx, where, true)) continue;
    if (['net', 'options', 'startup', 'handlers', 'syncer'].includes(kw)) {
      throw perHostOptions(h, fields);
    }
    if (RESOURCE_KEYWORDS.includes(kw)) {
      throw errorAt(
        h.keyword,
        `${q(kw)} is not allowed inside ${fields.label}; put it at resource level`,
      );
    }
    if (kw === 'proxy') throw unsupported(h);
    throw unknownKeyword(h.keyword, 'on section', HOST_KEYWORDS, homeOf(kw));
  }
  res.hosts.push({ name, stmt: s, fields, scope, ...(failover ? { failover } : {}) });
}

export function readResource(s: Statement, ctx: LoadContext): RawResource {
  if (s.args.length === 0) throw errorAt(s.terminator, 'expected a resource name after "resource"');
  const name = checkName(s.args[0], 'resource name');
  if (s.args.length > 1) throw errorAt(s.args[1], `expected "{" after ${q(`resource ${name}`)}`);
  const body = requireBlock(s);
  const label = `resource ${name}`;
  const res: RawResource = {
    name,
    stmt: s,
    scope: new Scope(label),
    defaults: new HostFields(label),
    hosts: [],
    connections: [],
  };
  const connections: Statement[] = [];
  for (const r of body) {
    const kw = r.keyword.text;
    switch (kw) {
      case 'protocol': {
        const spec = SECTIONS.net.get('protocol');
        if (spec?.kind !== 'option') throw new Error('schema lost protocol');
        requireValues(r, 1, 1, spec.expect);
        res.scope.set('top.protocol', {
          value: convert(r, (a) => spec.parse(a)),
          keyword: r.keyword,
          args: r.args,
        });
        break;
      }
      case 'net':
      case 'startup':
      case 'options':
      case 'handlers':
      case 'syncer':
        readOptionSection(r, kw, res.scope, ctx, label);
        break;
      case 'disk':
        if (r.block !== undefined) readOptionSection(r, 'disk', res.scope, ctx, label);
        else readHostStatement(r, res.defaults, ctx, label, false);
        break;
      case 'volume':
        readVolume(r, res, res.defaults, ctx, label, false, res.scope);
        break;
      case 'on':
        readHost(r, res, ctx);
        break;
      case 'connection':
      case 'connection-mesh':
        // Read once every `on` section is known: connections may come first in the file.
        connections.push(r);
        break;
      case 'failover':
        res.failover = onlyOnce(r, res.failover);
        break;
      case 'skip':
        recordIgnored(ctx, r, label);
        break;
      case 'floating':
      case 'stacked-on-top-of':
      case 'proxy':
        throw unsupported(r);
      default:
        if (readHostStatement(r, res.defaults, ctx, label, false)) break;
        throw unknownKeyword(r.keyword, 'resource section', RESOURCE_KEYWORDS, homeOf(kw));
    }
  }
  const pairs = new Map<string, Token>();
  for (const c of connections) {
    if (c.keyword.text === 'connection') readConnection(c, res, ctx, pairs);
    else readConnectionMesh(c, res, ctx);
  }
  return res;
}
