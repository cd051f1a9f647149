import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { configPath } from '../config/index.js';
import { Daemon } from '../control/daemon.js';
import { DEFAULT_RUN_DIR } from '../control/protocol.js';
import { NbdServer, formatAddress, parseListenAddress } from '../nbd/index.js';
import { FileDisk } from '../storage/file-disk.js';
import { createLogger } from './log.js';

const program = new Command('urbd')
  .description(
    'urbd: a userspace replicated block device, served over NBD.\n' +
      "Without a command it runs the daemon that owns this node's resources (see urbdadm).",
  )
  .version('0.1.0')
  .option(
    '--node <name>',
    "this node's name in the resource files (default: URBD_NODE or the host name)",
  )
  .option('--config <file>', 'resource configuration (default: URBD_CONFIG or /etc/urbd/urbd.conf)')
  .option('--run-dir <dir>', 'control socket and NBD sockets (default: URBD_RUN_DIR or /run/urbd)')
  .showHelpAfterError()
  .action(daemon);

interface DaemonCliOptions {
  node?: string;
  config?: string;
  runDir?: string;
}

async function daemon(opts: DaemonCliOptions): Promise<void> {
  const node = opts.node ?? process.env.URBD_NODE ?? os.hostname();
  const runDir = path.resolve(opts.runDir ?? process.env.URBD_RUN_DIR ?? DEFAULT_RUN_DIR);
  const log = createLogger('urbd').child({ node });
  const d = new Daemon({ node, configPath: path.resolve(configPath(opts.config)), runDir, log });
  stopOnSignals(log, 'stopping: persisting bitmaps and marking metadata clean', () => d.stop());
  try {
    await d.start();
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start');
    fail((err as Error).message);
  }
}

program
  .command('serve')
  .description('serve disks over NBD, without replication (a quick one-node mode)')
  .requiredOption(
    '--disk <path>',
    'backing file or block device (repeat for more exports)',
    collect,
    [],
  )
  .option('--export <name>', 'export name of the matching --disk (repeatable)', collect, [])
  .requiredOption(
    '--listen <addr>',
    'HOST:PORT, [IPV6]:PORT or unix:PATH (repeatable)',
    collect,
    [],
  )
  .option('--read-only', 'refuse every write')
  .option('--description <text>', 'description shown to clients for the first export')
  .addOption(
    new Option('--max-connections <n>', 'simultaneous client connections')
      .default(128)
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--handshake-timeout <seconds>', 'drop clients that do not finish the handshake')
      .default(30)
      .argParser(positiveInt),
  )
  .action(serve);

interface ServeOptions {
  disk: string[];
  export: string[];
  listen: string[];
  readOnly?: boolean;
  description?: string;
  maxConnections: number;
  handshakeTimeout: number;
}

async function serve(opts: ServeOptions): Promise<void> {
  const log = createLogger('urbd');
  // commander counts the empty default of a repeatable option as given.
  if (opts.disk.length === 0) fail('serve needs at least one --disk PATH');
  if (opts.listen.length === 0) fail('serve needs at least one --listen ADDRESS');
  if (opts.export.length > opts.disk.length) {
    fail(`${opts.export.length} --export names for ${opts.disk.length} --disk paths`);
  }
  const listeners = opts.listen.map((a) => {
    try {
      return parseListenAddress(a);
    } catch (err) {
      return fail(`--listen ${(err as Error).message}`);
    }
  });
  const server = new NbdServer({
    log,
    maxConnections: opts.maxConnections,
    handshakeTimeoutMs: opts.handshakeTimeout * 1000,
  });
  const disks: FileDisk[] = [];
  const stopping = stopOnSignals(log, 'stopping: finishing requests in flight', async () => {
    await server.close();
    // What the clients wrote without a FLUSH should not depend on the page cache outliving us.
    for (const d of disks) {
      await d.flush().catch((err: Error) => log.error({ err: err.message }, 'final flush failed'));
      await d.close();
    }
  });
  try {
    for (const [i, file] of opts.disk.entries()) {
      if (stopping.requested) return;
      const disk = await FileDisk.open(file, { readOnly: opts.readOnly === true });
      disks.push(disk);
      const name = opts.export[i] ?? path.basename(file);
      server.exports.add({
        name,
        target: disk,
        readOnly: opts.readOnly === true,
        ...(i === 0 && opts.description ? { description: opts.description } : {}),
      });
      log.info({ export: name, disk: file, size: disk.size, default: i === 0 }, 'export ready');
    }
    for (const addr of listeners) if (!stopping.requested) await server.listen(addr);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start');
    await Promise.all(disks.map((d) => d.close()));
    fail((err as Error).message);
  }

  log.info({ listeners: listeners.map(formatAddress) }, 'serving');
}

/**
 * SIGTERM and SIGINT run `stop` once, then exit 0. Installed before anything listens: a
 * supervisor may signal as soon as it sees us ready. A bug that escapes every handler
 * leaves state nobody can vouch for: it is logged in one line and the process exits 70, so
 * the supervisor restarts us from what is on disk.
 */
function stopOnSignals(
  log: ReturnType<typeof createLogger>,
  message: string,
  stop: () => Promise<void>,
): { requested: boolean } {
  const state = { requested: false };
  const onSignal = async (signal: string): Promise<void> => {
    if (state.requested) return;
    state.requested = true;
    log.info({ signal }, message);
    await stop();
    log.info('stopped');
    process.exit(0);
  };
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.stack ?? String(err) }, 'internal error, exiting');
    process.exit(70);
  });
  process.on('SIGTERM', (s) => void onSignal(s));
  process.on('SIGINT', (s) => void onSignal(s));
  return state;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`"${value}" is not a positive integer`);
  return n;
}

function fail(message: string): never {
  process.stderr.write(`urbd: ${message}\n`);
  process.exit(1);
}

await program.parseAsync(process.argv);
