// redialDelayMs (src/replication/redial.ts): after a refused connection the dialer comes
// back at 100 ms, doubling, never past connect-int; any other failure waits connect-int.
import fc from 'fast-check';
import t from 'tap';

import { FIRST_REDIAL_MS, redialDelayMs } from '../../src/replication/redial.js';

t.test('refused: 100 ms, doubling, capped at connect-int', async (t) => {
  const seq = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => redialDelayMs('ECONNREFUSED', n, 10_000));
  t.same(seq, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
  t.equal(FIRST_REDIAL_MS, 100);
  t.equal(redialDelayMs('ECONNREFUSED', 0, 1000), 100, 'connect-int 1 s: still quick first');
  t.equal(redialDelayMs('ECONNREFUSED', 4, 1000), 1000, 'and capped at 1 s');
  t.equal(redialDelayMs('ECONNREFUSED', 1e9, 120_000), 120_000, 'a huge count is just the cap');
});

t.test('anything else waits connect-int', async (t) => {
  for (const errno of [undefined, 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']) {
    t.equal(redialDelayMs(errno, 0, 10_000), 10_000, String(errno));
    t.equal(redialDelayMs(errno, 5, 7000), 7000, `${String(errno)} after refusals`);
  }
});

t.test(
  'property: within [100 ms or connect-int, connect-int], monotonic in the count',
  async () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 64 }),
        fc.integer({ min: 1, max: 120 }).map((s) => s * 1000),
        (n, connectInt) => {
          const d = redialDelayMs('ECONNREFUSED', n, connectInt);
          const next = redialDelayMs('ECONNREFUSED', n + 1, connectInt);
          return (
            d >= Math.min(FIRST_REDIAL_MS, connectInt) &&
            d <= connectInt &&
            next >= d &&
            next <= 2 * d
          );
        },
      ),
    );
  },
);
