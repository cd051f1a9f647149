import path from 'node:path';

import t from 'tap';

import { applyAl } from '../../src/meta/apply-al.js';
import { MetaStore, type MetaFlags } from '../../src/meta/store.js';
import { MiB, tempDir, type TestContext } from './helpers.js';

const EXTENT = 4 * MiB;

/** The set bits of a store's bitmap, as a sorted list of bit numbers (small devices only). */
function setBitsOf(store: MetaStore): number[] {
  const out: number[] = [];
  for (const { page, data } of store.readBitmapPages()) {
    for (let i = 0; i < data.length * 8; i++) {
      if ((data[i >> 3]! >> (i & 7)) & 1) out.push(page * 32768 + i);
    }
  }
  return out;
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

/**
 * A store as a crashed daemon leaves it: unclean, al-clean cleared, extents in the log, and
 * some bits already set.
 */
function crashed(
  t: TestContext,
  opts: {
    sizeBytes: number;
    extents: number[];
    flags: Partial<MetaFlags>;
    bits?: number[];
  },
): { file: string; store: MetaStore } {
  const file = path.join(tempDir(t), 'r0.meta');
  const store = MetaStore.create(file, { sizeBytes: opts.sizeBytes, nodeId: 0, alExtents: 61 });
  t.teardown(() => store.close());
  const pages = new Map<number, Buffer>();
  for (const b of opts.bits ?? []) {
    const p = Math.floor(b / 32768);
    const buf = pages.get(p) ?? Buffer.alloc(4096);
    buf[(b % 32768) >> 3]! |= 1 << (b & 7);
    pages.set(p, buf);
  }
  store.commitAl({
    slots: opts.extents.map((extent, i) => ({ slot: (i * 7) % 61, extent })),
    bitmapPages: [...pages].map(([page, data]) => ({ page, data })),
  });
  store.setFlags({ alClean: false, ...opts.flags });
  store.markUnclean();
  return { file, store };
}

t.test('a crashed primary: every bit of every active extent, exactly', async (t) => {
  const size = 40 * EXTENT; // 40960 bits: page 0 whole, page 1 partly
  const extents = [33, 0, 31, 32, 5]; // 31|32 straddle the page boundary
  const old = [3, 5 * 1024 + 17, 7 * 1024, 40959]; // one inside an extent, others outside
  const { file, store } = crashed(t, {
    sizeBytes: size,
    extents,
    flags: { primaryIndicator: true },
    bits: old,
  });
  const txBefore = store.readAl().transaction;
  const r = applyAl(store);
  const want = new Set<number>(old);
  for (const e of extents) for (const b of range(e * 1024, (e + 1) * 1024)) want.add(b);
  t.same(
    setBitsOf(store),
    [...want].sort((a, b) => a - b),
  );
  t.same(r, {
    applied: true,
    extents: [0, 5, 31, 32, 33],
    bitsSet: 5 * 1024 - 2, // bits 3 and 5*1024+17 were already set
    crashedPrimary: true,
    fullSync: false,
  });
  const sb = store.superblock();
  t.equal(sb.clean, true, 'the clean marker is restored');
  t.equal(sb.flags.alClean, true);
  t.equal(sb.flags.crashedPrimary, true);
  t.equal(sb.flags.fullSync, false);
  t.equal(sb.flags.primaryIndicator, true, 'primary-indicator is left to the state machine');
  t.same(store.readAl(), { slots: new Array(61).fill(null), transaction: txBefore + 1 });
  store.close();
  const again = MetaStore.open(file);
  t.same(
    setBitsOf(again),
    [...want].sort((a, b) => a - b),
    'durable',
  );
  t.equal(again.superblock().clean, true);
  t.same(applyAl(again), {
    applied: false,
    extents: [],
    bitsSet: 0,
    crashedPrimary: true,
    fullSync: false,
  });
  again.close();
});

t.test('extents at and past the end of the device are clipped', async (t) => {
  const size = 10 * EXTENT + 2 * 4096; // extent 10 has only 2 bits
  const { store } = crashed(t, {
    sizeBytes: size,
    extents: [10, 9, 500],
    flags: { primaryIndicator: true },
  });
  const r = applyAl(store);
  t.same(setBitsOf(store), range(9 * 1024, 10 * 1024 + 2));
  t.equal(r.bitsSet, 1024 + 2);
  t.same(r.extents, [9, 10, 500]);
  t.same(store.dump().bitmap.ranges, [[9 * 1024, 10 * 1024 + 2]]);
});

t.test('not primary: the log is dropped, no bits, crashed-primary as it was', async (t) => {
  for (const before of [false, true]) {
    const { store } = crashed(t, {
      sizeBytes: 64 * EXTENT,
      extents: [1, 2, 3],
      flags: { primaryIndicator: false, crashedPrimary: before },
      bits: [99],
    });
    const r = applyAl(store);
    // A crashed Primary that crashes again as Secondary, before its crash was dealt with,
    // still owes the peer its old tail (the bits of that tail are still set: 99 here).
    t.same(r, {
      applied: true,
      extents: [1, 2, 3],
      bitsSet: 0,
      crashedPrimary: before,
      fullSync: false,
    });
    t.same(setBitsOf(store), [99]);
    t.equal(store.superblock().flags.crashedPrimary, before);
    t.equal(store.superblock().flags.alClean, true);
    t.equal(store.superblock().clean, true);
    t.same(
      store.readAl().slots.filter((s) => s !== null),
      [],
    );
  }
});

t.test('al-updates no on a crashed primary: a full sync is owed', async (t) => {
  const { store } = crashed(t, {
    sizeBytes: 64 * EXTENT,
    extents: [4],
    flags: { primaryIndicator: true, alDisabled: true },
  });
  const r = applyAl(store);
  t.equal(r.fullSync, true);
  t.equal(r.crashedPrimary, true);
  t.equal(store.superblock().flags.fullSync, true);
  t.equal(store.superblock().flags.alDisabled, true);
  t.same(setBitsOf(store), range(4 * 1024, 5 * 1024));

  const secondary = crashed(t, {
    sizeBytes: 64 * EXTENT,
    extents: [],
    flags: { primaryIndicator: false, alDisabled: true },
  }).store;
  t.equal(applyAl(secondary).fullSync, false, 'a secondary that crashed owes nothing');
  t.equal(secondary.superblock().flags.fullSync, false);
});

t.test('a clean store is left alone', async (t) => {
  const file = path.join(tempDir(t), 'r0.meta');
  const store = MetaStore.create(file, { sizeBytes: 64 * EXTENT, nodeId: 0, alExtents: 61 });
  t.teardown(() => store.close());
  store.commitAl({ slots: [{ slot: 0, extent: 7 }], bitmapPages: [] });
  store.setFlags({ primaryIndicator: true, crashedPrimary: true });
  const before = store.dump();
  t.same(applyAl(store), {
    applied: false,
    extents: [],
    bitsSet: 0,
    crashedPrimary: true,
    fullSync: false,
  });
  t.same(store.dump(), before, 'nothing changed, not even the transaction counter');
});

t.test('clean marker set but al-clean cleared still applies', async (t) => {
  const { store } = crashed(t, {
    sizeBytes: 64 * EXTENT,
    extents: [2],
    flags: { primaryIndicator: true },
  });
  store.markClean();
  t.equal(applyAl(store).applied, true);
  t.same(setBitsOf(store), range(2048, 3072));
});
