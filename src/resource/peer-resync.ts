/**
 * A peer's resync (drbd.md §6.2–§6.3): the bitmap exchange, the sync UUIDs, the resync as
 * SyncSource or SyncTarget, saving the bitmap while it runs, its end, pause-sync and progress.
 */
import { payloadLength } from '../nbd/target.js';
import type { FileDisk } from '../storage/file-disk.js';
import type { GenerationUuids } from '../meta/store.js';
import {
  finishSyncSource,
  finishSyncTarget,
  startSyncSource,
  startSyncTarget,
} from '../meta/uuid.js';
import { encodeBitmapRle, orBitmapRle } from '../replication/rle.js';
import { PeerProtocolError } from '../replication/receiver.js';
import { ResyncSource, ResyncTarget } from '../replication/resync.js';
import { resyncRates } from '../replication/rate.js';
import { type Uuids, uuidBytes, uuidFromBytes } from '../replication/schema.js';
import { describeResult } from './handlers.js';
import { CSUMS_REQUEST_BITS, csumsAlgFor, csumsRequester, trackResync } from './peer-csums.js';
import type { Peer, SyncProgress } from './peer.js';
import type { Session } from './peer-session.js';
import { refuseSession } from './peer-handshake.js';

const BITMAP_CHUNK_BYTES = 256 * 1024;
const BITMAP_PERSIST_MS = 2000;

export function beginResync(p: Peer, s: Session, role: 'source' | 'target', full: boolean): void {
  // Set at once: the peer's bitmap may arrive while before-resync-target runs.
  s.syncRole = role;
  s.bitmapSent = false;
  s.bitmapReceived = false;
  if (role === 'target' && p.host.hasHandler('before-resync-target')) {
    // drbd.md §1.3 before-resync-target (a snapshot of the data about to be overwritten,
    // typically): it runs to its end first, while the disk still holds its data; a failure
    // drops the connection, as DRBD's does, instead of overwriting what it did not save.
    p.guard(
      s,
      'before-resync-target',
      p.host.runHandler('before-resync-target', p).then((r) => {
        if (p.session !== s) return;
        if (r !== undefined && r.exitCode !== 0) {
          return refuseSession(
            p,
            `before-resync-target handler failed (${describeResult(r)}), dropping connection`,
          );
        }
        startResync(p, s, role, full);
      }),
    );
    return;
  }
  startResync(p, s, role, full);
}

export function startResync(p: Peer, s: Session, role: 'source' | 'target', full: boolean): void {
  const meta = p.host.meta!;
  if (full) {
    // Crash-safe: the flag says "redo set-all at attach" until the bitmap is on disk.
    meta.store.setFlags({ fullSync: true });
    meta.bitmap.setAll();
    meta.persistBitmap();
    meta.store.setFlags({ fullSync: false });
  }
  p.replication = role === 'source' ? 'WFBitMapS' : 'WFBitMapT';
  // The bitmap goes first, so the peer merges it while we commit. Nothing is copied before
  // the sync UUID arrives, and onSyncUuid marks the disk Inconsistent again before that.
  sendBitmap(p, s);
  if (role === 'target' && p.host.disk !== 'Inconsistent') {
    // Our data is about to be overwritten block by block.
    p.host.setDisk('Inconsistent');
  }
  p.host.changed();
}

export function sendBitmap(p: Peer, s: Session): void {
  const bm = p.host.meta!.bitmap;
  let bit = 0;
  do {
    const { rle, nextBit } = encodeBitmapRle(bm, bit, BITMAP_CHUNK_BYTES);
    s.link.send('bitmapChunk', {
      totalBits: bm.totalBits,
      firstBit: bit,
      rle,
      last: nextBit >= bm.totalBits,
    });
    bit = nextBit;
  } while (bit < bm.totalBits);
  s.bitmapSent = true;
  afterBitmaps(p, s);
}

export function onBitmapChunk(
  p: Peer,
  s: Session,
  c: { totalBits: number; firstBit: number; rle: Uint8Array; last: boolean },
): void {
  if (!s.syncRole) {
    // The peer started a resync we have not decided yet: only possible after a redecide
    // race; the decision on our side will follow from the same tuples.
    throw new PeerProtocolError('bitmap received outside a bitmap exchange');
  }
  const bm = p.host.meta!.bitmap;
  if (c.totalBits !== bm.totalBits) {
    throw new PeerProtocolError(`peer bitmap has ${c.totalBits} bits, ours ${bm.totalBits}`);
  }
  orBitmapRle(bm, c.firstBit, c.rle);
  if (!c.last) return;
  s.bitmapReceived = true;
  afterBitmaps(p, s);
}

export function afterBitmaps(p: Peer, s: Session): void {
  if (!s.bitmapSent || !s.bitmapReceived) return;
  const meta = p.host.meta!;
  if (s.syncRole === 'source') {
    // Both now hold the union; it reaches the disk, with the UUIDs that say a resync from
    // here is under way, before anything is copied (one transaction: one sync).
    const { uuids, syncUuid } = startSyncSource(meta.superblock().uuids);
    meta.persistBitmap(() => meta.store.setUuids(uuids));
    s.link.send('syncUuid', { uuid: uuidBytes(syncUuid) });
    startSource(p, s);
  } else {
    meta.persistBitmap();
    p.replication = 'WFSyncUUID';
    p.host.changed();
  }
}

