import t from 'tap';
import {
  Cmd,
  CmdFlag,
  MAX_PAYLOAD,
  MAX_UNNEGOTIATED_PAYLOAD,
  NbdErr,
  REQUEST_MAGIC,
} from '../../src/nbd/constants.js';
import {
  type ExportView,
  parseRequest,
  payloadLimit,
  type Request,
  validate,
} from '../../src/nbd/request.js';
import type { TargetCapabilities } from '../../src/nbd/target.js';

const caps: TargetCapabilities = {
  readOnly: false,
  flush: true,
  fua: true,
  trim: true,
  zero: true,
  fastZero: true,
  cache: true,
  multiConn: true,
};
const SIZE = 1024 * 1024;
const view = (over: Partial<ExportView> = {}): ExportView => ({
  size: SIZE,
  readOnly: false,
  caps,
  structuredReplies: true,
  allocationContext: true,
  blockSizes: true,
  ...over,
});
const req = (type: number, offset = 0, length = 4096, flags = 0): Request => ({
  type,
  offset,
  length,
  flags,
  cookie: { hi: 0, lo: 1 },
});

t.test('parseRequest reads every field and refuses a bad magic', async (t) => {
  const hdr = Buffer.alloc(28);
  hdr.writeUInt32BE(REQUEST_MAGIC, 0);
  hdr.writeUInt16BE(CmdFlag.FUA, 4);
  hdr.writeUInt16BE(Cmd.WRITE, 6);
  hdr.writeUInt32BE(0xdeadbeef, 8);
  hdr.writeUInt32BE(0xfeedface, 12);
  hdr.writeUInt32BE(2, 16);
  hdr.writeUInt32BE(0x10, 20);
  hdr.writeUInt32BE(512, 24);
  t.same(parseRequest(hdr), {
    flags: CmdFlag.FUA,
    type: Cmd.WRITE,
    cookie: { hi: 0xdeadbeef, lo: 0xfeedface },
    offset: 2 * 2 ** 32 + 0x10,
    length: 512,
  });
  hdr.writeUInt32BE(0x12345678, 0);
  t.equal(parseRequest(hdr), undefined);
});

t.test('in-range requests pass', async (t) => {
  for (const type of [
    Cmd.READ,
    Cmd.WRITE,
    Cmd.TRIM,
    Cmd.WRITE_ZEROES,
    Cmd.CACHE,
    Cmd.BLOCK_STATUS,
  ]) {
    t.equal(validate(req(type, SIZE - 4096, 4096), view()), undefined, `type ${type}`);
  }
  t.equal(validate(req(Cmd.FLUSH, 0, 0), view()), undefined);
  t.equal(validate(req(Cmd.READ, 0, 0), view()), undefined, 'zero-length read is served');
  t.equal(
    validate(
      req(Cmd.WRITE_ZEROES, 0, SIZE, CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO | CmdFlag.FUA),
      view(),
    ),
    undefined,
  );
});

t.test('past the end: ENOSPC for writes, EINVAL for the rest', async (t) => {
  t.equal(validate(req(Cmd.READ, SIZE, 1), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.READ, SIZE - 1, 2), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.WRITE, SIZE - 1, 2), view())?.error, NbdErr.ENOSPC);
  t.equal(validate(req(Cmd.WRITE_ZEROES, SIZE, 1), view())?.error, NbdErr.ENOSPC);
  t.equal(validate(req(Cmd.TRIM, SIZE, 1), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.CACHE, SIZE, 1), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.BLOCK_STATUS, SIZE, 1), view())?.error, NbdErr.EINVAL);
  t.equal(
    validate(req(Cmd.READ, 2 ** 64 - 4096, 4096), view())?.error,
    NbdErr.EINVAL,
    'huge offset',
  );
});

t.test('length limits', async (t) => {
  const big = view({ size: 2 * MAX_PAYLOAD, structuredReplies: false });
  t.equal(validate(req(Cmd.READ, 0, MAX_PAYLOAD), big), undefined);
  t.equal(validate(req(Cmd.READ, 0, MAX_PAYLOAD + 1), big)?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.WRITE, 0, MAX_PAYLOAD + 1), big)?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.TRIM, 0, MAX_PAYLOAD + 1), big), undefined, 'TRIM has no payload');
  t.equal(validate(req(Cmd.WRITE_ZEROES, 0, MAX_PAYLOAD + 1), big), undefined);
});

