/** Errno names meaning "this backing cannot do that operation", as opposed to a real failure. */
const UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOTTY', 'ENOSYS']);

export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

export function isUnsupported(err: unknown): boolean {
  const code = errnoCode(err);
  return code !== undefined && UNSUPPORTED.has(code);
}
