/** The environment a handler of a resource runs with (handlers.ts HandlerContext). */
import type { HostConfig, ResourceConfig } from '../config/index.js';
import type { HandlerContext, HandlerNode } from './handlers.js';
import type { Peer } from './peer.js';
import type { DiskState } from './states.js';

/** What the context is built from. */
export interface HandlerContextSource {
  readonly name: string;
  readonly config: ResourceConfig;
  readonly host: HostConfig;
  readonly disk: DiskState;
  readonly peers: readonly Peer[];
  /** The resource file this daemon runs from (DRBD_CONF). */
  readonly configFile: string;
  /** The backing disk, when one is attached. */
  readonly backingDisk: string | undefined;
}

/** DRBD's handler environment, about `peer` when given. */
export function handlerContext(r: HandlerContextSource, peer?: Peer): HandlerContext {
  const upToDate = [
    ...(r.disk === 'UpToDate' ? [r.host] : []),
    ...r.config.hosts.filter((h) =>
      r.peers.some((p) => p.name === h.name && p.established && p.disk === 'UpToDate'),
    ),
  ];
  const peerHost = peer ? r.config.hosts.find((h) => h.name === peer.name) : undefined;
  const node = (h: HostConfig): HandlerNode => ({
    name: h.name,
    ...(h.nodeId !== undefined ? { nodeId: h.nodeId } : {}),
    ...(h.address !== undefined ? { address: h.address } : {}),
  });
  return {
    resource: r.name,
    minor: r.host.device.minor,
    volume: 0,
    configFile: r.configFile,
    ...(r.backingDisk !== undefined ? { backingDisk: r.backingDisk } : {}),
    me: node(r.host),
    hosts: r.config.hosts.map(node),
    ...(peerHost ? { peer: node(peerHost) } : {}),
    upToDateNodes: upToDate.map((h) => h.name),
  };
}
