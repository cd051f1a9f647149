/**
 * What one node knows of the whole cluster and does about it: its quorum (the rules are the
 * pure functions of quorum.ts), what it tells its peers in every state message, and the
 * outdate protocol through the tiebreaker (DESIGN.md "Quorum and the data generation").
 *
 * The outdate protocol. A Primary that loses its data peer while it still reaches the
 * tiebreaker may go on writing only once the lost peer can no longer be promoted. It asks
 * the tiebreaker to outdate the peer, and holds every write that the peer did not confirm
 * meanwhile. The tiebreaker records "beta outdated by alpha", sends the record to every peer
 * in its state (beta, if still connected to it, marks its disk Outdated, durably, and says
 * so in its own state), and answers `outdated` once beta reported it, or `unreachable` when
 * beta is not connected to it (beta is then alone, without quorum, and a node that lost
 * quorum cannot regain it through the tiebreaker alone; the record reaches it when it comes
 * back). The record is dropped once beta reports UpToDate data while connected to alpha.
 */
import type { Peer } from './peer.js';
import type { SeenNode, State, OutdateRecord } from '../replication/schema.js';
import {
  initialLost,
  nextLost,
  promotionVerdict,
  type QuorumInput,
  quorumVerdict,
  type QuorumVerdict,
} from './quorum.js';
import type { DiskState, Fencing, Role } from './states.js';
import type { ResourceConfig } from '../config/index.js';
import type { Logger } from 'pino';

/** What the cluster logic needs of its resource. */
export interface ClusterHost {
  readonly node: string;
  readonly config: ResourceConfig;
  readonly role: Role;
  readonly disk: DiskState;
  readonly diskful: boolean;
  readonly peers: readonly Peer[];
  readonly log: Logger;
  /** Marks the local disk Outdated, durably (an outdate order reached this node). */
  outdateSelf(why: string): void;
}

export type ClusterSummary = Pick<State, 'quorum' | 'sees' | 'promotable' | 'outdated' | 'leaving'>;

export function quorumOn(config: ResourceConfig): boolean {
  return config.options.quorum !== 'off';
}

/** Outdate answers that let the asking Primary go on without the lost peer. */
const SETTLED = new Set(['outdated', 'unreachable']);

export class Cluster {
  /**
   * Sticky: this node lost quorum (alone or in a minority) and has not since been connected
   * to a data node. A node starts that way: after a restart it cannot know what the others
   * did meanwhile, so the tiebreaker alone does not make it quorate.
   */
  lost: boolean;
  verdict: QuorumVerdict;
  /** Set by a graceful down or disconnect, for the state message that says goodbye. */
  private leaving = false;
  /** A Primary's goodbye: the peers it leaves are Outdated. */
  private farewellOutdates: string[] = [];
  /** Records this node relays: target → the Primary that outdated it. */
  private readonly records = new Map<string, string>();
  /** Outdate requests this node (a Primary) sent: id → the lost peer and its waiters. */
  private readonly asked = new Map<
    number,
    { target: string; via: string; done: (ok: boolean) => void }
  >();
  /** Requests this node relays, waiting for the target's state: target → answers owed. */
  private readonly relaying = new Map<
    string,
    Array<{ from: Peer; id: number; timer: NodeJS.Timeout }>
  >();
  private nextId = 1;
  private lastSent = '';

  constructor(private readonly host: ClusterHost) {
    this.lost = initialLost(host.config.options.quorum);
    this.verdict = quorumVerdict(this.input());
  }

  input(): QuorumInput {
    const h = this.host;
    const o = h.config.options;
    return {
      quorum: o.quorum,
      minimumRedundancy: o.quorumMinimumRedundancy,
      self: { name: h.node, diskful: h.diskful, disk: h.disk, role: h.role },
      peers: h.peers.map((p) => ({
        name: p.name,
        diskful: p.diskful,
        connected: p.established,
        disk: p.disk,
        role: p.role,
        knownOutdated: p.knownOutdated,
        ...(p.view ? { sees: p.view.sees.map((n) => ({ name: n.name, role: roleOf(n) })) } : {}),
      })),
      lost: this.lost,
    };
  }

