import type { Logger } from 'pino';
import type { HostConfig, ResourceConfig } from '../config/index.js';
import type { Superblock } from '../meta/store.js';
import { newCurrentCommand, withPrimaryBit } from '../meta/uuid.js';
import { IntervalLock } from '../replication/interval-lock.js';
import type { TransferLog } from '../replication/transfer-log.js';
import { FileDisk } from '../storage/file-disk.js';
import { DiskMeta } from './disk-meta.js';
import { exportSocketPath, metaPathFor } from './paths.js';
import {
  type DiskState,
  type Fencing,
  type Role,
  decideDemote,
  decideDetach,
  decideOutdate,
  type Refusal,
  crashDealtWith,
  diskStateOnAttach,
  keepCrashedPrimary,
  persistentFlags,
} from './states.js';
import type { ResourceStatus } from './status.js';
import { ResourceTarget } from './write-path.js';
import { DeviceExport } from './device-export.js';
import { TargetError } from '../nbd/target.js';
import { Peer, type PeerHost } from './peer.js';
import { startVerify } from './peer-verify.js';
import { SharedListener } from './shared-listener.js';
import { Cluster, type ClusterSummary, quorumOn } from './cluster.js';
import { Fencer, type FencingHost } from './fencing.js';
import { PeerLoss } from './peer-loss.js';
import { IoFreeze } from './io-freeze.js';
import { buildStatus } from './resource-status.js';
import { handlerContext } from './handler-context.js';
import { type HandlerName, type HandlerResult, HandlerRunner } from './handlers.js';
import { AdminError, commandError, refused } from './admin-error.js';
import { promote } from './promotion.js';
import { type DeviceSwitch } from './device-switch.js';
import { type DetachHost, Detacher } from './disk-detach.js';
import { invalidate, invalidateRemote } from './invalidate.js';
import { type ResizeArgs, type ResizeResult, Resizer } from './resize.js';
import type { NetOptions, OnIoError } from '../config/index.js';

export { AdminError, commandError } from './admin-error.js';

export interface ResourceOptions {
  config: ResourceConfig;
  host: HostConfig;
  node: string;
  runDir: string;
  log: Logger;
  /** Called after every change of state, so the daemon can publish events. */
  onChange: (r: Resource) => void;
  /** The resource file as given to the daemon (the handlers' DRBD_CONF). */
  configFile?: string;
}

/**
 * One resource on this node: its disk and metadata, its role, its (future) peers and its
 * NBD export. Admin requests run one at a time; each checks the rules in states.ts,
 * applies the change, rewrites the persistent flags and announces it.
 */
export class Resource implements PeerHost, FencingHost, DetachHost {
  readonly name: string;
  role: Role = 'Secondary';
  disk: DiskState = 'Diskless';
  readonly peers: Peer[];
  readonly exportSocket: string;
  /** The running configuration: the file as it was at `up`, then adjust / *-options. */
  config: ResourceConfig;
  host: HostConfig;
  readonly node: string;
  readonly changeLock = new IntervalLock();
  readonly log: Logger;
  readonly listener: SharedListener;
  /** Quorum and the outdate protocol (cluster.ts). */
  readonly cluster: Cluster;
  /** fence-peer and unfence-peer (fencing.ts). */
  readonly fencer: Fencer;
  /** The handlers { } section's commands (handlers.ts). */
  private handlers: HandlerRunner;
  /** What became of the writes to a lost data peer (peer-loss.ts). */
  readonly loss: PeerLoss;
  /** Suspended application I/O (io-freeze.ts). */
  readonly freeze: IoFreeze;
  /** Data peers whose outdate through the tiebreaker is pending: writes wait meanwhile. */
  backing: FileDisk | undefined;
  meta: DiskMeta | undefined;
  private appIo = 0;
  private hold: { promise: Promise<void>; release: () => void } | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The NBD export (device-export.ts). */
  private readonly export: DeviceExport;
  /** Detaching the disk under I/O (disk-detach.ts). */
  private readonly detacher: Detacher;
  /** Online resize (resize.ts). */
  readonly resizer: Resizer;

