/**
 * Attach a urbd resource's NBD export (its Unix socket) as a block device on this host, so a
 * filesystem can be mounted on it, and detach it again.
 *
 * Two ways, chosen by `method` (auto: the kernel's nbd driver when it is there):
 *
 * - nbd-client: `nbd-client -unix SOCKET /dev/nbdN -N RES -b 4096`. No -persist: should the
 *   server go away, I/O fails instead of hanging while nbd-client retries.
 * - nbdfuse + loop, for kernels without nbd: nbdfuse exposes the export as the file
 *   STATEDIR/fuse/disk, `losetup --direct-io=on` turns that file into /dev/loopN. nbdfuse is
 *   started in a session of its own with its output in STATEDIR/nbdfuse.log, so it outlives
 *   whoever started it (an OCF agent run, a supervisor that restarts).
 *
 * Durability through the nbdfuse chain (checked with nbdkit's log filter under nbdfuse):
 * nbdfuse uses no FUSE writeback cache, so a write reaches the NBD server before the write
 * to the FUSE file returns; a flush of the loop device (ext4's journal commits, fsync) is an
 * fsync of the FUSE file, which nbdfuse sends as an NBD FLUSH. Direct I/O on the loop device
 * keeps a second copy of every block out of the FUSE file's page cache (the loop device's
 * own cache above it is the only one) and costs nothing measurable here (mkfs, 40 MiB
 * write + fsync, 50 small fsynced writes were within noise of buffered mode).
 *
 * Everything attachExport sets up is recorded in STATEDIR/attach.json, and STATEDIR/device
 * is a symlink to the block device, a path that stays the same across attaches (what
 * Pacemaker's Filesystem agent is given). detachExport and attachState work from that record
 * in any process, and also find what a crash half-way through an attach left behind: loop
 * devices backed by STATEDIR/fuse/disk, the FUSE mount, an nbdfuse named by the pid file.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  blockSize,
  firstFreeNbd,
  heldExclusively,
  holders,
  isMountPoint,
  loopBackingFile,
  loopsBackedBy,
  mountsOf,
  pollUntil,
  processAlive,
  runTool,
  signal,
  toolFailure,
} from './attach-sys.js';

import type { AttachMethod } from '../config/index.js';

export type { AttachMethod };

/** The state directory of a resource's attach: RUN_DIR/failover/RES. */
export function defaultAttachStateDir(runDir: string, resource: string): string {
  return path.join(runDir, 'failover', resource);
}

export interface AttachSpec {
  resource: string;
  /** The export's Unix socket (exportSocketPath(runDir, resource)). */
  socket: string;
  method: AttachMethod;
  /** /dev/nbdN for nbd-client (default: the first one no client is connected to). */
  device?: string;
  /** A directory this module owns for the resource. */
  stateDir: string;
  /** Per tool invocation (and per wait: for nbdfuse to come up, for a device's size, ...). */
  timeoutMs: number;
}

export interface Attached {
  device: string;
  method: 'nbd-client' | 'nbdfuse';
}

export type AttachState =
  | { state: 'attached'; device: string; method: 'nbd-client' | 'nbdfuse' }
  | { state: 'detached' }
  | { state: 'failed'; reason: string };

/** What attach.json holds. */
interface AttachRecord {
  resource: string;
  socket: string;
  method: 'nbd-client' | 'nbdfuse';
  /** Unset while an nbdfuse attach has no loop device yet. */
  device?: string;
  nbdfusePid?: number;
  directIo?: boolean;
  attachedAt: string;
}

interface StatePaths {
  record: string;
  link: string;
  fuseDir: string;
  fuseFile: string;
  pidFile: string;
  log: string;
}

function statePaths(stateDir: string): StatePaths {
  const dir = path.resolve(stateDir);
  return {
    record: path.join(dir, 'attach.json'),
    link: path.join(dir, 'device'),
    fuseDir: path.join(dir, 'fuse'),
    fuseFile: path.join(dir, 'fuse', 'disk'),
    pidFile: path.join(dir, 'nbdfuse.pid'),
    log: path.join(dir, 'nbdfuse.log'),
  };
}

