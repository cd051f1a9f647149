/**
 * Process plumbing for tests that drive the real urbd binary and real NBD clients.
 *
 * Every child is tracked by PID and killed by PID: in teardown when a test passes `t`, and
 * again from a process 'exit' hook, so a test that fails half-way (or a tap timeout) never
 * leaves a server, nbdfuse or tool process running behind it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The part of a tap Test these helpers use. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Compiled CLI, resolved from dist/test/helpers. */
export const URBD_CLI = path.resolve(here, '../../src/cli/urbd.js');

/**
 * tap gives every child process its process-info hook (`--import=…@tapjs/processinfo…` in
 * NODE_OPTIONS, put back on each spawn) so that coverage can follow it. Coverage is off here
 * (package.json), and on Node 20 the hook starts a module-loader thread in each node process:
 * it triples the CPU an urbd daemon or an urbdadm call takes to start (about 0.5 s more).
 * So, with coverage off, children are started through `env -u NODE_OPTIONS`, which execs
 * the command in place (same PID) without it; their own children (a shell script running
 * urbdadm) go without it too.
 */
const DROP_TAP_HOOK =
  process.env.TAP_DISABLE_COVERAGE === '1' &&
  /@tapjs[\\/]processinfo/.test(process.env.NODE_OPTIONS ?? '');

function withoutTapHook(cmd: string, args: string[]): [string, string[]] {
  return DROP_TAP_HOOK ? ['/usr/bin/env', ['-u', 'NODE_OPTIONS', cmd, ...args]] : [cmd, args];
}

const live = new Set<number>();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A directory under os.tmpdir(), removed in teardown. */
export function tmpDir(t: Teardown, prefix = 'urbd-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Tracked {
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  readonly exitCode: number | null | undefined;
  /** The last 64 KiB of stdout and stderr (always drained, so the child never blocks). */
  output(): string;
  stop(timeoutMs?: number): Promise<number | null>;
}

/**
 * Spawn a long-running child that is killed by PID: SIGTERM first, SIGKILL if it has not
 * exited after `timeoutMs`.
 */
