#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { RemoteError } from '../control/client.js';
import { formatEventText, type UrbdEvent } from '../control/events.js';
import { toJsonLine } from '../control/protocol.js';
import { wantColour } from '../control/status-colour.js';
import { renderStatus } from '../control/status-text.js';
import { dumpConfig } from '../config/index.js';
import { parseSizeBytes } from '../config/values.js';
import { formatGi, showGi } from '../meta/uuid.js';
import { addOptionVerbs } from './adm-options.js';
import type { ResourceStatus } from '../resource/status.js';
import { AdmContext, AdmError, Exit, type GlobalOptions } from './adm-context.js';

// Loaded by the verbs that need them: the metadata verbs open SQLite (better-sqlite3) and the
// wait-* verbs draw progress bars (cli-progress). Every other call, `status` above all (the
// failover supervisor's OCF agents run it every few seconds), starts ~35 ms sooner without.
const admMeta = (): Promise<typeof import('./adm-meta.js')> => import('./adm-meta.js');
const admWait = (): Promise<typeof import('./adm-wait.js')> => import('./adm-wait.js');

/**
 * urbdadm: drbdadm's verbs for urbd. It only reads the configuration and asks the daemon
 * (or, for the metadata verbs, opens the metadata while the resource is down); every rule
 * about what may happen lives in the daemon.
 */
const program = new Command('urbdadm')
  .description(
    "administer urbd resources with drbdadm's verbs.\n" +
      'RES is a resource name or "all". Exit codes: 0 done, 1 usage, 5 a wait-* --timeout ran ' +
      'out, 10 failed, 11 state change refused, 20 no daemon.',
  )
  .version('0.1.0')
  .option('--node <name>', 'this node (default: URBD_NODE or the host name)')
  .option('--config <file>', 'configuration file (default: URBD_CONFIG or /etc/urbd/urbd.conf)')
  .option('--run-dir <dir>', "the daemon's run directory (default: URBD_RUN_DIR or /run/urbd)")
  .showHelpAfterError()
  .exitOverride();

/** Runs a verb for each named resource; failures print one line each, the worst exit wins. */
function perResource(
  verb: string,
  fn: (ctx: AdmContext, name: string, opts: Record<string, unknown>) => Promise<string | void>,
): (names: string[], opts: Record<string, unknown>) => Promise<void> {
  return async (names, opts) => {
    const ctx = new AdmContext(program.opts<GlobalOptions>());
    let exit: number = Exit.OK;
    try {
      for (const name of ctx.expand(names)) {
        try {
          const out = await fn(ctx, name, opts);
          if (out) process.stdout.write(out.endsWith('\n') ? out : out + '\n');
        } catch (err) {
          const code = report(err, `${verb} ${name}`);
          exit = Math.max(exit, code);
        }
      }
    } finally {
      ctx.close();
    }
    process.exitCode = exit;
  };
}

function report(err: unknown, what: string): number {
  if (err instanceof RemoteError) {
    const prefix = err.exitCode === Exit.STATE_CHANGE ? 'State change failed: ' : '';
    process.stderr.write(`urbdadm: ${what}: ${prefix}${err.message} (${err.code})\n`);
    return err.exitCode;
  }
  if (err instanceof AdmError) {
    process.stderr.write(`urbdadm: ${what}: ${err.message}\n`);
    return err.exitCode;
  }
  process.stderr.write(`urbdadm: ${what}: ${(err as Error).message ?? String(err)}\n`);
  return Exit.FAILED;
}

/** A verb the daemon carries out: the resource must be up there. */
function daemonVerb(
  cmd: string,
  args: (opts: Record<string, unknown>, ctx: AdmContext) => Record<string, unknown> = () => ({}),
) {
  return perResource(cmd, async (ctx, name, opts) => {
    const c = await ctx.requireDaemon();
    await c.request(cmd, name, args(opts, ctx));
  });
}

/** Verbs that read the resource file hand the daemon the one urbdadm read, as drbdadm does. */
const withConfig = (_o: Record<string, unknown>, ctx: AdmContext): Record<string, unknown> => ({
  config: ctx.configFile,
});

program
  .command('create-md')
  .argument('<res...>')
  .option('--force', 'overwrite existing metadata (its UUIDs, bitmap and activity log are lost)')
  .description('write fresh metadata: generation UUIDs, an empty activity log and a clear bitmap')
  .action(
    perResource('create-md', async (ctx, name, o) =>
      (await admMeta()).createMd(ctx, name, o.force === true),
    ),
  );

program
  .command('wipe-md')
  .argument('<res...>')
  .option('--force', 'do not ask for confirmation')
  .description('destroy the metadata')
  .action(
    perResource('wipe-md', async (ctx, name, o) =>
      (await admMeta()).wipeMd(ctx, name, o.force === true),
    ),
  );

