// Reading one `resource NAME { ... }` section into a raw form that still knows where every value
// was written, so later checks (inheritance, duplicates across resources) can point at it.
import { errorAt, posText, q } from './errors.js';
import type { Token } from './lexer.js';
import { SECTIONS } from './schema.js';
import {
  convert,
  givenTwice,
  homeOf,
  type LoadContext,
  readOptionSection,
  recordIgnored,
  requireBlock,
  requireNoArgs,
  requireValues,
  Scope,
  unknownKeyword,
} from './sections.js';
import { headText, type Statement } from './syntax.js';
import type { Address } from './types.js';
import { parseAddress, parseIntInRange, ValueError } from './values.js';

export interface Field<T> {
  value: T;
  keyword: Token;
  args: Token[];
}

export interface DeviceValue {
  path: string;
  minor: number;
}

export interface MetaDiskValue {
  /** 'internal' or an absolute path. */
  path: string;
  index?: number;
}

/** The per-node values: given at resource level (defaults for every host) or in `on HOST`. */
export class HostFields {
  device?: Field<DeviceValue>;
  disk?: Field<string>;
  metaDisk?: Field<MetaDiskValue>;
  nbdListen: Field<Address>[] = [];
  address?: Field<Address>;
  nodeId?: Field<number>;
  /** `resource r0` or `"on alpha"`, for messages. */
  readonly label: string;
  constructor(label: string) {
    this.label = label;
  }
}

export interface RawHost {
  name: string;
  stmt: Statement;
  fields: HostFields;
}

export interface RawResource {
  name: string;
  stmt: Statement;
  scope: Scope;
  defaults: HostFields;
  hosts: RawHost[];
  /** The first `volume N` seen; urbd serves one volume per resource. */
  volume?: Token;
}

/** Names end up in socket paths, state file names and log lines: no spaces, no slashes. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
const NAME_RULE = 'letters, digits and "_", "-", ".", "+" (not first)';

function checkName(tok: Token, what: string): string {
  if (!NAME.test(tok.text)) {
    throw errorAt(tok, `${what} ${q(tok.text)} may only contain ${NAME_RULE}`);
  }
  return tok.text;
}

const MINOR_MAX = (1 << 20) - 1;
const NODE_ID_MAX = 31;
const VOLUME_MAX = 65534;
const DEVICE_NAME = /^\/dev\/(?:drbd|nbd)([0-9]+)$/;

const HOST_KEYWORDS = [
  'address',
  'node-id',
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'nbd-listen',
  'volume',
];
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
];

function set<K extends 'device' | 'disk' | 'metaDisk' | 'address' | 'nodeId'>(
  fields: HostFields,
  key: K,
  value: HostFields[K],
): void {
  const prev = fields[key];
  if (prev !== undefined && value !== undefined) {
    throw givenTwice(value.keyword, prev.keyword, fields.label);
  }
  fields[key] = value;
}

function field<T>(s: Statement, value: T): Field<T> {
  return { value, keyword: s.keyword, args: s.args };
}

/**
 * `device /dev/drbdN`, `device minor N`, `device /dev/drbdN minor N`, `device /dev/nbdN`: all
 * mean NBD minor N, since urbd's block device is the kernel's /dev/nbdN. A custom name (DRBD's
 * `device /dev/drbd_r0 minor 0`) is accepted, recorded as ignored, and replaced by /dev/nbdN.
 */
