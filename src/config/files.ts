// Reading config files and splicing `include` statements in place.
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError, errorAt, q } from './errors.js';
import { glob, hasWildcard } from './glob.js';
import { lex, type Token } from './lexer.js';
import { requireValues } from './sections.js';
import { parseStatements, type Statement } from './syntax.js';

/** Far above any real config; stops a mistaken include of a disk image from eating memory. */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;

function describeErrno(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a part of the path is not a directory';
    default:
      return code ?? String(e);
  }
}

/** Reads a config file; problems are whole-file ConfigErrors (line 0). */
export function readConfigFile(file: string): string {
  try {
    const st = statSync(file);
    if (st.isDirectory())
      throw new ConfigError(file, 0, 0, 'cannot read config file: is a directory');
    if (st.isFile() && st.size > MAX_FILE_BYTES) {
      throw new ConfigError(file, 0, 0, `config file is larger than ${MAX_FILE_BYTES >> 20} MiB`);
    }
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(file, 0, 0, `cannot read config file: ${describeErrno(e)}`);
  }
}

interface IncludeState {
  /** Resolved paths of every file read so far: drbdadm reads a file only once. */
  read: Set<string>;
  checkTopKeyword?: (keyword: Token) => void;
}

/**
 * Parses `text` (the contents of `file`) and replaces every `include` statement, wherever it
 * appears, by the statements of the files it names. A file already read is not read again, as
 * with drbdadm: DRBD's shipped layout includes global_common.conf from drbd.conf and again from
 * each .res file. `checkTopKeyword` sees each keyword of the top level as soon as it is read.
 */
export function parseWithIncludes(
  text: string,
  file: string,
  checkTopKeyword?: (keyword: Token) => void,
): Statement[] {
  const abs = resolve(file);
  const state: IncludeState = {
    read: new Set([abs]),
    ...(checkTopKeyword === undefined ? {} : { checkTopKeyword }),
  };
  return parseFile(text, file, [abs], state, true);
}

/** `chain` holds the resolved paths of the files being included, outermost first, to catch cycles. */
function parseFile(
  text: string,
  file: string,
  chain: readonly string[],
  state: IncludeState,
  topLevel: boolean,
): Statement[] {
  const check = topLevel ? state.checkTopKeyword : undefined;
  const statements = parseStatements(
    lex(text, file),
    check === undefined ? {} : { checkTopKeyword: check },
  );
  return expand(statements, file, chain, state, topLevel);
}

function expand(
  list: Statement[],
  file: string,
  chain: readonly string[],
  state: IncludeState,
  topLevel: boolean,
): Statement[] {
  const out: Statement[] = [];
  for (const s of list) {
    if (s.keyword.text === 'include') {
      out.push(...include(s, file, chain, state, topLevel));
      continue;
    }
    if (s.block !== undefined) s.block = expand(s.block, file, chain, state, false);
    out.push(s);
  }
  return out;
}

/**
 * A pattern with wildcards may match nothing, as in DRBD: a fresh install has an empty drbd.d/.
 * A plain file name must exist, since naming a missing file is always a mistake.
 */
function include(
  stmt: Statement,
  file: string,
  chain: readonly string[],
  state: IncludeState,
  topLevel: boolean,
): Statement[] {
  const [arg] = requireValues(stmt, 1, 1, 'a file name or pattern, such as "urbd.d/*.res"');
  const pattern = arg.text;
  if (pattern === '') throw errorAt(arg, 'include needs a file name or pattern, not ""');
  const full = isAbsolute(pattern) ? pattern : join(dirname(file), pattern);
  const files = hasWildcard(pattern) ? glob(full) : [full];
  const out: Statement[] = [];
  for (const f of files) {
    const abs = resolve(f);
    const at = chain.indexOf(abs);
    if (at >= 0) {
      throw errorAt(stmt.keyword, `include cycle: ${[...chain.slice(at), abs].join(' -> ')}`);
    }
    if (state.read.has(abs)) continue;
    let text: string;
    try {
      const st = statSync(f);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_FILE_BYTES) {
        throw errorAt(arg, `included file ${f} is larger than ${MAX_FILE_BYTES >> 20} MiB`);
      }
      text = readFileSync(f, 'utf8');
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      const why =
        e instanceof Error && e.message === 'not a regular file' ? e.message : describeErrno(e);
      throw errorAt(arg, `include ${q(pattern)}: cannot read ${f}: ${why}`);
    }
    state.read.add(abs);
    out.push(...parseFile(text, f, [...chain, abs], state, topLevel));
  }
  return out;
}