program
  .command('dump-md')
  .argument('<res...>')
  .option('--json', 'machine-readable output')
  .description(
    'print the metadata: superblock, UUIDs, flags, activity log and bitmap (resource down)',
  )
  .action(
    perResource('dump-md', async (ctx, name, o) => {
      const d = await (await admMeta()).dumpMd(ctx, name);
      return o.json === true
        ? toJsonLine(d)
        : renderDump(name, d as unknown as Record<string, unknown>);
    }),
  );

program
  .command('apply-al')
  .argument('<res...>')
  .description(
    'after an unclean stop, mark every activity-log extent out of sync (up does this itself)',
  )
  .action(perResource('apply-al', async (ctx, name) => (await admMeta()).applyAlVerb(ctx, name)));

program
  .command('get-gi')
  .argument('<res...>')
  .description('print the generation identifiers and flags')
  .action(
    perResource('get-gi', async (ctx, name) =>
      formatGi((await (await admMeta()).readSuperblock(ctx, name)).sb),
    ),
  );

program
  .command('show-gi')
  .argument('<res...>')
  .description('print the generation identifiers and flags, explained')
  .action(
    perResource('show-gi', async (ctx, name) => {
      const { sb, attached } = await (await admMeta()).readSuperblock(ctx, name);
      return showGi(sb, { attached });
    }),
  );

program
  .command('new-current-uuid')
  .argument('<res...>')
  .option('--clear-bitmap', 'also clear the bitmap (skip the initial sync of two blank disks)')
  .description('start a new data generation')
  .action(
    perResource('new-current-uuid', async (ctx, name, o) => {
      const clearBitmap = o.clearBitmap === true;
      const st = await ctx.upStatus(name);
      if (st && st.device.diskState !== 'Diskless') {
        const c = await ctx.requireDaemon();
        await c.request('new-current-uuid', name, { clearBitmap });
      } else {
        await (await admMeta()).newCurrentUuidOffline(ctx, name, clearBitmap);
      }
    }),
  );

program
  .command('outdate')
  .argument('<res...>')
  .description('mark the local data Outdated (it then refuses to become Primary)')
  .action(
    perResource('outdate', async (ctx, name) => {
      const st = await ctx.upStatus(name);
      if (st && st.device.diskState !== 'Diskless') {
        await (await ctx.requireDaemon()).request('outdate', name);
      } else {
        await (await admMeta()).outdateOffline(ctx, name);
      }
    }),
  );

program
  .command('up')
  .argument('<res...>')
  .description('apply the activity log, attach the disk and serve the export (Secondary)')
  .action(daemonVerb('up', withConfig));
program
  .command('down')
  .argument('<res...>')
  .option('--force', 'go down even while NBD clients are attached (they are cut off)')
  .description('demote, stop serving, detach')
  .action(daemonVerb('down', (o, ctx) => ({ ...withConfig(o, ctx), force: o.force === true })));
program
  .command('attach')
  .argument('<res...>')
  .description('attach the backing disk')
  .action(daemonVerb('attach', withConfig));
program
  .command('detach')
  .argument('<res...>')
  .description('detach the backing disk (Diskless)')
  .action(daemonVerb('detach'));
program
  .command('primary')
  .argument('<res...>')
  .option('--force', 'promote data that is not UpToDate, starting a new data generation')
  .description('promote: serve the NBD export from this node')
  .action(daemonVerb('primary', (o) => ({ force: o.force === true })));
program
  .command('secondary')
  .argument('<res...>')
  .option('--force', 'demote even while NBD clients are attached (they are cut off)')
  .description('demote: stop serving the NBD export')
  .action(daemonVerb('secondary', (o) => ({ force: o.force === true })));

program
  .command('connect')
  .argument('<res...>')
  .option('--discard-my-data', 'this node is the split-brain victim: its changes are overwritten')
  .option('--peer <name>', 'only this peer')
  .description('connect to the peer (listen or dial); the handshake decides any resync')
  .action(
    daemonVerb('connect', (o) => ({
      discardMyData: o.discardMyData === true,
      ...(typeof o.peer === 'string' ? { peer: o.peer } : {}),
    })),
  );
program
  .command('disconnect')
  .argument('<res...>')
  .option('--peer <name>', 'only this peer')
  .description('drop the connection and stay StandAlone')
  .action(daemonVerb('disconnect', peerOption));
program
  .command('pause-sync')
  .argument('<res...>')
  .option('--peer <name>', 'only this peer')
  .description('pause a running resync (PausedSyncS/T) until resume-sync')
  .action(daemonVerb('pause-sync', peerOption));
