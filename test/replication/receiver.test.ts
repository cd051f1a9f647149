// Receiver (src/replication/receiver.ts, drbd.md §5.2-§5.3): the secondary's side of
// replication, against an in-memory disk whose operations complete only when the test says
// so. Checks that bad frames throw PeerProtocolError before anything is applied or acked,
// the acks per flag, that overlapping changes reach the disk in arrival order even when the
// disk completes out of order, and that a barrier is acked only after every earlier change
// completed and the flush that followed resolved.
import fc from 'fast-check';
import t, { type Test } from 'tap';

import type { Payload, ZeroOptions } from '../../src/nbd/target.js';
import { IntervalLock } from '../../src/replication/interval-lock.js';
import {
  PeerProtocolError,
  Receiver,
  type ReceiverAcks,
  type ReceiverDisk,
  type ReceiverFlow,
} from '../../src/replication/receiver.js';
import {
  type Data,
  DATA_FLAG_FUA,
  DATA_FLAG_RECV_ACK,
  DATA_FLAG_TRIM,
  DATA_FLAG_WRITE_ACK,
  DATA_FLAG_ZERO,
} from '../../src/replication/schema.js';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

// ---- fakes ---------------------------------------------------------------------------------

interface DiskOp {
  kind: 'write' | 'trim' | 'zero' | 'flush';
  offset: number;
  length: number;
  fua: boolean;
  zeroOpts?: ZeroOptions;
  data?: Buffer;
  /** The payload exactly as the receiver passed it. */
  src?: Payload;
  state: 'pending' | 'done' | 'failed';
  complete: () => void;
  fail: (err: Error) => void;
}

/**
 * A disk in memory. Each call returns a promise that settles only when the test calls
 * complete()/fail() on the op (or, with a `schedule` hook, when that hook's promise does);
 * the bytes change at completion, so out-of-order completion shows up in `mem`.
 */
class FakeDisk implements ReceiverDisk {
  readonly mem: Buffer;
  readonly ops: DiskOp[] = [];

  constructor(
    size: number,
    private readonly schedule?: (op: DiskOp) => void,
  ) {
    this.mem = Buffer.alloc(size, 0xaa);
  }

  write(data: Payload, offset: number, fua: boolean): Promise<void> {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
    return this.op({
      kind: 'write',
      offset,
      length: buf.length,
      fua,
      data: Buffer.from(buf),
      src: data,
    });
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.op({ kind: 'trim', offset, length, fua });
  }

  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    return this.op({ kind: 'zero', offset, length, fua: opts.fua, zeroOpts: opts });
  }

  flush(): Promise<void> {
    return this.op({ kind: 'flush', offset: 0, length: 0, fua: false });
  }

  pending(kind?: DiskOp['kind']): DiskOp[] {
    return this.ops.filter((o) => o.state === 'pending' && (kind === undefined || o.kind === kind));
  }

  private op(o: Omit<DiskOp, 'state' | 'complete' | 'fail'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const op: DiskOp = {
        ...o,
        state: 'pending',
        complete: () => {
          if (op.state !== 'pending') throw new Error('op settled twice');
          op.state = 'done';
          if (op.kind === 'write') op.data!.copy(this.mem, op.offset);
          else if (op.kind !== 'flush') this.mem.fill(0, op.offset, op.offset + op.length);
          resolve();
        },
        fail: (err) => {
          if (op.state !== 'pending') throw new Error('op settled twice');
          op.state = 'failed';
          reject(err);
        },
      };
      this.ops.push(op);
      this.schedule?.(op);
    });
  }
}

/** Acks, flow control and failure callbacks, all recorded in one ordered log. */
class Recorder implements ReceiverAcks, ReceiverFlow {
  readonly log: string[] = [];
  readonly failures: Array<{ offset: number; length: number; err: Error }> = [];
  readonly flushErrors: Error[] = [];
  onBarrierAck?: (epoch: number, writes: number) => void;