export function spawnTracked(
  cmd: string,
  args: string[],
  opts: { t?: Teardown; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Tracked {
  const child = spawn(...withoutTapHook(cmd, args), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  if (child.pid === undefined) {
    // spawn failure is reported through 'error'; surface it as a thrown error instead
    throw new Error(`failed to spawn ${cmd}`);
  }
  const pid = child.pid;
  live.add(pid);
  let output = '';
  const collect = (d: Buffer | string) => {
    output = (output + d.toString()).slice(-65536);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      live.delete(pid);
      exitCode = code;
      resolve(code);
    });
  });
  child.on('error', () => {
    // 'exit' still follows for a process that started; nothing else to do here
  });
  const stop = async (timeoutMs = 10000): Promise<number | null> => {
    if (exitCode !== undefined) return exitCode;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const first = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (first === 'timeout' && alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // raced with exit
      }
    }
    return exited;
  };
  if (opts.t) opts.t.teardown(() => stop(5000));
  return {
    pid,
    child,
    exited,
    get exitCode() {
      return exitCode;
    },
    output: () => output,
    stop,
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** A command's outcome for an assertion's diagnostics: exit status and the tails of its output. */
export function showRun(r: RunResult): string {
  return `code=${r.code} signal=${r.signal} timedOut=${r.timedOut}\nstdout:\n${r.stdout.slice(-3000)}\nstderr:\n${r.stderr.slice(-3000)}`;
}

/** Run a command to completion; on timeout it is SIGKILLed by PID and `timedOut` is set. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string | Buffer } = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60000;
  return new Promise((resolve) => {
    const child = spawn(...withoutTapHook(cmd, args), {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: Error | undefined;
    const pid = child.pid;
    if (pid !== undefined) live.add(pid);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) live.delete(pid);
      resolve({
        code: spawnError ? 127 : code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr:
          Buffer.concat(err).toString() +
          (spawnError ? `\nspawn error: ${spawnError.message}` : ''),
        timedOut,
      });
    });
  });
}

/**
 * Create a disk image. No fill: sparse. A number: every byte set to it. 'random': random
 * data. A Buffer: repeated to the size.
 */
export async function makeDisk(
  dir: string,
  size: number,
  fill?: number | 'random' | Buffer,
  name = `disk-${randomBytes(4).toString('hex')}.img`,
): Promise<string> {
  const file = path.join(dir, name);
  if (fill === undefined) {
    await writeFile(file, '');
    await truncate(file, size);
    return file;
  }
  const fh = await open(file, 'w');
  try {
    const step = 1 << 20;
    for (let off = 0; off < size; off += step) {
      const n = Math.min(step, size - off);
      let chunk: Buffer;
      if (fill === 'random') chunk = randomBytes(n);
      else if (typeof fill === 'number') chunk = Buffer.alloc(n, fill);
      else {
        chunk = Buffer.alloc(n);
        for (let i = 0; i < n; i++) chunk[i] = fill[(off + i) % fill.length]!;
      }
      await fh.write(chunk, 0, n, off);
    }
  } finally {
    await fh.close();
  }
  return file;
}

export interface LogLine {
  raw: string;
  json?: Record<string, unknown>;
}

export interface ServerHandle {
  pid: number;
  /** nbd://127.0.0.1:PORT of the first TCP listener (undefined if there is none). */
  tcp: string;
  port: number;
  /** All TCP listeners in order, as nbd:// URIs. */
  tcpAll: string[];
  /** Socket path of the first unix listener. */
  unixPath?: string;
  unixPaths: string[];
  /** stdout lines so far (pino JSON); grows while the server runs. */
  logs: LogLine[];
  stderr: () => string;
  /** URI of a named export on the first TCP listener ('' = the default export). */
  uri(exportName?: string): string;
  /** nbd+unix URI of a named export on the first unix listener. */
  unixUri(exportName?: string): string;
  /** Resolves once a log line satisfies `pred` (checks lines already seen first). */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<number | null>;
  readonly exitCode: number | null | undefined;
  isAlive(): boolean;
  /** SIGTERM; SIGKILL after `timeoutMs`; resolves with the exit code (null if signalled). */
  stop(timeoutMs?: number): Promise<number | null>;
}

export interface StartOptions {
  /** Registers the kill-by-PID teardown on this test. */
  t?: Teardown;
  /** How long to wait for every `listening` line. */
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

function encodeExport(name: string): string {
  return encodeURIComponent(name);
}

/**
 * Start `urbd serve ARGS` and wait until every `--listen` has logged its `listening` line.
 * `args` are the arguments after the `serve` verb.
 */
export async function startServer(args: string[], opts: StartOptions = {}): Promise<ServerHandle> {
  const expected = args.filter((a) => a === '--listen').length;
  if (expected === 0) throw new Error('startServer: no --listen given');
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15000;
  const proc = spawnTracked(process.execPath, [URBD_CLI, 'serve', ...args], {
    t: opts.t,
    env: opts.env,
  });
  const { logs, waitForLog, stderr } = followLogs(proc);

  const listening: string[] = [];
  try {
    for (let i = 0; i < expected; i++) {
      const line = await waitForLog(
        (l) => l.json?.msg === 'listening' && !listening.includes(String(l.json.address)),
        readyTimeoutMs,
      );
      listening.push(String(line.json!.address));
    }
  } catch (e) {
    await proc.stop(2000);
    throw new Error(`urbd serve ${args.join(' ')} did not become ready: ${(e as Error).message}`);
  }

  const tcpAll = listening.filter((a) => !a.startsWith('unix:')).map((a) => `nbd://${a}`);
  const unixPaths = listening
    .filter((a) => a.startsWith('unix:'))
    .map((a) => a.slice('unix:'.length));
  const tcp = tcpAll[0] ?? '';
  return {
    pid: proc.pid,
    tcp,
    port: tcp ? Number(new URL(tcp).port) : 0,
    tcpAll,
    unixPath: unixPaths[0],
    unixPaths,
    logs,
    stderr,
    uri: (name = '') => `${tcp}/${encodeExport(name)}`,
    unixUri: (name = '') => `nbd+unix:///${encodeExport(name)}?socket=${unixPaths[0] ?? ''}`,
    waitForLog,
    exited: proc.exited,
    get exitCode() {
      return proc.exitCode;
    },
    isAlive: () => proc.exitCode === undefined && alive(proc.pid),
    stop: proc.stop,
  };
}

/** A child's pino log lines, collected as they arrive, and a way to wait for one. */
export function followLogs(proc: Tracked): {
  logs: LogLine[];
  waitForLog: (pred: (l: LogLine) => boolean, timeoutMs?: number) => Promise<LogLine>;
  stderr: () => string;
} {
  const logs: LogLine[] = [];
  const watchers = new Set<() => void>();
  let stderr = '';
  let partial = '';
  proc.child.stdout!.setEncoding('utf8');
  proc.child.stdout!.on('data', (d: string) => {
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const raw of lines) {
      if (raw.trim() === '') continue;
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      logs.push({ raw, json });
    }
    for (const w of watchers) w();
  });
  proc.child.stderr!.setEncoding('utf8');
  proc.child.stderr!.on('data', (d: string) => {
    stderr += d;
  });
  proc.exited.then(() => {
    for (const w of watchers) w();
  });

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < logs.length; seen++) {
          if (pred(logs[seen]!)) {
            done();
            resolve(logs[seen]!);
            return;
          }
        }
        if (proc.exitCode !== undefined) {
          done();
          reject(
            new Error(`server exited (${proc.exitCode}) before the expected log line\n${tail()}`),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching log line within ${timeoutMs} ms\n${tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        watchers.delete(check);
      };
      watchers.add(check);
      check();
    });
  const tail = () =>
    `stdout:\n${logs
      .slice(-20)
      .map((l) => l.raw)
      .join('\n')}\nstderr:\n${stderr.slice(-2000)}`;

  return { logs, waitForLog, stderr: () => stderr };
}

/** Poll until `fn` returns a truthy value or the time is up. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  timeoutMs: number,
  stepMs = 100,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= deadline) return undefined;
    await sleep(stepMs);
  }
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

export async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function writeRange(file: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

/** True when every byte of `buf` equals `value`. */
export function allBytes(buf: Buffer, value: number): boolean {
  for (const b of buf) if (b !== value) return false;
  return true;
}

/** `p`, or 'timeout' if it has not settled after `ms` (the timer never outlives the race). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
