/**
 * Run a command on a pseudo-terminal, as a person at a terminal would: its stdin, stdout
 * and stderr are the pty (isTTY is true), and everything it writes comes back in `stdout`
 * (stdout and stderr merged, as on a screen). Python's pty module does the work; the child
 * is killed by PID on timeout like every other (see server.ts).
 */
import { run, type RunResult } from './server.js';

const PTY_RUNNER = `
import os, pty, sys
interrupt_on = os.environ.pop('PTY_INTERRUPT_ON', '').encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b''
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break  # EIO: the child is gone and the pty drained
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    if interrupt_on:
        seen += data
        if interrupt_on in seen:
            os.write(fd, b'\\x03')  # Ctrl-C, through the terminal's line discipline
            interrupt_on = b''
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`;

/** With `interruptOn`, the user presses Ctrl-C once that text has appeared. */
export function runInPty(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; interruptOn?: string } = {},
): Promise<RunResult> {
  return run('python3', ['-c', PTY_RUNNER, cmd, ...args], {
    timeoutMs: opts.timeoutMs ?? 60000,
    // A terminal that can show colour, unless the test says otherwise.
    env: {
      ...process.env,
      TERM: 'xterm-256color',
      ...(opts.env ?? {}),
      ...(opts.interruptOn !== undefined ? { PTY_INTERRUPT_ON: opts.interruptOn } : {}),
    },
  });
}

/** An ANSI SGR escape (colour, bold, reset). */
export const SGR = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;]*m`);
