import fc from 'fast-check';
import t from 'tap';

import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameDecoder,
  FrameError,
  MAX_CONTROL_BYTES,
  MAX_DATA_BYTES,
  POOLED_PAYLOAD_MIN,
  releasePayload,
  type Frame,
} from '../../src/replication/frame.js';
import { FrameReader } from '../../src/replication/frame-reader.js';
import { payloadSlabs } from '../../src/replication/payload-slabs.js';
import { payloadPool } from '../../src/nbd/buffer-pool.js';
import { encodeMessage } from '../../src/replication/schema.js';

function collect(): { frames: Frame[]; decoder: FrameDecoder } {
  const frames: Frame[] = [];
  return { frames, decoder: new FrameDecoder((f) => frames.push(f)) };
}

function header(controlLen: number, dataLen: number, magic = FRAME_MAGIC): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(magic, 0);
  h.writeUInt32BE(controlLen, 4);
  h.writeUInt32BE(dataLen, 8);
  return h;
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

t.test('encodeFrame: header and control in one Buffer, payload pieces as they are', async (t) => {
  const data = pattern(4096, 1);
  const parts = encodeFrame('data', { seq: 7, offset: 8192, length: 4096 }, data);
  t.equal(parts.length, 2);
  t.equal(parts[1], data, 'the payload is not copied');
  const control = encodeMessage('data', { seq: 7, offset: 8192, length: 4096 });
  t.equal(parts[0]!.readUInt32BE(0), FRAME_MAGIC);
  t.equal(parts[0]!.readUInt32BE(4), control.length);
  t.equal(parts[0]!.readUInt32BE(8), 4096);
  t.same(parts[0]!.subarray(FRAME_HEADER_BYTES), Buffer.from(control));

  const a = pattern(10, 2);
  const b = pattern(20, 3);
  const pieces = encodeFrame('rsReply', { offset: 0, length: 30 }, [a, Buffer.alloc(0), b]);
  t.equal(pieces.length, 3, 'empty pieces are dropped');
  t.equal(pieces[1], a);
  t.equal(pieces[2], b);
  t.equal(pieces[0]!.readUInt32BE(8), 30);

  t.equal(encodeFrame('ping', { id: 1 }).length, 1);
  t.equal(encodeFrame('ping', { id: 1 }, Buffer.alloc(0)).length, 1);
  t.throws(
    () => encodeFrame('data', {}, [Buffer.alloc(MAX_DATA_BYTES), Buffer.alloc(1)]),
    RangeError,
  );
});

t.test('one frame, whole, and a payload inside one chunk is a view', async (t) => {
  const { frames, decoder } = collect();
  const chunk = Buffer.concat(encodeFrame('writeAck', { seq: 99 }, pattern(100, 4)));
  decoder.push(chunk);
  t.equal(frames.length, 1);
  t.same(frames[0]!.msg, { type: 'writeAck', body: { seq: 99 } });
  t.same(frames[0]!.payload, pattern(100, 4));
  t.equal(frames[0]!.payload!.buffer, chunk.buffer, 'no copy');
  t.notOk(decoder.midFrame);

  decoder.push(Buffer.concat(encodeFrame('ping', { id: 3 })));
  t.equal(frames[1]!.payload, undefined, 'no data: undefined');
});

t.test('any chunking gives the same frames (fast-check)', async (t) => {
  type Spec = { seq: number; data: number };
  const specs = fc.array(
    fc.record({
      seq: fc.nat(),
      data: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 }), fc.constant(5000)),
    }),
    { minLength: 1, maxLength: 12 },
  );
  const cuts = fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 30 });
  fc.assert(
    fc.property(specs, cuts, (list: Spec[], cutList: number[]) => {
      const stream = Buffer.concat(
        list.flatMap((s, i) =>
          encodeFrame('data', { seq: s.seq, length: s.data }, pattern(s.data, i)),
        ),
      );
      const { frames, decoder } = collect();
      let at = 0;
      let c = 0;
      while (at < stream.length) {
        const n = cutList[c++ % cutList.length]!;
        decoder.push(stream.subarray(at, at + n));
        at += n;
      }
      if (frames.length !== list.length) return false;
      if (decoder.midFrame) return false;
      return list.every((s, i) => {
        const f = frames[i]!;
        if (f.msg.type !== 'data' || f.msg.body.seq !== s.seq) return false;
        if (s.data === 0) return f.payload === undefined;
        return f.payload !== undefined && f.payload.equals(pattern(s.data, i));
      });
    }),
    { numRuns: 300 },
  );
  t.pass('frames survive every split');
});

