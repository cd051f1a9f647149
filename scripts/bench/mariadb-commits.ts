/**
 * A database on the device: MariaDB on ext4 on an NBD export, the export attached the way
 * urbd-failover attaches it without the kernel's nbd driver (nbdfuse + a loop device with
 * direct I/O, src/failover/attach.ts), mariadbd started and stopped by
 * scripts/services/mariadb (as in the failover bench: `--no-defaults`,
 * innodb_flush_log_at_trx_commit=1, doublewrite on; stop is SIGTERM by PID and a wait).
 * The load is single-row INSERTs with autocommit, so every statement is one commit that
 * reaches the device with a flush.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as mariadb from 'mariadb';
import { type AttachSpec, attachExport, detachExport } from '../../src/failover/attach.js';
import { isMountPoint } from '../../src/failover/attach-sys.js';
import { freePort } from './nbd-servers.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const SERVICE = path.resolve(here, '../../..', 'scripts/services/mariadb');

export interface CommitRun {
  /** Commits per second. */
  rate: number;
  /**
   * What reached the device per commit, from the loop device's counters
   * (/sys/block/loopN/stat): the same on every server, since ext4, the loop device and nbdfuse
   * above it are the same.
   */
  perCommit: { writes: number; flushes: number; kib: number };
}

/** The loop device's write, flush and written-sector counters. */
function deviceCounters(device: string): { writes: number; flushes: number; sectors: number } {
  const f = fs
    .readFileSync(`/sys/block/${path.basename(device)}/stat`, 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number);
  return { writes: f[4]!, sectors: f[6]!, flushes: f[15] ?? 0 };
}

export interface MountedDb {
  /** Commits from `clients` connections inserting for `seconds`. */
  commits(clients: number, seconds: number): Promise<CommitRun>;
  /** Stops mariadbd, unmounts, detaches; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Attaches the export on `socket` (export name `exportName`) under `dir`, makes an ext4 file
 * system on it when `mkfs`, mounts it, and starts mariadbd with its datadir there
 * (mariadb-install-db on the first start).
 */
export async function startMariaDbOn(o: {
  dir: string;
  socket: string;
  exportName: string;
  mkfs: boolean;
}): Promise<MountedDb> {
  fs.mkdirSync(o.dir, { recursive: true });
  const spec: AttachSpec = {
    resource: o.exportName,
    socket: o.socket,
    method: 'nbdfuse',
    stateDir: path.join(o.dir, 'attach'),
    timeoutMs: 30_000,
  };
  const mnt = path.join(o.dir, 'mnt');
  const runDir = path.join(o.dir, 'svc');
  const port = await freePort();
  const svc = (action: string): Promise<unknown> =>
    run(
      SERVICE,
      [action, '--data', path.join(mnt, 'mysql'), '--run', runDir, '--port', String(port)],
      { timeout: 120_000, env: { ...process.env, URBD_MOUNT: mnt } },
    );
  let started = false;
  const stop = async (): Promise<void> => {
    if (started) await svc('stop');
    started = false;
    if (isMountPoint(mnt)) await run('umount', [mnt]);
    await detachExport(spec);
  };
  let device = '';
  try {
    ({ device } = await attachExport(spec));
    if (o.mkfs) await run('mkfs.ext4', ['-q', '-F', device], { timeout: 300_000 });
    fs.mkdirSync(mnt, { recursive: true });
    await run('mount', [device, mnt]);
    started = true;
    await svc('start');
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  const socketPath = path.join(runDir, 'mariadbd.sock');
  const connect = (): Promise<mariadb.Connection> =>
    mariadb.createConnection({ socketPath, user: 'root', connectTimeout: 5000 });
  const setup = await connect();
  try {
    await setup.query('CREATE DATABASE IF NOT EXISTS bench');
    await setup.query(
      'CREATE TABLE IF NOT EXISTS bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, ' +
        'client INT NOT NULL, at BIGINT NOT NULL) ENGINE=InnoDB',
    );
  } finally {
    await setup.end();
  }
  return {
    stop,
    async commits(clients, seconds) {
      const conns = await Promise.all(Array.from({ length: clients }, connect));
      try {
        const before = deviceCounters(device);
        const t0 = performance.now();
        const end = t0 + seconds * 1000;
        const counts = await Promise.all(
          conns.map(async (c, i) => {
            let n = 0;
            while (performance.now() < end) {
              await c.query('INSERT INTO bench.t (client, at) VALUES (?, ?)', [i, Date.now()]);
              n++;
            }
            return n;
          }),
        );
        const elapsed = (performance.now() - t0) / 1000;
        const after = deviceCounters(device);
        const n = counts.reduce((a, b) => a + b, 0);
        const per = (v: number): number => (n > 0 ? v / n : 0);
        return {
          rate: n / elapsed,
          perCommit: {
            writes: per(after.writes - before.writes),
            flushes: per(after.flushes - before.flushes),
            kib: per(((after.sectors - before.sectors) * 512) / 1024),
          },
        };
      } finally {
        await Promise.all(conns.map((c) => c.end()));
      }
    },
  };
}