  constructor(private readonly opts: ResourceOptions) {
    this.name = opts.config.name;
    this.config = opts.config;
    this.host = opts.host;
    this.node = opts.node;
    this.log = opts.log.child({ resource: this.name });
    this.listener = new SharedListener(this.log);
    this.exportSocket = exportSocketPath(opts.runDir, this.name);
    this.peers = opts.config.hosts
      .filter((h) => h.name !== opts.host.name)
      .map(
        (h) =>
          new Peer(
            this,
            h.name,
            h.nodeId,
            h.address,
            this.log,
            h.disk !== undefined && h.disk !== 'none',
          ),
      );
    this.cluster = new Cluster(this);
    this.fencer = new Fencer(this);
    this.loss = new PeerLoss(this);
    this.export = new DeviceExport(this, (message) => commandError('ERR_LISTEN', message));
    this.detacher = new Detacher(this);
    this.resizer = new Resizer(this);
    this.freeze = new IoFreeze(
      this,
      () => this.opts.onChange(this),
      () => commandError('ERR_IO_NOT_SUSPENDED', `I/O of ${this.name} is not suspended`),
    );
    this.handlers = this.makeHandlers();
  }

  private makeHandlers(): HandlerRunner {
    return new HandlerRunner({
      commands: this.config.handlers,
      timeoutMs: this.config.options.handlerTimeoutMs,
      log: this.log,
    });
  }

  /**
   * Runs a handler of the handlers section with DRBD's environment (handlers.ts), about
   * `peer` when given. Resolves to undefined when the handler is not configured; never rejects.
   */
  runHandler(name: HandlerName, peer?: Peer): Promise<HandlerResult | undefined> {
    // adjust may have changed the handlers section or handler-timeout since the last call.
    this.handlers.update({
      commands: this.config.handlers,
      timeoutMs: this.config.options.handlerTimeoutMs,
    });
    return this.handlers.run(
      name,
      handlerContext(
        {
          name: this.name,
          config: this.config,
          host: this.host,
          disk: this.disk,
          peers: this.peers,
          configFile: this.configFile,
          backingDisk: this.backing ? this.diskPath : undefined,
        },
        peer,
      ),
    );
  }

  hasHandler(name: HandlerName): boolean {
    return this.config.handlers[name] !== undefined;
  }

  /** A notification handler: run in the background, its outcome only logged. */
  notify(name: HandlerName, peer?: Peer): void {
    void this.runHandler(name, peer);
  }

  /** The resource file this daemon runs from (DRBD_CONF of the handlers). */
  private get configFile(): string {
    return this.opts.configFile ?? this.config.source.file;
  }

  get fencing(): Fencing {
    return this.config.net.fencing as Fencing;
  }

  freezeForFencing(frozen: boolean, why?: string): void {
    if (this.freeze.fencingFreeze === frozen) return;
    this.freeze.fencingFreeze = frozen;
    if (frozen)
      this.log.warn({ why }, 'I/O frozen until fence-peer succeeds (resource-and-stonith)');
    this.changed();
  }

  peerFenced(peer: Peer, disk: 'Outdated' | 'Inconsistent'): void {
    peer.knownOutdated = true;
    if (!peer.established) peer.disk = disk;
    this.loss.newGenerationWithout(peer);
    this.changed();
  }

  /** This node has a disk in the resource file (it may be detached now). */
  get diskful(): boolean {
    return this.diskPath !== undefined;
  }

  /** A diskless node of a resource with more than two nodes: it only votes. */
  get tiebreaker(): boolean {
    return !this.diskful && this.config.hosts.length > 2;
  }

  /**
   * The peer that holds the other copy of the data: the one diskful peer (urbd replicates to
   * one), or in a two-node resource the only peer.
   */
  get dataPeer(): Peer | undefined {
    return this.peers.find((p) => p.diskful) ?? this.peers[0];
  }

  /** Runs admin requests strictly one after another: each sees the state the last left. */
  serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  get attached(): boolean {
    return this.meta !== undefined;
  }

  get metaPath(): string | undefined {
    return this.diskPath === undefined ? undefined : metaPathFor(this.name, this.host);
  }

  private get diskPath(): string | undefined {
    const d = this.host.disk;
    return d === undefined || d === 'none' ? undefined : d;
  }

