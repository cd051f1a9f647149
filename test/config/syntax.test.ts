import t from 'tap';
import { tokenize } from '../../src/config/lexer.js';
import { MAX_DEPTH, parseStatements, type Statement } from '../../src/config/syntax.js';
import { configError } from './helpers.js';

const parse = (text: string): Statement[] => parseStatements(tokenize(text, 'f.conf'));

interface Shape {
  kw: string;
  args: string[];
  block?: Shape[];
}
const shape = (list: Statement[]): Shape[] =>
  list.map((s) => ({
    kw: s.keyword.text,
    args: s.args.map((a) => a.text),
    ...(s.block === undefined ? {} : { block: shape(s.block) }),
  }));

t.test('statements, arguments and nested blocks', async (t) => {
  t.same(
    shape(parse('global { usage-count no; }\nresource r0 { on a { address "1.2.3.4:5"; } }')),
    [
      { kw: 'global', args: [], block: [{ kw: 'usage-count', args: ['no'] }] },
      {
        kw: 'resource',
        args: ['r0'],
        block: [{ kw: 'on', args: ['a'], block: [{ kw: 'address', args: ['1.2.3.4:5'] }] }],
      },
    ],
  );
});

t.test('stray semicolons, as in "};", are tolerated', async (t) => {
  t.same(shape(parse('common { };;\n;')), [{ kw: 'common', args: [], block: [] }]);
});

t.test('syntax errors name the spot and what was expected', async (t) => {
  const cases: Array<[string, string]> = [
    [
      'resource r0 {\n  net {\n',
      'f.conf:3:1: unexpected end of file: "net" opened at 2:3 is not closed',
    ],
    [
      'resource r0 {\n',
      'f.conf:2:1: unexpected end of file: "resource r0" opened at 1:1 is not closed',
    ],
    ['protocol C', 'f.conf:1:11: unexpected end of file: expected ";" after value of "protocol"'],
    ['usage-count', 'f.conf:1:12: unexpected end of file: expected ";" after "usage-count"'],
    ['net { protocol C }', 'f.conf:1:18: expected ";" after value of "protocol"'],
    ['}', 'f.conf:1:1: unexpected "}" with no open section'],
    ['{ }', 'f.conf:1:1: expected a keyword before "{"'],
    ['"resource" r0 { }', 'f.conf:1:1: expected a keyword, found the string "resource"'],
  ];
  for (const [text, message] of cases)
    t.equal(configError(() => parse(text)).message, message, text);
});

t.test('nesting deeper than the cap is an error, not a stack overflow', async (t) => {
  t.doesNotThrow(() => parse('a {'.repeat(MAX_DEPTH) + '}'.repeat(MAX_DEPTH)));
  const deep = 'a {'.repeat(100000);
  t.equal(
    configError(() => parse(deep)).message,
    `f.conf:1:${3 * MAX_DEPTH + 3}: sections nested too deeply (more than ${MAX_DEPTH} levels)`,
  );
});
