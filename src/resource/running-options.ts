/**
 * `urbdadm net-options RES --ping-int 3` and `disk-options RES --c-max-rate 200M`
 * (drbdsetup's net-options / disk-options): options changed on a running resource without
 * touching the file. The values are read and checked by the same specs as the resource
 * file (schema.ts), so `--ping-int 3` means what `ping-int 3;` means there.
 */
import { type OptionSpec, SECTIONS, type SettingKey } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';
import type { ResourceConfig } from '../config/types.js';

export type RuntimeSection = 'net' | 'disk';

export interface Setting {
  keyword: string;
  /** Empty for a bare flag (`--allow-two-primaries` means yes). */
  args: string[];
}

export class OptionArgError extends Error {
  override name = 'OptionArgError';
}

/**
 * Splits drbdsetup-style arguments: `--key value`, `--key=value`, or a bare `--key` (a
 * yes/no option set to yes). A word that belongs to no option is an error.
 */
export function parseSettingArgs(argv: readonly string[]): Setting[] {
  const out: Setting[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(word);
    if (!m) {
      throw new OptionArgError(
        `${JSON.stringify(word)} is not an option (write --name value, e.g. --ping-int 3)`,
      );
    }
    const keyword = m[1]!;
    if (m[2] !== undefined) {
      out.push({ keyword, args: [m[2]] });
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      out.push({ keyword, args: [argv[++i]!] });
    } else {
      out.push({ keyword, args: [] });
    }
  }
  if (out.length === 0) {
    throw new OptionArgError('no option given (e.g. --ping-int 3)');
  }
  return out;
}

/** The option specs one of the two verbs accepts, by keyword. */
export function runtimeSpecs(section: RuntimeSection): Map<string, OptionSpec> {
  const out = new Map<string, OptionSpec>();
  for (const [k, spec] of SECTIONS[section]) if (spec.kind === 'option') out.set(k, spec);
  return out;
}

/**
 * A copy of `config` with the settings applied; throws OptionArgError naming the option for
 * an unknown keyword, a wrong number of values or a value out of range. Nothing is applied
 * unless every setting is good.
 */
export function withSettings(
  config: ResourceConfig,
  section: RuntimeSection,
  settings: readonly Setting[],
): ResourceConfig {
  const next: ResourceConfig = {
    ...config,
    net: { ...config.net },
    disk: { ...config.disk },
  };
  const specs = runtimeSpecs(section);
  for (const s of settings) {
    const spec = specs.get(s.keyword);
    if (!spec) {
      const ignored = SECTIONS[section].get(s.keyword);
      throw new OptionArgError(
        ignored
          ? `--${s.keyword} is accepted in resource files for DRBD's sake but has no effect in urbd`
          : `unknown ${section} option --${s.keyword}${didYouMean(s.keyword, specs.keys())}`,
      );
    }
    if (s.args.length < spec.minArgs || s.args.length > spec.maxArgs) {
      throw new OptionArgError(`--${s.keyword} needs ${spec.expect}`);
    }
    let value: unknown;
    try {
      value = spec.parse(s.args);
    } catch (err) {
      throw new OptionArgError((err as Error).message);
    }
    checkHostName(config, spec.key, value);
    set(next, spec.key, value);
  }
  return next;
}

/** after-sb-0pri discard-node-NAME must name a host of the resource (as the loader checks). */
function checkHostName(config: ResourceConfig, key: SettingKey, value: unknown): void {
  if (key !== 'net.afterSb0pri') return;
  const m = /^discard-node-(.+)$/.exec(String(value));
  if (m && !config.hosts.some((h) => h.name === m[1])) {
    throw new OptionArgError(
      `after-sb-0pri ${String(value)}: ${config.name} has no host named ${m[1]}`,
    );
  }
}

function set(config: ResourceConfig, key: SettingKey, value: unknown): void {
  const [group, field] = key.split('.') as [string, string];
  const target =
    group === 'top'
      ? (config as unknown as Record<string, unknown>)
      : (config as unknown as Record<string, Record<string, unknown>>)[group]!;
  if (value === undefined) delete target[field];
  else target[field] = value;
}