  /** Connected to the data peer (a tiebreaker's link does not count). */
  get connected(): boolean {
    return this.dataPeer?.connection === 'Connected';
  }

  // ---- what the peers and the write path ask of the resource ----------------------------

  setDisk(d: DiskState): void {
    if (this.disk === d) return;
    this.disk = d;
    this.persistFlags();
    // Every peer hears of it through changed() (cluster.publish), not only the one whose
    // resync made the change: with three nodes the tiebreaker would keep the old disk state.
    this.changed();
  }

  takeAppIo(): boolean {
    const active = this.appIo > 0;
    this.appIo = 0;
    return active;
  }

  noteAppIo(): void {
    this.appIo++;
  }

  get ioHeld(): Promise<void> | undefined {
    return this.hold?.promise;
  }

  holdIo(hold: boolean): void {
    if (hold) {
      if (this.hold) return;
      let release!: () => void;
      const promise = new Promise<void>((r) => (release = r));
      this.hold = { promise, release };
      return;
    }
    const h = this.hold;
    this.hold = undefined;
    h?.release();
  }

  replicationLog(): TransferLog | undefined {
    for (const p of this.peers) {
      const tl = p.replicating;
      if (tl) return tl;
    }
    return undefined;
  }

  readPeer(): Peer | undefined {
    return this.peers.find((p) => p.canRead);
  }

  /** A session ended (peer-loss.ts). */
  lostPeer(peer: Peer, wasReplicating: boolean, peerWasUpToDate: boolean): void {
    this.resizer.peerLost(peer);
    this.loss.lostPeer(peer, wasReplicating, peerWasUpToDate);
  }

  clusterState(): ClusterSummary {
    return this.cluster.summary();
  }

  peerViewChanged(peer: Peer): void {
    this.cluster.viewChanged(peer);
    if (peer.established && peer.disk === 'UpToDate') this.fencer.peerUpToDate(peer);
    if (peer.established && this.loss.peerBack(peer)) this.changed();
  }

  outdateRequested(from: Peer, id: number, target: string): void {
    this.cluster.requested(from, id, target);
  }

  outdateAnswered(from: Peer, id: number, result: string): void {
    this.cluster.answered(from, id, result);
  }

  /** An outdate order reached this node: its data may be behind a Primary's from now on. */
  outdateSelf(why: string): void {
    if (this.disk !== 'UpToDate' && this.disk !== 'Consistent') return;
    this.disk = 'Outdated';
    this.persistFlags();
    this.log.warn({ why }, 'disk marked Outdated');
    this.changed();
  }

  // ---- connections ---------------------------------------------------------------------

  private peerNamed(name: string | undefined): Peer[] {
    if (this.peers.length === 0) {
      throw commandError('ERR_NO_PEER', `${this.name} has no peer in the resource file`);
    }
    if (name === undefined) return this.peers;
    const p = this.peers.find((x) => x.name === name);
    if (!p) throw commandError('ERR_NO_PEER', `${this.name} has no peer named ${name}`);
    return [p];
  }

  async connect(discardMyData: boolean, peer?: string): Promise<void> {
    if (discardMyData && this.role === 'Primary') {
      throw new AdminError(
        'SS_PRIMARY_NOP',
        `State change failed: a Primary cannot discard its data (urbdadm secondary ${this.name} first)`,
        11,
      );
    }
    // Without a peer name, as drbdadm's connect: every connection not configured yet; an
    // error only when there is none (with three nodes one link may be up while another is not).
    const named = this.peerNamed(peer);
    const todo = peer === undefined ? named.filter((p) => p.connection === 'StandAlone') : named;
    if (todo.length === 0 && named.length > 0) {
      const p = named[0]!;
      throw commandError(
        'ERR_NET_CONFIGURED',
        `${this.name}: already ${p.connection} to ${named.map((x) => x.name).join(' and ')} (disconnect first)`,
      );
    }
    for (const p of todo) {
      if (p.connection !== 'StandAlone') {
        throw commandError(
          'ERR_NET_CONFIGURED',
          `${this.name}: already ${p.connection} to ${p.name} (disconnect first)`,
        );
      }
      try {
        await p.connect(discardMyData);
      } catch (err) {
        throw commandError('ERR_CONNECT', (err as Error).message);
      }
    }
  }

