import t from 'tap';
import { ByteQueue } from '../../src/nbd/byte-queue.js';

t.test('take inside one chunk is a view, across chunks a copy', async (t) => {
  const q = new ByteQueue();
  const a = Buffer.from('abcdef');
  q.push(a);
  q.push(Buffer.from('ghij'));
  t.equal(q.length, 10);
  const first = q.take(4);
  t.equal(first.toString(), 'abcd');
  t.equal(first.buffer, a.buffer, 'same memory as the socket chunk');
  const straddle = q.take(4);
  t.equal(straddle.toString(), 'efgh');
  t.equal(q.length, 2);
  t.equal(q.take(2).toString(), 'ij');
  t.equal(q.length, 0);
});

t.test('skip drops across chunks and stops at what is there', async (t) => {
  const q = new ByteQueue();
  q.push(Buffer.from('abc'));
  q.push(Buffer.alloc(0));
  q.push(Buffer.from('defg'));
  t.equal(q.skip(5), 5);
  t.equal(q.take(2).toString(), 'fg');
  q.push(Buffer.from('xy'));
  t.equal(q.skip(10), 2, 'only what is buffered');
  t.equal(q.length, 0);
});

t.test('random splits reassemble the same bytes', async (t) => {
  const data = Buffer.alloc(10_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
  for (let round = 0; round < 50; round++) {
    const q = new ByteQueue();
    let at = 0;
    while (at < data.length) {
      const n = 1 + Math.floor(Math.random() * 300);
      q.push(data.subarray(at, at + n));
      at += n;
    }
    const out: Buffer[] = [];
    while (q.length > 0) out.push(q.take(Math.min(q.length, 1 + Math.floor(Math.random() * 500))));
    t.ok(Buffer.concat(out).equals(data), `round ${round}`);
  }
});

t.test('takePieces hands out views of the chunks, in order', async (t) => {
  const q = new ByteQueue();
  const a = Buffer.from('abcdef');
  const b = Buffer.from('ghij');
  const c = Buffer.from('klmnop');
  q.push(a);
  q.push(b);
  q.push(c);
  t.equal(q.take(2).toString(), 'ab');
  const inOne = q.takePieces(3);
  t.ok(Buffer.isBuffer(inOne), 'a run inside one chunk is one Buffer');
  t.equal((inOne as Buffer).toString(), 'cde');
  const pieces = q.takePieces(8) as Buffer[];
  t.same(
    pieces.map((p) => p.toString()),
    ['f', 'ghij', 'klm'],
  );
  t.equal(pieces[1]!.buffer, b.buffer, 'no copy');
  t.equal(q.length, 3);
  t.equal(q.take(3).toString(), 'nop');
});
