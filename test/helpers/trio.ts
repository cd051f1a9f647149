/**
 * Three real urbd daemons on loopback holding one resource r0: alpha (node-id 0) and beta
 * (node-id 1) with disks, gamma (node-id 2) with `disk none;`, the diskless tiebreaker.
 *
 * Every link has its own TCP proxy, so a test can cut, black-hole or heal exactly one link
 * of three. The lower node-id dials, so each node gets its own resource file in which the
 * address of every higher-id peer is the proxy of that link, and every other address
 * (its own, the lower-id peers') is the real one:
 *
 *   alpha.conf: alpha A,  beta → proxy AB,  gamma → proxy AG
 *   beta.conf:  alpha A,  beta B,           gamma → proxy BG
 *   gamma.conf: alpha A,  beta B,           gamma G
 *
 * With `connectionSections` the addresses are not in the `on` sections but in a
 * `connection-mesh { hosts …; }` and one `connection { host X address …; host Y address …; }`
 * per link. urbd keeps one address per host and file, and every connection of a file must
 * agree with it; since each node has its own file, that is enough to put a proxy on each
 * link (one file cannot give a host two addresses for two links).
 *
 * `withTiebreaker: false` gives a two-node pair (alpha and beta, one proxy) through the same
 * API.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeDisk, type Teardown } from './server.js';
import { adm, type DaemonHandle, type NodeSpec, startDaemon } from './daemon.js';
import { startProxy, type TcpProxy } from './tcp-proxy.js';
import { freePort, netOptions, waitFor } from './pair.js';
import type { PeerStatus, ResourceStatus } from '../../src/resource/status.js';

export type TrioNode = 'alpha' | 'beta' | 'gamma';
export type DiskfulNode = 'alpha' | 'beta';

const ALL: readonly TrioNode[] = ['alpha', 'beta', 'gamma'];
const NODE_ID: Record<TrioNode, number> = { alpha: 0, beta: 1, gamma: 2 };

export interface TrioOptions {
  /** Bytes of each backing disk (default 16 MiB). */
  sizeBytes?: number;
  protocol?: 'A' | 'B' | 'C';
  /** Extra statements inside `net { }`; a statement replaces the test default of its name. */
  net?: string;
  /** Statements inside `disk { }`. */
  disk?: string;
  /** Statements inside `options { }`, e.g. `quorum majority; on-no-quorum suspend-io;`. */
  options?: string;
  /** Statements inside `handlers { }`. */
  handlers?: string;
  /** Nodes brought `up` by startTrio (default all). */
  up?: TrioNode[];
  /** Gamma, the diskless tiebreaker (default true); false: alpha and beta only. */
  withTiebreaker?: boolean;
  /** Addresses in a connection-mesh and per-link connection sections, not in `on`. */
  connectionSections?: boolean;
  /**
   * An existing file (or symlink to one) to use as a node's backing disk instead of a fresh
   * sparse file in `dir`; `meta-disk internal` puts the metadata beside the path given.
   */
  diskFiles?: Partial<Record<DiskfulNode, string>>;
  /** The body of a resource-level `failover { }` section (urbd-failover's chain). */
  failover?: string;
  /** The body of each node's own `failover { }` section inside its `on` section. */
  failoverOn?: Partial<Record<TrioNode, string>>;
}

export interface Trio {
  dir: string;
  /** The running daemons (restart() replaces them). */
  readonly alpha: DaemonHandle;
  readonly beta: DaemonHandle;
  /** Throws when started withTiebreaker: false. */
  readonly gamma: DaemonHandle;
  /** The nodes of the resource, in node-id order. */
  nodes: TrioNode[];
  /** Each node's resource file. */
  configs: Partial<Record<TrioNode, string>>;
  disks: Record<DiskfulNode, string>;
  sizeBytes: number;
  /** The proxy of the link between a and b (either order). */
  link(a: TrioNode, b: TrioNode): TcpProxy;
  cut(a: TrioNode, b: TrioNode): void;
  blackhole(a: TrioNode, b: TrioNode): void;
  heal(a: TrioNode, b: TrioNode): void;
  /** Black-holes every link of `node`. */
  isolate(node: TrioNode): void;
  healAll(): void;
  /** Restarts a node's daemon (after stop or kill -9) with the same files; not `up`. */
  restart(node: TrioNode): Promise<DaemonHandle>;
  /** The running daemon of a node, by name. */
  node(n: TrioNode): DaemonHandle;
}

const linkKey = (a: TrioNode, b: TrioNode): string =>
  NODE_ID[a] < NODE_ID[b] ? `${a}-${b}` : `${b}-${a}`;

