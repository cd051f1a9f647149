/**
 * The state words of a resource and the pure rules over them (drbd.md §2). Everything here
 * is a function of its arguments, so each rule is tested exhaustively on its own; the
 * Resource class only applies what these functions decide.
 */

export type Role = 'Primary' | 'Secondary';
export type PeerRole = Role | 'Unknown';

export const DISK_STATES = [
  'Diskless',
  'Attaching',
  'Failed',
  'Negotiating',
  'Inconsistent',
  'Outdated',
  'DUnknown',
  'Consistent',
  'UpToDate',
] as const;
export type DiskState = (typeof DISK_STATES)[number];

export const CONNECTION_STATES = [
  'StandAlone',
  'Disconnecting',
  'Unconnected',
  'Timeout',
  'BrokenPipe',
  'NetworkFailure',
  'ProtocolError',
  'TearDown',
  'Connecting',
  'Connected',
] as const;
export type ConnectionState = (typeof CONNECTION_STATES)[number];

export const REPLICATION_STATES = [
  'Off',
  'Established',
  'StartingSyncS',
  'StartingSyncT',
  'WFBitMapS',
  'WFBitMapT',
  'WFSyncUUID',
  'SyncSource',
  'SyncTarget',
  'PausedSyncS',
  'PausedSyncT',
  // Shown in status only, while a verify runs (peer-verify.ts); the peer stays Established.
  'VerifyS',
  'VerifyT',
] as const;
export type ReplicationState = (typeof REPLICATION_STATES)[number];

export type Fencing = 'dont-care' | 'resource-only' | 'resource-and-stonith';

/** Disk states compare by this order, as DRBD's do (Outdated < Consistent < UpToDate). */
export function diskRank(d: DiskState): number {
  return DISK_STATES.indexOf(d);
}

/** The persistent flags that decide the disk state at attach (a subset of the superblock's). */
export interface AttachFlags {
  consistent: boolean;
  wasUpToDate: boolean;
  peerOutdated: boolean;
}

/**
 * The disk state a disk comes up in, from what its metadata says (drbd.md §2.5): without a
 * peer to ask, Consistent data is only trusted as UpToDate when the peer is known to be
 * behind or when fencing is off, because otherwise the peer may hold newer writes.
 */
export function diskStateOnAttach(
  flags: AttachFlags,
  fencing: Fencing,
): { disk: DiskState; peerDisk: DiskState } {
  const peerDisk: DiskState = flags.peerOutdated ? 'Outdated' : 'DUnknown';
  if (!flags.consistent) return { disk: 'Inconsistent', peerDisk };
  if (!flags.wasUpToDate) return { disk: 'Outdated', peerDisk };
  if (flags.peerOutdated || fencing === 'dont-care') return { disk: 'UpToDate', peerDisk };
  return { disk: 'Consistent', peerDisk };
}

/** A refused state change: drbdsetup's SS_* code and the one line the admin reads. */
export interface Refusal {
  code: string;
  message: string;
}

export interface PromoteInput {
  role: Role;
  disk: DiskState;
  connected: boolean;
  peerRole: PeerRole;
  peerDisk: DiskState;
  allowTwoPrimaries: boolean;
  fencing: Fencing;
  force: boolean;
}

/**
 * Whether this node may become Primary (drbd.md §2.6 rules 1, 3-5 and §2.9). `forced` means
 * the promotion only happens because of --force: the data is declared UpToDate and a new
 * data generation starts.
 */
export function decidePromote(s: PromoteInput): Refusal | { forced: boolean } {
  if (s.role === 'Primary') return { forced: false };
  if (s.connected && s.peerRole === 'Primary' && !s.allowTwoPrimaries) {
    return {
      code: 'SS_TWO_PRIMARIES',
      message: 'the peer is Primary and allow-two-primaries is not set',
    };
  }
  if (diskRank(s.disk) < diskRank('Inconsistent')) {
    if (s.connected && s.peerDisk === 'UpToDate') return { forced: false };
    return {
      code: 'SS_NO_UP_TO_DATE_DISK',
      message: `no local disk (${s.disk}) and no UpToDate peer to read from`,
    };
  }
  if (s.disk === 'UpToDate') {
    // A disconnected Primary with fencing on must know its peer cannot also write.
    if (!s.connected && s.fencing !== 'dont-care' && diskRank(s.peerDisk) > diskRank('Outdated')) {
      if (s.force) return { forced: false };
      return {
        code: 'SS_PRIMARY_NOP',
        message: 'refusing to be Primary while the peer is not known to be Outdated (fencing)',
      };
    }
    return { forced: false };
  }
  if (s.connected && s.peerDisk === 'UpToDate') return { forced: false };
  if (s.force) return { forced: true };
  return {
    code: 'SS_NO_UP_TO_DATE_DISK',
    message: `need access to UpToDate data: the local disk is ${s.disk} (use --force to promote it anyway and start a new data generation)`,
  };
}