  /**
   * Recomputes the verdict after a change. Returns true when quorum was just lost (the
   * caller runs the quorum-lost handler and publishes an event).
   */
  evaluate(): { lostNow: boolean } {
    const before = this.verdict.quorum;
    const input = this.input();
    this.verdict = quorumVerdict(input);
    this.lost = nextLost(this.lost, this.verdict, input);
    const now = this.verdict.quorum;
    if (before && !now) {
      this.host.log.warn({ reason: this.verdict.reason }, 'quorum lost');
    } else if (!before && now && quorumOn(this.host.config)) {
      this.host.log.info('quorum: yes');
    }
    return { lostNow: before && !now };
  }

  /** Whether this node may be promoted now and if not, why (status and `primary`). */
  promotion(force: boolean): { may: boolean; reason: string } {
    const h = this.host;
    return promotionVerdict({
      ...this.input(),
      allowTwoPrimaries: h.config.net.allowTwoPrimaries,
      force,
      fencing: h.config.net.fencing as Fencing,
    });
  }

  summary(): ClusterSummary {
    const h = this.host;
    const sees: SeenNode[] = h.peers
      .filter((p) => p.established)
      .map((p) => ({ name: p.name, role: p.role, disk: p.disk }));
    const promo = this.promotion(false);
    const outdated: OutdateRecord[] = [
      ...[...this.records].map(([target, by]) => ({ target, by })),
      ...this.farewellOutdates.map((target) => ({ target, by: h.node })),
    ];
    return {
      quorum: this.verdict.quorum,
      sees,
      promotable: promo.may ? '' : promo.reason,
      outdated,
      leaving: this.leaving,
    };
  }

  /** Sends the state to every peer when what it says of the cluster changed. */
  publish(): void {
    const h = this.host;
    const key = JSON.stringify([h.role, h.disk, this.summary()]);
    if (key === this.lastSent) return;
    this.lastSent = key;
    for (const p of h.peers) p.sendState();
  }

  /**
   * Brackets the goodbye state message of a graceful down or disconnect: `outdates` lists
   * the peers a leaving Primary outdates; undefined ends the goodbye.
   */
  farewell(outdates: string[] | undefined): void {
    this.leaving = outdates !== undefined;
    this.farewellOutdates = outdates ?? [];
  }

  // ---- the outdate protocol ------------------------------------------------------------

