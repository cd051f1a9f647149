/**
 * One peer of a resource: the connection state machine (drbd.md §2.3–§2.4, §6.1), the
 * handshake and its decision (§3.6), the bitmap exchange and resync (§6.2–§6.3), and the
 * replication session the write path uses while connected (§5).
 *
 * Who dials: the node with the lower node id (or, without ids, the lower name) connects;
 * the other listens on its `address`. One side dialing keeps the two sockets of a link from
 * crossing, and the same comparison gives the tie-break bit the UUID rules need, so both
 * sides always agree on it.
 */
import type { Logger } from 'pino';
import type { Address, HostConfig, ResourceConfig } from '../config/index.js';
import type { DiskMeta } from './disk-meta.js';
import type { FileDisk } from '../storage/file-disk.js';
import { type GenerationUuids, UUID_JUST_CREATED } from '../meta/store.js';
import {
  finishSyncSource,
  finishSyncTarget,
  formatUuid,
  startSyncSource,
  startSyncTarget,
} from '../meta/uuid.js';
import { dialPeer, LinkError, type PeerLink, type CloseKind } from '../replication/link.js';
import { redialDelayMs } from '../replication/redial.js';
import { encodeBitmapRle, orBitmapRle } from '../replication/rle.js';
import { IntervalLock } from '../replication/interval-lock.js';
import { TransferLog } from '../replication/transfer-log.js';
import { Receiver, PeerProtocolError } from '../replication/receiver.js';
import { ResyncSource, ResyncTarget } from '../replication/resync.js';
import { resyncRates } from '../replication/rate.js';
import {
  type PeerMessage,
  type Params,
  type Sizes,
  type State,
  type Uuids,
  UUID_FLAG_CRASHED_PRIMARY,
  UUID_FLAG_DISCARD_MY_DATA,
  UUID_FLAG_INCONSISTENT,
  UUID_FLAG_SKIP_INITIAL_SYNC,
  uuidBytes,
  uuidFromBytes,
} from '../replication/schema.js';
import type { SharedListener } from './shared-listener.js';
import { describeResult, type HandlerName, type HandlerResult } from './handlers.js';
import { decideHandshake, type HandshakeSide } from './resync-decision.js';
import type { ConnectionState, DiskState, PeerRole, ReplicationState, Role } from './states.js';
import { diskRank } from './states.js';
import type { PeerStatistics } from './status.js';

const BITMAP_CHUNK_BYTES = 256 * 1024;
const BITMAP_PERSIST_MS = 2000;

/** What a peer needs from its resource. */
export interface PeerHost {
  readonly name: string;
  readonly node: string;
  readonly config: ResourceConfig;
  readonly host: HostConfig;
  readonly role: Role;
  /** Application writes may start here: Primary, or being promoted. */
  readonly localWrites: boolean;
  readonly disk: DiskState;
  readonly meta: DiskMeta | undefined;
  readonly backing: FileDisk | undefined;
  /** The lock that orders overlapping changes on this node (write path, receiver, resync). */
  readonly changeLock: IntervalLock;
  /** The resource's one listener for the peers that dial this node. */
  readonly listener: SharedListener;
  setDisk(d: DiskState): void;
  /** Application I/O seen in the last resync tick (the resync then yields to c-min-rate). */
  takeAppIo(): boolean;
  /**
   * A session with this peer ended (drbd.md §3.5: a Primary that lost the peer receiving its
   * writes starts a new data generation; quorum.ts: whether its writes may complete).
   */
  lostPeer(peer: Peer, wasReplicating: boolean, peerWasUpToDate: boolean): void;
  /** What this node tells every peer in its state message besides role and disk. */
  clusterState(): Pick<State, 'quorum' | 'sees' | 'promotable' | 'outdated' | 'leaving'>;
  /** A peer's state message brought news of the cluster (its view, its outdate records). */
  peerViewChanged(peer: Peer): void;
  /** A peer asks this node to outdate `target` (cluster.ts). */
  outdateRequested(from: Peer, id: number, target: string): void;
  /** The answer to an outdate request this node sent. */
  outdateAnswered(from: Peer, id: number, result: string): void;
  /** Runs a handler of the handlers section about this peer (handlers.ts); never rejects. */
  runHandler(name: HandlerName, peer?: Peer): Promise<HandlerResult | undefined>;
  /** A notification handler, run in the background. */
  notify(name: HandlerName, peer?: Peer): void;
  hasHandler(name: HandlerName): boolean;
  /** Hold application writes while the handshake decides (undefined: release). */
  holdIo(hold: boolean): void;
  /** Something changed: persist the flags and publish the state. */
  changed(): void;
}

export interface SyncProgress {
  /** Bytes still to copy. */
  outOfSync: number;
  /** Bytes to copy when the resync started. */
  total: number;
  /** Percent done. */
  done: number;
  /** Bytes per second, averaged since the start. */
  rate: number;
  /** Seconds to go at that rate, when known. */
  etaSeconds: number | undefined;
}

interface Session {
  link: PeerLink;
  tl: TransferLog;
  receiver: Receiver | undefined;
  peerParams?: Params;
  peerSizes?: Sizes;
  peerUuids?: Uuids;
  peerState?: State;
  decided: boolean;
  /** Our handshake messages went out (after the old session's writes drained). */
  handshakeSent: boolean;
  bitmapSent: boolean;
  bitmapReceived: boolean;
  resyncTarget?: ResyncTarget;
  resyncSource?: ResyncSource;
  syncRole?: 'source' | 'target';
  persistTimer?: NodeJS.Timeout;
  koTimer?: NodeJS.Timeout;
  reads: Map<number, { buf: Buffer; resolve: () => void; reject: (e: Error) => void }>;
  nextReadId: number;
  /** The peer disk state was UpToDate at some point of this session. */
  peerWasUpToDate: boolean;
}

export class Peer {
  connection: ConnectionState = 'StandAlone';
  replication: ReplicationState = 'Off';
  role: PeerRole = 'Unknown';
  disk: DiskState = 'DUnknown';
  /** Why the connection last failed or was refused, for status. */
  lastError: string | undefined;
  /** The user paused the resync here (pause-sync). */
  userPaused = false;
  /**
   * The peer does not vote and may not be promoted without a resync: it left gracefully,
   * or it was outdated (through the tiebreaker or by fence-peer). Cleared when it reports
   * UpToDate data again while connected.
   */
  knownOutdated = false;
  /** The peer's last report of the cluster (its quorum, who it sees, its outdate records). */
  view: Pick<State, 'quorum' | 'sees' | 'promotable' | 'outdated' | 'leaving'> | undefined;
  peerPaused = false;
  private discardMyData = false;
  private session: Session | undefined;
  /** This peer waits for dials on the resource's shared listener. */
  private listening = false;
  private dialTimer: NodeJS.Timeout | undefined;
  private dialAbort: AbortController | undefined;
  /** Dials refused (ECONNREFUSED) since the last connect or link: the redial backoff. */
  private refusedDials = 0;
  private wanted = false;
  private readonly log: Logger;
  /** Data bytes of the sessions that ended (statistics are totals since up). */
  private readonly traffic = { sentBytes: 0, receivedBytes: 0 };

