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

/** Builds the statement tree; iterative so that deep nesting cannot overflow the call stack. */
export function parseStatements(tokens: readonly Token[]): Statement[] {
  const root: Statement[] = [];
  const open: Open[] = [];
  let list = root;
  let i = 0;
  for (;;) {
    const tok = tokens[i];
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
        i++;
        continue;
      case '}': {
        const inner = open.pop();
        if (inner === undefined) throw errorAt(tok, 'unexpected "}" with no open section');
        list = inner.parent;
        i++;
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
    const args: Token[] = [];
    i++;
    while (tokens[i].kind === 'word' || tokens[i].kind === 'string') args.push(tokens[i++]);
    const end = tokens[i];
    if (end.kind === ';') {
      list.push({ keyword, args, terminator: end });
      i++;
    } else if (end.kind === '{') {
      if (open.length >= MAX_DEPTH) {
        throw errorAt(end, `sections nested too deeply (more than ${MAX_DEPTH} levels)`);
      }
      const stmt: Statement = { keyword, args, terminator: end, block: [] };
      list.push(stmt);
      open.push({ stmt, parent: list });
      list = stmt.block as Statement[];
      i++;
    } else if (end.kind === 'eof') {
      throw errorAt(end, `unexpected end of file: expected ";" after ${afterWhat(keyword, args)}`);
    } else {
      throw errorAt(end, `expected ";" after ${afterWhat(keyword, args)}`);
    }
  }
}
