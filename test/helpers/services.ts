/**
 * MariaDB and RabbitMQ as urbd-failover command services in tests: the command strings for a
 * `service NAME { start "…"; stop "…"; monitor "…"; }` block (scripts/services/mariadb and
 * scripts/services/rabbitmq), clients that record exactly what the server acknowledged, and
 * a way to kill an instance the way a dying node would.
 *
 * The scripts keep their pid files in `run`; killing by PID means running the script's
 * `kill` action, which SIGKILLs the pids recorded there (and, for RabbitMQ, its process group
 * and its own epmd). Every instance a test starts should be registered with `stopAtTeardown`
 * so it is gone even when the test fails half-way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import mariadb, { type Connection } from 'mariadb';
import { run, type RunResult, type Teardown } from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** scripts/services in the source tree (resolved from dist/test/helpers). */
export const SERVICES_DIR = path.resolve(here, '../../../scripts/services');
export const MARIADB_SCRIPT = path.join(SERVICES_DIR, 'mariadb');
export const RABBITMQ_SCRIPT = path.join(SERVICES_DIR, 'rabbitmq');

/** The command strings of a failover `service` block, plus `kill` for tests. */
export interface ServiceCommands {
  start: string;
  stop: string;
  monitor: string;
  kill: string;
}

/** One word for /bin/sh: single-quoted unless it is plainly safe. */
export function shQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function commands(prefix: string, script: string, args: string[]): ServiceCommands {
  const tail = args.map(shQuote).join(' ');
  const cmd = (action: string) => `${prefix}${shQuote(script)} ${action} ${tail}`.trimEnd();
  return { start: cmd('start'), stop: cmd('stop'), monitor: cmd('monitor'), kill: cmd('kill') };
}

export interface MariadbOptions {
  /** The script (default scripts/services/mariadb). */
  bin?: string;
  /** The datadir; default (omitted) is $URBD_MOUNT/mysql, as the supervisor sets it. */
  data?: string;
  /** Pid file, socket and error log: not on the replicated filesystem. */
  run: string;
  port: number;
  /** Seconds start waits for readiness and stop for the exit (script default 50). */
  timeoutS?: number;
  /**
   * Extra server options (MARIADB_ARGS); default a 16 MiB redo log and a 32 MiB buffer pool,
   * which suits a small test volume and keeps recovery short.
   */
  serverArgs?: string;
}

export const MARIADB_TEST_ARGS = '--innodb-log-file-size=16M --innodb-buffer-pool-size=32M';

/** Commands for `service db { … }` running scripts/services/mariadb. */
export function mariadbCommands(o: MariadbOptions): ServiceCommands {
  const args = ['--run', o.run, '--port', String(o.port)];
  if (o.data !== undefined) args.push('--data', o.data);
  if (o.timeoutS !== undefined) args.push('--timeout', String(o.timeoutS));
  const serverArgs = o.serverArgs ?? MARIADB_TEST_ARGS;
  const prefix = serverArgs ? `MARIADB_ARGS=${shQuote(serverArgs)} ` : '';
  return commands(prefix, o.bin ?? MARIADB_SCRIPT, args);
}

export interface RabbitOptions {
  /** The script (default scripts/services/rabbitmq). */
  bin?: string;
  /** RABBITMQ_MNESIA_BASE; default (omitted) is $URBD_MOUNT/rabbitmq. */
  data?: string;
  /** Pid files, logs, Erlang home: not on the replicated filesystem. */
  run: string;
  /** AMQP port. */
  port: number;
  /** Erlang distribution port (script default port+20000). */
  distPort?: number;
  /** The epmd this instance starts and stops (script default 4369: pass one per test). */
  epmdPort: number;
  /** A cookie file shared by all nodes (script default: one on the data dir). */
  cookie?: string;
  /**
   * A rabbitmq.conf. On a small test volume write one with `disk_free_limit.absolute = 1MB`:
   * the default limit (50 MB free) raises a disk alarm that blocks every publisher.
   */
  config?: string;
  timeoutS?: number;
}

/** Commands for `service mq { … }` running scripts/services/rabbitmq. */
export function rabbitCommands(o: RabbitOptions): ServiceCommands {
  const args = ['--run', o.run, '--port', String(o.port), '--epmd-port', String(o.epmdPort)];
  if (o.data !== undefined) args.push('--data', o.data);
  if (o.distPort !== undefined) args.push('--dist-port', String(o.distPort));
  if (o.cookie !== undefined) args.push('--cookie', o.cookie);
  if (o.config !== undefined) args.push('--config', o.config);
  if (o.timeoutS !== undefined) args.push('--timeout', String(o.timeoutS));
  return commands('', o.bin ?? RABBITMQ_SCRIPT, args);
}