interface FileSpec {
  nodes: readonly TrioNode[];
  /** The port of each host as this node's file gives it. */
  ports: Record<string, number>;
  disks: Record<DiskfulNode, string>;
  protocol: string;
  net: string;
  disk: string;
  options: string;
  handlers: string;
  connectionSections: boolean;
  failover?: string;
  failoverOn?: Partial<Record<TrioNode, string>>;
}

function resourceFile(f: FileSpec): string {
  const addr = (n: TrioNode) => `127.0.0.1:${f.ports[n]}`;
  const on = f.nodes.map((n) => {
    const lines = [
      `node-id ${NODE_ID[n]};`,
      ...(f.connectionSections ? [] : [`address ${addr(n)};`]),
      `device minor ${NODE_ID[n]};`,
      ...(n === 'gamma' ? ['disk none;'] : [`disk ${f.disks[n]};`, 'meta-disk internal;']),
      ...(f.failoverOn?.[n] !== undefined ? [`failover { ${f.failoverOn[n]} }`] : []),
    ];
    return `  on ${n} {\n${lines.map((l) => `    ${l}`).join('\n')}\n  }\n`;
  });
  const conns: string[] = [];
  if (f.connectionSections) {
    conns.push(`  connection-mesh { hosts ${f.nodes.join(' ')}; }\n`);
    for (let i = 0; i < f.nodes.length; i++) {
      for (let j = i + 1; j < f.nodes.length; j++) {
        const [a, b] = [f.nodes[i]!, f.nodes[j]!];
        conns.push(
          `  connection {\n    host ${a} address ${addr(a)};\n    host ${b} address ${addr(b)};\n  }\n`,
        );
      }
    }
  }
  return `resource r0 {
  protocol ${f.protocol};
  net { ${netOptions(f.net)} }
  disk { ${f.disk} }
  options { ${f.options} }
  handlers { ${f.handlers} }
${f.failover !== undefined ? `  failover { ${f.failover} }\n` : ''}${on.join('')}${conns.join('')}}
`;
}

/**
 * Creates the two disks and their metadata, starts the daemons and brings r0 up on the
 * nodes of `up` (all at once: a dial that finds no listener yet is retried after connect-int).
 * The disks stay Inconsistent until `primary --force`.
 */
export async function startTrio(t: Teardown, dir: string, o: TrioOptions = {}): Promise<Trio> {
  const size = o.sizeBytes ?? 16 << 20;
  const nodes: TrioNode[] = o.withTiebreaker === false ? ['alpha', 'beta'] : [...ALL];
  const disks: Record<DiskfulNode, string> = {
    alpha: o.diskFiles?.alpha ?? (await makeDisk(dir, size, undefined, 'alpha.img')),
    beta: o.diskFiles?.beta ?? (await makeDisk(dir, size, undefined, 'beta.img')),
  };
  const real: Record<string, number> = {};
  for (const n of nodes) real[n] = await freePort();
  // One proxy per link, in front of the higher id (the side that listens).
  const proxies = new Map<string, TcpProxy>();
  for (const a of nodes) {
    for (const b of nodes) {
      if (NODE_ID[a] >= NODE_ID[b]) continue;
      proxies.set(
        linkKey(a, b),
        await startProxy({ target: { host: '127.0.0.1', port: real[b]! }, t }),
      );
    }
  }
  const configs: Partial<Record<TrioNode, string>> = {};
  const specs: Partial<Record<TrioNode, NodeSpec>> = {};
  for (const me of nodes) {
    const ports: Record<string, number> = {};
    for (const n of nodes) {
      ports[n] = NODE_ID[n] > NODE_ID[me] ? proxies.get(linkKey(me, n))!.port : real[n]!;
    }
    const file = path.join(dir, `${me}.conf`);
    writeFileSync(
      file,
      resourceFile({
        nodes,
        ports,
        disks,
        protocol: o.protocol ?? 'C',
        net: o.net ?? '',
        disk: o.disk ?? '',
        options: o.options ?? '',
        handlers: o.handlers ?? '',
        connectionSections: o.connectionSections ?? false,
        ...(o.failover !== undefined ? { failover: o.failover } : {}),
        ...(o.failoverOn !== undefined ? { failoverOn: o.failoverOn } : {}),
      }),
    );
    configs[me] = file;
    specs[me] = { node: me, config: file, runDir: path.join(dir, `run-${me}`) };
  }
  await Promise.all(
    (['alpha', 'beta'] as const).map(async (n) => {
      const r = await adm(specs[n]!, ['create-md', 'r0']);
      if (r.code !== 0) throw new Error(`create-md on ${n}: ${r.stderr}`);
    }),
  );
  const daemons: Partial<Record<TrioNode, DaemonHandle>> = {};
  await Promise.all(
    nodes.map(async (n) => {
      daemons[n] = await startDaemon(specs[n]!, { t });
    }),
  );

  const link = (a: TrioNode, b: TrioNode): TcpProxy => {
    const p = proxies.get(linkKey(a, b));
    if (p === undefined) throw new Error(`no link between ${a} and ${b}`);
    return p;
  };
  const trio: Trio = {
    dir,
    get alpha() {
      return trio.node('alpha');
    },
    get beta() {
      return trio.node('beta');
    },
    get gamma() {
      return trio.node('gamma');
    },
    nodes,
    configs,
    disks,
    sizeBytes: size,
    link,
    cut: (a, b) => link(a, b).cut(),
    blackhole: (a, b) => link(a, b).blackhole(),
    heal: (a, b) => link(a, b).heal(),
    isolate(node) {
      for (const other of nodes) if (other !== node) link(node, other).blackhole();
    },
    healAll() {
      for (const p of proxies.values()) p.heal();
    },
    async restart(node) {
      const spec = specs[node];
      if (spec === undefined) throw new Error(`no node ${node}`);
      const d = await startDaemon(spec, { t });
      daemons[node] = d;
      return d;
    },
    node(n) {
      const d = daemons[n];
      if (d === undefined) throw new Error(`no node ${n} (started withTiebreaker: false)`);
      return d;
    },
  };
  await Promise.all(
    nodes
      .filter((n) => o.up === undefined || o.up.includes(n))
      .map(async (n) => {
        const r = await trio.node(n).adm(['up', 'r0']);
        if (r.code !== 0) throw new Error(`up on ${n}: ${r.stderr}`);
      }),
  );
  return trio;
}

