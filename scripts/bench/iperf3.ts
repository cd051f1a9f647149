/**
 * The loopback link as a physical reference: one iperf3 stream over 127.0.0.1, the server
 * started for one test (`-s -1`) and stopped by PID should it still run.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { freePort } from './nbd-servers.js';

const run = promisify(execFile);

/** Whether something listens on the loopback TCP port (ss; no connection is made). */
async function listening(port: number): Promise<boolean> {
  const { stdout } = await run('ss', ['-Hltn', `sport = :${port}`]);
  return stdout.trim().length > 0;
}

/** One stream for `seconds`; the receiver's throughput in MiB/s. */
export async function iperf3MiBs(seconds = 3): Promise<number> {
  const port = await freePort();
  const srv = spawn('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    const deadline = Date.now() + 10_000;
    while (!(await listening(port))) {
      if (srv.exitCode !== null) throw new Error(`iperf3 -s exited with ${srv.exitCode}`);
      if (Date.now() > deadline) throw new Error(`iperf3 -s did not listen within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { stdout } = await run(
      'iperf3',
      ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J'],
      { maxBuffer: 16 * 1024 * 1024, timeout: (seconds + 30) * 1000 },
    );
    const doc = JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } };
    return doc.end.sum_received.bits_per_second / 8 / 2 ** 20;
  } finally {
    if (srv.exitCode === null && srv.signalCode === null) {
      const exited = once(srv, 'exit');
      // -s -1 exits after its one test; give it a moment before stopping it.
      const timer = setTimeout(() => srv.kill('SIGTERM'), 2000);
      await exited;
      clearTimeout(timer);
    }
  }
}
