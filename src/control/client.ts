import net from 'node:net';
import type { UrbdEvent } from './events.js';
import { type ControlReply, type ControlRequest, controlSocketPath } from './protocol.js';

/** No daemon answers on the run directory's control socket: exit 20, as drbdadm's "no module". */
export class DaemonUnreachable extends Error {
  readonly exitCode = 20;
  readonly code = 'ENODAEMON';
}

/** The daemon refused or failed a request; carries its code and the exit code to use. */
export class RemoteError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'RemoteError';
  }
}

/** One connection to urbd's control socket; requests may be pipelined. */
export class ControlClient {
  private nextId = 1;
  private buffered = '';
  private readonly waiting = new Map<number, (r: ControlReply) => void>();
  private onEvent: ((e: UrbdEvent) => void) | undefined;
  private readonly ended: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    this.ended = new Promise((resolve) => socket.on('close', () => resolve()));
    socket.on('close', () => {
      for (const [id, fn] of this.waiting) {
        fn({
          id,
          ok: false,
          error: { code: 'ECONNRESET', message: 'urbd closed the control connection', exit: 20 },
        });
      }
      this.waiting.clear();
    });
  }

  /** Resolves when the connection has closed (the daemon went away, or close()). */
  get closed(): Promise<void> {
    return this.ended;
  }

  /** Connects to urbd in `runDir`, or to another daemon's socket speaking the same protocol. */
  static connect(runDir: string, path = controlSocketPath(runDir)): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ path });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.on('error', () => socket.destroy());
        resolve(new ControlClient(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? `no ${path === controlSocketPath(runDir) ? 'urbd' : 'daemon'} is running there`
            : err.code === 'EACCES'
              ? 'permission denied (run as root)'
              : err.message;
        reject(
          new DaemonUnreachable(
            `cannot reach ${path === controlSocketPath(runDir) ? 'urbd' : 'it'} at ${path}: ${why}`,
          ),
        );
      });
    });
  }

  /** Sends one request; resolves with its result or rejects with RemoteError. */
  async request(cmd: string, resource?: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    const req: ControlRequest = {
      id,
      cmd,
      ...(resource !== undefined ? { resource } : {}),
      ...(args ? { args } : {}),
    };
    const reply = await new Promise<ControlReply>((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.write(JSON.stringify(req) + '\n');
    });
    if (!reply.ok) throw new RemoteError(reply.error.code, reply.error.message, reply.error.exit);
    return reply.result;
  }

  /**
   * Streams events to `fn` until the daemon or the caller closes the connection; with
   * `now`, only the current state (ending with the `exists -` marker) is sent.
   */
  async events(
    resource: string | undefined,
    fn: (e: UrbdEvent) => void,
    now: boolean,
    statistics = false,
  ): Promise<void> {
    this.onEvent = fn;
    await this.request('events', resource, { now, statistics });
    await this.ended;
  }

  close(): void {
    this.socket.end();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      const m = msg as { event?: UrbdEvent; id?: number };
      if (m.event !== undefined) {
        this.onEvent?.(m.event);
      } else if (typeof m.id === 'number') {
        const fn = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        fn?.(msg as ControlReply);
      }
    }
  }
}
