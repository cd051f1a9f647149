import fc from 'fast-check';
import t from 'tap';

import {
  ActivityLog,
  AL_EXTENT_SHIFT,
  AL_EXTENT_SIZE,
  type AlPersist,
} from '../../src/meta/activity-log.js';

const X = AL_EXTENT_SIZE;
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

type Tx = Parameters<AlPersist>[0];

/** An activity log whose persist calls are recorded (and can be made to fail). */
function makeAl(
  slots: number | Array<number | null>,
  opts: { enabled?: boolean; max?: number; onStarved?: () => void } = {},
) {
  const table = typeof slots === 'number' ? new Array<number | null>(slots).fill(null) : slots;
  const calls: Tx[] = [];
  const ctl = { fail: undefined as Error | undefined, onPersist: (_tx: Tx): void => {} };
  const al = new ActivityLog({
    slots: table.slice(),
    enabled: opts.enabled ?? true,
    maxUpdatesPerTransaction: opts.max,
    onStarved: opts.onStarved,
    persist: (tx) => {
      ctl.onPersist(tx);
      if (ctl.fail !== undefined) throw ctl.fail;
      calls.push({ slots: tx.slots.map((s) => ({ ...s })), evicted: [...tx.evicted] });
    },
  });
  return { al, calls, ctl };
}

/** begin + end of one extent, waiting for the activation if needed. */
async function touch(al: ActivityLog, extent: number): Promise<void> {
  await al.begin(extent * X, 4096);
  al.end(extent * X, 4096);
}

t.test('geometry: 4 MiB extents', async (t) => {
  t.equal(AL_EXTENT_SHIFT, 22);
  t.equal(AL_EXTENT_SIZE, 4 * 1024 * 1024);
});

t.test('a hit takes a reference and returns undefined', async (t) => {
  const { al, calls } = makeAl([5, null, 7]);
  t.equal(al.begin(5 * X + 100, 4096), undefined);
  t.equal(al.begin(5 * X, X), undefined, 'the whole extent');
  t.equal(al.refCount(5), 2);
  t.same(al.activeExtents(), [5, 7]);
  t.ok(al.isActive(7));
  t.notOk(al.isActive(6));
  al.end(5 * X + 100, 4096);
  al.end(5 * X, X);
  t.equal(al.refCount(5), 0);
  t.ok(al.isActive(5), 'an extent stays active after its last end');
  t.same(al.stats, {
    hits: 2,
    misses: 0,
    transactions: 0,
    evictions: 0,
    waits: 0,
    pendingHits: 0,
  });
  await tick();
  t.same(calls, []);
});

t.test('misses of one turn are one transaction; persist runs before they resolve', async (t) => {
  const { al, calls, ctl } = makeAl(8);
  let resolved = 0;
  ctl.onPersist = () => t.equal(resolved, 0, 'no begin resolved before persist');
  const ps = [3, 9, 1, 100, 42].map((e) => al.begin(e * X, 512));
  t.ok(ps.every((p) => p instanceof Promise));
  t.equal(al.refCount(3), 0, 'no reference before the activation');
  for (const p of ps) void p?.then(() => resolved++);
  await Promise.all(ps);
  t.equal(calls.length, 1);
  t.same(calls[0], {
    slots: [
      { slot: 0, extent: 3 },
      { slot: 1, extent: 9 },
      { slot: 2, extent: 1 },
      { slot: 3, extent: 100 },
      { slot: 4, extent: 42 },
    ],
    evicted: [],
  });
  t.same(al.activeExtents(), [1, 3, 9, 42, 100]);
  t.equal(al.refCount(42), 1);
  t.same(al.stats, {
    hits: 0,
    misses: 5,
    transactions: 1,
    evictions: 0,
    waits: 0,
    pendingHits: 0,
  });
});