/**
 * Run one service command the way urbd-failover does: `/bin/sh -c`, with URBD_* in the
 * environment when given. Bounded by `timeoutMs` (the command is SIGKILLed after it).
 */
export function runService(
  command: string,
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run('/bin/sh', ['-c', command], {
    env: { ...process.env, ...opts.env },
    timeoutMs: opts.timeoutMs ?? 90000,
  });
}

/**
 * True when `pid` is no longer a running process: absent, or a zombie waiting for whoever
 * inherited it to reap it (the scripts' servers are children of init once `start` exits).
 */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** `root` and all its live (non-zombie) descendants, from /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const ppid = Number(fields[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const todo = processGone(root) ? [] : [root];
  while (todo.length > 0 && out.length < 10000) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * Kill an instance like a dying node: SIGKILL to every process of it, by the pids in its run
 * directory. Resolves when they are gone; throws if the script could not.
 */
export async function killService(c: ServiceCommands, env?: Record<string, string>) {
  const r = await runService(c.kill, { env, timeoutMs: 20000 });
  if (r.code !== 0) throw new Error(`kill failed: code ${r.code}: ${r.stderr.trim()}`);
}

/**
 * At teardown (pass or fail): the script's `stop`, and if that fails or times out, `kill`.
 * Register right after choosing the run directory, before `start`.
 */
export function stopAtTeardown(t: Teardown, c: ServiceCommands, env?: Record<string, string>) {
  t.teardown(async () => {
    const r = await runService(c.stop, { env, timeoutMs: 30000 });
    if (r.code !== 0) await runService(c.kill, { env, timeoutMs: 20000 });
  });
}

/** A client connection as root over TCP 127.0.0.1 (the scripts make root without a password). */
export function connectMariadb(
  port: number,
  opts: { database?: string; connectTimeout?: number } = {},
): Promise<Connection> {
  return mariadb.createConnection({
    host: '127.0.0.1',
    port,
    user: 'root',
    password: '',
    database: opts.database,
    connectTimeout: opts.connectTimeout ?? 5000,
  });
}

export interface NumberedCommitter {
  /** Ids whose COMMIT the server acknowledged, in order. */
  readonly acked: number[];
  /** The id in flight when the committer stopped on an error (it may or may not be stored). */
  readonly inDoubt: number | undefined;
  /** The error that ended the loop (undefined after a clean stop()). */
  readonly error: Error | undefined;
  /** Resolves when the loop has ended (after stop(), an error, or `max` rows). */
  readonly done: Promise<void>;
  /** Ask the loop to end after the current commit; resolves with `done`. */
  stop(): Promise<void>;
}

/**
 * Commit numbered rows into `database.table` one transaction at a time (ids 1, 2, 3, …) and
 * record every id whose commit was acknowledged. It creates the database and table if
 * needed and runs until stop(), `max` rows, or the first error (e.g. the server died); the
 * connection is closed at the end. After a failover, every acked id must be present; the
 * in-doubt one may be either way.
 */
export async function numberedCommitter(
  port: number,
  opts: { database?: string; table?: string; max?: number; pauseMs?: number } = {},
): Promise<NumberedCommitter> {
  const database = opts.database ?? 'urbdtest';
  const table = opts.table ?? 'numbered';
  const conn = await connectMariadb(port);
  conn.on('error', () => {
    // a dying server: the failing query below ends the loop and records the error
  });
  await conn.query(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
  await conn.query(
    `CREATE TABLE IF NOT EXISTS \`${database}\`.\`${table}\` ` +
      '(id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL) ENGINE=InnoDB',
  );
  const rows = (await conn.query(
    `SELECT COALESCE(MAX(id), 0) AS m FROM \`${database}\`.\`${table}\``,
  )) as { m: number | bigint }[];
  let next = Number(rows[0]!.m) + 1;
  const acked: number[] = [];
  let inDoubt: number | undefined;
  let error: Error | undefined;
  let stopping = false;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const loop = async () => {
    try {
      while (!stopping && acked.length < max) {
        const id = next++;
        inDoubt = id;
        await conn.beginTransaction();
        await conn.query(`INSERT INTO \`${database}\`.\`${table}\` VALUES (?, ?)`, [
          id,
          `row ${id}`,
        ]);
        await conn.commit();
        acked.push(id);
        inDoubt = undefined;
        if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
      }
    } catch (e) {
      error = e as Error;
    } finally {
      await conn.end().catch(() => conn.destroy());
    }
  };
  const done = loop();
  return {
    acked,
    get inDoubt() {
      return inDoubt;
    },
    get error() {
      return error;
    },
    done,
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** Resolves once `c` has `n` acknowledged commits; throws if it ends first or time runs out. */
export async function waitAcked(c: NumberedCommitter, n: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void c.done.then(() => (ended = true));
  while (c.acked.length < n) {
    if (ended) throw new Error(`committer ended after ${c.acked.length} rows: ${c.error?.message}`);
    if (Date.now() > deadline) throw new Error(`only ${c.acked.length} of ${n} commits in time`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The ids present in `database.table` and the CHECK TABLE verdict ('OK' when healthy). */
export async function readNumbered(
  port: number,
  opts: { database?: string; table?: string } = {},
): Promise<{ ids: Set<number>; check: string }> {
  const database = opts.database ?? 'urbdtest';
  const table = opts.table ?? 'numbered';
  const conn = await connectMariadb(port);
  try {
    const rows = (await conn.query(`SELECT id FROM \`${database}\`.\`${table}\``)) as {
      id: number;
    }[];
    const check = (await conn.query(`CHECK TABLE \`${database}\`.\`${table}\``)) as {
      Msg_type: string;
      Msg_text: string;
    }[];
    const status = check.find((r) => r.Msg_type === 'status') ?? check[check.length - 1];
    return { ids: new Set(rows.map((r) => Number(r.id))), check: status?.Msg_text ?? '' };
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}

/** amqp://guest:guest@127.0.0.1:PORT (guest may log in from loopback only, which this is). */
export function amqpUrl(port: number): string {
  return `amqp://guest:guest@127.0.0.1:${port}`;
}

/**
 * Publish `count` persistent messages (bodies "1", "2", …, or from `first`) to a durable
 * queue through a ConfirmChannel, one at a time, and return the numbers the broker
 * confirmed (basic.ack, i.e. written to disk). Stops at the first failure (a nack or a lost
 * connection) and returns what was confirmed up to then, with the error.
 */
export async function publishConfirmed(
  port: number,
  queue: string,
  count: number,
  opts: { first?: number } = {},
): Promise<{ confirmed: number[]; error?: Error }> {
  const confirmed: number[] = [];
  const conn = await amqp.connect(amqpUrl(port));
  conn.on('error', () => {
    // surfaced through the failing publish below
  });
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => {
      // ditto
    });
    await ch.assertQueue(queue, { durable: true });
    const first = opts.first ?? 1;
    for (let n = first; n < first + count; n++) {
      await new Promise<void>((resolve, reject) => {
        ch.sendToQueue(queue, Buffer.from(String(n)), { persistent: true }, (err) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
        );
      });
      confirmed.push(n);
    }
    return { confirmed };
  } catch (e) {
    return { confirmed, error: e as Error };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/**
 * Consume a durable queue with manual acks until it has been quiet for `idleMs` (or
 * `timeoutMs` passed), acking each message, and return the numbers received in order
 * (duplicates included: after a failover a message may legitimately come twice).
 */
export async function consumeAll(
  port: number,
  queue: string,
  opts: { idleMs?: number; timeoutMs?: number } = {},
): Promise<number[]> {
  const idleMs = opts.idleMs ?? 500;
  const deadline = Date.now() + (opts.timeoutMs ?? 30000);
  const got: number[] = [];
  const conn = await amqp.connect(amqpUrl(port));
  conn.on('error', () => {
    // a dying broker during consumption shows up as a short result
  });
  try {
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true });
    await ch.prefetch(500);
    let last = Date.now();
    await ch.consume(
      queue,
      (msg) => {
        if (!msg) return;
        got.push(Number(msg.content.toString()));
        ch.ack(msg);
        last = Date.now();
      },
      { noAck: false },
    );
    while (Date.now() - last < idleMs && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(100, idleMs)));
    }
    await ch.close();
    return got;
  } finally {
    await conn.close().catch(() => undefined);
  }
}
