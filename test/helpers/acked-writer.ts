/**
 * Writers that remember what the device acknowledged. Every change (write, FUA write, trim,
 * write-zeroes) goes to one 4 KiB block of a region, never two at once to the same block
 * (NBD orders nothing between overlapping requests in flight), and the ledger keeps, per
 * block, each change's content hash and whether the server acknowledged it. At the end a
 * disk image must hold, in every block, the last acknowledged change or a later one (a
 * failed or unanswered change may or may not have landed): protocol C's promise, checked
 * block by block.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CMD, CMD_FLAG, openExport, type RawNbdClient } from './raw-client.js';

export const BLOCK = 4096;
const ZERO = 'zero';

type OpState = 'pending' | 'acked' | 'failed';

interface Op {
  kind: 'write' | 'trim' | 'zero';
  hash: string;
  state: OpState;
  /** Who issued it, for the report. */
  label: string;
}

/** A small seeded generator (mulberry32): the same seed gives the same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashOf(block: Buffer): string {
  for (let i = 0; i < block.length; i++) {
    if (block[i] !== 0) return createHash('sha1').update(block).digest('hex');
  }
  return ZERO;
}

export class AckLedger {
  /** Per block, every change issued to it, in issue order. */
  private readonly ops: Op[][];
  private readonly busy = new Set<number>();

  constructor(readonly blocks: number) {
    this.ops = Array.from({ length: blocks }, () => []);
  }

  get counts(): Record<OpState, number> {
    const c = { pending: 0, acked: 0, failed: 0 };
    for (const list of this.ops) for (const o of list) c[o.state]++;
    return c;
  }

  /** A block with nothing in flight, or undefined when all are busy. */
  pickFree(rand: () => number): number | undefined {
    for (let tries = 0; tries < 16; tries++) {
      const b = Math.floor(rand() * this.blocks);
      if (!this.busy.has(b)) return b;
    }
    return undefined;
  }

  begin(block: number, kind: Op['kind'], hash: string, label: string): Op {
    const op: Op = { kind, hash, state: 'pending', label };
    this.ops[block]!.push(op);
    this.busy.add(block);
    return op;
  }

  end(block: number, op: Op, ok: boolean): void {
    op.state = ok ? 'acked' : 'failed';
    this.busy.delete(block);
  }

  /**
   * Every block of `file` (from byte `base`) holds its last acknowledged change or a later
   * one. Returns one line per block that does not (empty: all good).
   */
  async check(file: string, base = 0): Promise<string[]> {
    const fh = await open(file, 'r');
    const bad: string[] = [];
    try {
      const buf = Buffer.alloc(BLOCK * 256);
      for (let first = 0; first < this.blocks; first += 256) {
        const n = Math.min(256, this.blocks - first);
        await fh.read(buf, 0, n * BLOCK, base + first * BLOCK);
        for (let i = 0; i < n; i++) {
          const b = first + i;
          const list = this.ops[b]!;
          let last = -1;
          for (let k = list.length - 1; k >= 0; k--) {
            if (list[k]!.state === 'acked') {
              last = k;
              break;
            }
          }
          const have = hashOf(buf.subarray(i * BLOCK, (i + 1) * BLOCK));
          // Before any acknowledged change the block may still hold its first contents
          // (zeroes: the campaigns start from fresh disks).
          const allowed = new Set(list.slice(Math.max(last, 0)).map((o) => o.hash));
          if (last === -1) allowed.add(ZERO);
          if (allowed.has(have)) continue;
          const found = list.findIndex((o) => o.hash === have);
          const lastOp = list[last]!;
          bad.push(
            `block ${b}: holds ${found === -1 ? 'unknown data' : `change #${found} (${list[found]!.kind}, ${list[found]!.state}, ${list[found]!.label})`} but change #${last} (${lastOp.kind} by ${lastOp.label}) of ${list.length} was acknowledged`,
          );
        }
      }
    } finally {
      await fh.close();
    }
    return bad;
  }
}

export interface WriterOptions {
  /** nbd+unix:// or nbd:// URI of the export. */
  uri: string;
  ledger: AckLedger;
  rand: () => number;
  /** Requests in flight at once. */
  depth: number;
  /** Shares of each kind of request (the rest are plain writes). */
  fuaShare?: number;
  trimShare?: number;
  zeroShare?: number;
  flushShare?: number;
  label: string;
}

