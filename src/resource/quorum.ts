/**
 * Quorum, promotion and peer-loss rules for a resource of up to three nodes (drbd.md §8.4).
 * Pure functions of what one node knows; the daemon gathers that knowledge and applies
 * what these functions decide.
 *
 * The setting. A node is diskful or diskless (`disk none`). In a resource of three nodes a
 * diskless node is a tiebreaker: it stores nothing, it can never be Primary, but it votes.
 * Each node knows of each peer whether it is connected now, the peer's last known disk and
 * role, whether the peer is known Outdated, and (while connected) the peer's report of the
 * nodes it is connected to, with their roles (`sees`).
 *
 * Who votes. Every node of the resource votes, except the ones known Outdated: a peer that
 * said so when it left with `down` or `disconnect`, or that the Primary outdated through the
 * tiebreaker or by fencing, or a connected peer whose disk is Outdated; and this node itself
 * when its own disk is Outdated. An Outdated node cannot become Primary without data from
 * an UpToDate node, so leaving it out of the count loses nothing, and it is what lets the
 * last node standing keep quorum after the others left gracefully. A peer that vanished
 * without saying goodbye keeps its vote: it may be alive on the other side of a cut.
 * The partition P is this node (if it votes) and the connected peers that vote.
 *
 * `quorum majority`. Data nodes decide first: with more than half of the diskful voters in
 * P there is quorum, with fewer there is none. With exactly half (one of two data nodes)
 * the tiebreakers decide: more than half of them must be in P. A tiebreaker that still sees
 * the other data node makes the tie contended: both data nodes may be counting on it. Then
 * the side holding the Primary wins; if nobody is Primary, or both sides are, nobody has
 * quorum until something changes. A tiebreaker whose report is not in yet, or that reports
 * the other data node's role as unknown, contends the tie too. A node that lost quorum
 * earlier (`lost`) never wins a tie, contended or not: while it was out, the other data node
 * may have had quorum with the tiebreaker, been promoted, written data this node does not
 * have and been demoted again; the frozen Primary that then reaches the tiebreaker would
 * win the contended tie as "the side holding the Primary". Only a data node can tell.
 * `lost` is set when this node finds itself in a minority (alone, or on the short side of a
 * tie) and cleared once it is connected to an UpToDate data node with quorum; a node starts
 * with `lost` set, since it cannot know what happened while it was down. Losing a contended
 * tie does not set it: the tiebreaker saw both sides all along, so nothing happened behind
 * this node's back.
 *
 * `quorum all` needs every voter in P; `quorum N` needs N voters in P, diskless ones
 * included. A number below a majority lets two partitions both have quorum: the admin's
 * choice, as in DRBD. In every mode P must hold at least one voting data node (else two
 * Outdated data nodes, each counting the tiebreaker as "all" the voters, would both have
 * quorum). `quorum-minimum-redundancy` then also asks for that many UpToDate nodes in P
 * ('majority' and 'all' counted over the diskful voters).
 *
 * Promotion (promotionVerdict) needs data (an UpToDate disk, or a connected UpToDate peer;
 * --force may declare Outdated, Inconsistent or Consistent data UpToDate), no other Primary
 * (a connected one, unless allow-two-primaries; one a tiebreaker reports across the cut,
 * ever) and, with quorum on, quorum. --force never overrides the last two, as in DRBD 9.
 *
 * Peer loss (peerLossAction): what a Primary does with writes that a data peer it just lost
 * did not confirm. Writes complete only when the lost peer can no longer be promoted behind
 * this node's back: it is known Outdated, or fencing outdated it, or the tiebreaker outdated
 * it (or, unable to reach it either, recorded it as Outdated and will tell it when it comes
 * back: until then the lost peer is alone and has `lost` set).
 */

import type { Quorum } from '../config/types.js';
import type { DiskState, Fencing, PeerRole, Role } from './states.js';

/** `quorum` and `quorum-minimum-redundancy`: off, majority, all or a node count. */
export type QuorumSetting = Quorum;

/** One node as another reports it: name and role. */
export interface SeenNode {
  name: string;
  role: PeerRole;
}

export interface QuorumPeer {
  name: string;
  /** Configured with a disk (a diskless peer of a three-node resource is a tiebreaker). */
  diskful: boolean;
  connected: boolean;
  /** Last known disk state (DUnknown, or Outdated when known Outdated, once disconnected). */
  disk: DiskState;
  role: PeerRole;
  /** Left gracefully saying so, or outdated by the Primary, the tiebreaker or fencing. */
  knownOutdated: boolean;
  /** The nodes this peer is connected to, as it last reported; undefined when unknown. */
  sees?: ReadonlyArray<SeenNode>;
}

