import type { ResourceStatus } from '../resource/status.js';
import { colourStatus } from './status-colour.js';

/**
 * `urbdadm status` as `drbdadm status` prints it (DRBD 9 layout): the resource and role,
 * the local disk indented once, each peer with its connection. --verbose adds node ids,
 * volumes, sizes, out-of-sync amounts and where the NBD export is served; --statistics
 * drbdsetup's counters under the device and under each peer. With `colour`, states that need
 * attention stand out (status-colour.ts).
 */
export function renderStatus(
  list: ResourceStatus[],
  opts: { verbose?: boolean; colour?: boolean; statistics?: boolean } = {},
): string {
  const text = list
    .map((s) => renderOne(s, opts.verbose === true, opts.statistics === true))
    .join('\n');
  return opts.colour === true ? colourStatus(text) : text;
}

function renderOne(s: ResourceStatus, verbose: boolean, statistics = false): string {
  const lines: string[] = [];
  const d = s.device;
  // Quorum and promotability are shown where they mean something: quorum on, more
  // than two nodes, or --verbose. A plain two-node pair reads as before.
  const cluster = verbose || s.quorum.enabled || s.peers.length > 1;
  const quorum = s.quorum.enabled ? ` quorum:${s.quorum.quorum ? 'yes' : 'no'}` : '';
  if (verbose) {
    lines.push(
      `${s.name} ${kv('node-id', s.nodeId)}role:${s.role} suspended:${s.suspended ? 'yes' : 'no'}`,
    );
    lines.push(`  volume:${d.volume} minor:${d.minor} disk:${d.diskState}${quorum}`);
    lines.push(
      `    size:${kib(d.size)} out-of-sync:${kib(d.outOfSync)} al-active:${d.alActive}/${d.alExtents}` +
        (d.crashedPrimary ? ' crashed-primary:yes' : ''),
    );
    const exp = d.export;
    // The same words as the JSON: `serving` is whether clients get the device now.
    lines.push(
      `    export:${exp.listening ? exp.socket : 'none'}` +
        (exp.tcp.length > 0 ? ` tcp:${exp.tcp.join(',')}` : '') +
        ` clients:${exp.clients} serving:${exp.serving ? 'yes' : 'no'}`,
    );
  } else {
    lines.push(`${s.name} role:${s.role}${s.suspended ? ' suspended:yes' : ''}`);
    lines.push(`  disk:${d.diskState}${quorum}`);
  }
  if (s.suspended && s.suspendedReason !== undefined) {
    lines.push(`  suspended-why:${JSON.stringify(s.suspendedReason)}`);
  }
  if (statistics) lines.push(deviceStatistics(s));
  if (cluster) lines.push(`  ${promotable(s.mayPromote)}`);
  for (const p of s.peers) {
    const sync = syncText(p);
    if (verbose) {
      lines.push(`  ${p.name} ${kv('node-id', p.nodeId)}connection:${p.connection} role:${p.role}`);
      lines.push(
        `    volume:0 replication:${p.replication} peer-disk:${p.peerDisk} out-of-sync:${kib(p.outOfSync)}${sync}`,
      );
    } else if (p.connection === 'Connected') {
      lines.push(`  ${p.name} role:${p.role}`);
      lines.push(
        p.replication === 'Established' || p.replication === 'Off'
          ? `    peer-disk:${p.peerDisk}`
          : `    replication:${p.replication} peer-disk:${p.peerDisk}${sync}`,
      );
    } else {
      lines.push(`  ${p.name} connection:${p.connection}`);
    }
    if (statistics) lines.push(peerStatistics(p));
    if (cluster && p.connection === 'Connected') {
      const q = p.quorum === null ? '' : ` quorum:${p.quorum ? 'yes' : 'no'}`;
      lines.push(`    ${promotable(p.mayPromote)}${s.quorum.enabled ? q : ''}`);
    }
    if (p.connection !== 'Connected' && p.lastError !== undefined) {
      lines.push(`    last-error:${JSON.stringify(p.lastError)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * Resync progress as drbdadm shows it (done:45.20), plus urbd's rate and time to go; a paused
 * resync has neither, and says who paused it (resync-suspended:user here, :peer there).
 */
function syncText(p: ResourceStatus['peers'][number]): string {
  const v = p.verify;
  if (v?.running) {
    const eta = v.etaSeconds === undefined ? '' : ` eta:${v.etaSeconds}s`;
    return (
      ` done:${v.done.toFixed(2)} rate:${(v.rate / (1 << 20)).toFixed(1)}MiB/s${eta}` +
      ` verified:${v.verifiedBlocks} ov-out-of-sync:${v.outOfSyncBlocks}`
    );
  }
  const y = p.sync;
  if (!y) return '';
  if (p.resyncSuspended.length > 0) {
    return ` done:${y.done.toFixed(2)} resync-suspended:${p.resyncSuspended.join(',')}`;
  }
  const rate = `${(y.rate / (1 << 20)).toFixed(1)}MiB/s`;
  const eta = y.etaSeconds === undefined ? '' : ` eta:${y.etaSeconds}s`;
  return ` done:${y.done.toFixed(2)} rate:${rate}${eta}`;
}

/** drbdsetup's device counters (sizes in KiB, as it prints them). */
function deviceStatistics(s: ResourceStatus): string {
  const d = s.device;
  const x = d.statistics;
  return (
    `      size:${kib(d.size)} read:${kib(x.read)} written:${kib(x.written)}` +
    ` al-writes:${x.alWrites} bm-writes:${x.bmWrites} lower-pending:${x.lowerPending}`
  );
}

function peerStatistics(p: ResourceStatus['peers'][number]): string {
  const x = p.statistics;
  const sync = p.sync ? ` rs-total:${kib(p.sync.total)} dbdt1:${kib(p.sync.rate)}` : '';
  const v = p.verify;
  const ov = v ? ` ov-verified:${v.verifiedBlocks} ov-out-of-sync:${v.outOfSyncBlocks}` : '';
  return (
    `        received:${kib(x.received)} sent:${kib(x.sent)} out-of-sync:${kib(p.outOfSync)}` +
    ` pending:${x.pending} unacked:${x.unacked}${sync}${ov}`
  );
}

/** `may-promote:yes`, or `may-promote:no why:"no quorum: sees 1 of 3 nodes"`. */
function promotable(p: ResourceStatus['mayPromote']): string {
  if (p.may === null) return `may-promote:unknown why:${JSON.stringify(p.reason)}`;
  if (p.may) return 'may-promote:yes';
  return `may-promote:no why:${JSON.stringify(p.reason)}`;
}

function kv(key: string, value: number | undefined): string {
  return value === undefined ? '' : `${key}:${value} `;
}

/** drbdsetup reports sizes in KiB. */
function kib(bytes: number): number {
  return Math.ceil(bytes / 1024);
}
