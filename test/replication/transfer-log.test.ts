// TransferLog (src/replication/transfer-log.ts, drbd.md §5.1 and §5.3) against a fake
// DataSender that records every call: the flags each protocol sends, when submit's promise
// resolves (A on the send callback, B on RecvAck, C and FUA on WriteAck), settle() only on
// the barrier ack of the change's epoch and exactly once, fail(), barrier(), negative acks,
// the four ways an epoch closes, and a fast-check model of random interleavings.
//
// The epoch timer is a real setTimeout inside the module; the tests swap in fake timers that
// capture only the one delay under test, so nothing here waits for real time.
import fc from 'fast-check';
import t from 'tap';

import type { Payload } from '../../src/nbd/target.js';
import {
  DATA_FLAG_FUA,
  DATA_FLAG_RECV_ACK,
  DATA_FLAG_TRIM,
  DATA_FLAG_WRITE_ACK,
  DATA_FLAG_ZERO,
} from '../../src/replication/schema.js';
import {
  type ChangeKind,
  type DataSender,
  TransferLog,
  type TransferLogOptions,
} from '../../src/replication/transfer-log.js';
import { FakeTimers } from '../helpers/fake-timers.js';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

// ---- fake sender ---------------------------------------------------------------------------

interface SentData {
  seq: number;
  epoch: number;
  offset: number;
  length: number;
  flags: number;
  payload: Payload | undefined;
  onSent: (err?: Error) => void;
}

class FakeSender implements DataSender {
  readonly data: SentData[] = [];
  readonly barriers: Array<{ epoch: number; writes: number }> = [];
  /** Every call in order, for checks that a barrier follows its epoch's last write. */
  readonly log: string[] = [];

  sendData(
    seq: number,
    epoch: number,
    offset: number,
    length: number,
    flags: number,
    payload: Payload | undefined,
    onSent: (err?: Error) => void,
  ): void {
    this.data.push({ seq, epoch, offset, length, flags, payload, onSent });
    this.log.push(`D${seq}@${epoch}`);
  }

  sendBarrier(epoch: number, writes: number): void {
    this.barriers.push({ epoch, writes });
    this.log.push(`B${epoch}/${writes}`);
  }
}

/** A submit with its promise and settle calls tracked. */
interface Sub {
  net: boolean | undefined;
  settles: boolean[];
}

// A distinctive epoch timer that only these tests use.
const EPOCH_MS = 4321;

function setup(opts: Partial<TransferLogOptions> = {}): {
  tl: TransferLog;
  out: FakeSender;
  submit: (o?: SubmitOpts) => Sub;
} {
  const out = new FakeSender();
  const tl = new TransferLog(out, {
    protocol: 'C',
    maxEpochSize: 1000,
    epochMs: EPOCH_MS,
    ...opts,
  });
  const submit = (o: SubmitOpts = {}): Sub => {
    const s: Sub = { net: undefined, settles: [] };
    const payload =
      o.kind === undefined || o.kind === 'write' ? Buffer.alloc(o.length ?? 4096) : undefined;
    void tl
      .submit(o.kind ?? 'write', o.offset ?? 0, o.length ?? 4096, payload, o.fua ?? false, (ok) =>
        s.settles.push(ok),
      )
      .then((ok) => (s.net = ok));
    return s;
  };
  return { tl, out, submit };
}

interface SubmitOpts {
  kind?: ChangeKind;
  offset?: number;
  length?: number;
  fua?: boolean;
}