  recvAck(seq: number): void {
    this.log.push(`recv ${seq}`);
  }
  writeAck(seq: number): void {
    this.log.push(`write ${seq}`);
  }
  negAck(seq: number, error: string): void {
    this.log.push(`neg ${seq} ${error}`);
  }
  barrierAck(epoch: number, writes: number): void {
    this.log.push(`barrier ${epoch}/${writes}`);
    this.onBarrierAck?.(epoch, writes);
  }
  pause(): void {
    this.log.push('pause');
  }
  resume(): void {
    this.log.push('resume');
  }
  localFailure = (offset: number, length: number, err: Error): void => {
    this.failures.push({ offset, length, err });
    this.log.push(`local-failure ${offset}+${length}`);
  };
  flushFailed = (err: Error): void => {
    this.flushErrors.push(err);
    this.log.push(`flush-failed ${err.message}`);
  };
}

const SIZE = 1 << 20;

function setup(size = SIZE, schedule?: (op: DiskOp) => void) {
  const disk = new FakeDisk(size, schedule);
  const rec = new Recorder();
  const lock = new IntervalLock();
  const rx = new Receiver(disk, size, lock, rec, rec, rec.localFailure, rec.flushFailed);
  return { disk, rec, lock, rx };
}

const data = (seq: number, offset: number, length: number, flags = 0): Data => ({
  seq,
  epoch: 1,
  offset,
  length,
  flags,
});

const bytes = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

function throwsProtocol(t: Test, fn: () => void, match: RegExp, msg: string): void {
  try {
    fn();
    t.fail(`${msg}: did not throw`);
  } catch (err) {
    t.ok(err instanceof PeerProtocolError, `${msg}: a PeerProtocolError`);
    t.equal((err as Error).name, 'PeerProtocolError');
    t.match((err as Error).message, match, msg);
  }
}

// ---- frame checks --------------------------------------------------------------------------

t.test('sequence numbers: a gap or a replay throws and applies nothing', async (t) => {
  const { disk, rec, rx } = setup();
  throwsProtocol(
    t,
    () => rx.onData(data(2, 0, 4, DATA_FLAG_RECV_ACK), bytes(4, 1)),
    /expected #1, got #2/,
    'the first change must be #1',
  );
  t.equal(disk.ops.length, 0);
  t.same(rec.log, [], 'not even a RecvAck');
  rx.onData(data(1, 0, 4, DATA_FLAG_RECV_ACK), bytes(4, 1));
  throwsProtocol(t, () => rx.onData(data(1, 0, 4), bytes(4, 2)), /expected #2, got #1/, 'replay');
  throwsProtocol(t, () => rx.onData(data(3, 0, 4), bytes(4, 3)), /expected #2, got #3/, 'gap');
  throwsProtocol(t, () => rx.onData(data(0, 0, 4), bytes(4, 3)), /expected #2, got #0/, 'zero');
  t.equal(disk.ops.length, 1, 'only #1 reached the disk');
  rx.onData(data(2, 8, 4), bytes(4, 2));
  t.equal(disk.ops.length, 2, '#2 is still accepted after the refused frames');
});

t.test('bounds: outside the device throws and applies nothing', async (t) => {
  const { disk, rec, rx } = setup(65536);
  const bad: Array<[number, number, number, string]> = [
    [65536 - 4095, 4096, 0, 'ends one byte past the end'],
    [65536, 1, 0, 'starts at the end'],
    [0, 0, DATA_FLAG_ZERO, 'zero length'],
    [0, -4, DATA_FLAG_ZERO, 'negative length'],
    [-4096, 4096, DATA_FLAG_TRIM, 'negative offset'],
    [2 ** 52, 4096, DATA_FLAG_TRIM, 'far past the end'],
  ];
  for (const [offset, length, flags, msg] of bad) {
    const payload = flags === 0 ? bytes(Math.max(length, 0), 1) : undefined;
    throwsProtocol(
      t,
      () => rx.onData(data(1, offset, length, flags | DATA_FLAG_RECV_ACK), payload),
      /outside the 65536-byte device/,
      msg,
    );
  }
  t.equal(disk.ops.length, 0);
  t.same(rec.log, []);
  rx.onData(data(1, 65536 - 4096, 4096, DATA_FLAG_RECV_ACK), bytes(4096, 1));
  t.same(rec.log, ['recv 1'], 'the last block is inside, and #1 is still next');
});

t.test('payload length must match: throws and applies nothing', async (t) => {
  const { disk, rec, rx } = setup();
  const bad: Array<[number, Buffer | undefined, string]> = [
    [0, undefined, 'a write without payload'],
    [0, bytes(4095, 1), 'a write one byte short'],
    [0, bytes(4097, 1), 'a write one byte long'],
    [DATA_FLAG_ZERO, bytes(4096, 0), 'a zero with a payload'],
    [DATA_FLAG_TRIM, bytes(1, 0), 'a trim with a payload'],
  ];
  for (const [flags, payload, msg] of bad) {
    throwsProtocol(
      t,
      () => rx.onData(data(1, 0, 4096, flags | DATA_FLAG_WRITE_ACK), payload),
      new RegExp(`carries ${payload?.length ?? 0} bytes for a length of 4096`),
      msg,
    );
  }
  t.equal(disk.ops.length, 0);
  t.same(rec.log, []);
  rx.onData(data(1, 0, 4096, DATA_FLAG_TRIM), Buffer.alloc(0));
  t.equal(disk.ops.length, 1, 'an empty buffer counts as no payload for a trim');
});

// ---- acks and disk calls -------------------------------------------------------------------

t.test('acks per flag, FUA and the disk call per kind', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4, DATA_FLAG_RECV_ACK), bytes(4, 1));
  t.same(rec.log, ['recv 1'], 'RecvAck at once, before the disk completed');
  rx.onData(data(2, 4096, 4, DATA_FLAG_WRITE_ACK | DATA_FLAG_FUA), bytes(4, 2));
  rx.onData(data(3, 8192, 4096, DATA_FLAG_ZERO | DATA_FLAG_FUA | DATA_FLAG_WRITE_ACK), undefined);
  rx.onData(data(4, 16384, 4096, DATA_FLAG_TRIM | DATA_FLAG_WRITE_ACK), undefined);
  rx.onData(data(5, 32768, 4), bytes(4, 5)); // protocol A: no ack at all
  t.same(
    disk.ops.map((o) => [o.kind, o.offset, o.length, o.fua]),
    [
      ['write', 0, 4, false],
      ['write', 4096, 4, true],
      ['zero', 8192, 4096, true],
      // A trim zeroes on every replica (replicas must read the same).
      ['zero', 16384, 4096, false],
      ['write', 32768, 4, false],
    ],
  );
  t.same(disk.ops[2]!.zeroOpts, { noHole: false, fastZero: false, fua: true });
  await flush();
  t.same(rec.log, ['recv 1'], 'no WriteAck before the disk completes');
  for (const op of [...disk.ops].reverse()) op.complete();
  await flush();
  t.same(rec.log, ['recv 1', 'write 4', 'write 3', 'write 2']);
  t.equal(rx.applied, 5);
  t.equal(disk.mem[32768], 5);
  t.equal(rx.lock.size, 0, 'every range was released');
});

