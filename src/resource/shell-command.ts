/**
 * Shell commands run the way drbdadm runs handlers and Pacemaker runs agents: `/bin/sh -c`
 * in a process group of their own (so the caller's signals do not reach them and the group
 * can be killed as one), with a deadline after which the whole group is killed (SIGTERM,
 * SIGKILL after a grace period), so a hanging command and its children never linger. Used
 * for handlers (handlers.ts) and for urbd-failover's steps.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface CommandResult {
  /** null when the command was killed by a signal or could not be started. */
  exitCode: number | null;
  signal: string | null;
  /** Killed after its deadline; a timed-out command failed whatever it exited with. */
  timedOut: boolean;
  durationMs: number;
  /** The tail of stdout, then the tail of stderr (at most OUTPUT_TAIL bytes each). */
  output: string;
}

/** Bytes kept of each of stdout and stderr. */
export const OUTPUT_TAIL = 4096;

/** How long output may still arrive on the pipes after the shell exited. */
const DRAIN_MS = 500;
/** How often a killed group is checked for survivors. */
const POLL_MS = 50;

interface Running {
  pgid: number;
  /** Starts killing the group (SIGTERM, SIGKILL after the grace period). */
  kill(why: 'timeout' | 'shutdown'): void;
  done: Promise<CommandResult>;
}

export interface ShellCommandsOptions {
  /** Between SIGTERM and SIGKILL of a timed-out command's process group (default 2 s). */
  killGraceMs?: number;
  /** The shell the command is given to with -c (default /bin/sh). */
  shell?: string;
  /** The output of a command asked for after shutdown(). */
  stoppingText?: string;
}

/** Runs commands and remembers the running ones, so shutdown() can kill them all. */
export class ShellCommands {
  private readonly killGraceMs: number;
  private readonly shell: string;
  private readonly running = new Set<Running>();
  private stopping = false;
  /** What a command started after shutdown() gets as its output. */
  private readonly stoppingText: string;

  constructor(opts: ShellCommandsOptions = {}) {
    this.stoppingText = opts.stoppingText ?? 'not run: shutting down';
    this.killGraceMs = opts.killGraceMs ?? 2000;
    this.shell = opts.shell ?? '/bin/sh';
  }

  /** Process group ids of the commands running now. */
  runningGroups(): number[] {
    return [...this.running].map((r) => r.pgid);
  }

  /** Kills every running command's process group and waits until each call has settled. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    const all = [...this.running];
    for (const r of all) r.kill('shutdown');
    await Promise.all(all.map((r) => r.done));
  }

  /**
   * Runs `command` under `shell -c` in a process group of its own and resolves once it has
   * exited (and, if it had to be killed, once its group is gone or has been sent SIGKILL).
   * Never rejects: a command that cannot be started, fails, is killed or times out is a result.
   */
  run(command: string, env: Record<string, string>, timeoutMs: number): Promise<CommandResult> {
    const started = performance.now();
    if (this.stopping) return Promise.resolve(failedCommand(0, this.stoppingText));
    const elapsed = (): number => Math.round(performance.now() - started);
    let child: ChildProcess;
    try {
      // stdin is /dev/null: a handler must not wait for input. detached: its own process
      // group, so the group can be killed as a whole.
      child = spawn(this.shell, ['-c', command], {
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      return Promise.resolve(
        failedCommand(elapsed(), `could not start: ${(err as Error).message}`),
      );
    }
    const stdout = new Tail(OUTPUT_TAIL);
    const stderr = new Tail(OUTPUT_TAIL);
    child.stdout!.on('data', (c: Buffer) => stdout.push(c));
    child.stderr!.on('data', (c: Buffer) => stderr.push(c));
    const pgid = child.pid;

    let exited: { code: number | null; signal: string | null } | undefined;
    let drained = false;
    let timedOut = false;
    /** Set once the group is being killed (timeout or shutdown). */
    let killing = false;
    /** The group has been sent SIGKILL, or was found empty: nothing of it can linger. */
    let groupDone = false;
    let settled = false;
    const timers = new Set<NodeJS.Timeout>();
    const later = (ms: number, fn: () => void): void => {
      if (settled) return;
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };

    let resolveDone!: (r: CommandResult) => void;
    const done = new Promise<CommandResult>((resolve) => (resolveDone = resolve));

    const settle = (r: CommandResult): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      child.stdout!.destroy();
      child.stderr!.destroy();
      this.running.delete(entry);
      resolveDone(r);
    };

    /** Sends `sig` to the whole group; false once nobody is left in it (ESRCH). */
    const signalGroup = (sig: NodeJS.Signals | 0): boolean => {
      if (pgid === undefined || groupDone) return false;
      try {
        process.kill(-pgid, sig);
        return true;
      } catch {
        groupDone = true;
        return false;
      }
    };

    /** Done once the shell has exited, its output is read, and a killed group is gone. */
    const maybeSettle = (): void => {
      if (!exited || !drained || (killing && !groupDone)) return;
      settle({
        exitCode: exited.code,
        signal: exited.signal,
        timedOut,
        durationMs: elapsed(),
        output: [stdout.text(), stderr.text()].filter((t) => t !== '').join('\n'),
      });
    };

    /** While killing: look for survivors until the group is empty or SIGKILL went out. */
    const poll = (): void => {
      signalGroup(0);
      if (groupDone) maybeSettle();
      else later(POLL_MS, poll);
    };

    const kill = (why: 'timeout' | 'shutdown'): void => {
      if (killing || settled) return;
      // A handler that exited by itself before its time is not killed for the timeout; at
      // shutdown whatever it left in its group goes too.
      if (exited && why === 'timeout') return;
      killing = true;
      timedOut = why === 'timeout';
      signalGroup('SIGTERM');
      later(this.killGraceMs, () => {
        signalGroup('SIGKILL');
        groupDone = true;
        maybeSettle();
      });
      poll();
    };

    const entry: Running = { pgid: pgid ?? -1, kill, done };
    if (pgid !== undefined) {
      this.running.add(entry);
      later(timeoutMs, () => kill('timeout'));
    }

    child.on('error', (err) => {
      // A shell that cannot be started (ENOENT, EACCES): there is no process.
      if (pgid === undefined) settle(failedCommand(elapsed(), `could not start: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      // Output still in the pipes arrives before 'close'; a background child that keeps
      // the pipes open must not hold the result back, so wait for it only briefly.
      later(DRAIN_MS, () => {
        drained = true;
        maybeSettle();
      });
      maybeSettle();
    });
    child.on('close', () => {
      drained = true;
      maybeSettle();
    });
    return done;
  }
}

export function failedCommand(durationMs: number, why: string): CommandResult {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    durationMs: Math.round(durationMs),
    output: why,
  };
}

/** One line about how a command ended, for logs and messages. */
export function describeResult(r: CommandResult): string {
  if (r.timedOut) {
    return `timed out after ${(r.durationMs / 1000).toFixed(1)} s and was killed`;
  }
  if (r.signal !== null) return `killed by ${r.signal}`;
  if (r.exitCode === null) return oneLine(r.output) || 'could not start';
  const hint =
    r.exitCode === 127 ? ' (command not found)' : r.exitCode === 126 ? ' (not executable)' : '';
  return `exit code ${r.exitCode}${hint}`;
}

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ').trim();
}

/** Keeps the last `max` bytes written to it. */
class Tail {
  private buf = Buffer.alloc(0);
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.max) this.buf = this.buf.subarray(this.buf.length - this.max);
  }
  text(): string {
    return this.buf.toString('utf8').trimEnd();
  }
}
