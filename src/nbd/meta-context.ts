import { BASE_ALLOCATION, MAX_STRING } from './constants.js';

/** LIST/SET_META_CONTEXT payload: u32 name length, name, u32 count, count × (u32 len, query). */
export function parseMetaRequest(data: Buffer): { name: string; queries: string[] } | string {
  if (data.length < 8) return 'meta-context data is too short';
  const nameLen = data.readUInt32BE(0);
  if (nameLen > MAX_STRING || data.length < 4 + nameLen + 4) return 'bad export name length';
  const name = data.toString('utf8', 4, 4 + nameLen);
  const count = data.readUInt32BE(4 + nameLen);
  const queries: string[] = [];
  let at = 8 + nameLen;
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return 'meta-context query list is truncated';
    const len = data.readUInt32BE(at);
    if (len > MAX_STRING || at + 4 + len > data.length) return 'bad meta-context query length';
    queries.push(data.toString('utf8', at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== data.length) return 'meta-context data has trailing bytes';
  return { name, queries };
}

/**
 * Whether a LIST or SET query list names base:allocation, our only context. The two differ:
 * LIST with no query lists everything and takes the bare namespace `base:` as a wildcard;
 * SET selects only what is named, and the spec says it MUST ignore `base:`. Queries of other
 * namespaces are ignored by both, as the spec asks.
 */
export function selectsAllocation(kind: 'list' | 'set', queries: readonly string[]): boolean {
  if (kind === 'list') {
    return queries.length === 0 || queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
  }
  return queries.includes(BASE_ALLOCATION);
}