t.test('a local failure: negAck, localFailure, no WriteAck, the range is released', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4096, DATA_FLAG_WRITE_ACK | DATA_FLAG_RECV_ACK), bytes(4096, 1));
  rx.onData(data(2, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 2)); // overlaps #1
  rx.onData(data(3, 8192, 4096, DATA_FLAG_WRITE_ACK | DATA_FLAG_ZERO), undefined);
  disk.ops[0]!.fail(Object.assign(new Error('input/output error'), { code: 'EIO' }));
  disk.ops[1]!.fail(new Error('no code here'));
  await flush();
  t.same(rec.log, [
    'recv 1',
    'local-failure 0+4096',
    'neg 1 EIO',
    'local-failure 8192+4096',
    'neg 3 no code here',
  ]);
  t.equal(rec.failures[0]!.err.message, 'input/output error');
  t.equal(disk.ops.length, 3, '#2 started once #1 had failed and released its range');
  t.equal(disk.ops[2]!.offset, 0);
  disk.ops[2]!.complete();
  await flush();
  t.same(rec.log.at(-1), 'write 2');
  t.equal(rx.applied, 1, 'only #2 was applied');
  t.equal(disk.mem[0], 2);
});

t.test('overlapping changes reach the disk in arrival order', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 8192, DATA_FLAG_WRITE_ACK), bytes(8192, 1));
  rx.onData(data(2, 4096, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 2)); // inside #1
  rx.onData(data(3, 65536, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 3)); // apart
  rx.onData(data(4, 6000, 100, DATA_FLAG_ZERO | DATA_FLAG_WRITE_ACK), undefined); // inside #1, #2
  t.same(
    disk.ops.map((o) => o.offset),
    [0, 65536],
    '#2 and #4 wait; #3 overlaps nothing and runs',
  );
  disk.ops[1]!.complete(); // #3 completes first
  await flush();
  t.same(rec.log, ['write 3']);
  t.equal(disk.ops.length, 2, 'still waiting for #1');
  disk.ops[0]!.complete();
  await flush();
  t.same(
    disk.ops.map((o) => o.offset),
    [0, 65536, 4096],
    '#2 starts after #1, and #4 still waits for #2',
  );
  disk.ops[2]!.complete();
  await flush();
  t.equal(disk.ops.length, 4);
  t.equal(disk.ops[3]!.kind, 'zero');
  disk.ops[3]!.complete();
  await flush();
  t.same(rec.log, ['write 3', 'write 1', 'write 2', 'write 4']);
  t.equal(disk.mem[4095], 1);
  t.equal(disk.mem[4096], 2);
  t.equal(disk.mem[6000], 0);
  t.equal(disk.mem[6100], 2);
});

