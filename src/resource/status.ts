import type { AlStats } from '../meta/activity-log.js';
import type { SyncProgress } from './peer.js';
import type { VerifyProgress } from './peer-verify.js';
import type { ResyncTraffic } from './peer-csums.js';
import type { ConnectionState, DiskState, PeerRole, ReplicationState, Role } from './states.js';

/**
 * A resource as `status` shows it: plain data, the same for the daemon's reply, the JSON
 * users script against and the text rendering. Sizes are bytes.
 */
export interface ResourceStatus {
  name: string;
  node: string;
  nodeId: number | undefined;
  role: Role;
  suspended: boolean;
  /** Why I/O is held, when suspended. */
  suspendedReason?: string | undefined;
  /** drbd.md §8.4. `quorum` is true when quorum is off. */
  quorum: { enabled: boolean; quorum: boolean; reason: string };
  /** Whether `primary` would be accepted now (without --force), and if not why. */
  mayPromote: Promotable;
  device: DeviceStatus;
  peers: PeerStatus[];
}

/** Whether a node may be promoted now: `may` is null when unknown (peer not connected). */
export interface Promotable {
  may: boolean | null;
  reason: string;
}

export interface DeviceStatus {
  volume: number;
  minor: number;
  /** The NBD device node the supervisor attaches (from `device` in the resource file). */
  device: string;
  diskState: DiskState;
  size: number;
  outOfSync: number;
  alActive: number;
  alExtents: number;
  alStats: AlStats | undefined;
  crashedPrimary: boolean;
  statistics: DeviceStatistics;
  disk: string | undefined;
  metaDisk: string | undefined;
  export: {
    socket: string;
    tcp: string[];
    /** The export's sockets are open (a Secondary listens too, to say why it refuses). */
    listening: boolean;
    /** Clients get the device now: listening and no refusal (a Primary with usable data). */
    serving: boolean;
    clients: number;
    /** Why clients are refused right now, if they are. */
    refusal: string | undefined;
  };
}

export interface PeerStatus {
  name: string;
  nodeId: number | undefined;
  connection: ConnectionState;
  role: PeerRole;
  peerDisk: DiskState;
  replication: ReplicationState;
  /** Bytes this node knows the peer lacks. */
  outOfSync: number;
  statistics: PeerStatistics;
  /** While a resync runs: how far it is. */
  sync: SyncProgress | undefined;
  /** The verify running with this peer, else the last one since up (peer-verify.ts). */
  verify: VerifyProgress | undefined;
  /** Resync bytes moved and skipped by checksums since up (peer-csums.ts). */
  resyncTraffic: ResyncTraffic;
  /** Why the connection last failed or was refused. */
  lastError: string | undefined;
  /** The resync is paused (pause-sync here or on the peer). */
  paused: boolean;
  /**
   * Why, as DRBD's `resync-suspended:` says it: `user` for a pause-sync on this node, `peer`
   * for one on the peer. Each node holds its own pause; resume-sync lifts only its own.
   */
  resyncSuspended: Array<'user' | 'peer'>;
  /** The peer has a disk (in a three-node resource a diskless peer is the tiebreaker). */
  diskful: boolean;
  /** The peer left gracefully or was outdated: it does not vote. */
  knownOutdated: boolean;
  /** The peer's own quorum, as its last state said (null: not connected). */
  quorum: boolean | null;
  /** The peer's own promotion verdict, as its last state said. */
  mayPromote: Promotable;
}

/** drbdsetup status --statistics' device counters, since the disk was attached; bytes. */
export interface DeviceStatistics {
  read: number;
  written: number;
  /** Activity-log transactions. */
  alWrites: number;
  /** Bitmap transactions. */
  bmWrites: number;
  /** Requests at the backing disk, not yet completed. */
  lowerPending: number;
}

/** drbdsetup status --statistics' peer-device counters, since the resource came up. */
export interface PeerStatistics {
  /** Data bytes sent to / received from the peer: writes, resync, remote reads. */
  sent: number;
  received: number;
  /** Changes sent to the peer and not yet confirmed by its barrier ack. */
  pending: number;
  /** Changes received from the peer and not yet acknowledged. */
  unacked: number;
}
