#!/usr/bin/env node
/**
 * urbd-failover. Minimal for now: the globals and the attach verbs
 * (src/cli/failover-attach-verbs.ts); the supervisor's own commands join them.
 */
import { Command, CommanderError } from 'commander';
import { addAttachCommands } from './failover-attach-verbs.js';

const program = new Command('urbd-failover')
  .description('fail urbd resources and the services on them over between nodes')
  .version('0.1.0')
  .option('--node <name>', 'this node (default: URBD_NODE or the host name)')
  .option('--config <file>', 'configuration file (default: URBD_CONFIG or /etc/urbd/urbd.conf)')
  .option('--run-dir <dir>', "the daemon's run directory (default: URBD_RUN_DIR or /run/urbd)")
  .showHelpAfterError()
  .exitOverride();

addAttachCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 1;
  } else {
    process.stderr.write(`urbd-failover: ${(err as Error).message}\n`);
    process.exitCode = 10;
  }
}
