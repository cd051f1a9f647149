/**
 * One TCP listener per resource and node, shared by every peer that dials us.
 *
 * With three nodes a node can be the listening side of two links (both peers have a higher
 * node id... or a lower one: the lower id dials), and both links arrive at this node's one
 * `address`. So the listener belongs to the resource: it is open while at least one peer
 * waits for a dial, accepts any of those peers, and hands each link to the peer it names.
 */
import type { Logger } from 'pino';
import type { Address } from '../config/index.js';
import {
  type LinkIdentity,
  type LinkTimers,
  PeerListener,
  type PeerLink,
} from '../replication/link.js';

/** What the listener needs of a peer that waits for a dial. */
export interface ListeningPeer {
  readonly name: string;
  /** Takes a link its peer dialled in; closes it when it has no use for it. */
  adopt(link: PeerLink): void;
  /** A connection that failed its handshake, told to every peer still waiting. */
  refusedDial(remote: string, reason: string): void;
}

export class SharedListener {
  private listener: PeerListener | undefined;
  private address: Address | undefined;
  private readonly waiting = new Map<string, ListeningPeer>();

  constructor(private readonly log: Logger) {}

  /**
   * Starts accepting dials from `peer`. Opens the listener, or opens it anew when the
   * node's address changed (links already handed out stay up).
   */
  async acquire(
    peer: ListeningPeer,
    address: Address,
    me: LinkIdentity,
    timers: LinkTimers,
  ): Promise<void> {
    this.waiting.set(peer.name, peer);
    if (this.listener && sameAddress(this.address, address)) return;
    const old = this.listener;
    this.listener = undefined;
    await old?.close();
    try {
      const l = await PeerListener.listen(
        { host: address.host, port: address.port },
        me,
        () => [...this.waiting.keys()],
        timers,
      );
      this.listener = l;
      this.address = address;
      l.on('link', (link: PeerLink) => {
        const p = this.waiting.get(link.peerNode);
        if (p) p.adopt(link);
        else link.close('no connection to this peer is wanted', 'TearDown');
      });
      l.on('refused', (remote: string, reason: string) => {
        for (const w of this.waiting.values()) w.refusedDial(remote, reason);
      });
    } catch (err) {
      this.waiting.delete(peer.name);
      throw err;
    }
  }

  /** `peer` no longer waits for a dial; the last one closes the listener. */
  async release(peer: ListeningPeer): Promise<void> {
    if (this.waiting.get(peer.name) !== peer) return;
    this.waiting.delete(peer.name);
    if (this.waiting.size > 0) return;
    const l = this.listener;
    this.listener = undefined;
    this.address = undefined;
    if (l) {
      await l.close();
      this.log.debug('peer listener closed');
    }
  }
}

function sameAddress(a: Address | undefined, b: Address): boolean {
  return a !== undefined && a.host === b.host && a.port === b.port && a.family === b.family;
}
