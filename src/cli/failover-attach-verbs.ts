/**
 * `attach`, `detach` and `attach-status`: the export of a resource as a block device on this
 * host (src/failover/attach.ts), for the urbd-attach OCF agent and for people. They take the
 * program's globals (--node, --config, --run-dir) as urbdadm does; only the run directory
 * matters here (the export's socket is RUNDIR/RES.nbd).
 *
 * Exit codes: 0 done (attach-status: attached), 1 usage, 3 (attach-status only) detached,
 * 10 failed (attach-status: the attach is there but broken); every failure is one line on
 * stderr.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_RUN_DIR } from '../control/protocol.js';
import {
  attachExport,
  attachState,
  deviceLinkPath,
  detachExport,
  type AttachMethod,
  defaultAttachStateDir,
  type AttachSpec,
} from '../failover/attach.js';
import { exportSocketPath } from '../resource/paths.js';

export const ATTACH_EXIT = { OK: 0, USAGE: 1, DETACHED: 3, FAILED: 10 } as const;

interface AttachOpts {
  method: AttachMethod;
  device?: string;
  stateDir?: string;
  timeout: string;
  json?: boolean;
}

interface Globals {
  runDir?: string;
}

/** The run directory the globals name (else URBD_RUN_DIR, else /run/urbd). */
function runDirOf(program: Command): string {
  const g = program.opts<Globals>();
  return path.resolve(g.runDir ?? process.env.URBD_RUN_DIR ?? DEFAULT_RUN_DIR);
}

/** The default state directory of a resource's attach: RUNDIR/failover/RES. */
function specFor(program: Command, resource: string, o: AttachOpts): AttachSpec {
  const runDir = runDirOf(program);
  const seconds = Number(o.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds, not "${o.timeout}"`);
  }
  if (!/^[A-Za-z0-9_.+-]+$/.test(resource)) {
    throw new UsageError(`"${resource}" is not a resource name`);
  }
  return {
    resource,
    socket: exportSocketPath(runDir, resource),
    method: o.method,
    ...(o.device !== undefined ? { device: o.device } : {}),
    stateDir: path.resolve(o.stateDir ?? defaultAttachStateDir(runDir, resource)),
    timeoutMs: Math.round(seconds * 1000),
  };
}

class UsageError extends Error {}

/** One line on stderr. attach.ts's messages name the resource ("cannot detach r0: ..."). */
function fail(verb: string, resource: string, err: unknown): void {
  const msg = ((err as Error).message ?? String(err)).split('\n')[0];
  const named = msg.includes(resource) ? msg : `${verb} ${resource}: ${msg}`;
  process.stderr.write(`urbd-failover: ${named}\n`);
  process.exitCode = err instanceof UsageError ? ATTACH_EXIT.USAGE : ATTACH_EXIT.FAILED;
}

function withAttachOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--method <method>', 'how to attach: the kernel nbd driver, or nbdfuse + loop')
        .choices(['auto', 'nbd-client', 'nbdfuse'])
        .default('auto'),
    )
    .option('--device <dev>', 'the /dev/nbdN for nbd-client (default: the first free one)')
    .option('--state-dir <dir>', 'where the attach is recorded (default: RUNDIR/failover/RES)')
    .option('--timeout <seconds>', 'per tool run and per wait', '30');
}

export function addAttachCommands(program: Command): void {
  withAttachOptions(
    program
      .command('attach')
      .argument('<res>')
      .description(
        "attach the resource's NBD export as a block device on this node (it must be Primary " +
          'here) and print the device; STATEDIR/device is a symlink to it',
      ),
  ).action(async (res: string, o: AttachOpts) => {
    try {
      const a = await attachExport(specFor(program, res, o));
      process.stdout.write(`${a.device}\n`);
    } catch (err) {
      fail('attach', res, err);
    }
  });

  withAttachOptions(
    program
      .command('detach')
      .argument('<res>')
      .description('detach the block device (refused while it is mounted or in use)'),
  ).action(async (res: string, o: AttachOpts) => {
    try {
      await detachExport(specFor(program, res, o));
    } catch (err) {
      fail('detach', res, err);
    }
  });

  withAttachOptions(
    program
      .command('attach-status')
      .argument('<res>')
      .option('--json', 'machine-readable output')
      .description(
        'is the export attached and healthy? exit 0 attached, 3 detached, 10 failed (and why)',
      ),
  ).action(async (res: string, o: AttachOpts) => {
    try {
      const spec = specFor(program, res, o);
      const s = await attachState(spec);
      if (o.json) {
        const link = s.state === 'attached' ? { link: deviceLinkPath(spec.stateDir) } : {};
        process.stdout.write(JSON.stringify({ resource: res, ...s, ...link }) + '\n');
      } else if (s.state === 'attached') {
        process.stdout.write(`${res} attached ${s.device} (${s.method})\n`);
      } else if (s.state === 'detached') {
        process.stdout.write(`${res} detached\n`);
      } else {
        process.stdout.write(`${res} failed: ${s.reason}\n`);
      }
      process.exitCode =
        s.state === 'attached'
          ? ATTACH_EXIT.OK
          : s.state === 'detached'
            ? ATTACH_EXIT.DETACHED
            : ATTACH_EXIT.FAILED;
    } catch (err) {
      fail('attach-status', res, err);
    }
  });
}