export interface QuorumSelf {
  name: string;
  diskful: boolean;
  disk: DiskState;
  role: Role;
}

export interface QuorumInput {
  quorum: QuorumSetting;
  minimumRedundancy: QuorumSetting;
  self: QuorumSelf;
  peers: ReadonlyArray<QuorumPeer>;
  /**
   * Sticky: this node lost quorum (alone, or in a minority) since it last was connected to
   * a diskful UpToDate peer with quorum. Starts true (initialLost); see nextLost.
   */
  lost: boolean;
}

export interface QuorumVerdict {
  quorum: boolean;
  /** One line for status when `quorum` is false, e.g. "no quorum: sees 1 of 2 data nodes". */
  reason: string;
  /** Nodes that vote, this one included when it votes. */
  voters: number;
  /** Voters in this node's partition. */
  present: number;
  /**
   * The verdict is "no" only because a tiebreaker in the partition also sees the other data
   * node (which holds the Primary, or nobody does, or its view is not known yet). Not a
   * loss: it does not set `lost`.
   */
  contended: boolean;
}

/** A peer that does not vote and cannot be promoted behind our back. */
export function peerOutdated(p: QuorumPeer): boolean {
  return p.knownOutdated || (p.connected && p.disk === 'Outdated');
}

/** A diskless node in a resource of more than two nodes: it breaks ties and holds no data. */
export function isTiebreaker(i: { self: { diskful: boolean }; peers: ReadonlyArray<unknown> }) {
  return !i.self.diskful && i.peers.length >= 2;
}

/** `lost` when a node comes up: set whenever quorum is on (wait for a data node first). */
export function initialLost(quorum: QuorumSetting): boolean {
  return quorum !== 'off';
}

interface Tally {
  voters: number;
  present: number;
  dataVoters: number;
  dataPresent: number;
  tbVoters: number;
  /** Diskless voting peers in P (this node too, when it is one). */
  tbPresent: number;
  /** Names of the voters in P. */
  inP: Set<string>;
  /** Names of the diskful voters (in P or not). */
  dataVoterNames: Set<string>;
  /** Connected diskless voting peers: the tiebreakers whose view we can hear. */
  tiebreakersInP: QuorumPeer[];
}

function tally(i: QuorumInput): Tally {
  const t: Tally = {
    voters: 0,
    present: 0,
    dataVoters: 0,
    dataPresent: 0,
    tbVoters: 0,
    tbPresent: 0,
    inP: new Set(),
    dataVoterNames: new Set(),
    tiebreakersInP: [],
  };
  const count = (name: string, diskful: boolean, present: boolean) => {
    t.voters++;
    if (diskful) {
      t.dataVoters++;
      t.dataVoterNames.add(name);
    } else t.tbVoters++;
    if (!present) return;
    t.present++;
    t.inP.add(name);
    if (diskful) t.dataPresent++;
    else t.tbPresent++;
  };
  if (i.self.disk !== 'Outdated') count(i.self.name, i.self.diskful, true);
  for (const p of i.peers) {
    if (peerOutdated(p)) continue;
    count(p.name, p.diskful, p.connected);
    if (p.connected && !p.diskful) t.tiebreakersInP.push(p);
  }
  return t;
}

function yes(t: Tally): QuorumVerdict {
  return { quorum: true, reason: '', voters: t.voters, present: t.present, contended: false };
}

