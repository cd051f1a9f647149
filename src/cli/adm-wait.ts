import cliProgress from 'cli-progress';
import type { ResourceStatus } from '../resource/status.js';
import { AdmContext, AdmError, Exit } from './adm-context.js';

/**
 * wait-connect and wait-sync: what each waits for, when waiting is pointless, and the loop
 * that polls the daemon. The conditions are pure functions of a status, tested on their own.
 */
export interface WaitGoal {
  /** For the timeout message: "not connected after 5 s". */
  what: string;
  done: (st: ResourceStatus) => boolean;
}

export const CONNECTED: WaitGoal = {
  what: 'connected',
  done: (st) => st.peers.every((p) => p.connection === 'Connected'),
};

export const IN_SYNC: WaitGoal = {
  what: 'in sync',
  done: (st) =>
    st.device.diskState === 'UpToDate' &&
    st.peers.every(
      (p) =>
        p.connection === 'Connected' &&
        p.replication === 'Established' &&
        // A diskless tiebreaker holds no data to be in sync with.
        (p.peerDisk === 'UpToDate' || !p.diskful),
    ),
};

/**
 * Why no wait can succeed, or undefined while it still may: a StandAlone peer stays so until
 * someone runs `connect` (after an authentication failure or a split brain it refused to
 * retry), so waiting for it would be waiting forever in silence.
 */
export function hopeless(st: ResourceStatus): string | undefined {
  const p = st.peers.find((x) => x.connection === 'StandAlone');
  if (!p) return undefined;
  const why = p.lastError !== undefined ? ` (${p.lastError})` : '';
  return `${st.name}: ${p.name} is StandAlone${why}; it stays so until "urbdadm connect ${st.name}"`;
}

/**
 * What is in the way while still waiting: each peer not connected that has a last error
 * (a dial refused, a peer turned away), as "peer: error".
 */
export function obstacles(st: ResourceStatus): string[] {
  return st.peers
    .filter((p) => p.connection !== 'Connected' && p.lastError !== undefined)
    .map((p) => `${p.name}: ${p.lastError!}`);
}

/** What a progress bar shows of a resync: the first peer syncing, or undefined. */
export function syncShown(
  st: ResourceStatus,
):
  { peer: string; state: string; done: number; rate: number; eta: number | undefined } | undefined {
  for (const p of st.peers) {
    if (!p.sync) continue;
    return {
      peer: p.name,
      state: p.replication,
      done: p.sync.done,
      rate: p.sync.rate,
      eta: p.sync.etaSeconds,
    };
  }
  return undefined;
}

/** "1:05", "1:02:03", or "?" when unknown. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / (1 << 20)).toFixed(1)} MiB/s`;
}

/**
 * A resync progress bar on stderr, drawn only when stderr is a terminal: a pipe or a log
 * gets nothing but the one-line result, as before.
 */
class SyncBar {
  private bar: cliProgress.SingleBar | undefined;

  constructor(private readonly name: string) {}

  /**
   * Ctrl-C while the bar is up: give the terminal back its cursor and line wrapping, then
   * end as a shell expects of an interrupted command (128 + the signal number).
   */
  private readonly onSigint = (): void => this.interrupted(130);
  private readonly onSigterm = (): void => this.interrupted(143);

  private interrupted(code: number): void {
    this.stop();
    process.exit(code);
  }

  show(st: ResourceStatus): void {
    const s = syncShown(st);
    if (!s) return;
    const payload = {
      res: this.name,
      peer: s.peer,
      state: s.state,
      rate: formatRate(s.rate),
      etaText: formatEta(s.eta),
    };
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        {
          format: '{res} {peer} {state} |{bar}| {percentage}% | {rate} | eta {etaText}',
          stream: process.stderr,
          hideCursor: true,
          barsize: 30,
        },
        cliProgress.Presets.shades_classic,
      );
      process.once('SIGINT', this.onSigint);
      process.once('SIGTERM', this.onSigterm);
      this.bar.start(100, s.done, payload);
    } else {
      this.bar.update(s.done, payload);
    }
  }

  /** The resync finished: the bar ends full, on its own line. */
  finish(): void {
    this.bar?.update(100, { state: 'Established', etaText: '0:00' });
    this.stop();
  }

  stop(): void {
    if (!this.bar) return;
    process.off('SIGINT', this.onSigint);
    process.off('SIGTERM', this.onSigterm);
    this.bar.stop();
    this.bar = undefined;
  }
}

/**
 * Polls the daemon's status until `goal` holds. Bounded by --timeout (drbdadm's
 * wfc-timeout; 0 waits until the goal, a hopeless state or a signal). With `progress` and
 * a terminal on stderr, a running resync is drawn as a bar with its rate and ETA.
 */
export async function waitFor(
  ctx: AdmContext,
  name: string,
  timeoutS: number,
  goal: WaitGoal,
  progress = false,
): Promise<void> {
  if (!Number.isFinite(timeoutS) || timeoutS < 0) {
    throw new AdmError(
      `--timeout must be a number of seconds, got ${String(timeoutS)}`,
      Exit.USAGE,
    );
  }
  const c = await ctx.requireDaemon();
  const until = timeoutS > 0 ? Date.now() + timeoutS * 1000 : Infinity;
  const tty = process.stderr.isTTY === true;
  const bar = progress && tty ? new SyncBar(name) : undefined;
  // On a terminal, say once what stands in the way each time it changes, so a wait that
  // will be long is not a silent one. Scripts (no terminal) get only the result.
  const told = new Set<string>();
  try {
    for (;;) {
      const [st] = (await c.request('status', name)) as ResourceStatus[];
      if (!st) throw new AdmError(`${name}: no such resource is up on ${ctx.node}`, Exit.FAILED);
      if (goal.done(st)) {
        bar?.finish();
        return;
      }
      const why = hopeless(st);
      if (why !== undefined) throw new AdmError(why, Exit.FAILED);
      if (Date.now() >= until) {
        throw new AdmError(`${name}: not ${goal.what} after ${timeoutS} s`, Exit.TIMEOUT);
      }
      if (tty) {
        for (const o of obstacles(st)) {
          if (told.has(o)) continue;
          told.add(o);
          process.stderr.write(`urbdadm: ${name}: still waiting: ${o}\n`);
        }
      }
      bar?.show(st);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    bar?.stop();
  }
}
