import { ConfigError } from './errors.js';

export type TokenKind = 'word' | 'string' | '{' | '}' | ';' | 'eof';

export interface Token {
  kind: TokenKind;
  /** For strings, the unescaped contents. */
  text: string;
  file: string;
  line: number;
  col: number;
}

const SPACE = /\s/;

function isWordChar(c: string): boolean {
  return c !== '{' && c !== '}' && c !== ';' && c !== '"' && c !== '#' && !SPACE.test(c);
}

/**
 * Splits drbd.conf syntax into tokens. `#` starts a comment anywhere outside a string (as in
 * drbd.conf); a string must close on the line it opened, so a missing quote is reported where it
 * happened rather than many lines later. Only \" and \\ are escapes; any other backslash is kept,
 * because handler commands are shell text that may contain its own backslashes.
 */
export function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  // A byte-order mark is not a column an editor would count.
  let lineStart = i;
  while (i < n) {
    const c = text[i];
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (SPACE.test(c)) {
      i++;
      continue;
    }
    const col = i - lineStart + 1;
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '{' || c === '}' || c === ';') {
      tokens.push({ kind: c, text: c, file, line, col });
      i++;
      continue;
    }
    if (c === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= n || text[i] === '\n') {
          throw new ConfigError(
            file,
            line,
            col,
            'unterminated string; expected a closing " on the same line',
          );
        }
        const d = text[i];
        if (d === '"') {
          i++;
          break;
        }
        if (d === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      tokens.push({ kind: 'string', text: value, file, line, col });
      continue;
    }
    const start = i;
    while (i < n && isWordChar(text[i])) i++;
    tokens.push({ kind: 'word', text: text.slice(start, i), file, line, col });
  }
  tokens.push({ kind: 'eof', text: '', file, line, col: i - lineStart + 1 });
  return tokens;
}