function readDevice(s: Statement, ctx: LoadContext, where: string): DeviceValue {
  const args = requireValues(s, 1, 3, 'a device such as /dev/drbd0, or minor 0');
  let pathTok: Token | undefined;
  let minorTok: Token | undefined;
  const minorAfter = (i: number): Token => {
    if (args[i].text !== 'minor') {
      throw errorAt(
        args[i],
        `expected ";" or "minor N" after ${q(headText(s.keyword, args.slice(0, i)))}`,
      );
    }
    if (args.length < i + 2) {
      throw errorAt(s.terminator, 'expected a minor number after "minor"');
    }
    if (args.length > i + 2) throw errorAt(args[i + 2], 'expected ";" after value of "device"');
    return args[i + 1];
  };
  if (args[0].text === 'minor' && args[0].kind === 'word') {
    minorTok = minorAfter(0);
  } else {
    pathTok = args[0];
    if (args.length > 1) minorTok = minorAfter(1);
  }
  let minor: number | undefined;
  if (minorTok !== undefined) {
    const tok = minorTok;
    minor = convert({ ...s, args: [tok] }, ([v]) => parseIntInRange('minor', v, 0, MINOR_MAX));
  }
  if (pathTok !== undefined) {
    const m = DEVICE_NAME.exec(pathTok.text);
    if (m === null) {
      if (minor === undefined) {
        throw errorAt(
          pathTok,
          `cannot tell the minor number from ${q(pathTok.text)}; write "device minor N;" or "device ${pathTok.text} minor N;"`,
        );
      }
      recordIgnored(ctx, s, where, `only the name is ignored: the device is /dev/nbd${minor}`);
    } else {
      const n = Number(m[1]);
      if (minor !== undefined && n !== minor) {
        throw errorAt(minorTok as Token, `device ${pathTok.text} is minor ${n}, not ${minor}`);
      }
      if (minor === undefined) {
        minor = convert({ ...s, args: [pathTok] }, () =>
          parseIntInRange('the minor number', m[1], 0, MINOR_MAX),
        );
      }
    }
  }
  return { path: `/dev/nbd${minor}`, minor: minor as number };
}

/** Relative paths would depend on the daemon's working directory, so only absolute ones. */
function checkPath(tok: Token, what: string, allowNone: boolean): string {
  if (allowNone && tok.text === 'none') return tok.text;
  if (!tok.text.startsWith('/')) {
    throw errorAt(
      tok,
      `${what} must be an absolute path${allowNone ? ' or none' : ''}, not ${q(tok.text)}`,
    );
  }
  return tok.text;
}

/** `meta-disk internal`, `meta-disk PATH`, and 8.4's indexed `meta-disk PATH [N]` or `PATH[N]`. */
function readMetaDisk(s: Statement): MetaDiskValue {
  const args = requireValues(s, 1, 2, 'internal or an absolute path');
  const index = (tok: Token, text: string): number =>
    convert({ ...s, args: [tok] }, () => {
      const n = /^\[([0-9]+)\]$/.exec(text);
      if (n === null)
        throw new ValueError(`expected a meta-data index such as [0], not ${q(text)}`);
      return parseIntInRange('the meta-data index', n[1], 0, 65535);
    });
  const first = args[0];
  if (first.text === 'internal') {
    if (args.length > 1) throw errorAt(args[1], 'expected ";" after "meta-disk internal"');
    return { path: 'internal' };
  }
  if (args.length === 2) {
    return { path: checkPath(first, 'meta-disk', false), index: index(args[1], args[1].text) };
  }
  const joined = /^(.*)(\[[^\]]*\])$/.exec(first.text);
  if (joined !== null && first.kind === 'word') {
    return {
      path: checkPath({ ...first, text: joined[1] }, 'meta-disk', false),
      index: index(first, joined[2]),
    };
  }
  return { path: checkPath(first, 'meta-disk', false) };
}

function readAddress(s: Statement): Address {
  requireValues(s, 1, 2, 'an address such as 10.0.0.1:7789');
  return convert(s, (args) => parseAddress(s.keyword.text, args));
}

/** Statements that describe the node's storage and addresses; false if `s` is none of them. */
function readHostStatement(
  s: Statement,
  fields: HostFields,
  ctx: LoadContext,
  where: string,
  inHost: boolean,
): boolean {
  switch (s.keyword.text) {
    case 'device':
      set(fields, 'device', field(s, readDevice(s, ctx, where)));
      return true;
    case 'disk': {
      const [tok] = requireValues(s, 1, 1, 'an absolute path, or none for a diskless node');
      set(fields, 'disk', field(s, checkPath(tok, 'disk', true)));
      return true;
    }
    case 'meta-disk':
    case 'flexible-meta-disk':
      set(fields, 'metaDisk', field(s, readMetaDisk(s)));
      return true;
    case 'nbd-listen':
      fields.nbdListen.push(field(s, readAddress(s)));
      return true;
    case 'address':
    case 'node-id':
      if (!inHost) {
        throw errorAt(s.keyword, `${q(s.keyword.text)} belongs inside an "on HOST" section`);
      }
      if (s.keyword.text === 'address') set(fields, 'address', field(s, readAddress(s)));
      else {
        requireValues(s, 1, 1, `a whole number from 0 to ${NODE_ID_MAX}`);
        const id = convert(s, ([v]) => parseIntInRange('node-id', v, 0, NODE_ID_MAX));
        set(fields, 'nodeId', field(s, id));
      }
      return true;
    default:
      return false;
  }
}