export function onSyncUuid(p: Peer, s: Session, syncUuid: bigint): void {
  if (s.syncRole !== 'target') throw new PeerProtocolError('sync UUID while not SyncTarget');
  const meta = p.host.meta!;
  meta.store.setUuids(
    startSyncTarget(meta.superblock().uuids, syncUuid, p.host.role === 'Primary'),
  );
  p.host.setDisk('Inconsistent');
  p.disk = 'UpToDate';
  startTarget(p, s);
}

export function startSource(p: Peer, s: Session): void {
  const meta = p.host.meta!;
  const backing = p.host.backing!;
  s.resyncSource = new ResyncSource(meta.bitmap, p.host.changeLock, meta.sizeBytes, {
    read: (buf, offset) => backing.read(buf, offset),
    readNow: (buf, offset) => backing.readNow(buf, offset),
    reply: (offset, length, error, data, onSent) =>
      s.link.send('rsReply', { offset, length, error }, data, onSent),
    inSync: (offset, length) => s.link.send('rsReply', { offset, length, inSync: true }),
  });
  trackResync(p, { source: s.resyncSource });
  p.disk = 'Inconsistent';
  p.replication = 'SyncSource';
  p.syncStarted = { at: Date.now(), bits: meta.bitmap.count() };
  decidedNow(p, s);
  p.log.info({ bytes: meta.outOfSyncBytes() }, 'resync started as SyncSource');
  applyPause(p, s);
}

export function startTarget(p: Peer, s: Session): void {
  const meta = p.host.meta!;
  const backing = p.host.backing!;
  let applied = s.receiver?.applied ?? 0;
  const appIo = (): boolean => {
    // Replicated writes arriving here count as application I/O as much as our own.
    const now = s.receiver?.applied ?? 0;
    const active = now !== applied;
    applied = now;
    return p.host.takeAppIo() || active;
  };
  const writeback = new EarlyWriteback(backing, meta.outOfSyncBytes());
  const csums = csumsAlgFor(p, s);
  const target = new ResyncTarget(
    meta.bitmap,
    p.host.changeLock,
    meta.sizeBytes,
    {
      request: csumsRequester(p, s, csums),
      ack: (offset, length, ok) => s.link.send('rsWriteAck', { offset, length, ok }),
      write: (data, offset) => {
        const done = backing.write(data, offset, false);
        writeback.wrote(payloadLength(data));
        return done;
      },
      rates: () => resyncRates(p.host.config.disk, appIo()),
      finished: (failed) => targetFinished(p, s, failed),
      localWrites: () => p.host.localWrites,
    },
    csums === undefined ? undefined : CSUMS_REQUEST_BITS,
  );
  s.resyncTarget = target;
  trackResync(p, { target });
  p.replication = 'SyncTarget';
  p.syncStarted = { at: Date.now(), bits: meta.bitmap.count() };
  decidedNow(p, s);
  p.log.info({ bytes: meta.outOfSyncBytes() }, 'resync started as SyncTarget');
  applyPause(p, s);
  target.start();
}

/**
 * Starts writing resync data back to the disk while the resync goes on, every 64 MiB, or every
 * quarter of a smaller resync (at least 1 MiB): a full sync otherwise leaves all of it dirty
 * in the page cache for the final flush (measured: 0.7 s of a 2.1 s sync of 1 GiB here), and a
 * 1 % bitmap resync of 1 GiB spent ~28 ms in that flush after its transfer (the quarters cut
 * its median from 189–192 to 158–168 ms, docs/performance.md). Only a head start: the flush
 * that makes cleared bits durable (persistBitmapDurably) still comes after. A failed flush
 * here is not reported: the disk keeps failing its flushes from then on, and the next durable
 * one says so.
 */
class EarlyWriteback {
  private bytes = 0;
  private flushing = false;
  private readonly every: number;

  constructor(
    private readonly disk: FileDisk,
    total: number,
  ) {
    this.every = Math.min(64 << 20, Math.max(1 << 20, Math.floor(total / 4)));
  }

  wrote(bytes: number): void {
    this.bytes += bytes;
    if (this.flushing || this.bytes < this.every) return;
    this.bytes = 0;
    this.flushing = true;
    const done = (): void => {
      this.flushing = false;
    };
    this.disk.flush().then(done, done);
  }
}

export function decidedNow(p: Peer, s: Session): void {
  s.decided = true;
  s.persistTimer = setInterval(
    () => p.guard(s, 'saving the bitmap', persistBitmapDurably(p, s)),
    BITMAP_PERSIST_MS,
  );
  p.host.holdIo(false);
  p.sendState(s);
  p.host.changed();
}

