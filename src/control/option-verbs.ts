/**
 * The daemon's side of the verbs that change or show a running resource's options:
 * net-options and disk-options (drbdsetup's, the file untouched) and show (drbdsetup show:
 * the running configuration). `adjust` is in daemon.ts, which owns bringing resources up.
 */
import type { ResourceConfig } from '../config/index.js';
import { reconfigure } from '../resource/reconfigure.js';
import { commandError, type Resource } from '../resource/resource.js';
import {
  OptionArgError,
  type RuntimeSection,
  type Setting,
  withSettings,
} from '../resource/running-options.js';

export const OPTION_VERBS: ReadonlySet<string> = new Set(['net-options', 'disk-options', 'show']);

export async function optionVerb(
  cmd: string,
  r: Resource,
  args: Record<string, unknown>,
): Promise<string[] | ResourceConfig> {
  if (cmd === 'show') return r.config;
  const section: RuntimeSection = cmd === 'net-options' ? 'net' : 'disk';
  const settings = settingsArg(args.settings);
  let config: ResourceConfig;
  try {
    config = withSettings(r.config, section, settings);
  } catch (err) {
    if (err instanceof OptionArgError) throw commandError('ERR_OPTION', err.message);
    throw err;
  }
  return reconfigure(r, { config, host: r.host }, { dryRun: false, adjust: false });
}

function settingsArg(v: unknown): Setting[] {
  const ok =
    Array.isArray(v) &&
    v.length > 0 &&
    v.every(
      (s: unknown) =>
        typeof s === 'object' &&
        s !== null &&
        typeof (s as Setting).keyword === 'string' &&
        Array.isArray((s as Setting).args) &&
        (s as Setting).args.every((a) => typeof a === 'string'),
    );
  if (!ok) throw commandError('EPROTO', '"settings" must be a list of {keyword, args}');
  return v as Setting[];
}
