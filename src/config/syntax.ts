import { errorAt, q } from './errors.js';
import type { Token } from './lexer.js';

/**
 * One statement of the generic drbd.conf grammar:
 *   KEYWORD ARG* ;            (an option)
 *   KEYWORD ARG* { STATEMENT* }   (a section)
 * What keywords mean, and which may carry a block, is the loader's business.
 */
export interface Statement {
  keyword: Token;
  args: Token[];
  /** The `;` or `{` that ended the head of the statement. */
  terminator: Token;
  block?: Statement[];
}

/** Real files nest four or five deep; the cap keeps hostile input from exhausting the stack later. */
export const MAX_DEPTH = 32;

export function headText(keyword: Token, args: readonly Token[]): string {
  return [keyword, ...args].map((t) => t.text).join(' ');
}

export function afterWhat(keyword: Token, args: readonly Token[]): string {
  return args.length > 0 ? `value of ${q(keyword.text)}` : q(keyword.text);
}

interface Open {
  stmt: Statement;
  parent: Statement[];
}

/** Far above any real statement (a connection-mesh of 32 hosts); a run of words longer than this is junk. */
export const MAX_ARGS = 64;

export interface ParseOptions {
  /**
   * Called with each top-level keyword as soon as it is read, so a file that goes wrong from its
   * first word is reported there and not at the end of file where its statement would end.
   */
  checkTopKeyword?: (keyword: Token) => void;
}

function toIterator(tokens: Iterable<Token> | Iterator<Token, Token>): () => Token {
  const it =
    Symbol.iterator in tokens
      ? (tokens as Iterable<Token>)[Symbol.iterator]()
      : (tokens as Iterator<Token, Token>);
  let last: Token | undefined;
  return () => {
    const r = it.next();
    // An array of tokens ends with its eof token; a lexer returns it as the final value.
    if (r.done === true) return (r.value as Token | undefined) ?? (last as Token);
    last = r.value;
    return r.value;
  };
}

/** Builds the statement tree; iterative so that deep nesting cannot overflow the call stack. */
export function parseStatements(
  tokens: Iterable<Token> | Iterator<Token, Token>,
  opts: ParseOptions = {},
): Statement[] {
  const next = toIterator(tokens);
  const root: Statement[] = [];
  const open: Open[] = [];
  let list = root;
  let tok = next();
  for (;;) {
    switch (tok.kind) {
      case 'eof': {
        const inner = open[open.length - 1];
        if (inner === undefined) return root;
        const s = inner.stmt;
        throw errorAt(
          tok,
          `unexpected end of file: ${q(headText(s.keyword, s.args))} opened at ${s.keyword.line}:${s.keyword.col} is not closed`,
        );
      }
      case ';':
        // Tolerates `};` and doubled semicolons, habits from C that carry no meaning.
        tok = next();
        continue;
      case '}': {
        const inner = open.pop();
        if (inner === undefined) throw errorAt(tok, 'unexpected "}" with no open section');
        list = inner.parent;
        tok = next();
        continue;
      }
      case '{':
        throw errorAt(tok, 'expected a keyword before "{"');
      case 'string':
        throw errorAt(tok, `expected a keyword, found the string ${q(tok.text)}`);
      case 'word':
        break;
    }
    const keyword = tok;
    if (open.length === 0) opts.checkTopKeyword?.(keyword);
    const args: Token[] = [];
    tok = next();
    while (tok.kind === 'word' || tok.kind === 'string') {
      if (args.length === MAX_ARGS) {
        throw errorAt(tok, `expected ";" after ${afterWhat(keyword, args)} (too many words)`);
      }
      args.push(tok);
      tok = next();
    }
    const end = tok;
    if (end.kind === ';') {
      list.push({ keyword, args, terminator: end });
      tok = next();
    } else if (end.kind === '{') {
      if (open.length >= MAX_DEPTH) {
        throw errorAt(end, `sections nested too deeply (more than ${MAX_DEPTH} levels)`);
      }
      const stmt: Statement = { keyword, args, terminator: end, block: [] };
      list.push(stmt);
      open.push({ stmt, parent: list });
      list = stmt.block as Statement[];
      tok = next();
    } else if (end.kind === 'eof') {
      throw errorAt(end, `unexpected end of file: expected ";" after ${afterWhat(keyword, args)}`);
    } else {
      throw errorAt(end, `expected ";" after ${afterWhat(keyword, args)}`);
    }
  }
}