t.test('more than 64 changes take several transactions', async (t) => {
  const { al, calls } = makeAl(100);
  await Promise.all(Array.from({ length: 70 }, (_, i) => al.begin(i * X, 1)));
  t.same(
    calls.map((c) => c.slots.length),
    [64, 6],
  );
  const small = makeAl(10, { max: 3 });
  await Promise.all(Array.from({ length: 7 }, (_, i) => small.al.begin(i * X, 1)));
  t.same(
    small.calls.map((c) => c.slots.length),
    [3, 3, 1],
  );
  t.equal(small.al.stats.transactions, 3);
});

t.test('overlapping begins on one cold extent share one activation', async (t) => {
  const { al, calls } = makeAl(4);
  const a = al.begin(2 * X, 4096);
  const b = al.begin(2 * X + 8192, 4096);
  const c = al.begin(2 * X - 512, 1024); // straddles extents 1 and 2
  await Promise.all([a, b, c]);
  t.equal(calls.length, 1);
  t.same(calls[0]!.slots, [
    { slot: 0, extent: 2 },
    { slot: 1, extent: 1 },
  ]);
  t.equal(al.refCount(2), 3);
  t.equal(al.refCount(1), 1);
  al.end(2 * X - 512, 1024);
  t.equal(al.refCount(1), 0);
  t.equal(al.refCount(2), 2);
});

t.test('eviction takes the least recently used extent without references', async (t) => {
  const { al, calls } = makeAl(3);
  await touch(al, 0);
  await touch(al, 1);
  await touch(al, 2);
  t.same(al.slots(), [0, 1, 2]);
  await touch(al, 0); // a hit: 0 becomes the most recently used
  calls.length = 0;
  await touch(al, 3);
  await touch(al, 4);
  await touch(al, 5);
  t.same(
    calls.map((c) => [c.slots, c.evicted]),
    [
      [[{ slot: 1, extent: 3 }], [1]],
      [[{ slot: 2, extent: 4 }], [2]],
      [[{ slot: 0, extent: 5 }], [0]],
    ],
  );
  t.same(al.slots(), [5, 3, 4]);
  t.equal(al.stats.evictions, 3);
});

t.test('an extent with references never leaves the log', async (t) => {
  const { al, calls } = makeAl(2);
  await al.begin(0, 4096); // 0 stays referenced
  await touch(al, 1);
  await touch(al, 2);
  await touch(al, 3);
  t.same(
    calls.slice(1).map((c) => c.evicted),
    [[], [1], [2]],
  );
  t.ok(al.isActive(0));
  t.same(al.activeExtents(), [0, 3]);
});

t.test('when every slot is referenced, a miss waits for an end()', async (t) => {
  const { al, calls } = makeAl(2);
  await al.begin(0, 4096);
  await al.begin(X, 4096);
  let done = false;
  const p = al.begin(2 * X, 4096)!.then(() => (done = true));
  for (let i = 0; i < 5; i++) await tick();
  t.equal(done, false);
  t.equal(calls.length, 2, 'nothing persisted while waiting');
  t.equal(al.stats.waits, 1);
  t.equal(al.pending, 1);
  t.equal(al.begin(X + 4096, 4096), undefined, 'hits are not held up by a waiting miss');
  al.end(X + 4096, 4096);
  al.end(0, 4096);
  await p;
  t.same(calls[2], { slots: [{ slot: 0, extent: 2 }], evicted: [0] });
  t.same(al.activeExtents(), [1, 2]);
  t.equal(al.stats.waits, 1);
});

