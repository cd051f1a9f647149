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
 * Splits drbd.conf syntax into tokens, lazily, so that a problem late in a file never hides an
 * earlier one. `#` starts a comment anywhere outside a string (as in drbd.conf); a string must
 * close on the line it opened, so a missing quote is reported where it happened rather than many
 * lines later. Inside a string a backslash keeps the next character as it is and is dropped, as
 * drbdadm's scanner does: `"\$X"` is `$X`, `"\\"` is one backslash.
 *
 * A `skip` statement's block is passed over by counting braces, without reading what is inside
 * (drbdadm's way to comment out a section): it yields `skip`, its words, `{` and the matching `}`.
 */
export function* lex(text: string, file: string): Generator<Token, Token> {
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  // A byte-order mark is not a column an editor would count.
  let lineStart = i;
  /** Where a statement may start: the next word is a keyword. */
  let atKeyword = true;
  let skipAt: Token | undefined;
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
      yield { kind: c, text: c, file, line, col };
      i++;
      atKeyword = true;
      if (c === '{' && skipAt !== undefined) {
        // Count braces up to the one that closes the skipped block; its contents are never read.
        let depth = 1;
        for (; i < n; i++) {
          const d = text[i];
          if (d === '\n') {
            line++;
            lineStart = i + 1;
          } else if (d === '{') depth++;
          else if (d === '}' && --depth === 0) break;
        }
        if (i >= n) {
          throw new ConfigError(
            file,
            line,
            i - lineStart + 1,
            `unexpected end of file: "skip" opened at ${skipAt.line}:${skipAt.col} is not closed`,
          );
        }
        yield { kind: '}', text: '}', file, line, col: i - lineStart + 1 };
        i++;
      }
      skipAt = undefined;
      continue;
    }
    const keywordPos = atKeyword;
    atKeyword = false;
    if (c === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= n || text[i] === '\n' || (text[i] === '\\' && text[i + 1] === '\n')) {
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
        if (d === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      yield { kind: 'string', text: value, file, line, col };
      continue;
    }
    const start = i;
    while (i < n && isWordChar(text[i])) i++;
    const word: Token = { kind: 'word', text: text.slice(start, i), file, line, col };
    if (word.text === 'skip' && keywordPos) skipAt = word;
    yield word;
  }
  return { kind: 'eof', text: '', file, line, col: i - lineStart + 1 };
}

/** Every token of `text`, the end of file included. */
export function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  const it = lex(text, file);
  for (;;) {
    const r = it.next();
    tokens.push(r.value);
    if (r.done === true) return tokens;
  }
}
