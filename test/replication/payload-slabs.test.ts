// SlabPool (src/replication/payload-slabs.ts): payloads carved from slabs that are used again
// once every payload carved from one was given back. fast-check drives random sequences of
// get and put; each live payload is filled with its own pattern, which must still be there
// when it is given back (no two live payloads share memory).
import fc from 'fast-check';
import t from 'tap';

import { SlabPool } from '../../src/replication/payload-slabs.js';
import { hugePageBuffer } from '../../src/storage/native.js';

t.test('live payloads never share memory; given-back slabs are used again', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ get: fc.integer({ min: 1, max: 64 * 1024 }) }),
          fc.record({ put: fc.nat() }),
        ),
        { maxLength: 300 },
      ),
      (ops) => {
        runs++;
        const pool = new SlabPool(256 * 1024, 4);
        const live: Array<{ buf: Buffer; tag: number }> = [];
        const arrays = new Set<ArrayBufferLike>();
        let tag = 0;
        for (const op of ops) {
          if ('get' in op) {
            const buf = pool.get(op.get);
            if (buf.length !== op.get || !pool.owns(buf)) return false;
            buf.fill(++tag & 0xff);
            live.push({ buf, tag });
            arrays.add(buf.buffer);
          } else if (live.length > 0) {
            const [p] = live.splice(op.put % live.length, 1);
            if (p!.buf.some((x) => x !== (p!.tag & 0xff))) return false;
            pool.put(p!.buf);
          }
        }
        for (const p of live) if (p.buf.some((x) => x !== (p.tag & 0xff))) return false;
        // At most the slabs that were ever live at once: given-back ones were used again.
        const peak = Math.ceil((ops.length * 64 * 1024) / (256 * 1024)) + 1;
        return arrays.size <= peak;
      },
    ),
    { numRuns: 300 },
  );
  t.equal(runs, 300);
});

t.test('a slab is used again once every payload carved from it is back', async (t) => {
  const pool = new SlabPool(64 * 1024, 2);
  const a = pool.get(32 * 1024);
  const b = pool.get(32 * 1024);
  t.equal(a.buffer, b.buffer, 'both carved from one slab');
  const c = pool.get(4096);
  t.not(c.buffer, a.buffer, 'a full slab: the next payload comes from another');
  pool.put(a);
  t.equal(pool.freeSlabs, 0, 'one payload of the full slab is still out');
  pool.put(b);
  t.equal(pool.freeSlabs, 1, 'the full slab is free once both are back');
  pool.put(b);
  t.equal(pool.freeSlabs, 1, 'giving one back twice changes nothing');
  pool.put(c);
  const d = pool.get(60 * 1024);
  t.equal(d.buffer, c.buffer, 'the slab being carved starts over once nothing of it is out');
  const e = pool.get(8 * 1024);
  t.equal(e.buffer, a.buffer, 'then the free slab is used again');
  t.notOk(pool.owns(Buffer.alloc(16)), 'a Buffer of its own is not the pool’s');
  pool.put(Buffer.alloc(16));
  t.throws(() => pool.get(64 * 1024 + 1), RangeError, 'larger than a slab is refused');
});

t.test('prefault: slabs ready before the first payload, never more than kept', async (t) => {
  const pool = new SlabPool(64 * 1024, 3);
  pool.prefault(8);
  t.equal(pool.freeSlabs, 3);
  const p = pool.get(1000);
  t.equal(pool.freeSlabs, 2, 'the first payload takes a prefaulted slab');
  t.ok(
    p.every((x) => x === 0),
    'faulted in from /dev/zero',
  );
});

t.test('alloc: new slabs come from the allocator given, else from the heap', async (t) => {
  const pool = new SlabPool(2 << 20, 4);
  const made: Buffer[] = [];
  pool.alloc = (bytes) => {
    const b = hugePageBuffer(bytes) ?? Buffer.alloc(bytes);
    made.push(b);
    return b;
  };
  pool.prefault(2);
  t.equal(made.length, 2, 'prefault asks the allocator');
  const p = pool.get(4096);
  t.ok(
    made.some((b) => b.buffer === p.buffer),
    'payloads are carved from its memory',
  );
  t.ok(pool.owns(p));
  const heap = new SlabPool(2 << 20, 4);
  heap.alloc = () => undefined;
  const q = heap.get(8192);
  t.ok(heap.owns(q), 'an allocator with nothing: a slab from the heap');
  t.equal(q.length, 8192);
  t.type(hugePageBuffer(1 << 20), 'undefined', 'not whole huge pages: no huge-page memory');
  t.equal(hugePageBuffer(2 << 20)?.length, 2 << 20, 'the addon is built here');
});
