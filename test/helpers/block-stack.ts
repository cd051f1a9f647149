/**
 * A block device on an NBD export without the kernel's nbd module: nbdfuse exposes the
 * export as a file in a FUSE mount, and a loop device turns that file into /dev/loopN,
 * which mkfs and mount accept. Teardown unwinds it top-down (umount, losetup -d,
 * fusermount3 -u, then nbdfuse is killed by PID), whatever state the test left it in.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  run,
  type RunResult,
  sleep,
  spawnTracked,
  type Teardown,
  type Tracked,
  waitFor,
  within,
} from './server.js';

export async function isMounted(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[1] === dir);
}

export interface BlockStack {
  /** /dev/loopN backed by the export. */
  loop: string;
  /** Where mount() mounts it. */
  mnt: string;
  nbdfuse: Tracked;
  mount(): Promise<RunResult>;
  umount(): Promise<RunResult>;
  /** umount (if mounted), losetup -d, fusermount3 -u; resolves with nbdfuse's exit code. */
  detach(): Promise<number | null | 'timeout'>;
}

/** Builds the stack for `uri` under `dir`; throws with the tools' output if a step fails. */
export async function attachBlockStack(t: Teardown, uri: string, dir: string): Promise<BlockStack> {
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const fuseFile = path.join(fuseDir, 'disk');
  const pidFile = path.join(dir, 'nbdfuse.pid');
  let loop = '';
  let detached = false;
  const nbdfuse = spawnTracked('nbdfuse', ['-P', pidFile, fuseFile, uri], { t });
  const unwind = async (): Promise<void> => {
    for (let i = 0; i < 5 && (await isMounted(mnt)); i++) {
      const r = await run('umount', [mnt], { timeoutMs: 20000 });
      if (r.code !== 0) await sleep(500);
    }
    if (await isMounted(mnt)) await run('umount', ['-l', mnt], { timeoutMs: 20000 });
    if (loop) await run('losetup', ['-d', loop], { timeoutMs: 20000 });
    loop = '';
    if (await isMounted(fuseDir)) await run('fusermount3', ['-u', fuseDir], { timeoutMs: 20000 });
  };
  // Registered after nbdfuse's own teardown, so it runs first (last in, first out).
  t.teardown(() => (detached ? undefined : unwind()));
  if (!(await waitFor(() => existsSync(pidFile), 15000))) {
    throw new Error(`nbdfuse did not start: ${nbdfuse.output()}`);
  }
  const lo = await run('losetup', ['-f', '--show', fuseFile], { timeoutMs: 20000 });
  if (lo.code !== 0) throw new Error(`losetup failed: ${lo.stderr}`);
  loop = lo.stdout.trim();
  return {
    get loop() {
      return loop;
    },
    mnt,
    nbdfuse,
    mount: () => run('mount', [loop, mnt], { timeoutMs: 30000 }),
    umount: () => run('umount', [mnt], { timeoutMs: 30000 }),
    detach: async () => {
      await unwind();
      detached = true;
      return within(nbdfuse.exited, 10000);
    },
  };
}

/**
 * nbdkit's memory plugin behind its error filter, on a Unix socket in `dir`: the requests
 * `which` names (`error`: all of them, `error-pwrite`: writes) fail with EIO while the
 * `inject` file exists.
 */
async function failingNbdkit(
  t: Teardown,
  dir: string,
  sizeMiB: number,
  which: 'error' | 'error-pwrite',
): Promise<{ sock: string; inject: string }> {
  mkdirSync(dir, { recursive: true });
  const inject = path.join(dir, 'inject');
  const sock = path.join(dir, 'nbdkit.sock');
  spawnTracked(
    'nbdkit',
    ['-f', '-U', sock, '--filter=error', 'memory', `${sizeMiB}M`, `${which}=EIO`].concat([
      `${which}-rate=100%`,
      `${which}-file=${inject}`,
    ]),
    { t },
  );
  if (!(await waitFor(() => existsSync(sock), 10000))) throw new Error('nbdkit did not start');
  return { sock, inject };
}

/**
 * A real disk that fails on command, with ext4 mounted on it: nbdkit's memory plugin with
 * its error filter (every write fails with EIO while the `inject` file exists) → the
 * block stack above → mkfs.ext4 → mount. Files under `stack.mnt` sit on that disk.
 */
export async function failingExt4(
  t: Teardown,
  dir: string,
  sizeMiB = 64,
): Promise<{ stack: BlockStack; inject: string }> {
  const { sock, inject } = await failingNbdkit(t, dir, sizeMiB, 'error-pwrite');
  const stack = await attachBlockStack(t, `nbd+unix:///?socket=${sock}`, path.join(dir, 'stack'));
  const mkfs = await run('mkfs.ext4', ['-q', '-F', stack.loop], { timeoutMs: 60000 });
  if (mkfs.code !== 0) throw new Error(`mkfs.ext4 failed: ${mkfs.stderr}`);
  const m = await stack.mount();
  if (m.code !== 0) throw new Error(`mount failed: ${m.stderr}`);
  return { stack, inject };
}

/**
 * A backing file that fails on command, for a daemon's data disk: nbdkit's memory plugin
 * behind its error filter (every request fails with EIO while the `inject` file exists)
 * → nbdfuse, whose file urbd opens like any disk file. FUSE passes each write through to
 * nbdkit, so a write fails when it is made, not later at writeback. Reads the page cache
 * holds do not reach nbdkit: `dropCache` makes the next reads of the file do.
 */
export async function failingFile(
  t: Teardown,
  dir: string,
  sizeMiB: number,
): Promise<{ file: string; inject: string; dropCache: () => Promise<RunResult> }> {
  const { sock, inject } = await failingNbdkit(t, dir, sizeMiB, 'error');
  const fuseDir = path.join(dir, 'fuse');
  mkdirSync(fuseDir, { recursive: true });
  const file = path.join(fuseDir, 'disk');
  const pidFile = path.join(dir, 'nbdfuse.pid');
  const nbdfuse = spawnTracked('nbdfuse', ['-P', pidFile, file, `nbd+unix:///?socket=${sock}`], {
    t,
  });
  // Runs before nbdfuse's own teardown (last in, first out), after the daemons using it.
  t.teardown(async () => {
    if (await isMounted(fuseDir)) await run('fusermount3', ['-u', fuseDir], { timeoutMs: 20000 });
  });
  if (!(await waitFor(() => existsSync(pidFile), 15000))) {
    throw new Error(`nbdfuse did not start: ${nbdfuse.output()}`);
  }
  return {
    file,
    inject,
    dropCache: () => run('dd', [`if=${file}`, 'iflag=nocache', 'count=0'], { timeoutMs: 20000 }),
  };
}