// ---- barriers ------------------------------------------------------------------------------

t.test('a barrier with nothing in flight: flush, then ack; reading never stops', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onBarrier(7, 0);
  await flush();
  t.same(disk.pending('flush').length, 1, 'flushes');
  t.same(rec.log, [], 'no ack before the flush resolved, and no pause');
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['barrier 7/0']);
});

t.test('a barrier waits for every earlier change, even one waiting for a range', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 1));
  rx.onData(data(2, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 2)); // waits on the lock
  rx.onData(data(3, 8192, 4096), bytes(4096, 3));
  rx.onBarrier(1, 3);
  await flush();
  t.same(disk.pending('flush'), [], 'no flush while changes are in flight');
  disk.ops[1]!.complete(); // #3
  disk.ops[0]!.complete(); // #1
  await flush();
  t.same(disk.pending('flush'), [], '#2 only now started; still no flush');
  t.equal(disk.pending('write').length, 1);
  disk.pending('write')[0]!.complete(); // #2
  await flush();
  t.equal(disk.pending('flush').length, 1, 'flush once all three completed');
  t.notOk(rec.log.includes('barrier 1/3'));
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['write 1', 'write 2', 'barrier 1/3']);
});

t.test('changes of the next epoch run while a barrier waits and flushes', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 1));
  rx.onBarrier(1, 1);
  rx.onData({ ...data(2, 8192, 4096, DATA_FLAG_WRITE_ACK), epoch: 2 }, bytes(4096, 2));
  await flush();
  t.equal(disk.pending('write').length, 2, 'the epoch-2 change started at once');
  disk.ops[1]!.complete(); // #2, of epoch 2
  await flush();
  t.same(disk.pending('flush'), [], 'epoch 1 is not done: no flush yet');
  t.same(rec.log, ['write 2']);
  disk.ops[0]!.complete(); // #1
  await flush();
  t.equal(disk.pending('flush').length, 1, 'epoch 1 done: flush');
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['write 2', 'write 1', 'barrier 1/1']);
});

t.test('barriers are acked in order, one flush at a time', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onBarrier(1, 0);
  rx.onBarrier(2, 0);
  await flush();
  t.equal(disk.pending('flush').length, 1, 'one flush at a time');
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['barrier 1/0']);
  t.equal(disk.pending('flush').length, 1, 'then the next');
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['barrier 1/0', 'barrier 2/0']);
});

t.test('reading pauses while too much is in flight, and resumes at half', async (t) => {
  const { disk, rec, rx } = setup(1 << 20);
  for (let i = 1; i <= 1024; i++) rx.onData(data(i, (i - 1) * 512, 512), bytes(512, 1));
  t.same(rec.log, ['pause'], 'paused at 1024 changes in flight');
  await flush();
  for (let i = 0; i < 512; i++) disk.ops[i]!.complete();
  await flush();
  t.same(rec.log, ['pause', 'resume'], 'resumed below half');
});

t.test('a change that failed locally does not hold the barrier back', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 1));
  rx.onBarrier(1, 1);
  disk.ops[0]!.fail(Object.assign(new Error('bad'), { code: 'EIO' }));
  await flush();
  disk.pending('flush')[0]!.complete();
  await flush();
  t.same(rec.log, ['local-failure 0+4096', 'neg 1 EIO', 'barrier 1/1']);
});

