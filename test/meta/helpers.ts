import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { MetaError } from '../../src/meta/store.js';

export type TestContext = Parameters<Parameters<typeof t.test>[0]>[0];

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** A fresh directory under the system temp dir, removed when `t` ends. */
export function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'urbd-meta-'));
  t.teardown(() => {
    fs.chmodSync(dir, 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Runs `fn`, which must throw a MetaError; returns it. */
export function metaErrorOf(fn: () => unknown): MetaError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MetaError) return err;
    throw err;
  }
  throw new Error('expected a MetaError, nothing was thrown');
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'meta-child.js');

export interface ChildResult {
  ok: boolean;
  code?: string;
  message?: string;
}

/**
 * Opens `file` in a child process and reports the outcome. With `dropDac`, the child runs
 * without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv), so file modes apply even to root;
 * as a non-root user it needs nothing special. Returns undefined when root cannot drop them
 * (no setpriv).
 */
export function openInChild(
  file: string,
  mode: 'rw' | 'ro',
  opts: { dropDac?: boolean } = {},
): ChildResult | undefined {
  const args = [process.execPath, CHILD, 'open', file, mode];
  let r;
  if (opts.dropDac === true && process.getuid?.() === 0) {
    const caps = '-dac_override,-dac_read_search';
    r = spawnSync('setpriv', [`--bounding-set=${caps}`, `--inh-caps=${caps}`, ...args], {
      encoding: 'utf8',
    });
    if (r.error !== undefined) return undefined;
  } else {
    r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  }
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildResult;
}

/** A child process holding `file` open until release() (or kill()). */
export interface Holder {
  release(): Promise<void>;
  kill(): Promise<void>;
}

export async function holdInChild(
  file: string,
  mode: 'rw' | 'ro',
  extra: 'unclean' | '' = '',
): Promise<Holder> {
  const child = spawn(process.execPath, [CHILD, 'hold', file, mode, extra], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
      else if (out.includes('error')) reject(new Error(out));
    });
    child.once('exit', (code) => reject(new Error(`holder exited (${code}): ${out}`)));
  });
  return {
    async release() {
      child.stdin.end();
      await exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