  constructor(
    private readonly host: PeerHost,
    readonly name: string,
    readonly nodeId: number | undefined,
    /** Where the peer is dialled; adjust changes it (the session is then renewed). */
    public address: Address | undefined,
    log: Logger,
    /** The peer has a disk (a three-node resource's diskless node is the tiebreaker). */
    readonly diskful = true,
  ) {
    this.log = log.child({ peer: name });
  }

  /** This node dials; the other listens. Also the tie-break bit of the UUID rules. */
  get dialer(): boolean {
    const me = this.host.host.nodeId;
    if (me !== undefined && this.nodeId !== undefined && me !== this.nodeId) {
      return me < this.nodeId;
    }
    return this.host.node < this.name;
  }

  /** A change may be sent to this peer now (the write path's question). */
  get replicating(): TransferLog | undefined {
    const s = this.session;
    if (!s || !s.decided) return undefined;
    switch (this.replication) {
      case 'Established':
      case 'SyncSource':
      case 'SyncTarget':
      case 'PausedSyncS':
      case 'PausedSyncT':
        return diskRank(this.disk) >= diskRank('Inconsistent') ? s.tl : undefined;
      default:
        return undefined;
    }
  }

  /** The peer's device size from the handshake (what a diskless node serves). */
  get peerDeviceBytes(): number | undefined {
    return this.session?.peerSizes?.deviceBytes || undefined;
  }

  /** The handshake with the peer is done: it counts as connected for quorum. */
  get established(): boolean {
    return this.session?.decided === true;
  }

  /** Sends a cluster message (outdate request or answer) if a session is up. */
  sendCluster(
    type: 'outdateRequest' | 'outdateReply',
    body: { id: number; target: string } | { id: number; result: string },
  ): boolean {
    const s = this.session;
    if (!s?.decided) return false;
    if (type === 'outdateRequest') s.link.send(type, body as { id: number; target: string });
    else s.link.send(type, body as { id: number; result: string });
    return true;
  }

  /** The peer can serve reads (its disk is UpToDate and we are connected). */
  get canRead(): boolean {
    return this.session?.decided === true && this.disk === 'UpToDate';
  }

  // ---- connect / disconnect ---------------------------------------------------------------

  async connect(discardMyData: boolean): Promise<void> {
    if (this.connection !== 'StandAlone') {
      throw new Error(`${this.host.name}: already ${this.connection} to ${this.name}`);
    }
    this.discardMyData = discardMyData;
    this.wanted = true;
    this.lastError = undefined;
    this.refusedDials = 0;
    this.setConnection('Connecting');
    if (this.dialer) {
      this.dialSoon(0);
      return;
    }
    const addr = this.host.host.address;
    if (!addr) throw new Error(`${this.host.host.name} has no address for ${this.host.name}`);
    try {
      await this.host.listener.acquire(this, addr, this.identity(), this.timers());
      this.listening = true;
    } catch (err) {
      this.wanted = false;
      this.setConnection('StandAlone');
      throw new Error(`cannot listen on ${addr.host}:${addr.port}: ${(err as Error).message}`);
    }
  }

  /** A dial to our address that failed its handshake (the shared listener tells every peer). */
  refusedDial(remote: string, reason: string): void {
    if (this.session) return;
    this.lastError = `refused a connection from ${remote}: ${reason}`;
    this.log.warn({ remote, reason }, 'refused a peer connection');
    this.host.changed();
  }

  async disconnect(reason = 'disconnect requested'): Promise<void> {
    this.wanted = false;
    clearTimeout(this.dialTimer);
    this.dialTimer = undefined;
    this.dialAbort?.abort();
    this.dialAbort = undefined;
    const listening = this.listening;
    this.listening = false;
    if (this.session) this.endSession(reason, 'TearDown', true);
    if (listening) await this.host.listener.release(this);
    this.setConnection('StandAlone');
  }

  private identity(): import('../replication/link.js').LinkIdentity {
    const net = this.host.config.net;
    return {
      resource: this.host.name,
      node: this.host.node,
      nodeId: this.host.host.nodeId ?? -1,
      ...(net.sharedSecret !== undefined ? { secret: net.sharedSecret } : {}),
      ...(net.cramHmacAlg !== undefined ? { hmacAlg: net.cramHmacAlg } : {}),
    };
  }

  private timers(): { pingIntMs: number; pingTimeoutMs: number } {
    const net = this.host.config.net;
    return { pingIntMs: net.pingIntMs, pingTimeoutMs: net.pingTimeoutMs };
  }

  private dialSoon(ms: number): void {
    if (!this.wanted || !this.dialer) return;
    clearTimeout(this.dialTimer);
    this.dialTimer = setTimeout(() => void this.dialOnce(), ms);
  }

  private async dialOnce(): Promise<void> {
    this.dialTimer = undefined;
    if (!this.wanted || this.session) return;
    const addr = this.address;
    if (!addr) {
      this.refuse(`no address for peer ${this.name} in the resource file`);
      return;
    }
    const abort = new AbortController();
    this.dialAbort = abort;
    try {
      const link = await dialPeer(
        { host: addr.host, port: addr.port },
        this.identity(),
        this.name,
        this.timers(),
        { signal: abort.signal, connectTimeoutMs: Math.max(1000, this.host.config.net.timeoutMs) },
      );
      if (!this.wanted || abort.signal.aborted) {
        link.close('disconnect requested', 'TearDown');
        return;
      }
      this.adopt(link);
    } catch (err) {
      if (!this.wanted || abort.signal.aborted) return;
      const e = err as Error & { kind?: string };
      // A peer that refuses who we are will refuse again: stop, as DRBD does on an
      // authentication failure, instead of hammering it every connect-int.
      if (e.kind === 'AuthFailure' || e.kind === 'ProtocolError') {
        this.refuse(e.message);
        return;
      }
      if (this.lastError !== e.message) {
        this.lastError = e.message;
        this.log.info({ err: e.message }, 'peer not reachable; retrying');
        this.host.changed();
      }
      const errno = e instanceof LinkError ? e.errno : undefined;
      this.dialSoon(redialDelayMs(errno, this.refusedDials, this.host.config.net.connectIntMs));
      this.refusedDials = errno === 'ECONNREFUSED' ? this.refusedDials + 1 : 0;
    } finally {
      if (this.dialAbort === abort) this.dialAbort = undefined;
    }
  }