t.test('flags on the wire per protocol, kind and FUA', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    const cases: Array<[TransferLogOptions['protocol'], boolean, number]> = [
      ['A', false, 0],
      ['A', true, DATA_FLAG_FUA | DATA_FLAG_WRITE_ACK],
      ['B', false, DATA_FLAG_RECV_ACK],
      ['B', true, DATA_FLAG_FUA | DATA_FLAG_WRITE_ACK],
      ['C', false, DATA_FLAG_WRITE_ACK],
      ['C', true, DATA_FLAG_FUA | DATA_FLAG_WRITE_ACK],
    ];
    for (const [protocol, fua, want] of cases) {
      const { tl, out } = setup({ protocol });
      const kinds: Array<[ChangeKind, number]> = [
        ['write', 0],
        ['zero', DATA_FLAG_ZERO],
        ['trim', DATA_FLAG_TRIM],
      ];
      for (const [kind, extra] of kinds) {
        const payload = kind === 'write' ? Buffer.from('abcd') : undefined;
        void tl.submit(kind, 8192, 4, payload, fua, () => undefined);
        const d = out.data.at(-1)!;
        t.equal(d.flags, want | extra, `${protocol} fua=${fua} ${kind}`);
        t.equal(d.offset, 8192);
        t.equal(d.length, 4);
        t.equal(d.payload, payload, 'the payload is handed over as is');
      }
      t.same(
        out.data.map((d) => [d.seq, d.epoch]),
        [
          [1, 1],
          [2, 1],
          [3, 1],
        ],
        'sequence numbers count from 1, all in epoch 1',
      );
      tl.fail('done');
    }
  });
});

t.test('when submit resolves, per protocol', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    await t.test('A: on the send callback', async (t) => {
      const { tl, out, submit } = setup({ protocol: 'A' });
      const s = submit();
      await flush();
      t.equal(s.net, undefined, 'not before the bytes were handed over');
      out.data[0]!.onSent();
      await flush();
      t.equal(s.net, true);
      t.same(s.settles, [], 'settle waits for the barrier ack');
      const f = submit();
      out.data[1]!.onSent(new Error('EPIPE'));
      await flush();
      t.equal(f.net, false, 'a send error resolves false');
      tl.fail('end');
    });

    await t.test('A with FUA: only on WriteAck', async (t) => {
      const { tl, out, submit } = setup({ protocol: 'A' });
      const s = submit({ fua: true });
      out.data[0]!.onSent();
      tl.recvAck(1);
      await flush();
      t.equal(s.net, undefined, 'sent and recv-acked is not enough for FUA');
      tl.writeAck(1);
      await flush();
      t.equal(s.net, true);
      tl.fail('end');
    });

    await t.test('B: on RecvAck', async (t) => {
      const { tl, out, submit } = setup({ protocol: 'B' });
      const s = submit();
      out.data[0]!.onSent();
      await flush();
      t.equal(s.net, undefined, 'the send callback does not complete protocol B');
      tl.recvAck(1);
      await flush();
      t.equal(s.net, true);
      const w = submit();
      tl.writeAck(2);
      await flush();
      t.equal(w.net, true, 'a WriteAck implies the RecvAck');
      tl.fail('end');
    });

    await t.test('B with FUA: only on WriteAck', async (t) => {
      const { tl, submit } = setup({ protocol: 'B' });
      const s = submit({ fua: true });
      tl.recvAck(1);
      await flush();
      t.equal(s.net, undefined);
      tl.writeAck(1);
      await flush();
      t.equal(s.net, true);
      tl.fail('end');
    });

    await t.test('C: on WriteAck, not RecvAck or the send callback', async (t) => {
      const { tl, out, submit } = setup({ protocol: 'C' });
      const s = submit();
      out.data[0]!.onSent();
      tl.recvAck(1);
      await flush();
      t.equal(s.net, undefined);
      tl.writeAck(1);
      await flush();
      t.equal(s.net, true);
      tl.writeAck(1);
      tl.writeAck(99);
      tl.recvAck(99);
      t.same(s.settles, [], 'acks never settle');
      tl.fail('end');
    });

    await t.test('a barrier ack completes whatever ack did not come', async (t) => {
      for (const protocol of ['A', 'B', 'C'] as const) {
        const { tl, submit } = setup({ protocol });
        const s = submit();
        const f = submit({ fua: true });
        const p = tl.barrier();
        tl.barrierAck(1);
        await flush();
        t.equal(s.net, true, `${protocol}`);
        t.equal(f.net, true, `${protocol} fua`);
        t.same(s.settles, [true]);
        t.equal(await p, true);
        tl.fail('end');
      }
    });
  });
});

