// IntervalLock (src/replication/interval-lock.ts): overlapping ranges run one at a time in
// call order; non-overlapping ranges never wait; drainCurrent() waits for exactly the holders
// present at its call. Unit cases first, then a fast-check model of random acquire/release
// sequences checked against "granted iff every earlier overlapping acquirer has released".
import fc from 'fast-check';
import t from 'tap';

import { type Held, IntervalLock } from '../../src/replication/interval-lock.js';

/** Lets every pending promise chain run to its end. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Follows a promise without awaiting it: `done` and `value` are set when it settles. */
function track<T>(p: Promise<T>): { done: boolean; value: T | undefined } {
  const st: { done: boolean; value: T | undefined } = { done: false, value: undefined };
  void p.then((v) => {
    st.done = true;
    st.value = v;
  });
  return st;
}

function isHeld(x: Held | Promise<Held>): x is Held {
  return !(x instanceof Promise);
}

t.test('a range that overlaps nothing is granted at once, synchronously', async (t) => {
  const lock = new IntervalLock();
  const a = lock.acquire(0, 10);
  t.ok(isHeld(a), 'first acquirer gets a holder, not a promise');
  const b = lock.acquire(10, 10);
  t.ok(isHeld(b), 'an adjacent range [10,20) does not overlap [0,10)');
  const c = lock.acquire(100, 1);
  t.ok(isHeld(c));
  t.equal(lock.size, 3);
  if (isHeld(a)) {
    t.equal(a.offset, 0);
    t.equal(a.end, 10);
  }
  for (const h of [a, b, c]) if (isHeld(h)) lock.release(h);
  t.equal(lock.size, 0);
});

t.test('a zero-length range still covers one byte', async (t) => {
  const lock = new IntervalLock();
  const a = lock.acquire(5, 0);
  t.ok(isHeld(a));
  if (isHeld(a)) t.equal(a.end, 6);
  const b = lock.acquire(5, 0);
  t.notOk(isHeld(b), 'a second zero-length acquirer at the same offset waits');
  t.ok(isHeld(lock.acquire(6, 0)), 'the next byte is free');
  t.ok(isHeld(lock.acquire(4, 1)), 'the byte before is free');
});

t.test('overlapping acquirers wait and are granted in call order', async (t) => {
  const lock = new IntervalLock();
  const order: string[] = [];
  const a = lock.acquire(0, 100) as Held;
  const pb = lock.acquire(50, 100) as Promise<Held>;
  const pc = lock.acquire(60, 10) as Promise<Held>; // overlaps a and b
  const pd = lock.acquire(120, 10) as Promise<Held>; // overlaps only b
  t.ok(pb instanceof Promise && pc instanceof Promise && pd instanceof Promise);
  let b: Held | undefined;
  let c: Held | undefined;
  let d: Held | undefined;
  void pb.then((h) => ((b = h), order.push('b')));
  void pc.then((h) => ((c = h), order.push('c')));
  void pd.then((h) => ((d = h), order.push('d')));
  await flush();
  t.same(order, [], 'nothing is granted while a holds');
  lock.release(a);
  await flush();
  t.same(order, ['b'], 'b overlaps c, so c waits for b even though a is gone');
  t.equal(b!.offset, 50);
  lock.release(b!);
  await flush();
  t.same(order.sort(), ['b', 'c', 'd']);
  t.equal(c!.end, 70);
  t.equal(d!.offset, 120);
  lock.release(c!);
  lock.release(d!);
  t.equal(lock.size, 0);
});

t.test('release is idempotent and a released holder frees nobody twice', async (t) => {
  const lock = new IntervalLock();
  const a = lock.acquire(0, 10) as Held;
  const pb = track(lock.acquire(0, 10) as Promise<Held>);
  lock.release(a);
  lock.release(a);
  await flush();
  t.ok(pb.done);
  t.equal(lock.size, 1, 'the second release of a did not drop b');
  const pc = track(lock.acquire(5, 1) as Promise<Held>);
  lock.release(a);
  await flush();
  t.notOk(pc.done, 'c still waits for b');
  lock.release(pb.value!);
  await flush();
  t.ok(pc.done);
});

t.test('drainCurrent', async (t) => {
  await t.test('resolves at once when nothing is held', async (t) => {
    const lock = new IntervalLock();
    const d = track(lock.drainCurrent());
    await flush();
    t.ok(d.done);
  });

  await t.test('waits for the holders present, waiters included, not later ones', async (t) => {
    const lock = new IntervalLock();
    const a = lock.acquire(0, 10) as Held;
    const b = lock.acquire(100, 10) as Held;
    const pw = track(lock.acquire(5, 10) as Promise<Held>); // waits for a
    const d = track(lock.drainCurrent());
    const late = lock.acquire(200, 10) as Held; // after the drain: not waited for
    lock.release(a);
    await flush();
    t.ok(pw.done, 'the waiter was granted');
    t.notOk(d.done, 'b and the waiter still hold');
    lock.release(b);
    await flush();
    t.notOk(d.done, 'the waiter (present at the call) still holds');
    lock.release(pw.value!);
    await flush();
    t.ok(d.done, 'resolved once all three present at the call released');
    t.equal(lock.size, 1, 'the later holder is still there');
    lock.release(late);
  });

  await t.test('a drain and an overlapping waiter on the same holder both resolve', async (t) => {
    const lock = new IntervalLock();
    const d1 = track(lock.drainCurrent());
    const a = lock.acquire(0, 10) as Held;
    const d2 = track(lock.drainCurrent()); // creates a's done promise
    const pw = track(lock.acquire(0, 10) as Promise<Held>); // reuses it
    const d3 = track(lock.drainCurrent());
    await flush();
    t.ok(d1.done);
    t.notOk(d2.done || pw.done || d3.done);
    lock.release(a);
    await flush();
    t.ok(d2.done && pw.done);
    t.notOk(d3.done, 'd3 also waits for the waiter, present at its call');
    lock.release(pw.value!);
    await flush();
    t.ok(d3.done);
  });
});

