/**
 * Checksum-based resync (csums-alg, csums-after-crash-only; drbd.md §6.5). The SyncTarget
 * reads its own blocks, sends their digests with each resync request, and the SyncSource
 * answers "in sync" without data where its blocks hash the same (resync.ts ResyncSource).
 * A resync after a Primary crash re-copies whole activity-log extents that mostly never
 * changed: with csums almost nothing of them crosses the link.
 *
 * The digests are read without the range held on a Secondary target: a replicated write
 * landing meanwhile can only make them differ (data is then sent, as without csums), and
 * the source compares under its change lock, ordered with its writes on the data socket, so
 * an "in sync" answer always means the blocks were equal with no write between them.
 */
import type { MessageBodies } from '../replication/schema.js';
import type { ResyncSource, ResyncTarget } from '../replication/resync.js';
import { blockDigests, checkDigestAlg } from '../replication/verify.js';
import type { Peer } from './peer.js';
import type { Session } from './peer-session.js';

/** What the last resyncs with a peer moved, for status --json (statistics.resync). */
export interface ResyncTraffic {
  /** As SyncSource: bytes sent as resync data, and bytes answered in sync by digest. */
  dataSentBytes: number;
  inSyncSentBytes: number;
  /** As SyncTarget: bytes received and written, and bytes found in sync by digest. */
  dataReceivedBytes: number;
  inSyncReceivedBytes: number;
}

interface Counters {
  done: ResyncTraffic;
  source: ResyncSource | undefined;
  target: ResyncTarget | undefined;
}

const counters = new WeakMap<Peer, Counters>();

function countersOf(p: Peer): Counters {
  let c = counters.get(p);
  if (!c) {
    c = {
      done: { dataSentBytes: 0, inSyncSentBytes: 0, dataReceivedBytes: 0, inSyncReceivedBytes: 0 },
      source: undefined,
      target: undefined,
    };
    counters.set(p, c);
  }
  return c;
}

/** A resync starts with this peer: the last one's counts become totals. */
export function trackResync(p: Peer, r: { source: ResyncSource } | { target: ResyncTarget }): void {
  const c = countersOf(p);
  fold(c);
  if ('source' in r) c.source = r.source;
  else c.target = r.target;
}

function fold(c: Counters): void {
  if (c.source) {
    c.done.dataSentBytes += c.source.dataBytes;
    c.done.inSyncSentBytes += c.source.inSyncBytes;
    c.source = undefined;
  }
  if (c.target) {
    c.done.dataReceivedBytes += c.target.bytesDone - c.target.inSyncBytes;
    c.done.inSyncReceivedBytes += c.target.inSyncBytes;
    c.target = undefined;
  }
}

/** Totals since the resource came up, the running resync included. */
export function resyncTraffic(p: Peer): ResyncTraffic {
  const c = counters.get(p);
  const t: ResyncTraffic = c
    ? { ...c.done }
    : { dataSentBytes: 0, inSyncSentBytes: 0, dataReceivedBytes: 0, inSyncReceivedBytes: 0 };
  if (c?.source) {
    t.dataSentBytes += c.source.dataBytes;
    t.inSyncSentBytes += c.source.inSyncBytes;
  }
  if (c?.target) {
    t.dataReceivedBytes += c.target.bytesDone - c.target.inSyncBytes;
    t.inSyncReceivedBytes += c.target.inSyncBytes;
  }
  return t;
}

/** The digest this session's resync uses as SyncTarget, or undefined for plain requests. */
export function csumsAlgFor(p: Peer, s: Session): string | undefined {
  const net = p.host.config.net;
  if (net.csumsAlg === undefined) return undefined;
  if (net.csumsAfterCrashOnly && !s.afterCrash) return undefined;
  try {
    return checkDigestAlg(net.csumsAlg, 'csums-alg');
  } catch (err) {
    p.log.warn({ err: (err as Error).message }, 'resync without checksums');
    return undefined;
  }
}

/** Bits per resync request with csums: 64 KiB, the most one differing block costs. */
export const CSUMS_REQUEST_BITS = 16;

/** The SyncTarget's request sender: with csums, the digests of our blocks go along. */
export function csumsRequester(
  p: Peer,
  s: Session,
  alg: string | undefined,
): (offset: number, length: number) => void {
  if (alg === undefined) {
    return (offset, length) => s.link.send('rsRequest', { offset, length });
  }
  p.log.info({ alg }, 'checksum-based resync: blocks the source holds equal are not sent');
  const backing = p.host.backing!;
  return (offset, length) => {
    const buf = Buffer.allocUnsafe(length);
    backing.read(buf, offset).then(
      () => {
        if (p.session !== s) return;
        s.link.send('rsRequest', {
          offset,
          length,
          digests: blockDigests(buf, alg),
          digestAlg: alg,
        });
      },
      () => {
        // Our block is unreadable: ask for the data as without csums.
        if (p.session === s) s.link.send('rsRequest', { offset, length });
      },
    );
  };
}

/** The csums part of a resync request, checked: undefined for a plain request. */
export function csumsOf(
  body: MessageBodies['rsRequest'],
): { alg: string; digests: Uint8Array } | undefined {
  if (body.digests.length === 0 || body.digestAlg === '') return undefined;
  try {
    return { alg: checkDigestAlg(body.digestAlg, 'csums-alg'), digests: body.digests };
  } catch {
    // A digest we cannot compute: send the data, which is always right.
    return undefined;
  }
}