t.test('onStarved: told when writes wait for a slot, and only then', async (t) => {
  // The owner hurries whatever holds references (a replicated change's barrier): it must
  // hear of every commit that finds writes waiting, and of nothing else.
  let starved = 0;
  let inside = false;
  const { al } = makeAl(2, {
    onStarved: () => {
      t.equal(inside, false, 'never from inside begin() or end()');
      starved++;
    },
  });
  const call = <T>(f: () => T): T => {
    inside = true;
    try {
      return f();
    } finally {
      inside = false;
    }
  };
  await call(() => al.begin(0, 4096));
  await call(() => al.begin(X, 4096));
  t.equal(starved, 0, 'misses into free slots');
  call(() => al.end(0, 4096));
  await call(() => al.begin(2 * X, 4096));
  t.equal(starved, 0, 'a miss that evicts an unreferenced extent');
  let done = false;
  const p = call(() => al.begin(3 * X, 4096))!.then(() => (done = true));
  await tick();
  t.equal(starved, 1, 'every slot referenced: told once the commit finds it');
  t.equal(done, false);
  // A hit on the held extent ends: the commit runs again and finds it still starved.
  t.equal(
    call(() => al.begin(X, 4096)),
    undefined,
  );
  call(() => al.end(X, 4096));
  await tick();
  t.equal(starved, 2, 'told again at the next commit that still finds no slot');
  call(() => al.end(X, 4096));
  await p;
  t.equal(done, true, 'admitted once a reference dropped');
  t.equal(starved, 2, 'not told when the commit admits it');
  t.equal(al.stats.waits, 1, 'the waiting write is counted once');
});

t.test('a begin waiting for slots holds no references (no deadlock)', async (t) => {
  // Two writes each hold one extent and want another: with all-or-nothing admission the
  // waiting ones hold nothing, so ending the first pair lets both through.
  const { al } = makeAl(2);
  await al.begin(0, 4096);
  await al.begin(X, 4096);
  const a = al.begin(2 * X - 1, 2); // extents 1 and 2: needs a slot, 1 is referenced
  const b = al.begin(3 * X, 4096);
  await tick();
  t.equal(al.refCount(1), 1, 'the waiting straddle took no reference on its hit');
  al.end(0, 4096);
  await a;
  t.same(al.activeExtents(), [1, 2]);
  t.equal(al.refCount(1), 2);
  al.end(X, 4096);
  al.end(2 * X - 1, 2);
  await b;
  t.ok(al.isActive(3));
});

t.test('a failed persist rejects the whole batch and changes nothing', async (t) => {
  // 7 then 6 are evictable (in that LRU order), 8 is referenced, slot 3 is free.
  const { al, calls, ctl } = makeAl([7, 6, 8, null]);
  t.equal(al.begin(8 * X, 4096), undefined);
  ctl.fail = new Error('metadata disk gone');
  // Cold 1 and 2, and a straddle of 8 (a hit) and 9 (cold): three changes, two evictions.
  const ps = [al.begin(1 * X, 1), al.begin(2 * X, 1), al.begin(9 * X - 1, 2)];
  const results = await Promise.allSettled(ps);
  t.same(
    results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok')),
    ['metadata disk gone', 'metadata disk gone', 'metadata disk gone'],
  );
  t.same(al.slots(), [7, 6, 8, null], 'the log is as it was');
  t.same(al.activeExtents(), [6, 7, 8]);
  t.equal(al.refCount(8), 1, 'the straddle dropped the reference it took on its hit');
  t.equal(al.refCount(9), 0);
  t.notOk(al.isActive(9));
  t.equal(al.stats.transactions, 0);
  t.equal(calls.length, 0);
  ctl.fail = undefined;
  await al.begin(2 * X, 1);
  await al.begin(3 * X, 1);
  await al.begin(4 * X, 1);
  t.same(
    calls,
    [
      { slots: [{ slot: 3, extent: 2 }], evicted: [] },
      { slots: [{ slot: 0, extent: 3 }], evicted: [7] },
      { slots: [{ slot: 1, extent: 4 }], evicted: [6] },
    ],
    'free slots and LRU order survived the failure',
  );
});

t.test('al-updates no: references only, never a persist', async (t) => {
  const { al, calls } = makeAl(2, { enabled: false });
  for (let e = 0; e < 5; e++) t.equal(al.begin(e * X, 4096), undefined);
  t.equal(al.begin(0, 2 * X), undefined);
  t.same(al.activeExtents(), [0, 1, 2, 3, 4]);
  t.equal(al.refCount(0), 2);
  t.same(al.slots(), [null, null]);
  for (let e = 0; e < 5; e++) al.end(e * X, 4096);
  t.same(al.activeExtents(), [0, 1]);
  al.end(0, 2 * X);
  t.same(al.activeExtents(), []);
  await tick();
  t.same(calls, []);
  t.equal(al.stats.transactions, 0);
});

