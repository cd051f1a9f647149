import fc from 'fast-check';
import t from 'tap';

import {
  decodeMessage,
  decodeWithProtobuf,
  encodeMessage,
  encodeWithProtobuf,
  type MessageType,
} from '../../src/replication/schema.js';

// The per-write and resync messages are encoded and decoded by hand (schema.ts
// VARINT_LAYOUTS); the bytes must be protobufjs' own, and both decoders must agree on
// anything the peer sends.
type Kind = 'u64' | 'u32' | 'bool' | 'str' | 'bytes';
const FIELDS: Array<[MessageType, Record<string, Kind>]> = [
  ['data', { seq: 'u64', epoch: 'u64', offset: 'u64', length: 'u64', flags: 'u32' }],
  ['barrier', { epoch: 'u64', writes: 'u32' }],
  ['recvAck', { seq: 'u64' }],
  ['writeAck', { seq: 'u64' }],
  ['barrierAck', { epoch: 'u64', writes: 'u32' }],
  ['rsRequest', { offset: 'u64', length: 'u64', digests: 'bytes', digestAlg: 'str' }],
  ['rsReply', { offset: 'u64', length: 'u64', error: 'str', inSync: 'bool' }],
  ['rsWriteAck', { offset: 'u64', length: 'u64', ok: 'bool' }],
];

const u64 = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.maxSafeInteger().filter((v) => v >= 0),
);
const u32 = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }));
// Empty strings and bytes take the fast path; others must come out the same through protobufjs.
const ARB: Record<Kind, fc.Arbitrary<unknown>> = {
  u64,
  u32,
  bool: fc.boolean(),
  str: fc.oneof(fc.constant(''), fc.constant('EIO'), fc.string({ maxLength: 8 })),
  bytes: fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)),
  ),
};

t.test('hand-encoded messages: protobufjs bytes, same decoding', async (t) => {
  for (const [type, fields] of FIELDS) {
    const body = fc.record(
      Object.fromEntries(Object.entries(fields).map(([k, kind]) => [k, ARB[kind]])),
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(body, (b) => {
        const fast = encodeMessage(type, b);
        const ref = encodeWithProtobuf(type, b);
        t.same(Buffer.from(fast), Buffer.from(ref), `${type} ${JSON.stringify(b)}`);
        t.strictSame(decodeMessage(fast), decodeWithProtobuf(ref), `${type} ${JSON.stringify(b)}`);
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
    [0xca, 0x01, 0x02, 0x20, 0x02], // rsReply inSync = 2: protobufjs says true
    [0xca, 0x01, 0x02, 0x18, 0x00], // rsReply error as a varint
    [0xca, 0x01, 0x03, 0x1a, 0x01, 0x41], // rsReply error "A"
    [0xca, 0x01, 0x04, 0x1a, 0x00, 0x1a, 0x00], // error twice, empty
    [0xca, 0x01, 0x01, 0x1a], // error's length missing
    [0xc2, 0x01, 0x02, 0x1a, 0x00], // rsRequest with empty digests
    [0xc2, 0x01, 0x03, 0x1a, 0x01, 0x00], // rsRequest with one digest byte
    [0x92, 0x02, 0x02, 0x18, 0x01], // rsWriteAck ok
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
    t.strictSame(got, ref, bytes.toString('hex'));
    t.equal(gotErr === undefined, refErr === undefined, bytes.toString('hex'));
  }
  fc.assert(
    fc.property(
      fc.constantFrom(
        [0xa2, 0x01],
        [0xaa, 0x01],
        [0xf2, 0x01],
        [0xfa, 0x01],
        [0xc2, 0x01],
        [0xca, 0x01],
        [0x92, 0x02],
      ),
      fc.uint8Array({ maxLength: 40 }),
      (tag, rest) => {
        const bytes = Buffer.from([...tag, rest.length, ...rest]);
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
        t.strictSame(got, ref, bytes.toString('hex'));
      },
    ),
    { numRuns: 300 },
  );
});
