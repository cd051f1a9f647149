/**
 * What one activity-log transaction costs on this machine, measured without the NBD path:
 * MetaStore.commitAl (one SQLite transaction, WAL with synchronous=FULL) on a store in a temp
 * dir beside the backing file, next to a plain 4 KiB write + fdatasync on the same file
 * system. Each commit is what a cold extent costs the daemon when the log is full: one slot
 * changes to the new extent, and the bitmap page of the evicted extent is written with it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MetaStore } from '../../src/meta/store.js';

export interface Timing {
  /** Microseconds per call. */
  median: number;
  min: number;
  max: number;
  calls: number;
}

function summarize(us: number[]): Timing {
  const s = [...us].sort((a, b) => a - b);
  return {
    median: s[Math.floor(s.length / 2)]!,
    min: s[0]!,
    max: s[s.length - 1]!,
    calls: s.length,
  };
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1000;
}

export interface AlCost {
  /** One slot change + one 4 KiB bitmap page. */
  commit1: Timing;
  /** Seven slot changes + the evicted extents' bitmap pages (a full al-extents 7 log turned over). */
  commit7: Timing;
  /** pwrite 4 KiB + fdatasync on the same file system, for scale. */
  fdatasync4k: Timing;
}

export function measureAlCost(besideFile: string, calls = 200): AlCost {
  const dir = fs.mkdtempSync(path.join(path.dirname(path.resolve(besideFile)), 'urbd-bench-al.'));
  try {
    const alExtents = 7;
    const store = MetaStore.create(path.join(dir, 'al.urbd-md'), {
      sizeBytes: 1024 * 1024 * 1024,
      nodeId: 0,
      alExtents,
    });
    // 1 GiB = 256 extents of 4 MiB; one bitmap page covers 32 extents.
    const table: Array<number | null> = new Array<number | null>(alExtents).fill(null);
    let slotCursor = 0;
    /** A random extent not in the log, moved into `slot`; the old one's page goes with it. */
    const change = (slot: number) => {
      let extent: number;
      do extent = crypto.randomInt(256);
      while (table.includes(extent));
      const evicted = table[slot];
      table[slot] = extent;
      return {
        slot: { slot, extent },
        page: { page: (evicted ?? extent) >> 5, data: crypto.randomBytes(4096) },
      };
    };
    const commit = (n: number): number => {
      const cs = Array.from({ length: n }, () => change(slotCursor++ % alExtents));
      const pages = [...new Map(cs.map((c) => [c.page.page, c.page])).values()];
      const slots = cs.map((c) => c.slot);
      return time(() => store.commitAl({ slots, bitmapPages: pages }));
    };
    commit(alExtents); // fill the log: every commit below evicts
    const one = Array.from({ length: calls }, () => commit(1));
    const seven = Array.from({ length: Math.ceil(calls / 4) }, () => commit(alExtents));
    store.close();

    const fd = fs.openSync(path.join(dir, 'fsync.bin'), 'w');
    const buf = crypto.randomBytes(4096);
    const sync: number[] = [];
    for (let i = 0; i < calls; i++) {
      sync.push(
        time(() => {
          fs.writeSync(fd, buf, 0, buf.length, (i % 64) * 4096);
          fs.fdatasyncSync(fd);
        }),
      );
    }
    fs.closeSync(fd);
    return { commit1: summarize(one), commit7: summarize(seven), fdatasync4k: summarize(sync) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