t.test('byte at a time, and many frames in one chunk', async (t) => {
  const stream = Buffer.concat([
    ...encodeFrame('barrier', { epoch: 1, writes: 2 }),
    ...encodeFrame('data', { seq: 1 }, pattern(3, 0)),
    ...encodeFrame('goodbye', { reason: 'bye' }),
  ]);
  const one = collect();
  for (let i = 0; i < stream.length; i++) {
    one.decoder.push(stream.subarray(i, i + 1));
    if (i < stream.length - 1 && i > 0) t.ok(one.decoder.midFrame || one.frames.length > 0);
  }
  t.same(
    one.frames.map((f) => f.msg.type),
    ['barrier', 'data', 'goodbye'],
  );
  t.same(one.frames[1]!.payload, pattern(3, 0));
  const many = collect();
  many.decoder.push(stream);
  t.same(
    many.frames.map((f) => f.msg),
    one.frames.map((f) => f.msg),
  );
});

t.test('a payload spanning chunks is copied once into an exact-size Buffer', async (t) => {
  const payload = pattern(1024 * 1024, 9);
  const stream = Buffer.concat(encodeFrame('rsReply', { length: payload.length }, payload));
  const { frames, decoder } = collect();
  for (let at = 0; at < stream.length; at += 65536) decoder.push(stream.subarray(at, at + 65536));
  t.equal(frames.length, 1);
  t.equal(frames[0]!.payload!.length, payload.length);
  t.equal(frames[0]!.payload!.byteOffset, 0);
  t.equal(frames[0]!.payload!.buffer.byteLength, payload.length, 'its own exact-size memory');
  t.ok(frames[0]!.payload!.equals(payload));
});

t.test('pause stops delivery mid-chunk; resume delivers the rest in order', async (t) => {
  const frames: number[] = [];
  const decoder: FrameDecoder = new FrameDecoder((f) => {
    if (f.msg.type === 'writeAck') frames.push(f.msg.body.seq);
    if (frames.length === 2) decoder.pause();
  });
  const stream = Buffer.concat([1, 2, 3, 4, 5].flatMap((seq) => encodeFrame('writeAck', { seq })));
  decoder.push(stream);
  t.same(frames, [1, 2]);
  t.ok(decoder.isPaused);
  t.ok(decoder.midFrame, 'queued bytes count as an unfinished frame');
  decoder.push(Buffer.concat(encodeFrame('writeAck', { seq: 6 })));
  t.same(frames, [1, 2], 'nothing delivered while paused');
  decoder.resume();
  t.same(frames, [1, 2, 3, 4, 5, 6]);
  t.notOk(decoder.midFrame);
});

t.test('bad input throws FrameError with a one-line reason', async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    [
      'garbage',
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      /^bad magic 0x47455420 \(not a urbd peer\?\)$/,
    ],
    ['zero control', header(0, 0), /^frame without a control message$/],
    [
      'oversize control',
      header(MAX_CONTROL_BYTES + 1, 0),
      /^control message of 1048577 bytes exceeds the 1048576-byte limit$/,
    ],
    [
      'oversize data',
      header(5, MAX_DATA_BYTES + 1),
      /^data of 33554433 bytes exceeds the 33554432-byte limit$/,
    ],
    [
      'undecodable',
      Buffer.concat([header(3, 0), Buffer.from([0xff, 0xff, 0xff])]),
      /^undecodable control message: /,
    ],
    [
      'no known body',
      Buffer.concat([header(3, 0), Buffer.from([0xf8, 0x07, 0x07])]), // field 127 = 7
      /^undecodable control message: control message with no known body$/,
    ],
  ];
  for (const [name, bytes, re] of cases) {
    const { frames, decoder } = collect();
    let err: unknown;
    try {
      decoder.push(bytes);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof FrameError, `${name}: FrameError`);
    t.match((err as Error).message, re, name);
    t.notMatch((err as Error).message, /\n/, `${name}: one line`);
    t.equal(frames.length, 0);
    t.throws(
      () => decoder.push(Buffer.concat(encodeFrame('ping', { id: 1 }))),
      FrameError,
      'stays failed',
    );
  }
});

t.test('an oversize header is refused before its body arrives', async (t) => {
  const { decoder } = collect();
  t.throws(() => decoder.push(header(10, MAX_DATA_BYTES + 1)), FrameError);
});

t.test('frames before bad bytes in the same chunk are delivered', async (t) => {
  const { frames, decoder } = collect();
  const stream = Buffer.concat([...encodeFrame('ping', { id: 1 }), Buffer.from('junkjunkjunk')]);
  t.throws(() => decoder.push(stream), FrameError);
  t.equal(frames.length, 1);
});

