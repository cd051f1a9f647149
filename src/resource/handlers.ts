/**
 * Handler scripts (`handlers { fence-peer "..."; }`), run the way drbdadm runs them: the
 * configured command under `/bin/sh -c`, with DRBD's environment variables describing the
 * resource and the peer (drbd.md §1.1, §8.2). This module only runs commands and reads their
 * exit codes; when to call which handler is the resource state machine's business.
 *
 * Differences from DRBD, on purpose:
 *   - DRBD waits for a helper without limit. urbd gives each call `handler-timeout` (a urbd
 *     option), then kills the script's whole process group (SIGTERM, SIGKILL after a grace
 *     period), so a hanging handler and its children never linger; a killed handler failed.
 *   - Each script runs in its own process group (detached), so the daemon's signals do not
 *     reach it and the group can be killed as one; `shutdown()` kills every running one.
 */
import type { Logger } from 'pino';
import type { HandlerName } from '../config/schema.js';
import type { Address } from '../config/types.js';
import {
  type CommandResult,
  describeResult,
  failedCommand,
  ShellCommands,
} from './shell-command.js';

export type { HandlerName } from '../config/schema.js';

/** A host of the resource as a handler sees it. */
export interface HandlerNode {
  name: string;
  /** Absent when the resource file gives the host no node-id. */
  nodeId?: number;
  address?: Address;
}

/** What a handler call is about. */
export interface HandlerContext {
  resource: string;
  minor: number;
  /** urbd has one volume per resource: always 0. */
  volume: number;
  /** The resource file urbd read (DRBD_CONF). */
  configFile: string;
  /** This node's backing disk, when it has one attached. */
  backingDisk?: string;
  /** This node. */
  me: HandlerNode;
  /** Every host of the resource, this node included. */
  hosts: readonly HandlerNode[];
  /** The peer the call is about (fence-peer, split-brain, ...), if any. */
  peer?: HandlerNode;
  /** Names of the nodes known to be UpToDate, if known (UP_TO_DATE_NODES). */
  upToDateNodes?: readonly string[];
}

export interface HandlerResult extends CommandResult {
  name: HandlerName;
}

export { describeResult, OUTPUT_TAIL } from './shell-command.js';

/** Variables this module sets; inherited ones with these names or prefixes are dropped. */
const OWN_VARIABLE = /^(DRBD_|UP_TO_DATE_NODES$)/;

/**
 * The DRBD environment of a handler call. Names and formats, checked against DRBD's sources
 * (kernel drbd_nl.c `drbd_khelper`, drbd-utils drbdadm_main.c `adm_khelper`):
 *
 *   DRBD_RESOURCE, DRBD_CONF        drbdadm (8.4 and 9)
 *   DRBD_MINOR, DRBD_VOLUME         the kernel for a device (9), drbdadm (8.4 and 9)
 *   DRBD_MINOR_<volume>             the kernel (9) for a connection: minor of each volume
 *   DRBD_BACKING_DEV                the kernel (9) when a disk is attached
 *   DRBD_LL_DISK                    drbdadm (8.4 and 9): the configured disk; drbd-utils'
 *                                   snapshot-resync-target-lvm.sh needs it
 *   DRBD_MY_ADDRESS, DRBD_MY_AF     the kernel (9) for a connection; the address without
 *                                   port, the family ipv4 or ipv6
 *   DRBD_MY_NODE_ID                 drbdadm 9
 *   DRBD_NODE_ID_<n>=host name      drbdadm 9, for every host with a node-id
 *   DRBD_PEER_ADDRESS, DRBD_PEER_AF the kernel (8.3.2+, 9) and drbdadm 8.4
 *   DRBD_PEER_NODE_ID               the kernel (9) for a connection
 *   DRBD_PEER (deprecated)          drbdadm 8.4: the peer's host name
 *   UP_TO_DATE_NODES                the kernel (9), for fence-peer and unfence-peer: a
 *                                   bit mask of node ids printed as 0x%08llX (0x00000005)
 *
 * Where urbd differs:
 *   - DRBD_PEERS: drbdadm 8.4 gave the names of the one peer's `on` section (and only when
 *     the peer was known); drbdadm 9 does not set it. urbd gives the names of every other
 *     host of the resource, space separated, on every call.
 *   - Addresses are the host as written in the resource file. DRBD 8.4's drbdadm did the
 *     same; DRBD 9's kernel prints IPv6 addresses uncompressed (%pI6).
 *   - The kernel sets the connection variables (DRBD_MY_ADDRESS, ...) only for calls about a
 *     connection; urbd sets DRBD_MY_* and DRBD_MINOR_<volume> on every call.
 *   - DRBD_CSTATE (the kernel's connection state name) is not set here; a caller that knows
 *     it can pass it in `extraEnv`.
 */