t.test('argument and usage errors', async (t) => {
  const { al } = makeAl([0, null]);
  t.equal(al.begin(0, 0), undefined, 'zero length touches nothing');
  al.end(0, 0);
  t.throws(() => al.begin(-1, 10), RangeError);
  t.throws(() => al.begin(0, -1), RangeError);
  t.throws(() => al.begin(0, 3 * X), RangeError, 'more extents than slots');
  t.throws(() => al.end(0, 4096), { message: 'ActivityLog.end() without begin() for extent 0' });
  t.throws(() => al.end(5 * X, 4096), Error);
  t.throws(() => new ActivityLog({ slots: [1, 1], enabled: true, persist: () => {} }), RangeError);
  t.throws(() => new ActivityLog({ slots: [], enabled: true, persist: () => {} }), RangeError);
});

t.test('model: random begin/end/fail sequences keep the invariants', async (t) => {
  const cmd = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('begin' as const),
        ext: fc.nat(9),
        span: fc.integer({ min: 1, max: 2 }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('end' as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('fail' as const), on: fc.boolean() }) },
  );
  let persists = 0;
  let failedEvictions = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 4 }),
      fc.array(cmd, { minLength: 10, maxLength: 100 }),
      async (n, cmds) => {
        const table = new Array<number | null>(n).fill(null);
        const held: Array<{ first: number; last: number }> = [];
        let failing = false;
        let unsettled = 0;
        const problems: string[] = [];
        const heldCover = (x: number): number =>
          held.filter((h) => h.first <= x && x <= h.last).length;
        const active = (): number[] =>
          table.filter((e): e is number => e !== null).sort((a, b) => a - b);
        const al: ActivityLog = new ActivityLog({
          slots: table.slice(),
          enabled: true,
          maxUpdatesPerTransaction: 3,
          persist: (tx) => {
            for (const e of tx.evicted) {
              if (heldCover(e) > 0) problems.push(`evicted referenced extent ${e}`);
            }
            if (failing) {
              if (tx.evicted.length > 0) failedEvictions++;
              throw new Error('injected');
            }
            persists++;
            for (const c of tx.slots) table[c.slot] = c.extent;
            if (JSON.stringify(active()) !== JSON.stringify(al.activeExtents())) {
              problems.push(`persisted ${active()} but active ${al.activeExtents()}`);
            }
          },
        });
        const check = (where: string): void => {
          for (const h of held) {
            for (let x = h.first; x <= h.last; x++) {
              if (!al.isActive(x)) problems.push(`${where}: referenced extent ${x} not active`);
            }
          }
          for (const x of new Set([
            ...al.activeExtents(),
            ...held.flatMap((h) => [h.first, h.last]),
          ])) {
            if (al.refCount(x) !== heldCover(x)) {
              problems.push(`${where}: extent ${x} refs ${al.refCount(x)}, want ${heldCover(x)}`);
            }
          }
          if (al.activeExtents().length > n) problems.push(`${where}: too many active`);
          if (JSON.stringify(al.slots()) !== JSON.stringify(table)) {
            problems.push(
              `${where}: slots ${JSON.stringify(al.slots())} vs persisted ${JSON.stringify(table)}`,
            );
          }
        };
        const endOne = (i: number): void => {
          const [h] = held.splice(i, 1);
          al.end(h!.first * X, (h!.last - h!.first + 1) * X);
        };
        for (const [i, c] of cmds.entries()) {
          if (c.t === 'begin') {
            const r = { first: c.ext, last: c.ext + c.span - 1 };
            const p = al.begin(c.ext * X, c.span * X);
            if (p === undefined) held.push(r);
            else {
              unsettled++;
              p.then(
                () => {
                  held.push(r);
                  unsettled--;
                },
                () => unsettled--,
              );
            }
          } else if (c.t === 'end') {
            if (held.length > 0) endOne(c.pick % held.length);
          } else if (c.t === 'tick') {
            await tick();
          } else {
            failing = c.on;
          }
          check(`step ${i} (${c.t})`);
        }
        failing = false;
        for (let i = 0; i < 50 && (unsettled > 0 || held.length > 0); i++) {
          while (held.length > 0) endOne(0);
          await tick();
        }
        check('drained');
        if (unsettled !== 0 || al.pending !== 0) problems.push(`${unsettled} begins never settled`);
        if (problems.length > 0) throw new Error(problems.slice(0, 5).join('; '));
      },
    ),
    { numRuns: 500 },
  );
  t.ok(persists > 500, `the model exercised persist (${persists} transactions)`);
  t.ok(failedEvictions > 10, `and failed ones that evicted (${failedEvictions})`);
});