  async disconnect(peer?: string): Promise<void> {
    const peers = this.peerNamed(peer);
    this.leaveGracefully(peers);
    for (const p of peers) await p.disconnect();
    this.changed();
  }

  /**
   * drbd.md §8.4 "last man standing" (with quorum or fencing on): a node that leaves on
   * purpose (`down`, `disconnect`) says so, and the peers stop counting its vote. A Secondary leaving a Primary that goes on
   * writing is Outdated from then on, and a Primary that disconnects outdates the peer it
   * leaves (its state message carries the order), so neither can be promoted with old data.
   */
  private leaveGracefully(peers: Peer[]): void {
    // Without quorum or fencing nobody counts votes or asks who is Outdated: a disconnect
    // stays what it is in DRBD 8.4 without fencing, and both sides keep their disk states.
    if (!quorumOn(this.config) && this.fencing === 'dont-care') return;
    const live = peers.filter((p) => p.established);
    if (live.length === 0) return;
    const primaryStays = live.some((p) => p.role === 'Primary');
    if (this.role === 'Secondary' && primaryStays) this.outdateSelf('left a Primary gracefully');
    const outdates = this.role === 'Primary' ? live.filter((p) => p.diskful) : [];
    this.cluster.farewell(outdates.map((p) => p.name));
    for (const p of live) p.sendState();
    this.cluster.farewell(undefined);
    for (const p of outdates) {
      p.knownOutdated = true;
      this.log.info({ peer: p.name }, 'disconnected as Primary: the peer is Outdated');
    }
  }

  /** `verify` (peer-verify.ts): with each named peer that has a disk. */
  verify(startSector?: number, stopSector?: number, peer?: string): void {
    for (const p of this.peerNamed(peer)) {
      if (!p.diskful) continue;
      try {
        startVerify(p, startSector, stopSector);
      } catch (err) {
        throw commandError('ERR_VERIFY', (err as Error).message);
      }
    }
  }

