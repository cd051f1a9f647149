/**
 * What attach.ts asks of the host: run a tool with a deadline, read block devices from sysfs,
 * read the mount table, and tell a live process from a dead one or a zombie. No state here.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs `cmd args` to completion; past `timeoutMs` it is SIGKILLed by PID. ENOENT is 127. */
export function runTool(cmd: string, args: string[], timeoutMs: number): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: Error | undefined;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code: spawnError ? 127 : code,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString() + (spawnError ? spawnError.message : ''),
        timedOut,
      });
    });
  });
}

/** One line saying how a tool failed, for error messages. */
export function toolFailure(what: string, r: ToolResult, timeoutMs: number): string {
  if (r.timedOut) return `${what} did not finish within ${timeoutMs} ms`;
  const said = (r.stderr.trim() || r.stdout.trim()).split('\n').pop() ?? '';
  return `${what} failed (exit ${r.code})${said ? `: ${said}` : ''}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `pred` every `stepMs` until it holds or `timeoutMs` has passed. */
export async function pollUntil(
  pred: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() >= end) return false;
    await sleep(stepMs);
  }
}

/** `/dev/loop3` → `loop3`. */
export function devName(device: string): string {
  return path.basename(device);
}

function readSys(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Size in bytes the kernel gives the block device (0 when unknown or not there). */
export function blockSize(device: string, sys = '/sys/class/block'): number {
  const sectors = readSys(path.join(sys, devName(device), 'size'));
  return sectors === undefined ? 0 : Number(sectors) * 512;
}

/** `7:3` for /dev/loop3, from sysfs; undefined when the kernel has no such device. */
export function majMin(device: string, sys = '/sys/class/block'): string | undefined {
  return readSys(path.join(sys, devName(device), 'dev'));
}

/** The file a loop device is backed by, or undefined when it is not bound. */
export function loopBackingFile(device: string, sys = '/sys/class/block'): string | undefined {
  const f = readSys(path.join(sys, devName(device), 'loop', 'backing_file'));
  return f === undefined ? undefined : f.replace(/ \(deleted\)$/, '');
}

/** Every bound loop device backed by `file`. */
export function loopsBackedBy(file: string, sys = '/sys/class/block'): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(sys).filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  return names.filter((n) => loopBackingFile(n, sys) === file).map((n) => `/dev/${n}`);
}

/** Whatever sits on top of the device (device-mapper, md): /sys/class/block/X/holders. */
export function holders(device: string, sys = '/sys/class/block'): string[] {
  try {
    return fs.readdirSync(path.join(sys, devName(device), 'holders'));
  } catch {
    return [];
  }
}

/** The first /dev/nbdN the kernel has that no client is connected to (no `pid` in sysfs). */
export function firstFreeNbd(sys = '/sys/class/block'): string | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(sys).filter((n) => /^nbd\d+$/.test(n));
  } catch {
    return undefined;
  }
  names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  const free = names.find((n) => !fs.existsSync(path.join(sys, n, 'pid')));
  return free === undefined ? undefined : `/dev/${free}`;
}

export interface MountEntry {
  majMin: string;
  mountPoint: string;
  fsType: string;
  source: string;
}

/** /proc/self/mountinfo fields are octal-escaped (`\040` for a space). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6 || f.length < dash + 3) continue;
    out.push({
      majMin: f[2]!,
      mountPoint: unescape(f[4]!),
      fsType: f[dash + 1]!,
      source: unescape(f[dash + 2]!),
    });
  }
  return out;
}

export function mounts(): MountEntry[] {
  try {
    return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch {
    return [];
  }
}

/** Where `device` is mounted, matched by path and by major:minor (a symlink or a bind). */
export function mountsOf(device: string, table = mounts()): string[] {
  const mm = majMin(device);
  return table
    .filter((m) => m.source === device || (mm !== undefined && m.majMin === mm))
    .map((m) => m.mountPoint);
}

export function isMountPoint(dir: string, table = mounts()): boolean {
  return table.some((m) => m.mountPoint === dir);
}

/**
 * Whether someone holds the device exclusively: a mount in any namespace, device-mapper,
 * swap. Opening a block device with O_EXCL fails with EBUSY then (Linux semantics).
 */
export function heldExclusively(device: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(device, fs.constants.O_RDONLY | fs.constants.O_EXCL | fs.constants.O_NONBLOCK);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EBUSY';
  }
  fs.closeSync(fd);
  return false;
}

/**
 * A process that runs (not a zombie) and whose command line contains `needle`, so a PID the
 * kernel has handed to someone else meanwhile does not count.
 */
export function processAlive(pid: number, needle: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const stat = readSys(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  if (state === 'Z' || state === 'X') return false;
  let cmdline: string;
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return false;
  }
  return cmdline.includes(needle);
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