  /** Goes StandAlone for a reason retrying will not fix. */
  private refuse(reason: string): void {
    this.lastError = reason;
    this.log.error({ reason }, `connection to ${this.name} refused: ${reason}`);
    void this.disconnect(reason).then(() => (this.lastError = reason));
  }

  // ---- the session -----------------------------------------------------------------------

  adopt(link: PeerLink): void {
    if (this.session || !this.wanted) {
      link.close('a connection to this peer already exists', 'TearDown');
      return;
    }
    const s: Session = {
      link,
      tl: new TransferLog(
        {
          sendData: (seq, epoch, offset, length, flags, payload, onSent) =>
            link.send('data', { seq, epoch, offset, length, flags }, payload, onSent),
          sendBarrier: (epoch, writes) => link.send('barrier', { epoch, writes }),
        },
        {
          protocol: this.host.config.protocol,
          maxEpochSize: this.host.config.net.maxEpochSize,
        },
      ),
      receiver: undefined,
      decided: false,
      handshakeSent: false,
      bitmapSent: false,
      bitmapReceived: false,
      reads: new Map(),
      nextReadId: 1,
      peerWasUpToDate: false,
    };
    this.session = s;
    this.lastError = undefined;
    this.refusedDials = 0;
    this.host.holdIo(true);
    this.setConnection('Connected');
    this.replication = 'Off';
    this.log.info({ peerNodeId: link.peerNodeId, protocol: link.protocol }, 'peer connected');
    link.on('message', (msg: PeerMessage, payload: Buffer | undefined) => {
      if (this.session !== s) return;
      try {
        this.onMessage(s, msg, payload);
      } catch (err) {
        const reason =
          err instanceof PeerProtocolError
            ? err.message
            : `protocol error handling ${msg.type}: ${(err as Error).message}`;
        this.log.error({ reason }, 'dropping the peer connection');
        this.endSession(reason, 'ProtocolError', false);
      }
    });
    link.on('close', (reason: string, kind: CloseKind) => {
      if (this.session === s) this.endSession(reason, kind, false);
    });
    this.watchAcks(s);
    // Writes of an earlier session still in flight here must land before anything of this
    // one (a resync of the same blocks above all): the handshake waits for them.
    this.guard(
      s,
      'the handshake',
      this.host.changeLock.drainCurrent().then(() => {
        if (this.session !== s) return;
        this.sendHandshake(s);
        s.handshakeSent = true;
        this.maybeDecide(s);
      }),
    );
  }

  /**
   * drbd.md §5.5: a peer that keeps answering pings but does not acknowledge a change for
   * `timeout` × `ko-count` is expelled, so a stuck peer disk cannot hang the primary's writes
   * for ever (they then complete locally and are marked out of sync).
   */
  private watchAcks(s: Session): void {
    const net = this.host.config.net;
    const limit = net.timeoutMs * Math.max(1, net.koCount);
    s.koTimer = setInterval(() => {
      if (this.session !== s) return;
      const waited = s.tl.oldestWaitMs();
      if (waited > limit) {
        this.endSession(
          `peer did not acknowledge a write for ${Math.round(waited / 1000)} s (timeout × ko-count = ${limit / 1000} s)`,
          'Timeout',
          false,
        );
      }
    }, net.timeoutMs);
  }

  private sendHandshake(s: Session): void {
    const cfg = this.host.config;
    s.link.send('params', {
      protocol: cfg.protocol,
      allowTwoPrimaries: cfg.net.allowTwoPrimaries,
      discardMyData: this.discardMyData,
      afterSb0pri: cfg.net.afterSb0pri,
      afterSb1pri: cfg.net.afterSb1pri,
      afterSb2pri: cfg.net.afterSb2pri,
      alwaysAsbp: cfg.net.alwaysAsbp,
      maxEpochSize: cfg.net.maxEpochSize,
    });
    const meta = this.host.meta;
    s.link.send('sizes', {
      backingBytes: this.host.backing?.size ?? 0,
      deviceBytes: meta?.sizeBytes ?? 0,
    });
    this.sendUuids(s, 0);
    this.sendState(s);
  }

  private sendUuids(s: Session, extraFlags: number): void {
    const meta = this.host.meta;
    if (!meta) {
      s.link.send('uuids', {
        current: uuidBytes(0n),
        bitmap: uuidBytes(0n),
        history: [],
        flags: 0,
      });
      return;
    }
    const sb = meta.superblock();
    let flags = extraFlags;
    if (this.discardMyData) flags |= UUID_FLAG_DISCARD_MY_DATA;
    if (sb.flags.crashedPrimary) flags |= UUID_FLAG_CRASHED_PRIMARY;
    if (this.host.disk === 'Inconsistent') flags |= UUID_FLAG_INCONSISTENT;
    s.link.send('uuids', {
      current: uuidBytes(sb.uuids.current),
      bitmap: uuidBytes(sb.uuids.bitmap),
      history: sb.uuids.history.map(uuidBytes),
      dirtyBits: meta.bitmap.count(),
      flags,
    });
  }

  /** Tells the peer our role and disk state (after any change of either). */
  sendState(s: Session | undefined = this.session): void {
    s?.link.send('state', {
      role: this.host.role,
      disk: this.host.disk,
      syncPaused: this.userPaused,
      ...this.host.clusterState(),
    });
  }

