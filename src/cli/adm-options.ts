/**
 * urbdadm's verbs for a running resource's options: adjust (apply the edited resource
 * file, as drbdadm adjust), net-options / disk-options (drbdsetup's: change running values,
 * the file untouched) and show (drbdsetup show: the running values, in resource-file
 * syntax). The daemon decides what may change (src/resource/option-changes.ts).
 */
import type { Command } from 'commander';
import { dumpConfig, type ResourceConfig } from '../config/index.js';
import { toJsonLine } from '../control/protocol.js';
import { OptionArgError, parseSettingArgs, runtimeSpecs } from '../resource/running-options.js';
import { type AdmContext, AdmError, Exit } from './adm-context.js';

type VerbFn = (
  ctx: AdmContext,
  name: string,
  opts: Record<string, unknown>,
) => Promise<string | void>;
export type PerResource = (
  verb: string,
  fn: VerbFn,
) => (names: string[], opts: Record<string, unknown>) => Promise<void>;

export function addOptionVerbs(program: Command, perResource: PerResource): void {
  program
    .command('adjust')
    .argument('<res...>')
    .option('-d, --dry-run', 'print what would change, change nothing')
    .description(
      'apply the resource file to a running resource (options, peer addresses; reconnect as needed); up a resource that is down',
    )
    .action(
      perResource('adjust', async (ctx, name, o) => {
        ctx.resource(name); // a broken file or unknown resource fails here, with file:line
        const dryRun = o.dryRun === true;
        const lines = (await (
          await ctx.requireDaemon()
        ).request('adjust', name, {
          dryRun,
          // The daemon reads the file this command names, as for up (drbdadm passes its own).
          config: ctx.configFile,
        })) as string[];
        if (dryRun) return lines.length > 0 ? lines.join('\n') : `${name}: nothing to change`;
      }),
    );

  for (const [verb, what] of [
    ['net-options', 'network'],
    ['disk-options', 'disk'],
  ] as const) {
    program
      .command(verb)
      .argument('<res-and-options...>', 'RES --option value ...')
      .allowUnknownOption()
      .helpOption(false)
      .description(
        `change ${what} options of a running resource, e.g. ${verb === 'net-options' ? '--ping-int 3' : '--c-max-rate 200M'} (the file is untouched; adjust restores it)`,
      )
      .addHelpText(
        'after',
        `\n${what} options (as in the resource file's ${verb.split('-')[0]} section):\n` +
          wrap(
            [...runtimeSpecs(verb === 'net-options' ? 'net' : 'disk').keys()].map((k) => `--${k}`),
          ),
      )
      .action(async (words: string[], _o: unknown, cmd: Command) => {
        if (words.includes('--help') || words.includes('-h')) {
          cmd.outputHelp();
          return;
        }
        let parsed: ReturnType<typeof splitResource>;
        try {
          parsed = splitResource(words);
        } catch (err) {
          process.stderr.write(`urbdadm: ${verb}: ${(err as Error).message}\n`);
          process.exitCode = err instanceof AdmError ? err.exitCode : Exit.FAILED;
          return;
        }
        const { res, settings } = parsed;
        await perResource(verb, async (ctx, name) => {
          await (await ctx.requireDaemon()).request(verb, name, { settings });
        })([res], {});
      });
  }

  program
    .command('show')
    .argument('<res...>')
    .option('--json', 'machine-readable output')
    .description('print the running configuration (after adjust, net-options, disk-options)')
    .action(
      perResource('show', async (ctx, name, o) => {
        const cfg = (await (await ctx.requireDaemon()).request('show', name)) as ResourceConfig;
        if (o.json === true) return toJsonLine(cfg);
        return dumpConfig({
          file: `running configuration of ${name} on ${ctx.node}`,
          resources: [cfg],
          ignored: [],
        });
      }),
    );
}

/** Words as indented lines of at most 80 columns, for help text. */
function wrap(words: string[]): string {
  const lines: string[] = [];
  let line = ' ';
  for (const w of words) {
    if (line.length + w.length + 1 > 80) {
      lines.push(line);
      line = ' ';
    }
    line += ` ${w}`;
  }
  return [...lines, line].join('\n');
}

/**
 * The resource is the first word, or (drbdadm's order, `net-options --ping-int=3 r0`) the
 * last; everything else are the options.
 */
function splitResource(words: string[]): {
  res: string;
  settings: ReturnType<typeof parseSettingArgs>;
} {
  if (words.length < 2) {
    throw new AdmError('give a resource and at least one option, e.g. r0 --ping-int 3', Exit.USAGE);
  }
  const first = !words[0]!.startsWith('--');
  const res = first ? words[0]! : words[words.length - 1]!;
  const rest = first ? words.slice(1) : words.slice(0, -1);
  try {
    return { res, settings: parseSettingArgs(rest) };
  } catch (err) {
    if (err instanceof OptionArgError) throw new AdmError(err.message, Exit.USAGE);
    throw err;
  }
}
