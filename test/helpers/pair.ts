/**
 * Two real urbd daemons on loopback holding one resource: alpha (node-id 0, dials) and beta
 * (node-id 1, listens). With `proxy`, alpha's resource file points at a TCP proxy in front
 * of beta's address, so the test can cut, delay and black-hole the link.
 */
import { open } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeDisk, run, type RunResult, sleep, type Teardown, within } from './server.js';
import { adm, type DaemonHandle, startDaemon } from './daemon.js';
import { startProxy, type TcpProxy } from './tcp-proxy.js';
import { freePort } from './ports.js';
import type { ResourceStatus } from '../../src/resource/status.js';
import { ControlClient } from '../../src/control/client.js';

export interface PairOptions {
  sizeBytes?: number;
  /** Bytes of beta's disk when it should differ. */
  betaSizeBytes?: number;
  protocol?: 'A' | 'B' | 'C';
  /** Extra statements inside `net { }` (both nodes, unless betaNet is given). */
  net?: string;
  betaNet?: string;
  disk?: string;
  /** Statements inside `options { }` (both nodes). */
  options?: string;
  /** Statements inside `handlers { }` (both nodes). */
  handlers?: string;
  proxy?: boolean;
  /** Paths to use as the backing disks instead of fresh files. */
  alphaDisk?: string;
  betaDisk?: string;
  /** Nodes brought `up` by startPair (default both). */
  up?: Array<'alpha' | 'beta'>;
  /** Metadata files, when `internal` (next to the disk) will not do. */
  alphaMeta?: string;
  betaMeta?: string;
}

export interface Pair {
  dir: string;
  alpha: DaemonHandle;
  beta: DaemonHandle;
  proxy: TcpProxy | undefined;
  alphaDisk: string;
  betaDisk: string;
  /** Restarts a node's daemon (after stop or kill -9) with the same files. */
  restart(node: 'alpha' | 'beta'): Promise<DaemonHandle>;
}

export { freePort };

/** Fast reconnects for tests; a statement in `extra` replaces the default of the same name. */
export function netOptions(extra: string): string {
  const defaults = ['connect-int 1;', 'ping-int 1;', 'ping-timeout 10;', 'timeout 30;'];
  const given = new Set([...extra.matchAll(/([a-z-]+)\s/g)].map((m) => m[1]));
  return [...defaults.filter((d) => !given.has(d.split(' ')[0])), extra].join(' ');
}

function config(
  file: string,
  o: {
    alphaAddr: number;
    betaAddr: number;
    alphaDisk: string;
    betaDisk: string;
    net: string;
    disk: string;
    options: string;
    handlers: string;
    protocol: string;
    alphaMeta: string;
    betaMeta: string;
  },
): void {
  writeFileSync(
    file,
    `resource r0 {
  protocol ${o.protocol};
  net { ${netOptions(o.net)} }
  disk { ${o.disk} }
  options { ${o.options} }
  handlers { ${o.handlers} }
  on alpha {
    node-id 0;
    address 127.0.0.1:${o.alphaAddr};
    device minor 0;
    disk ${o.alphaDisk};
    meta-disk ${o.alphaMeta};
  }
  on beta {
    node-id 1;
    address 127.0.0.1:${o.betaAddr};
    device minor 1;
    disk ${o.betaDisk};
    meta-disk ${o.betaMeta};
  }
}
`,
  );
}

/**
 * Creates the disks and metadata, starts both daemons and brings r0 up on both (they
 * connect; two fresh disks stay Inconsistent until `primary --force` on one).
 */
export async function startPair(t: Teardown, dir: string, o: PairOptions = {}): Promise<Pair> {
  const size = o.sizeBytes ?? 64 << 20;
  const alphaDisk = o.alphaDisk ?? (await makeDisk(dir, size, undefined, 'alpha.img'));
  const betaDisk =
    o.betaDisk ?? (await makeDisk(dir, o.betaSizeBytes ?? size, undefined, 'beta.img'));
  const alphaPort = await freePort();
  const betaPort = await freePort();
  const proxy = o.proxy
    ? await startProxy({ target: { host: '127.0.0.1', port: betaPort }, t })
    : undefined;
  const common = {
    alphaDisk,
    betaDisk,
    net: o.net ?? '',
    disk: o.disk ?? '',
    options: o.options ?? '',
    handlers: o.handlers ?? '',
    protocol: o.protocol ?? 'C',
    alphaMeta: o.alphaMeta ?? 'internal',
    betaMeta: o.betaMeta ?? 'internal',
  };
  const alphaConf = path.join(dir, 'alpha.conf');
  const betaConf = path.join(dir, 'beta.conf');
  config(alphaConf, { ...common, alphaAddr: alphaPort, betaAddr: proxy ? proxy.port : betaPort });
  config(betaConf, {
    ...common,
    alphaAddr: alphaPort,
    betaAddr: betaPort,
    net: o.betaNet ?? common.net,
  });
  const specA = { node: 'alpha', config: alphaConf, runDir: path.join(dir, 'run-alpha') };
  const specB = { node: 'beta', config: betaConf, runDir: path.join(dir, 'run-beta') };
  for (const s of [specA, specB]) {
    const r = await adm(s, ['create-md', 'r0']);
    if (r.code !== 0) throw new Error(`create-md on ${s.node}: ${r.stderr}`);
  }
  const pair: Pair = {
    dir,
    alpha: await startDaemon(specA, { t }),
    beta: await startDaemon(specB, { t }),
    proxy,
    alphaDisk,
    betaDisk,
    async restart(node) {
      const spec = node === 'alpha' ? specA : specB;
      const d = await startDaemon(spec, { t });
      pair[node] = d;
      return d;
    },
  };
  for (const n of [pair.beta, pair.alpha]) {
    if (o.up && !o.up.includes(n.node as 'alpha' | 'beta')) continue;
    const r = await n.adm(['up', 'r0']);
    if (r.code !== 0) throw new Error(`up on ${n.node}: ${r.stderr}`);
  }
  return pair;
}

