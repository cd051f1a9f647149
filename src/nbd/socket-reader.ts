import net from 'node:net';

/** Where socket reads land, and who hears of them. */
export interface ReadTarget {
  /** The buffer the next read may fill (as much of it as the kernel has data for). */
  nextBuffer(): Buffer;
  /** `n` bytes arrived at the start of `buf`. */
  received(n: number, buf: Buffer): void;
}

/**
 * Node reads a socket 64 KiB at a time, each read into a fresh Buffer that then travels through
 * the stream machinery; for a 1 MiB NBD WRITE that is 16 reads, 16 allocations and a join. A
 * socket made with `onread` reads into buffers of our choosing instead, as much as the kernel
 * has: a large payload then lands straight in the Buffer that goes to the disk. net.Server has
 * no such option for accepted sockets, so the accepted handle moves into a Socket made with one.
 *
 * That move leans on Socket internals (`_handle`, `_server`). Where they are not as expected the
 * socket is kept as it is and its 'data' events feed `target`, so the protocol code sees the
 * same calls either way. The server must be created with `pauseOnConnect`, so that nothing is
 * read before the move.
 */
export function readInto(
  socket: net.Socket,
  target: ReadTarget,
  allowHalfOpen: boolean,
): net.Socket {
  const internal = socket as unknown as InternalSocket;
  const handle = internal._handle;
  if (handle && typeof handle.useUserBuffer === 'function' && !streamReadsForced()) {
    internal._handle = null;
    const adopted = new net.Socket({
      handle,
      allowHalfOpen,
      readable: true,
      writable: true,
      onread: {
        buffer: () => target.nextBuffer(),
        callback: (n: number, buf: Uint8Array) => target.received(n, buf as Buffer),
      },
    } as net.SocketConstructorOpts);
    // The server counts open connections through `_server`; the old object must not
    // decrement it a second time.
    const moved = adopted as unknown as InternalSocket;
    moved._server = internal._server;
    moved.server = internal._server;
    internal._server = null;
    return adopted;
  }
  socket.on('data', (chunk: Buffer) => target.received(chunk.length, chunk));
  socket.resume();
  return socket;
}

/**
 * URBD_NBD_STREAM_READS=1 keeps Node's own reads: the escape hatch should a Node release
 * change the internals above, and how the tests cover that path.
 */
function streamReadsForced(): boolean {
  return process.env.URBD_NBD_STREAM_READS === '1';
}

interface InternalSocket {
  _handle: { useUserBuffer?: unknown } | null;
  _server: unknown;
  server: unknown;
}

/**
 * The memory socket reads land in, for a ReadTarget: either a buffer the caller wants filled
 * directly (the rest of a large payload), or scratch space carved front to back and replaced
 * when little is left, so that views of earlier reads stay valid as long as someone holds them.
 * With `reuse`, every read lands at the start of the same scratch instead: for a target that
 * keeps nothing of a read once received() returns (the peer FrameReader), which spares the
 * kernel faulting in and zeroing fresh pages for every read.
 */
export class ReadSpace {
  private scratch: Buffer;
  private used = 0;
  private handed: Buffer | undefined;
  private handedDirect = false;

  constructor(
    private readonly scratchSize = 256 * 1024,
    /** Less scratch than this left: a fresh one (a read of a few bytes is a waste of a syscall). */
    private readonly minRead = 64 * 1024,
    private readonly reuse = false,
  ) {
    this.scratch = Buffer.allocUnsafe(scratchSize);
  }

  /** The buffer for the next read: `direct` if given, else scratch (at most `limit` bytes). */
  next(direct: Buffer | undefined, limit?: number): Buffer {
    if (direct !== undefined && direct.length > 0) {
      this.handed = direct;
      this.handedDirect = true;
      return direct;
    }
    if (this.reuse) {
      this.used = 0;
    } else if (this.scratch.length - this.used < this.minRead) {
      this.scratch = Buffer.allocUnsafe(this.scratchSize);
      this.used = 0;
    }
    const end = limit === undefined ? this.scratch.length : this.used + limit;
    this.handed = this.scratch.subarray(this.used, end);
    this.handedDirect = false;
    return this.handed;
  }

  /**
   * `n` bytes arrived in `buf`: undefined when they went into the direct buffer, else a view of
   * them (in our scratch, or in a chunk of Node's own when the socket reads the usual way).
   */
  landed(n: number, buf: Buffer): Buffer | undefined {
    if (buf === this.handed && this.handedDirect) {
      this.handed = undefined;
      return undefined;
    }
    let view: Buffer;
    if (buf === this.handed) {
      view = this.scratch.subarray(this.used, this.used + n);
      this.used += n;
    } else {
      view = n === buf.length ? buf : buf.subarray(0, n);
    }
    this.handed = undefined;
    return view;
  }
}
