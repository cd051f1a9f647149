// Reading option sections (net, disk, startup, options, handlers, syncer, global) into a Scope.
import { errorAt, oneOf, posText, q } from './errors.js';
import type { Token } from './lexer.js';
import {
  HANDLER_ALIASES,
  HANDLERS,
  type OptionSection,
  SECTIONS,
  type SettingKey,
  type Spec,
} from './schema.js';
import { didYouMean } from './suggest.js';
import { afterWhat, headText, type Statement } from './syntax.js';
import type { IgnoredOption } from './types.js';
import { ValueError } from './values.js';

export interface Setting {
  value: unknown;
  keyword: Token;
  args: Token[];
}

/** The options given in one `common` section or one resource, keyed by where they land. */
export class Scope {
  readonly settings = new Map<SettingKey | `handlers.${string}`, Setting>();
  /** "common" or "resource r0", for messages. */
  readonly label: string;
  constructor(label: string) {
    this.label = label;
  }

  set(key: SettingKey | `handlers.${string}`, setting: Setting): void {
    const prev = this.settings.get(key);
    if (prev !== undefined) throw givenTwice(setting.keyword, prev.keyword, this.label);
    this.settings.set(key, setting);
  }
}

export function givenTwice(again: Token, first: Token, label: string): Error {
  const as = again.text === first.text ? '' : ` as ${q(first.text)}`;
  return errorAt(
    again,
    `${q(again.text)} is given twice in ${label} (first${as} at ${posText(first)})`,
  );
}

export interface LoadContext {
  ignored: IgnoredOption[];
}

export function recordIgnored(
  ctx: LoadContext,
  stmt: Statement,
  where: string,
  note?: string,
): void {
  ctx.ignored.push({
    keyword: stmt.keyword.text,
    where,
    text: headText(stmt.keyword, stmt.args) + (stmt.block === undefined ? '' : ' { ... }'),
    ...(note === undefined ? {} : { note }),
    source: { file: stmt.keyword.file, line: stmt.keyword.line, col: stmt.keyword.col },
  });
}

/** A section keyword must be followed directly by `{`. */
export function requireBlock(
  stmt: Statement,
  what = headText(stmt.keyword, stmt.args),
): Statement[] {
  if (stmt.block === undefined) throw errorAt(stmt.terminator, `expected "{" after ${q(what)}`);
  return stmt.block;
}

export function requireNoArgs(stmt: Statement): void {
  if (stmt.args.length > 0) {
    throw errorAt(
      stmt.args[0],
      `${q(stmt.keyword.text)} takes no name; expected "{" after ${q(stmt.keyword.text)}`,
    );
  }
}

/** Checks the shape `KEYWORD VALUE{min,max};` and returns the values. */
export function requireValues(stmt: Statement, min: number, max: number, expect: string): Token[] {
  const { keyword, args } = stmt;
  if (args.length > max) {
    throw errorAt(args[max], `expected ";" after ${afterWhat(keyword, args.slice(0, max))}`);
  }
  if (stmt.block !== undefined) {
    throw errorAt(stmt.terminator, `expected ";" after ${afterWhat(keyword, args)}`);
  }
  if (args.length < min) {
    throw errorAt(stmt.terminator, `expected a value for ${q(keyword.text)} (${expect})`);
  }
  return args;
}

/** Runs a value converter, pointing any complaint at the word it concerns. */
export function convert<T>(stmt: Statement, parse: (args: string[]) => T): T {
  try {
    return parse(stmt.args.map((t) => t.text));
  } catch (e) {
    if (e instanceof ValueError) {
      const at = stmt.args[Math.min(e.argIndex, stmt.args.length - 1)] ?? stmt.keyword;
      throw errorAt(at, e.message);
    }
    throw e;
  }
}

const SECTION_ORDER: Array<OptionSection | 'handlers'> = [
  'net',
  'disk',
  'options',
  'startup',
  'handlers',
];

function sectionKeywords(section: OptionSection | 'handlers'): string[] {
  return section === 'handlers' ? HANDLERS : [...SECTIONS[section].keys()];
}

/** An unknown keyword: say where it belongs if it is known elsewhere, else suggest a near one. */
export function unknownKeyword(
  tok: Token,
  sectionLabel: string,
  candidates: Iterable<string>,
  elsewhere?: string,
): Error {
  if (elsewhere !== undefined) {
    return errorAt(tok, `${q(tok.text)} belongs in ${elsewhere}, not in the ${sectionLabel}`);
  }
  const list = [...candidates];
  const hint = didYouMean(tok.text, list);
  return errorAt(
    tok,
    `unknown keyword ${q(tok.text)} in ${sectionLabel}${hint === '' ? expected(list) : hint}`,
  );
}

function expected(candidates: string[]): string {
  return candidates.length === 0 ? '' : `; expected ${oneOf(candidates.map((c) => q(c)))}`;
}

/** Where else a keyword is valid, for "belongs in" messages. */
export function homeOf(keyword: string, except?: string): string | undefined {
  for (const s of SECTION_ORDER) {
    if (s !== except && sectionKeywords(s).includes(keyword)) return `the ${s} section`;
  }
  return undefined;
}

/**
 * Reads one option section into `scope`. `where` ("common", "resource r0") labels ignored options.
 */
export function readOptionSection(
  stmt: Statement,
  section: OptionSection | 'handlers',
  scope: Scope,
  ctx: LoadContext,
  where: string,
): void {
  requireNoArgs(stmt);
  const body = requireBlock(stmt);
  const whereSection = section === 'global' ? 'global' : `${where} ${section}`;
  for (const s of body) {
    const kw = s.keyword.text;
    if (kw === 'skip') {
      recordIgnored(ctx, s, whereSection);
      continue;
    }
    if (section === 'handlers') {
      const name = HANDLER_ALIASES[kw] ?? kw;
      if (!HANDLERS.includes(name)) {
        throw unknownKeyword(s.keyword, 'handlers section', HANDLERS, homeOf(kw, 'handlers'));
      }
      const [value] = requireValues(s, 1, 1, 'a command, usually in double quotes');
      scope.set(`handlers.${name}`, { value: value.text, keyword: s.keyword, args: s.args });
      continue;
    }
    const spec: Spec | undefined = SECTIONS[section].get(kw);
    if (spec === undefined) {
      throw unknownKeyword(
        s.keyword,
        `${section} section`,
        sectionKeywords(section),
        section === 'global' ? undefined : homeOf(kw, section),
      );
    }
    if (spec.kind === 'ignored') {
      requireValues(s, 0, Infinity, '');
      const why = spec.reject?.(s.args.map((t) => t.text));
      if (why !== undefined) throw errorAt(s.args[0] ?? s.keyword, why);
      recordIgnored(ctx, s, whereSection);
      continue;
    }
    requireValues(s, spec.minArgs, spec.maxArgs, spec.expect);
    const value = convert(s, (args) => spec.parse(args));
    scope.set(spec.key, { value, keyword: s.keyword, args: s.args });
  }
}