t.test('a flush failure: flushFailed, no ack', async (t) => {
  const { disk, rec, rx } = setup();
  rx.onData(data(1, 0, 4096, DATA_FLAG_WRITE_ACK), bytes(4096, 1));
  rx.onBarrier(3, 1);
  disk.ops[0]!.complete();
  await flush();
  disk.pending('flush')[0]!.fail(new Error('EIO on flush'));
  await flush();
  t.same(rec.log, ['write 1', 'flush-failed EIO on flush']);
  t.equal(rec.flushErrors.length, 1);
});

t.test('close()', async (t) => {
  await t.test('during a barrier: no ack, no flushFailed', async (t) => {
    const { disk, rec, rx } = setup();
    rx.onBarrier(1, 0);
    rx.onBarrier(2, 0); // waits behind the first flush
    await flush();
    rx.close();
    disk.pending('flush')[0]!.complete();
    await flush();
    t.same(disk.pending('flush'), [], 'no second flush after close');
    t.same(rec.log, []);
  });

  await t.test('later frames are ignored, even malformed ones', async (t) => {
    const { disk, rec, rx } = setup();
    rx.close();
    rx.onData(data(5, -1, 0), undefined);
    rx.onData(data(1, 0, 4, DATA_FLAG_RECV_ACK), bytes(4, 1));
    rx.onBarrier(1, 1);
    await flush();
    t.equal(disk.ops.length, 0);
    t.same(rec.log, []);
  });
});

t.test('quiesce() resolves at once when idle, and for every caller otherwise', async (t) => {
  const { disk, rx } = setup();
  let idle = false;
  void rx.quiesce().then(() => (idle = true));
  await flush();
  t.ok(idle);
  rx.onData(data(1, 0, 4, 0), bytes(4, 1));
  rx.onData(data(2, 100, 4, 0), bytes(4, 1));
  const seen: number[] = [];
  void rx.quiesce().then(() => seen.push(1));
  void rx.quiesce().then(() => seen.push(2));
  disk.ops[0]!.complete();
  await flush();
  t.same(seen, [], 'one change still in flight');
  void rx.quiesce().then(() => seen.push(3));
  disk.ops[1]!.complete();
  await flush();
  t.same(seen.sort(), [1, 2, 3]);
});

// ---- property ------------------------------------------------------------------------------

const PSIZE = 16384;

type Frame =
  | {
      t: 'data';
      kind: 'write' | 'zero' | 'trim';
      offset: number;
      length: number;
      flags: number;
      fail: boolean;
    }
  | { t: 'barrier' };

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .record({
        kind: fc.constantFrom('write' as const, 'write' as const, 'zero' as const, 'trim' as const),
        offset: fc.nat(PSIZE - 1),
        length: fc.integer({ min: 1, max: 3000 }),
        ack: fc.constantFrom(0, DATA_FLAG_RECV_ACK, DATA_FLAG_WRITE_ACK),
        fua: fc.boolean(),
        fail: fc.nat(9).map((n) => n === 0),
      })
      .map(({ kind, offset, length, ack, fua, fail }) => ({
        t: 'data' as const,
        kind,
        offset,
        length: Math.min(length, PSIZE - offset),
        flags:
          ack |
          (fua ? DATA_FLAG_FUA : 0) |
          (kind === 'zero' ? DATA_FLAG_ZERO : kind === 'trim' ? DATA_FLAG_TRIM : 0),
        fail,
      })),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'barrier' as const }) },
);

