// NBD_OPT_SET_META_CONTEXT: the query "base:" selects nothing (the spec: the server MUST
// ignore it during SET, it is a wildcard for LIST only), and every SET replaces the earlier
// selection, a failing one included, so BLOCK_STATUS is refused after it.
import t, { type Test } from 'tap';
import { CMD, NBD_EINVAL, OPT, REP, RawNbdClient } from '../helpers/raw-client.js';
import { libnbd, type Outcome } from '../helpers/libnbd.js';
import { makeDisk, startServer, tmpDir } from '../helpers/server.js';

t.setTimeout(120000);

const MiB = 1 << 20;

async function serve(t: Test) {
  const dir = tmpDir(t);
  const disk = await makeDisk(dir, 8 * MiB);
  const srv = await startServer(['--disk', disk, '--export', 'main', '--listen', '127.0.0.1:0'], {
    t,
  });
  const clients: RawNbdClient[] = [];
  t.teardown(() => clients.forEach((c) => c.destroy()));
  /** Handshake with structured replies on, ready for meta-context options. */
  const connect = async () => {
    const c = await RawNbdClient.connect(srv.tcp);
    clients.push(c);
    await c.handshake();
    t.equal((await c.optStructuredReply()).type, REP.ACK, 'structured replies on');
    return c;
  };
  return { srv, connect };
}

/** BLOCK_STATUS over the first 64 KiB after GO; returns the NBD error (0 = served). */
async function blockStatusAfterGo(c: RawNbdClient): Promise<number> {
  await c.go('main');
  return c.command(CMD.BLOCK_STATUS, 0, 65536);
}

/** The SET_META_CONTEXT option's raw bytes for a payload the server must find malformed. */
async function malformedSet(c: RawNbdClient): Promise<number> {
  // export name length 4, then only 2 bytes of it
  await c.sendOption(OPT.SET_META_CONTEXT, Buffer.from([0, 0, 0, 4, 0x6d, 0x61]));
  return (await c.readOptionReply()).type;
}

t.test('libnbd (strict mode off): "base:" selects no context', async (t) => {
  const { srv } = await serve(t);
  const out = await libnbd<{
    wildcard: boolean;
    bs: Outcome;
    after: Outcome;
    named: boolean;
    ok: Outcome;
  }>(
    srv.uri('main'),
    `
h = nbd.NBD()
h.set_strict_mode(0)
h.add_meta_context("base:")
h.connect_uri(uri)
out["wildcard"] = h.can_meta_context("base:allocation")
out["bs"] = attempt(lambda: h.block_status(65536, 0, lambda *a: 0))
out["after"] = alive(h)
g = nbd.NBD()
g.set_strict_mode(0)
g.add_meta_context("base:allocation")
g.connect_uri(uri)
out["named"] = g.can_meta_context("base:allocation")
out["ok"] = attempt(lambda: g.block_status(65536, 0, lambda *a: 0))
`,
  );
  t.equal(out.wildcard, false, 'the server named no context for the SET "base:"');
  t.match(out.bs, { ok: false, errno: 'EINVAL' }, 'BLOCK_STATUS sent anyway: EINVAL');
  t.match(out.after, { ok: true }, 'the handle still reads');
  t.equal(out.named, true, 'control: SET "base:allocation" selects it');
  t.match(out.ok, { ok: true }, 'control: and BLOCK_STATUS is served');
});

t.test('libnbd (strict mode off): a failed SET drops the earlier selection', async (t) => {
  const { srv } = await serve(t);
  // opt mode: INFO sends SET_META_CONTEXT for its export first; clearing the contexts before
  // GO means GO sends none, so what the server selected last is what counts.
  const out = await libnbd<{ selected: boolean; failed: Outcome; bs: Outcome; after: Outcome }>(
    srv.uri('main'),
    `
h = nbd.NBD()
h.set_strict_mode(0)
h.set_opt_mode(True)
h.add_meta_context("base:allocation")
h.connect_uri(uri)
h.opt_info()
out["selected"] = h.can_meta_context("base:allocation")
h.set_export_name("no-such-export")
out["failed"] = attempt(lambda: h.opt_info())
h.clear_meta_contexts()
h.set_export_name("main")
h.opt_go()
out["bs"] = attempt(lambda: h.block_status(65536, 0, lambda *a: 0))
out["after"] = alive(h)
`,
  );
  t.equal(out.selected, true, 'the first SET (for main) selected base:allocation');
  t.match(out.failed, { ok: false }, 'INFO (and its SET) for an unknown export fail');
  t.match(out.bs, { ok: false, errno: 'EINVAL' }, 'BLOCK_STATUS after GO: EINVAL');
  t.match(out.after, { ok: true }, 'the handle still reads');
});

t.test('raw socket: what each SET leaves selected', async (t) => {
  const { connect } = await serve(t);

  let c = await connect();
  const listed = await c.optMetaContext(OPT.LIST_META_CONTEXT, 'main', ['base:']);
  t.same([...listed.contexts.keys()], ['base:allocation'], 'LIST "base:" is a wildcard');
  const wild = await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['base:']);
  t.equal(wild.final.type, REP.ACK, 'SET "base:": ACK');
  t.equal(wild.contexts.size, 0, 'and no context');
  t.equal(await blockStatusAfterGo(c), NBD_EINVAL, 'BLOCK_STATUS: EINVAL');

  const failures: [string, (c: RawNbdClient) => Promise<number>, number][] = [
    ['malformed', malformedSet, REP.ERR_INVALID],
    [
      'unknown export',
      async (c) =>
        (await c.optMetaContext(OPT.SET_META_CONTEXT, 'no-such-export', ['base:allocation'])).final
          .type,
      REP.ERR_UNKNOWN,
    ],
    [
      'no query',
      async (c) => (await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', [])).final.type,
      REP.ACK,
    ],
    [
      'only "base:"',
      async (c) => (await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['base:'])).final.type,
      REP.ACK,
    ],
  ];
  for (const [name, second, reply] of failures) {
    c = await connect();
    const first = await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['base:allocation']);
    t.ok(first.contexts.has('base:allocation'), `${name}: the first SET selects base:allocation`);
    t.equal(await second(c), reply, `${name}: the second SET ends with 0x${reply.toString(16)}`);
    t.equal(await blockStatusAfterGo(c), NBD_EINVAL, `${name}: BLOCK_STATUS after GO: EINVAL`);
  }

  c = await connect();
  t.equal(await malformedSet(c), REP.ERR_INVALID, 'control: a malformed SET first');
  const again = await c.optMetaContext(OPT.SET_META_CONTEXT, 'main', ['base:allocation']);
  t.ok(again.contexts.has('base:allocation'), 'control: then a good one selects');
  t.equal(await blockStatusAfterGo(c), 0, 'control: and BLOCK_STATUS is served');
});
