// DRBD 9's connection and connection-mesh sections. urbd connects every host of a resource with
// every other over one address per host, so these sections may only supply or confirm addresses
// and contribute net/disk options to the resource.
import { errorAt, posText, q } from './errors.js';
import { type RawHost, type RawResource, unsupported } from './host.js';
import { findByHostName } from './hostname.js';
import type { Token } from './lexer.js';
import {
  convert,
  givenTwice,
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
import { addressKey, parseAddress, parseIntInRange } from './values.js';

/** A connection's claim that a host talks from a given address (or port). */
interface HostClaim {
  host: RawHost;
  tok: Token;
  address?: Address;
  port?: Token;
}

function findHost(res: RawResource, tok: Token, where: string): RawHost {
  const host = findByHostName(res.hosts, tok.text);
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
  // `host A address IP:PORT via proxy on P { ... }` has more words and a block: say why first.
  const via = s.args.find((a) => a.text === 'via' && a.kind === 'word');
  if (via !== undefined) throw unsupported({ ...s, keyword: via });
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
  const port =
    claim.port === undefined
      ? undefined
      : convert({ keyword: claim.tok, args: [claim.port], terminator: claim.tok }, ([v]) =>
          parseIntInRange('port', v, 1, 65535),
        );
  const base = claim.address ?? have?.value;
  if (base === undefined) {
    if (port !== undefined) {
      throw errorAt(claim.tok, `host ${q(claim.host.name)} has no address to apply this port to`);
    }
    return;
  }
  const want = port === undefined ? base : { ...base, port };
  if (have === undefined) {
    fields.address = { value: want, keyword: claim.tok, args: [] };
  } else if (addressKey(have.value) !== addressKey(want)) {
    throw errorAt(
      claim.tok,
      `urbd uses one address per host: host ${q(claim.host.name)} of resource ${res.name} has ${addressKey(have.value)} (at ${posText(have.keyword)}), this connection says ${addressKey(want)}`,
    );
  }
}

export function readConnectionMesh(s: Statement, res: RawResource, ctx: LoadContext): void {
  requireNoArgs(s);
  const body = requireBlock(s);
  const scope = new Scope('connection-mesh');
  res.connections.push(scope);
  let hosts: Statement | undefined;
  for (const c of body) {
    const kw = c.keyword.text;
    if (kw === 'skip') recordIgnored(ctx, c, `resource ${res.name}`);
    else if (kw === 'net') readOptionSection(c, 'net', scope, ctx, `resource ${res.name}`);
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

export function readConnection(
  s: Statement,
  res: RawResource,
  ctx: LoadContext,
  pairs: Map<string, Token>,
): void {
  if (s.args.length > 1)
    throw errorAt(s.args[1], `expected "{" after ${q(headText(s.keyword, s.args.slice(0, 1)))}`);
  const body = requireBlock(s);
  const scope = new Scope(`the connection at ${posText(s.keyword)}`);
  res.connections.push(scope);
  const claims: HostClaim[] = [];
  let path: Statement | undefined;
  for (const c of body) {
    const kw = c.keyword.text;
    if (kw === 'skip') recordIgnored(ctx, c, `resource ${res.name}`);
    else if (kw === 'net') readOptionSection(c, 'net', scope, ctx, `resource ${res.name}`);
    else if (kw === 'disk' && c.block !== undefined) {
      readOptionSection(c, 'disk', scope, ctx, `resource ${res.name}`);
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
