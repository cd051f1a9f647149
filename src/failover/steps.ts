/**
 * The steps of a resource's chain, each with start, stop and monitor, the way an OCF agent
 * has them: promote → attach → mount → services → addresses. start and stop are idempotent
 * (starting a running step or stopping a stopped one succeeds); monitor says running,
 * stopped, or failed with why. A step's commands run with its timeout; a step that cannot
 * stop throws, and the supervisor escalates instead of releasing the device.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import type { AddressConfig, FailoverConfig, MountConfig, ServiceConfig } from '../config/index.js';
import type { ControlClient } from '../control/client.js';
import type { ResourceStatus } from '../resource/status.js';
import {
  type CommandResult,
  describeResult,
  type ShellCommands,
} from '../resource/shell-command.js';
import { mounts, sleep } from './attach-sys.js';
import { attachExport, attachState, detachExport, type AttachSpec } from './attach.js';

export type Health = { state: 'running' } | { state: 'stopped' } | { state: 'failed'; why: string };

export interface Step {
  /** e.g. "promote", "attach", "mount /srv/db", "service mariadb", "address 10.0.0.1/24". */
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  monitor(): Promise<Health>;
}

/** What the steps share: the daemon, the command runner, the environment commands get. */
export interface StepContext {
  resource: string;
  node: string;
  urbd(): Promise<ControlClient>;
  status(): Promise<ResourceStatus>;
  shell: ShellCommands;
  /** The block device once attached (URBD_DEVICE for the later steps). */
  device: string | undefined;
  attachSpec: AttachSpec;
  /** Set when stop must demote with --force (I/O held, quorum lost). */
  forceDemote: boolean;
}

export class StepError extends Error {}

const RUNNING: Health = { state: 'running' };
const STOPPED: Health = { state: 'stopped' };
const failed = (why: string): Health => ({ state: 'failed', why });

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StepError(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function env(ctx: StepContext, mount: MountConfig | undefined): Record<string, string> {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) e[k] = v;
  e.URBD_RESOURCE = ctx.resource;
  e.URBD_NODE = ctx.node;
  if (ctx.device !== undefined) e.URBD_DEVICE = ctx.device;
  if (mount !== undefined) e.URBD_MOUNT = mount.dir;
  return e;
}

async function run(
  ctx: StepContext,
  argv: string[] | string,
  timeoutMs: number,
  mount?: MountConfig,
): Promise<CommandResult> {
  const command = typeof argv === 'string' ? argv : argv.map(shellQuote).join(' ');
  return ctx.shell.run(command, env(ctx, mount), timeoutMs);
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function fail(what: string, r: CommandResult): StepError {
  const out =
    r.output
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-1)[0] ?? '';
  return new StepError(`${what}: ${describeResult(r)}${out ? `: ${out.trim()}` : ''}`);
}

const ok = (r: CommandResult): boolean => r.exitCode === 0 && !r.timedOut;

export function promoteStep(ctx: StepContext, cfg: FailoverConfig): Step {
  return {
    name: 'promote',
    async start() {
      const c = await ctx.urbd();
      await withTimeout(c.request('primary', ctx.resource), cfg.promoteTimeoutMs, 'primary');
    },
    async stop() {
      const s = await ctx.status();
      if (s.role !== 'Primary') return;
      const c = await ctx.urbd();
      await withTimeout(
        c.request('secondary', ctx.resource, { force: ctx.forceDemote }),
        cfg.promoteTimeoutMs,
        'secondary',
      );
    },
    async monitor() {
      const s = await ctx.status();
      if (s.role !== 'Primary') return STOPPED;
      if (s.quorum.enabled && !s.quorum.quorum) return failed(s.quorum.reason);
      return RUNNING;
    },
  };
}

export function attachStep(ctx: StepContext): Step {
  const spec = ctx.attachSpec;
  return {
    name: 'attach',
    async start() {
      const a = await attachExport(spec);
      ctx.device = a.device;
    },
    async stop() {
      await detachExport(spec);
      ctx.device = undefined;
    },
    async monitor() {
      const st = await attachState(spec);
      if (st.state === 'attached') {
        ctx.device = st.device;
        return RUNNING;
      }
      return st.state === 'detached' ? STOPPED : failed(st.reason);
    },
  };
}

/** Mount point → what is mounted there. */
function mountPoints(): Map<string, string> {
  return new Map(mounts().map((m) => [m.mountPoint, m.source]));
}

/** PIDs whose cwd, root, executable or open files lie under `dir` (never this process). */
export async function usersOf(dir: string): Promise<number[]> {
  const under = (p: string) => p === dir || p.startsWith(dir + '/');
  const pids: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(e) || Number(e) === process.pid) continue;
    const base = `/proc/${e}`;
    const links = ['cwd', 'root', 'exe'].map((l) => `${base}/${l}`);
    try {
      for (const fd of await readdir(`${base}/fd`)) links.push(`${base}/fd/${fd}`);
    } catch {
      continue; // gone, or a kernel thread
    }
    for (const l of links) {
      try {
        if (under(await readlink(l))) {
          pids.push(Number(e));
          break;
        }
      } catch {
        // the link went away
      }
    }
  }
  return pids;
}

