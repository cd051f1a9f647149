/**
 * A peer's part in the write path (§5): the receiver that applies the replicated writes of
 * a Primary here, and reads served to or asked of a peer whose disk is UpToDate when ours
 * is not.
 */
import { releasePayload } from '../replication/frame.js';
import { Receiver, PeerProtocolError } from '../replication/receiver.js';
import type { Peer } from './peer.js';
import type { Session } from './peer-session.js';

export function makeReceiver(p: Peer, s: Session): Receiver {
  const meta = p.host.meta!;
  const backing = p.host.backing!;
  return new Receiver(
    backing,
    meta.sizeBytes,
    p.host.changeLock,
    {
      recvAck: (seq) => s.link.send('recvAck', { seq }),
      writeAck: (seq) => s.link.send('writeAck', { seq }),
      negAck: (seq, error) => s.link.send('negAck', { seq, error }),
      barrierAck: (epoch, writes) => s.link.send('barrierAck', { epoch, writes }),
    },
    { pause: () => s.link.pauseData(), resume: () => s.link.resumeData() },
    (offset, length, err) => {
      meta.markOutOfSync(offset, length);
      p.log.error({ offset, length, err: err.message }, 'replicated write failed locally');
      p.host.localIoFailed(err);
    },
    (err) => {
      p.log.error({ err: err.message }, 'flush for a barrier failed');
      p.endSession(`local flush failed: ${err.message}`, 'TearDown', false);
    },
  );
}

export function serveRead(
  p: Peer,
  s: Session,
  r: { id: number; offset: number; length: number },
): void {
  const backing = p.host.backing;
  const meta = p.host.meta;
  if (!backing || !meta || p.host.disk !== 'UpToDate') {
    s.link.send('readReply', { id: r.id, error: `no UpToDate data on ${p.host.node}` });
    return;
  }
  if (r.length <= 0 || r.length > 32 << 20 || r.offset + r.length > meta.sizeBytes) {
    throw new PeerProtocolError(`read request ${r.offset}+${r.length} is outside the device`);
  }
  const buf = Buffer.allocUnsafe(r.length);
  backing.read(buf, r.offset).then(
    () => s.link.send('readReply', { id: r.id, error: '' }, buf),
    (err: Error) => s.link.send('readReply', { id: r.id, error: err.message }),
  );
}

export function onReadReply(
  s: Session,
  r: { id: number; error: string },
  payload: Buffer | undefined,
  pooled = false,
): void {
  const pending = s.reads.get(r.id);
  if (!pending) throw new PeerProtocolError(`read reply #${r.id} for no request`);
  s.reads.delete(r.id);
  if (r.error !== '' || !payload || payload.length !== pending.buf.length) {
    pending.reject(new Error(`remote read failed: ${r.error || 'short reply'}`));
    return;
  }
  payload.copy(pending.buf);
  releasePayload(payload, pooled);
  pending.resolve();
}

/** Reads from the peer, for a node whose own disk is not UpToDate. */
export function remoteRead(p: Peer, buf: Buffer, offset: number): Promise<void> {
  const s = p.session;
  if (!s || !p.canRead) return Promise.reject(new Error(`peer ${p.name} cannot serve reads`));
  const id = s.nextReadId++;
  return new Promise<void>((resolve, reject) => {
    s.reads.set(id, { buf, resolve, reject });
    s.link.send('readRequest', { id, offset, length: buf.length });
  });
}