program
  .command('resume-sync')
  .argument('<res...>')
  .option('--peer <name>', 'only this peer')
  .description('resume a resync paused by pause-sync')
  .action(daemonVerb('resume-sync', peerOption));
program
  .command('invalidate')
  .argument('<res...>')
  .description("discard this node's data: it becomes SyncTarget of a full resync from the peer")
  .action(daemonVerb('invalidate'));
program
  .command('invalidate-remote')
  .argument('<res...>')
  .description("discard the peer's data: it becomes SyncTarget of a full resync from here")
  .action(daemonVerb('invalidate-remote'));
program
  .command('verify')
  .argument('<res...>')
  .option('--start <sector>', 'first 512-byte sector to compare (rounded down to 4 KiB)')
  .option('--stop <sector>', 'sector to stop before (rounded up to 4 KiB; default: the end)')
  .option('--peer <name>', 'only this peer')
  .description(
    'online verify: compare block digests with the peer (verify-alg), log and mark what ' +
      'differs; disconnect + connect resyncs it',
  )
  .action(
    daemonVerb('verify', (o) => ({
      ...peerOption(o),
      ...sectorOption('--start', o.start),
      ...sectorOption('--stop', o.stop),
    })),
  );
program
  .command('resize')
  .argument('<res...>')
  .option(
    '--size <size>',
    'the new size (10G, 512M; bare numbers are 512-byte sectors); default: disk { size }, else all the backing disks offer',
  )
  .option('--assume-clean', 'take the new area as identical on every node: no resync of it')
  .description(
    'grow the device online after its backing disks grew on every node (run on either node; ' +
      'the Primary carries it out): the new area is resynced from the Primary',
  )
  .action(
    perResource('resize', async (ctx, name, o) => {
      const c = await ctx.requireDaemon();
      const args: Record<string, unknown> = { assumeClean: o.assumeClean === true };
      if (typeof o.size === 'string') {
        try {
          args.size = parseSizeBytes('--size', o.size, Number.MAX_SAFE_INTEGER);
        } catch (err) {
          throw new AdmError((err as Error).message);
        }
      } else {
        // As drbdadm does: the size in the file as it is now, which the daemon read at `up`.
        const configured = ctx.resource(name).res.disk.sizeBytes;
        if (configured !== undefined)
          Object.assign(args, { size: configured, sizeBy: 'disk { size }' });
      }
      const res = (await c.request('resize', name, args)) as {
        from: number;
        to: number;
        unchanged?: string;
      };
      return res.unchanged
        ? `${name}: nothing to do: ${res.unchanged}`
        : `${name}: grown from ${res.from} to ${res.to} bytes`;
    }),
  );
program
  .command('resume-io')
  .argument('<res...>')
  .description('end suspended I/O (on-no-data-accessible suspend-io): the requests held fail')
  .action(daemonVerb('resume-io'));
program
  .command('wait-connect')
  .argument('<res...>')
  .option('--timeout <seconds>', 'give up after this long (exit 5); 0 waits forever', '0')
  .description('wait until every peer of the resource is connected (exit 10 if one is StandAlone)')
  .action(
    perResource('wait-connect', async (ctx, name, o) => {
      const w = await admWait();
      return w.waitFor(ctx, name, Number(o.timeout), w.CONNECTED);
    }),
  );
program
  .command('wait-sync')
  .argument('<res...>')
  .option('--timeout <seconds>', 'give up after this long (exit 5); 0 waits forever', '0')
  .description(
    'wait until connected and no resync is running (both disks UpToDate); on a terminal, ' +
      'a progress bar shows the resync',
  )
  .action(
    perResource('wait-sync', (ctx, name, o) =>
      admWait().then((w) => w.waitFor(ctx, name, Number(o.timeout), w.IN_SYNC, true)),
    ),
  );

program
  .command('status')
  .argument('[res...]')
  .option('--json', 'machine-readable output')
  .option('--verbose', 'node ids, sizes, out-of-sync amounts and the export')
  .option('--statistics', 'counters: read, written, al-writes, bm-writes, sent, received, ...')
  .description(
    'show roles, disk states and connections, like drbdadm status (in colour on a terminal, ' +
      'unless NO_COLOR is set)',
  )
  .action(
    async (names: string[], o: { json?: boolean; verbose?: boolean; statistics?: boolean }) => {
      await withStatus(names, (list) =>
        o.json === true
          ? toJsonLine(list)
          : renderStatus(list, {
              verbose: o.verbose === true,
              statistics: o.statistics === true,
              colour: wantColour(process.stdout.isTTY, process.env),
            }),
      );
    },
  );