/** Whether this node may become Secondary (drbd.md §2.6 rule 2). */
export function decideDemote(s: { role: Role; openCount: number; force: boolean }): Refusal | null {
  if (s.role === 'Secondary' || s.force || s.openCount === 0) return null;
  return {
    code: 'SS_DEVICE_IN_USE',
    message: `the device is in use by ${s.openCount} NBD client${s.openCount === 1 ? '' : 's'} (disconnect ${s.openCount === 1 ? 'it' : 'them'}, or use --force to cut them off)`,
  };
}

/**
 * Whether the local data may be marked Outdated (`urbdadm outdate`): only consistent data can
 * be (Inconsistent is already worse), never on a Primary (it would be left without UpToDate
 * data). A connected Secondary may be outdated too, as DRBD 9's: a fence-peer handler
 * reaches it by another path while it still looks connected; the peers learn it from its
 * state, and the next handshake brings it back to UpToDate.
 */
export function decideOutdate(s: { role: Role; disk: DiskState }): Refusal | null {
  if (s.role === 'Primary') {
    return {
      code: 'SS_NO_UP_TO_DATE_DISK',
      message: 'refusing to outdate a Primary: it would be left without UpToDate data',
    };
  }
  if (diskRank(s.disk) < diskRank('Outdated')) {
    return {
      code: 'SS_LOWER_THAN_OUTDATED',
      message: `the disk is ${s.disk}, already worse than Outdated`,
    };
  }
  return null;
}

/** Whether the disk may be detached: a Primary needs data from somewhere. */
export function decideDetach(s: {
  role: Role;
  disk: DiskState;
  connected: boolean;
  peerDisk: DiskState;
}): Refusal | null {
  if (s.disk === 'Diskless') {
    return { code: 'SS_IS_DISKLESS', message: 'the device has no disk attached' };
  }
  if (s.role === 'Primary' && !(s.connected && s.peerDisk === 'UpToDate')) {
    return {
      code: 'SS_NO_UP_TO_DATE_DISK',
      message: 'refusing to detach a Primary that has no UpToDate peer (demote it first)',
    };
  }
  return null;
}

/**
 * Whether a crashed Primary's possibly-unreplicated blocks have been dealt with on one link
 * (drbd.md §4.5 step 7): the link is Established (no bitmap exchange or resync pending) and
 * both disks are UpToDate. A resync in either direction ends there, and a handshake that
 * found nothing to sync between two good disks starts there; either way the two copies
 * agree, so no crashed tail is left to push or roll back. DRBD 9 clears its flag on these
 * same conditions (both disks reaching UpToDate; older versions: the link reaching
 * Established). Requiring both keeps the flag through a resync that is still running or
 * ended with failed blocks, and on a link to a diskless, Outdated or Inconsistent peer,
 * where nothing was compared.
 */
export function crashDealtWith(link: {
  disk: DiskState;
  peerDisk: DiskState;
  replication: ReplicationState;
}): boolean {
  return (
    link.replication === 'Established' && link.disk === 'UpToDate' && link.peerDisk === 'UpToDate'
  );
}

/**
 * The crashed-primary flag after a state change. Unlike the flags of persistentFlags it is
 * not a function of the state: apply-al sets it after a crash as Primary, and it stays,
 * across restarts and clean stops, until some link has dealt with the crash.
 */
export function keepCrashedPrimary(
  was: boolean,
  disk: DiskState,
  peers: ReadonlyArray<{ disk: DiskState; replication: ReplicationState }>,
): boolean {
  return (
    was &&
    !peers.some((p) => crashDealtWith({ disk, peerDisk: p.disk, replication: p.replication }))
  );
}

/** The persistent flags that follow from a state, rewritten after every change (§2.5). */
export function persistentFlags(s: {
  role: Role;
  disk: DiskState;
  connected: boolean;
  peerDisk: DiskState;
  peerRole: PeerRole;
}): {
  consistent: boolean;
  wasUpToDate: boolean;
  primaryIndicator: boolean;
  connectedIndicator: boolean;
  peerOutdated: boolean;
} {
  return {
    consistent: diskRank(s.disk) > diskRank('Inconsistent'),
    wasUpToDate: diskRank(s.disk) > diskRank('Outdated'),
    primaryIndicator:
      s.role === 'Primary' || (s.peerRole === 'Primary' && s.peerDisk === 'Diskless'),
    connectedIndicator: s.connected,
    peerOutdated: s.peerDisk === 'Inconsistent' || s.peerDisk === 'Outdated',
  };
}

