import t from 'tap';
import {
  BASE_ALLOCATION,
  IHAVEOPT,
  Info,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
  Opt,
  Rep,
  TFlag,
} from '../../src/nbd/constants.js';
import { ExportTable } from '../../src/nbd/exports.js';
import {
  ClientAbort,
  Handshake,
  type HandshakeIO,
  parseInfoRequest,
  ProtocolError,
  type Session,
} from '../../src/nbd/handshake.js';
import { parseMetaRequest, selectsAllocation } from '../../src/nbd/meta-context.js';
import type { BlockTarget } from '../../src/nbd/target.js';

/** A target that only has a size: the handshake never does I/O. */
function sizedTarget(size: number, withExtents = true): BlockTarget {
  const none = () => Promise.resolve();
  return {
    size,
    capabilities: {
      readOnly: false,
      flush: true,
      fua: true,
      trim: true,
      zero: true,
      fastZero: false,
      cache: true,
      multiConn: true,
    },
    read: none,
    write: none,
    flush: none,
    trim: none,
    zero: none,
    ...(withExtents ? { extents: () => Promise.resolve([]) } : {}),
  };
}

/** Feeds scripted client bytes and collects what the server writes. */
class ScriptIO implements HandshakeIO {
  private input: Buffer;
  readonly out: Buffer[] = [];
  constructor(...parts: Buffer[]) {
    this.input = Buffer.concat(parts);
  }
  read(n: number): Promise<Buffer> {
    if (this.input.length < n) return Promise.reject(new Error('eof'));
    const b = this.input.subarray(0, n);
    this.input = this.input.subarray(n);
    return Promise.resolve(b);
  }
  write(buf: Buffer): void {
    this.out.push(buf);
  }
  /** Server output after the 18-byte greeting, parsed as option replies. */
  replies(): { option: number; type: number; data: Buffer }[] {
    const all = Buffer.concat(this.out);
    const res = [];
    let at = 18;
    while (at + 20 <= all.length && all.readBigUInt64BE(at) === OPTION_REPLY_MAGIC) {
      const len = all.readUInt32BE(at + 16);
      res.push({
        option: all.readUInt32BE(at + 8),
        type: all.readUInt32BE(at + 12),
        data: all.subarray(at + 20, at + 20 + len),
      });
      at += 20 + len;
    }
    return res;
  }
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const opt = (option: number, data: Buffer = Buffer.alloc(0)) => {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
};
const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const infoReq = (name: string, ...types: number[]) =>
  Buffer.concat([str(name), u16(types.length), ...types.map(u16)]);
const metaReq = (name: string, ...queries: string[]) =>
  Buffer.concat([str(name), u32(queries.length), ...queries.map(str)]);

function table(): ExportTable {
  const t = new ExportTable();
  t.add({ name: 'disk0', target: sizedTarget(1 << 20), description: 'first' });
  t.add({ name: 'disk1', target: sizedTarget(2 << 20, false) });
  return t;
}

async function handshake(io: ScriptIO, exports = table()): Promise<Session> {
  return new Handshake(io, exports).run();
}

t.test('greeting advertises fixed newstyle and no-zeroes', async (t) => {
  const io = new ScriptIO(u32(3), opt(Opt.GO, infoReq('')));
  await handshake(io);
  const g = io.out[0]!;
  t.equal(g.readBigUInt64BE(0), NBDMAGIC);
  t.equal(g.readBigUInt64BE(8), IHAVEOPT);
  t.equal(g.readUInt16BE(16), 3);
});

t.test('unknown client flags end the handshake', async (t) => {
  await t.rejects(handshake(new ScriptIO(u32(4))), ProtocolError);
});

t.test('GO with no name gets the default export, INFO_EXPORT first and then ACK', async (t) => {
  const io = new ScriptIO(u32(3), opt(Opt.GO, infoReq('')));
  const s = await handshake(io);
  t.equal(s.export.name, 'disk0');
  const r = io.replies();
  t.equal(r.length, 2);
  t.equal(r[0]!.type, Rep.INFO);
  t.equal(r[0]!.data.readUInt16BE(0), Info.EXPORT);
  t.equal(Number(r[0]!.data.readBigUInt64BE(2)), 1 << 20);
  const flags = r[0]!.data.readUInt16BE(10);
  t.ok(flags & TFlag.HAS_FLAGS && flags & TFlag.SEND_FLUSH && flags & TFlag.SEND_FUA);
  t.ok(flags & TFlag.CAN_MULTI_CONN);
  t.notOk(flags & TFlag.SEND_DF, 'no DF without structured replies');
  t.equal(r[1]!.type, Rep.ACK);
});

t.test(
  'INFO answers name, description and block size; unknown info types are ignored',
  async (t) => {
    const io = new ScriptIO(
      u32(3),
      opt(Opt.INFO, infoReq('disk0', Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE, 77)),
      opt(Opt.GO, infoReq('disk1', Info.DESCRIPTION)),
    );
    const s = await handshake(io);
    t.equal(s.export.name, 'disk1');
    const r = io.replies();
    const infos = r.filter((x) => x.option === Opt.INFO && x.type === Rep.INFO);
    t.same(
      infos.map((x) => x.data.readUInt16BE(0)),
      [Info.EXPORT, Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE],
    );
    t.equal(infos[1]!.data.subarray(2).toString(), 'disk0');
    t.equal(infos[2]!.data.subarray(2).toString(), 'first');
    t.same(
      [
        infos[3]!.data.readUInt32BE(2),
        infos[3]!.data.readUInt32BE(6),
        infos[3]!.data.readUInt32BE(10),
      ],
      [1, 4096, 32 * 1024 * 1024],
    );
    const go = r.filter((x) => x.option === Opt.GO);
    t.same(
      go.map((x) => x.type),
      [Rep.INFO, Rep.ACK],
      'disk1 has no description to send',
    );
  },
);

t.test('unknown export: GO gets ERR_UNKNOWN and may try again; EXPORT_NAME hangs up', async (t) => {
  const io = new ScriptIO(u32(3), opt(Opt.GO, infoReq('nope')), opt(Opt.GO, infoReq('disk1')));
  const s = await handshake(io);
  t.equal(s.export.name, 'disk1');
  t.equal(io.replies()[0]!.type, Rep.ERR_UNKNOWN);
  await t.rejects(
    handshake(new ScriptIO(u32(3), opt(Opt.EXPORT_NAME, Buffer.from('nope')))),
    ProtocolError,
  );
});

t.test('EXPORT_NAME replies size and flags, with 124 zeroes unless NO_ZEROES', async (t) => {
  for (const [flags, len] of [
    [3, 10],
    [1, 134],
  ] as const) {
    const io = new ScriptIO(u32(flags), opt(Opt.EXPORT_NAME, Buffer.from('disk1')));
    await handshake(io);
    const tail = Buffer.concat(io.out).subarray(18);
    t.equal(tail.length, len);
    t.equal(Number(tail.readBigUInt64BE(0)), 2 << 20);
  }
});

t.test('LIST names every export, then ACK; LIST with data is invalid', async (t) => {
  const io = new ScriptIO(
    u32(3),
    opt(Opt.LIST, Buffer.from('x')),
    opt(Opt.LIST),
    opt(Opt.GO, infoReq('')),
  );
  await handshake(io);
  const r = io.replies();
  t.equal(r[0]!.type, Rep.ERR_INVALID);
  const servers = r.filter((x) => x.type === Rep.SERVER);
  t.same(
    servers.map((x) => x.data.subarray(4, 4 + x.data.readUInt32BE(0)).toString()),
    ['disk0', 'disk1'],
  );
  t.equal(r[3]!.type, Rep.ACK);
});

t.test(
  'unknown options, STARTTLS and withdrawn options get ERR_UNSUP with their payload consumed',
  async (t) => {
    const io = new ScriptIO(
      u32(3),
      opt(0x7654321, Buffer.from('abcd')),
      opt(Opt.STARTTLS),
      opt(Opt.EXTENDED_HEADERS),
      opt(Opt.GO, infoReq('')),
    );
    await handshake(io);
    const r = io.replies();
    t.same(
      r.slice(0, 3).map((x) => [x.option, x.type]),
      [
        [0x7654321, Rep.ERR_UNSUP],
        [Opt.STARTTLS, Rep.ERR_UNSUP],
        [Opt.EXTENDED_HEADERS, Rep.ERR_UNSUP],
      ],
    );
  },
);

t.test('ABORT is acknowledged', async (t) => {
  const io = new ScriptIO(u32(3), opt(Opt.ABORT));
  await t.rejects(handshake(io), ClientAbort);
  t.equal(io.replies()[0]!.type, Rep.ACK);
});

t.test('bad option magic and oversized options hang up', async (t) => {
  const bad = opt(Opt.LIST);
  bad.writeUInt32BE(0, 0);
  await t.rejects(handshake(new ScriptIO(u32(3), bad)), ProtocolError);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64BE(IHAVEOPT, 0);
  huge.writeUInt32BE(Opt.GO, 8);
  huge.writeUInt32BE(1 << 30, 12);
  await t.rejects(handshake(new ScriptIO(u32(3), huge)), ProtocolError);
});

t.test(
  'meta contexts: base:allocation needs structured replies and follows the export',
  async (t) => {
    {
      const io = new ScriptIO(
        u32(3),
        opt(Opt.SET_META_CONTEXT, metaReq('', BASE_ALLOCATION)),
        opt(Opt.GO, infoReq('')),
      );
      const s = await handshake(io);
      t.equal(io.replies()[0]!.type, Rep.ERR_INVALID, 'SET before STRUCTURED_REPLY');
      t.equal(s.allocationContext, false);
    }
    {
      const io = new ScriptIO(
        u32(3),
        opt(Opt.STRUCTURED_REPLY),
        opt(Opt.LIST_META_CONTEXT, metaReq('disk0')),
        opt(Opt.SET_META_CONTEXT, metaReq('disk0', 'qemu:dirty-bitmap:x', BASE_ALLOCATION)),
        opt(Opt.GO, infoReq('disk0')),
      );
      const s = await handshake(io);
      t.equal(s.allocationContext, true);
      t.equal(s.structuredReplies, true);
      const r = io.replies();
      const ctx = r.filter((x) => x.type === Rep.META_CONTEXT);
      t.equal(ctx.length, 2);
      t.equal(ctx[1]!.data.subarray(4).toString(), BASE_ALLOCATION);
      t.not(ctx[1]!.data.readUInt32BE(0), 0, 'SET hands out an id');
      const info = r.find((x) => x.option === Opt.GO && x.type === Rep.INFO)!;
      t.ok(info.data.readUInt16BE(10) & TFlag.SEND_DF, 'DF once structured replies are on');
    }
    {
      const io = new ScriptIO(
        u32(3),
        opt(Opt.STRUCTURED_REPLY),
        opt(Opt.SET_META_CONTEXT, metaReq('disk0', BASE_ALLOCATION)),
        opt(Opt.GO, infoReq('disk1')),
      );
      t.equal((await handshake(io)).allocationContext, false, 'selection made for another export');
    }
    {
      const io = new ScriptIO(
        u32(3),
        opt(Opt.STRUCTURED_REPLY),
        opt(Opt.SET_META_CONTEXT, metaReq('nope', BASE_ALLOCATION)),
        opt(Opt.SET_META_CONTEXT, Buffer.from([0, 0])),
        opt(Opt.GO, infoReq('')),
      );
      await handshake(io);
      const r = io.replies();
      t.equal(r[1]!.type, Rep.ERR_UNKNOWN);
      t.equal(r[2]!.type, Rep.ERR_INVALID);
    }
  },
);

t.test('SET_META_CONTEXT ignores "base:", and every SET replaces the selection', async (t) => {
  const setReplies = (io: ScriptIO) =>
    io.replies().filter((x) => x.option === Opt.SET_META_CONTEXT);
  const cases: { name: string; sets: Buffer[]; selected: boolean; last: number }[] = [
    {
      name: 'base:allocation',
      sets: [metaReq('disk0', BASE_ALLOCATION)],
      selected: true,
      last: Rep.ACK,
    },
    { name: '"base:" alone', sets: [metaReq('disk0', 'base:')], selected: false, last: Rep.ACK },
    {
      name: 'no query',
      sets: [metaReq('disk0', BASE_ALLOCATION), metaReq('disk0')],
      selected: false,
      last: Rep.ACK,
    },
    {
      name: 'then "base:" alone',
      sets: [metaReq('disk0', BASE_ALLOCATION), metaReq('disk0', 'base:')],
      selected: false,
      last: Rep.ACK,
    },
    {
      name: 'then an unknown export',
      sets: [metaReq('disk0', BASE_ALLOCATION), metaReq('nope', BASE_ALLOCATION)],
      selected: false,
      last: Rep.ERR_UNKNOWN,
    },
    {
      name: 'then a malformed request',
      sets: [metaReq('disk0', BASE_ALLOCATION), Buffer.from([0, 0, 0, 9])],
      selected: false,
      last: Rep.ERR_INVALID,
    },
    {
      name: 'a failure, then base:allocation again',
      sets: [metaReq('nope', BASE_ALLOCATION), metaReq('disk0', BASE_ALLOCATION)],
      selected: true,
      last: Rep.ACK,
    },
  ];
  for (const c of cases) {
    const io = new ScriptIO(
      u32(3),
      opt(Opt.STRUCTURED_REPLY),
      ...c.sets.map((d) => opt(Opt.SET_META_CONTEXT, d)),
      opt(Opt.GO, infoReq('disk0')),
    );
    const s = await handshake(io);
    t.equal(s.allocationContext, c.selected, `${c.name}: selected=${c.selected}`);
    // the replies to the last SET: what follows the previous SET's final reply
    const r = setReplies(io);
    const finals = r.flatMap((x, i) => (x.type === Rep.META_CONTEXT ? [] : [i]));
    const last = r.slice(finals.length > 1 ? finals.at(-2)! + 1 : 0);
    t.same(
      last.map((x) => x.type),
      c.selected ? [Rep.META_CONTEXT, Rep.ACK] : [c.last],
      `${c.name}: the last SET's replies`,
    );
  }
  // LIST still takes "base:" as a wildcard
  const io = new ScriptIO(
    u32(3),
    opt(Opt.STRUCTURED_REPLY),
    opt(Opt.LIST_META_CONTEXT, metaReq('disk0', 'base:')),
    opt(Opt.SET_META_CONTEXT, metaReq('disk0', 'base:')),
    opt(Opt.GO, infoReq('disk0')),
  );
  await handshake(io);
  const listed = io.replies().filter((x) => x.option === Opt.LIST_META_CONTEXT);
  t.same(
    listed.map((x) => x.type),
    [Rep.META_CONTEXT, Rep.ACK],
    'LIST "base:" lists base:allocation',
  );
  t.same(
    setReplies(io).map((x) => x.type),
    [Rep.ACK],
    'SET "base:" names no context, just ACK',
  );
});

t.test('selectsAllocation: LIST and SET query rules', async (t) => {
  const rows: [string[], boolean, boolean][] = [
    // queries, LIST matches, SET selects
    [[], true, false],
    [['base:'], true, false],
    [[BASE_ALLOCATION], true, true],
    [['base:', BASE_ALLOCATION], true, true],
    [['base:nosuch'], false, false],
    [['qemu:dirty-bitmap:x'], false, false],
    [['qemu:dirty-bitmap:x', BASE_ALLOCATION], true, true],
    [['BASE:allocation'], false, false],
  ];
  for (const [queries, list, set] of rows) {
    t.equal(selectsAllocation('list', queries), list, `LIST ${JSON.stringify(queries)}`);
    t.equal(selectsAllocation('set', queries), set, `SET ${JSON.stringify(queries)}`);
  }
});

t.test('only GO with NBD_INFO_BLOCK_SIZE binds the client to the block sizes', async (t) => {
  const cases: [string, Buffer[], boolean][] = [
    ['GO with BLOCK_SIZE', [opt(Opt.GO, infoReq('', Info.BLOCK_SIZE))], true],
    [
      'GO with BLOCK_SIZE among others',
      [opt(Opt.GO, infoReq('', Info.NAME, Info.BLOCK_SIZE))],
      true,
    ],
    ['GO without info requests (the kernel)', [opt(Opt.GO, infoReq(''))], false],
    [
      'INFO with BLOCK_SIZE, then GO without',
      [opt(Opt.INFO, infoReq('', Info.BLOCK_SIZE)), opt(Opt.GO, infoReq(''))],
      false,
    ],
    ['EXPORT_NAME', [opt(Opt.EXPORT_NAME, Buffer.from('disk0'))], false],
  ];
  for (const [name, options, agreed] of cases) {
    const s = await handshake(new ScriptIO(u32(3), ...options));
    t.equal(s.blockSizes, agreed, name);
  }
});

t.test('a read-only export advertises no FUA, and still FLUSH', async (t) => {
  const exports = new ExportTable();
  exports.add({ name: 'ro', target: sizedTarget(1 << 20), readOnly: true });
  exports.add({ name: 'rw', target: sizedTarget(1 << 20) });
  for (const [name, ro] of [
    ['ro', true],
    ['rw', false],
  ] as const) {
    const io = new ScriptIO(u32(3), opt(Opt.GO, infoReq(name)));
    await handshake(io, exports);
    const flags = io.replies()[0]!.data.readUInt16BE(10);
    t.equal(Boolean(flags & TFlag.READ_ONLY), ro, `${name}: READ_ONLY`);
    t.equal(Boolean(flags & TFlag.SEND_FUA), !ro, `${name}: SEND_FUA`);
    t.ok(flags & TFlag.SEND_FLUSH, `${name}: SEND_FLUSH`);
    t.equal(Boolean(flags & TFlag.SEND_TRIM), !ro, `${name}: SEND_TRIM`);
  }
});

t.test('payload parsers refuse inconsistent lengths', async (t) => {
  t.type(parseInfoRequest(Buffer.alloc(3)), 'string');
  t.type(parseInfoRequest(Buffer.concat([str('a'), u16(2), u16(1)])), 'string');
  t.same(parseInfoRequest(infoReq('ab', 3)), { name: 'ab', requests: [3] });
  t.type(parseMetaRequest(Buffer.concat([str('a'), u32(1), u32(100)])), 'string');
  t.type(parseMetaRequest(Buffer.concat([metaReq('a', 'q'), Buffer.from([1])])), 'string');
  t.same(parseMetaRequest(metaReq('a', 'q1', 'q2')), { name: 'a', queries: ['q1', 'q2'] });
});