  private onMessage(s: Session, msg: PeerMessage, payload: Buffer | undefined): void {
    switch (msg.type) {
      case 'params':
        s.peerParams = msg.body;
        return this.maybeDecide(s);
      case 'sizes':
        s.peerSizes = msg.body;
        return this.maybeDecide(s);
      case 'uuids':
        if (!s.decided) {
          s.peerUuids = msg.body;
          return this.maybeDecide(s);
        }
        return this.onUuidsAfterHandshake(s, msg.body);
      case 'state':
        return this.onState(s, msg.body);
      case 'bitmapChunk':
        return this.onBitmapChunk(s, msg.body);
      case 'syncUuid':
        return this.onSyncUuid(s, uuidFromBytes(msg.body.uuid));
      case 'resyncDone':
        return this.onResyncDone(s, msg.body);
      case 'data':
        if (!s.receiver) throw new PeerProtocolError('replicated write before the handshake');
        return s.receiver.onData(msg.body, payload);
      case 'barrier':
        if (!s.receiver) throw new PeerProtocolError('barrier before the handshake');
        return s.receiver.onBarrier(msg.body.epoch, msg.body.writes);
      case 'recvAck':
        return s.tl.recvAck(msg.body.seq);
      case 'writeAck':
        return s.tl.writeAck(msg.body.seq);
      case 'negAck':
        this.log.warn({ seq: msg.body.seq, err: msg.body.error }, 'peer failed a write');
        return s.tl.negAck(msg.body.seq);
      case 'barrierAck':
        return s.tl.barrierAck(msg.body.epoch);
      case 'readRequest':
        return this.serveRead(s, msg.body);
      case 'readReply':
        return this.onReadReply(s, msg.body, payload);
      case 'rsRequest': {
        if (!s.resyncSource) throw new PeerProtocolError('resync request while not SyncSource');
        const bad = s.resyncSource.onRequest(msg.body.offset, msg.body.length);
        if (bad !== undefined) throw new PeerProtocolError(bad);
        return;
      }
      case 'rsReply':
        if (!s.resyncTarget) return;
        return s.resyncTarget.onReply(msg.body.offset, msg.body.length, msg.body.error, payload);
      case 'rsWriteAck':
        return s.resyncSource?.onAck(msg.body.offset, msg.body.length, msg.body.ok);
      case 'syncPause':
        this.peerPaused = msg.body.paused;
        this.applyPause(s);
        return;
      case 'outdateRequest':
        return this.host.outdateRequested(this, msg.body.id, msg.body.target);
      case 'outdateReply':
        return this.host.outdateAnswered(this, msg.body.id, msg.body.result);
      default:
        throw new PeerProtocolError(`unexpected ${msg.type} message`);
    }
  }

  // ---- handshake ---------------------------------------------------------------------------

  private maybeDecide(s: Session): void {
    if (s.decided || !s.handshakeSent) return;
    if (!s.peerParams || !s.peerSizes || !s.peerUuids || !s.peerState) return;
    const mismatch = this.paramsMismatch(s.peerParams) ?? this.sizesMismatch(s, s.peerSizes);
    if (mismatch !== undefined) return this.refuseSession(mismatch);
    this.role = s.peerState.role as PeerRole;
    // A pause-sync on the peer outlives our restart: its state carries it.
    this.peerPaused = s.peerState.syncPaused;
    this.decide(s);
    if (this.session === s) this.noteView(s.peerState);
  }

  private paramsMismatch(p: Params): string | undefined {
    const cfg = this.host.config;
    const mine: Array<[string, unknown, unknown]> = [
      ['protocol', cfg.protocol, p.protocol],
      ['allow-two-primaries', cfg.net.allowTwoPrimaries, p.allowTwoPrimaries],
      ['after-sb-0pri', cfg.net.afterSb0pri, p.afterSb0pri],
      ['after-sb-1pri', cfg.net.afterSb1pri, p.afterSb1pri],
      ['after-sb-2pri', cfg.net.afterSb2pri, p.afterSb2pri],
      ['always-asbp', cfg.net.alwaysAsbp, p.alwaysAsbp],
    ];
    for (const [what, a, b] of mine) {
      if (a !== b) {
        return `incompatible ${what}: ${String(a)} here, ${String(b)} on ${this.name}`;
      }
    }
    if (this.discardMyData && p.discardMyData) {
      return 'both nodes asked to discard their data (connect --discard-my-data on one side only)';
    }
    return undefined;
  }

  /**
   * drbd.md §6.1: the nodes agree on the smaller size, but a device that holds data is never
   * shrunk (what lies beyond would be lost without a word). Only fresh metadata (the
   * just-created UUID on an Inconsistent disk) takes the peer's smaller size. Both sides
   * reach the same verdict from the same facts.
   */
  private sizesMismatch(s: Session, p: Sizes): string | undefined {
    const meta = this.host.meta;
    const mine = meta?.sizeBytes ?? 0;
    if (!meta || mine === 0 || p.deviceBytes === 0 || mine === p.deviceBytes) return undefined;
    const fresh = (current: bigint, disk: string): boolean =>
      (current & ~1n) === UUID_JUST_CREATED && disk === 'Inconsistent';
    const bigger = mine > p.deviceBytes ? this.host.node : this.name;
    const biggerFresh =
      mine > p.deviceBytes
        ? fresh(meta.superblock().uuids.current, this.host.disk)
        : fresh(uuidFromBytes(s.peerUuids!.current), s.peerState!.disk);
    if (!biggerFresh) {
      return `device sizes differ: ${mine} bytes on ${this.host.node}, ${p.deviceBytes} on ${this.name}; refusing to shrink the device on ${bigger}, which holds data`;
    }
    if (mine > p.deviceBytes) {
      meta.shrinkTo(p.deviceBytes);
      this.log.warn(
        { from: mine, to: p.deviceBytes },
        `device shrunk to ${this.name}'s smaller size (fresh metadata)`,
      );
    }
    return undefined;
  }

  private side(
    uuids: GenerationUuids,
    flags: number,
    state: Pick<State, 'role' | 'disk'>,
    dirty: number,
    discard: boolean,
  ): HandshakeSide {
    return {
      uuids,
      crashedPrimary: (flags & UUID_FLAG_CRASHED_PRIMARY) !== 0,
      role: state.role as Role,
      disk: state.disk as DiskState,
      dirtyBits: dirty,
      discardMyData: discard,
    };
  }

