import t from 'tap';

import { FileDisk } from '../../src/storage/file-disk.js';
import { KiB, MiB, loopDisk, pattern, sparseFile } from './helpers.js';

// Small writes issued in one turn of the event loop share one thread-pool job in the native
// path; each must still succeed or fail on its own, and all must land.

for (const native of [true, false]) {
  const label = native ? 'native' : 'fallback';

  t.test(`${label}: a burst of small writes lands, across several batches`, async (t) => {
    const disk = await FileDisk.open(sparseFile(t, 8 * MiB), { native });
    t.teardown(() => disk.close());
    const writes = [];
    // More than one batch holds, at scattered and unaligned offsets.
    for (let i = 0; i < 200; i++) {
      writes.push(disk.write(pattern(4 * KiB, i), i * 37 * KiB + (i % 7), false));
    }
    await Promise.all(writes);
    for (let i = 0; i < 200; i++) {
      const back = Buffer.alloc(4 * KiB);
      await disk.read(back, i * 37 * KiB + (i % 7));
      if (!back.equals(pattern(4 * KiB, i))) t.fail(`write ${i} did not land`);
    }
    t.pass('all 200 writes read back');
  });

  t.test(`${label}: one failing write in a burst fails alone`, async (t) => {
    const { dev } = loopDisk(t, 4 * MiB);
    const disk = await FileDisk.open(dev, { native });
    t.teardown(() => disk.close());
    const before = disk.write(pattern(4 * KiB, 1), 0, false);
    // Straddles the end of the device: the kernel writes what fits, then refuses.
    const straddling = disk.write(pattern(4 * KiB, 2), disk.size - 2 * KiB, false);
    const after = disk.write(pattern(4 * KiB, 3), 8 * KiB, false);
    await t.resolves(before);
    await t.rejects(straddling, { code: 'ENOSPC' });
    await t.resolves(after);
    const back = Buffer.alloc(4 * KiB);
    await disk.read(back, 8 * KiB);
    t.ok(back.equals(pattern(4 * KiB, 3)), 'the write after the failure landed');
  });
}

for (const native of [true, false]) {
  const label = native ? 'native' : 'fallback';
  t.test(`${label}: a write in pieces lands whole, with and without FUA`, async (t) => {
    const disk = await FileDisk.open(sparseFile(t, 8 * MiB), { native });
    t.teardown(() => disk.close());
    for (const fua of [false, true]) {
      const whole = pattern(MiB + 123, fua ? 7 : 8);
      // Uneven pieces, as a socket delivers them.
      const pieces = [whole.subarray(0, 1), whole.subarray(1, 65537), whole.subarray(65537)];
      const at = fua ? 3 * MiB + 5 : 17;
      await disk.write(pieces, at, fua);
      const back = Buffer.alloc(whole.length);
      await disk.read(back, at);
      t.ok(back.equals(whole), `fua=${fua}`);
    }
  });
}
