import t from 'tap';
import { randomBytes } from 'node:crypto';
import { splitPayload } from '../../src/nbd/split.js';
import { joinPayload, type Payload, payloadLength } from '../../src/nbd/target.js';

/** `total` bytes as pieces of the given sizes (the rest as one last piece). */
function pieces(total: number, sizes: number[]): Buffer[] {
  const all = randomBytes(total);
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(all.subarray(at, at + n));
    at += n;
  }
  if (at < total) out.push(all.subarray(at));
  return out;
}

t.test('splitPayload: consecutive parts of at most max bytes, as views', async (t) => {
  const max = 10;
  const layouts: [string, Payload][] = [
    ['one Buffer shorter than max', randomBytes(7)],
    ['one Buffer of exactly max', randomBytes(10)],
    ['one Buffer of 2 max + 3', randomBytes(23)],
    ['pieces on the part boundaries', pieces(30, [10, 10, 10])],
    ['pieces across the boundaries', pieces(37, [3, 9, 14, 1, 1])],
    ['one huge piece among small ones', pieces(45, [1, 40, 2])],
    ['many 1-byte pieces', pieces(21, Array<number>(20).fill(1))],
  ];
  for (const [name, data] of layouts) {
    const total = payloadLength(data);
    const parts = splitPayload(data, max);
    const lengths = parts.map(payloadLength);
    const want = Array.from({ length: Math.ceil(total / max) }, (_, i) =>
      Math.min(max, total - i * max),
    );
    t.same(lengths, want, `${name}: part lengths`);
    t.same(
      Buffer.concat(parts.map(joinPayload)),
      joinPayload(data),
      `${name}: same bytes in order`,
    );
    const source = (Buffer.isBuffer(data) ? [data] : data)[0]!.buffer;
    const views = parts.flatMap((p) => (Buffer.isBuffer(p) ? [p] : [...p]));
    t.ok(
      views.every((v) => v.buffer === source),
      `${name}: every part is a view of the client's data`,
    );
    t.ok(
      parts.every((p) => Buffer.isBuffer(p) || p.length > 1),
      `${name}: a part of one piece is a plain Buffer`,
    );
  }
  t.same(splitPayload(Buffer.alloc(0), max), [], 'nothing to split: no parts');
});
