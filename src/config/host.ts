// Node-level statements (device, disk, meta-disk, address, node-id, nbd-listen), written at
// resource level as defaults for every host or inside `on HOST`, and the raw shapes that keep
// where each value was written so later checks can point at it.
import { errorAt, q } from './errors.js';
import type { Token } from './lexer.js';
import {
  convert,
  givenTwice,
  type LoadContext,
  recordIgnored,
  requireValues,
  type Scope,
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
  /** Options from the host's own disk/net sections, before hoist(). */
  scope: Scope;
  /** The host's own `failover { }` section (per-node values), read once hosts are known. */
  failover?: Statement;
}

export interface RawResource {
  name: string;
  stmt: Statement;
  scope: Scope;
  defaults: HostFields;
  hosts: RawHost[];
  /** Options from each connection or connection-mesh section, before hoist(). */
  connections: Scope[];
  /** The first `volume N` seen; urbd serves one volume per resource. */
  volume?: Token;
  /** The resource's `failover { }` section, read once hosts are known. */
  failover?: Statement;
}

const MINOR_MAX = (1 << 20) - 1;
const NODE_ID_MAX = 31;
const DEVICE_NAME = /^\/dev\/(?:drbd|nbd)([0-9]+)$/;

export const HOST_STATEMENTS = [
  'address',
  'node-id',
  'device',
  'disk',
  'meta-disk',
  'flexible-meta-disk',
  'nbd-listen',
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
export function readHostStatement(
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
    case 'flexible-meta-disk': {
      const md = readMetaDisk(s);
      set(fields, 'metaDisk', field(s, md));
      if (md.index !== undefined) {
        recordIgnored(
          ctx,
          s,
          where,
          `only the index is ignored: the metadata is the file ${md.path}, one per resource`,
        );
      }
      return true;
    }
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

export function unsupported(s: Statement): Error {
  const why: Record<string, string> = {
    floating: '"floating" sections are not supported by urbd; use "on HOST { address IP:PORT; }"',
    'stacked-on-top-of':
      'stacked resources ("stacked-on-top-of") are not supported by urbd; use a plain resource',
    proxy: 'DRBD Proxy ("proxy") is not supported by urbd',
    via: 'DRBD Proxy ("via") is not supported by urbd',
  };
  return errorAt(s.keyword, why[s.keyword.text] ?? `${q(s.keyword.text)} is not supported by urbd`);
}
