import {
  type BlockTarget,
  type Payload,
  payloadLength,
  type TargetCapabilities,
  TargetError,
  type ZeroOptions,
} from '../nbd/target.js';
import type { ChangeKind } from '../replication/transfer-log.js';
import { heldOnceDecided, type IoGate } from './write-path.js';

/**
 * The device of a diskless Primary (`disk none`): every byte lives on the peer. Reads are
 * remote reads; changes go through the transfer log like a diskful Primary's, but with no
 * local copy a change the peer did not take fails (EIO) instead of being marked out of
 * sync; FLUSH waits for the peer's barrier ack. The size is the peer's device size.
 */
export class DisklessTarget implements BlockTarget {
  readonly capabilities: TargetCapabilities = Object.freeze({
    readOnly: false,
    flush: true,
    fua: true,
    trim: true,
    zero: true,
    fastZero: false,
    cache: false,
    // Every connection's changes go through the same transfer log and barrier.
    multiConn: true,
  });

  constructor(
    private readonly gate: IoGate,
    readonly size: number,
  ) {}

  read(buf: Buffer, offset: number): Promise<void> {
    const suspended = this.gate.ioSuspended();
    if (suspended) return suspended.then(() => this.read(buf, offset));
    const denied = this.gate.ioDenied();
    if (denied !== undefined) return Promise.reject(denied);
    const peer = this.gate.readPeer();
    if (!peer) return Promise.reject(new TargetError('EIO', 'no UpToDate peer to read from'));
    return peer.remoteRead(buf, offset).catch((err: Error) => {
      throw new TargetError('EIO', err.message);
    });
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    return this.change('write', offset, payloadLength(data), data, fua);
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.change('trim', offset, length, undefined, fua);
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (opts.fastZero) {
      return Promise.reject(new TargetError('ENOTSUP', 'no fast zeroing through a peer'));
    }
    return this.change('zero', offset, length, undefined, opts.fua);
  }

  async flush(): Promise<void> {
    const held = this.gate.ioHeld;
    if (held) await held;
    const tl = this.gate.replicationLog();
    if (tl && (await tl.barrier())) return;
    const suspended = this.gate.ioSuspended();
    if (suspended) {
      await suspended;
      return this.flush();
    }
    throw new TargetError('EIO', 'the peer holding the data is gone; the flush is not durable');
  }

  private async change(
    kind: ChangeKind,
    offset: number,
    length: number,
    payload: Payload | undefined,
    fua: boolean,
  ): Promise<void> {
    const held = this.gate.ioHeld;
    if (held) await held;
    const suspended = this.gate.ioSuspended();
    if (suspended) {
      await suspended;
      return this.change(kind, offset, length, payload, fua);
    }
    const denied = this.gate.ioDenied();
    if (denied !== undefined) throw denied;
    if (!this.gate.replicationLog()) throw new TargetError('EIO', 'no UpToDate peer to write to');
    this.gate.noteAppIo();
    const lock = this.gate.changeLock;
    const h = await heldOnceDecided(this.gate, offset, length);
    const tl = this.gate.replicationLog();
    if (!tl) {
      lock.release(h);
      throw new TargetError('EIO', 'no UpToDate peer to write to');
    }
    let ok: boolean;
    try {
      // No disk here: the peer's copy is the only one, whatever the protocol.
      ok = await tl.submit(kind, offset, length, payload, fua, () => undefined, true);
    } finally {
      lock.release(h);
    }
    if (ok) return;
    const again = this.gate.ioSuspended();
    if (!again) throw new TargetError('EIO', 'the peer did not take the write');
    await again;
    return this.change(kind, offset, length, payload, fua);
  }
}
