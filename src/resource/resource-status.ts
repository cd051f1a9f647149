/** Builds a resource's `status` (status.ts) from its state, its disk, its export and peers. */
import type { HostConfig, ResourceConfig } from '../config/index.js';
import { type ListenAddress, formatAddress } from '../nbd/index.js';
import type { FileDisk } from '../storage/file-disk.js';
import type { DiskMeta } from './disk-meta.js';
import type { Cluster } from './cluster.js';
import { quorumOn } from './cluster.js';
import type { IoFreeze } from './io-freeze.js';
import type { Peer } from './peer.js';
import { verifyProgress, verifyState } from './peer-verify.js';
import { resyncTraffic } from './peer-csums.js';
import type { DiskState, Role } from './states.js';
import type { DeviceStatus, PeerStatus, ResourceStatus } from './status.js';

/** What a status is built from. */
export interface StatusSource {
  readonly name: string;
  /** The name this daemon runs as. */
  readonly node: string;
  readonly host: HostConfig;
  readonly config: ResourceConfig;
  readonly role: Role;
  readonly disk: DiskState;
  readonly meta: DiskMeta | undefined;
  readonly backing: FileDisk | undefined;
  readonly metaPath: string | undefined;
  readonly exportSocket: string;
  readonly peers: readonly Peer[];
  readonly cluster: Cluster;
  readonly freeze: IoFreeze;
  ioRefusal(): string | undefined;
  clientCount(): number;
  readPeer(): Peer | undefined;
}

/** The export and disk facts a resource keeps to itself. */
export interface StatusExtras {
  readonly diskPath: string | undefined;
  readonly tcpListeners: readonly ListenAddress[];
  /** The NBD server listens. */
  readonly listening: boolean;
}

export function buildStatus(r: StatusSource, x: StatusExtras): ResourceStatus {
  const meta = r.meta;
  const sb = meta?.superblock();
  const outOfSync = meta ? meta.outOfSyncBytes() : 0;
  const refusal = r.ioRefusal();
  const device: DeviceStatus = {
    volume: 0,
    minor: r.host.device.minor,
    device: r.host.device.path,
    diskState: r.disk,
    size: sb?.sizeBytes ?? r.readPeer()?.peerDeviceBytes ?? 0,
    outOfSync,
    alActive: meta ? meta.al.activeExtents().length : 0,
    alExtents: r.config.disk.alExtents,
    alStats: meta ? { ...meta.al.stats } : undefined,
    crashedPrimary: sb?.flags.crashedPrimary ?? false,
    statistics: {
      read: r.backing?.io.readBytes ?? 0,
      written: r.backing?.io.writtenBytes ?? 0,
      alWrites: meta?.al.stats.transactions ?? 0,
      bmWrites: meta?.bmWrites ?? 0,
      lowerPending: r.backing?.pending ?? 0,
    },
    disk: x.diskPath,
    metaDisk: r.metaPath,
    export: {
      socket: r.exportSocket,
      tcp: x.tcpListeners.map(formatAddress),
      listening: x.listening,
      serving: x.listening && refusal === undefined,
      clients: r.clientCount(),
      refusal,
    },
  };
  const peers: PeerStatus[] = r.peers.map((p) => ({
    name: p.name,
    nodeId: p.nodeId,
    connection: p.connection,
    role: p.role,
    peerDisk: p.disk,
    replication: verifyState(p) ?? p.replication,
    outOfSync,
    statistics: p.statistics(),
    sync: p.progress(),
    verify: verifyProgress(p),
    resyncTraffic: resyncTraffic(p),
    lastError: p.lastError,
    paused: p.userPaused || p.peerPaused,
    resyncSuspended: [
      ...(p.userPaused ? (['user'] as const) : []),
      ...(p.peerPaused ? (['peer'] as const) : []),
    ],
    diskful: p.diskful,
    knownOutdated: p.knownOutdated,
    quorum: p.view && p.established ? p.view.quorum : null,
    mayPromote:
      p.view && p.established
        ? { may: p.view.promotable === '', reason: p.view.promotable }
        : { may: null, reason: 'not connected' },
  }));
  const promo = r.cluster.promotion(false);
  return {
    name: r.name,
    node: r.node,
    nodeId: r.host.nodeId,
    role: r.role,
    suspended: r.freeze.suspended,
    suspendedReason: r.freeze.suspended ? r.freeze.freezeReason() : undefined,
    quorum: {
      enabled: quorumOn(r.config),
      quorum: r.cluster.verdict.quorum,
      reason: r.cluster.verdict.reason,
    },
    mayPromote: { may: promo.may, reason: promo.reason },
    device,
    peers,
  };
}
