import fc from 'fast-check';
import t from 'tap';

import {
  decodeMessage,
  decodeWithProtobuf,
  encodeMessage,
  encodeWithProtobuf,
  type MessageType,
} from '../../src/replication/schema.js';

// The per-write messages are encoded and decoded by hand (schema.ts VARINT_LAYOUTS); the
// bytes must be protobufjs' own, and both decoders must agree on anything the peer sends.
const FIELDS: Array<[MessageType, string[], string[]]> = [
  ['data', ['seq', 'epoch', 'offset', 'length', 'flags'], ['flags']],
  ['barrier', ['epoch', 'writes'], ['writes']],
  ['recvAck', ['seq'], []],
  ['writeAck', ['seq'], []],
  ['barrierAck', ['epoch', 'writes'], ['writes']],
];

const u64 = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.maxSafeInteger().filter((v) => v >= 0),
);
const u32 = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }));

t.test('hand-encoded per-write messages: protobufjs bytes, same decoding', async (t) => {
  for (const [type, keys, small] of FIELDS) {
    const body = fc.record(
      Object.fromEntries(keys.map((k) => [k, small.includes(k) ? u32 : u64])),
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(body, (b) => {
        const fast = encodeMessage(type, b);
        const ref = encodeWithProtobuf(type, b);
        t.same(Buffer.from(fast), Buffer.from(ref), `${type} ${JSON.stringify(b)}`);
        t.same(decodeMessage(fast), decodeWithProtobuf(ref));
      }),
      { numRuns: 200 },
    );
  }
});

t.test('the fast decoder agrees with protobufjs on odd and hostile bytes', async (t) => {
  const cases: number[][] = [
    [0xa2, 0x01, 0x00], // empty data body
    [0xa2, 0x01, 0x04, 0x08, 0x01, 0x08, 0x02], // seq twice: the last wins
    [0xa2, 0x01, 0x02, 0x30, 0x01], // field 6: unknown
    [0xa2, 0x01, 0x02, 0x0a, 0x00], // field 1 length-delimited
    [0xfa, 0x01, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 2^64-1
    [0xa2, 0x01, 0x06, 0x28, 0xff, 0xff, 0xff, 0xff, 0x1f], // flags above 2^32
    [0xfa, 0x01, 0x02, 0x08, 0x05, 0xfa, 0x01, 0x02, 0x08, 0x06], // the body twice
    [0xfa, 0x01, 0x05, 0x08, 0x05], // truncated
  ];
  for (const c of cases) {
    const bytes = Buffer.from(c);
    let ref: unknown;
    let refErr: unknown;
    try {
      ref = decodeWithProtobuf(bytes);
    } catch (err) {
      refErr = err;
    }
    let got: unknown;
    let gotErr: unknown;
    try {
      got = decodeMessage(bytes);
    } catch (err) {
      gotErr = err;
    }
    t.same(got, ref, bytes.toString('hex'));
    t.equal(gotErr === undefined, refErr === undefined, bytes.toString('hex'));
  }
  fc.assert(
    fc.property(
      fc.constantFrom(0xa2, 0xaa, 0xf2, 0xfa),
      fc.uint8Array({ maxLength: 40 }),
      (tag, rest) => {
        const bytes = Buffer.from([tag, 0x01, rest.length, ...rest]);
        let ref: unknown;
        try {
          ref = decodeWithProtobuf(bytes);
        } catch {
          ref = 'error';
        }
        let got: unknown;
        try {
          got = decodeMessage(bytes);
        } catch {
          got = 'error';
        }
        t.same(got, ref, bytes.toString('hex'));
      },
    ),
    { numRuns: 300 },
  );
});
