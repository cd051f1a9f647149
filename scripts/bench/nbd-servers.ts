import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The compiled urbd CLI, from dist/scripts/bench. */
export const URBD_CLI = path.resolve(here, '../../src/cli/urbd.js');

export interface RunningServer {
  name: string;
  uri: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** A free loopback port: bind port 0, read it back, release it. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

export async function waitForPort(port: number, proc: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listened on port ${port} within ${ms} ms`);
}

async function start(
  name: string,
  cmd: string,
  args: string[],
  port: number,
): Promise<RunningServer> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForPort(port, proc, 10_000);
  return {
    name,
    uri: `nbd://127.0.0.1:${port}`,
    proc,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await once(proc, 'exit');
      clearTimeout(timer);
    },
  };
}

export async function startNbdkit(file: string): Promise<RunningServer> {
  const port = await freePort();
  return start(
    'nbdkit',
    'nbdkit',
    ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), 'file', file],
    port,
  );
}

/** `urbd serve` on the file; nodeOptions go to node before the script (e.g. --cpu-prof). */
export async function startUrbd(file: string, nodeOptions: string[] = []): Promise<RunningServer> {
  const port = await freePort();
  return start(
    'serve',
    process.execPath,
    [...nodeOptions, URBD_CLI, 'serve', '--disk', file, '--listen', `127.0.0.1:${port}`],
    port,
  );
}

/** `nbdkit file` on a Unix socket (any export name), for attaching it as a block device. */
export async function startNbdkitUnix(file: string, socket: string): Promise<RunningServer> {
  // A socket left by an earlier nbdkit would look like this one being ready (and this one
  // then fails to bind it).
  fs.rmSync(socket, { force: true });
  const proc = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socket, 'file', file], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(socket)) {
    if (proc.exitCode !== null) throw new Error(`nbdkit exited with ${proc.exitCode}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`nbdkit made no socket ${socket} within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'nbdkit',
    uri: `nbd+unix:///?socket=${socket}`,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
