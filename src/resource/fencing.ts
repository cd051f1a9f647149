/**
 * Fencing for two data nodes (drbd.md §8.1–§8.3): the fence-peer handler reaches the peer by
 * another path and outdates it (or STONITHs it), and its exit code says what happened
 * (handlers.ts fenceOutcome, §8.2). It runs
 *   - when a Primary loses the connection to its data peer: with resource-and-stonith, I/O is
 *     frozen until the handler succeeds (or `resume-io`); with resource-only it is not;
 *   - when a disconnected node is promoted and its peer is not known Outdated.
 * unfence-peer runs once a fenced peer is back with UpToDate data.
 */
import type { Peer } from './peer.js';
import { fenceOutcome, type HandlerName, type HandlerResult } from './handlers.js';
import type { DiskState, Fencing } from './states.js';
import type { Logger } from 'pino';

export interface FencingHost {
  readonly log: Logger;
  readonly disk: DiskState;
  readonly fencing: Fencing;
  /** Runs a handler about `peer`; undefined when none is configured. */
  runHandler(name: HandlerName, peer?: Peer): Promise<HandlerResult | undefined>;
  /** resource-and-stonith: hold or release application I/O. */
  freezeForFencing(frozen: boolean, why?: string): void;
  /** The peer is Outdated (or Inconsistent): writes may go on without it. */
  peerFenced(peer: Peer, disk: 'Outdated' | 'Inconsistent'): void;
  outdateSelf(why: string): void;
  changed(): void;
}

export type FenceResult = 'peer-fenced' | 'self-outdated' | 'failed' | 'no-handler';

export class Fencer {
  /** Peers fenced by fence-peer whose unfence-peer is owed once they are UpToDate again. */
  private readonly fenced = new Set<string>();
  private readonly running = new Map<string, Promise<FenceResult>>();
  /** Set when fence-peer failed or reported the peer Primary: status shows it as the freeze's reason. */
  lastFailure: string | undefined;

  constructor(private readonly host: FencingHost) {}

  get active(): boolean {
    return this.host.fencing !== 'dont-care';
  }

  /**
   * Runs fence-peer about `peer` (one call at a time per peer) and applies its verdict.
   * `freeze` holds I/O while it runs (a Primary under resource-and-stonith).
   */
  fence(peer: Peer, freeze: boolean): Promise<FenceResult> {
    const busy = this.running.get(peer.name);
    if (busy) return busy;
    const h = this.host;
    if (freeze) h.freezeForFencing(true, `fence-peer about ${peer.name} is running`);
    const run = (async (): Promise<FenceResult> => {
      const res = await h.runHandler('fence-peer', peer);
      if (res === undefined) {
        h.log.error(
          { peer: peer.name, fencing: h.fencing },
          `fencing ${h.fencing} but no fence-peer handler: the peer cannot be outdated`,
        );
        this.lastFailure = 'no fence-peer handler configured';
        return 'no-handler';
      }
      if (peer.established) {
        // The peer came back while the handler ran: it is connected, nothing to fence.
        h.log.info({ peer: peer.name }, 'fence-peer finished after the peer came back: ignored');
        if (freeze) h.freezeForFencing(false);
        return 'failed';
      }
      const fencing =
        h.fencing === 'resource-and-stonith' ? 'resource-and-stonith' : 'resource-only';
      const out = fenceOutcome(res, h.disk, fencing);
      h.log[out.success ? 'info' : 'warn'](
        { peer: peer.name, exitCode: res.exitCode, verdict: out.verdict },
        `fence-peer: ${out.message}`,
      );
      if (out.outdateSelf) {
        h.outdateSelf(`fence-peer: ${out.message}`);
        this.lastFailure = out.message;
        return 'self-outdated';
      }
      if (out.success && out.peerDisk !== undefined) {
        this.fenced.add(peer.name);
        this.lastFailure = undefined;
        h.peerFenced(peer, out.peerDisk);
        if (freeze) h.freezeForFencing(false);
        return 'peer-fenced';
      }
      this.lastFailure = `fence-peer failed: ${out.message}`;
      return 'failed';
    })().finally(() => {
      this.running.delete(peer.name);
      h.changed();
    });
    this.running.set(peer.name, run);
    return run;
  }

  /** A peer is back with UpToDate data: a fence set up for it is lifted (unfence-peer). */
  peerUpToDate(peer: Peer): void {
    if (!this.fenced.delete(peer.name)) return;
    void this.host.runHandler('unfence-peer', peer);
  }
}
