// The subset of glob(3) drbd.conf includes use: * ? [...] within one path segment, no **.
// Node 20 has no fs.glob; this is small enough to own.
import { readdirSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

export function hasWildcard(pattern: string): boolean {
  return /[*?[]/.test(pattern);
}

/** A regular expression for one path segment; like glob(3), wildcards do not match a leading dot. */
export function segmentRegExp(segment: string): RegExp {
  let re = segment.startsWith('.') ? '' : '(?!\\.)';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '\\' && i + 1 < segment.length) re += escape(segment[++i]);
    else if (c === '[') {
      // "]" right after "[" or "[!" is a member, not the end.
      let j = i + 1;
      if (segment[j] === '!' || segment[j] === '^') j++;
      if (segment[j] === ']') j++;
      const close = segment.indexOf(']', j);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, (m) => `\\${m}`)}]`;
      i = close;
    } else re += escape(c);
  }
  return new RegExp(`^${re}$`, 's');
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, (m) => `\\${m}`);
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Regular files matching `pattern`, sorted within each directory as glob(3) does. */
export function glob(pattern: string): string[] {
  let paths = [isAbsolute(pattern) ? '/' : ''];
  const segments = pattern.split('/').filter((s) => s.length > 0);
  for (const segment of segments) {
    const next: string[] = [];
    for (const base of paths) {
      if (!hasWildcard(segment)) {
        next.push(base === '' ? segment : join(base, segment));
        continue;
      }
      let entries: string[];
      try {
        entries = readdirSync(base === '' ? '.' : base);
      } catch {
        continue;
      }
      const re = segmentRegExp(segment);
      for (const e of entries.sort()) {
        if (re.test(e)) next.push(base === '' ? e : join(base, e));
      }
    }
    paths = next;
  }
  return paths.filter(isRegularFile);
}
