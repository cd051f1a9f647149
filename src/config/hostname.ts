// How drbdadm matches host names: `on alice.example.com` is the node `alice` (uname -n may give
// either form), and case does not matter (`on Alice` with `host alice`).

/** The name in the form names are compared in: lower case, the first label of a dotted name. */
export function shortHostName(name: string): string {
  const lower = name.toLowerCase();
  const dot = lower.indexOf('.');
  // An IPv4-looking or leading-dot name is not a domain name; compare it whole.
  return dot <= 0 || /^[0-9.]+$/.test(lower) ? lower : lower.slice(0, dot);
}

export function sameHost(a: string, b: string): boolean {
  return shortHostName(a) === shortHostName(b);
}

/** The entry whose name is `name`: an exact match wins, else one that matches as drbdadm does. */
export function findByHostName<T extends { name: string }>(
  list: readonly T[],
  name: string,
): T | undefined {
  return list.find((h) => h.name === name) ?? list.find((h) => sameHost(h.name, name));
}
