/**
 * A peer's online verify (drbd.md §6.6, replication/verify.ts): `urbdadm verify` here makes
 * this node VerifySource, the peer VerifyTarget. Differing blocks are logged one range a
 * line, marked in both bitmaps and saved; nothing is copied: as in DRBD 8.4, `disconnect`
 * + `connect` resyncs them (the handshake resyncs bits left set, peer-handshake.ts).
 */
import { BM_BLOCK_SIZE } from '../meta/bitmap.js';
import { PeerProtocolError } from '../replication/receiver.js';
import type { MessageBodies } from '../replication/schema.js';
import {
  VerifySource,
  bitsToBlocks,
  blockDigests,
  blockRuns,
  blocksToBits,
  checkDigestAlg,
  compareLocal,
  verifyRange,
  withRange,
} from '../replication/verify.js';
import type { Peer } from './peer.js';
import type { Session } from './peer-session.js';

/** What status shows of a verify: the one running, else the last one. */
export interface VerifyProgress {
  role: 'VerifyS' | 'VerifyT';
  running: boolean;
  alg: string;
  /** Bytes, [start, stop). */
  start: number;
  stop: number;
  /** Percent of the range compared. */
  done: number;
  /** Bytes per second since the start; seconds to go at that rate. */
  rate: number;
  etaSeconds: number | undefined;
  verifiedBlocks: number;
  /** Blocks found out of sync (4 KiB each). */
  outOfSyncBlocks: number;
}

interface VerifyRecord {
  session: Session;
  role: 'VerifyS' | 'VerifyT';
  alg: string;
  start: number;
  stop: number;
  at: number;
  source: VerifySource | undefined;
  /** The target's view: bytes answered, blocks compared, blocks found. */
  doneBytes: number;
  verifiedBlocks: number;
  foundBlocks: number;
  running: boolean;
}

const runs = new WeakMap<Peer, VerifyRecord>();

/** A verify just started on `session`, as either side; nothing compared yet. */
function newRecord(
  session: Session,
  role: VerifyRecord['role'],
  alg: string,
  start: number,
  stop: number,
): VerifyRecord {
  return {
    session,
    role,
    alg,
    start,
    stop,
    at: Date.now(),
    source: undefined,
    doneBytes: 0,
    verifiedBlocks: 0,
    foundBlocks: 0,
    running: true,
  };
}

/** `verify`: refused unless connected, both UpToDate, no resync and verify-alg set. */
export function startVerify(p: Peer, startSector?: number, stopSector?: number): void {
  const s = p.session;
  const meta = p.host.meta;
  const name = p.host.config.net.verifyAlg;
  if (name === undefined) {
    throw new Error(`verify needs verify-alg in the net section of ${p.host.name}`);
  }
  const alg = checkDigestAlg(name);
  if (!s || !s.decided || p.replication !== 'Established') {
    throw new Error(
      `not connected to ${p.name} with no resync running (replication ${p.replication})`,
    );
  }
  if (!meta || p.host.disk !== 'UpToDate' || p.disk !== 'UpToDate') {
    throw new Error(`verify needs both disks UpToDate (here ${p.host.disk}, ${p.name} ${p.disk})`);
  }
  const cur = runs.get(p);
  if (cur?.running && cur.session === s) throw new Error(`a verify with ${p.name} is running`);
  const { start, stop } = verifyRange(startSector, stopSector, meta.sizeBytes);
  // Digests travel the way writes do (verify.ts header).
  const mode =
    p.host.role !== 'Primary' && p.role === 'Primary' ? 'peer-digests' : 'source-digests';
  const backing = p.host.backing!;
  const rec = newRecord(s, 'VerifyS', alg, start, stop);
  rec.source = new VerifySource(p.host.changeLock, alg, mode, start, stop, {
    read: (buf, offset) => backing.read(buf, offset),
    request: (offset, length, digests) => s.link.send('ovRequest', { offset, length, digests }),
    found: (first, end) => markFound(p, first, end),
    result: (offset, length, mismatch) => s.link.send('ovResult', { offset, length, mismatch }),
    failed: (offset, length, error) =>
      p.log.warn({ offset, length, err: error }, 'verify could not compare a range'),
    finished: () => finishSource(p, s, rec),
  });
  runs.set(p, rec);
  s.link.send('ovStart', { start, stop, alg });
  p.log.info({ start, stop, alg, mode }, 'online verify started (VerifyS)');
  p.host.changed();
  rec.source.begin();
}