t.test('settle(true) only on the barrier ack of its epoch, and only once', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    const { tl, out, submit } = setup({ protocol: 'C', maxEpochSize: 2 });
    const a = submit();
    const b = submit(); // epoch 1 closes: maxEpochSize
    const c = submit();
    t.same(out.barriers, [{ epoch: 1, writes: 2 }]);
    t.same(
      out.data.map((d) => d.epoch),
      [1, 1, 2],
    );
    tl.writeAck(1);
    tl.writeAck(2);
    tl.writeAck(3);
    await flush();
    t.same([a.settles, b.settles, c.settles], [[], [], []], 'write acks do not settle');
    tl.barrierAck(1);
    t.same([a.settles, b.settles, c.settles], [[true], [true], []], 'epoch 1 only');
    tl.barrierAck(1);
    t.same(
      [a.settles, b.settles],
      [[true], [true]],
      'a repeated barrier ack settles nothing again',
    );
    t.equal(tl.size, 1);
    tl.fail('gone');
    t.same([a.settles, b.settles, c.settles], [[true], [true], [false]], 'fail settles only c');
    t.equal(tl.size, 0);
  });
});

t.test('fail()', async (t) => {
  await FakeTimers.with(EPOCH_MS, async (ft) => {
    const { tl, out, submit } = setup({ protocol: 'B', maxEpochSize: 3 });
    const subs = [submit(), submit(), submit(), submit(), submit({ fua: true })];
    tl.recvAck(1);
    tl.barrierAck(1); // settles 1..3
    const w = tl.barrier(); // epoch 2: 4 and 5
    const w2 = tl.barrier(); // same epoch, already closed
    await flush();
    t.equal(ft.armed.length, 0, 'the barrier closed the epoch and stopped its timer');
    tl.fail('link lost');
    t.equal(await w, false, 'a barrier waiter resolves false');
    t.equal(await w2, false);
    await flush();
    t.same(
      subs.map((s) => s.settles),
      [[true], [true], [true], [false], [false]],
      'each unacked change settles false, exactly once',
    );
    t.same(
      subs.map((s) => s.net),
      [true, true, true, false, false],
    );
    t.equal(tl.size, 0);
    t.equal(tl.oldestWaitMs(), 0);

    tl.fail('again');
    tl.barrierAck(2);
    tl.writeAck(4);
    tl.negAck(5);
    t.same(
      subs.map((s) => s.settles.length),
      [1, 1, 1, 1, 1],
      'nothing after fail settles again',
    );

    const sent = out.data.length;
    let settled: boolean | undefined;
    const late = tl.submit('write', 0, 4096, Buffer.alloc(4096), false, (ok) => (settled = ok));
    t.equal(settled, false, 'a submit after fail settles false synchronously');
    t.equal(await late, false);
    t.equal(out.data.length, sent, 'and sends nothing');
    t.equal(await tl.barrier(), false, 'barrier after fail resolves false');
    t.equal(ft.armed.length, 0, 'no epoch timer left armed');
  });
});

t.test('negAck settles false at once, and nothing settles it again', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    const { tl, submit } = setup({ protocol: 'C' });
    const a = submit();
    const b = submit();
    tl.negAck(1);
    await flush();
    t.equal(a.net, false);
    t.same(a.settles, [false]);
    tl.writeAck(1);
    tl.negAck(1);
    const p = tl.barrier();
    tl.barrierAck(1);
    t.same(a.settles, [false], 'the barrier ack does not settle it true');
    t.same(b.settles, [true]);
    t.equal(await p, true);
    const c = submit();
    tl.writeAck(3);
    await flush();
    t.equal(c.net, true);
    tl.negAck(3); // after its write-ack: the peer lost it after all
    t.same(c.settles, [false]);
    tl.fail('x');
    t.same(c.settles, [false], 'fail does not settle it again');
    tl.negAck(42); // unknown: ignored
  });
});