t.test('property: random changes, barriers and disk completion order', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.array(frameArb, { maxLength: 40 }), async (s, frames) => {
      // Every disk op completes when the scheduler picks it, in any order.
      const failing = new Set<Buffer>();
      const { disk, rec, rx } = setup(PSIZE, (op) => {
        void s.schedule(Promise.resolve(), `${op.kind} ${op.offset}+${op.length}`).then(() => {
          if (op.src && failing.has(op.src as Buffer)) op.fail(new Error('injected'));
          else op.complete();
        });
      });
      const model = Buffer.from(disk.mem);
      const delivered: Array<{ seq: number; op?: DiskOp }> = [];
      const flushes: Array<{ op: DiskOp; calledWithAllDone: boolean }> = [];
      const wantLog: string[] = [];
      let seq = 0;
      let epoch = 0;
      let sinceBarrier = 0;
      let paused = false;
      const problems: string[] = [];

      // Each change's epoch, marked done when the receiver releases its range (after its
      // disk op ended): the flush for barrier k must come after every change of epoch <= k.
      const tags = new WeakMap<object, { epoch: number; done: boolean }>();
      const changes: Array<{ epoch: number; done: boolean }> = [];
      let current: { epoch: number; done: boolean } | undefined;
      const origAcquire = rx.lock.acquire.bind(rx.lock);
      const origRelease = rx.lock.release.bind(rx.lock);
      rx.lock.acquire = (o: number, l: number) => {
        const tag = current!;
        const r = origAcquire(o, l);
        if (r instanceof Promise) {
          return r.then((h) => {
            tags.set(h, tag);
            return h;
          });
        }
        tags.set(r, tag);
        return r;
      };
      rx.lock.release = (h) => {
        const tag = tags.get(h);
        if (tag) tag.done = true;
        origRelease(h);
      };
      const origFlush = disk.flush.bind(disk);
      disk.flush = () => {
        const p = origFlush();
        const k = flushes.length + 1;
        flushes.push({
          op: disk.ops.at(-1)!,
          calledWithAllDone: changes.every((c) => c.epoch > k || c.done),
        });
        return p;
      };
      let barriersAcked = 0;
      rec.onBarrierAck = () => {
        const f = flushes[barriersAcked++];
        if (!f || f.op.state !== 'done') problems.push('barrier acked before its flush resolved');
        if (f && !f.calledWithAllDone) problems.push('flush issued before earlier changes ended');
      };
      const origPause = rec.pause.bind(rec);
      const origResume = rec.resume.bind(rec);
      rec.pause = () => {
        paused = true;
        origPause();
      };
      rec.resume = () => {
        paused = false;
        origResume();
      };

      let i = 0;
      for (;;) {
        await flush(); // lets a barrier reach its flush, or an ack resume the flow
        if (paused || i >= frames.length) {
          if (s.count() === 0) break;
          await s.waitOne();
          continue;
        }
        while (!paused && i < frames.length) {
          const f = frames[i++]!;
          if (f.t === 'barrier') {
            epoch++;
            wantLog.push(`barrier ${epoch}/${sinceBarrier}`);
            rx.onBarrier(epoch, sinceBarrier);
            sinceBarrier = 0;
            continue;
          }
          seq++;
          sinceBarrier++;
          const payload = f.kind === 'write' ? Buffer.alloc(f.length, (seq % 250) + 1) : undefined;
          if (f.fail && payload) failing.add(payload);
          const before = rec.log.length;
          current = { epoch: epoch + 1, done: false };
          changes.push(current);
          rx.onData(
            { seq, epoch: epoch + 1, offset: f.offset, length: f.length, flags: f.flags },
            payload,
          );
          if ((f.flags & DATA_FLAG_RECV_ACK) !== 0 && rec.log[before] !== `recv ${seq}`) {
            problems.push(`#${seq}: no RecvAck at once`);
          }
          delivered.push({ seq });
          // The model applies changes in arrival order.
          if (!(f.fail && payload)) {
            if (payload) payload.copy(model, f.offset);
            else model.fill(0, f.offset, f.offset + f.length);
          }
        }
      }
      await flush();
      if (problems.length > 0) throw new Error(problems.join('; '));
      if (paused) throw new Error('left paused');
      if (!disk.mem.equals(model)) throw new Error('disk differs from arrival-order model');
      const barrierAcks = rec.log.filter((l) => l.startsWith('barrier'));
      if (barrierAcks.join() !== wantLog.join()) {
        throw new Error(`barrier acks ${barrierAcks} != ${wantLog}`);
      }
      // Each change acked per its flags, exactly once.
      let sq = 0;
      for (const f of frames) {
        if (f.t !== 'data') continue;
        sq++;
        const failed = f.fail && f.kind === 'write';
        const mine = rec.log.filter((l) => /^(recv|write|neg) (\d+)/.exec(l)?.[2] === String(sq));
        const want: string[] = [];
        if (f.flags & DATA_FLAG_RECV_ACK) want.push(`recv ${sq}`);
        if (failed) want.push(`neg ${sq} injected`);
        else if (f.flags & DATA_FLAG_WRITE_ACK) want.push(`write ${sq}`);
        if (mine.join() !== want.join()) throw new Error(`#${sq}: acks ${mine} != ${want}`);
      }
      if (rx.lock.size !== 0) throw new Error('ranges left held');
    }),
    { numRuns: 200 },
  );
  t.pass('property holds');
});
