/**
 * Failover benchmark: urbd-failover moving a service between two nodes on this machine.
 *
 *   node dist/scripts/bench/failover.js [--service writer|mariadb|rabbitmq] [--repeat N]
 *     [--size-mib N] [--dir PATH] [--keep]
 *
 * The setup is scripts/demo-failover's: one resource file, three urbd daemons (alpha and beta
 * with disks, witness `disk none`, `quorum majority; on-no-quorum io-error;`), one
 * urbd-failover supervisor per node with `attach auto; monitor-interval 2;
 * min-failover-interval 0;` (0 so that the repetitions, which move the resource back and
 * forth every few seconds, are not held back by the damping), and per node `mount DIR ext4`
 * plus the service, a command service from scripts/services. ext4 is made once, as an admin
 * does (attach, mkfs.ext4, detach on the forced Primary).
 *
 * 1. Unplanned failover, N times: the node running the chain dies like a node does (SIGKILL,
 *    in one go, of its urbd, its urbd-failover, its nbdfuse and the service's processes);
 *    timed until the other node's chain runs (from its supervisor's status: the time at which
 *    it noticed, plus the transition's total) and until the service works there: the
 *    writer's first line on the new node (the line's own timestamp), the first row committed
 *    on the new node's MariaDB (INSERT on a fresh connection, polled every 50 ms), the first
 *    message the new node's RabbitMQ confirms (publish to a durable queue on a confirm
 *    channel, polled every 50 ms). Then the dead node's mount and attach are dropped, its
 *    urbd is started again (`up`: it resyncs and stays Secondary) and its supervisor too.
 *    The next repetition kills the other node.
 * 2. Planned switchover, N times: `switchover r0 --to OTHER` sent on the running node's
 *    control socket (what `urbd-failover switchover` sends, without the CLI's start-up),
 *    timed until the other node's chain runs and its service works as above. The node that
 *    handed over is banned for failure-timeout; `clear r0` lifts that before the next move.
 *
 * With mariadb and rabbitmq a client writes to the running node all along (one INSERT or
 * confirmed publish every 50 ms) and after each move checks that everything acknowledged
 * before it is on the new node. Per-phase times (decide, promote, attach, mount, service) are
 * the new node's supervisor's. Everything lives in a temp dir under --dir, removed at the end
 * unless --keep.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import * as amqp from 'amqplib';
import * as mariadb from 'mariadb';
import { ControlClient } from '../../src/control/client.js';
import { failoverSocketPath, type SupervisorStatus } from '../../src/failover/supervisor.js';
import type {
  ResourceSupervisorStatus,
  Transition,
} from '../../src/failover/resource-supervisor.js';
import type { ResourceStatus } from '../../src/resource/status.js';
import { median } from './fio.js';
import { freePort, URBD_CLI } from './nbd-servers.js';

const execP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../../..');
const URBDADM_CLI = path.resolve(here, '../../src/cli/urbdadm.js');
const FAILOVER_CLI = path.resolve(here, '../../src/cli/urbd-failover.js');
const SERVICES = path.join(ROOT, 'scripts/services');

const { values } = parseArgs({
  options: {
    service: { type: 'string', default: 'writer' },
    repeat: { type: 'string', default: '5' },
    'size-mib': { type: 'string' },
    dir: { type: 'string', default: os.tmpdir() },
    keep: { type: 'boolean', default: false },
  },
});
const SERVICE = values.service!;
if (!['writer', 'mariadb', 'rabbitmq'].includes(SERVICE)) {
  throw new Error(`--service is writer, mariadb or rabbitmq, not ${SERVICE}`);
}
const REPEAT = Number(values.repeat);
// MariaDB's datadir (redo log, system tablespace) wants a few hundred MiB.
const SIZE_MIB = Number(values['size-mib'] ?? (SERVICE === 'writer' ? 128 : 1024));

type Data = 'alpha' | 'beta';
type NodeName = Data | 'witness';
const NODES: readonly NodeName[] = ['alpha', 'beta', 'witness'];
const other = (n: Data): Data => (n === 'alpha' ? 'beta' : 'alpha');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not ${what} within ${ms} ms`);
    await sleep(50);
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** `p`, or a rejection after `ms` (a client whose server was killed may never hear back). */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The children of `pid` (a writer's `sync` or `sleep`). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

const isMountPoint = (dir: string): boolean =>
  fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);