/** One line per out-of-sync range, in 512-byte sectors as DRBD logs them; both bitmaps. */
function markFound(p: Peer, first: number, end: number): void {
  const meta = p.host.meta;
  if (!meta) return;
  meta.bitmap.setRange(first, end);
  const sector = (first * BM_BLOCK_SIZE) / 512;
  const sectors = ((end - first) * BM_BLOCK_SIZE) / 512;
  p.log.warn(`Out of sync: start=${sector}, size=${sectors} (sectors)`);
}

function finishSource(p: Peer, s: Session, rec: VerifyRecord): void {
  rec.running = false;
  const src = rec.source!;
  rec.verifiedBlocks = src.verifiedBlocks;
  rec.foundBlocks = src.foundBlocks;
  rec.doneBytes = rec.stop - rec.start;
  saveBitmap(p);
  if (p.session === s) {
    s.link.send('ovDone', {
      verifiedBlocks: src.verifiedBlocks,
      foundBlocks: src.foundBlocks,
      aborted: false,
    });
  }
  p.log.info(
    { verifiedBlocks: src.verifiedBlocks, outOfSyncBlocks: src.foundBlocks },
    'online verify finished',
  );
  if (src.foundBlocks > 0) p.host.notify('out-of-sync', p);
  p.host.changed();
}

function saveBitmap(p: Peer): void {
  try {
    p.host.meta?.persistBitmap();
  } catch (err) {
    p.log.error({ err: (err as Error).message }, 'saving the bitmap after verify failed');
  }
}

type OvMessage =
  | { type: 'ovStart'; body: MessageBodies['ovStart'] }
  | { type: 'ovRequest'; body: MessageBodies['ovRequest'] }
  | { type: 'ovReply'; body: MessageBodies['ovReply'] }
  | { type: 'ovResult'; body: MessageBodies['ovResult'] }
  | { type: 'ovDone'; body: MessageBodies['ovDone'] };

export function onVerifyMessage(p: Peer, s: Session, msg: OvMessage): void {
  const rec = runs.get(p);
  switch (msg.type) {
    case 'ovStart': {
      const meta = p.host.meta;
      if (!meta) throw new PeerProtocolError('verify request on a node without a disk');
      let alg: string;
      try {
        alg = checkDigestAlg(msg.body.alg);
      } catch (err) {
        throw new PeerProtocolError((err as Error).message);
      }
      runs.set(p, newRecord(s, 'VerifyT', alg, msg.body.start, msg.body.stop));
      p.log.info(
        { start: msg.body.start, stop: msg.body.stop, alg },
        'online verify started (VerifyT)',
      );
      p.host.changed();
      return;
    }
    case 'ovRequest': {
      if (!rec || rec.session !== s || rec.role !== 'VerifyT' || !rec.running) {
        throw new PeerProtocolError('verify request outside a verify');
      }
      return answerRequest(p, s, rec, msg.body);
    }
    case 'ovReply':
      if (rec?.session !== s || !rec.source) return;
      return rec.source.onReply(msg.body.offset, msg.body.length, msg.body);
    case 'ovResult': {
      if (rec?.session !== s || rec.role !== 'VerifyT') return;
      const blocks = bitsToBlocks(msg.body.mismatch, Math.ceil(msg.body.length / BM_BLOCK_SIZE));
      rec.foundBlocks += blocks.length;
      const first = msg.body.offset / BM_BLOCK_SIZE;
      for (const [a, b] of blockRuns(blocks)) p.host.meta?.bitmap.setRange(first + a, first + b);
      return;
    }
    case 'ovDone':
      if (rec?.session !== s || rec.role !== 'VerifyT') return;
      rec.running = false;
      rec.doneBytes = rec.stop - rec.start;
      rec.foundBlocks = msg.body.foundBlocks;
      rec.verifiedBlocks = msg.body.verifiedBlocks;
      saveBitmap(p);
      p.log.info(
        { verifiedBlocks: msg.body.verifiedBlocks, outOfSyncBlocks: msg.body.foundBlocks },
        'online verify finished (VerifyT)',
      );
      p.host.changed();
      return;
  }
}