/**
 * A SyncTarget's cleared bits may reach its metadata only after the data they stand for
 * reached its disk: resync writes are not flushed one by one, and a power loss must not
 * leave a cleared bit over a block that never landed. Elsewhere bits are only set or
 * cleared after the peer's ack, and persisting them needs no flush.
 */
export async function persistBitmapDurably(p: Peer, s: Session | undefined): Promise<void> {
  const meta = p.host.meta;
  if (!meta) return;
  if (s?.syncRole === 'target') {
    try {
      await p.host.backing?.flush();
    } catch (err) {
      p.log.error({ err: (err as Error).message }, 'flush before saving the bitmap failed');
      return;
    }
  }
  if (p.host.meta !== meta) return;
  try {
    meta.persistBitmap();
  } catch (err) {
    // The bits stay dirty in memory and are tried again; the metadata disk is the problem.
    p.log.error({ err: (err as Error).message }, 'saving the bitmap failed');
  }
}

export function targetFinished(p: Peer, s: Session, failedBits: number): void {
  if (p.session !== s) return;
  p.guard(
    s,
    'finishing the resync',
    persistBitmapDurably(p, s).then(() => {
      if (p.session !== s) return;
      s.link.send('resyncDone', { failedBits });
    }),
  );
  if (failedBits > 0) {
    p.log.error({ failedBits }, 'resync finished with blocks that failed; disk stays Inconsistent');
  }
}

export function onResyncDone(
  p: Peer,
  s: Session,
  body: { uuids: Uuids; failedBits: number },
): void {
  const meta = p.host.meta!;
  if (s.syncRole === 'source' && s.resyncSource) {
    const src = s.resyncSource;
    const finish = src.drained().then(() => {
      if (p.session !== s) return;
      if (body.failedBits > 0) {
        endResync(p, s);
        return;
      }
      meta.persistBitmap(() => meta.store.setUuids(finishSyncSource(meta.superblock().uuids)));
      const left = meta.bitmap.count();
      if (left > 0) p.log.warn({ bits: left }, 'resync done but bits remain set here');
      const final = meta.superblock().uuids;
      s.link.send('resyncDone', {
        uuids: {
          current: uuidBytes(final.current),
          bitmap: uuidBytes(final.bitmap),
          history: final.history.map(uuidBytes),
          dirtyBits: left,
          flags: 0,
        },
        failedBits: 0,
      });
      p.disk = 'UpToDate';
      s.peerWasUpToDate = true;
      endResync(p, s);
      p.log.info('resync finished (SyncSource)');
    });
    p.guard(s, 'finishing the resync', finish);
    return;
  }
  if (s.syncRole === 'target') {
    const u = body.uuids;
    const source: GenerationUuids = {
      current: uuidFromBytes(u.current),
      bitmap: uuidFromBytes(u.bitmap),
      history: [uuidFromBytes(u.history[0]!), uuidFromBytes(u.history[1]!)],
    };
    meta.persistBitmap(() =>
      meta.store.setUuids(finishSyncTarget(source, p.host.role === 'Primary')),
    );
    p.host.setDisk('UpToDate');
    endResync(p, s);
    p.log.info('resync finished (SyncTarget)');
    p.host.notify('after-resync-target', p);
    return;
  }
  throw new PeerProtocolError('resync-done outside a resync');
}

export function endResync(p: Peer, s: Session): void {
  clearInterval(s.persistTimer);
  s.persistTimer = undefined;
  s.resyncSource?.stop();
  s.resyncSource = undefined;
  s.resyncTarget?.stop();
  s.resyncTarget = undefined;
  s.syncRole = undefined;
  p.syncStarted = undefined;
  p.replication = 'Established';
  p.sendState(s);
  p.host.changed();
}

export function applyPause(p: Peer, s: Session): void {
  const paused = p.userPaused || p.peerPaused;
  s.resyncTarget?.setPaused(paused);
  if (p.replication === 'SyncSource' && paused) p.replication = 'PausedSyncS';
  else if (p.replication === 'PausedSyncS' && !paused) p.replication = 'SyncSource';
  else if (p.replication === 'SyncTarget' && paused) p.replication = 'PausedSyncT';
  else if (p.replication === 'PausedSyncT' && !paused) p.replication = 'SyncTarget';
  p.host.changed();
}

/** How far the resync with this peer got, while one runs. */
export function syncProgress(p: Peer): SyncProgress | undefined {
  const st = p.syncStarted;
  const meta = p.host.meta;
  if (!st || !meta) return undefined;
  const left = meta.bitmap.count();
  const done = st.bits === 0 ? 100 : Math.max(0, (100 * (st.bits - left)) / st.bits);
  const secs = (Date.now() - st.at) / 1000;
  const rate = secs > 0 ? ((st.bits - left) * 4096) / secs : 0;
  return {
    outOfSync: left * 4096,
    total: st.bits * 4096,
    done: Math.floor(done * 100) / 100,
    rate: Math.round(rate),
    etaSeconds: rate > 0 ? Math.ceil((left * 4096) / rate) : undefined,
  };
}