/** A workload on top of the service: what is acknowledged, and the first ack on a node. */
interface Service {
  /** The `service NAME { … }` statement of a node. */
  statement(n: Data): string;
  /** Every process of the service on a node, for a SIGKILL. */
  pids(n: Data): number[];
  /** What a reboot would clear: the service's pid files on a node. */
  forget(n: Data): void;
  /** Starts (or moves) the background client to `n`; no-op for the writer. */
  follow(n: Data): void;
  /** Waits for the first write the service acknowledges on `n` after `since`; its time. */
  firstAck(n: Data, since: number): Promise<number>;
  /** Checks, on `n`, that everything acknowledged before the move is there; a sentence. */
  verify(n: Data, from: Data): Promise<string>;
  /** Snapshot of what `from` acknowledged, taken right after it died (writer: its log). */
  snapshot(from: Data): void;
  close(): Promise<void>;
}

class Bench {
  dir: string;
  conf: string;
  ports: Record<string, number> = {};
  urbd: Partial<Record<NodeName, ChildProcess>> = {};
  sup: Partial<Record<NodeName, ChildProcess>> = {};
  service!: Service;

  constructor(dir: string) {
    this.dir = dir;
    this.conf = path.join(dir, 'urbd.conf');
  }

  runDir = (n: NodeName): string => path.join(this.dir, `run-${n}`);
  mnt = (n: Data): string => path.join(this.dir, `mnt-${n}`);
  global = (n: NodeName): string[] => [
    '--node',
    n,
    '--config',
    this.conf,
    '--run-dir',
    this.runDir(n),
  ];

  async adm(n: NodeName, ...args: string[]): Promise<string> {
    const { stdout } = await execP(process.execPath, [URBDADM_CLI, ...this.global(n), ...args], {
      timeout: 120_000,
    });
    return stdout;
  }

  async fo(n: NodeName, ...args: string[]): Promise<string> {
    const { stdout } = await execP(process.execPath, [FAILOVER_CLI, ...this.global(n), ...args], {
      timeout: 120_000,
    });
    return stdout;
  }

  async urbdStatus(n: NodeName): Promise<ResourceStatus> {
    const c = await ControlClient.connect(this.runDir(n));
    try {
      return ((await c.request('status', 'r0')) as ResourceStatus[])[0]!;
    } finally {
      c.close();
    }
  }

  async supRequest(n: NodeName, cmd: string, args?: Record<string, unknown>): Promise<unknown> {
    const c = await ControlClient.connect(this.runDir(n), failoverSocketPath(this.runDir(n)));
    try {
      return await c.request(cmd, cmd === 'status' ? undefined : 'r0', args);
    } finally {
      c.close();
    }
  }

  async supStatus(n: NodeName): Promise<ResourceSupervisorStatus> {
    const s = (await this.supRequest(n, 'status')) as SupervisorStatus;
    return (s.resources as ResourceSupervisorStatus[]).find((r) => r.resource === 'r0')!;
  }

  writeConfig(): void {
    const on = (n: NodeName): string => {
      const id = NODES.indexOf(n);
      const lines = [
        `node-id ${id};`,
        `address 127.0.0.1:${this.ports[n]};`,
        `device minor ${id};`,
        ...(n === 'witness'
          ? ['disk none;']
          : [
              `disk ${path.join(this.dir, `${n}.img`)};`,
              'meta-disk internal;',
              `failover { mount ${this.mnt(n)} ext4; ${this.service.statement(n)} }`,
            ]),
      ];
      return `  on ${n} {\n${lines.map((l) => `    ${l}`).join('\n')}\n  }\n`;
    };
    fs.writeFileSync(
      this.conf,
      `resource r0 {
  protocol C;
  net { connect-int 1; }
  options { quorum majority; on-no-quorum io-error; }
  failover { attach auto; monitor-interval 2; min-failover-interval 0; }
${NODES.map(on).join('')}}
`,
    );
  }

