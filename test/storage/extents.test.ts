import t from 'tap';

import { splitDevice } from '../../src/storage/block-device.js';
import { walkExtents } from '../../src/storage/extents.js';
import type { NativeBinding } from '../../src/storage/native.js';

/** A file whose data lives in `ranges` ([start, end) pairs, sorted); `size` bytes long. */
function fakeFile(
  size: number,
  ranges: Array<[number, number]>,
): Pick<NativeBinding, 'seekData' | 'seekHole'> {
  return {
    seekData: (_fd, offset) => {
      if (offset >= size) return -1;
      const r = ranges.find(([, end]) => end > offset);
      return r === undefined ? -1 : Math.max(r[0], offset);
    },
    seekHole: (_fd, offset) => {
      if (offset >= size) return -1;
      const r = ranges.find(([start, end]) => start <= offset && offset < end);
      return r === undefined ? offset : r[1];
    },
  };
}

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

t.test('alternating holes and data, clipped to the window', async (t) => {
  const f = fakeFile(100, [
    [10, 20],
    [30, 100],
  ]);
  t.same(walkExtents(f, 3, 0, 100), [hole(10), data(10), hole(10), data(70)]);
  t.same(walkExtents(f, 3, 15, 35), [data(5), hole(10), data(5)]);
  t.same(walkExtents(f, 3, 22, 25), [hole(3)]);
});

t.test('a trailing hole runs to the end even past the last data', async (t) => {
  const f = fakeFile(100, [[0, 5]]);
  t.same(walkExtents(f, 3, 0, 100), [data(5), hole(95)]);
  t.same(walkExtents(fakeFile(50, []), 3, 0, 50), [hole(50)]);
});

t.test('stops after the extent limit, still covering the start', async (t) => {
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i < 100; i++) ranges.push([i * 10, i * 10 + 5]);
  const f = fakeFile(1000, ranges);
  const extents = walkExtents(f, 3, 0, 1000, 7);
  t.equal(extents.length, 7);
  t.same(extents.slice(0, 3), [data(5), hole(5), data(5)]);
  t.equal(
    walkExtents(f, 3, 0, 1000).reduce((n, e) => n + e.length, 0),
    1000,
    'the default limit is not hit by 200 extents',
  );
});

t.test('a file changing under the walk cannot loop forever', async (t) => {
  const f = fakeFile(100, [[10, 20]]);
  // SEEK_HOLE contradicting SEEK_DATA, as if the data vanished between the two calls.
  const racy: typeof f = { ...f, seekHole: (_fd, offset) => offset };
  t.same(walkExtents(racy, 3, 0, 100), [hole(10), data(90)]);
});

t.test('dev_t splits like the kernel encodes it', async (t) => {
  t.same(splitDevice(0x700n), { major: 7, minor: 0 });
  t.same(splitDevice(0x10300n), { major: 259, minor: 0 }, 'nvme-style major above 255');
  // new_encode_dev-style split of major 300, minor 1000000 as glibc's makedev lays it out.
  const major = 300n;
  const minor = 1000000n;
  const rdev =
    (minor & 0xffn) |
    ((major & 0xfffn) << 8n) |
    ((minor & ~0xffn) << 12n) |
    ((major & ~0xfffn) << 32n);
  t.same(splitDevice(rdev), { major: 300, minor: 1000000 });
});