/** STATEDIR/device: a symlink to the attached block device, there only while attached. */
export function deviceLinkPath(stateDir: string): string {
  return statePaths(stateDir).link;
}

/** nbd-client's command line for attaching the export on `device`. */
export function nbdClientArgs(socket: string, device: string, resource: string): string[] {
  return ['-unix', socket, device, '-N', resource, '-b', '4096'];
}

/** nbdfuse's command line: the pid file is written once the FUSE file is there. */
export function nbdfuseArgs(
  pidFile: string,
  fuseFile: string,
  socket: string,
  resource: string,
): string[] {
  return ['-P', pidFile, fuseFile, `nbd+unix:///${encodeURIComponent(resource)}?socket=${socket}`];
}

/** `auto` picks nbd-client when the kernel has nbd, else nbdfuse; the others are taken as is. */
export function chooseMethod(
  method: AttachMethod,
  kernelHasNbd: boolean,
): 'nbd-client' | 'nbdfuse' {
  if (method === 'auto') return kernelHasNbd ? 'nbd-client' : 'nbdfuse';
  return method;
}

/** Whether the kernel has the nbd driver, loading it if it is a module that is not loaded. */
export async function kernelHasNbd(timeoutMs: number): Promise<boolean> {
  if (fs.existsSync('/sys/module/nbd')) return true;
  const r = await runTool('modprobe', ['nbd'], timeoutMs);
  return r.code === 0 && fs.existsSync('/sys/module/nbd');
}