  async startUrbd(n: NodeName): Promise<void> {
    const log = fs.openSync(path.join(this.dir, `${n}.log`), 'a');
    this.urbd[n] = spawn(process.execPath, [URBD_CLI, ...this.global(n)], {
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    // It answers on its control socket (a killed daemon's socket file refuses connections).
    await until(
      async () => {
        (await ControlClient.connect(this.runDir(n))).close();
        return true;
      },
      20_000,
      `urbd ${n} answering`,
    );
  }

  async startSupervisor(n: NodeName): Promise<void> {
    const log = fs.openSync(path.join(this.dir, `failover-${n}.log`), 'a');
    this.sup[n] = spawn(process.execPath, [FAILOVER_CLI, ...this.global(n), 'run'], {
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    await until(
      async () => (await this.supRequest(n, 'status')) && true,
      20_000,
      `urbd-failover ${n}`,
    );
  }

  async inSync(n: Data): Promise<true | undefined> {
    const s = await this.urbdStatus(n);
    const ok =
      s.device.diskState === 'UpToDate' &&
      s.peers.every(
        (p) =>
          p.connection === 'Connected' &&
          p.replication === 'Established' &&
          p.peerDisk === (p.name === 'witness' ? 'Diskless' : 'UpToDate'),
      );
    return ok ? true : undefined;
  }

  async running(n: Data, after: number): Promise<ResourceSupervisorStatus> {
    return until(
      async () => {
        const r = await this.supStatus(n);
        const f = r.lastFailover;
        return r.phase === 'running' && f !== undefined && Date.parse(f.startedAt) >= after - 5
          ? r
          : undefined;
      },
      120_000,
      `running on ${n}`,
    );
  }

  async setup(): Promise<void> {
    for (const n of NODES) this.ports[n] = await freePort();
    this.writeConfig();
    for (const n of ['alpha', 'beta'] as const) {
      await execP('truncate', ['-s', `${SIZE_MIB}M`, path.join(this.dir, `${n}.img`)]);
      await this.adm(n, 'create-md', 'r0');
    }
    for (const n of NODES) await this.startUrbd(n);
    for (const n of NODES) await this.adm(n, 'up', 'r0');
    await this.adm('alpha', 'wait-connect', '--timeout', '30', 'r0');
    await this.adm('alpha', 'primary', '--force', 'r0');
    await until(() => this.inSync('alpha'), 600_000, 'initial sync done');
    const device = (await this.fo('alpha', 'attach', 'r0')).trim().split('\n').pop()!;
    await execP('mkfs.ext4', ['-q', '-F', device], { timeout: 300_000 });
    await this.fo('alpha', 'detach', 'r0');
    await this.adm('alpha', 'secondary', 'r0');
    for (const n of NODES) await this.startSupervisor(n);
    await this.running('alpha', 0);
    this.service.follow('alpha');
  }

  /** Kills `n` like a dying node; returns the time of the kill. */
  killNode(n: Data): number {
    const pids = [this.urbd[n]!.pid!, this.sup[n]!.pid!, ...this.service.pids(n)];
    const fuse = readPid(path.join(this.runDir(n), 'failover/r0/nbdfuse.pid'));
    if (fuse !== undefined) pids.push(fuse);
    const t0 = Date.now();
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    return t0;
  }

  /** After a kill: what is left of `n`'s chain goes, and `n` comes back as a Secondary. */
  async rejoin(n: Data): Promise<void> {
    this.service.forget(n);
    if (isMountPoint(this.mnt(n))) await execP('umount', ['-l', this.mnt(n)]);
    await until(
      async () => {
        await this.fo(n, 'detach', 'r0');
        return true;
      },
      60_000,
      `detached on ${n}`,
    );
    await this.startUrbd(n);
    await this.adm(n, 'up', 'r0');
    await until(() => this.inSync(n), 300_000, `${n} in sync again`);
    await this.startSupervisor(n);
    await until(
      async () => ((await this.supStatus(n)).phase === 'stopped' ? true : undefined),
      60_000,
      `${n} stopped (Secondary)`,
    );
  }

  async stopAll(): Promise<void> {
    await bounded(this.service.close(), 15_000, 'client stop').catch(() => undefined);
    for (const n of NODES) {
      const p = this.sup[n];
      if (p && p.exitCode === null && p.signalCode === null) {
        const done = new Promise((r) => p.once('exit', r));
        process.kill(p.pid!, 'SIGTERM');
        await Promise.race([done, sleep(15_000)]);
      }
    }
    for (const n of ['alpha', 'beta'] as const) {
      const s = this.service.statement(n).match(/stop "([^"]+)"/)?.[1];
      if (s)
        await execP('/bin/sh', ['-c', s], {
          env: { ...process.env, URBD_MOUNT: this.mnt(n), URBD_RESOURCE: 'r0', URBD_NODE: n },
          timeout: 120_000,
        }).catch(() => undefined);
      if (isMountPoint(this.mnt(n))) {
        await execP('umount', [this.mnt(n)]).catch(() => execP('umount', ['-l', this.mnt(n)]));
      }
      await this.fo(n, 'detach', 'r0').catch((e: Error) =>
        console.error(`detach ${n}: ${e.message}`),
      );
    }
    for (const n of NODES) {
      if (this.urbd[n]?.exitCode !== null) continue;
      const role = await this.adm(n, 'role', 'r0').catch(() => '');
      if (role.trim() === 'Primary') await this.adm(n, 'secondary', 'r0').catch(() => '');
    }
    for (const n of NODES)
      if (this.urbd[n]?.exitCode === null) await this.adm(n, 'down', 'r0').catch(() => '');
    for (const n of NODES) {
      const p = this.urbd[n];
      if (p && p.exitCode === null && p.signalCode === null) {
        const done = new Promise((r) => p.once('exit', r));
        process.kill(p.pid!, 'SIGTERM');
        await Promise.race([done, sleep(15_000)]);
      }
    }
  }
}

// ---- services ----

function commandService(name: string, cmd: (verb: string, n: Data) => string, timeout: number) {
  return (n: Data) =>
    `service ${name} { start "${cmd('start', n)}"; stop "${cmd('stop', n)}"; monitor "${cmd('monitor', n)}"; timeout ${timeout}; }`;
}

function writerService(b: Bench): Service {
  const run = (n: Data) => path.join(b.dir, `svc-${n}`);
  const log = (n: Data) => path.join(b.mnt(n), 'writer.log');
  const lines = (file: string): string[] =>
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
  let before: string[] = [];
  return {
    statement: commandService('writer', (v, n) => `${SERVICES}/writer ${v} ${run(n)}`, 20),
    pids(n) {
      const p = readPid(path.join(run(n), 'writer.pid'));
      return p === undefined ? [] : [p, ...childrenOf(p)];
    },
    forget: (n) => fs.rmSync(path.join(run(n), 'writer.pid'), { force: true }),
    follow: () => undefined,
    snapshot(from) {
      // After a switchover the old node's filesystem is gone: the snapshot taken before stays.
      if (isMountPoint(b.mnt(from))) before = lines(log(from));
    },
    async firstAck(n, since) {
      // The old node's writer may write after `since` (until its stop, in a switchover): the
      // new node's lines are those after it noticed it had to take over.
      const noticed = describe((await b.running(n, since)).lastFailover!, 0).detect;
      return until(
        async () => {
          const l = lines(log(n)).find((x) => Number(x.split(' ')[1]) * 1000 > noticed);
          return l === undefined ? undefined : Number(l.split(' ')[1]) * 1000;
        },
        120_000,
        `a new writer line on ${n}`,
      );
    },
    async verify(n) {
      const after = lines(log(n));
      const missing = before.filter((l, i) => after[i] !== l);
      if (missing.length === 0) return `all ${before.length} lines kept`;
      if (missing.length === 1 && missing[0] === before[before.length - 1])
        return `${before.length - 1} of ${before.length} lines kept (the last one's fsync had not returned)`;
      return `LOST ${missing.length} of ${before.length} lines`;
    },
    close: async () => undefined,
  };
}

/** A client that writes every 50 ms to whichever node it follows, counting acks. */
abstract class ClientService implements Service {
  acked: number[] = [];
  ackedBefore: number[] = [];
  private target: Data | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  next = 1;
  constructor(protected b: Bench) {}
  abstract statement(n: Data): string;
  abstract pids(n: Data): number[];
  abstract forget(n: Data): void;
  /** One acknowledged write of `id` on `n` over `conn` (opened by open()). */
  abstract open(n: Data): Promise<unknown>;
  abstract write(conn: unknown, id: number): Promise<void>;
  abstract closeConn(conn: unknown): Promise<void>;
  abstract verify(n: Data, from: Data): Promise<string>;

  follow(n: Data): void {
    this.target = n;
    this.loop ??= this.writeAlong();
  }
  snapshot(): void {
    this.ackedBefore = [...this.acked];
  }
  private async writeAlong(): Promise<void> {
    let conn: unknown;
    let on: Data | undefined;
    while (!this.stopped) {
      try {
        if (conn === undefined || on !== this.target) {
          if (conn !== undefined) await this.closeConn(conn).catch(() => undefined);
          conn = undefined;
          on = this.target!;
          conn = await bounded(this.open(on), 5000, 'connect');
        }
        const id = this.next++;
        await bounded(this.write(conn, id), 5000, 'write');
        this.acked.push(id);
      } catch {
        if (conn !== undefined) await this.closeConn(conn).catch(() => undefined);
        conn = undefined;
      }
      await sleep(50);
    }
    if (conn !== undefined) await this.closeConn(conn).catch(() => undefined);
  }
  async firstAck(n: Data, since: number): Promise<number> {
    return until(
      async () => {
        const c = await bounded(this.open(n), 5000, 'connect');
        try {
          const id = this.next++;
          await bounded(this.write(c, id), 5000, 'write');
          this.acked.push(id);
          const t = Date.now();
          return t > since ? t : undefined;
        } finally {
          await this.closeConn(c).catch(() => undefined);
        }
      },
      300_000,
      `a write acknowledged on ${n}`,
    );
  }
  async close(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

class MariaDbService extends ClientService {
  port: Record<Data, number>;
  constructor(b: Bench, ports: Record<Data, number>) {
    super(b);
    this.port = ports;
  }
  run = (n: Data) => path.join(this.b.dir, `svc-${n}`);
  statement(n: Data): string {
    return commandService(
      'mariadb',
      (v, m) => `${SERVICES}/mariadb ${v} --run ${this.run(m)} --port ${this.port[m]}`,
      90,
    )(n);
  }
  pids(n: Data): number[] {
    const p = readPid(path.join(this.run(n), 'mariadbd.pid'));
    return p === undefined ? [] : [p];
  }
  forget(n: Data): void {
    fs.rmSync(path.join(this.run(n), 'mariadbd.pid'), { force: true });
  }
  async open(n: Data): Promise<unknown> {
    const c = await mariadb.createConnection({
      host: '127.0.0.1',
      port: this.port[n],
      user: 'root',
      connectTimeout: 1000,
    });
    c.on('error', () => undefined); // the server killed under it: the next query fails
    await c.query('CREATE DATABASE IF NOT EXISTS bench');
    await c.query(
      'CREATE TABLE IF NOT EXISTS bench.t (id INT PRIMARY KEY, at BIGINT) ENGINE=InnoDB',
    );
    return c;
  }
  async write(conn: unknown, id: number): Promise<void> {
    await (conn as mariadb.Connection).query('INSERT INTO bench.t VALUES (?, ?)', [id, Date.now()]);
  }
  async closeConn(conn: unknown): Promise<void> {
    await (conn as mariadb.Connection).end();
  }
  async verify(n: Data): Promise<string> {
    const c = (await this.open(n)) as mariadb.Connection;
    try {
      const rows = (await c.query('SELECT id FROM bench.t')) as Array<{ id: number }>;
      const have = new Set(rows.map((r) => r.id));
      const lost = this.ackedBefore.filter((id) => !have.has(id));
      return lost.length === 0
        ? `all ${this.ackedBefore.length} committed rows kept`
        : `LOST ${lost.length} of ${this.ackedBefore.length} committed rows`;
    } finally {
      await c.end();
    }
  }
}

class RabbitMqService extends ClientService {
  port: Record<Data, number>;
  extra: Record<Data, string>;
  constructor(b: Bench, ports: Record<Data, number>, extra: Record<Data, string>) {
    super(b);
    this.port = ports;
    this.extra = extra;
  }
  run = (n: Data) => path.join(this.b.dir, `svc-${n}`);
  statement(n: Data): string {
    return commandService(
      'rabbitmq',
      (v, m) =>
        `${SERVICES}/rabbitmq ${v} --run ${this.run(m)} --port ${this.port[m]} ${this.extra[m]}`,
      90,
    )(n);
  }
  pids(n: Data): number[] {
    return ['rabbitmq.pid', 'epmd.pid']
      .map((f) => readPid(path.join(this.run(n), f)))
      .filter((p): p is number => p !== undefined);
  }
  forget(n: Data): void {
    for (const f of ['rabbitmq.pid', 'epmd.pid'])
      fs.rmSync(path.join(this.run(n), f), { force: true });
  }
  async open(n: Data): Promise<unknown> {
    const c = await amqp.connect(`amqp://guest:guest@127.0.0.1:${this.port[n]}`, { timeout: 1000 });
    c.on('error', () => undefined);
    const ch = await c.createConfirmChannel();
    ch.on('error', () => undefined);
    await ch.assertQueue('bench', { durable: true });
    if (!this.settled) {
      // RabbitMQ 3.10 does not fsync what it creates at first boot and at the first
      // declaration of a queue; a failover seconds later finds those files missing and the
      // broker cannot boot (docs/failover-rabbitmq.md §3). An established broker has had
      // them written back by the kernel: sync -f stands for that, once.
      await execP('sync', ['-f', this.b.mnt(n)]);
      this.settled = true;
    }
    return { c, ch };
  }
  private settled = false;
  async write(conn: unknown, id: number): Promise<void> {
    const { ch } = conn as { ch: amqp.ConfirmChannel };
    ch.sendToQueue('bench', Buffer.from(String(id)), { persistent: true });
    await ch.waitForConfirms();
  }
  async closeConn(conn: unknown): Promise<void> {
    await (conn as { c: amqp.ChannelModel }).c.close();
  }
  async verify(n: Data): Promise<string> {
    const conn = (await this.open(n)) as { c: amqp.ChannelModel; ch: amqp.ConfirmChannel };
    try {
      const q = await conn.ch.checkQueue('bench');
      // Nothing consumes: every confirmed message must still be queued.
      return q.messageCount >= this.ackedBefore.length
        ? `${q.messageCount} messages queued, ≥ the ${this.ackedBefore.length} confirmed before`
        : `LOST: ${q.messageCount} messages queued, ${this.ackedBefore.length} were confirmed`;
    } finally {
      await this.closeConn(conn);
    }
  }
}

// ---- the runs ----

interface Sample {
  from: Data;
  to: Data;
  /** Kill (or switchover request) → the new node noticed (its `decide` starts). */
  detect: number;
  phases: Transition['phases'];
  /** → chain running on the new node (its transition's end). */
  running: number;
  /** → the first write the service acknowledged there. */
  firstAck: number;
  /** planned: the old node's stop, as the switchover answer says. */
  stopMs?: number;
  stopPhases?: Transition['phases'];
  verified: string;
}

function describe(t: Transition, t0: number): { detect: number; running: number } {
  const decide = t.phases.find((p) => p.phase === 'decide')?.ms ?? 0;
  const noticed = Date.parse(t.startedAt) - decide;
  return { detect: noticed - t0, running: noticed + t.totalMs - t0 };
}

async function unplanned(b: Bench, from: Data): Promise<Sample> {
  const to = other(from);
  const t0 = b.killNode(from);
  b.service.snapshot(from);
  b.service.follow(to);
  const [r, ack] = await Promise.all([b.running(to, t0), b.service.firstAck(to, t0)]);
  const f = r.lastFailover!;
  const s: Sample = {
    from,
    to,
    ...describe(f, t0),
    phases: f.phases,
    firstAck: Math.round(ack - t0),
    verified: await b.service.verify(to, from),
  };
  await b.rejoin(from);
  return s;
}

async function planned(b: Bench, from: Data): Promise<Sample> {
  const to = other(from);
  // The node that handed over last time is banned for failure-timeout: lift it.
  await b.supRequest(to, 'clear');
  await sleep(2000); // the client writes a little on `from` first
  b.service.snapshot(from);
  const t0 = Date.now();
  const done = (await b.supRequest(from, 'switchover', { to })) as Transition;
  b.service.snapshot(from);
  b.service.follow(to);
  const [r, ack] = await Promise.all([b.running(to, t0), b.service.firstAck(to, t0)]);
  const f = r.lastFailover!;
  return {
    from,
    to,
    ...describe(f, t0),
    phases: f.phases,
    firstAck: Math.round(ack - t0),
    stopMs: done.totalMs,
    stopPhases: done.phases,
    verified: await b.service.verify(to, from),
  };
}

const phaseKey = (p: string): string =>
  p.replace(/^mount .*/, 'mount').replace(/^service .*/, 'service');

function report(title: string, samples: Sample[], what: string): void {
  console.log(`\n## ${title} (${samples.length} runs, service ${SERVICE})\n`);
  const keys = ['decide', 'promote', 'attach', 'mount', 'service'];
  const cols = [
    ...(samples[0]?.stopMs !== undefined ? ['old node stops'] : []),
    'detect',
    ...keys,
    'chain running',
    what,
  ];
  console.log(`| run | move | ${cols.join(' | ')} | check |`);
  console.log(`|---|---|${cols.map(() => '---:').join('|')}|---|`);
  const rows = samples.map((s) => {
    const ph = Object.fromEntries(s.phases.map((p) => [phaseKey(p.phase), p.ms]));
    return [
      ...(s.stopMs !== undefined ? [s.stopMs] : []),
      s.detect,
      ...keys.map((k) => ph[k] ?? 0),
      s.running,
      s.firstAck,
    ];
  });
  samples.forEach((s, i) =>
    console.log(`| ${i + 1} | ${s.from} → ${s.to} | ${rows[i]!.join(' | ')} | ${s.verified} |`),
  );
  const col = (j: number) => rows.map((r) => r[j]!);
  console.log(`| median | | ${cols.map((_, j) => median(col(j))).join(' | ')} | |`);
  console.log(`| max | | ${cols.map((_, j) => Math.max(...col(j))).join(' | ')} | |`);
  if (samples[0]?.stopPhases) {
    const names = samples[0].stopPhases.map((p) => p.phase);
    const med = names.map((name) => {
      const ms = samples.map((s) => s.stopPhases!.find((p) => p.phase === name)?.ms ?? 0);
      return `${phaseKey(name.replace(/^stop /, ''))} ${median(ms)} (max ${Math.max(...ms)})`;
    });
    console.log(`\nThe old node's stop, median ms per step: ${med.join(', ')}`);
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(values.dir!, 'urbd-bench-failover.'));
  const b = new Bench(dir);
  const p = async () => freePort();
  if (SERVICE === 'writer') b.service = writerService(b);
  else if (SERVICE === 'mariadb')
    b.service = new MariaDbService(b, { alpha: await p(), beta: await p() });
  else {
    const cookie = path.join(dir, 'erlang.cookie');
    fs.writeFileSync(cookie, 'urbdbenchcookie', { mode: 0o400 });
    const extra = async () =>
      `--dist-port ${await p()} --epmd-port ${await p()} --cookie ${cookie}`;
    b.service = new RabbitMqService(
      b,
      { alpha: await p(), beta: await p() },
      { alpha: await extra(), beta: await extra() },
    );
  }
  console.log(`failover bench: ${SERVICE}, ${REPEAT} runs each, ${SIZE_MIB} MiB disks, in ${dir}`);
  const what =
    SERVICE === 'writer'
      ? 'first writer line'
      : SERVICE === 'mariadb'
        ? 'first committed row'
        : 'first confirmed publish';
  let failed = false;
  // Ctrl-C: the daemons, supervisors and services started here are stopped by PID first.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`${sig}: stopping everything the bench started`);
      void b.stopAll().finally(() => process.exit(130));
    });
  }
  try {
    await b.setup();
    let holder: Data = 'alpha';
    const kills: Sample[] = [];
    for (let i = 0; i < REPEAT; i++) {
      await sleep(3000); // the service and its client settle
      kills.push(await unplanned(b, holder));
      holder = other(holder);
      console.error(`unplanned ${i + 1}: ${JSON.stringify(kills[kills.length - 1])}`);
    }
    const moves: Sample[] = [];
    for (let i = 0; i < REPEAT; i++) {
      await sleep(1000);
      moves.push(await planned(b, holder));
      holder = other(holder);
      console.error(`planned ${i + 1}: ${JSON.stringify(moves[moves.length - 1])}`);
    }
    console.log(
      '\nms from the kill (unplanned) or the switchover request (planned); phases are the new node\'s supervisor\'s; "detect" is the kill → the new node noticing, "chain running" includes it',
    );
    report('Unplanned failover: kill -9 of the node running the chain', kills, what);
    report('Planned switchover: switchover r0 --to OTHER', moves, what);
  } catch (err) {
    failed = true;
    console.error(err);
  } finally {
    await b.stopAll().catch((e: Error) => console.error(`cleanup: ${e.message}`));
    if (values.keep || failed) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failed) process.exitCode = 1;
}

await main();