// ---- asynchronous persist: the transaction is written at once, its sync settles later ----

interface Flight {
  tx: Tx;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** An activity log whose persist returns a promise the test settles. */
function makeAsyncAl(slots: number | Array<number | null>) {
  const table = typeof slots === 'number' ? new Array<number | null>(slots).fill(null) : slots;
  const flights: Flight[] = [];
  const al = new ActivityLog({
    slots: table.slice(),
    enabled: true,
    persist: (tx) =>
      new Promise<void>((resolve, reject) => {
        flights.push({
          tx: { slots: tx.slots.map((s) => ({ ...s })), evicted: [...tx.evicted] },
          resolve,
          reject,
        });
      }),
  });
  return { al, flights };
}

/** Records when a begin() settles. */
function watch(p: Promise<void> | undefined) {
  const w = { done: false, err: undefined as Error | undefined, p };
  p?.then(
    () => (w.done = true),
    (err: Error) => {
      w.done = true;
      w.err = err;
    },
  );
  return w;
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await tick();
};

t.test('async: a write starts only once its transaction is durable', async (t) => {
  const { al, flights } = makeAsyncAl(4);
  const a = watch(al.begin(1 * X, 4096));
  const b = watch(al.begin(2 * X, 4096));
  await settle();
  t.equal(flights.length, 1, 'one transaction');
  t.same(flights[0]!.tx.slots, [
    { slot: 0, extent: 1 },
    { slot: 1, extent: 2 },
  ]);
  t.notOk(a.done || b.done, 'nothing resolved while the sync runs');
  t.ok(al.isActive(1) && al.isPending(1), 'the extent is in the log, pending');
  t.equal(al.refCount(1), 1, 'referenced by the write waiting for it');
  t.equal(al.pending, 2, 'both begins count as pending');
  t.equal(al.stats.transactions, 0);
  flights[0]!.resolve();
  await settle();
  t.ok(a.done && b.done && !a.err && !b.err, 'resolved once the sync returned');
  t.notOk(al.isPending(1));
  t.equal(al.stats.transactions, 1);
  t.equal(al.pending, 0);
  t.equal(al.begin(1 * X + 8192, 4096), undefined, 'now a plain hit');
});

t.test('async: a hit on a pending extent waits for that same transaction', async (t) => {
  const { al, flights } = makeAsyncAl([0, null, null]);
  const a = watch(al.begin(1 * X, 4096));
  await settle();
  t.equal(flights.length, 1);
  const hit = al.begin(1 * X + 4096, 4096);
  t.ok(hit instanceof Promise, 'a hit on a pending extent is not a plain hit');
  const h = watch(hit);
  // A write over extent 0 (durable) and 1 (pending) waits too.
  const straddle = watch(al.begin(1 * X - 512, 1024));
  t.equal(al.refCount(1), 1, 'the waiting hit holds no reference yet');
  t.equal(al.refCount(0), 0, 'nor does the straddle on its durable extent');
  t.equal(al.stats.pendingHits, 2);
  await settle();
  t.notOk(h.done || straddle.done, 'not before the sync');
  t.equal(flights.length, 1, 'and no transaction of its own');
  flights[0]!.resolve();
  await settle();
  t.ok(a.done && h.done && straddle.done, 'all three resolve with the transaction');
  t.notOk(h.err ?? straddle.err);
  t.equal(flights.length, 1, 'still one transaction');
  t.equal(al.refCount(1), 3);
  t.equal(al.refCount(0), 1);
  t.same(al.stats, {
    hits: 3,
    misses: 1,
    transactions: 1,
    evictions: 0,
    waits: 0,
    pendingHits: 2,
  });
});

t.test('async: misses during a sync go into the next transaction, in order', async (t) => {
  const { al, flights } = makeAsyncAl(8);
  const first = watch(al.begin(1 * X, 1));
  await settle();
  const later = [2, 3, 4].map((e) => watch(al.begin(e * X, 1)));
  await settle();
  t.equal(flights.length, 1, 'serialized: no second transaction while one is in flight');
  t.notOk(later.some((w) => w.done));
  t.notOk(al.isActive(2), 'queued misses are not in the log yet');
  flights[0]!.resolve();
  await settle();
  t.ok(first.done);
  t.notOk(
    later.some((w) => w.done),
    'the next transaction is in flight',
  );
  t.equal(flights.length, 2, 'started as soon as the first settled');
  t.same(
    flights[1]!.tx.slots.map((s) => s.extent),
    [2, 3, 4],
    'everything that queued meanwhile, together',
  );
  flights[1]!.resolve();
  await settle();
  t.ok(later.every((w) => w.done && !w.err));
  t.equal(al.stats.transactions, 2);
});

t.test('async: a failed sync rejects its writes and those that joined it', async (t) => {
  // 7 then 6 are evictable, slot 2 is free.
  const { al, flights } = makeAsyncAl([7, 6, null]);
  const a = watch(al.begin(1 * X, 1)); // free slot 2
  const b = watch(al.begin(2 * X, 1)); // evicts 7
  await settle();
  t.same(flights[0]!.tx, {
    slots: [
      { slot: 2, extent: 1 },
      { slot: 0, extent: 2 },
    ],
    evicted: [7],
  });
  const joined = watch(al.begin(1 * X + 100, 1));
  const other = watch(al.begin(3 * X, 1)); // a plain miss, queued for the next transaction
  // A write to the extent being evicted: after a failed sync, nobody knows whether 7 is
  // still in the on-disk log, so it must not start on it.
  const onVictim = watch(al.begin(7 * X, 1));
  t.notOk(al.isActive(7), 'the victim left the log with the transaction');
  flights[0]!.reject(new Error('fdatasync: EIO'));
  await settle();
  for (const [name, w] of Object.entries({ a, b, joined, onVictim })) {
    t.equal(w.err?.message, 'fdatasync: EIO', `${name} rejected with the error`);
  }
  t.same(al.slots().slice(0, 2), [7, 6], 'the evicted extent is back');
  t.notOk(al.isActive(1) || al.isActive(2), 'the failed extents are not active');
  t.equal(al.refCount(1), 0, 'no references left');
  t.equal(al.stats.transactions, 0);
  t.notOk(other.done, 'the unrelated miss is not failed with it');
  t.equal(flights.length, 2, 'it goes into the next transaction');
  t.same(flights[1]!.tx, { slots: [{ slot: 2, extent: 3 }], evicted: [] }, 'with the free slot');
  flights[1]!.resolve();
  await settle();
  t.ok(other.done && !other.err);
  // LRU order survived: 7 is still the least recently used.
  const c = watch(al.begin(4 * X, 1));
  al.end(3 * X, 1);
  await settle();
  t.same(flights[2]!.tx.evicted, [7]);
  flights[2]!.resolve();
  await settle();
  t.ok(c.done && !c.err);
});

t.test('async: a persist that throws at once still fails only its batch', async (t) => {
  let throwNow = true;
  const flights: Flight[] = [];
  const al = new ActivityLog({
    slots: [null, null],
    enabled: true,
    persist: (tx) => {
      if (throwNow) throw new Error('SQLITE_FULL');
      return new Promise<void>((resolve, reject) => flights.push({ tx, resolve, reject }));
    },
  });
  const a = watch(al.begin(0, 1));
  await settle();
  t.equal(a.err?.message, 'SQLITE_FULL');
  throwNow = false;
  const b = watch(al.begin(0, 1));
  await settle();
  t.equal(flights.length, 1);
  flights[0]!.resolve();
  await settle();
  t.ok(b.done && !b.err);
});

t.test('async: a pending extent is never evicted', async (t) => {
  const { al, flights } = makeAsyncAl(2);
  const a = watch(al.begin(1 * X, 1));
  await settle();
  // While 1 is pending: 2 and 3 need slots; only one is free.
  const b = watch(al.begin(2 * X, 1));
  const c = watch(al.begin(3 * X, 1));
  await settle();
  flights[0]!.resolve();
  await settle();
  t.ok(a.done);
  t.same(flights[1]!.tx, { slots: [{ slot: 1, extent: 2 }], evicted: [] }, '3 must wait');
  t.equal(al.stats.waits, 1);
  al.end(1 * X, 1); // 1 is durable and unreferenced now: 3 may take its slot, once 2 is durable
  await settle();
  t.equal(flights.length, 2, 'not while 2 is in flight');
  flights[1]!.resolve();
  await settle();
  t.ok(b.done);
  t.same(flights[2]!.tx, { slots: [{ slot: 0, extent: 3 }], evicted: [1] });
  flights[2]!.resolve();
  await settle();
  t.ok(c.done && !c.err);
});

t.test('model (async): random begin/end/sync outcomes keep the invariants', async (t) => {
  const cmd = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('begin' as const),
        ext: fc.nat(9),
        span: fc.integer({ min: 1, max: 2 }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('end' as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const) }) },
    {
      weight: 2,
      arbitrary: fc.record({ t: fc.constant('sync' as const), ok: fc.boolean() }),
    },
  );
  let synced = 0;
  let failedSyncs = 0;
  let pendingHits = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 4 }),
      fc.array(cmd, { minLength: 10, maxLength: 120 }),
      async (n, cmds) => {
        /** What is durable: the slot table as of the last successful sync. */
        const durable = new Array<number | null>(n).fill(null);
        let flight: {
          after: Array<number | null>;
          resolve: () => void;
          reject: () => void;
        } | null = null;
        /**
         * Extents a failed sync may or may not have put in (or taken out of) the log, with the
         * number of that failure. A begin issued before it must not start on them (one issued
         * after it is the caller's business: DiskMeta refuses every write after such a failure).
         */
        const uncertain = new Map<number, number>();
        let failures = 0;
        const held: Array<{ first: number; last: number }> = [];
        let unsettled = 0;
        const problems: string[] = [];
        const heldCover = (x: number): number =>
          held.filter((h) => h.first <= x && x <= h.last).length;
        const al: ActivityLog = new ActivityLog({
          slots: durable.slice(),
          enabled: true,
          maxUpdatesPerTransaction: 3,
          persist: (tx) => {
            if (flight !== null) problems.push('two transactions in flight');
            for (const e of tx.evicted) {
              if (heldCover(e) > 0) problems.push(`evicted referenced extent ${e}`);
              if (!durable.includes(e)) problems.push(`evicted ${e}, which is not durable`);
            }
            const after = durable.slice();
            for (const c of tx.slots) after[c.slot] = c.extent;
            return new Promise<void>((resolve, reject) => {
              flight = {
                after,
                resolve: () => {
                  for (let s = 0; s < n; s++) durable[s] = after[s]!;
                  for (const e of after) if (e !== null) uncertain.delete(e);
                  resolve();
                },
                reject: () => {
                  // A failed sync: the on-disk log may be the old table or the new one.
                  failures++;
                  for (const c of tx.slots) {
                    const old = durable[c.slot];
                    if (old !== null && old !== undefined) uncertain.set(old, failures);
                    if (c.extent !== null) uncertain.set(c.extent, failures);
                  }
                  reject(new Error('sync failed'));
                },
              };
            });
          },
        });
        const check = (where: string): void => {
          for (const h of held) {
            for (let x = h.first; x <= h.last; x++) {
              if (!durable.includes(x))
                problems.push(`${where}: a started write's ${x} not durable`);
              if (al.isPending(x)) problems.push(`${where}: a started write's ${x} pending`);
            }
          }
          for (const x of new Set([
            ...al.activeExtents(),
            ...held.flatMap((h) => [h.first, h.last]),
          ])) {
            // Writes admitted to the transaction in flight hold references too.
            if (al.refCount(x) < heldCover(x)) {
              problems.push(`${where}: extent ${x} refs ${al.refCount(x)} < ${heldCover(x)}`);
            }
            if (!al.isPending(x) && flight === null && al.refCount(x) !== heldCover(x)) {
              problems.push(`${where}: extent ${x} refs ${al.refCount(x)}, want ${heldCover(x)}`);
            }
          }
          const want = flight === null ? durable : flight.after;
          if (JSON.stringify(al.slots()) !== JSON.stringify(want)) {
            problems.push(
              `${where}: slots ${JSON.stringify(al.slots())} vs ${JSON.stringify(want)}`,
            );
          }
          if (flight === null && al.activeExtents().some((x) => al.isPending(x))) {
            problems.push(`${where}: pending extent with nothing in flight`);
          }
        };
        const endOne = (i: number): void => {
          const [h] = held.splice(i, 1);
          al.end(h!.first * X, (h!.last - h!.first + 1) * X);
        };
        const onStart = (r: { first: number; last: number; epoch: number }): void => {
          for (let x = r.first; x <= r.last; x++) {
            if (!durable.includes(x)) problems.push(`write started on ${x} before it was durable`);
            if ((uncertain.get(x) ?? -1) > r.epoch) {
              problems.push(`write started on ${x}, uncertain after a failure`);
            }
          }
          held.push(r);
        };
        for (const [i, c] of cmds.entries()) {
          if (c.t === 'begin') {
            const r = { first: c.ext, last: c.ext + c.span - 1, epoch: failures };
            const p = al.begin(c.ext * X, c.span * X);
            if (p === undefined) onStart(r);
            else {
              unsettled++;
              p.then(
                () => {
                  onStart(r);
                  unsettled--;
                },
                () => unsettled--,
              );
            }
          } else if (c.t === 'end') {
            if (held.length > 0) endOne(c.pick % held.length);
          } else if (c.t === 'tick') {
            await tick();
          } else if (flight !== null) {
            const f: { resolve: () => void; reject: () => void } = flight;
            flight = null;
            if (c.ok) {
              synced++;
              f.resolve();
            } else {
              failedSyncs++;
              f.reject();
            }
            await tick();
          }
          check(`step ${i} (${c.t})`);
        }
        for (let i = 0; i < 100 && (unsettled > 0 || held.length > 0 || flight !== null); i++) {
          while (held.length > 0) endOne(0);
          if (flight !== null) {
            const f: { resolve: () => void } = flight;
            flight = null;
            f.resolve();
          }
          await tick();
        }
        check('drained');
        pendingHits += al.stats.pendingHits;
        if (unsettled !== 0 || al.pending !== 0) problems.push(`${unsettled} begins never settled`);
        if (problems.length > 0) throw new Error(problems.slice(0, 5).join('; '));
      },
    ),
    { numRuns: 500 },
  );
  t.ok(synced > 200, `the model synced transactions (${synced})`);
  t.ok(failedSyncs > 100, `and failed some (${failedSyncs})`);
  t.ok(pendingHits > 100, `and hit pending extents (${pendingHits})`);
});