export function mountStep(ctx: StepContext, m: MountConfig): Step {
  return {
    name: `mount ${m.dir}`,
    async start() {
      const dev = ctx.device;
      if (dev === undefined) throw new StepError('mount: no device attached');
      const mounted = mountPoints().get(m.dir);
      if (mounted !== undefined) {
        if (mounted === dev) return;
        throw new StepError(`mount: ${m.dir} already has ${mounted} mounted`);
      }
      if (!existsSync(m.dir)) mkdirSync(m.dir, { recursive: true });
      if (m.fsck) {
        // e2fsck -p: replays the journal and fixes what is safe to fix without asking; exit
        // 1 (fixed) and 2 (fixed, reboot advised: only for a mounted root) are fine here.
        const r = await run(ctx, ['e2fsck', '-p', dev], m.timeoutMs);
        if (r.timedOut || r.exitCode === null || r.exitCode >= 4) throw fail(`e2fsck -p ${dev}`, r);
      }
      const argv = ['mount', '-t', m.fstype, ...(m.options ? ['-o', m.options] : []), dev, m.dir];
      const r = await run(ctx, argv, m.timeoutMs);
      if (!ok(r)) throw fail(`mount ${dev} ${m.dir}`, r);
    },
    async stop() {
      if (!mountPoints().has(m.dir)) return;
      const deadline = performance.now() + m.timeoutMs;
      // Whoever still uses the filesystem goes first: TERM, then KILL; only processes whose
      // files are under this mount, never a sweep of everything on the device.
      for (const sig of ['', 'SIGTERM', 'SIGKILL'] as const) {
        if (sig !== '') {
          for (const pid of await usersOf(m.dir)) {
            try {
              process.kill(pid, sig);
            } catch {
              // already gone
            }
          }
          await sleep(sig === 'SIGTERM' ? 2000 : 500);
        }
        const left = Math.max(1000, deadline - performance.now());
        const r = await run(ctx, ['umount', m.dir], left);
        if (ok(r) || !mountPoints().has(m.dir)) return;
        if (performance.now() > deadline) throw fail(`umount ${m.dir}`, r);
      }
      const users = await usersOf(m.dir);
      throw new StepError(
        `umount ${m.dir}: still busy${users.length ? ` (pids ${users.join(' ')})` : ''}`,
      );
    },
    async monitor() {
      const src = mountPoints().get(m.dir);
      if (src === undefined) return STOPPED;
      if (ctx.device !== undefined && src !== ctx.device) {
        return failed(`${m.dir} has ${src} mounted, not ${ctx.device}`);
      }
      return RUNNING;
    },
  };
}

export function serviceStep(
  ctx: StepContext,
  svc: ServiceConfig,
  mount: MountConfig | undefined,
): Step {
  const cmds = svc.commands;
  const unit = svc.name.includes('.') ? svc.name : `${svc.name}.service`;
  const start = cmds ? cmds.start : `systemctl start ${shellQuote(unit)}`;
  const stop = cmds ? cmds.stop : `systemctl stop ${shellQuote(unit)}`;
  const monitor = cmds ? cmds.monitor : `systemctl is-active --quiet ${shellQuote(unit)}`;
  return {
    name: `service ${svc.name}`,
    async start() {
      const r = await run(ctx, start, svc.timeoutMs, mount);
      if (!ok(r)) throw fail(`start ${svc.name}`, r);
    },
    async stop() {
      const r = await run(ctx, stop, svc.timeoutMs, mount);
      if (!ok(r)) throw fail(`stop ${svc.name}`, r);
    },
    async monitor() {
      const r = await run(ctx, monitor, svc.timeoutMs, mount);
      if (ok(r)) return RUNNING;
      // OCF's 7, and systemctl is-active's 3 (inactive): cleanly stopped.
      if (!r.timedOut && (r.exitCode === 7 || (!cmds && r.exitCode === 3))) return STOPPED;
      return failed(fail(`monitor ${svc.name}`, r).message);
    },
  };
}

export function addressStep(ctx: StepContext, a: AddressConfig): Step {
  const present = async (): Promise<boolean> => {
    const r = await run(ctx, ['ip', '-o', 'addr', 'show', 'dev', a.dev], a.timeoutMs);
    if (!ok(r)) throw fail(`ip addr show dev ${a.dev}`, r);
    return r.output.split(/\s+/).includes(a.cidr);
  };
  return {
    name: `address ${a.cidr}`,
    async start() {
      if (await present()) return;
      const r = await run(ctx, ['ip', 'addr', 'add', a.cidr, 'dev', a.dev], a.timeoutMs);
      if (!ok(r)) throw fail(`ip addr add ${a.cidr} dev ${a.dev}`, r);
      // Tell the segment where the address lives now (gratuitous ARP / unsolicited NA), as
      // IPaddr2 does; arping is optional, and its absence is only worth a line in the log.
      const ip = a.cidr.split('/')[0];
      if (!ip.includes(':')) {
        await run(
          ctx,
          `command -v arping >/dev/null && arping -c 3 -U -I ${shellQuote(a.dev)} ${ip} >/dev/null 2>&1; true`,
          a.timeoutMs,
        );
      }
    },
    async stop() {
      if (!(await present())) return;
      const r = await run(ctx, ['ip', 'addr', 'del', a.cidr, 'dev', a.dev], a.timeoutMs);
      if (!ok(r)) throw fail(`ip addr del ${a.cidr} dev ${a.dev}`, r);
    },
    async monitor() {
      return (await present()) ? RUNNING : STOPPED;
    },
  };
}

/** The whole chain for one node, in start order. */
export function buildChain(ctx: StepContext, cfg: FailoverConfig): Step[] {
  const steps: Step[] = [promoteStep(ctx, cfg), attachStep(ctx)];
  if (cfg.mount) steps.push(mountStep(ctx, cfg.mount));
  for (const s of cfg.services) steps.push(serviceStep(ctx, s, cfg.mount));
  for (const a of cfg.addresses) steps.push(addressStep(ctx, a));
  return steps;
}