function no(t: Tally, reason: string, contended = false): QuorumVerdict {
  return {
    quorum: false,
    reason: `no quorum: ${reason}`,
    voters: t.voters,
    present: t.present,
    contended,
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The tie rule of `quorum majority`: called with exactly half of the data voters in P. */
function breakTie(i: QuorumInput, t: Tally): QuorumVerdict {
  const ratio = `${t.dataPresent} of ${plural(t.dataVoters, 'data node')}`;
  if (2 * t.tbPresent <= t.tbVoters) return no(t, `${ratio} and no tiebreaker`);
  if (i.lost) return no(t, 'lost it earlier; regains it only with a data node connected');
  // Which data voters outside P can each tiebreaker in P still see?
  const primaryInP =
    i.self.role === 'Primary' ||
    i.peers.some((p) => p.connected && p.role === 'Primary' && t.inP.has(p.name));
  let tie: { name: string; via: string } | undefined;
  for (const tb of t.tiebreakersInP) {
    if (tb.sees === undefined) return no(t, `${ratio}, waiting for ${tb.name}'s view`, true);
    for (const s of tb.sees) {
      if (!t.dataVoterNames.has(s.name) || t.inP.has(s.name)) continue;
      if (s.role === 'Primary')
        return no(t, `peer ${s.name} is Primary and ${tb.name} still sees it`, true);
      if (s.role !== 'Secondary')
        return no(t, `peer ${s.name} may be Primary and ${tb.name} still sees it`, true);
      tie ??= { name: s.name, via: tb.name };
    }
  }
  if (tie === undefined || primaryInP) return yes(t);
  return no(t, `tie with ${tie.name}, both seen by ${tie.via}, neither Primary`, true);
}

function baseVerdict(i: QuorumInput, t: Tally): QuorumVerdict {
  // Whatever the setting, a partition without a voting data node has nothing to serve and
  // no say: otherwise two Outdated data nodes could each count the one tiebreaker as "all".
  if (t.dataPresent === 0)
    return no(
      t,
      t.dataVoters === 0 ? 'no data node votes' : `sees 0 of ${plural(t.dataVoters, 'data node')}`,
    );
  if (i.quorum === 'majority') {
    if (2 * t.dataPresent > t.dataVoters) return yes(t);
    if (2 * t.dataPresent < t.dataVoters)
      return no(t, `sees ${t.dataPresent} of ${plural(t.dataVoters, 'data node')}`);
    return breakTie(i, t);
  }
  if (i.quorum === 'all') {
    if (t.present < t.voters) return no(t, `sees ${t.present} of ${plural(t.voters, 'node')}`);
    return yes(t);
  }
  const n = i.quorum as number;
  if (t.present < n) return no(t, `sees ${plural(t.present, 'voting node')}, needs ${n}`);
  return yes(t);
}

/** How many UpToDate nodes `quorum-minimum-redundancy` asks for (0: off). */
export function minimumUpToDate(setting: QuorumSetting, dataVoters: number): number {
  if (setting === 'off') return 0;
  if (setting === 'majority') return Math.floor(dataVoters / 2) + 1;
  if (setting === 'all') return Math.max(1, dataVoters);
  return setting;
}

/** Whether this node has quorum now, and if not, why (the module comment has the rules). */
export function quorumVerdict(i: QuorumInput): QuorumVerdict {
  const t = tally(i);
  if (i.quorum === 'off') return yes(t);
  const v = baseVerdict(i, t);
  if (!v.quorum) return v;
  const need = minimumUpToDate(i.minimumRedundancy, t.dataVoters);
  const upToDate =
    (i.self.disk === 'UpToDate' ? 1 : 0) +
    i.peers.filter((p) => p.connected && p.disk === 'UpToDate').length;
  if (upToDate < need)
    return no(t, `${plural(upToDate, 'UpToDate node')}, minimum redundancy ${need}`);
  return v;
}

/**
 * `lost` after a verdict: set by a real loss (no quorum, not contended), cleared by quorum
 * with an UpToDate data node connected, otherwise kept. Unchanged while quorum is off.
 */
export function nextLost(prevLost: boolean, verdict: QuorumVerdict, i: QuorumInput): boolean {
  if (i.quorum === 'off') return prevLost;
  if (!verdict.quorum) return verdict.contended ? prevLost : true;
  if (i.peers.some((p) => p.connected && p.diskful && p.disk === 'UpToDate')) return false;
  return prevLost;
}

export interface PromotionInput extends QuorumInput {
  allowTwoPrimaries: boolean;
  force: boolean;
  fencing: Fencing;
}

export interface PromotionVerdict {
  may: boolean;
  /** One line: why not, or what the promotion will do first. */
  reason: string;
}

/**
 * Whether this node may be promoted now, and if not why; the same answer status shows.
 * Checked in this order: already Primary; tiebreaker; data; another Primary; quorum.
 * --force overrides only the data reasons for a disk that holds data.
 */
export function promotionVerdict(i: PromotionInput): PromotionVerdict {
  const refuse = (reason: string): PromotionVerdict => ({ may: false, reason });
  if (i.self.role === 'Primary') return { may: true, reason: 'is Primary' };
  if (isTiebreaker(i)) return refuse('diskless tiebreaker: holds no data');

  const disk = i.self.disk;
  const readsFromPeer = i.peers.some((p) => p.connected && p.diskful && p.disk === 'UpToDate');
  // Data peers that may hold writes this node lacks: not known Outdated, not Inconsistent.
  const rivals = i.peers.filter(
    (p) => p.diskful && !peerOutdated(p) && !(p.connected && p.disk === 'Inconsistent'),
  );
  const unreachable = rivals.some((p) => !p.connected);
  const fencing = i.fencing !== 'dont-care';
  let forced = false;
  let fence = false;
  if (disk === 'UpToDate' || readsFromPeer) {
    fence = disk === 'UpToDate' && !readsFromPeer && unreachable && fencing;
  } else if (disk === 'Consistent') {
    // Consistent counts as UpToDate once no data peer may be newer. fence-peer can settle
    // that for unreachable peers; a connected one that is not UpToDate either needs --force.
    if (rivals.length > 0) {
      if (fencing && rivals.every((p) => !p.connected)) fence = true;
      else if (!i.force) return refuse('disk Consistent: peer not known Outdated');
      else forced = true;
    }
  } else if (disk === 'Outdated' || disk === 'Inconsistent') {
    if (!i.force) return refuse(`disk ${disk}`);
    forced = true;
  } else {
    return refuse(`disk ${disk} and no UpToDate peer to read from`);
  }

  for (const p of i.peers) {
    if (p.connected && p.role === 'Primary' && !i.allowTwoPrimaries)
      return refuse(`peer ${p.name} is Primary`);
  }
  // A Primary a tiebreaker still sees across the cut: two Primaries that cannot replicate
  // to each other, whatever allow-two-primaries says.
  const here = new Set([i.self.name, ...i.peers.filter((p) => p.connected).map((p) => p.name)]);
  for (const tb of i.peers) {
    if (!tb.connected || tb.diskful || !tb.sees) continue;
    const far = tb.sees.find((s) => s.role === 'Primary' && !here.has(s.name));
    if (far) return refuse(`peer ${far.name} is Primary`);
  }

  if (i.quorum !== 'off') {
    const v = quorumVerdict(i);
    if (!v.quorum) return refuse(v.reason);
  }
  if (fence) return { may: true, reason: 'fence-peer runs first' };
  if (forced) return { may: true, reason: `forced: disk ${disk} becomes UpToDate` };
  return { may: true, reason: 'may be promoted' };
}

export type PeerLossAction = 'complete' | 'outdate-through-tiebreaker' | 'fence' | 'freeze';

export interface PeerLossInput extends QuorumInput {
  fencing: Fencing;
  /** The peer just lost; in `peers`, with connected false. */
  lostPeer: string;
}

/**
 * What a Primary with UpToDate data does with the writes a data peer it just lost did not
 * confirm. The input describes the state after the loss.
 *
 * - 'freeze': quorum is on and this node has none. No write completes; on-no-quorum says
 *   whether they wait (suspend-io) or fail (io-error).
 * - 'complete': the lost peer holds no data or is known Outdated, so it cannot be promoted
 *   with old data; or quorum and fencing are off (mark the blocks out of sync and
 *   acknowledge: the behaviour without either); or this node's partition holds a strict
 *   majority of the data nodes, or a numeric quorum without a tiebreaker (the admin's
 *   choice of number).
 * - 'fence': fencing is resource-only or resource-and-stonith. Run fence-peer; complete
 *   once it outdated the peer; resource-and-stonith freezes I/O until it succeeds.
 * - 'outdate-through-tiebreaker': quorum holds only thanks to a tiebreaker (a tie of data
 *   nodes). Writes wait until the tiebreaker answers that it outdated the lost peer, or that
 *   it cannot reach it either and has recorded it as Outdated, to tell it when it comes back.
 *   Asking costs one round trip to a connected node, and it holds whether the tiebreaker
 *   still sees the lost peer, no longer does, or its view is not known yet.
 */
export function peerLossAction(i: PeerLossInput): PeerLossAction {
  const peer = i.peers.find((p) => p.name === i.lostPeer);
  if (peer === undefined) throw new Error(`peerLossAction: no peer named ${i.lostPeer}`);
  if (i.quorum !== 'off' && !quorumVerdict(i).quorum) return 'freeze';
  if (!peer.diskful || peerOutdated(peer)) return 'complete';
  if (i.fencing !== 'dont-care') return 'fence';
  if (i.quorum === 'off') return 'complete';
  const t = tally(i);
  if (t.tiebreakersInP.length > 0 && 2 * t.dataPresent <= t.dataVoters)
    return 'outdate-through-tiebreaker';
  return 'complete';
}