t.test('FrameReader: a large payload is read straight into a pooled buffer', async (t) => {
  const reader = new FrameReader();
  const frames: Frame[] = [];
  reader.onFrame = (f) => frames.push(f);
  const big = pattern(POOLED_PAYLOAD_MIN + 4096 * 60, 9);
  const small = pattern(512, 4);
  const wire = Buffer.concat([
    ...encodeFrame('rsReply', { offset: 0, length: big.length }, big),
    ...encodeFrame('data', { seq: 1, offset: 0, length: 512 }, small),
  ]);
  // Feed it as a socket made with `onread` would: each read fills what nextBuffer() gave.
  let at = 0;
  let direct = 0;
  let reads = 0;
  while (at < wire.length) {
    const space = reader.nextBuffer();
    const n = Math.min(space.length, wire.length - at, 100_000);
    wire.copy(space, 0, at, at + n);
    if (frames.length === 0 && at > 64) direct++;
    reader.received(n, space);
    at += n;
    reads++;
  }
  t.equal(frames.length, 2);
  t.ok(frames[0]!.pooled, 'the large payload came from the pool');
  t.same(frames[0]!.payload, big);
  t.ok(
    frames[1]!.pooled && payloadSlabs.owns(frames[1]!.payload!),
    'a small payload is copied into slab memory, to be given back',
  );
  t.same(frames[1]!.payload, small);
  t.ok(direct > 0 && reads < 10, `${reads} reads, ${direct} of them into the payload itself`);
  releasePayload(frames[0]!.payload, frames[0]!.pooled);
  t.equal(payloadPool.get(big.length), frames[0]!.payload, 'released back to the pool');
});

t.test('FrameReader: reads of Node chunks decode the same frames', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1 }),
      async (cuts) => {
        runs++;
        const reader = new FrameReader();
        const frames: Frame[] = [];
        reader.onFrame = (f) => frames.push(f);
        const big = pattern(300_000, 5);
        const wire = Buffer.concat([
          ...encodeFrame('data', { seq: 1, offset: 0, length: big.length }, big),
          ...encodeFrame('ping', { id: 3 }),
        ]);
        let at = 0;
        let i = 0;
        while (at < wire.length) {
          // Alternate between our buffers and chunks of Node's own.
          const n = Math.min(cuts[i++ % cuts.length]!, wire.length - at);
          if (i % 2 === 0) {
            const space = reader.nextBuffer();
            const m = Math.min(n, space.length);
            wire.copy(space, 0, at, at + m);
            reader.received(m, space);
            at += m;
          } else {
            reader.received(n, Buffer.from(wire.subarray(at, at + n)));
            at += n;
          }
        }
        return (
          frames.length === 2 && frames[0]!.payload!.equals(big) && frames[1]!.msg.type === 'ping'
        );
      },
    ),
    { numRuns: 60 },
  );
  t.equal(runs, 60, 'every mix of reads decoded both frames intact');
});

t.test('FrameReader: nothing decoded points into the scratch the next read reuses', async (t) => {
  // Every read lands in the same scratch (frame-reader.ts). Here the scratch is overwritten
  // with garbage after each read, as the next read would: a frame, a `bytes` field, a frame
  // cut by a read or frames held while paused that still pointed into it would change.
  type Item = { kind: 'data'; size: number } | { kind: 'chunk'; rle: number } | { kind: 'ping' };
  const item: fc.Arbitrary<Item> = fc.oneof(
    fc.record({ kind: fc.constant('data' as const), size: fc.integer({ min: 1, max: 200_000 }) }),
    fc.record({ kind: fc.constant('chunk' as const), rle: fc.integer({ min: 0, max: 5000 }) }),
    fc.record({ kind: fc.constant('ping' as const) }),
  );
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(item, { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
      async (items, cuts, pauses) => {
        runs++;
        const reader = new FrameReader();
        const frames: Frame[] = [];
        reader.onFrame = (f) => frames.push(f);
        const parts: Buffer[] = [];
        items.forEach((it, i) => {
          if (it.kind === 'data') {
            const p = pattern(it.size, i);
            parts.push(...encodeFrame('data', { seq: i, offset: 0, length: p.length }, p));
          } else if (it.kind === 'chunk') {
            const rle = pattern(it.rle, i + 7);
            parts.push(...encodeFrame('bitmapChunk', { totalBits: i, firstBit: 0, rle }));
          } else {
            parts.push(...encodeFrame('ping', { id: i }));
          }
        });
        const wire = Buffer.concat(parts);
        let scratch: ArrayBufferLike | undefined;
        let at = 0;
        let i = 0;
        while (at < wire.length) {
          const space = reader.nextBuffer();
          scratch ??= space.buffer;
          const n = Math.min(cuts[i % cuts.length]!, space.length, wire.length - at);
          const paused = pauses[i % pauses.length]!;
          if (paused) reader.decoder.pause();
          wire.copy(space, 0, at, at + n);
          reader.received(n, space);
          if (space.buffer === scratch) new Uint8Array(scratch).fill(0xa5);
          if (paused) reader.decoder.resume();
          at += n;
          i++;
        }
        if (frames.length !== items.length) return false;
        return items.every((it, k) => {
          const f = frames[k]!;
          if (it.kind === 'data') {
            return (
              f.msg.type === 'data' &&
              f.msg.body.seq === k &&
              f.payload!.equals(pattern(it.size, k))
            );
          }
          if (it.kind === 'chunk') {
            return (
              f.msg.type === 'bitmapChunk' &&
              Buffer.from(f.msg.body.rle).equals(pattern(it.rle, k + 7))
            );
          }
          return f.msg.type === 'ping' && f.msg.body.id === k;
        });
      },
    ),
    { numRuns: 150 },
  );
  t.equal(runs, 150, 'every frame, payload and bytes field intact after the scratch was reused');
});
