/**
 * A disk that forgets every write not yet flushed when the test pulls the plug, for checking
 * urbd's flush and FUA promises with a real daemon that opens the disk by path.
 *
 * The chain, built from real parts:
 *
 *   path (a file in a FUSE mount)
 *     → nbdfuse (FUSE ↔ NBD over a unix socket)
 *     → nbdkit --filter=cache cache=writeback cache-on-read=false cache-min-block-size=4096
 *     → nbdkit's file plugin → backingFile
 *
 * The cache filter keeps written blocks in its own temporary file (unlinked as soon as it is
 * made, in `dir`, via TMPDIR) and writes them to the plugin only on an NBD FLUSH, or at once
 * for a write with FUA. SIGKILL of nbdkit makes that cache vanish: that is the power loss.
 * What reached the file plugin is in backingFile's page cache and survives (this models a
 * disk's volatile write cache, not the host's RAM).
 *
 * Choices, from nbdkit-cache-filter(1) and its source (nbdkit 1.32):
 * - no cache-max-size: with it, reclaim punches LRU blocks out of the cache whether they are
 *   dirty or not, which would lose writes without a power loss. Without it the cache never
 *   reclaims (it can grow to the disk's size, sparse, in `dir`).
 * - cache-on-read=false (the default, said explicitly): reads of blocks not in the cache go
 *   to the plugin and are not kept, so the cache holds written blocks only.
 * - cache-min-block-size=4096 (the smallest allowed; the default is 64 KiB): the unit the
 *   cache tracks. A flush writes back every dirty block, and a FUA write writes its whole
 *   4 KiB blocks, so unflushed bytes sharing a block with a FUA write become durable with it
 *   (as a real disk may persist anything early). Tests may assert that flushed data survives
 *   and that data with no flush after it can be lost, never that a given write is lost
 *   unless nothing at all was flushed after it.
 * - Nothing is written back except on flush or FUA: there is no background writeback, and
 *   the filter does not flush when a client disconnects.
 *
 * Checked by experiment with nbdkit's log filter above the cache (option `logFile`), on
 * Linux 6.x with nbdfuse 1.14 (no FUSE writeback cache, so a write(2) returns only after
 * nbdfuse has had the NBD WRITE answered):
 * - pwrite → NBD WRITE fua=0, and nothing else;
 * - fdatasync (and fsync) → NBD FLUSH (FUSE_FSYNC, which nbdfuse maps to nbd_flush);
 * - a pwrite on an O_DSYNC fd → NBD WRITE fua=0 followed by NBD FLUSH: the kernel's FUSE
 *   client turns O_DSYNC into write + fsync; FUA never appears on the wire, a flush does
 *   the job (and also makes every other dirty block durable);
 * - close(2) sends no flush;
 * - nbdfuse opens several connections (multi-conn, which the cache filter advertises): the
 *   cache is one per nbdkit process, so a flush on one connection writes back blocks
 *   written through any of them.
 * urbd's FileDisk (src/storage/file-disk.ts, native addon on and off) over `path` gave the
 * same: write → WRITE; FUA write (its O_DSYNC fd) → WRITE + FLUSH; flush() → FLUSH; and after
 * a power loss exactly the data written before the last FLUSH was in backingFile. So the
 * daemon gets the durability it asks for through this chain; no loop device is needed.
 * (After a power loss under it, FileDisk.close() rejects with ENOTCONN: close(2) on the
 * dead FUSE file reports it.)
 *
 * Power loss and teardown, all by PID and unmount: SIGKILL nbdkit (the moment of the power
 * loss), SIGKILL nbdfuse (the kernel then aborts the FUSE connection, so any process blocked
 * in the mount is woken with ENOTCONN), then `fusermount3 -u`, and `umount -l` when the
 * mount is busy. A daemon may keep the file open across a power loss: its I/O fails with
 * ENOTCONN from then on, nothing hangs, and `restart()` mounts a fresh chain at the same
 * path (the old fd keeps pointing at the dead mount). The cleaner order is to stop the daemon
 * first; register the disk before the daemon so teardown (last in, first out) does that.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isMounted } from './block-stack.js';
import { run, spawnTracked, type Teardown, type Tracked, waitFor, within } from './server.js';

export interface PowerLossDisk {
  /** The file the daemon opens: a file in a FUSE mount, the same across restarts. */
  path: string;
  /** The file nbdkit's file plugin writes flushed data to. */
  backingFile: string;
  /** The FUSE mount point (the directory holding `path`). */
  mountDir: string;
  /** PIDs of the running chain; undefined after powerLoss() or close(). */
  readonly pids: { nbdkit: number; nbdfuse: number } | undefined;
  /** SIGKILL nbdkit (the cache vanishes), then nbdfuse, then unmount. No-op when down. */
  powerLoss(): Promise<void>;
  /** A fresh chain over the same backingFile at the same path; a power loss first if up. */
  restart(): Promise<void>;
  /** As powerLoss(), for good (nothing unflushed is written back). Idempotent. */
  close(): Promise<void>;
}