  pauseSync(paused: boolean, peer?: string): void {
    for (const p of this.peerNamed(peer)) {
      try {
        p.setUserPaused(paused);
      } catch (err) {
        throw commandError('ERR_PAUSE', (err as Error).message);
      }
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /** `up`: attach the disk (unless diskless) and start serving the export socket. */
  async up(): Promise<void> {
    if (this.diskPath !== undefined) await this.attach();
    await this.export.start();
    // drbdadm's up is attach + connect; a resource with no peer in the file stays alone.
    for (const p of this.peers) if (p.address !== undefined) await this.connect(false, p.name);
  }

  /** `down`: demote (refused while clients are attached, unless forced), stop serving, detach. */
  async down(force = false): Promise<void> {
    await this.secondary(force);
    this.leaveGracefully(this.peers);
    for (const p of this.peers) await p.disconnect('resource going down');
    await this.export.stop();
    if (this.attached) await this.detach();
  }

  /** Orderly stop of the daemon: clients are finished, not refused, and the disk detached. */
  async shutdown(): Promise<void> {
    this.cluster.shutdown();
    void this.handlers.shutdown();
    await this.export.stop();
    for (const p of this.peers) await p.disconnect('urbd stopping');
    if (this.role === 'Primary') this.demoteNow();
    if (this.attached) await this.closeDisk();
    this.changed();
  }

  async attach(): Promise<void> {
    if (this.attached)
      throw commandError('ERR_DISK_CONFIGURED', `${this.name} is already attached`);
    const diskPath = this.diskPath;
    if (diskPath === undefined) {
      throw commandError(
        'ERR_NO_DISK',
        `${this.name} has no disk on ${this.host.name} (disk none)`,
      );
    }
    const metaPath = metaPathFor(this.name, this.host);
    let backing: FileDisk;
    try {
      backing = await FileDisk.open(diskPath);
    } catch (err) {
      throw commandError(
        'ERR_OPEN_DISK',
        `cannot open disk ${diskPath}: ${(err as Error).message}`,
      );
    }
    let meta: DiskMeta;
    try {
      meta = DiskMeta.open(metaPath, {
        diskSize: backing.size,
        alUpdates: this.config.disk.alUpdates,
        log: this.log,
        resource: this.name,
        // The waiting writes need references that replicated changes hold until their
        // barrier ack: send the barriers now rather than on the epoch timer.
        onAlStarved: () => {
          for (const p of this.peers) p.replicating?.closeEpoch();
        },
      });
    } catch (err) {
      await backing.close();
      throw commandError('ERR_OPEN_MD', (err as Error).message);
    }
    this.backing = backing;
    this.meta = meta;
    // Frames queued before a commit leave before its sync holds the loop: a resync step that
    // sends and then commits would otherwise hold its message back for the fsync.
    meta.store.beforeCommit = () => {
      for (const p of this.peers) p.session?.link.flush();
    };
    const sb = meta.superblock();
    const st = diskStateOnAttach(sb.flags, this.fencing);
    this.disk = st.disk;
    for (const p of this.peers) {
      if (!p.diskful) continue;
      p.disk = st.peerDisk;
      p.knownOutdated = st.peerDisk === 'Outdated';
    }
    // Attaching is a state change too (drbd.md §2.5): a primary-indicator left by a crash
    // as Primary is cleared now that this node is Secondary, so a later crash here does
    // not count as a crashed Primary again.
    this.persistFlags();
    this.reviveDiskTarget();
    this.log.info(
      {
        disk: diskPath,
        meta: metaPath,
        size: sb.sizeBytes,
        diskState: this.disk,
        outOfSync: meta.outOfSyncBytes(),
        ...meta.report,
      },
      'attached',
    );
    await this.renegotiate('disk attached');
    this.changed();
  }

  /**
   * The local disk came or went while peers are connected or connecting: their sessions
   * were built on the old disk (receiver, bitmap, sizes, UUIDs), so each is dropped and
   * connected again, and the new handshake decides with the disk as it is now.
   */
  private async renegotiate(why: string): Promise<void> {
    for (const p of this.peers) {
      if (p.connection === 'StandAlone') continue;
      await p.disconnect(why);
      await p.connect(false);
    }
  }

  async detach(): Promise<void> {
    const refusal = this.detachRefusal();
    if (refusal) throw refused(refusal);
    await this.detacher.detach(false, refused);
    this.log.info('detached');
  }

  detachRefusal(): Refusal | null {
    return decideDetach({
      role: this.role,
      disk: this.disk,
      connected: this.connected,
      peerDisk: this.dataPeer?.disk ?? 'DUnknown',
    });
  }

  // ---- what a detach asks of the resource (disk-detach.ts) --------------------------------

  get net(): NetOptions {
    return this.config.net;
  }

  get onIoError(): OnIoError {
    return this.config.disk.onIoError;
  }

  get ioSwitch(): DeviceSwitch {
    return this.export.ioSwitch;
  }

  get diskTarget(): ResourceTarget | undefined {
    return this.export.target;
  }

  /** The write path over the attached disk, new (at attach, or after a refused detach). */
  reviveDiskTarget(): void {
    const { backing, meta } = this;
    if (!backing || !meta) return;
    this.export.target = new ResourceTarget(this, backing, meta, () => this.disk === 'UpToDate');
  }

  diskFailed(): void {
    if (this.disk === 'Failed') return;
    try {
      this.setDisk('Failed');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'writing the metadata flags failed');
    }
  }

  markAllOutOfSync(): void {
    const meta = this.meta;
    if (!meta) return;
    meta.bitmap.setAll();
    try {
      meta.persistBitmap();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'writing the bitmap at detach failed');
    }
  }

  async closeDisk(): Promise<void> {
    const backing = this.backing;
    const meta = this.meta;
    this.backing = undefined;
    this.meta = undefined;
    this.export.target = undefined;
    this.disk = 'Diskless';
    for (const p of this.peers) p.disk = 'DUnknown';
    if (backing) {
      await backing
        .flush()
        .catch((err: Error) => this.log.error({ err: err.message }, 'flush at detach failed'));
      await backing.close();
    }
    meta?.close();
  }

  // ---- roles -----------------------------------------------------------------------------

  /** Set while `primary` waits for the resync to let application writes start. */
  private promoting = false;

  get localWrites(): boolean {
    return this.role === 'Primary' || this.promoting;
  }

