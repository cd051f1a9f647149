/**
 * The read side of a peer socket: where the kernel puts the bytes, and the FrameDecoder they
 * go to.
 *
 * Node reads a socket 64 KiB at a time into a fresh Buffer per read; a 1 MiB replicated write
 * or resync reply was then 16 reads, 16 allocations and a copy into one more fresh Buffer,
 * and the garbage collector took a sixth of the secondary's time (docs/performance.md). A
 * socket made with `onread` reads into buffers of our choosing instead, as much as the kernel
 * has (as the NBD server does, src/nbd/socket-reader.ts):
 * - the rest of a large payload is read straight into the pooled Buffer the decoder
 *   assembles it in, which then goes to the disk and back to the pool;
 * - everything else lands in one 256 KiB scratch Buffer, the same one for every read: the
 *   decoder copies out whatever it hands on or keeps (control messages, payloads, the start
 *   of a frame cut by the read), so nothing refers to the scratch once a read is decoded.
 *   Fresh scratch per read (as before) made the kernel fault in and zero every page it
 *   copied into: a 1 % bitmap resync's 10 MiB took the SyncTarget ~67 ms to receive, against
 *   ~24 ms into reused scratch; the copies cost a memcpy of what is small anyway.
 * After a payload read directly, the next read is kept small: it is most likely the next
 * frame's header and control message, and a large read would copy the start of the next
 * payload through scratch.
 */
import type { OnReadOpts } from 'node:net';
import { ReadSpace, type ReadTarget } from '../nbd/socket-reader.js';
import { FrameDecoder, type Frame, type FrameLimits } from './frame.js';

/** A frame's header and control message fit this with room to spare (a data or rsReply is ~40 bytes). */
const AFTER_PAYLOAD_READ = 4096;

export class FrameReader implements ReadTarget {
  readonly decoder: FrameDecoder;
  /** Where decoded frames go (set by the FrameChannel that owns this reader). */
  onFrame: (frame: Frame) => void = () => {};
  /**
   * What a socket read made with `onread` reports to: received() until the FrameChannel that
   * owns this reader takes the reads (it checks its own state and catches FrameError).
   */
  sink: (n: number, buf: Buffer) => void = (n, buf) => this.received(n, buf);
  private readonly space = new ReadSpace(256 * 1024, 64 * 1024, true);
  private afterPayload = false;

  constructor(limits?: FrameLimits) {
    this.decoder = new FrameDecoder((f) => this.onFrame(f), limits, undefined, { copyOut: true });
  }

  /** The `onread` option for net.connect / new net.Socket. */
  get onread(): OnReadOpts {
    return {
      buffer: () => this.nextBuffer(),
      // true: reading goes on; flow control is the channel's pause()/resume().
      callback: (n, buf) => {
        this.sink(n, buf as Buffer);
        return true;
      },
    };
  }

  nextBuffer(): Buffer {
    return this.space.next(
      this.decoder.payloadSpace(),
      this.afterPayload ? AFTER_PAYLOAD_READ : undefined,
    );
  }

  /**
   * `n` bytes arrived in `buf`: our direct payload space, our scratch, or (on a socket that
   * reads the usual way) a fresh chunk of Node's. Throws FrameError for bad input.
   */
  received(n: number, buf: Buffer): void {
    if (n <= 0) return;
    const view = this.space.landed(n, buf);
    this.afterPayload = view === undefined;
    if (view === undefined) this.decoder.payloadReceived(n);
    else this.decoder.push(view);
  }
}