  private decide(s: Session): void {
    const meta = this.host.meta;
    const peerU = s.peerUuids!;
    const peerUuids: GenerationUuids = {
      current: uuidFromBytes(peerU.current),
      bitmap: uuidFromBytes(peerU.bitmap),
      history: [
        peerU.history[0] ? uuidFromBytes(peerU.history[0]) : 0n,
        peerU.history[1] ? uuidFromBytes(peerU.history[1]) : 0n,
      ],
    };
    // A diskless node has no generation: the decision is 'diskless-self' (no resync).
    const sb = meta?.superblock();
    const self = this.side(
      sb?.uuids ?? { current: 0n, bitmap: 0n, history: [0n, 0n] },
      sb?.flags.crashedPrimary ? UUID_FLAG_CRASHED_PRIMARY : 0,
      { role: this.host.role, disk: this.host.disk },
      meta?.bitmap.count() ?? 0,
      this.discardMyData,
    );
    const peer = this.side(
      peerUuids,
      peerU.flags,
      s.peerState!,
      peerU.dirtyBits,
      (peerU.flags & UUID_FLAG_DISCARD_MY_DATA) !== 0,
    );
    const net = this.host.config.net;
    const d = decideHandshake(self, peer, this.dialer, {
      afterSb0pri: net.afterSb0pri,
      afterSb1pri: net.afterSb1pri,
      afterSb2pri: net.afterSb2pri,
      alwaysAsbp: net.alwaysAsbp,
      rrConflict: net.rrConflict,
    });
    const tuple = (u: GenerationUuids): string =>
      [u.current, u.bitmap, ...u.history].map(formatUuid).join(':');
    this.log.info(
      {
        self: tuple(self.uuids),
        peer: tuple(peerUuids),
        selfDirty: self.dirtyBits,
        peerDirty: peer.dirtyBits,
        action: d.action,
        ...(d.action !== 'disconnect' ? { full: d.full } : {}),
        via: d.via,
      },
      `handshake: ${d.action} by rule ${d.rule}`,
    );
    if (d.action === 'disconnect') {
      if (d.reason.startsWith('Split-Brain')) this.splitBrainHandlers(true);
      return this.refuseSession(d.reason);
    }
    if (d.via.some((v) => v.startsWith('after-sb-'))) this.splitBrainHandlers(false);
    if (d.repairSelf) meta?.store.setUuids(d.repairSelf);
    s.decided = true;
    this.discardMyData = false;
    this.disk = s.peerState!.disk as DiskState;
    // Kept across a redecide: its sequence numbers continue with the peer's transfer log.
    // A diskless node receives no writes (a Primary does not replicate to it).
    if (this.host.meta && this.host.backing) s.receiver ??= this.makeReceiver(s);
    let action: 'established' | 'source' | 'target' = d.action;
    let full = d.full;
    // drbd.md §3.6.6: "no sync" with dirty bits on either side would leave the disks
    // different with nothing to say so. Resync them instead, from the side that knows best.
    if (
      action === 'established' &&
      self.disk !== 'Diskless' &&
      peer.disk !== 'Diskless' &&
      (self.dirtyBits > 0 || peer.dirtyBits > 0)
    ) {
      action = this.leftoverDirection(self, peer);
      full = false;
      this.log.warn(
        { selfDirty: self.dirtyBits, peerDirty: peer.dirtyBits, as: action },
        'no resync by the UUIDs, but bits are set: resyncing them',
      );
    }
    if (action === 'established') return this.establish(s);
    this.beginResync(s, action, full);
  }

  /**
   * drbd.md §7: initial-split-brain on every split brain found, split-brain when no policy
   * resolved it, and pri-lost-after-sb on a Primary that a call-pri-lost-after-sb policy
   * left without a way to win (its handler usually reboots the node).
   */
  private splitBrainHandlers(unresolved: boolean): void {
    this.host.notify('initial-split-brain', this);
    if (!unresolved) return;
    this.host.notify('split-brain', this);
    // Only under the policy that applied to this Primary: after-sb-1pri when the peer is not
    // Primary, after-sb-2pri when it is (resync-decision.ts recover). A call-pri-lost-after-sb
    // in the other one does not concern this split brain (DRBD calls the helper from that
    // policy's case only): two Primaries under after-sb-1pri call-pri-lost-after-sb and
    // after-sb-2pri disconnect must not run it.
    const net = this.host.config.net;
    const policy = this.role === 'Primary' ? net.afterSb2pri : net.afterSb1pri;
    if (this.host.role === 'Primary' && policy === 'call-pri-lost-after-sb') {
      this.host.notify('pri-lost-after-sb', this);
    }
  }

  /** Mirror-safe choice for leftover bits: the Primary, else the tie-break. */
  private leftoverDirection(self: HandshakeSide, peer: HandshakeSide): 'source' | 'target' {
    if (self.disk === 'UpToDate' && peer.disk !== 'UpToDate') return 'source';
    if (peer.disk === 'UpToDate' && self.disk !== 'UpToDate') return 'target';
    if (self.role === 'Primary' && peer.role !== 'Primary') return 'source';
    if (peer.role === 'Primary' && self.role !== 'Primary') return 'target';
    return this.dialer ? 'source' : 'target';
  }

  /**
   * The peer's crash as Primary was dealt with (states.ts crashDealtWith): it clears its own
   * flag, and the copy of its UUID flags kept from the handshake loses it too, as DRBD's
   * does, so a re-decision from that copy cannot act on the crash again.
   */
  forgetPeerCrash(): void {
    const u = this.session?.peerUuids;
    if (u) u.flags &= ~UUID_FLAG_CRASHED_PRIMARY;
  }

  /** After the handshake: the peer's UUIDs changed (forced promotion, new-current-uuid). */
  private onUuidsAfterHandshake(s: Session, u: Uuids): void {
    const meta = this.host.meta;
    if (!meta) return;
    if (u.flags & UUID_FLAG_SKIP_INITIAL_SYNC) {
      // The peer skipped the initial sync of two blank disks (new-current-uuid
      // --clear-bitmap): take its generation as ours and agree that nothing differs.
      const current = uuidFromBytes(u.current);
      meta.store.setUuids({
        current: current & ~1n,
        bitmap: 0n,
        history: meta.superblock().uuids.history,
      });
      meta.bitmap.clearAll();
      meta.persistBitmap();
      this.host.setDisk('UpToDate');
      this.disk = 'UpToDate';
      this.log.info('initial sync skipped by the peer (new-current-uuid --clear-bitmap)');
      this.sendState(s);
      this.host.changed();
      return;
    }
    if (this.replication !== 'Established') return;
    s.peerUuids = u;
    this.redecide(s);
  }

  /**
   * A generation changed while connected: run the same decision again from both tuples.
   * Each side runs it when the other's new UUIDs arrive or its own changed, from the same
   * two tuples, so the results mirror as at the handshake.
   */
  private redecide(s: Session): void {
    if (!s.peerUuids || !s.peerState) return;
    s.decided = false;
    this.host.holdIo(true);
    this.decide(s);
  }

  /** Our own UUIDs changed while connected (forced promotion, new-current-uuid). */
  uuidsChanged(skipInitialSync: boolean): void {
    const s = this.session;
    if (!s || !s.decided) return;
    // State first: the peer re-decides when the UUIDs arrive, from the state it has then.
    this.sendState(s);
    this.sendUuids(s, skipInitialSync ? UUID_FLAG_SKIP_INITIAL_SYNC : 0);
    if (skipInitialSync) return;
    if (this.replication === 'Established') {
      this.guard(
        s,
        'a new decision',
        (s.receiver?.quiesce() ?? Promise.resolve()).then(() => this.redecide(s)),
      );
    }
  }

  private onState(s: Session, st: State): void {
    if (!s.decided) {
      s.peerState = st;
      return this.maybeDecide(s);
    }
    s.peerState = st;
    this.role = st.role as PeerRole;
    if (st.disk !== this.disk) {
      this.disk = st.disk as DiskState;
      if (this.disk === 'UpToDate') s.peerWasUpToDate = true;
    }
    if (this.peerPaused !== st.syncPaused) {
      this.peerPaused = st.syncPaused;
      this.applyPause(s);
    }
    this.noteView(st);
    this.host.changed();
  }

