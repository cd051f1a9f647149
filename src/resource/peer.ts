/**
 * One peer of a resource: the connection state machine (drbd.md §2.3–§2.4, §6.1), the
 * handshake and its decision (§3.6), the bitmap exchange and resync (§6.2–§6.3), and the
 * replication session the write path uses while connected (§5). This class holds the peer's
 * state and its connection lifecycle; the handshake (peer-handshake.ts), the resync
 * (peer-resync.ts) and the write-path hooks (peer-io.ts) are functions of the peer and its
 * session (peer-session.ts).
 *
 * Who dials: the node with the lower node id (or, without ids, the lower name) connects;
 * the other listens on its `address`. One side dialing keeps the two sockets of a link from
 * crossing, and the same comparison gives the tie-break bit the UUID rules need, so both
 * sides always agree on it.
 */
import type { Logger } from 'pino';
import type { Address, HostConfig, ResourceConfig } from '../config/index.js';
import type { Resizer } from './resize.js';
import type { DiskMeta } from './disk-meta.js';
import type { FileDisk } from '../storage/file-disk.js';
import { dialPeer, LinkError, type PeerLink, type CloseKind } from '../replication/link.js';
import { redialDelayMs } from '../replication/redial.js';
import { IntervalLock } from '../replication/interval-lock.js';
import { TransferLog } from '../replication/transfer-log.js';
import { releasePayload } from '../replication/frame.js';
import { PeerProtocolError } from '../replication/receiver.js';
import {
  type PeerMessage,
  type State,
  UUID_FLAG_CRASHED_PRIMARY,
  UUID_FLAG_SKIP_INITIAL_SYNC,
  uuidFromBytes,
} from '../replication/schema.js';
import type { SharedListener } from './shared-listener.js';
import type { HandlerName, HandlerResult } from './handlers.js';
import type { ConnectionState, DiskState, PeerRole, ReplicationState, Role } from './states.js';
import { diskRank } from './states.js';
import type { PeerStatistics } from './status.js';
import type { Session } from './peer-session.js';
import { endVerify, onVerifyMessage } from './peer-verify.js';
import { csumsOf } from './peer-csums.js';
import {
  maybeDecide,
  onState,
  onUuidsAfterHandshake,
  redecide,
  sendHandshake,
  sendUuids,
} from './peer-handshake.js';
import {
  applyPause,
  onBitmapChunk,
  onResyncDone,
  onSyncUuid,
  persistBitmapDurably,
  syncProgress,
} from './peer-resync.js';
import { onReadReply, remoteRead, serveRead } from './peer-io.js';

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
  /** Online resize (resize.ts): the peer's requests and answers. */
  readonly resizer: Resizer;
  /** Runs a handler of the handlers section about this peer (handlers.ts); never rejects. */
  runHandler(name: HandlerName, peer?: Peer): Promise<HandlerResult | undefined>;
  /** A notification handler, run in the background. */
  notify(name: HandlerName, peer?: Peer): void;
  hasHandler(name: HandlerName): boolean;
  /** Hold application writes while the handshake decides (undefined: release). */
  holdIo(hold: boolean): void;
  /** The backing disk failed a request (on-io-error); true when it is being detached. */
  localIoFailed(err: Error): boolean;
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

  // The members below are the peer's own, shared with its peer-*.ts modules only.

  discardMyData = false;
  /** The session with the peer, while linked; every session-bound step checks it is still this one. */
  session: Session | undefined;
  /** This peer waits for dials on the resource's shared listener. */
  listening = false;
  dialTimer: NodeJS.Timeout | undefined;
  dialAbort: AbortController | undefined;
  /** Dials refused (ECONNREFUSED) since the last connect or link: the redial backoff. */
  refusedDials = 0;
  wanted = false;
  /** When the current resync started and how many bits it had to copy (progress). */
  syncStarted: { at: number; bits: number } | undefined;
  readonly log: Logger;
  /** Data bytes of the sessions that ended (statistics are totals since up). */
  readonly traffic = { sentBytes: 0, receivedBytes: 0 };

  constructor(
    readonly host: PeerHost,
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
    link.on(
      'message',
      (msg: PeerMessage, payload: Buffer | undefined, _channel: string, pooled: boolean) => {
        if (this.session !== s) return;
        try {
          this.onMessage(s, msg, payload, pooled);
        } catch (err) {
          const reason =
            err instanceof PeerProtocolError
              ? err.message
              : `protocol error handling ${msg.type}: ${(err as Error).message}`;
          this.log.error({ reason }, 'dropping the peer connection');
          this.endSession(reason, 'ProtocolError', false);
        }
      },
    );
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
        sendHandshake(this, s);
        s.handshakeSent = true;
        maybeDecide(this, s);
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

  /** Tells the peer our role and disk state (after any change of either). */
  sendState(s: Session | undefined = this.session): void {
    s?.link.send('state', {
      role: this.host.role,
      disk: this.host.disk,
      syncPaused: this.userPaused,
      ...this.host.clusterState(),
    });
  }

  /** `pooled`: the payload may go back to the pool once written or copied (frame.ts). */
  private onMessage(
    s: Session,
    msg: PeerMessage,
    payload: Buffer | undefined,
    pooled: boolean,
  ): void {
    switch (msg.type) {
      case 'params':
        s.peerParams = msg.body;
        return maybeDecide(this, s);
      case 'sizes':
        s.peerSizes = msg.body;
        return maybeDecide(this, s);
      case 'uuids':
        if (!s.decided) {
          s.peerUuids = msg.body;
          return maybeDecide(this, s);
        }
        return onUuidsAfterHandshake(this, s, msg.body);
      case 'state':
        return onState(this, s, msg.body);
      case 'bitmapChunk':
        return onBitmapChunk(this, s, msg.body);
      case 'syncUuid':
        return onSyncUuid(this, s, uuidFromBytes(msg.body.uuid));
      case 'resyncDone':
        return onResyncDone(this, s, msg.body);
      case 'data':
        if (!s.receiver) throw new PeerProtocolError('replicated write before the handshake');
        return s.receiver.onData(msg.body, payload, pooled);
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
        return serveRead(this, s, msg.body);
      case 'readReply':
        return onReadReply(s, msg.body, payload, pooled);
      case 'rsRequest': {
        if (!s.resyncSource) throw new PeerProtocolError('resync request while not SyncSource');
        const bad = s.resyncSource.onRequest(msg.body.offset, msg.body.length, csumsOf(msg.body));
        if (bad !== undefined) throw new PeerProtocolError(bad);
        return;
      }
      case 'rsReply':
        if (!s.resyncTarget) return releasePayload(payload, pooled);
        if (msg.body.inSync) return s.resyncTarget.onInSync(msg.body.offset, msg.body.length);
        return s.resyncTarget.onReply(
          msg.body.offset,
          msg.body.length,
          msg.body.error,
          payload,
          pooled,
        );
      case 'rsWriteAck':
        return s.resyncSource?.onAck(msg.body.offset, msg.body.length, msg.body.ok);
      case 'syncPause':
        this.peerPaused = msg.body.paused;
        applyPause(this, s);
        return;
      case 'outdateRequest':
        return this.host.outdateRequested(this, msg.body.id, msg.body.target);
      case 'outdateReply':
        return this.host.outdateAnswered(this, msg.body.id, msg.body.result);
      case 'resizeRequest': {
        const { id, ...req } = msg.body;
        return this.host.resizer.onRequest(this, id, req);
      }
      case 'resizeReply':
        return this.host.resizer.onReply(this, msg.body);
      case 'ovStart':
      case 'ovRequest':
      case 'ovReply':
      case 'ovResult':
      case 'ovDone':
        return onVerifyMessage(this, s, msg);
      default:
        throw new PeerProtocolError(`unexpected ${msg.type} message`);
    }
  }

  // ---- handshake (peer-handshake.ts) -------------------------------------------------------

  /**
   * The peer's crash as Primary was dealt with (states.ts crashDealtWith): it clears its own
   * flag, and the copy of its UUID flags kept from the handshake loses it too, as DRBD's
   * does, so a re-decision from that copy cannot act on the crash again.
   */
  forgetPeerCrash(): void {
    const u = this.session?.peerUuids;
    if (u) u.flags &= ~UUID_FLAG_CRASHED_PRIMARY;
  }

  /** Our own UUIDs changed while connected (forced promotion, new-current-uuid). */
  uuidsChanged(skipInitialSync: boolean): void {
    const s = this.session;
    if (!s || !s.decided) return;
    // State first: the peer re-decides when the UUIDs arrive, from the state it has then.
    this.sendState(s);
    sendUuids(this, s, skipInitialSync ? UUID_FLAG_SKIP_INITIAL_SYNC : 0);
    if (skipInitialSync) return;
    if (this.replication === 'Established') {
      this.guard(
        s,
        'a new decision',
        (s.receiver?.quiesce() ?? Promise.resolve()).then(() => redecide(this, s)),
      );
    }
  }

  // ---- bitmap exchange and resync (peer-resync.ts) ------------------------------------------

  /**
   * Before this node takes application writes (promotion): resync requests it sent as a
   * Secondary, without their ranges held, must be written first (resync.ts header).
   */
  resyncReadyForLocalWrites(): Promise<void> {
    return this.session?.resyncTarget?.unlockedDrained() ?? Promise.resolve();
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
    applyPause(this, s);
  }

  progress(): SyncProgress | undefined {
    return syncProgress(this);
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

  // ---- the secondary's receiver and remote reads (peer-io.ts) --------------------------------

  /** Reads from the peer, for a node whose own disk is not UpToDate. */
  remoteRead(buf: Buffer, offset: number): Promise<void> {
    return remoteRead(this, buf, offset);
  }

  // ---- the end of a session ------------------------------------------------------------------

  endSession(reason: string, kind: CloseKind, byUs: boolean): void {
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
    endVerify(this, s);
    for (const r of s.reads.values()) r.reject(new Error(`connection to ${this.name} lost`));
    s.reads.clear();
    this.syncStarted = undefined;
    persistBitmapDurably(this, s).catch(() => undefined);
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
  guard(s: Session, what: string, p: Promise<unknown>): void {
    p.catch((err: unknown) => {
      const reason = `${what} failed: ${(err as Error).message ?? String(err)}`;
      this.log.error({ reason }, 'dropping the peer connection');
      if (this.session === s) this.endSession(reason, 'ProtocolError', false);
    });
  }

  setConnection(c: ConnectionState): void {
    this.connection = c;
    this.host.changed();
  }
}