program
  .command('role')
  .argument('<res...>')
  .description('show the role of this node')
  .action((names: string[]) =>
    withStatus(names, (list) => list.map((s) => `${s.role}\n`).join('')),
  );
program
  .command('dstate')
  .argument('<res...>')
  .description('show the disk states, local/peer')
  .action((names: string[]) =>
    withStatus(names, (list) =>
      list
        .map((s) => `${[s.device.diskState, ...s.peers.map((p) => p.peerDisk)].join('/')}\n`)
        .join(''),
    ),
  );
program
  .command('cstate')
  .argument('<res...>')
  .description('show the connection state of each peer')
  .action((names: string[]) =>
    withStatus(names, (list) =>
      list.map((s) => s.peers.map((p) => `${p.connection}\n`).join('')).join(''),
    ),
  );

program
  .command('events')
  .argument('[res]')
  .option('--json', 'one JSON object per line')
  .option('--now', 'print the current state and exit')
  .option('--timestamps', 'prefix each line with its time')
  .option('--statistics', 'add the counters of status --statistics, and resync progress')
  .description('stream state changes, like drbdsetup events2')
  .action(
    async (
      name: string | undefined,
      o: { json?: boolean; now?: boolean; timestamps?: boolean; statistics?: boolean },
    ) => {
      const ctx = new AdmContext(program.opts<GlobalOptions>());
      try {
        const c = await ctx.requireDaemon();
        // A resource that is neither up nor in the file would never produce an event: exit
        // 10 saying so, as every other verb does. One that is configured but down may be
        // watched until it comes up.
        if (name !== undefined && name !== 'all' && !(await ctx.upStatus(name))) {
          ctx.resource(name);
        }
        process.on('SIGINT', () => c.close());
        await c.events(
          name,
          (e: UrbdEvent) =>
            process.stdout.write(
              o.json === true ? toJsonLine(e) : formatEventText(e, o.timestamps === true) + '\n',
            ),
          o.now === true,
          o.statistics === true,
        );
      } catch (err) {
        process.exitCode = report(err, name !== undefined ? `events ${name}` : 'events');
      } finally {
        ctx.close();
      }
    },
  );

program
  .command('dump')
  .argument('[res...]')
  .description('print the parsed configuration')
  .action((names: string[]) => {
    const ctx = new AdmContext(program.opts<GlobalOptions>());
    try {
      const cfg = ctx.config();
      const wanted = names.length === 0 || names.includes('all') ? undefined : names;
      for (const n of wanted ?? []) ctx.resource(n);
      process.stdout.write(dumpConfig(cfg, wanted));
    } catch (err) {
      process.exitCode = report(err, 'dump');
    }
  });

addOptionVerbs(program, perResource);

function sectorOption(flag: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  const n = Number(v);
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new Error(`${flag} must be a sector number (a whole number >= 0), got "${String(v)}"`);
  }
  return { [flag.slice(2)]: n };
}

function peerOption(o: Record<string, unknown>): Record<string, unknown> {
  return typeof o.peer === 'string' ? { peer: o.peer } : {};
}

/** status/role/dstate/cstate: the named resources (or every one that is up) from the daemon. */
async function withStatus(
  names: string[],
  render: (list: ResourceStatus[]) => string,
): Promise<void> {
  const ctx = new AdmContext(program.opts<GlobalOptions>());
  try {
    const c = await ctx.requireDaemon();
    const all = (await c.request('status', 'all')) as ResourceStatus[];
    let list = all;
    let exit: number = Exit.OK;
    if (names.length > 0 && !names.includes('all')) {
      list = [];
      for (const n of names) {
        const s = all.find((x) => x.name === n);
        if (s) list.push(s);
        else {
          process.stderr.write(`urbdadm: ${n}: no such resource is up on ${ctx.node}\n`);
          exit = Exit.FAILED;
        }
      }
    }
    if (list.length === 0 && names.length === 0)
      process.stdout.write(`# no resources are up on ${ctx.node}\n`);
    else process.stdout.write(render(list));
    process.exitCode = exit;
  } catch (err) {
    process.exitCode = report(err, 'status');
  } finally {
    ctx.close();
  }
}

function renderDump(name: string, d: Record<string, unknown>): string {
  // The JSON form is the contract; the text form is the same data, one field per line.
  const lines = [`# urbd metadata of ${name}`];
  const walk = (prefix: string, v: unknown): void => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    } else {
      lines.push(`${prefix} ${Array.isArray(v) ? JSON.stringify(v) : String(v)};`);
    }
  };
  walk('', JSON.parse(toJsonLine(d)));
  return lines.join('\n') + '\n';
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : Exit.USAGE;
  } else {
    process.exitCode = report(err, 'urbdadm');
  }
}