/** What the invalidate verbs look at: this node, and its link to the data peer. */
export interface InvalidateInput {
  role: Role;
  disk: DiskState;
  /** The replication state with the data peer ('Off' when not connected). */
  replication: ReplicationState;
  /** Linked but the handshake has not decided yet. */
  handshaking: boolean;
  peerDisk: DiskState;
  peerRole: PeerRole;
}

const SYNCING: ReadonlySet<ReplicationState> = new Set<ReplicationState>([
  'StartingSyncS',
  'StartingSyncT',
  'WFBitMapS',
  'WFBitMapT',
  'WFSyncUUID',
  'SyncSource',
  'SyncTarget',
  'PausedSyncS',
  'PausedSyncT',
]);

function resyncRunning(s: InvalidateInput): Refusal | null {
  if (s.handshaking) {
    // drbd.md §2.6: no disk changes while the handshake is in flight; it decides from the
    // state already sent.
    return {
      code: 'SS_IN_TRANSIENT_STATE',
      message: 'the connection handshake is in flight; try again once it is Established',
    };
  }
  if (s.replication === 'VerifyS' || s.replication === 'VerifyT') {
    return {
      code: 'SS_RESYNC_RUNNING',
      message: `a verify is running (${s.replication}); wait for it to finish or disconnect`,
    };
  }
  if (!SYNCING.has(s.replication)) return null;
  return {
    code: 'SS_RESYNC_RUNNING',
    message: `a resync is already running (${s.replication}); wait for it to finish`,
  };
}

/**
 * `urbdadm invalidate` (drbd.md §1.2, §2.6): this node's data is thrown away and copied
 * back from the peer. Connected, the peer must hold UpToDate data to copy from. Not
 * connected, a Secondary only marks its disk Inconsistent with every bit set (DRBD 8.4 does
 * the same), and the next handshake makes it SyncTarget; a disconnected Primary is refused,
 * since it would be left serving no UpToDate data. A Primary connected to an UpToDate peer
 * may: it reads through the peer while it resyncs.
 */
export function decideInvalidate(s: InvalidateInput): Refusal | null {
  if (diskRank(s.disk) < diskRank('Inconsistent')) {
    return {
      code: 'SS_IS_DISKLESS',
      message: `the disk is ${s.disk}: there is no local data to invalidate`,
    };
  }
  const running = resyncRunning(s);
  if (running) return running;
  if (s.replication === 'Established') {
    if (s.peerDisk !== 'UpToDate') {
      return {
        code: 'SS_NO_UP_TO_DATE_DISK',
        message: `the peer's disk is ${s.peerDisk}, not UpToDate: there is no good copy to resync from`,
      };
    }
    return null;
  }
  if (s.role === 'Primary') {
    return {
      code: 'SS_NO_UP_TO_DATE_DISK',
      message:
        'refusing to invalidate a Primary that is not connected to an UpToDate peer: it would serve no UpToDate data',
    };
  }
  return null;
}

/**
 * `urbdadm invalidate-remote`: the peer's data is thrown away and copied from here. Needs a
 * connection (DRBD 9's rule; 8.4's disconnected-Primary variant, which only sets bits, is not
 * offered), UpToDate data here, a peer with a disk, and a peer that is not Primary: a Primary
 * as SyncTarget would drop the connection (rr-conflict), so the admin is sent to run
 * `invalidate` there, which lets it keep serving through this node.
 */
export function decideInvalidateRemote(s: InvalidateInput): Refusal | null {
  if (diskRank(s.disk) < diskRank('Inconsistent')) {
    return {
      code: 'SS_IS_DISKLESS',
      message: `the disk is ${s.disk}: there is no local data to resync the peer from`,
    };
  }
  const running = resyncRunning(s);
  if (running) return running;
  if (s.replication !== 'Established') {
    return {
      code: 'SS_NEED_CONNECTION',
      message: 'invalidate-remote needs an established connection to the peer (urbdadm connect)',
    };
  }
  if (s.disk !== 'UpToDate') {
    return {
      code: 'SS_NO_UP_TO_DATE_DISK',
      message: `the local disk is ${s.disk}, not UpToDate: it cannot overwrite the peer`,
    };
  }
  if (diskRank(s.peerDisk) < diskRank('Inconsistent')) {
    return {
      code: 'SS_PEER_DISKLESS',
      message: `the peer's disk is ${s.peerDisk}: there is nothing there to invalidate`,
    };
  }
  if (s.peerRole === 'Primary') {
    return {
      code: 'SS_PEER_PRIMARY',
      message:
        'the peer is Primary: run `urbdadm invalidate` on it instead (it then reads through this node while it resyncs)',
    };
  }
  return null;
}
