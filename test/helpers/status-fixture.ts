/**
 * A whole ResourceStatus for tests of what reads one (status text, colour, events, waits):
 * a Primary alpha with one peer beta, Connected and in sync, every field filled. Tests
 * override what they look at.
 */
import type { DeviceStatus, PeerStatus, ResourceStatus } from '../../src/resource/status.js';

export function peerStatus(over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name: 'beta',
    nodeId: 1,
    connection: 'Connected',
    role: 'Secondary',
    peerDisk: 'UpToDate',
    replication: 'Established',
    outOfSync: 0,
    sync: undefined,
    verify: undefined,
    resyncTraffic: {
      dataSentBytes: 0,
      inSyncSentBytes: 0,
      dataReceivedBytes: 0,
      inSyncReceivedBytes: 0,
    },
    lastError: undefined,
    paused: false,
    resyncSuspended: [],
    statistics: { sent: 0, received: 0, pending: 0, unacked: 0 },
    diskful: true,
    knownOutdated: false,
    quorum: true,
    mayPromote: { may: false, reason: 'peer alpha is Primary' },
    ...over,
  };
}

export function resourceStatus(
  over: Partial<Omit<ResourceStatus, 'device'>> & { device?: Partial<DeviceStatus> } = {},
): ResourceStatus {
  const { device, ...rest } = over;
  return {
    name: 'r0',
    node: 'alpha',
    nodeId: 0,
    role: 'Primary',
    suspended: false,
    quorum: { enabled: false, quorum: true, reason: '' },
    mayPromote: { may: true, reason: 'is Primary' },
    peers: [peerStatus()],
    ...rest,
    device: {
      volume: 0,
      minor: 0,
      device: '/dev/nbd0',
      diskState: 'UpToDate',
      size: 1 << 20,
      outOfSync: 0,
      alActive: 0,
      alExtents: 1237,
      alStats: undefined,
      crashedPrimary: false,
      disk: '/tmp/a.img',
      metaDisk: '/tmp/a.img.urbd-md',
      export: {
        socket: '/run/urbd/r0.nbd',
        tcp: [],
        listening: true,
        serving: true,
        clients: 0,
        refusal: undefined,
      },
      statistics: { read: 0, written: 0, alWrites: 0, bmWrites: 0, lowerPending: 0 },
      ...device,
    },
  };
}