t.test('barrier()', async (t) => {
  await FakeTimers.with(EPOCH_MS, async (ft) => {
    await t.test('with nothing pending resolves true at once and sends nothing', async (t) => {
      const { tl, out } = setup();
      t.equal(await tl.barrier(), true);
      t.same(out.barriers, []);
      tl.fail('end');
    });

    await t.test('closes the open epoch and waits for exactly its ack', async (t) => {
      const { tl, out, submit } = setup({ maxEpochSize: 2 });
      submit();
      submit(); // epoch 1 closed by size
      submit();
      submit(); // epoch 2 closed by size
      submit(); // epoch 3 open
      let done: boolean | undefined;
      void tl.barrier().then((v) => (done = v));
      t.same(out.barriers, [
        { epoch: 1, writes: 2 },
        { epoch: 2, writes: 2 },
        { epoch: 3, writes: 1 },
      ]);
      t.same(
        out.log,
        ['D1@1', 'D2@1', 'B1/2', 'D3@2', 'D4@2', 'B2/2', 'D5@3', 'B3/1'],
        'each barrier follows the last write of its epoch',
      );
      tl.barrierAck(2);
      await flush();
      t.equal(done, undefined, 'the ack of epoch 2 is not enough');
      tl.barrierAck(3);
      await flush();
      t.equal(done, true);
      const d = submit();
      t.equal(out.data.at(-1)!.epoch, 4, 'the next change starts epoch 4');
      t.same(d.settles, []);
      tl.fail('end');
    });

    await t.test('with the open epoch empty, waits for the last closed one', async (t) => {
      const { tl, out, submit } = setup({ maxEpochSize: 2 });
      submit();
      submit(); // epoch 1 closed
      submit();
      submit(); // epoch 2 closed; epoch 3 empty
      let done: boolean | undefined;
      void tl.barrier().then((v) => (done = v));
      t.equal(out.barriers.length, 2, 'no empty barrier is sent');
      tl.barrierAck(1);
      await flush();
      t.equal(done, undefined);
      tl.barrierAck(2);
      await flush();
      t.equal(done, true);
      tl.fail('end');
    });

    await t.test('resolves on a later cumulative ack too', async (t) => {
      const { tl, submit } = setup();
      submit();
      const p1 = tl.barrier();
      submit();
      const p2 = tl.barrier();
      tl.barrierAck(2);
      t.equal(await p1, true);
      t.equal(await p2, true);
      t.equal(await tl.barrier(), true, 'everything acked: at once');
      tl.fail('end');
    });

    t.equal(ft.armed.length, 0);
  });
});

t.test('epochs close on the timer', async (t) => {
  await FakeTimers.with(EPOCH_MS, async (ft) => {
    const { tl, out, submit } = setup();
    t.equal(ft.armed.length, 0, 'no timer while the epoch is empty');
    submit();
    t.equal(ft.armed.length, 1, 'the first change arms it');
    t.equal(ft.armed[0]!.ms, EPOCH_MS);
    submit();
    t.equal(ft.armed.length, 1, 'later changes of the epoch do not re-arm it');
    ft.fire();
    t.same(out.barriers, [{ epoch: 1, writes: 2 }]);
    t.equal(ft.armed.length, 0, 'not re-armed until the next change');
    submit();
    t.equal(out.data.at(-1)!.epoch, 2);
    t.equal(ft.armed.length, 1);
    tl.barrierAck(1);
    ft.fire();
    t.same(out.barriers.at(-1), { epoch: 2, writes: 1 });
    tl.fail('end');
  });

  await t.test('a close on max-epoch-size disarms the timer', async (t) => {
    await FakeTimers.with(EPOCH_MS, async (ft) => {
      const { tl, out, submit } = setup({ maxEpochSize: 2 });
      submit();
      submit();
      t.same(out.barriers, [{ epoch: 1, writes: 2 }]);
      t.equal(ft.armed.length, 0);
      t.equal(ft.fire(), false);
      t.equal(out.barriers.length, 1, 'no second (empty) barrier');
      tl.fail('end');
    });
  });

  await t.test('closeEpoch() sends the barrier now and disarms the timer', async (t) => {
    // The activity log's call when writes wait for a slot that these changes hold.
    await FakeTimers.with(EPOCH_MS, async (ft) => {
      const { tl, out, submit } = setup();
      tl.closeEpoch();
      t.same(out.barriers, [], 'an empty epoch sends nothing');
      const a = submit();
      submit();
      tl.closeEpoch();
      t.same(out.barriers, [{ epoch: 1, writes: 2 }]);
      t.equal(ft.armed.length, 0);
      tl.closeEpoch();
      t.equal(out.barriers.length, 1, 'no second (empty) barrier');
      submit();
      t.equal(out.data.at(-1)!.epoch, 2, 'the next change opens the next epoch');
      t.equal(ft.armed.length, 1);
      tl.fail('link lost');
      tl.closeEpoch();
      t.equal(out.barriers.length, 1, 'nothing is sent after the link failed');
      t.same(a.settles, [false]);
    });
  });

  await t.test('the default epoch timer is 100 ms', async (t) => {
    await FakeTimers.with(100, async (ft) => {
      const out = new FakeSender();
      const tl = new TransferLog(out, { protocol: 'C', maxEpochSize: 10 });
      void tl.submit('write', 0, 1, Buffer.alloc(1), false, () => undefined);
      t.equal(ft.armed.length, 1);
      ft.fire();
      t.same(out.barriers, [{ epoch: 1, writes: 1 }]);
      tl.fail('end');
    });
  });
});