export function buildHandlerEnv(ctx: HandlerContext): Record<string, string> {
  const env: Record<string, string> = {
    DRBD_RESOURCE: ctx.resource,
    DRBD_CONF: ctx.configFile,
    DRBD_MINOR: String(ctx.minor),
    [`DRBD_MINOR_${ctx.volume}`]: String(ctx.minor),
    DRBD_VOLUME: String(ctx.volume),
  };
  if (ctx.backingDisk !== undefined) {
    env.DRBD_BACKING_DEV = ctx.backingDisk;
    env.DRBD_LL_DISK = ctx.backingDisk;
  }
  if (ctx.me.address) {
    env.DRBD_MY_ADDRESS = ctx.me.address.host;
    env.DRBD_MY_AF = ctx.me.address.family;
  }
  if (ctx.me.nodeId !== undefined) env.DRBD_MY_NODE_ID = String(ctx.me.nodeId);
  for (const h of ctx.hosts) {
    if (h.nodeId !== undefined) env[`DRBD_NODE_ID_${h.nodeId}`] = h.name;
  }
  env.DRBD_PEERS = ctx.hosts
    .filter((h) => h.name !== ctx.me.name)
    .map((h) => h.name)
    .join(' ');
  if (ctx.peer) {
    env.DRBD_PEER = ctx.peer.name;
    if (ctx.peer.address) {
      env.DRBD_PEER_ADDRESS = ctx.peer.address.host;
      env.DRBD_PEER_AF = ctx.peer.address.family;
    }
    if (ctx.peer.nodeId !== undefined) env.DRBD_PEER_NODE_ID = String(ctx.peer.nodeId);
  }
  if (ctx.upToDateNodes !== undefined) {
    let mask = 0n;
    for (const name of ctx.upToDateNodes) {
      const id = ctx.hosts.find((h) => h.name === name)?.nodeId;
      if (id !== undefined) mask |= 1n << BigInt(id);
    }
    env.UP_TO_DATE_NODES = `0x${mask.toString(16).toUpperCase().padStart(8, '0')}`;
  }
  return env;
}

export interface HandlerRunnerOptions {
  /** The resource's handlers section: handler name → shell command. */
  commands: Record<string, string>;
  /** handler-timeout, in milliseconds. */
  timeoutMs: number;
  log: Logger;
  /** Between SIGTERM and SIGKILL of a timed-out handler's process group (default 2 s). */
  killGraceMs?: number;
  /** The shell the command is given to with -c (default /bin/sh, as drbdadm). */
  shell?: string;
}

export class HandlerRunner {
  private commands: Record<string, string>;
  private timeoutMs: number;
  private readonly log: Logger;
  private readonly shell: ShellCommands;

  constructor(opts: HandlerRunnerOptions) {
    this.commands = { ...opts.commands };
    this.timeoutMs = opts.timeoutMs;
    this.log = opts.log;
    this.shell = new ShellCommands({
      killGraceMs: opts.killGraceMs,
      shell: opts.shell,
      stoppingText: 'not run: urbd is stopping',
    });
  }

  /** New commands or timeout (adjust); handlers already running keep theirs. */
  update(opts: { commands: Record<string, string>; timeoutMs: number }): void {
    this.commands = { ...opts.commands };
    this.timeoutMs = opts.timeoutMs;
  }

  /** Process group ids of the handlers running now. */
  runningGroups(): number[] {
    return this.shell.runningGroups();
  }

  /**
   * Runs the handler `name` and resolves once it has exited (and, if it had to be killed,
   * once its process group is gone or has been sent SIGKILL). undefined when no command is
   * configured for it. Never rejects: a handler that cannot be started, fails, is killed or
   * times out is a result (see fenceOutcome for what fence-peer's result means).
   */
  async run(
    name: HandlerName,
    ctx: HandlerContext,
    extraEnv: Record<string, string> = {},
  ): Promise<HandlerResult | undefined> {
    const command = this.commands[name];
    if (command === undefined) return undefined;
    const started = performance.now();
    let result: HandlerResult;
    try {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) {
        if (v !== undefined && !OWN_VARIABLE.test(k)) env[k] = v;
      }
      Object.assign(env, buildHandlerEnv(ctx), extraEnv);
      result = { name, ...(await this.shell.run(command, env, this.timeoutMs)) };
    } catch (err) {
      // Not expected (run turns its failures into results), but a handler call must not
      // take the state machine down with it.
      const why = `not run: ${(err as Error).message}`;
      result = { name, ...failedCommand(performance.now() - started, why) };
    }
    this.logResult(result, ctx, command);
    return result;
  }

  /** Kills every running handler's process group and waits until each call has settled. */
  shutdown(): Promise<void> {
    return this.shell.shutdown();
  }

  private logResult(r: HandlerResult, ctx: HandlerContext, command: string): void {
    const fields = {
      resource: ctx.resource,
      handler: r.name,
      command,
      peer: ctx.peer?.name,
      exitCode: r.exitCode,
      signal: r.signal,
      durationMs: r.durationMs,
      timedOut: r.timedOut,
      output: r.output === '' ? undefined : r.output,
    };
    const ok = r.exitCode === 0 && !r.timedOut;
    this.log[ok ? 'info' : 'warn'](fields, `handler ${r.name}: ${describeResult(r)}`);
  }
}