  /** Keeps the cluster part of a state message; a peer that leaves gracefully stops voting. */
  private noteView(st: State): void {
    this.view = {
      quorum: st.quorum,
      sees: st.sees,
      promotable: st.promotable,
      outdated: st.outdated,
      leaving: st.leaving,
    };
    // A data peer votes again once it holds UpToDate data with us; a diskless one (the
    // tiebreaker, which has no data to fall behind with) as soon as it is back.
    if (st.leaving) this.knownOutdated = true;
    else if (!this.diskful || (st.disk === 'UpToDate' && this.replication === 'Established')) {
      this.knownOutdated = false;
    }
    this.host.peerViewChanged(this);
  }

  private establish(s: Session): void {
    const disk = this.host.disk;
    // drbd.md §2.7: Consistent or Outdated become UpToDate once connected, the handshake having
    // found nothing to sync.
    if (disk === 'Consistent' || disk === 'Outdated') this.host.setDisk('UpToDate');
    const pd = s.peerState!.disk as DiskState;
    this.disk = pd === 'Consistent' || pd === 'Outdated' ? 'UpToDate' : pd;
    if (this.disk === 'UpToDate') s.peerWasUpToDate = true;
    this.replication = 'Established';
    if (this.disk === 'UpToDate') this.knownOutdated = false;
    this.host.holdIo(false);
    this.sendState(s);
    this.host.changed();
  }

  private refuseSession(reason: string): void {
    this.log.error({ reason }, `connection to ${this.name} refused: ${reason}`);
    this.wanted = false;
    this.endSession(reason, 'Refused', true);
    this.lastError = reason;
    void this.disconnect(reason).then(() => {
      this.lastError = reason;
      this.host.changed();
    });
  }

  // ---- bitmap exchange and resync ---------------------------------------------------------

  private beginResync(s: Session, role: 'source' | 'target', full: boolean): void {
    // Set at once: the peer's bitmap may arrive while before-resync-target runs.
    s.syncRole = role;
    s.bitmapSent = false;
    s.bitmapReceived = false;
    if (role === 'target' && this.host.hasHandler('before-resync-target')) {
      // drbd.md §1.3 before-resync-target (a snapshot of the data about to be overwritten,
      // typically): it runs to its end first, while the disk still holds its data; a failure
      // drops the connection, as DRBD's does, instead of overwriting what it did not save.
      this.guard(
        s,
        'before-resync-target',
        this.host.runHandler('before-resync-target', this).then((r) => {
          if (this.session !== s) return;
          if (r !== undefined && r.exitCode !== 0) {
            return this.refuseSession(
              `before-resync-target handler failed (${describeResult(r)}), dropping connection`,
            );
          }
          this.startResync(s, role, full);
        }),
      );
      return;
    }
    this.startResync(s, role, full);
  }

  private startResync(s: Session, role: 'source' | 'target', full: boolean): void {
    const meta = this.host.meta!;
    if (full) {
      // Crash-safe: the flag says "redo set-all at attach" until the bitmap is on disk.
      meta.store.setFlags({ fullSync: true });
      meta.bitmap.setAll();
      meta.persistBitmap();
      meta.store.setFlags({ fullSync: false });
    }
    this.replication = role === 'source' ? 'WFBitMapS' : 'WFBitMapT';
    if (role === 'target' && this.host.disk !== 'Inconsistent') {
      // Our data is about to be overwritten block by block.
      this.host.setDisk('Inconsistent');
    }
    this.host.changed();
    this.sendBitmap(s);
  }

  private sendBitmap(s: Session): void {
    const bm = this.host.meta!.bitmap;
    let bit = 0;
    do {
      const { rle, nextBit } = encodeBitmapRle(bm, bit, BITMAP_CHUNK_BYTES);
      s.link.send('bitmapChunk', {
        totalBits: bm.totalBits,
        firstBit: bit,
        rle,
        last: nextBit >= bm.totalBits,
      });
      bit = nextBit;
    } while (bit < bm.totalBits);
    s.bitmapSent = true;
    this.afterBitmaps(s);
  }

  private onBitmapChunk(
    s: Session,
    c: { totalBits: number; firstBit: number; rle: Uint8Array; last: boolean },
  ): void {
    if (!s.syncRole) {
      // The peer started a resync we have not decided yet: only possible after a redecide
      // race; the decision on our side will follow from the same tuples.
      throw new PeerProtocolError('bitmap received outside a bitmap exchange');
    }
    const bm = this.host.meta!.bitmap;
    if (c.totalBits !== bm.totalBits) {
      throw new PeerProtocolError(`peer bitmap has ${c.totalBits} bits, ours ${bm.totalBits}`);
    }
    orBitmapRle(bm, c.firstBit, c.rle);
    if (!c.last) return;
    s.bitmapReceived = true;
    this.afterBitmaps(s);
  }

  private afterBitmaps(s: Session): void {
    if (!s.bitmapSent || !s.bitmapReceived) return;
    const meta = this.host.meta!;
    // Both now hold the union; it reaches the disk before anything is copied.
    meta.persistBitmap();
    if (s.syncRole === 'source') {
      const { uuids, syncUuid } = startSyncSource(meta.superblock().uuids);
      meta.store.setUuids(uuids);
      s.link.send('syncUuid', { uuid: uuidBytes(syncUuid) });
      this.startSource(s);
    } else {
      this.replication = 'WFSyncUUID';
      this.host.changed();
    }
  }

  private onSyncUuid(s: Session, syncUuid: bigint): void {
    if (s.syncRole !== 'target') throw new PeerProtocolError('sync UUID while not SyncTarget');
    const meta = this.host.meta!;
    meta.store.setUuids(
      startSyncTarget(meta.superblock().uuids, syncUuid, this.host.role === 'Primary'),
    );
    this.host.setDisk('Inconsistent');
    this.disk = 'UpToDate';
    this.startTarget(s);
  }

  private startSource(s: Session): void {
    const meta = this.host.meta!;
    const backing = this.host.backing!;
    s.resyncSource = new ResyncSource(meta.bitmap, this.host.changeLock, meta.sizeBytes, {
      read: (buf, offset) => backing.read(buf, offset),
      reply: (offset, length, error, data) =>
        s.link.send('rsReply', { offset, length, error }, data),
    });
    this.disk = 'Inconsistent';
    this.replication = 'SyncSource';
    this.syncStarted = { at: Date.now(), bits: meta.bitmap.count() };
    this.decidedNow(s);
    this.log.info({ bytes: meta.outOfSyncBytes() }, 'resync started as SyncSource');
    this.applyPause(s);
  }