/**
 * The VerifyTarget's half. With digests: compare under the range, mark and answer a bitset.
 * Without: hash under the range and answer the digests before letting go of it, so they are
 * ordered with this node's writes on the data socket.
 */
function answerRequest(
  p: Peer,
  s: Session,
  rec: VerifyRecord,
  req: MessageBodies['ovRequest'],
): void {
  const { offset, length } = req;
  const meta = p.host.meta;
  const backing = p.host.backing;
  if (
    !meta ||
    !backing ||
    offset % BM_BLOCK_SIZE !== 0 ||
    length <= 0 ||
    length > 64 * BM_BLOCK_SIZE ||
    offset + length > meta.sizeBytes
  ) {
    throw new PeerProtocolError(`verify request ${offset}+${length} is outside the device`);
  }
  const blocks = Math.ceil(length / BM_BLOCK_SIZE);
  const answered = (): void => {
    rec.doneBytes += length;
    rec.verifiedBlocks += blocks;
  };
  const fail = (err: Error): void => {
    if (p.session !== s) return;
    const error = (err as { code?: string }).code ?? 'EIO';
    s.link.send('ovReply', { offset, length, error });
  };
  const read = (buf: Buffer, at: number): Promise<void> => backing.read(buf, at);
  if (req.digests.length > 0) {
    const theirs = Buffer.from(req.digests);
    compareLocal(p.host.changeLock, read, rec.alg, offset, length, theirs).then((differ) => {
      if (p.session !== s) return;
      const first = offset / BM_BLOCK_SIZE;
      for (const [a, b] of blockRuns(differ)) meta.bitmap.setRange(first + a, first + b);
      rec.foundBlocks += differ.length;
      answered();
      s.link.send('ovReply', { offset, length, mismatch: blocksToBits(differ, blocks) });
    }, fail);
    return;
  }
  withRange(p.host.changeLock, offset, length, async () => {
    const buf = Buffer.allocUnsafe(length);
    await backing.read(buf, offset);
    if (p.session !== s) return;
    answered();
    s.link.send('ovReply', { offset, length, digests: blockDigests(buf, rec.alg) });
  }).catch(fail);
}

/** The session ended: a verify running on it stops (its findings so far stay marked). */
export function endVerify(p: Peer, s: Session): void {
  const rec = runs.get(p);
  if (!rec || rec.session !== s || !rec.running) return;
  rec.running = false;
  rec.source?.halt();
  if (rec.source) {
    rec.verifiedBlocks = rec.source.verifiedBlocks;
    rec.foundBlocks = rec.source.foundBlocks;
    rec.doneBytes = rec.source.doneBytes;
  }
  saveBitmap(p);
  p.log.warn('online verify stopped: the connection ended');
}

/** VerifyS / VerifyT while a verify runs with this peer on the current session. */
export function verifyState(p: Peer): 'VerifyS' | 'VerifyT' | undefined {
  const rec = runs.get(p);
  return rec?.running && rec.session === p.session ? rec.role : undefined;
}

export function verifyProgress(p: Peer): VerifyProgress | undefined {
  const rec = runs.get(p);
  if (!rec) return undefined;
  const src = rec.source;
  const running = rec.running && rec.session === p.session;
  const doneBytes = src && running ? src.doneBytes : rec.doneBytes;
  const total = rec.stop - rec.start;
  const secs = (Date.now() - rec.at) / 1000;
  const rate = secs > 0 ? doneBytes / secs : 0;
  return {
    role: rec.role,
    running,
    alg: rec.alg,
    start: rec.start,
    stop: rec.stop,
    done: Math.floor((10000 * doneBytes) / total) / 100,
    rate: Math.round(rate),
    etaSeconds: running && rate > 0 ? Math.ceil((total - doneBytes) / rate) : undefined,
    verifiedBlocks: src && running ? src.verifiedBlocks : rec.verifiedBlocks,
    outOfSyncBlocks: src && running ? src.foundBlocks : rec.foundBlocks,
  };
}