export interface Writer {
  /** Stops issuing; resolves once every request in flight was answered or the link died. */
  stop(): Promise<{ acked: number; failed: number; flushes: number }>;
  /** Resolves when the server closed the connection (or stop() finished). */
  readonly ended: Promise<void>;
  /** Acknowledged changes so far. */
  readonly acked: number;
}

/**
 * Opens the export and keeps `depth` changes in flight until stop() or until the server
 * goes away. Replies are matched by cookie; a request never answered counts as failed.
 */
export async function startWriter(o: WriterOptions): Promise<Writer> {
  const { client } = await openExport(o.uri);
  return new RunningWriter(client, o);
}

class RunningWriter implements Writer {
  acked = 0;
  private failed = 0;
  private flushes = 0;
  private stopping = false;
  private readonly waiting = new Map<bigint, (error: number) => void>();
  private cookie = 1n;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  readonly ended: Promise<void>;

  constructor(
    private readonly client: RawNbdClient,
    private readonly o: WriterOptions,
  ) {
    this.ended = this.readReplies();
    for (let i = 0; i < o.depth; i++) this.next();
  }

  private async readReplies(): Promise<void> {
    try {
      for (;;) {
        const r = await this.client.readReply(() => 0, 3_600_000);
        const done = this.waiting.get(r.cookie);
        if (!done) throw new Error(`reply for unknown cookie ${r.cookie}`);
        this.waiting.delete(r.cookie);
        done(r.kind === 'simple' ? r.error : -1);
      }
    } catch {
      // The server went away (or we closed): whatever is unanswered has failed.
      for (const done of this.waiting.values()) done(-1);
      this.waiting.clear();
      this.stopping = true;
    }
  }

  private send(type: number, offset: number, length: number, flags: number, payload?: Buffer) {
    const cookie = this.cookie++;
    const answered = new Promise<number>((resolve) => this.waiting.set(cookie, resolve));
    this.client
      .send({ type, offset, length, flags, cookie, ...(payload ? { payload } : {}) })
      .catch(() => {
        const done = this.waiting.get(cookie);
        this.waiting.delete(cookie);
        done?.(-1);
      });
    return answered;
  }

  private next(): void {
    if (this.stopping) return;
    const o = this.o;
    const r = o.rand();
    let p: Promise<void>;
    if (r < (o.flushShare ?? 0)) {
      p = this.send(CMD.FLUSH, 0, 0, 0).then((err) => {
        if (err === 0) this.flushes++;
      });
    } else {
      const block = o.ledger.pickFree(o.rand);
      if (block === undefined) {
        // Everything is busy: try again when something completes.
        return;
      }
      const k = o.rand();
      const trim = o.trimShare ?? 0;
      const zero = o.zeroShare ?? 0;
      const offset = block * BLOCK;
      let op;
      if (k < trim) {
        op = o.ledger.begin(block, 'trim', ZERO, o.label);
        p = this.finish(block, op, this.send(CMD.TRIM, offset, BLOCK, 0));
      } else if (k < trim + zero) {
        op = o.ledger.begin(block, 'zero', ZERO, o.label);
        p = this.finish(block, op, this.send(CMD.WRITE_ZEROES, offset, BLOCK, 0));
      } else {
        const data = randomBytes(BLOCK);
        data.writeUInt32BE(block, 0);
        const fua = o.rand() < (o.fuaShare ?? 0) ? CMD_FLAG.FUA : 0;
        op = o.ledger.begin(block, 'write', hashOf(data), o.label);
        p = this.finish(block, op, this.send(CMD.WRITE, offset, BLOCK, fua, data));
      }
    }
    this.inFlight++;
    void p.then(() => {
      this.inFlight--;
      if (this.inFlight === 0) this.idle?.();
      this.next();
    });
  }

  private async finish(
    block: number,
    op: Parameters<AckLedger['end']>[1],
    answered: Promise<number>,
  ): Promise<void> {
    const err = await answered;
    this.o.ledger.end(block, op, err === 0);
    if (err === 0) this.acked++;
    else this.failed++;
  }

  /**
   * Stops issuing and waits up to `graceMs` for the answers in flight; a server that does
   * not answer by then (stopped, black-holed) has its connection dropped, and what it never
   * answered counts as failed.
   */
  async stop(graceMs = 20000): Promise<{ acked: number; failed: number; flushes: number }> {
    this.stopping = true;
    const drained = (): Promise<void> =>
      this.inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (this.idle = r));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drained(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.client.destroy();
    await this.ended;
    await drained();
    return { acked: this.acked, failed: this.failed, flushes: this.flushes };
  }
}
