// resyncRates (src/replication/rate.ts, drbd.md §6.4): the per-tick budget and the window of
// a SyncTarget. Fixed rate with c-plan-ahead 0; otherwise c-max-rate, throttled to c-min-rate
// while application I/O is active; at least one 4 KiB block per tick; a window of
// c-fill-target but never under 16 MiB.
import fc from 'fast-check';
import t from 'tap';

import { RESYNC_MAX_REQUEST, RESYNC_TICK_MS, resyncRates } from '../../src/replication/rate.js';

type RateOpts = Parameters<typeof resyncRates>[0];

const MiB = 1 << 20;
/** The defaults of src/config/schema.ts. */
const defaults: RateOpts = {
  resyncRateKiB: 100 * 1024,
  cPlanAheadMs: 2000,
  cFillTargetSectors: 100,
  cMaxRateKiB: 1024 * 1024,
  cMinRateKiB: 10 * 1024,
};
const opts = (over: Partial<RateOpts> = {}): RateOpts => ({ ...defaults, ...over });
/** Bytes per 100 ms tick for a rate in KiB/s. */
const perTick = (kib: number): number => (kib * 1024 * RESYNC_TICK_MS) / 1000;

t.test('constants', async (t) => {
  t.equal(RESYNC_TICK_MS, 100);
  t.equal(RESYNC_MAX_REQUEST, 4 * MiB);
});

t.test('fixed rate (c-plan-ahead 0): resync-rate per tick, whatever the I/O', async (t) => {
  const o = opts({ cPlanAheadMs: 0, resyncRateKiB: 40 * 1024 });
  t.same(resyncRates(o, false), { budget: 4 * MiB, window: 16 * MiB });
  t.same(resyncRates(o, true), { budget: 4 * MiB, window: 16 * MiB }, 'c-min-rate plays no part');
  const capped = opts({ cPlanAheadMs: 0, resyncRateKiB: 8 << 20, cMaxRateKiB: 250 });
  t.equal(resyncRates(capped, false).budget, perTick(8 << 20), 'nor does c-max-rate');
});

t.test('dynamic (the default): c-max-rate while idle', async (t) => {
  t.same(resyncRates(defaults, false), { budget: perTick(1024 * 1024), window: 16 * MiB });
  const o = opts({ cMaxRateKiB: 250, resyncRateKiB: 1 });
  t.equal(resyncRates(o, false).budget, 25600, '250 KiB/s: 25600 bytes per tick');
});

t.test('dynamic with application I/O: c-min-rate, capped by c-max-rate', async (t) => {
  t.equal(resyncRates(defaults, true).budget, MiB, '10 MiB/s: 1 MiB per tick');
  t.equal(
    resyncRates(opts({ cMinRateKiB: 250 }), true).budget,
    25600,
    'the default-like 250 KiB/s',
  );
  t.equal(
    resyncRates(opts({ cMinRateKiB: 4 << 20, cMaxRateKiB: 1024 }), true).budget,
    perTick(1024),
    'c-min-rate above c-max-rate: c-max-rate still caps',
  );
  t.equal(
    resyncRates(opts({ cMinRateKiB: 0 }), true).budget,
    4096,
    'c-min-rate 0 still allows one block per tick',
  );
});

t.test('the budget is at least one block per tick', async (t) => {
  t.equal(resyncRates(opts({ cPlanAheadMs: 0, resyncRateKiB: 1 }), false).budget, 4096);
  t.equal(resyncRates(opts({ cPlanAheadMs: 0, resyncRateKiB: 40 }), false).budget, 4096);
  t.equal(resyncRates(opts({ cPlanAheadMs: 0, resyncRateKiB: 41 }), false).budget, perTick(41));
});

t.test('the window: c-fill-target, at least 16 MiB', async (t) => {
  for (const [sectors, want] of [
    [0, 16 * MiB],
    [100, 16 * MiB],
    [32768, 16 * MiB],
    [32769, 32769 * 512],
    [1 << 20, 512 * MiB],
  ] as const) {
    const o = opts({ cFillTargetSectors: sectors });
    for (const plan of [0, 2000]) {
      for (const io of [false, true]) {
        t.equal(
          resyncRates({ ...o, cPlanAheadMs: plan }, io).window,
          want,
          `${sectors} sectors, plan-ahead ${plan}, app I/O ${io}`,
        );
      }
    }
  }
});

t.test('property: over the whole configurable ranges', async (t) => {
  // The ranges src/config/schema.ts accepts.
  const arb = fc.record({
    resyncRateKiB: fc.integer({ min: 1, max: 8 << 20 }),
    cPlanAheadMs: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 1, max: 300 }).map((x) => x * 100),
    ),
    cFillTargetSectors: fc.integer({ min: 0, max: 1 << 20 }),
    cMaxRateKiB: fc.integer({ min: 250, max: 4 << 20 }),
    cMinRateKiB: fc.integer({ min: 0, max: 4 << 20 }),
  });
  fc.assert(
    fc.property(arb, (o) => {
      const idle = resyncRates(o, false);
      const busy = resyncRates(o, true);
      const floor = (kib: number): number => Math.max(4096, perTick(kib));
      for (const r of [idle, busy]) {
        if (!(r.budget >= 4096) || !Number.isFinite(r.budget)) return false;
        if (r.window < 16 * MiB || r.window < o.cFillTargetSectors * 512) return false;
        if (r.window !== Math.max(16 * MiB, o.cFillTargetSectors * 512)) return false;
      }
      if (busy.budget > idle.budget) return false;
      if (o.cPlanAheadMs === 0) {
        return idle.budget === floor(o.resyncRateKiB) && busy.budget === idle.budget;
      }
      // Dynamic: resync-rate plays no part; c-max-rate caps; c-min-rate is the busy floor.
      const other = resyncRates({ ...o, resyncRateKiB: o.resyncRateKiB === 1 ? 2 : 1 }, true);
      if (other.budget !== busy.budget) return false;
      if (idle.budget !== floor(o.cMaxRateKiB)) return false;
      return busy.budget === Math.min(floor(o.cMaxRateKiB), floor(o.cMinRateKiB));
    }),
    { numRuns: 2000 },
  );
  t.pass('property holds');
});