t.test('oldestWaitMs and size', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    const { tl, submit } = setup({ maxEpochSize: 1 });
    t.equal(tl.oldestWaitMs(), 0);
    const before = Date.now();
    submit();
    const after = Date.now();
    submit();
    t.equal(tl.size, 2);
    const w = tl.oldestWaitMs(after + 500);
    t.ok(w >= 500 && w <= 500 + (after - before), `waited ${w} ms`);
    tl.writeAck(1);
    tl.writeAck(2);
    t.equal(tl.size, 2, 'a write ack does not drop it from the log');
    tl.barrierAck(1);
    t.equal(tl.size, 1);
    tl.barrierAck(2);
    t.equal(tl.size, 0);
    t.equal(tl.oldestWaitMs(after + 500), 0);
    tl.fail('end');
  });
});

t.test('a long run: thousands of changes acked by epoch (the log compacts)', async (t) => {
  await FakeTimers.with(EPOCH_MS, async () => {
    const { tl, out } = setup({ protocol: 'A', maxEpochSize: 64 });
    const settles = new Map<number, boolean[]>();
    let acked = 0;
    for (let i = 1; i <= 5000; i++) {
      const list: boolean[] = [];
      settles.set(i, list);
      void tl.submit('write', i * 4096, 4096, Buffer.alloc(1), false, (ok) => list.push(ok));
      out.data.at(-1)!.onSent();
      if (i % 640 === 0) {
        acked = out.barriers.at(-1)!.epoch;
        tl.barrierAck(acked);
        t.equal(tl.size, 0, `all acked at ${i}`);
      }
    }
    t.equal(acked, 70);
    t.equal(out.barriers.length, 78);
    t.equal(tl.size, 5000 - acked * 64);
    let bad = 0;
    for (const [i, list] of settles) {
      const epoch = Math.ceil(i / 64);
      const want = epoch <= acked ? [true] : [];
      if (JSON.stringify(list) !== JSON.stringify(want)) bad++;
    }
    t.equal(bad, 0, 'every change of an acked epoch settled true once, no other did');
    tl.fail('end');
    let wrong = 0;
    for (const [i, list] of settles) {
      const epoch = Math.ceil(i / 64);
      if (list.length !== 1 || list[0] !== epoch <= acked) wrong++;
    }
    t.equal(wrong, 0, 'after fail every change settled exactly once');
  });
});

// ---- model ---------------------------------------------------------------------------------

