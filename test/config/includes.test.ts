import { join } from 'node:path';
import t from 'tap';
import { loadConfig, parseConfigText } from '../../src/config/index.js';
import { segmentRegExp } from '../../src/config/glob.js';
import { configError, tree } from './helpers.js';

const res = (name: string, minor: number) =>
  `resource ${name} { device minor ${minor}; disk /d/${name}; meta-disk internal; on h { } }\n`;

t.test(
  'a glob includes matching files in sorted order, relative to the including file',
  async (t) => {
    const { dir, cleanup } = tree({
      'urbd.conf': 'include "urbd.d/*.res";\n',
      'urbd.d/b.res': res('b', 2),
      'urbd.d/a.res': res('a', 1),
      'urbd.d/c.res.disabled': res('c', 3),
      'urbd.d/.hidden.res': res('hidden', 4),
      'urbd.d/dir.res/x': 'not read',
    });
    t.teardown(cleanup);
    const cfg = loadConfig(join(dir, 'urbd.conf'));
    t.same(
      cfg.resources.map((r) => r.name),
      ['a', 'b'],
    );
    t.same(cfg.resources[0].source, { file: join(dir, 'urbd.d/a.res'), line: 1, col: 1 });
  },
);

t.test('? and [...] patterns, absolute patterns, and a glob in a directory part', async (t) => {
  const { dir, cleanup } = tree({
    'one/r1.res': res('r1', 1),
    'two/r2.res': res('r2', 2),
    'two/rx.res': res('rx', 3),
    'main.conf': '',
  });
  t.teardown(cleanup);
  const load = (inc: string) =>
    parseConfigText(`include "${inc}";`, join(dir, 'main.conf')).resources.map((r) => r.name);
  t.same(load('*/r?.res'), ['r1', 'r2', 'rx']);
  t.same(load('two/r[0-9].res'), ['r2']);
  t.same(load('two/r[!0-9].res'), ['rx']);
  t.same(load(`${dir}/one/*.res`), ['r1']);
  t.same(load('one/r1.res'), ['r1'], 'a plain file name');
});

t.test('segment patterns follow glob(3)', async (t) => {
  t.ok(segmentRegExp('*.res').test('a.res'));
  t.notOk(segmentRegExp('*.res').test('.a.res'), 'no leading dot');
  t.ok(segmentRegExp('.*.res').test('.a.res'));
  t.ok(segmentRegExp('[]a].x').test(']'.concat('.x')), '] first is a member');
  t.ok(segmentRegExp('a[.x').test('a[.x'), 'an unclosed [ is literal');
  t.ok(segmentRegExp('a\\*').test('a*'), 'escaped star');
  t.notOk(segmentRegExp('a\\*').test('ab'));
  t.ok(segmentRegExp('(x)+').test('(x)+'), 'regex characters are literal');
});

t.test(
  'includes nest, each relative to its own file, and may appear inside sections',
  async (t) => {
    const { dir, cleanup } = tree({
      'etc/urbd.conf': 'include "conf.d/*.conf";\n',
      'etc/conf.d/common.conf': 'common { net { ko-count 4; } }\ninclude "../res/r0.res";\n',
      'etc/res/r0.res':
        'resource r0 {\n  include "parts/devices.inc";\n  on alpha { address 10.0.0.1:7789; }\n  on beta { address 10.0.0.2:7789; }\n}\n',
      'etc/res/parts/devices.inc': 'device minor 0;\ndisk /dev/sdb;\nmeta-disk internal;\n',
    });
    t.teardown(cleanup);
    const cfg = loadConfig(join(dir, 'etc/urbd.conf'));
    t.equal(cfg.resources[0].net.koCount, 4);
    t.equal(cfg.resources[0].hosts[0].disk, '/dev/sdb');
  },
);

t.test(
  'a pattern that matches nothing is fine (as in DRBD); a missing named file is not',
  async (t) => {
    const { dir, cleanup } = tree({
      'urbd.conf': 'include "urbd.d/*.res";\ninclude "missing.res";\n',
    });
    t.teardown(cleanup);
    const file = join(dir, 'urbd.conf');
    t.equal(
      configError(() => loadConfig(file)).message,
      `${file}:2:9: include "missing.res": cannot read ${join(dir, 'missing.res')}: no such file or directory`,
    );
    t.same(parseConfigText('include "nothing/*.res";', file).resources, []);
  },
);

t.test('a named directory is not a config file', async (t) => {
  const { dir, cleanup } = tree({ 'sub/x': '' });
  t.teardown(cleanup);
  const file = join(dir, 'urbd.conf');
  t.equal(
    configError(() => parseConfigText('include "sub";', file)).message,
    `${file}:1:9: include "sub": cannot read ${join(dir, 'sub')}: not a regular file`,
  );
});

t.test('include cycles are reported with the chain of files', async (t) => {
  const { dir, cleanup } = tree({
    'urbd.conf': 'include "a.conf";\n',
    'a.conf': '# a\ninclude "b/*.conf";\n',
    'b/b.conf': 'include "../urbd.conf";\n',
    'self.conf': 'include "self.conf";\n',
  });
  t.teardown(cleanup);
  const main = join(dir, 'urbd.conf');
  const e = configError(() => loadConfig(main));
  t.equal(
    e.message,
    `${join(dir, 'b/b.conf')}:1:1: include cycle: ${main} -> ${join(dir, 'a.conf')} -> ${join(dir, 'b/b.conf')} -> ${main}`,
  );
  t.equal(e.file, join(dir, 'b/b.conf'));
  const self = join(dir, 'self.conf');
  t.equal(
    configError(() => loadConfig(self)).message,
    `${self}:1:1: include cycle: ${self} -> ${self}`,
  );
});

t.test('errors inside included files name that file and its line', async (t) => {
  const { dir, cleanup } = tree({
    'urbd.conf': 'include "urbd.d/*.res";\n',
    'urbd.d/r0.res': res('r0', 0),
    'urbd.d/r1.res': '\n\nresource r1 {\n  disk {\n    al-extent 100;\n  }\n}\n',
    'dup/x.res': res('r0', 5),
  });
  t.teardown(cleanup);
  const file = join(dir, 'urbd.conf');
  t.equal(
    configError(() => loadConfig(file)).message,
    `${join(dir, 'urbd.d/r1.res')}:5:5: unknown keyword "al-extent" in disk section; did you mean "al-extents"?`,
  );
  t.equal(
    configError(() => parseConfigText('include "urbd.d/r0.res";\ninclude "dup/x.res";\n', file))
      .message,
    `${join(dir, 'dup/x.res')}:1:1: resource "r0" is defined twice (first at ${join(dir, 'urbd.d/r0.res')}:1:1)`,
  );
});

t.test('include needs exactly one name', async (t) => {
  const file = '/nonexistent-urbd/urbd.conf';
  t.equal(
    configError(() => parseConfigText('include;', file)).message,
    `${file}:1:8: expected a value for "include" (a file name or pattern, such as "urbd.d/*.res")`,
  );
  t.equal(
    configError(() => parseConfigText('include a b;', file)).message,
    `${file}:1:11: expected ";" after value of "include"`,
  );
  t.equal(
    configError(() => parseConfigText('include "";', file)).message,
    `${file}:1:9: include needs a file name or pattern, not ""`,
  );
});
