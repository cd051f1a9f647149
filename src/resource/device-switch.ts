/**
 * What an NBD connection holds on to: a target that stays put while the disk behind the
 * export comes and goes. A connection keeps its target for its whole life (nbd/target.ts),
 * but a Primary that detaches its disk, by command or after an I/O error, must go on
 * serving the same connections through its peer (drbd.md §1.2 detach). So each connection
 * gets a SwitchedTarget, which hands every request to whatever serves the device now (the
 * write path over the disk, or a diskless node's peer), and the switch can hold new
 * requests while the disk changes under them.
 */
import {
  type BlockTarget,
  type Extent,
  type Payload,
  type TargetCapabilities,
  TargetError,
  type ZeroOptions,
} from '../nbd/target.js';

/**
 * A target that was taken out of service (its disk is being detached) rejects the requests
 * it has not started with this: the switch hands them to the target that replaces it.
 */
export class TargetRetired extends Error {
  constructor() {
    super('the disk behind this target was detached');
    this.name = 'TargetRetired';
  }
}

export class DeviceSwitch {
  private gate: { promise: Promise<void>; release: () => void } | undefined;

  /** `current` names what serves the device now; it throws when nothing can. */
  constructor(private readonly current: () => BlockTarget) {}

  /** New requests wait (they are not refused) until release(). */
  hold(): void {
    if (this.gate) return;
    try {
      const t = this.current();
      this.last = { size: t.size, capabilities: t.capabilities };
    } catch {
      // Nothing serves the device now: connections are refused as before.
    }
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.gate = { promise, release };
  }

  release(): void {
    const g = this.gate;
    this.gate = undefined;
    g?.release();
  }

  get held(): boolean {
    return this.gate !== undefined;
  }

  /**
   * The target for one new connection: size and capabilities are those of what serves the
   * device now, fixed for the connection as NBD wants; each request goes to what serves it
   * when the request runs.
   */
  connectionTarget(): BlockTarget {
    let first: Shape;
    try {
      first = this.current();
      this.last = { size: first.size, capabilities: first.capabilities };
    } catch (err) {
      // Between the disk going and the peer serving again nothing serves the device; a
      // client connecting then gets the device as it was, and waits for the release.
      if (!this.gate || !this.last) throw err;
      first = this.last;
    }
    return new SwitchedTarget(this, first);
  }

  /** The size and capabilities of the device the last connection was given. */
  private last: Shape | undefined;

  /**
   * Runs `op` on the target serving now. Held requests wait for release(); a request the old
   * target had not started when it was retired runs again on its successor.
   */
  forward<T>(op: (t: BlockTarget) => Promise<T>): Promise<T> {
    const gate = this.gate;
    if (gate) return gate.promise.then(() => this.forward(op));
    let target: BlockTarget;
    try {
      target = this.current();
    } catch (err) {
      return Promise.reject(new TargetError('EIO', (err as Error).message));
    }
    return op(target).catch((err: unknown) => {
      if (err instanceof TargetRetired) return this.forward(op);
      throw err;
    });
  }
}

type Shape = Pick<BlockTarget, 'size' | 'capabilities'>;

class SwitchedTarget implements BlockTarget {
  readonly size: number;
  readonly capabilities: TargetCapabilities;

  constructor(
    private readonly sw: DeviceSwitch,
    first: Shape,
  ) {
    this.size = first.size;
    this.capabilities = first.capabilities;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.sw.forward((t) => t.read(buf, offset));
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    return this.sw.forward((t) => t.write(data, offset, fua));
  }

  flush(): Promise<void> {
    return this.sw.forward((t) => t.flush());
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.sw.forward((t) => t.trim(offset, length, fua));
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    // The peer cannot zero fast: a fast zero asked of it is refused (ENOTSUP), as NBD allows.
    return this.sw.forward((t) => t.zero(offset, length, opts));
  }

  cache(offset: number, length: number): Promise<void> {
    return this.sw.forward((t) => (t.cache ? t.cache(offset, length) : Promise.resolve()));
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.sw.forward((t) =>
      t.extents
        ? t.extents(offset, length)
        : Promise.resolve([{ length, hole: false, zero: false }]),
    );
  }
}