type Op =
  | { t: 'submit'; kind: ChangeKind; fua: boolean }
  | { t: 'sent'; pick: number; err: boolean }
  | { t: 'recvAck' | 'writeAck' | 'negAck'; pick: number }
  | { t: 'barrierAck'; ahead: number }
  | { t: 'barrier' }
  | { t: 'timer' }
  | { t: 'close' }
  | { t: 'fail' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('submit' as const),
      kind: fc.constantFrom<ChangeKind>('write', 'zero', 'trim'),
      fua: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('sent' as const),
      pick: fc.nat(),
      err: fc.nat(4).map((n) => n === 0),
    }),
  },
  ...(['recvAck', 'writeAck', 'negAck'] as const).map((k) => ({
    weight: k === 'negAck' ? 1 : 3,
    arbitrary: fc.record({ t: fc.constant(k), pick: fc.nat() }),
  })),
  { weight: 3, arbitrary: fc.record({ t: fc.constant('barrierAck' as const), ahead: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('barrier' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('timer' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('close' as const) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'fail' as const }) },
);

interface MEntry {
  seq: number;
  epoch: number;
  needs: 'sent' | 'recv' | 'write';
  settles: boolean[];
  net: boolean | undefined;
  /** Events that allow the network part to complete true / false. */
  okBy: Set<string>;
  badBy: Set<string>;
  sentFired: boolean;
}

t.test('model: random interleavings of submits, acks, barriers, timers and fail', async (t) => {
  await FakeTimers.with(EPOCH_MS, async (ft) => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<TransferLogOptions['protocol']>('A', 'B', 'C'),
        fc.integer({ min: 1, max: 5 }),
        fc.array(opArb, { maxLength: 60 }),
        async (protocol, maxEpochSize, ops) => {
          ft.reset();
          const out = new FakeSender();
          const tl = new TransferLog(out, { protocol, maxEpochSize, epochMs: EPOCH_MS });
          const entries: MEntry[] = [];
          let ackedEpoch = 0;
          let nextBarrierToAck = 0; // index into out.barriers
          let failed = false;
          const waiters: Array<{ covers: MEntry[]; done: boolean | undefined }> = [];
          const fail = (msg: string): never => {
            throw new Error(`${protocol}/${maxEpochSize}: ${msg}`);
          };

          const check = (where: string): void => {
            for (const e of entries) {
              if (e.settles.length > 1) fail(`${where}: #${e.seq} settled ${e.settles}`);
              if (e.net === true && e.okBy.size === 0) {
                fail(`${where}: #${e.seq} (${e.needs}) resolved true without its ack`);
              }
              if (e.net === false && e.badBy.size === 0) {
                fail(`${where}: #${e.seq} resolved false with no failure`);
              }
            }
            for (const w of waiters) {
              if (w.done === true && !w.covers.every((e) => e.settles.length === 1)) {
                fail(`${where}: a barrier resolved before the changes it covers were acked`);
              }
              if (w.done === false && !failed) fail(`${where}: a barrier resolved false`);
            }
            const live = entries.filter(
              (e) =>
                !failed && e.epoch > ackedEpoch && (e.settles.length === 0 || e.badBy.has('neg')),
            );
            if (tl.size !== live.length) fail(`${where}: size ${tl.size} != ${live.length}`);
            if (live.length === 0 && tl.oldestWaitMs() !== 0) {
              fail(`${where}: oldestWaitMs with nothing waiting`);
            }
            // The wire: epochs never go backwards; every barrier counts its epoch's writes and
            // comes after them; no data of a closed epoch follows its barrier.
            let lastEpoch = 0;
            const closed = new Set<number>();
            for (const l of out.log) {
              const m = /^([DB])(\d+)[@/](\d+)$/.exec(l)!;
              if (m[1] === 'D') {
                const ep = Number(m[3]);
                if (ep < lastEpoch || closed.has(ep)) fail(`${where}: data out of epoch order`);
                lastEpoch = ep;
              } else {
                const ep = Number(m[2]);
                const n = out.data.filter((d) => d.epoch === ep).length;
                if (n !== Number(m[3]) || closed.has(ep) || ep !== closed.size + 1) {
                  fail(`${where}: barrier ${l} but ${n} writes / closed ${[...closed]}`);
                }
                closed.add(ep);
              }
            }
          };

          const pick = (n: number): MEntry | undefined =>
            entries.length === 0 ? undefined : entries[n % entries.length];

          for (const [i, op] of ops.entries()) {
            switch (op.t) {
              case 'submit': {
                const before = out.data.length;
                const e: MEntry = {
                  seq: 0,
                  epoch: 0,
                  needs: op.fua || protocol === 'C' ? 'write' : protocol === 'B' ? 'recv' : 'sent',
                  settles: [],
                  net: undefined,
                  okBy: new Set(),
                  badBy: new Set(),
                  sentFired: false,
                };
                const len = op.kind === 'write' ? 512 : 4096;
                const p = tl.submit(
                  op.kind,
                  0,
                  len,
                  op.kind === 'write' ? Buffer.alloc(len) : undefined,
                  op.fua,
                  (ok) => {
                    e.settles.push(ok);
                    if (ok && e.epoch > ackedEpoch) fail(`#${e.seq} settled true, epoch not acked`);
                    if (ok && e.badBy.has('neg')) fail(`#${e.seq} settled true after negAck`);
                  },
                );
                void p.then((v) => (e.net = v));
                if (failed) {
                  if (out.data.length !== before || e.settles.join() !== 'false') {
                    fail('a submit after fail was sent or not settled false at once');
                  }
                  e.badBy.add('fail');
                  entries.push(e);
                  break;
                }
                const d = out.data.at(-1)!;
                e.seq = d.seq;
                e.epoch = d.epoch;
                if (d.seq !== entries.filter((x) => x.seq > 0).length + 1) fail('seq gap');
                const want =
                  e.needs === 'write'
                    ? DATA_FLAG_WRITE_ACK
                    : e.needs === 'recv'
                      ? DATA_FLAG_RECV_ACK
                      : 0;
                if ((d.flags & (DATA_FLAG_WRITE_ACK | DATA_FLAG_RECV_ACK)) !== want) {
                  fail(`#${d.seq} flags ${d.flags}`);
                }
                if (((d.flags & DATA_FLAG_FUA) !== 0) !== op.fua) fail('FUA flag');
                entries.push(e);
                break;
              }
              case 'sent': {
                const e = pick(op.pick);
                if (!e || e.seq === 0 || e.sentFired) break;
                e.sentFired = true;
                const d = out.data.find((x) => x.seq === e.seq)!;
                if (op.err) {
                  e.badBy.add('senderr');
                  d.onSent(new Error('EPIPE'));
                } else {
                  if (e.needs === 'sent') e.okBy.add('sent');
                  d.onSent();
                }
                break;
              }
              case 'recvAck':
              case 'writeAck':
              case 'negAck': {
                const e = pick(op.pick);
                if (!e || e.seq === 0) break;
                if (!failed && e.epoch > ackedEpoch && e.settles.length === 0) {
                  if (op.t === 'writeAck') e.okBy.add('write');
                  if (op.t === 'recvAck' && e.needs === 'recv') e.okBy.add('recv');
                  if (op.t === 'negAck') e.badBy.add('neg');
                }
                tl[op.t](e.seq);
                break;
              }
              case 'barrierAck': {
                const k = nextBarrierToAck + op.ahead;
                if (k >= out.barriers.length) break;
                const ep = out.barriers[k]!.epoch;
                nextBarrierToAck = k + 1;
                if (!failed) {
                  for (const e of entries) if (e.epoch <= ep && e.seq > 0) e.okBy.add('barrier');
                }
                ackedEpoch = Math.max(ackedEpoch, ep);
                tl.barrierAck(ep);
                break;
              }
              case 'barrier': {
                const w = {
                  covers: entries.filter((e) => e.seq > 0),
                  done: undefined as boolean | undefined,
                };
                waiters.push(w);
                void tl.barrier().then((v) => (w.done = v));
                break;
              }
              case 'timer':
                ft.fire();
                break;
              case 'close':
                tl.closeEpoch();
                break;
              case 'fail':
                if (!failed) for (const e of entries) e.badBy.add('fail');
                failed = true;
                tl.fail('model');
                break;
            }
            await flush();
            check(`after op ${i} ${JSON.stringify(op)}`);
          }
          if (!failed) {
            // Acking every barrier sent, after closing the open epoch, settles everything.
            const p = tl.barrier();
            for (const e of entries) e.okBy.add('barrier');
            if (out.barriers.length > 0) {
              ackedEpoch = out.barriers.at(-1)!.epoch;
              tl.barrierAck(ackedEpoch);
            }
            if ((await p) !== true) fail('final barrier');
          }
          for (const e of entries) e.badBy.add('fail');
          tl.fail('end');
          await flush();
          check('end');
          for (const e of entries) {
            if (e.settles.length !== 1) fail(`#${e.seq} settled ${e.settles.length} times`);
            if (e.net === undefined) fail(`#${e.seq}: submit never resolved`);
          }
          for (const w of waiters) if (w.done === undefined) fail('a barrier never resolved');
          if (ft.armed.length !== 0) fail('an epoch timer stayed armed after fail');
        },
      ),
      { numRuns: 400 },
    );
  });
  t.pass('model holds');
});