  private startTarget(s: Session): void {
    const meta = this.host.meta!;
    const backing = this.host.backing!;
    let applied = s.receiver?.applied ?? 0;
    const appIo = (): boolean => {
      // Replicated writes arriving here count as application I/O as much as our own.
      const now = s.receiver?.applied ?? 0;
      const active = now !== applied;
      applied = now;
      return this.host.takeAppIo() || active;
    };
    const target = new ResyncTarget(meta.bitmap, this.host.changeLock, meta.sizeBytes, {
      request: (offset, length) => s.link.send('rsRequest', { offset, length }),
      ack: (offset, length, ok) => s.link.send('rsWriteAck', { offset, length, ok }),
      write: (data, offset) => backing.write(data, offset, false),
      rates: () => resyncRates(this.host.config.disk, appIo()),
      finished: (failed) => this.targetFinished(s, failed),
      localWrites: () => this.host.localWrites,
    });
    s.resyncTarget = target;
    this.replication = 'SyncTarget';
    this.syncStarted = { at: Date.now(), bits: meta.bitmap.count() };
    this.decidedNow(s);
    this.log.info({ bytes: meta.outOfSyncBytes() }, 'resync started as SyncTarget');
    this.applyPause(s);
    target.start();
  }

  private syncStarted: { at: number; bits: number } | undefined;

  /**
   * Before this node takes application writes (promotion): resync requests it sent as a
   * Secondary, without their ranges held, must be written first (resync.ts header).
   */
  resyncReadyForLocalWrites(): Promise<void> {
    return this.session?.resyncTarget?.unlockedDrained() ?? Promise.resolve();
  }

  private decidedNow(s: Session): void {
    s.decided = true;
    s.persistTimer = setInterval(
      () => this.guard(s, 'saving the bitmap', this.persistBitmapDurably(s)),
      BITMAP_PERSIST_MS,
    );
    this.host.holdIo(false);
    this.sendState(s);
    this.host.changed();
  }

