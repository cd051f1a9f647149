// Pure converters from drbd.conf value text to numbers and addresses. They throw ValueError
// (no position); the loader turns that into a ConfigError pointing at the offending word.
import { isIPv4, isIPv6 } from 'node:net';
import type { Address } from './types.js';

export class ValueError extends Error {
  override name = 'ValueError';
  /** Which of the statement's arguments is wrong. */
  readonly argIndex: number;
  constructor(message: string, argIndex = 0) {
    super(message);
    this.argIndex = argIndex;
  }
}

const q = (s: string): string => JSON.stringify(s);

export const SECTOR = 512;
export const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/** DRBD's unit suffixes, either case: s = 512-byte sectors, k/m/g/t = powers of 1024. */
const SUFFIX_BYTES: Record<string, number> = { s: SECTOR, k: KiB, m: MiB, g: GiB, t: TiB };

export function parseWholeNumber(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * A whole number with drbdadm's optional suffix: k, m or g (either case) multiply by powers of
 * 1024 on any number, so `max-buffers 36k` is 36864.
 */
export function parseScaledNumber(text: string): number | undefined {
  const m = /^([0-9]+)([kKmMgG]?)$/.exec(text);
  if (m === null) return undefined;
  const shift = { '': 0, k: 10, m: 20, g: 30 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * 2 ** shift;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** parseIntInRange for option values, which drbdadm lets carry a k/m/g suffix. */
export function parseScaledIntInRange(
  name: string,
  text: string,
  min: number,
  max: number,
  unit = '',
): number {
  const n = parseScaledNumber(text);
  return parseIntInRange(name, n === undefined ? text : String(n), min, max, unit, text);
}

export function parseIntInRange(
  name: string,
  text: string,
  min: number,
  max: number,
  unit = '',
  written = text,
): number {
  const n = parseWholeNumber(text);
  if (n === undefined || n < min || n > max) {
    const u = unit === '' ? '' : ` (${unit})`;
    throw new ValueError(
      `${name} must be a whole number from ${min} to ${max}${u}, not ${q(written)}`,
    );
  }
  return n;
}

/** A number with an optional suffix, in bytes; a bare number counts `bareUnitBytes` each. */
export function parseScaledBytes(text: string, bareUnitBytes: number): number | undefined {
  const m = /^([0-9]+)([sSkKmMgGtT]?)$/.exec(text);
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = m[2] === '' ? bareUnitBytes : SUFFIX_BYTES[m[2].toLowerCase()];
  const bytes = n * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** "1 KiB/s", "100 MiB/s", "4 GiB/s": the largest unit that divides exactly. */
export function describeKiB(kib: number): string {
  if (kib !== 0 && kib % (1024 * 1024) === 0) return `${kib / (1024 * 1024)} GiB`;
  if (kib !== 0 && kib % 1024 === 0) return `${kib / 1024} MiB`;
  return `${kib} KiB`;
}

/** Rates: bare numbers are KiB/s, as in DRBD (its rate scale is 'k'). */
export function parseRateKiB(name: string, text: string, minKiB: number, maxKiB: number): number {
  const bytes = parseScaledBytes(text, KiB);
  if (bytes === undefined || bytes % KiB !== 0) {
    throw new ValueError(
      `${name} must be a rate such as 100M or 250K (bare numbers are KiB/s), not ${q(text)}`,
    );
  }
  const kib = bytes / KiB;
  if (kib < minKiB || kib > maxKiB) {
    throw new ValueError(
      `${name} must be from ${describeKiB(minKiB)}/s to ${describeKiB(maxKiB)}/s, not ${q(text)}`,
    );
  }
  return kib;
}

/** Sizes: bare numbers are 512-byte sectors, as in DRBD (its disk-size scale is 's'). */
export function parseSizeBytes(name: string, text: string, maxBytes: number): number {
  const bytes = parseScaledBytes(text, SECTOR);
  if (bytes === undefined || bytes % SECTOR !== 0) {
    throw new ValueError(
      `${name} must be a size such as 10G or 2048 (bare numbers are 512-byte sectors), not ${q(text)}`,
    );
  }
  if (bytes > maxBytes)
    throw new ValueError(`${name} must be at most ${formatBytes(maxBytes)}, not ${q(text)}`);
  return bytes;
}

/** Quantities DRBD counts in sectors (c-fill-target, congestion-fill); suffixes are converted. */
export function parseSectors(name: string, text: string, min: number, max: number): number {
  const bytes = parseScaledBytes(text, SECTOR);
  if (bytes === undefined || bytes % SECTOR !== 0) {
    throw new ValueError(
      `${name} must be a size such as 1M or 100 (bare numbers are 512-byte sectors), not ${q(text)}`,
    );
  }
  const sectors = bytes / SECTOR;
  if (sectors < min || sectors > max) {
    throw new ValueError(`${name} must be from ${min} to ${max} sectors, not ${q(text)}`);
  }
  return sectors;
}

/** Byte counts back in DRBD syntax, using the largest exact suffix, else sectors. */
export function formatBytes(bytes: number): string {
  for (const [suffix, unit] of [
    ['T', TiB],
    ['G', GiB],
    ['M', MiB],
    ['K', KiB],
  ] as const) {
    if (bytes !== 0 && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return `${bytes / SECTOR}`;
}

export function formatRateKiB(kib: number): string {
  if (kib !== 0 && kib % (1024 * 1024) === 0) return `${kib / (1024 * 1024)}G`;
  if (kib !== 0 && kib % 1024 === 0) return `${kib / 1024}M`;
  return `${kib}K`;
}

export function parseBoolean(name: string, text: string): boolean {
  if (text === 'yes') return true;
  if (text === 'no') return false;
  throw new ValueError(`${name} must be yes or no, not ${q(text)}`);
}

const ADDRESS_EXAMPLES = 'such as 10.0.0.1:7789, ipv4 10.0.0.1:7789 or ipv6 [fd00::1]:7789';

function parsePort(text: string, argIndex: number): number {
  const port = parseWholeNumber(text);
  if (port === undefined || port < 1 || port > 65535) {
    throw new ValueError(`port must be from 1 to 65535, not ${q(text)}`, argIndex);
  }
  return port;
}

/**
 * `IP:PORT`, `[IPv6]:PORT`, optionally preceded by the family `ipv4` or `ipv6` as DRBD writes it.
 * Only numeric addresses: DRBD requires them too, and a name that resolves differently on each
 * node would silently break the pairing of hosts.
 */
export function parseAddress(name: string, args: readonly string[]): Address {
  if (args.length === 0 || args.length > 2) {
    throw new ValueError(
      `${name} must be an address ${ADDRESS_EXAMPLES}`,
      Math.min(args.length, 2),
    );
  }
  let family: 'ipv4' | 'ipv6' | undefined;
  const i = args.length - 1;
  if (args.length === 2) {
    const f = args[0];
    if (f !== 'ipv4' && f !== 'ipv6') {
      throw new ValueError(`address family ${q(f)} is not supported by urbd; use ipv4 or ipv6`, 0);
    }
    family = f;
  }
  const text = args[i];
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  if (bracketed !== null) {
    const host = bracketed[1];
    if (!isIPv6(host)) throw new ValueError(`${q(host)} is not an IPv6 address`, i);
    if (family === 'ipv4') {
      throw new ValueError(`${q(host)} is an IPv6 address but the family says ipv4`, i);
    }
    return { family: 'ipv6', host, port: parsePort(bracketed[2], i) };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) {
    throw new ValueError(`${name} must be an address ${ADDRESS_EXAMPLES}, not ${q(text)}`, i);
  }
  const host = text.slice(0, colon);
  if (isIPv6(host) || host.includes(':')) {
    throw new ValueError(
      `IPv6 addresses go in brackets with the port outside, such as [fd00::1]:7789, not ${q(text)}`,
      i,
    );
  }
  if (!isIPv4(host)) {
    throw new ValueError(`${q(host)} is not an IPv4 address (urbd needs numeric addresses)`, i);
  }
  if (family === 'ipv6') {
    throw new ValueError(`${q(host)} is an IPv4 address but the family says ipv6`, i);
  }
  return { family: 'ipv4', host, port: parsePort(text.slice(colon + 1), i) };
}

export function formatAddress(a: Address): string {
  return a.family === 'ipv6' ? `ipv6 [${a.host}]:${a.port}` : `ipv4 ${a.host}:${a.port}`;
}

/** Identity of an address for duplicate checks; the family is implied by the host. */
export function addressKey(a: Address): string {
  return a.family === 'ipv6' ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
