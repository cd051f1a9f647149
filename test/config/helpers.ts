import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../../src/config/index.js';

export const F = '/etc/urbd/urbd.conf';

/** The ConfigError `fn` throws; anything else (or nothing) fails the test. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

/**
 * A two-host resource r0; `extra` lands on line 5 and `alphaExtra` inside "on alpha" on line 6,
 * so error positions in tests are easy to count.
 */
export function twoHosts(extra = '', alphaExtra = ''): string {
  return [
    'resource r0 {',
    '  device minor 0;',
    '  disk /dev/sdb;',
    '  meta-disk internal;',
    extra,
    `  on alpha { address 10.0.0.1:7789;${alphaExtra} }`,
    '  on beta { address 10.0.0.2:7789; }',
    '}',
    '',
  ].join('\n');
}

/** A fresh directory with the given files (paths relative to it); removed by the returned cleanup. */
export function tree(files: Record<string, string>): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'urbd-config-'));
  for (const [path, text] of Object.entries(files)) {
    const full = join(dir, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, text);
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Typed resources without source positions, for comparing configs read from different text. */
export function withoutSources(
  resources: ReadonlyArray<{ source: unknown; hosts: Array<{ source: unknown }> }>,
): unknown[] {
  return resources.map(({ source: _s, hosts, ...rest }) => ({
    ...rest,
    hosts: hosts.map(({ source: _h, ...h }) => h),
  }));
}