  /**
   * A SyncTarget's cleared bits may reach its metadata only after the data they stand for
   * reached its disk: resync writes are not flushed one by one, and a power loss must not
   * leave a cleared bit over a block that never landed. Elsewhere bits are only set or
   * cleared after the peer's ack, and persisting them needs no flush.
   */
  private async persistBitmapDurably(s: Session | undefined): Promise<void> {
    const meta = this.host.meta;
    if (!meta) return;
    if (s?.syncRole === 'target') {
      try {
        await this.host.backing?.flush();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'flush before saving the bitmap failed');
        return;
      }
    }
    if (this.host.meta !== meta) return;
    try {
      meta.persistBitmap();
    } catch (err) {
      // The bits stay dirty in memory and are tried again; the metadata disk is the problem.
      this.log.error({ err: (err as Error).message }, 'saving the bitmap failed');
    }
  }

  private targetFinished(s: Session, failedBits: number): void {
    if (this.session !== s) return;
    this.guard(
      s,
      'finishing the resync',
      this.persistBitmapDurably(s).then(() => {
        if (this.session !== s) return;
        s.link.send('resyncDone', { failedBits });
      }),
    );
    if (failedBits > 0) {
      this.log.error(
        { failedBits },
        'resync finished with blocks that failed; disk stays Inconsistent',
      );
    }
  }

  private onResyncDone(s: Session, body: { uuids: Uuids; failedBits: number }): void {
    const meta = this.host.meta!;
    if (s.syncRole === 'source' && s.resyncSource) {
      const src = s.resyncSource;
      const finish = src.drained().then(() => {
        if (this.session !== s) return;
        if (body.failedBits > 0) {
          this.endResync(s);
          return;
        }
        meta.store.setUuids(finishSyncSource(meta.superblock().uuids));
        meta.persistBitmap();
        const left = meta.bitmap.count();
        if (left > 0) this.log.warn({ bits: left }, 'resync done but bits remain set here');
        const final = meta.superblock().uuids;
        s.link.send('resyncDone', {
          uuids: {
            current: uuidBytes(final.current),
            bitmap: uuidBytes(final.bitmap),
            history: final.history.map(uuidBytes),
            dirtyBits: left,
            flags: 0,
          },
          failedBits: 0,
        });
        this.disk = 'UpToDate';
        s.peerWasUpToDate = true;
        this.endResync(s);
        this.log.info('resync finished (SyncSource)');
      });
      this.guard(s, 'finishing the resync', finish);
      return;
    }
    if (s.syncRole === 'target') {
      const u = body.uuids;
      const source: GenerationUuids = {
        current: uuidFromBytes(u.current),
        bitmap: uuidFromBytes(u.bitmap),
        history: [uuidFromBytes(u.history[0]!), uuidFromBytes(u.history[1]!)],
      };
      meta.store.setUuids(finishSyncTarget(source, this.host.role === 'Primary'));
      meta.persistBitmap();
      this.host.setDisk('UpToDate');
      this.endResync(s);
      this.log.info('resync finished (SyncTarget)');
      this.host.notify('after-resync-target', this);
      return;
    }
    throw new PeerProtocolError('resync-done outside a resync');
  }

  private endResync(s: Session): void {
    clearInterval(s.persistTimer);
    s.persistTimer = undefined;
    s.resyncSource?.stop();
    s.resyncSource = undefined;
    s.resyncTarget?.stop();
    s.resyncTarget = undefined;
    s.syncRole = undefined;
    this.syncStarted = undefined;
    this.replication = 'Established';
    this.sendState(s);
    this.host.changed();
  }

  /**
   * pause-sync / resume-sync here. Each node holds its own pause (drbd.md §6.8): resuming
   * where nothing was paused while the peer holds a pause would do nothing, so it says where
   * to resume instead.
   */
  setUserPaused(paused: boolean): void {
    if (!paused && !this.userPaused && this.peerPaused) {
      throw new Error(
        `the resync with ${this.name} is paused on ${this.name}, not here: run resume-sync on ${this.name}`,
      );
    }
    this.userPaused = paused;
    const s = this.session;
    if (!s) return;
    s.link.send('syncPause', { paused });
    this.applyPause(s);
  }

  private applyPause(s: Session): void {
    const paused = this.userPaused || this.peerPaused;
    s.resyncTarget?.setPaused(paused);
    if (this.replication === 'SyncSource' && paused) this.replication = 'PausedSyncS';
    else if (this.replication === 'PausedSyncS' && !paused) this.replication = 'SyncSource';
    else if (this.replication === 'SyncTarget' && paused) this.replication = 'PausedSyncT';
    else if (this.replication === 'PausedSyncT' && !paused) this.replication = 'SyncTarget';
    this.host.changed();
  }

  progress(): SyncProgress | undefined {
    const st = this.syncStarted;
    const meta = this.host.meta;
    if (!st || !meta) return undefined;
    const left = meta.bitmap.count();
    const done = st.bits === 0 ? 100 : Math.max(0, (100 * (st.bits - left)) / st.bits);
    const secs = (Date.now() - st.at) / 1000;
    const rate = secs > 0 ? ((st.bits - left) * 4096) / secs : 0;
    return {
      outOfSync: left * 4096,
      total: st.bits * 4096,
      done: Math.floor(done * 100) / 100,
      rate: Math.round(rate),
      etaSeconds: rate > 0 ? Math.ceil((left * 4096) / rate) : undefined,
    };
  }

  /** Counters for status --statistics. */
  statistics(): PeerStatistics {
    const s = this.session;
    return {
      sent: this.traffic.sentBytes + (s?.link.traffic.sentBytes ?? 0),
      received: this.traffic.receivedBytes + (s?.link.traffic.receivedBytes ?? 0),
      pending: s?.tl.size ?? 0,
      unacked: s?.receiver?.unacked ?? 0,
    };
  }

  // ---- the secondary's receiver and remote reads --------------------------------------------

  private makeReceiver(s: Session): Receiver {
    const meta = this.host.meta!;
    const backing = this.host.backing!;
    return new Receiver(
      backing,
      meta.sizeBytes,
      this.host.changeLock,
      {
        recvAck: (seq) => s.link.send('recvAck', { seq }),
        writeAck: (seq) => s.link.send('writeAck', { seq }),
        negAck: (seq, error) => s.link.send('negAck', { seq, error }),
        barrierAck: (epoch, writes) => s.link.send('barrierAck', { epoch, writes }),
      },
      { pause: () => s.link.pauseData(), resume: () => s.link.resumeData() },
      (offset, length, err) => {
        meta.markOutOfSync(offset, length);
        this.log.error({ offset, length, err: err.message }, 'replicated write failed locally');
      },
      (err) => {
        this.log.error({ err: err.message }, 'flush for a barrier failed');
        this.endSession(`local flush failed: ${err.message}`, 'TearDown', false);
      },
    );
  }

  /** Reads from the peer, for a node whose own disk is not UpToDate. */
  remoteRead(buf: Buffer, offset: number): Promise<void> {
    const s = this.session;
    if (!s || !this.canRead)
      return Promise.reject(new Error(`peer ${this.name} cannot serve reads`));
    const id = s.nextReadId++;
    return new Promise<void>((resolve, reject) => {
      s.reads.set(id, { buf, resolve, reject });
      s.link.send('readRequest', { id, offset, length: buf.length });
    });
  }

  private serveRead(s: Session, r: { id: number; offset: number; length: number }): void {
    const backing = this.host.backing;
    const meta = this.host.meta;
    if (!backing || !meta || this.host.disk !== 'UpToDate') {
      s.link.send('readReply', { id: r.id, error: `no UpToDate data on ${this.host.node}` });
      return;
    }
    if (r.length <= 0 || r.length > 32 << 20 || r.offset + r.length > meta.sizeBytes) {
      throw new PeerProtocolError(`read request ${r.offset}+${r.length} is outside the device`);
    }
    const buf = Buffer.allocUnsafe(r.length);
    backing.read(buf, r.offset).then(
      () => s.link.send('readReply', { id: r.id, error: '' }, buf),
      (err: Error) => s.link.send('readReply', { id: r.id, error: err.message }),
    );
  }

  private onReadReply(
    s: Session,
    r: { id: number; error: string },
    payload: Buffer | undefined,
  ): void {
    const p = s.reads.get(r.id);
    if (!p) throw new PeerProtocolError(`read reply #${r.id} for no request`);
    s.reads.delete(r.id);
    if (r.error !== '' || !payload || payload.length !== p.buf.length) {
      p.reject(new Error(`remote read failed: ${r.error || 'short reply'}`));
      return;
    }
    payload.copy(p.buf);
    p.resolve();
  }

  // ---- the end of a session ------------------------------------------------------------------

  private endSession(reason: string, kind: CloseKind, byUs: boolean): void {
    const s = this.session;
    if (!s) return;
    const wasReplicating = this.replicating !== undefined;
    this.session = undefined;
    const peerWasUpToDate = s.peerWasUpToDate || this.disk === 'UpToDate';
    this.traffic.sentBytes += s.link.traffic.sentBytes;
    this.traffic.receivedBytes += s.link.traffic.receivedBytes;
    s.link.close(reason, kind);
    // Every change not covered by a barrier ack is marked out of sync here (settle(false)).
    s.tl.fail(reason);
    s.receiver?.close();
    clearInterval(s.persistTimer);
    clearInterval(s.koTimer);
    s.resyncTarget?.stop();
    s.resyncSource?.stop();
    for (const r of s.reads.values()) r.reject(new Error(`connection to ${this.name} lost`));
    s.reads.clear();
    this.syncStarted = undefined;
    this.persistBitmapDurably(s).catch(() => undefined);
    const wasEstablished = s.decided;
    this.role = 'Unknown';
    this.disk = this.knownOutdated && this.diskful ? 'Outdated' : 'DUnknown';
    this.replication = 'Off';
    this.peerPaused = false;
    this.view = undefined;
    if (wasEstablished || wasReplicating) this.host.lostPeer(this, wasReplicating, peerWasUpToDate);
    if (wasEstablished) this.host.notify('disconnected', this);
    this.host.holdIo(false);
    if (!byUs) {
      this.lastError = reason;
      this.log.warn({ reason, kind }, 'connection lost');
    }
    if (kind === 'Refused' && !byUs) {
      // The peer's handshake refused us (split brain, unrelated data, sizes, settings): the
      // same facts would make it refuse again, so stay StandAlone with its reason, as it does.
      this.wanted = false;
      clearTimeout(this.dialTimer);
      if (this.listening) {
        this.listening = false;
        void this.host.listener.release(this);
      }
    }
    this.setConnection(this.wanted ? 'Connecting' : 'StandAlone');
    if (this.wanted) this.dialSoon(this.host.config.net.connectIntMs);
  }

  /**
   * Runs a step that continues after an await. An error there has no caller to catch it
   * and would otherwise end the daemon; it ends this session instead, with the reason.
   */
  private guard(s: Session, what: string, p: Promise<unknown>): void {
    p.catch((err: unknown) => {
      const reason = `${what} failed: ${(err as Error).message ?? String(err)}`;
      this.log.error({ reason }, 'dropping the peer connection');
      if (this.session === s) this.endSession(reason, 'ProtocolError', false);
    });
  }

  private setConnection(c: ConnectionState): void {
    this.connection = c;
    this.host.changed();
  }
}
