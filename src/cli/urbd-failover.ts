#!/usr/bin/env node
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { configPath } from '../config/index.js';
import { ControlClient, DaemonUnreachable, RemoteError } from '../control/client.js';
import { DEFAULT_RUN_DIR, toJsonLine } from '../control/protocol.js';
import type { ResourceSupervisorStatus, Transition } from '../failover/resource-supervisor.js';
import { failoverSocketPath, Supervisor, type SupervisorStatus } from '../failover/supervisor.js';
import { addAttachCommands } from './failover-attach-verbs.js';
import { createLogger } from './log.js';

/**
 * urbd-failover: the supervisor (`run`) that brings a resource's chain up on the node that
 * may be Primary, and the verbs that talk to it (status, switchover, maintenance, clear).
 * Same --node, --config, --run-dir and URBD_* variables as urbdadm.
 * Exit codes: 0 done, 1 usage, 3 (run) a stop step failed and on-stop-failure is exit,
 * 10 failed, 11 refused, 20 no supervisor running.
 */
const program = new Command('urbd-failover')
  .description(
    "urbd's failover supervisor: promote, attach, mount, start services on the node that may be Primary; the reverse on stop",
  )
  .version('0.1.0')
  .option('--node <name>', 'this node (default: URBD_NODE or the host name)')
  .option('--config <file>', 'configuration file (default: URBD_CONFIG or /etc/urbd/urbd.conf)')
  .option('--run-dir <dir>', "urbd's run directory (default: URBD_RUN_DIR or /run/urbd)")
  .showHelpAfterError()
  .exitOverride();

interface Globals {
  node: string;
  configFile: string;
  runDir: string;
}

function globals(): Globals {
  const o = program.opts<{ node?: string; config?: string; runDir?: string }>();
  return {
    node: o.node ?? process.env.URBD_NODE ?? os.hostname(),
    configFile: path.resolve(configPath(o.config)),
    runDir: path.resolve(o.runDir ?? process.env.URBD_RUN_DIR ?? DEFAULT_RUN_DIR),
  };
}

async function ask(
  cmd: string,
  resource?: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const g = globals();
  let c: ControlClient;
  try {
    c = await ControlClient.connect(g.runDir, failoverSocketPath(g.runDir));
  } catch (err) {
    if (err instanceof DaemonUnreachable) {
      throw Object.assign(
        new Error(`no urbd-failover runs for ${g.runDir} (${failoverSocketPath(g.runDir)})`),
        {
          exitCode: 20,
        },
      );
    }
    throw err;
  }
  try {
    return await c.request(cmd, resource, args);
  } finally {
    c.close();
  }
}

function transitionText(t: Transition, label: string): string {
  const phases = t.phases.map((p) => `${p.phase} ${p.ms} ms${p.ok ? '' : ` FAILED (${p.error})`}`);
  return `  ${label}: ${t.kind} ${t.ok ? 'ok' : 'failed'} in ${t.totalMs} ms at ${t.startedAt} (${t.why})\n    ${phases.join(', ')}`;
}

export function renderFailoverStatus(s: SupervisorStatus): string {
  const lines = [`urbd-failover on ${s.node} (pid ${s.pid})`];
  if (s.configError) lines.push(`  configuration error: ${s.configError}`);
  for (const r of s.resources as ResourceSupervisorStatus[]) {
    lines.push(
      `${r.resource} role:${r.role} phase:${r.phase}${r.maintenance ? ' maintenance' : ''} auto-promote:${r.auto ? 'yes' : 'no'}`,
    );
    lines.push(`  decision: ${r.decision}`);
    if (!r.auto) lines.push(`  ${r.autoWhy}`);
    if (r.blockedReason) lines.push(`  blocked: ${r.blockedReason}`);
    if (r.bannedForMs > 0)
      lines.push(`  banned here for ${Math.ceil(r.bannedForMs / 1000)} s more`);
    if (r.failures > 0) lines.push(`  failures within failure-timeout: ${r.failures}`);
    lines.push(`  steps: ${r.steps.map((x) => `${x.name}:${x.health ?? '?'}`).join(', ')}`);
    if (r.lastFailover) lines.push(transitionText(r.lastFailover, 'last takeover'));
    // After the socket's JSON the two are never the same object: compare what they are.
    const same = (a?: Transition, b?: Transition) =>
      a?.startedAt === b?.startedAt && a?.kind === b?.kind;
    if (r.lastTransition && !same(r.lastTransition, r.lastFailover)) {
      lines.push(transitionText(r.lastTransition, 'last transition'));
    }
  }
  for (const u of s.unmanaged) lines.push(`${u.resource}: not supervised (${u.why})`);
  return lines.join('\n');
}

program
  .command('run')
  .description('run the supervisor (under systemd: urbd-failover.service)')
  .action(async () => {
    const g = globals();
    const log = createLogger('urbd-failover');
    let sup: Supervisor | undefined;
    const exit = (code: number, why: string): void => {
      log.fatal({ exitCode: code }, `exiting to escalate: ${why}`);
      process.exit(code);
    };
    sup = new Supervisor({ ...g, log, exit });
    try {
      await sup.start();
    } catch (err) {
      log.fatal(`cannot start: ${(err as Error).message}`);
      process.exit(10);
    }
    log.info({ node: g.node, runDir: g.runDir, config: g.configFile }, 'urbd-failover running');
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${sig}: stopping (services stay where they run)`);
      void sup!.stop().then(() => process.exit(0));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reading the configuration again');
      void sup!.reload();
    });
    await new Promise(() => undefined);
    sup = undefined;
  });

program
  .command('status')
  .option('--json', 'the supervisor state as JSON')
  .description(
    "the supervisor's state per resource and the last takeover's phases with their durations",
  )
  .action(async (o: { json?: boolean }) => {
    const s = (await ask('status')) as SupervisorStatus;
    process.stdout.write(o.json ? toJsonLine(s) : renderFailoverStatus(s) + '\n');
  });

program
  .command('switchover')
  .argument('<res>')
  .option('--to <node>', 'the node that should take it (checked: connected and UpToDate)')
  .description('a planned move: stop the chain here, demote, and let the other node take over')
  .action(async (res: string, o: { to?: string }) => {
    const t = (await ask('switchover', res, o.to ? { to: o.to } : {})) as Transition;
    process.stdout.write(
      `${res}: stopped here in ${t.totalMs} ms; ${o.to ?? 'the other node'} takes over\n`,
    );
  });

program
  .command('maintenance')
  .argument('<on|off>')
  .argument('[res]', 'one resource (default: all)')
  .description('stop acting (nothing is started, stopped or monitored) or act again')
  .action(async (mode: string, res: string | undefined) => {
    if (mode !== 'on' && mode !== 'off')
      throw Object.assign(new Error('maintenance takes on or off'), { exitCode: 1 });
    await ask('maintenance', res ?? 'all', { on: mode === 'on' });
  });

program
  .command('clear')
  .argument('<res>')
  .description('forget failures, a ban, or a blocked state once the cause is fixed')
  .action(async (res: string) => {
    await ask('clear', res);
  });

addAttachCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 1);
  const e = err as { exitCode?: number; message: string };
  process.stderr.write(`urbd-failover: ${e.message}\n`);
  process.exit(err instanceof RemoteError ? (e.exitCode ?? 10) : (e.exitCode ?? 10));
}
