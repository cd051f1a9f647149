/**
 * What urbd-failover does next for one resource on this node: the rules as a pure function
 * of urbd's status and the supervisor's own memory, so they can be tested exhaustively.
 *
 * Who may take the resource over is urbd's call (status' may-promote: quorum, disk state,
 * another Primary; failover.md §6.2). The supervisor adds what an admin expects from
 * Pacemaker and drbd-reactor on top:
 *   - Only the quorate side acts; with quorum off only `two-node yes` (fence-peer decides)
 *     lets it promote by itself, otherwise it never does.
 *   - When several nodes may promote, the preferred one goes first; each node behind it
 *     waits promote-delay for every connected candidate ahead of it, so two supervisors do
 *     not promote at the same moment. A dead candidate does not delay anyone.
 *   - A node that gave the resource up (failed start, too many failed monitors, a
 *     switchover) does not take it back while it is banned; a node takes the resource over
 *     at most once per min-failover-interval.
 *   - No failback unless `failback yes`.
 */
import type { FailoverConfig } from '../config/index.js';
import type { ResourceStatus } from '../resource/status.js';

export type Phase = 'stopped' | 'starting' | 'running' | 'stopping' | 'blocked';

/** What the supervisor remembers about the resource (monotonic milliseconds). */
export interface Memory {
  phase: Phase;
  maintenance: boolean;
  /** Until then this node does not promote (it gave the resource up). */
  bannedUntil: number;
  /** When this node last promoted for the resource (undefined: never). */
  lastPromoteAt: number | undefined;
  /** Since when this node has been a candidate without acting (undefined: it is not). */
  candidateSince: number | undefined;
  now: number;
}

export type Action =
  | { kind: 'none'; why: string }
  /** Promote (if not Primary yet) and start the chain. */
  | { kind: 'start'; why: string }
  /** Stop the chain; `demote` also gives up the Primary role (`force` when I/O is held). */
  | { kind: 'stop'; why: string; demote: boolean; force: boolean; ban: boolean }
  /** Check again at `at` (a delay or a ban runs out); `candidate` marks the wait as one. */
  | { kind: 'wait'; why: string; at: number; candidate: boolean };

/** Can the supervisor promote this resource by itself, and if not why. */
export function autoPromotion(
  quorumEnabled: boolean,
  cfg: Pick<FailoverConfig, 'twoNode'>,
  fencePeer: boolean,
): { auto: boolean; why: string } {
  if (quorumEnabled) return { auto: true, why: 'quorum decides who may promote' };
  if (cfg.twoNode && fencePeer) return { auto: true, why: 'two-node: fence-peer decides' };
  if (cfg.twoNode) {
    return {
      auto: false,
      why: 'two-node yes needs fencing resource-only or resource-and-stonith and a fence-peer handler',
    };
  }
  return {
    auto: false,
    why: 'quorum is off and two-node is not set: it never promotes by itself (promote by hand, and it starts the services)',
  };
}

/** The data nodes in the order they should take the resource: preferred first, then as listed. */
export function candidateOrder(
  cfg: Pick<FailoverConfig, 'preferredNodes'>,
  hosts: string[],
): string[] {
  return [...cfg.preferredNodes, ...hosts.filter((h) => !cfg.preferredNodes.includes(h))];
}

export function decide(
  s: ResourceStatus,
  m: Memory,
  cfg: FailoverConfig,
  order: readonly string[],
  auto: boolean,
): Action {
  const none = (why: string): Action => ({ kind: 'none', why });
  if (m.maintenance) return none('maintenance: not acting');
  if (m.phase === 'blocked')
    return none('blocked: a stop step failed; the resource stays here until an admin clears it');
  const peerPrimary = s.peers.find((p) => p.connection === 'Connected' && p.role === 'Primary');
  const rank = (n: string): number => {
    const i = order.indexOf(n);
    return i < 0 ? order.length : i;
  };

  if (s.role === 'Primary') {
    if (s.quorum.enabled && !s.quorum.quorum) {
      return {
        kind: 'stop',
        why: `lost quorum (${s.quorum.reason})`,
        demote: true,
        force: true,
        ban: false,
      };
    }
    if (peerPrimary && rank(peerPrimary.name) < rank(s.node)) {
      return {
        kind: 'stop',
        why: `${peerPrimary.name} is Primary too and goes first`,
        demote: true,
        force: false,
        ban: false,
      };
    }
    if (cfg.failback && m.phase === 'running') {
      const better = s.peers.find(
        (p) =>
          p.diskful &&
          p.connection === 'Connected' &&
          p.peerDisk === 'UpToDate' &&
          p.replication === 'Established' &&
          rank(p.name) < rank(s.node) &&
          cfg.preferredNodes.includes(p.name),
      );
      if (better) {
        return {
          kind: 'stop',
          why: `failback to ${better.name}, which is preferred and UpToDate`,
          demote: true,
          force: false,
          ban: true,
        };
      }
    }
    if (m.phase === 'stopped')
      return { kind: 'start', why: 'this node is Primary; its services are not running' };
    return none(m.phase === 'running' ? 'running here' : `${m.phase}`);
  }

  // Secondary (or Unknown): the chain must not be up here.
  if (m.phase === 'running' || m.phase === 'starting') {
    return {
      kind: 'stop',
      why: 'this node is no longer Primary',
      demote: false,
      force: false,
      ban: false,
    };
  }
  if (peerPrimary) return none(`${peerPrimary.name} is Primary`);
  if (!auto) return none('does not promote by itself');
  if (s.mayPromote.may !== true) return none(`may not promote: ${s.mayPromote.reason}`);
  if (m.now < m.bannedUntil) {
    return {
      kind: 'wait',
      why: 'gave the resource up here; banned for a while',
      at: m.bannedUntil,
      candidate: false,
    };
  }
  if (m.lastPromoteAt !== undefined && m.now - m.lastPromoteAt < cfg.minFailoverIntervalMs) {
    return {
      kind: 'wait',
      why: `took the resource over less than min-failover-interval ago`,
      at: m.lastPromoteAt + cfg.minFailoverIntervalMs,
      candidate: false,
    };
  }
  // Connected candidates ahead of this node, as their own state says.
  const ahead = s.peers.filter(
    (p) =>
      p.diskful &&
      p.connection === 'Connected' &&
      p.mayPromote.may === true &&
      rank(p.name) < rank(s.node),
  );
  if (ahead.length > 0) {
    const since = m.candidateSince ?? m.now;
    const at = since + ahead.length * cfg.promoteDelayMs;
    if (m.now < at) {
      return {
        kind: 'wait',
        why: `${ahead.map((p) => p.name).join(', ')} may promote and goes first`,
        at,
        candidate: true,
      };
    }
  }
  return { kind: 'start', why: 'may promote, and nobody is Primary' };
}
