/**
 * Run a command on a pseudo-terminal, as a person at a terminal would: its stdin, stdout
 * and stderr are the pty (isTTY is true), and everything it writes comes back in `stdout`
 * (stdout and stderr merged, as on a screen). Python's pty module does the work; the child
 * is killed by PID on timeout like every other (see server.ts).
 */
import { run, type RunResult } from './server.js';

const PTY_RUNNER = `
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break  # EIO: the child is gone and the pty drained
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`;

export function runInPty(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return run('python3', ['-c', PTY_RUNNER, cmd, ...args], {
    timeoutMs: opts.timeoutMs ?? 60000,
    // A terminal that can show colour, unless the test says otherwise.
    env: { ...process.env, TERM: 'xterm-256color', ...(opts.env ?? {}) },
  });
}

/** An ANSI SGR escape (colour, bold, reset). */
export const SGR = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;]*m`);
