#!/usr/bin/env node
import { Command } from 'commander';

// The admin verbs (create-md, up, primary, connect, status ...) arrive with the daemon; this
// entry point exists so the command name and its help are already where users will look.
const program = new Command('urbdadm')
  .description('administer urbd resources (drbdadm-style verbs)')
  .version('0.1.0')
  .showHelpAfterError();

await program.parseAsync(process.argv);
