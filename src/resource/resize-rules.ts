/**
 * The rules of online resize (drbd.md §1.2 `resize`, §4.6), pure so that every combination
 * is tested: where a resize may run, and what size it grows to.
 *
 * Both disks grow together while connected: a node that grew alone would either serve a size
 * its peer cannot mirror or, seen from the peer at the next handshake, look like a device to
 * shrink. One node decides when the new area may be written: the Primary, so a Secondary
 * hands the resize to it; with two Primaries neither can, and the resize is refused.
 */
import type { DiskState, PeerRole, Role } from './states.js';

/** A data peer as the resize sees it. */
export interface ResizePeerView {
  name: string;
  /** The handshake is done. */
  established: boolean;
  /** The connection state, for the refusal ("Connecting", "StandAlone"). */
  connection: string;
  /** Established, or the resync or verify running (SyncSource, VerifyT, …). */
  replication: string;
  disk: DiskState;
  role: PeerRole;
}

export interface ResizeSetupInput {
  node: string;
  role: Role;
  disk: DiskState;
  /** Every peer with a disk (a diskless tiebreaker holds no data to grow). */
  peers: ResizePeerView[];
}

export interface ResizeRefusal {
  code: string;
  message: string;
}

export type ResizeSetup = { run: 'here' } | { run: 'forward'; to: string } | ResizeRefusal;

export function isRefusal(x: object): x is ResizeRefusal {
  return 'code' in x;
}

/** Where `urbdadm resize` runs from this node's view, or why it cannot. */
export function resizeSetup(i: ResizeSetupInput): ResizeSetup {
  if (i.disk === 'Diskless') {
    return {
      code: 'ERR_NO_DISK',
      message: `${i.node} has no disk attached: resize grows the attached disks (attach first)`,
    };
  }
  for (const p of i.peers) {
    if (!p.established) {
      return {
        code: 'ERR_RESIZE_DISCONNECTED',
        message: `${p.name} is not connected (${p.connection}): both disks grow together, so connect first`,
      };
    }
  }
  for (const p of i.peers) {
    if (p.replication !== 'Established') {
      return {
        code: 'ERR_RESIZE_RESYNC',
        message: `${p.replication} with ${p.name} is running: resize once it has finished`,
      };
    }
  }
  if (i.disk !== 'UpToDate') {
    return {
      code: 'ERR_RESIZE_DISK',
      message: `the disk on ${i.node} is ${i.disk}: resize needs UpToDate data on every node`,
    };
  }
  for (const p of i.peers) {
    if (p.disk !== 'UpToDate') {
      return {
        code: 'ERR_RESIZE_DISK',
        message: `the disk on ${p.name} is ${p.disk}: resize needs UpToDate data on every node`,
      };
    }
  }
  const primaries = [
    ...(i.role === 'Primary' ? [i.node] : []),
    ...i.peers.filter((p) => p.role === 'Primary').map((p) => p.name),
  ];
  if (primaries.length > 1) {
    return {
      code: 'ERR_RESIZE_PRIMARIES',
      message: `${primaries.join(' and ')} are both Primary: resize needs at most one, which decides when the new area may be written`,
    };
  }
  if (primaries.length === 1 && primaries[0] !== i.node)
    return { run: 'forward', to: primaries[0]! };
  return { run: 'here' };
}

export interface ResizeTargetInput {
  /** The agreed size now. */
  deviceBytes: number;
  /** What each node's backing disk offers now, this node first. */
  backing: Array<{ node: string; bytes: number }>;
  /** `--size`, or `disk { size }` from the configuration. */
  requested?: { bytes: number; by: string };
}

export type ResizeTarget = { grow: number } | { unchanged: string } | ResizeRefusal;

/**
 * The new size: what was asked, or else as much as every backing disk offers. Never smaller
 * than now: what lies past a new end would be cut off under the filesystem without a word.
 */
export function resizeTarget(i: ResizeTargetInput): ResizeTarget {
  const smallest = i.backing.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  const disks = i.backing.map((b) => `${b.bytes} on ${b.node}`).join(', ');
  let target: number;
  if (i.requested) {
    const { bytes, by } = i.requested;
    if (bytes > smallest.bytes) {
      return {
        code: 'ERR_DISK_TOO_SMALL',
        message: `${by} asks for ${bytes} bytes but the backing disk on ${smallest.node} has only ${smallest.bytes}`,
      };
    }
    target = bytes;
  } else {
    target = smallest.bytes;
  }
  if (target < i.deviceBytes) {
    const why = i.requested
      ? `${i.requested.by} asks for ${target}`
      : `the smallest backing disk (${smallest.node}) has ${target}`;
    return {
      code: 'ERR_RESIZE_SHRINK',
      message: `refusing to shrink a device that holds data: it is ${i.deviceBytes} bytes and ${why}`,
    };
  }
  if (target === i.deviceBytes) {
    return {
      unchanged: i.requested
        ? `the device already is ${target} bytes (${i.requested.by})`
        : `the device already is ${target} bytes, all the backing disks offer (${disks}); grow them first`,
    };
  }
  return { grow: target };
}

/**
 * Whether a peer asked to grow to `bytes` can: never a shrink, never past its own backing
 * disk. Undefined when it can (growing to the present size is nothing to do).
 */
export function growRefusal(
  node: string,
  deviceBytes: number,
  backingBytes: number,
  bytes: number,
): ResizeRefusal | undefined {
  if (bytes < deviceBytes) {
    return {
      code: 'ERR_RESIZE_SHRINK',
      message: `refusing to shrink the device on ${node} from ${deviceBytes} to ${bytes} bytes`,
    };
  }
  if (bytes > backingBytes) {
    return {
      code: 'ERR_DISK_TOO_SMALL',
      message: `the backing disk on ${node} has only ${backingBytes} bytes, ${bytes} asked`,
    };
  }
  return undefined;
}
