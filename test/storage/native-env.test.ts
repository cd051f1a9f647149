import t from 'tap';

import { FileDisk } from '../../src/storage/file-disk.js';
import { loadNative, nativeDisabledByEnv, nativeLoadError } from '../../src/storage/native.js';
import { MiB, sparseFile } from './helpers.js';

t.test('URBD_NO_NATIVE forces the pure-TS paths', async (t) => {
  const saved = process.env.URBD_NO_NATIVE;
  t.teardown(() => {
    if (saved === undefined) delete process.env.URBD_NO_NATIVE;
    else process.env.URBD_NO_NATIVE = saved;
  });

  delete process.env.URBD_NO_NATIVE;
  t.equal(nativeDisabledByEnv(), false);
  t.not(loadNative(), null, 'loads normally');
  t.equal(nativeLoadError(), undefined);

  for (const value of ['1', 'yes']) {
    process.env.URBD_NO_NATIVE = value;
    t.equal(nativeDisabledByEnv(), true, `URBD_NO_NATIVE=${value}`);
    t.equal(loadNative(), null);
  }
  const disk = await FileDisk.open(sparseFile(t, MiB));
  t.teardown(() => disk.close());
  t.equal(disk.nativeInUse, false);
  t.equal(disk.capabilities.fastZero, false);

  process.env.URBD_NO_NATIVE = '0';
  t.not(loadNative(), null, '0 means enabled');
});
