import t from 'tap';

import { OptionalOp } from '../../src/storage/optional-op.js';

const fail = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code }));

t.test('an unsupported answer is remembered and the call not repeated', async (t) => {
  for (const code of ['EOPNOTSUPP', 'ENOTSUP', 'ENOTTY', 'ENOSYS']) {
    const op = new OptionalOp(true);
    t.equal(await op.attempt(fail(code)), false, code);
    t.equal(op.available, false);
    let calls = 0;
    t.equal(
      await op.attempt(async () => {
        calls++;
      }),
      false,
    );
    t.equal(calls, 0, 'not called again');
  }
});

t.test('real failures propagate and do not disable the operation', async (t) => {
  const op = new OptionalOp(true);
  await t.rejects(op.attempt(fail('EIO')), { code: 'EIO' });
  t.equal(op.available, true);
  t.equal(await op.attempt(async () => undefined), true);
});

t.test('an operation known unsupported from the start is never tried', async (t) => {
  const op = new OptionalOp(false);
  t.equal(await op.attempt(fail('EIO')), false);
});
