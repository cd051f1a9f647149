import t from 'tap';
import { ConfigError } from '../../src/config/index.js';
import { lex, tokenize } from '../../src/config/lexer.js';
import { configError } from './helpers.js';

const kinds = (text: string): string[] =>
  tokenize(text, 'f').map((tok) => `${tok.kind}:${tok.text}@${tok.line}:${tok.col}`);

t.test('words, braces and semicolons carry 1-based line and column', async (t) => {
  t.same(kinds('resource r0 {\n  protocol C;\n}'), [
    'word:resource@1:1',
    'word:r0@1:10',
    '{:{@1:13',
    'word:protocol@2:3',
    'word:C@2:12',
    ';:;@2:13',
    '}:}@3:1',
    'eof:@3:2',
  ]);
});

t.test('comments run to the end of the line, even right after a word', async (t) => {
  t.same(kinds('a # b { c ;\nd#e\n# whole line'), ['word:a@1:1', 'word:d@2:1', 'eof:@3:13']);
});

t.test(
  'a backslash in a string keeps the next character and is dropped, as in drbdadm',
  async (t) => {
    const [s] = tokenize(String.raw`"say \"hi\" \\ and \n"`, 'f');
    t.equal(s.kind, 'string');
    t.equal(s.text, String.raw`say "hi" \ and n`);
    t.equal(tokenize(String.raw`"echo \$X \\$Y"`, 'f')[0].text, String.raw`echo $X \$Y`);
    t.same(kinds('x"a b"y'), ['word:x@1:1', 'string:a b@1:2', 'word:y@1:7', 'eof:@1:8']);
    t.equal(tokenize('""', 'f')[0].text, '');
  },
);

t.test('special characters end a word', async (t) => {
  t.same(kinds('a{b}c;d'), [
    'word:a@1:1',
    '{:{@1:2',
    'word:b@1:3',
    '}:}@1:4',
    'word:c@1:5',
    ';:;@1:6',
    'word:d@1:7',
    'eof:@1:8',
  ]);
});

t.test('CRLF line ends, tabs, a byte-order mark and Unicode spaces are whitespace', async (t) => {
  t.same(kinds('\ufeffa\r\n\tb\u00a0c'), ['word:a@1:1', 'word:b@2:2', 'word:c@2:4', 'eof:@2:5']);
});

t.test('unterminated strings are reported where they open', async (t) => {
  const e = configError(() => tokenize('net {\n  shared-secret "abc;\n}', '/x.conf'));
  t.equal(e.message, '/x.conf:2:17: unterminated string; expected a closing " on the same line');
  t.equal(e.line, 2);
  t.equal(e.col, 17);
  t.equal(e.file, '/x.conf');
  t.equal(e.reason, 'unterminated string; expected a closing " on the same line');
  t.ok(e instanceof ConfigError);
  t.equal(e.name, 'ConfigError');
  t.equal(
    configError(() => tokenize('x "abc\\"', 'f')).message,
    'f:1:3: unterminated string; expected a closing " on the same line',
  );
});

t.test('empty input is just end of file', async (t) => {
  t.same(kinds(''), ['eof:@1:1']);
});

t.test(
  'a skip block becomes "{" and its closing "}", unread; skip as a value is a word',
  async (t) => {
    t.same(kinds('skip {\n "x { # }\n}\nskip a;\ndisk skip;'), [
      'word:skip@1:1',
      '{:{@1:6',
      '}:}@3:1',
      'word:skip@4:1',
      'word:a@4:6',
      ';:;@4:7',
      'word:disk@5:1',
      'word:skip@5:6',
      ';:;@5:10',
      'eof:@5:11',
    ]);
  },
);

t.test('lex is lazy: tokens before a bad string come out before the error', async (t) => {
  const it = lex('a b\n"open', 'f');
  t.equal(it.next().value.text, 'a');
  t.equal(it.next().value.text, 'b');
  t.throws(() => it.next(), {
    message: 'f:2:1: unterminated string; expected a closing " on the same line',
  });
});