// ---- model ---------------------------------------------------------------------------------

type Op =
  | { t: 'acquire'; offset: number; length: number }
  | { t: 'release'; pick: number }
  | { t: 'releaseAgain'; pick: number }
  | { t: 'drain' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('acquire' as const),
      offset: fc.nat(48),
      length: fc.nat(16),
    }),
  },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('releaseAgain' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('drain' as const) }) },
);

interface Acq {
  id: number;
  offset: number;
  end: number;
  sync: boolean;
  holder: Held | undefined;
  grantedAt: number;
  released: boolean;
}

const overlaps = (a: Acq, b: Acq): boolean => a.offset < b.end && b.offset < a.end;

// Bucket sizes of 1 MiB (every range in one bucket), 8 bytes and 1 byte (a range in up to 16).
for (const shift of [20, 3, 0]) {
  t.test(`model: random acquire/release/drain sequences, buckets of 2^${shift}`, async (t) => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 60 }), async (ops) => {
        const lock = new IntervalLock(shift);
        const acqs: Acq[] = [];
        const drains: Array<{ of: Acq[]; done: boolean }> = [];
        let grants = 0;

        const check = (where: string): void => {
          const live = acqs.filter((a) => !a.released);
          if (lock.size !== live.length) throw new Error(`${where}: size ${lock.size}`);
          for (const a of live) {
            const blocked = acqs.some((e) => e.id < a.id && !e.released && overlaps(e, a));
            const granted = a.holder !== undefined;
            if (granted === blocked) {
              throw new Error(
                `${where}: #${a.id} [${a.offset},${a.end}) granted=${granted} but blocked=${blocked}`,
              );
            }
          }
          const held = live.filter((a) => a.holder !== undefined);
          for (const x of held) {
            for (const y of held) {
              if (x.id < y.id && overlaps(x, y)) {
                throw new Error(`${where}: #${x.id} and #${y.id} overlap and are both held`);
              }
            }
          }
          for (const a of acqs) {
            for (const b of acqs) {
              if (a.id < b.id && overlaps(a, b) && b.holder && a.grantedAt > b.grantedAt) {
                throw new Error(`${where}: #${b.id} was granted before the earlier #${a.id}`);
              }
            }
          }
          for (const d of drains) {
            const want = d.of.every((a) => a.released);
            if (d.done !== want)
              throw new Error(`${where}: drain done=${d.done}, expected ${want}`);
          }
        };

        const grant = (a: Acq, h: Held): void => {
          if (h.offset !== a.offset || h.end !== a.end) throw new Error('wrong holder');
          a.holder = h;
          a.grantedAt = grants++;
        };

        for (const [i, op] of ops.entries()) {
          if (op.t === 'acquire') {
            const a: Acq = {
              id: acqs.length,
              offset: op.offset,
              end: op.offset + Math.max(op.length, 1),
              sync: false,
              holder: undefined,
              grantedAt: Infinity,
              released: false,
            };
            const expectSync = !acqs.some((e) => !e.released && overlaps(e, a));
            acqs.push(a);
            const r = lock.acquire(op.offset, op.length);
            a.sync = isHeld(r);
            if (a.sync !== expectSync) throw new Error(`#${a.id}: sync=${a.sync}`);
            if (isHeld(r)) grant(a, r);
            else void r.then((h) => grant(a, h));
          } else if (op.t === 'release' || op.t === 'releaseAgain') {
            const pool = acqs.filter((a) => a.holder && (op.t === 'release') !== a.released);
            if (pool.length > 0) {
              const a = pool[op.pick % pool.length]!;
              lock.release(a.holder!);
              a.released = true;
            }
          } else {
            const d = { of: acqs.filter((a) => !a.released), done: false };
            drains.push(d);
            void lock.drainCurrent().then(() => (d.done = true));
          }
          await flush();
          check(`after op ${i} (${op.t})`);
        }
        // Releasing whatever is granted, round after round, lets every acquirer through.
        for (let round = 0; acqs.some((a) => !a.released); round++) {
          if (round > acqs.length) throw new Error('some acquirer is never granted');
          for (const a of acqs) {
            if (a.holder && !a.released) {
              lock.release(a.holder);
              a.released = true;
            }
          }
          await flush();
          check(`final round ${round}`);
        }
        if (!drains.every((d) => d.done)) throw new Error('a drain never resolved');
        if (lock.size !== 0) throw new Error('lock not empty');
      }),
      { numRuns: 300 },
    );
    t.pass('model holds');
  });
}