  /**
   * As Primary: asks every tiebreaker this node still reaches to outdate `lost`. Resolves
   * true once one answered that it is outdated or cannot reach it; false when none could
   * (no tiebreaker connected, or the peer is Primary elsewhere).
   */
  outdateThroughTiebreaker(lost: Peer): Promise<boolean> {
    const relays = this.host.peers.filter((p) => p !== lost && p.established);
    if (relays.length === 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let open = relays.length;
      let settled = false;
      const ids: number[] = [];
      const done = (ok: boolean): void => {
        if (settled) return;
        if (ok || --open === 0) {
          settled = true;
          for (const id of ids) this.asked.delete(id);
          resolve(ok);
        }
      };
      for (const relay of relays) {
        const id = this.nextId++;
        ids.push(id);
        this.asked.set(id, { target: lost.name, via: relay.name, done });
        if (!relay.sendCluster('outdateRequest', { id, target: lost.name })) done(false);
      }
      this.host.log.info(
        { peer: lost.name, through: relays.map((r) => r.name) },
        'lost a data peer as Primary: outdating it through the tiebreaker before writes go on',
      );
    });
  }

  /** A relay's answer to one of our outdate requests. */
  answered(from: Peer, id: number, result: string): void {
    const a = this.asked.get(id);
    if (!a) return;
    this.asked.delete(id);
    this.host.log.info({ peer: a.target, through: from.name, result }, 'outdate answered');
    a.done(SETTLED.has(result));
  }

  /** A peer (a Primary that lost `target`) asks this node to outdate `target`. */
  requested(from: Peer, id: number, target: string): void {
    const h = this.host;
    const answer = (result: string): void => {
      from.sendCluster('outdateReply', { id, result });
    };
    if (target === h.node) {
      if (h.role === 'Primary') return answer('primary');
      h.outdateSelf(`${from.name} lost its connection to us`);
      return answer('outdated');
    }
    const tp = h.peers.find((p) => p.name === target);
    if (!tp) return answer('unreachable');
    if (tp.established && tp.role === 'Primary') return answer('primary');
    this.records.set(target, from.name);
    h.log.warn({ target, by: from.name }, 'outdate record: relaying it to the peer');
    if (!tp.established || outdatedDisk(tp.disk)) {
      this.publish();
      return answer(tp.established ? 'outdated' : 'unreachable');
    }
    const net = h.config.net;
    const timer = setTimeout(
      () => this.settleRelay(target, 'unreachable'),
      Math.max(2000, 2 * net.pingTimeoutMs),
    );
    const list = this.relaying.get(target) ?? [];
    list.push({ from, id, timer });
    this.relaying.set(target, list);
    this.publish();
  }

  private settleRelay(target: string, result: string): void {
    const list = this.relaying.get(target);
    if (!list) return;
    this.relaying.delete(target);
    for (const w of list) {
      clearTimeout(w.timer);
      w.from.sendCluster('outdateReply', { id: w.id, result });
    }
  }

  /**
   * A peer's state arrived: answer relays waiting for it, drop records it has outgrown,
   * and obey a record that names this node.
   */
  viewChanged(peer: Peer): void {
    const h = this.host;
    if (this.relaying.has(peer.name)) {
      if (!peer.established) this.settleRelay(peer.name, 'unreachable');
      else if (outdatedDisk(peer.disk)) this.settleRelay(peer.name, 'outdated');
      else if (peer.role === 'Primary') this.settleRelay(peer.name, 'primary');
    }
    const by = this.records.get(peer.name);
    if (
      by !== undefined &&
      peer.disk === 'UpToDate' &&
      peer.view?.sees.some((n) => n.name === by && n.disk === 'UpToDate')
    ) {
      this.records.delete(peer.name);
      h.log.info({ target: peer.name, by }, 'outdate record dropped: the peer is UpToDate again');
    }
    for (const rec of peer.view?.outdated ?? []) {
      if (rec.target !== h.node) continue;
      this.obey(peer, rec.by);
    }
  }

  /** An outdate record for this node, relayed by `via` on behalf of `by`. */
  private obey(via: Peer, by: string): void {
    const h = this.host;
    if (h.role === 'Primary' || outdatedDisk(h.disk)) return;
    const origin = h.peers.find((p) => p.name === by);
    // Connected to the origin with good data: the record is older than this session.
    if (origin?.replication === 'Established' && origin.disk === 'UpToDate' && via !== origin) {
      return;
    }
    h.outdateSelf(`${by} lost its connection to us and outdated us through ${via.name}`);
    if (origin?.established && via !== origin) {
      void origin
        .disconnect(`${by} lost its connection to us (told by ${via.name})`)
        .then(() => origin.connect(false).catch(() => undefined));
    }
  }

  /** A peer's session ended: relays waiting for it answer now. */
  peerGone(peer: Peer): void {
    if (this.relaying.has(peer.name)) this.settleRelay(peer.name, 'unreachable');
    // Requests sent through this peer get no answer now.
    for (const [id, a] of [...this.asked]) {
      if (a.via !== peer.name) continue;
      this.asked.delete(id);
      a.done(false);
    }
  }

  shutdown(): void {
    for (const t of [...this.relaying.keys()]) this.settleRelay(t, 'unreachable');
    for (const a of this.asked.values()) a.done(false);
    this.asked.clear();
  }
}

function outdatedDisk(d: DiskState): boolean {
  return d === 'Outdated' || d === 'Inconsistent' || d === 'Diskless' || d === 'Failed';
}

function roleOf(n: SeenNode): 'Primary' | 'Secondary' | 'Unknown' {
  return n.role === 'Primary' || n.role === 'Secondary' ? n.role : 'Unknown';
}
