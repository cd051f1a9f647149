import type { AlStats } from '../meta/activity-log.js';
import type { SyncProgress } from './peer.js';
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
  device: DeviceStatus;
  peers: PeerStatus[];
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
  /** While a resync runs: how far it is. */
  sync: SyncProgress | undefined;
  /** Why the connection last failed or was refused. */
  lastError: string | undefined;
  /** The resync is paused (pause-sync here or on the peer). */
  paused: boolean;
}