  async primary(force: boolean): Promise<void> {
    if (this.role !== 'Primary') {
      this.promoting = true;
      try {
        await Promise.all(this.peers.map((p) => p.resyncReadyForLocalWrites()));
        await promote(this, force);
      } finally {
        this.promoting = false;
      }
      return;
    }
    await promote(this, force);
  }

  async secondary(force: boolean): Promise<void> {
    if (this.role === 'Secondary') return;
    const openCount = this.export.clientCount();
    const refusal = decideDemote({ role: this.role, openCount, force });
    if (refusal) throw refused(refusal);
    if (openCount > 0) {
      const n = this.export.dropClients('resource demoted with --force');
      this.log.warn({ clients: n }, 'secondary --force: NBD clients cut off');
    }
    this.demoteNow();
    this.log.info('demoted to Secondary');
    for (const p of this.peers) p.sendState();
    this.changed();
  }

  /** The demotion itself: the primary bit leaves the current UUID, the bitmap reaches disk. */
  private demoteNow(): void {
    this.role = 'Secondary';
    const meta = this.meta;
    if (!meta) return;
    const sb = meta.superblock();
    meta.store.setUuids({ ...sb.uuids, current: withPrimaryBit(sb.uuids.current, false) });
    meta.persistBitmap();
    this.persistFlags();
  }

  outdate(): void {
    const refusal = decideOutdate({ role: this.role, disk: this.disk });
    if (refusal) throw refused(refusal);
    this.requireMeta();
    this.disk = 'Outdated';
    this.persistFlags();
    this.log.info('disk marked Outdated');
    this.changed();
  }

  /** urbdadm invalidate / invalidate-remote (invalidate.ts). */
  invalidate(remote: boolean): Promise<void> {
    return remote ? invalidateRemote(this) : invalidate(this);
  }

  /** urbdadm resize (resize.ts). */
  resize(args: ResizeArgs): Promise<ResizeResult> {
    return this.resizer.resize(args);
  }

  newCurrentUuid(clearBitmap: boolean): Superblock {
    const meta = this.requireMeta();
    const sb = meta.superblock();
    // drbd.md §3.5 "skip initial sync": two blank disks, connected, agree that nothing
    // differs; the peer adopts this generation and both become UpToDate.
    const skipInitialSync =
      clearBitmap &&
      this.disk === 'Inconsistent' &&
      this.peers.some((p) => p.replication === 'Established' && p.disk === 'Inconsistent');
    meta.store.setUuids(newCurrentCommand(sb.uuids, this.role === 'Primary', clearBitmap));
    if (clearBitmap) {
      meta.bitmap.clearAll();
      meta.persistBitmap();
    }
    if (skipInitialSync) {
      this.disk = 'UpToDate';
      this.persistFlags();
    }
    this.log.info({ clearBitmap, skipInitialSync }, 'new current UUID');
    for (const p of this.peers) p.uuidsChanged(skipInitialSync);
    this.changed();
    return meta.superblock();
  }

  superblock(): Superblock {
    return this.requireMeta().superblock();
  }

  // ---- the export ------------------------------------------------------------------------

  /** Why a client cannot open the device now, or undefined when it can. */
  ioRefusal(): string | undefined {
    if (this.tiebreaker) {
      return `${this.opts.node} is a diskless tiebreaker of ${this.name}: it holds no data and serves none`;
    }
    if (this.role !== 'Primary') {
      return `resource ${this.name} is Secondary on ${this.opts.node}; only the Primary serves its device (urbdadm primary ${this.name})`;
    }
    if (this.disk !== 'UpToDate' && !this.readPeer()) {
      return `resource ${this.name} has no UpToDate data on ${this.opts.node} (disk ${this.disk})`;
    }
    return undefined;
  }

  /** ioRefusal as the error a client gets: not writable here, or no data to serve. */
  ioDenied(): TargetError | undefined {
    const f = this.freeze;
    if (f.noQuorum && (this.config.options.onNoQuorum === 'io-error' || f.quorumResumed)) {
      return new TargetError('EIO', `${this.name}: ${this.cluster.verdict.reason}`);
    }
    const refusal = this.ioRefusal();
    if (refusal === undefined) return undefined;
    return new TargetError(this.role === 'Primary' ? 'EIO' : 'EPERM', refusal);
  }