/**
 * r0's status from the daemon's control socket, as `urbdadm status --json r0` prints it (that
 * verb's own output is asserted in daemon/lifecycle, daemon/verbs and cli/adm-node). Asked
 * in-process: a urbdadm process costs about 0.25 s of CPU, and waitFor asks ten times a second.
 */
export async function status(n: DaemonHandle): Promise<ResourceStatus> {
  let c: ControlClient;
  try {
    c = await ControlClient.connect(n.runDir);
  } catch (err) {
    throw new Error(`status on ${n.node}: ${(err as Error).message}`);
  }
  try {
    // As long as adm() gives the verb: a stopped (SIGSTOP) daemon answers nothing.
    const asked = c.request('status', 'all') as Promise<ResourceStatus[]>;
    asked.catch(() => {}); // after a timeout, closing the connection rejects it
    const all = await within(asked, 60000);
    if (all === 'timeout') throw new Error('no answer within 60 s');
    const s = all.find((x) => x.name === 'r0');
    if (!s) throw new Error('r0 is not up');
    return s;
  } catch (err) {
    throw new Error(`status on ${n.node}: ${(err as Error).message}`);
  } finally {
    c.close();
  }
}

/** Polls status until `pred` holds; throws with the last status after `timeoutMs`. */
export async function waitFor(
  n: DaemonHandle,
  pred: (s: ResourceStatus) => boolean,
  what: string,
  timeoutMs = 60000,
): Promise<ResourceStatus> {
  const until = Date.now() + timeoutMs;
  let last: ResourceStatus | undefined;
  while (Date.now() < until) {
    last = await status(n);
    if (pred(last)) return last;
    await sleep(100);
  }
  throw new Error(`${n.node}: not ${what} after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

export const connected = (s: ResourceStatus): boolean =>
  s.peers.every((p) => p.connection === 'Connected' && p.replication === 'Established');

export const inSync = (s: ResourceStatus): boolean =>
  connected(s) &&
  s.device.diskState === 'UpToDate' &&
  s.peers.every((p) => p.peerDisk === 'UpToDate');

/** Waits until both nodes say Connected/Established with both disks UpToDate. */
export async function waitInSync(p: Pair, timeoutMs = 120000): Promise<void> {
  await waitFor(p.alpha, inSync, 'in sync', timeoutMs);
  await waitFor(p.beta, inSync, 'in sync', timeoutMs);
}

/** 4 KiB blocks that differ between two files of the same size (first `limit` listed). */
export async function diffBlocks(
  a: string,
  b: string,
  sizeBytes: number,
  limit = 10,
): Promise<{ count: number; first: number[] }> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  const chunk = 1 << 20;
  const ba = Buffer.alloc(chunk);
  const bb = Buffer.alloc(chunk);
  let count = 0;
  const first: number[] = [];
  try {
    for (let off = 0; off < sizeBytes; off += chunk) {
      const n = Math.min(chunk, sizeBytes - off);
      await fa.read(ba, 0, n, off);
      await fb.read(bb, 0, n, off);
      if (ba.subarray(0, n).equals(bb.subarray(0, n))) continue;
      for (let i = 0; i < n; i += 4096) {
        if (!ba.subarray(i, i + 4096).equals(bb.subarray(i, i + 4096))) {
          count++;
          if (first.length < limit) first.push((off + i) / 4096);
        }
      }
    }
  } finally {
    await fa.close();
    await fb.close();
  }
  return { count, first };
}

/** qemu-io on a URI, one -c per command (it flushes when it closes the image). */
export function qemuIo(uri: string, cmds: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri], {
    timeoutMs: 60000,
  });
}

/** The usual start: connected, alpha promoted with --force, the initial full sync done. */
export async function promoteAndSync(p: Pair): Promise<void> {
  await waitFor(p.alpha, (s) => s.peers[0]!.connection === 'Connected', 'connected', 30000);
  const r = await p.alpha.adm(['primary', '--force', 'r0']);
  if (r.code !== 0) throw new Error(`primary --force on alpha: ${r.stderr}`);
  await waitInSync(p);
}