t.test('READ/WRITE length rule, every combination', async (t) => {
  t.equal(payloadLimit({ blockSizes: true }), MAX_PAYLOAD, 'agreed: the advertised 32 MiB');
  t.equal(payloadLimit({ blockSizes: false }), MAX_UNNEGOTIATED_PAYLOAD, 'not agreed: more');
  t.ok(MAX_UNNEGOTIATED_PAYLOAD > 49 * 1000 * 1000, "room for integrityhuge's 49 MB requests");
  const size = 2 * MAX_UNNEGOTIATED_PAYLOAD;
  const lengths = [
    MAX_PAYLOAD,
    MAX_PAYLOAD + 1,
    MAX_UNNEGOTIATED_PAYLOAD,
    MAX_UNNEGOTIATED_PAYLOAD + 1,
  ];
  // expected error per [blockSizes][structuredReplies][type/DF][length index]; 0 = accepted
  const E = NbdErr.EINVAL;
  const O = NbdErr.EOVERFLOW;
  const expected: Record<string, number[]> = {
    'agreed simple READ': [0, E, E, E],
    'agreed simple WRITE': [0, E, E, E],
    'agreed chunked READ': [0, O, O, O],
    'agreed chunked READ+DF': [0, O, O, O],
    'agreed chunked WRITE': [0, E, E, E],
    'unagreed simple READ': [0, 0, 0, E],
    'unagreed simple WRITE': [0, 0, 0, E],
    'unagreed chunked READ': [0, 0, 0, O],
    'unagreed chunked READ+DF': [0, O, O, O],
    'unagreed chunked WRITE': [0, 0, 0, E],
  };
  for (const blockSizes of [true, false]) {
    for (const structuredReplies of [false, true]) {
      const kinds: [string, number, number][] = [
        ['READ', Cmd.READ, 0],
        ['WRITE', Cmd.WRITE, 0],
      ];
      if (structuredReplies) kinds.splice(1, 0, ['READ+DF', Cmd.READ, CmdFlag.DF]);
      for (const [name, type, flags] of kinds) {
        const key = `${blockSizes ? 'agreed' : 'unagreed'} ${structuredReplies ? 'chunked' : 'simple'} ${name}`;
        const got = lengths.map(
          (len) =>
            validate(req(type, 0, len, flags), view({ size, blockSizes, structuredReplies }))
              ?.error ?? 0,
        );
        t.same(got, expected[key], key);
      }
    }
  }
  const ro = view({ size, blockSizes: false, readOnly: true });
  t.equal(
    validate(req(Cmd.WRITE, 0, MAX_UNNEGOTIATED_PAYLOAD + 1), ro)?.error,
    NbdErr.EPERM,
    'read-only says so first, whatever the length',
  );
  t.equal(
    validate(req(Cmd.WRITE, size - 4096, MAX_PAYLOAD + 1), view({ size, blockSizes: false }))
      ?.error,
    NbdErr.ENOSPC,
    'a long unagreed WRITE past the end is still ENOSPC',
  );
});

t.test('unknown commands and flags are EINVAL', async (t) => {
  t.equal(validate(req(0x42), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.READ, 0, 4096, 0x8000), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.WRITE, 0, 4096, CmdFlag.NO_HOLE), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.WRITE, 0, 4096, CmdFlag.FUA), view()), undefined);
  t.equal(validate(req(Cmd.READ, 0, 4096, CmdFlag.DF), view()), undefined);
  t.equal(
    validate(req(Cmd.READ, 0, 4096, CmdFlag.DF), view({ structuredReplies: false }))?.error,
    NbdErr.EINVAL,
  );
  t.equal(validate(req(Cmd.READ, 0, 4096, CmdFlag.REQ_ONE), view())?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.BLOCK_STATUS, 0, 4096, CmdFlag.REQ_ONE), view()), undefined);
  t.equal(validate(req(Cmd.FLUSH, 0, 1), view())?.error, NbdErr.EINVAL);
});

t.test('read-only and missing capabilities', async (t) => {
  const ro = view({ readOnly: true });
  for (const type of [Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES]) {
    t.equal(validate(req(type), ro)?.error, NbdErr.EPERM, `type ${type}`);
  }
  t.equal(validate(req(Cmd.READ), ro), undefined);
  t.equal(validate(req(Cmd.FLUSH, 0, 0), ro), undefined);
  const bare = view({
    caps: { ...caps, trim: false, zero: false, cache: false, fastZero: false },
    allocationContext: false,
  });
  t.equal(validate(req(Cmd.TRIM), bare)?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.WRITE_ZEROES), bare)?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.CACHE), bare)?.error, NbdErr.EINVAL);
  t.equal(validate(req(Cmd.BLOCK_STATUS), bare)?.error, NbdErr.EINVAL);
  t.equal(
    validate(
      req(Cmd.WRITE_ZEROES, 0, 4096, CmdFlag.FAST_ZERO),
      view({ caps: { ...caps, fastZero: false } }),
    )?.error,
    NbdErr.EINVAL,
  );
});