export interface PowerLossDiskOptions {
  /** Size of a new backingFile; an existing one is used as it is. */
  sizeBytes: number;
  /** Names the files under `dir`; default 'disk'. */
  name?: string;
  /**
   * Log every NBD request nbdfuse sends here (nbdkit's log filter, above the cache; each
   * restart appends).
   */
  logFile?: string;
}

interface Chain {
  nbdkit: Tracked;
  nbdfuse: Tracked;
  sock: string;
}

const STEP_TIMEOUT_MS = 15000;

async function kill(proc: Tracked, what: string): Promise<void> {
  try {
    process.kill(proc.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  if ((await within(proc.exited, STEP_TIMEOUT_MS)) === 'timeout') {
    throw new Error(`${what} (pid ${proc.pid}) did not die on SIGKILL`);
  }
}

/** Unmount a FUSE mount whose server is gone: plainly if nothing uses it, lazily if busy. */
async function unmountFuse(dir: string): Promise<void> {
  if (!(await isMounted(dir))) return;
  await run('fusermount3', ['-u', dir], { timeoutMs: STEP_TIMEOUT_MS });
  if (!(await isMounted(dir))) return;
  const r = await run('umount', ['-l', dir], { timeoutMs: STEP_TIMEOUT_MS });
  if (await isMounted(dir)) {
    throw new Error(`cannot unmount ${dir}: ${r.stderr.trim() || `umount -l: code ${r.code}`}`);
  }
}

export async function powerLossDisk(
  t: Teardown,
  dir: string,
  opts: PowerLossDiskOptions,
): Promise<PowerLossDisk> {
  const name = opts.name ?? 'disk';
  const backingFile = path.join(dir, `${name}.img`);
  const mountDir = path.join(dir, `${name}.fuse`);
  const file = path.join(mountDir, name);
  const cacheDir = path.join(dir, `${name}.cache`);
  mkdirSync(mountDir, { recursive: true });
  mkdirSync(cacheDir, { recursive: true });
  if (!existsSync(backingFile)) {
    await writeFile(backingFile, '');
    await truncate(backingFile, opts.sizeBytes);
  }

  let chain: Chain | undefined;
  let generation = 0;
  let closed = false;
  let closing: Promise<void> | undefined;

  const down = async (c: Chain): Promise<void> => {
    // nbdkit first: the moment it dies is the power loss. Then nbdfuse, so that the kernel
    // aborts the FUSE connection and nobody stays blocked in the mount.
    await kill(c.nbdkit, 'nbdkit');
    await kill(c.nbdfuse, 'nbdfuse');
    await unmountFuse(mountDir);
    rmSync(c.sock, { force: true });
  };

  const start = async (): Promise<void> => {
    generation++;
    const sock = path.join(dir, `${name}.${generation}.sock`);
    const kitPid = path.join(dir, `${name}.${generation}.nbdkit.pid`);
    const fusePid = path.join(dir, `${name}.${generation}.nbdfuse.pid`);
    const log = opts.logFile ? ['--filter=log'] : [];
    const logArg = opts.logFile ? [`logfile=${opts.logFile}`, 'logappend=true'] : [];
    // cwd = dir: should nbdfuse abort when nbdkit vanishes, no core file lands in the repo.
    const nbdkit = spawnTracked(
      'nbdkit',
      ['-f', '--exit-with-parent', '-U', sock, '-P', kitPid, ...log, '--filter=cache']
        .concat(['file', `file=${backingFile}`, 'cache=writeback', 'cache-on-read=false'])
        .concat(['cache-min-block-size=4096', ...logArg]),
      { env: { ...process.env, TMPDIR: cacheDir }, cwd: dir },
    );
    const ready = async (pidFile: string, proc: Tracked) =>
      waitFor(() => existsSync(pidFile) || proc.exitCode !== undefined, STEP_TIMEOUT_MS, 20);
    await ready(kitPid, nbdkit);
    if (!existsSync(kitPid)) {
      await kill(nbdkit, 'nbdkit');
      throw new Error(`nbdkit did not start: ${nbdkit.output()}`);
    }
    const nbdfuse = spawnTracked('nbdfuse', ['-P', fusePid, file, `nbd+unix:///?socket=${sock}`], {
      cwd: dir,
    });
    await ready(fusePid, nbdfuse);
    if (!existsSync(fusePid)) {
      const out = nbdfuse.output();
      await down({ nbdkit, nbdfuse, sock });
      throw new Error(`nbdfuse did not start: ${out}`);
    }
    chain = { nbdkit, nbdfuse, sock };
  };

  const powerLoss = async (): Promise<void> => {
    const c = chain;
    if (c === undefined) return;
    chain = undefined;
    await down(c);
  };

  const close = (): Promise<void> => {
    closed = true;
    closing ??= powerLoss();
    return closing;
  };
  t.teardown(close);

  await start();
  return {
    path: file,
    backingFile,
    mountDir,
    get pids() {
      return chain && { nbdkit: chain.nbdkit.pid, nbdfuse: chain.nbdfuse.pid };
    },
    powerLoss,
    restart: async () => {
      if (closed) throw new Error('powerLossDisk: restart after close');
      await powerLoss();
      await start();
    },
    close,
  };
}