// ---- fence-peer's exit code (drbd.md §8.2; kernel drbd_nl.c conn_try_outdate_peer) ----------

export type FenceVerdict =
  | 'peer-inconsistent'
  | 'peer-outdated'
  | 'peer-unreachable-assumed-dead'
  | 'peer-unreachable'
  | 'peer-primary-outdate-self'
  | 'peer-stonithed'
  | 'failed';

export interface FenceOutcome {
  verdict: FenceVerdict;
  /** The peer's disk state to record, when the handler vouches for one. */
  peerDisk?: 'Outdated' | 'Inconsistent';
  /** Exit 6: the peer is Primary; this node must mark its own disk Outdated. */
  outdateSelf: boolean;
  /** Whether the peer is now known not to take writes: continue as Primary, or promote. */
  success: boolean;
  /** One line for the log and the status. */
  message: string;
}

/**
 * What a fence-peer result means:
 *   3 → the peer is Inconsistent;                                         success
 *   4 → the peer was outdated (or already was): peer Outdated;            success
 *   5 → the peer is unreachable: with my disk UpToDate it is assumed dead, peer Outdated,
 *       success; otherwise nothing changes and it fails (a promotion stays refused)
 *   6 → the peer is Primary: outdate myself; not a success (neither stay nor become Primary)
 *   7 → the peer was STONITHed: peer Outdated; success (unusual unless resource-and-stonith)
 *   anything else, a signal, a timeout, a handler that could not start → failed
 */
export function fenceOutcome(
  result: HandlerResult,
  myDisk: 'UpToDate' | 'Consistent' | 'Outdated' | 'Inconsistent' | string,
  fencing: 'resource-only' | 'resource-and-stonith',
): FenceOutcome {
  const fail = (why: string): FenceOutcome => ({
    verdict: 'failed',
    outdateSelf: false,
    success: false,
    message: `fence-peer failed: ${why}; the peer is not fenced`,
  });
  if (result.timedOut || result.signal !== null || result.exitCode === null) {
    return fail(describeResult(result));
  }
  const code = result.exitCode;
  switch (code) {
    case 3:
      return {
        verdict: 'peer-inconsistent',
        peerDisk: 'Inconsistent',
        outdateSelf: false,
        success: true,
        message: 'fence-peer returned 3: the peer is Inconsistent',
      };
    case 4:
      return {
        verdict: 'peer-outdated',
        peerDisk: 'Outdated',
        outdateSelf: false,
        success: true,
        message: 'fence-peer returned 4: the peer was fenced (Outdated)',
      };
    case 5:
      return myDisk === 'UpToDate'
        ? {
            verdict: 'peer-unreachable-assumed-dead',
            peerDisk: 'Outdated',
            outdateSelf: false,
            success: true,
            message:
              'fence-peer returned 5: the peer is unreachable, assumed dead (my disk is UpToDate): peer Outdated',
          }
        : {
            verdict: 'peer-unreachable',
            outdateSelf: false,
            success: false,
            message: `fence-peer returned 5: the peer is unreachable; doing nothing since my disk is ${myDisk}, not UpToDate`,
          };
    case 6:
      return {
        verdict: 'peer-primary-outdate-self',
        outdateSelf: true,
        success: false,
        message: 'fence-peer returned 6: the peer is Primary; outdating myself',
      };
    case 7:
      return {
        verdict: 'peer-stonithed',
        peerDisk: 'Outdated',
        outdateSelf: false,
        success: true,
        message:
          fencing === 'resource-and-stonith'
            ? 'fence-peer returned 7: the peer was STONITHed: peer Outdated'
            : 'fence-peer returned 7: the peer was STONITHed: peer Outdated (unusual: fencing is resource-only, not resource-and-stonith)',
      };
    default:
      return fail(`helper broken, exit code ${code}`);
  }
}
