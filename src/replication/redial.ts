/**
 * When to dial a peer again after a failed attempt. A refused connection (ECONNREFUSED:
 * the peer host answered, nothing listens yet) costs nothing and usually means the peer is
 * seconds from running `connect`, so the dialer comes back quickly, doubling the pause
 * each time up to connect-int. Anything else (no answer, a handshake that failed) waits
 * the full connect-int, as DRBD does.
 */
export const FIRST_REDIAL_MS = 100;

export function redialDelayMs(
  errno: string | undefined,
  refusedInARow: number,
  connectIntMs: number,
): number {
  if (errno !== 'ECONNREFUSED') return connectIntMs;
  // 2 ** 20 × 100 ms is far past any connect-int (at most 120 s); the cap keeps the shift sane.
  const backoff = FIRST_REDIAL_MS * 2 ** Math.min(refusedInARow, 20);
  return Math.min(backoff, connectIntMs);
}