function readVolume(
  s: Statement,
  res: RawResource,
  fields: HostFields,
  ctx: LoadContext,
  where: string,
  inHost: boolean,
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
    if (v.keyword.text === 'skip') {
      recordIgnored(ctx, v, where);
      continue;
    }
    if (v.keyword.text === 'disk' && v.block !== undefined) {
      if (inHost) throw perHostOptions(v, fields);
      readOptionSection(v, 'disk', res.scope, ctx, `resource ${res.name}`);
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
  const prev = res.hosts.find((h) => h.name === name);
  if (prev !== undefined) {
    throw errorAt(
      s.args[0],
      `host ${q(name)} is given twice in resource ${res.name} (first at ${posText(prev.stmt.keyword)})`,
    );
  }
  const fields = new HostFields(`"on ${name}"`);
  const where = `resource ${res.name} on ${name}`;
  for (const h of body) {
    const kw = h.keyword.text;
    if (kw === 'skip') {
      recordIgnored(ctx, h, where);
      continue;
    }
    if (kw === 'volume') {
      readVolume(h, res, fields, ctx, where, true);
      continue;
    }
    if (kw === 'disk' && h.block !== undefined) throw perHostOptions(h, fields);
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
  res.hosts.push({ name, stmt: s, fields });
}

function unsupported(s: Statement): Error {
  const why: Record<string, string> = {
    floating: '"floating" sections are not supported by urbd; use "on HOST { address IP:PORT; }"',
    'stacked-on-top-of':
      'stacked resources ("stacked-on-top-of") are not supported by urbd; use a plain resource',
    proxy: 'DRBD Proxy ("proxy") is not supported by urbd',
    via: 'DRBD Proxy ("via") is not supported by urbd',
  };
  return errorAt(s.keyword, why[s.keyword.text] ?? `${q(s.keyword.text)} is not supported by urbd`);
}

/** A connection's claim that a host talks from a given address (or port). */
interface HostClaim {
  host: RawHost;
  tok: Token;
  address?: Address;
  port?: Token;
}

function findHost(res: RawResource, tok: Token, where: string): RawHost {
  const host = res.hosts.find((h) => h.name === tok.text);
  if (host === undefined) {
    throw errorAt(
      tok,
      `${where} names ${q(tok.text)}, which has no "on ${tok.text}" section in resource ${res.name}`,
    );
  }
  return host;
}

/** DRBD 9's `host NAME [address [AF] IP:PORT] [port N];` inside a connection or path. */
function readHostClaim(s: Statement, res: RawResource): HostClaim {
  const args = requireValues(s, 1, 5, 'a host name');
  const claim: HostClaim = { host: findHost(res, args[0], 'connection'), tok: args[0] };
  let i = 1;
  if (args[i]?.text === 'address') {
    const af = args[i + 1]?.text === 'ipv4' || args[i + 1]?.text === 'ipv6' ? 2 : 1;
    const addrArgs = args.slice(i + 1, i + 1 + af);
    if (addrArgs.length < af) throw errorAt(s.terminator, 'expected an address after "address"');
    claim.address = convert({ ...s, args: addrArgs }, (a) => parseAddress('address', a));
    claim.tok = args[i];
    i += 1 + af;
  }
  if (args[i]?.text === 'port') {
    if (args[i + 1] === undefined)
      throw errorAt(s.terminator, 'expected a port number after "port"');
    claim.port = args[i + 1];
    claim.tok = args[i];
    i += 2;
  }
  if (args[i]?.text === 'via') throw unsupported({ ...s, keyword: args[i] });
  if (i < args.length) {
    throw errorAt(
      args[i],
      `expected ";", "address ..." or "port N" after ${q(headText(s.keyword, args.slice(0, i)))}`,
    );
  }
  return claim;
}

/** urbd keeps one address per host; a connection may supply it or must agree with it. */
function applyClaim(claim: HostClaim, res: RawResource): void {
  const fields = claim.host.fields;
  const have = fields.address;
  let want = claim.address;
  if (want === undefined && claim.port !== undefined) {
    if (have === undefined) {
      throw errorAt(claim.tok, `host ${q(claim.host.name)} has no address to apply this port to`);
    }
    const port = convert({ keyword: claim.tok, args: [claim.port], terminator: claim.tok }, ([v]) =>
      parseIntInRange('port', v, 1, 65535),
    );
    want = { ...have.value, port };
  } else if (want !== undefined && claim.port !== undefined) {
    const port = convert({ keyword: claim.tok, args: [claim.port], terminator: claim.tok }, ([v]) =>
      parseIntInRange('port', v, 1, 65535),
    );
    want = { ...want, port };
  }
  if (want === undefined) return;
  if (have === undefined) {
    fields.address = { value: want, keyword: claim.tok, args: [] };
    return;
  }
  const same = have.value.host === want.host && have.value.port === want.port;
  if (!same) {
    const fmt = (a: Address): string =>
      a.family === 'ipv6' ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
    throw errorAt(
      claim.tok,
      `urbd uses one address per host: host ${q(claim.host.name)} of resource ${res.name} has ${fmt(have.value)} (at ${posText(have.keyword)}), this connection says ${fmt(want)}`,
    );
  }
}

function readConnectionMesh(s: Statement, res: RawResource, ctx: LoadContext): void {
  requireNoArgs(s);
  const body = requireBlock(s);
  let hosts: Statement | undefined;
  for (const c of body) {
    const kw = c.keyword.text;
    if (kw === 'skip') recordIgnored(ctx, c, `resource ${res.name}`);
    else if (kw === 'net') readOptionSection(c, 'net', res.scope, ctx, `resource ${res.name}`);
    else if (kw === 'hosts') {
      if (hosts !== undefined) throw givenTwice(c.keyword, hosts.keyword, 'connection-mesh');
      hosts = c;
      const names = requireValues(c, 2, Infinity, 'two or more host names');
      const named = new Set(names.map((t) => findHost(res, t, 'connection-mesh').name));
      const missing = res.hosts.find((h) => !named.has(h.name));
      if (missing !== undefined) {
        throw errorAt(
          c.keyword,
          `connection-mesh leaves out host ${q(missing.name)}; urbd connects every host of a resource with every other`,
        );
      }
    } else throw unknownKeyword(c.keyword, 'connection-mesh section', ['hosts', 'net']);
  }
  if (hosts === undefined)
    throw errorAt(s.keyword, 'connection-mesh needs a "hosts NAME NAME ...;" list');
}

function readConnection(
  s: Statement,
  res: RawResource,
  ctx: LoadContext,
  pairs: Map<string, Token>,
): void {
  if (s.args.length > 1)
    throw errorAt(s.args[1], `expected "{" after ${q(headText(s.keyword, s.args.slice(0, 1)))}`);
  const body = requireBlock(s);
  const claims: HostClaim[] = [];
  let path: Statement | undefined;
  for (const c of body) {
    const kw = c.keyword.text;
    if (kw === 'skip') recordIgnored(ctx, c, `resource ${res.name}`);
    else if (kw === 'net') readOptionSection(c, 'net', res.scope, ctx, `resource ${res.name}`);
    else if (kw === 'disk' && c.block !== undefined) {
      readOptionSection(c, 'disk', res.scope, ctx, `resource ${res.name}`);
    } else if (kw === 'host') claims.push(readHostClaim(c, res));
    else if (kw === 'path') {
      if (path !== undefined) {
        throw errorAt(
          c.keyword,
          `urbd supports one path per connection (first at ${posText(path.keyword)})`,
        );
      }
      path = c;
      requireNoArgs(c);
      for (const p of requireBlock(c)) {
        if (p.keyword.text !== 'host') throw unknownKeyword(p.keyword, 'path section', ['host']);
        claims.push(readHostClaim(p, res));
      }
    } else throw unknownKeyword(c.keyword, 'connection section', ['host', 'path', 'net', 'disk']);
  }
  const names = [...new Set(claims.map((c) => c.host.name))];
  if (names.length !== 2) {
    throw errorAt(
      s.keyword,
      `a connection joins exactly two hosts; this one names ${names.length}`,
    );
  }
  const pair = [...names].sort().join(' ');
  const prev = pairs.get(pair);
  if (prev !== undefined) {
    throw errorAt(
      s.keyword,
      `hosts ${names.join(' and ')} are connected twice (first at ${posText(prev)})`,
    );
  }
  pairs.set(pair, s.keyword);
  for (const c of claims) applyClaim(c, res);
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
        readVolume(r, res, res.defaults, ctx, label, false);
        break;
      case 'on':
        readHost(r, res, ctx);
        break;
      case 'connection':
      case 'connection-mesh':
        // Read once every `on` section is known: connections may come first in the file.
        connections.push(r);
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
