// Options written below resource level: per-host `disk { }` / `net { }` (inside `on HOST` or its
// `volume`, as every LINSTOR-generated file has) and per-connection `net { }` / `disk { }`.
// urbd applies options to the whole resource, so such a value is taken when it cannot mean
// anything else: it repeats the resource's own value (`protocol C;` in both places), or every
// section of its kind gives the same value. Anything else would apply a value where DRBD would
// not, so it is refused with both places named.
import { errorAt, posText, q } from './errors.js';
import type { Scope, Setting } from './sections.js';

export interface Overlay {
  scope: Scope;
  /** False when the key does not concern this section (a diskless host's disk options). */
  concerns?: (key: string) => boolean;
}

function same(a: Setting, b: Setting): boolean {
  return JSON.stringify(a.value) === JSON.stringify(b.value);
}

function shown(s: Setting): string {
  return s.args.map((a) => a.text).join(' ');
}

/**
 * Moves the values of `overlays` (all hosts, or all connections) into the resource's scope.
 * `inherited(key)` is what a section that does not give the key gets (from common, or DRBD's
 * default): a value equal to it means the same everywhere, as `protocol C;` in one connection.
 */
export function hoist(
  resource: Scope,
  overlays: readonly Overlay[],
  inherited: (key: string) => unknown,
): void {
  const keys = new Set(overlays.flatMap((o) => [...o.scope.settings.keys()]));
  for (const key of keys) {
    const own = resource.settings.get(key);
    const given = overlays.filter((o) => o.scope.settings.has(key));
    const first = given[0];
    const firstSetting = first.scope.settings.get(key) as Setting;
    for (const o of given) {
      const s = o.scope.settings.get(key) as Setting;
      const other = own ?? firstSetting;
      if (!same(s, other)) {
        const where = own !== undefined ? resource.label : first.scope.label;
        throw errorAt(
          s.args[0] ?? s.keyword,
          `${q(s.keyword.text)} is ${shown(s)} in ${o.scope.label} but ${shown(other)} in ${where} (at ${posText(other.keyword)}); urbd uses one value per resource`,
        );
      }
    }
    if (own !== undefined) continue;
    const missing = overlays.find((o) => !o.scope.settings.has(key) && (o.concerns?.(key) ?? true));
    const fallback = JSON.stringify(inherited(key));
    if (missing !== undefined && JSON.stringify(firstSetting.value) !== fallback) {
      throw errorAt(
        firstSetting.keyword,
        `${q(firstSetting.keyword.text)} is given in ${first.scope.label} but not in ${missing.scope.label}; urbd uses one value per resource: give it at resource level, or the same in each such section`,
      );
    }
    resource.settings.set(key, firstSetting);
  }
}