function readRecord(p: StatePaths): AttachRecord | undefined {
  let text: string;
  try {
    text = fs.readFileSync(p.record, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as AttachRecord;
    return r.method === 'nbd-client' || r.method === 'nbdfuse' ? r : undefined;
  } catch {
    return undefined; // a torn write: what is left behind is found by looking (leftovers)
  }
}

function writeRecord(p: StatePaths, r: AttachRecord): void {
  const tmp = `${p.record}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(r, null, 2) + '\n');
  fs.renameSync(tmp, p.record);
}

function setLink(p: StatePaths, device: string): void {
  const tmp = `${p.link}.tmp`;
  fs.rmSync(tmp, { force: true });
  fs.symlinkSync(device, tmp);
  fs.renameSync(tmp, p.link);
}

function readPidFile(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Whether something answers on the export's socket (a dead daemon leaves the file behind). */
function socketAnswers(socket: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Why `device` must not be detached now, or undefined when nothing uses it. */
function inUse(device: string): string | undefined {
  const where = mountsOf(device);
  if (where.length > 0) return `${device} is mounted on ${where.join(', ')}`;
  const over = holders(device);
  if (over.length > 0) return `${device} is held by ${over.join(', ')}`;
  if (heldExclusively(device)) {
    return `${device} is busy (mounted in another mount namespace, or opened exclusively)`;
  }
  return undefined;
}

/** The monitor: attached and healthy, detached (nothing left), or failed and why. */
export async function attachState(spec: AttachSpec): Promise<AttachState> {
  const p = statePaths(spec.stateDir);
  const rec = readRecord(p);
  if (!rec) {
    const left = leftovers(p);
    if (left.length === 0) return { state: 'detached' };
    return {
      state: 'failed',
      reason: `not attached, but an earlier attach left ${left.join(', ')} behind (detach cleans up)`,
    };
  }
  if (rec.method === 'nbd-client') {
    const dev = rec.device ?? '';
    const r = await runTool('nbd-client', ['-c', dev], spec.timeoutMs);
    if (r.code === 0) return { state: 'attached', device: dev, method: 'nbd-client' };
    if (r.code === 1) return { state: 'failed', reason: `${dev} is no longer connected` };
    return { state: 'failed', reason: toolFailure(`nbd-client -c ${dev}`, r, spec.timeoutMs) };
  }
  const pid = rec.nbdfusePid ?? 0;
  if (!processAlive(pid, p.fuseFile)) {
    return { state: 'failed', reason: `nbdfuse (pid ${pid}) is not running` };
  }
  if (!isMountPoint(p.fuseDir)) {
    return { state: 'failed', reason: `the FUSE mount ${p.fuseDir} is gone` };
  }
  if (rec.device === undefined) {
    return { state: 'failed', reason: 'the attach did not finish: no loop device' };
  }
  if (loopBackingFile(rec.device) !== p.fuseFile) {
    return { state: 'failed', reason: `${rec.device} is not backed by ${p.fuseFile}` };
  }
  if (blockSize(rec.device) === 0) return { state: 'failed', reason: `${rec.device} has no size` };
  if (!(await socketAnswers(rec.socket, Math.min(spec.timeoutMs, 2000)))) {
    return { state: 'failed', reason: `nothing answers on the export socket ${rec.socket}` };
  }
  return { state: 'attached', device: rec.device, method: 'nbdfuse' };
}

/** What an nbdfuse attach left on the host although no record names it. */
function leftovers(p: StatePaths): string[] {
  const left = loopsBackedBy(p.fuseFile);
  if (isMountPoint(p.fuseDir)) left.push(`the FUSE mount ${p.fuseDir}`);
  const pid = readPidFile(p.pidFile);
  if (pid !== undefined && processAlive(pid, p.fuseFile)) left.push(`nbdfuse (pid ${pid})`);
  return left;
}

/**
 * Attaches the export and returns its block device once the device has its size. An attach
 * that is there and healthy is returned as it is (whatever `method` asks); a failed one is
 * cleaned up first (and that refuses while its device is mounted).
 */
export async function attachExport(spec: AttachSpec): Promise<Attached> {
  const now = await attachState(spec);
  if (now.state === 'attached') return { device: now.device, method: now.method };
  if (now.state === 'failed') await detachExport(spec);
  fs.mkdirSync(spec.stateDir, { recursive: true });
  const hasNbd = spec.method === 'nbdfuse' ? false : await kernelHasNbd(spec.timeoutMs);
  const method = chooseMethod(spec.method, hasNbd);
  if (method === 'nbd-client' && !hasNbd) {
    throw new Error(
      `cannot attach ${spec.resource} with nbd-client: the kernel has no nbd driver (modprobe nbd failed); use nbdfuse`,
    );
  }
  return method === 'nbd-client' ? attachNbd(spec) : attachFuse(spec);
}

async function attachNbd(spec: AttachSpec): Promise<Attached> {
  const p = statePaths(spec.stateDir);
  const device = spec.device ?? firstFreeNbd();
  if (device === undefined) {
    throw new Error(`cannot attach ${spec.resource}: every /dev/nbdN is in use`);
  }
  const check = await runTool('nbd-client', ['-c', device], spec.timeoutMs);
  if (check.code === 0) {
    throw new Error(`cannot attach ${spec.resource}: ${device} is connected to something else`);
  }
  writeRecord(p, {
    resource: spec.resource,
    socket: spec.socket,
    method: 'nbd-client',
    device,
    attachedAt: new Date().toISOString(),
  });
  const r = await runTool(
    'nbd-client',
    nbdClientArgs(spec.socket, device, spec.resource),
    spec.timeoutMs,
  );
  if (r.code !== 0) {
    fs.rmSync(p.record, { force: true });
    throw new Error(
      `cannot attach ${spec.resource}: ${toolFailure('nbd-client', r, spec.timeoutMs)}`,
    );
  }
  if (!(await pollUntil(() => blockSize(device) > 0, spec.timeoutMs))) {
    await runTool('nbd-client', ['-d', device], spec.timeoutMs);
    fs.rmSync(p.record, { force: true });
    throw new Error(
      `cannot attach ${spec.resource}: ${device} got no size within ${spec.timeoutMs} ms`,
    );
  }
  setLink(p, device);
  return { device, method: 'nbd-client' };
}

async function attachFuse(spec: AttachSpec): Promise<Attached> {
  const p = statePaths(spec.stateDir);
  fs.mkdirSync(p.fuseDir, { recursive: true });
  fs.rmSync(p.pidFile, { force: true });
  const logFd = fs.openSync(p.log, 'a');
  fs.writeSync(logFd, `--- ${new Date().toISOString()} attaching ${spec.socket}\n`);
  const logStart = fs.fstatSync(logFd).size;
  let exited = false;
  let spawnError = '';
  let pid: number | undefined;
  try {
    // detached: a session of its own, so the agent run (or the supervisor) that starts it
    // can end, and its process group be killed, without taking the block device with it.
    const child = spawn('nbdfuse', nbdfuseArgs(p.pidFile, p.fuseFile, spec.socket, spec.resource), {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      cwd: spec.stateDir, // should nbdfuse abort (it can when the server vanishes), a core lands here
    });
    child.once('exit', () => {
      exited = true;
    });
    child.once('error', (e) => {
      exited = true;
      spawnError = e.message;
    });
    child.unref();
    pid = child.pid;
  } finally {
    fs.closeSync(logFd);
  }
  const rec: AttachRecord = {
    resource: spec.resource,
    socket: spec.socket,
    method: 'nbdfuse',
    attachedAt: new Date().toISOString(),
    ...(pid !== undefined ? { nbdfusePid: pid } : {}),
  };
  writeRecord(p, rec);
  const fail = async (why: string): Promise<never> => {
    try {
      await teardownFuse(spec, p, rec);
    } catch (err) {
      why += `; cleaning up failed too: ${(err as Error).message}`;
    }
    fs.rmSync(p.record, { force: true });
    throw new Error(`cannot attach ${spec.resource}: ${why}`);
  };
  const up = await pollUntil(() => {
    if (exited) return true;
    if (!fs.existsSync(p.pidFile)) return false;
    try {
      return fs.statSync(p.fuseFile).size > 0;
    } catch {
      return false;
    }
  }, spec.timeoutMs);
  if (exited || !up) {
    const said = logTail(p.log, logStart) || spawnError;
    return fail(
      `${exited ? 'nbdfuse exited' : `nbdfuse did not come up within ${spec.timeoutMs} ms`}${said ? `: ${said}` : ''}`,
    );
  }
  const lo = await runTool(
    'losetup',
    ['-f', '--show', '--direct-io=on', p.fuseFile],
    spec.timeoutMs,
  );
  const loop = lo.stdout.trim();
  if (lo.code !== 0 || !loop.startsWith('/dev/')) {
    return fail(toolFailure('losetup', lo, spec.timeoutMs));
  }
  rec.device = loop;
  rec.directIo = readDio(loop);
  writeRecord(p, rec);
  if (!(await pollUntil(() => blockSize(loop) > 0, spec.timeoutMs))) {
    return fail(`${loop} got no size within ${spec.timeoutMs} ms`);
  }
  setLink(p, loop);
  return { device: loop, method: 'nbdfuse' };
}

function readDio(loop: string): boolean {
  try {
    return (
      fs.readFileSync(`/sys/class/block/${path.basename(loop)}/loop/dio`, 'utf8').trim() === '1'
    );
  } catch {
    return false;
  }
}

/** The last meaningful line nbdfuse wrote to its log since `from`. */
function logTail(file: string, from: number): string {
  try {
    const text = fs.readFileSync(file).subarray(from).toString();
    return text.trim().split('\n').filter(Boolean).pop() ?? '';
  } catch {
    return '';
  }
}

/**
 * Detaches the export. Succeeds when nothing is attached. Refuses, with one line saying why,
 * while the block device is mounted, held (device-mapper) or opened exclusively: it never
 * pulls a device from under a filesystem. A stale attach (nbdfuse or the daemon dead, the
 * loop device still bound) is cleaned up: the loop device released, the FUSE mount
 * unmounted (lazily if it must be), nbdfuse stopped by PID.
 */
export async function detachExport(spec: AttachSpec): Promise<void> {
  const p = statePaths(spec.stateDir);
  if (!fs.existsSync(spec.stateDir)) return;
  const rec = readRecord(p);
  const devices = new Set<string>();
  if (rec?.device !== undefined) devices.add(rec.device);
  if (rec?.method !== 'nbd-client') for (const l of loopsBackedBy(p.fuseFile)) devices.add(l);
  for (const dev of devices) {
    // A recorded loop device released meanwhile may be someone else's now: skip it.
    if (rec?.method !== 'nbd-client' && loopBackingFile(dev) !== p.fuseFile) continue;
    const why = inUse(dev);
    if (why !== undefined) throw new Error(`cannot detach ${spec.resource}: ${why}`);
  }
  if (rec?.method === 'nbd-client') {
    if (rec.device !== undefined) await detachNbd(spec, rec.device);
  } else {
    await teardownFuse(spec, p, rec);
  }
  fs.rmSync(p.link, { force: true });
  fs.rmSync(p.record, { force: true });
}

async function detachNbd(spec: AttachSpec, device: string): Promise<void> {
  const c = await runTool('nbd-client', ['-c', device], spec.timeoutMs);
  if (c.code !== 0) return; // not connected (any more)
  const d = await runTool('nbd-client', ['-d', device], spec.timeoutMs);
  if (d.code !== 0) {
    throw new Error(
      `cannot detach ${spec.resource}: ${toolFailure(`nbd-client -d ${device}`, d, spec.timeoutMs)}`,
    );
  }
  const gone = await pollUntil(
    async () => (await runTool('nbd-client', ['-c', device], spec.timeoutMs)).code !== 0,
    spec.timeoutMs,
    100,
  );
  if (!gone) throw new Error(`cannot detach ${spec.resource}: ${device} is still connected`);
}

/** Unwinds the nbdfuse chain bottom-up: loop devices, the FUSE mount, nbdfuse. */
async function teardownFuse(
  spec: AttachSpec,
  p: StatePaths,
  rec: AttachRecord | undefined,
): Promise<void> {
  const fail = (why: string): never => {
    throw new Error(`cannot detach ${spec.resource}: ${why}`);
  };
  for (const loop of loopsBackedBy(p.fuseFile)) {
    const r = await runTool('losetup', ['-d', loop], spec.timeoutMs);
    if (r.code !== 0 && loopBackingFile(loop) === p.fuseFile) {
      fail(toolFailure(`losetup -d ${loop}`, r, spec.timeoutMs));
    }
    // losetup -d of a loop device someone still has open only marks it for autoclear.
    if (!(await pollUntil(() => loopBackingFile(loop) !== p.fuseFile, spec.timeoutMs))) {
      fail(`${loop} is still bound (someone has it open)`);
    }
  }
  if (isMountPoint(p.fuseDir)) {
    const u = await runTool('fusermount3', ['-u', p.fuseDir], spec.timeoutMs);
    if (u.code !== 0 && isMountPoint(p.fuseDir)) {
      // Nothing of ours uses the FUSE file any more (no loop device is bound to it), but a
      // dead nbdfuse can leave the mount unable to go normally: detach it lazily.
      const z = await runTool('fusermount3', ['-u', '-z', p.fuseDir], spec.timeoutMs);
      if (z.code !== 0 && isMountPoint(p.fuseDir)) {
        fail(toolFailure(`fusermount3 -u ${p.fuseDir}`, z, spec.timeoutMs));
      }
    }
  }
  const pids = new Set<number>();
  if (rec?.nbdfusePid !== undefined) pids.add(rec.nbdfusePid);
  const fromFile = readPidFile(p.pidFile);
  if (fromFile !== undefined) pids.add(fromFile);
  for (const pid of pids) await stopProcess(pid, p.fuseFile, spec.timeoutMs);
  fs.rmSync(p.pidFile, { force: true });
}

/** Waits for nbdfuse to end on its own (it does once unmounted), then SIGTERM, then SIGKILL. */
async function stopProcess(pid: number, needle: string, timeoutMs: number): Promise<void> {
  const gone = (): boolean => !processAlive(pid, needle);
  if (await pollUntil(gone, Math.min(timeoutMs, 5000))) return;
  signal(pid, 'SIGTERM');
  if (await pollUntil(gone, timeoutMs)) return;
  signal(pid, 'SIGKILL');
  if (!(await pollUntil(gone, 5000))) throw new Error(`nbdfuse (pid ${pid}) does not exit`);
}