/** The status of `peer` as `s` shows it (throws when it is not listed). */
export function peerOf(s: ResourceStatus, peer: TrioNode): PeerStatus {
  const p = s.peers.find((x) => x.name === peer);
  if (p === undefined) throw new Error(`${s.node}: no peer ${peer} in ${JSON.stringify(s.peers)}`);
  return p;
}

export const linkUp = (s: ResourceStatus, peer: TrioNode): boolean => {
  const p = s.peers.find((x) => x.name === peer);
  return p !== undefined && p.connection === 'Connected' && p.replication === 'Established';
};

/** Polls `node`'s status until `pred` holds; throws with the last status after `timeoutMs`. */
export function waitStatus(
  node: DaemonHandle,
  pred: (s: ResourceStatus) => boolean,
  timeoutMs = 30000,
  what = 'in the expected state',
): Promise<ResourceStatus> {
  return waitFor(node, pred, what, timeoutMs);
}

/** Until `node`'s link to `peer` is Connected and Established. */
export function waitConnected(
  node: DaemonHandle,
  peer: TrioNode,
  timeoutMs = 30000,
): Promise<ResourceStatus> {
  return waitFor(node, (s) => linkUp(s, peer), `connected to ${peer}`, timeoutMs);
}

/** Until `node`'s link to `peer` is anything but Connected. */
export function waitDisconnected(
  node: DaemonHandle,
  peer: TrioNode,
  timeoutMs = 30000,
): Promise<ResourceStatus> {
  return waitFor(
    node,
    (s) => s.peers.find((x) => x.name === peer)?.connection !== 'Connected',
    `disconnected from ${peer}`,
    timeoutMs,
  );
}

/**
 * A node's view when everything is healthy: every link up, its own disk UpToDate (Diskless
 * for gamma), every diskful peer UpToDate and gamma Diskless.
 */
export function healthy(s: ResourceStatus, nodes: readonly TrioNode[] = ALL): boolean {
  const me = s.node as TrioNode;
  const own = me === 'gamma' ? 'Diskless' : 'UpToDate';
  if (s.device.diskState !== own) return false;
  return nodes
    .filter((n) => n !== me)
    .every((n) => {
      const p = s.peers.find((x) => x.name === n);
      return (
        p !== undefined && linkUp(s, n) && p.peerDisk === (n === 'gamma' ? 'Diskless' : 'UpToDate')
      );
    });
}

/** Until every node of the trio is healthy(). */
export async function waitHealthy(trio: Trio, timeoutMs = 60000): Promise<void> {
  for (const n of trio.nodes) {
    await waitFor(trio.node(n), (s) => healthy(s, trio.nodes), 'healthy', timeoutMs);
  }
}

/** The usual start: alpha connected to every peer, promoted with --force, the sync done. */
export async function promoteAndSyncTrio(trio: Trio, timeoutMs = 60000): Promise<void> {
  for (const n of trio.nodes) if (n !== 'alpha') await waitConnected(trio.alpha, n, timeoutMs);
  const r = await trio.alpha.adm(['primary', '--force', 'r0']);
  if (r.code !== 0) throw new Error(`primary --force on alpha: ${r.stderr}`);
  await waitHealthy(trio, timeoutMs);
}
