import t from 'tap';
import {
  configPath,
  DEFAULT_CONFIG_PATH,
  hostFor,
  parseConfigText,
  resourceFor,
} from '../../src/config/index.js';
import { F, twoHosts } from './helpers.js';

t.test('configPath: --config, then URBD_CONFIG, then the default', async (t) => {
  const saved = process.env.URBD_CONFIG;
  t.teardown(() => {
    if (saved === undefined) delete process.env.URBD_CONFIG;
    else process.env.URBD_CONFIG = saved;
  });
  delete process.env.URBD_CONFIG;
  t.equal(DEFAULT_CONFIG_PATH, '/etc/urbd/urbd.conf');
  t.equal(configPath(), '/etc/urbd/urbd.conf');
  t.equal(configPath(''), '/etc/urbd/urbd.conf');
  t.equal(configPath('/tmp/a.conf'), '/tmp/a.conf');
  process.env.URBD_CONFIG = '/srv/urbd.conf';
  t.equal(configPath(), '/srv/urbd.conf');
  t.equal(configPath('/tmp/a.conf'), '/tmp/a.conf');
  process.env.URBD_CONFIG = '';
  t.equal(configPath(), '/etc/urbd/urbd.conf');
});

t.test('resourceFor and hostFor find by name or say what exists', async (t) => {
  const cfg = parseConfigText(
    `${twoHosts()}resource r1 { device minor 1; disk /x; meta-disk internal; on solo { } }`,
    F,
  );
  t.equal(resourceFor(cfg, 'r1').name, 'r1');
  t.throws(() => resourceFor(cfg, 'r9'), {
    message: `no resource "r9" in ${F} (resources: r0, r1)`,
  });
  t.throws(() => resourceFor(parseConfigText('', F), 'r0'), {
    message: `no resource "r0" in ${F} (resources: none)`,
  });
  const r0 = resourceFor(cfg, 'r0');
  t.equal(hostFor(r0, 'beta').name, 'beta');
  t.throws(() => hostFor(r0, 'gamma'), {
    message: `resource r0 has no "on gamma" section in ${F} (hosts: alpha, beta)`,
  });
  try {
    resourceFor(cfg, 'x');
  } catch (e) {
    t.equal((e as Error).constructor, Error, 'a plain Error, not a ConfigError');
  }
});