  private metaFailures = { count: 0, lastLog: 0 };

  /**
   * A write failed because its AL transaction could not be written (full or failing
   * metadata disk). Logged at once, then at most every 10 s with a count, so a client
   * retrying in a loop cannot flood the log.
   */
  metadataFailed(err: Error): void {
    const f = this.metaFailures;
    f.count++;
    const now = Date.now();
    if (now - f.lastLog < 10_000) return;
    this.log.error(
      { err: err.message, failedWrites: f.count },
      'metadata write failed: writes to inactive extents get EIO until the metadata disk is fixed',
    );
    f.lastLog = now;
    f.count = 0;
  }

  clientCount(): number {
    return this.export.clientCount();
  }

  // ---- state bookkeeping -----------------------------------------------------------------

  private requireMeta(): DiskMeta {
    if (!this.meta) throw commandError('ERR_NO_DISK', `${this.name} has no disk attached`);
    return this.meta;
  }

  /** drbd.md §2.5: the persistent flags follow the state after every change. */
  persistFlags(): void {
    const meta = this.meta;
    if (!meta) return;
    const peer = this.dataPeer;
    const wasCrashed = meta.superblock().flags.crashedPrimary;
    const crashedPrimary = keepCrashedPrimary(wasCrashed, this.disk, this.peers);
    meta.store.setFlags({
      ...persistentFlags({
        role: this.role,
        disk: this.disk,
        connected: this.connected,
        peerDisk: peer?.disk ?? 'DUnknown',
        peerRole: peer?.role ?? 'Unknown',
      }),
      crashedPrimary,
    });
    // The peer clears its own flag on the same facts; our copy of it goes too, or a later
    // re-decision on the UUIDs it sent at the handshake would act on a crash dealt with.
    for (const p of this.peers) {
      if (crashDealtWith({ disk: this.disk, peerDisk: p.disk, replication: p.replication })) {
        p.forgetPeerCrash();
      }
    }
    if (wasCrashed && !crashedPrimary) {
      this.log.info(
        'crashed-primary cleared: connected with both disks UpToDate, nothing left to resync',
      );
    }
  }

  /**
   * Every change of state ends here: the persistent flags follow it (show-gi's connected
   * flag, crashed-primary clearing at the end of a resync), then it is published. A failing
   * metadata disk is logged, not thrown: the callers are peer events with no one to tell,
   * and the flags are written again at the next change.
   */
  changed(): void {
    const q = this.cluster.evaluate();
    if (q.lostNow && this.role === 'Primary') this.quorumLost();
    this.freeze.checkSuspension();
    // A metadata disk that already failed was reported once; every state change (each peer
    // state message among them) trying it again would only repeat that in the log.
    if (this.meta?.failure == null) {
      try {
        this.persistFlags();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'writing the metadata flags failed');
      }
    }
    this.cluster.publish();
    this.opts.onChange(this);
    this.detacher.stateChanged();
  }

  /** drbd.md §8.4: a Primary lost quorum; the quorum-lost handler is told. */
  private quorumLost(): void {
    this.log.warn(
      { reason: this.cluster.verdict.reason, onNoQuorum: this.config.options.onNoQuorum },
      'Primary without quorum: I/O is ' +
        (this.config.options.onNoQuorum === 'io-error' ? 'failed' : 'suspended'),
    );
    this.notify('quorum-lost');
  }

  /** The backing disk failed a request (drbd.md §1.3 on-io-error, disk-detach.ts). */
  localIoFailed(err: Error): boolean {
    return this.detacher.ioFailed(err, refused);
  }

  // ---- suspended I/O (io-freeze.ts) -------------------------------------------------------

  /**
   * While application I/O is held, a promise that resolves when requests should be tried
   * again.
   */
  ioSuspended(): Promise<void> | undefined {
    return this.freeze.ioSuspended();
  }

  /** `resume-io` (io-freeze.ts). */
  resumeIo(): void {
    this.freeze.resumeIo();
  }

  status(): ResourceStatus {
    return buildStatus(this, {
      diskPath: this.diskPath,
      tcpListeners: this.export.tcpListeners,
      listening: this.export.listening,
    });
  }
}
