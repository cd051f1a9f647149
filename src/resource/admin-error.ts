// The errors an admin request ends with, shared by the resource and the modules it delegates to.
import type { Refusal } from './states.js';

/**
 * A failed admin request, with the exit code urbdadm ends with: 11 for a change the state
 * rules refused (drbdsetup's "State change failed", `code` is the SS_* name), 10 for a
 * command that could not be carried out (`code` is ERR_*). The message is one line.
 */
export class AdminError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: 10 | 11,
  ) {
    super(message);
    this.name = 'AdminError';
  }
}

/** A refusal from the rules in states.ts. */
export function refused(r: Refusal): AdminError {
  return new AdminError(r.code, r.message, 11);
}

/** A command that failed for a reason other than the state rules. */
export function commandError(code: string, message: string): AdminError {
  return new AdminError(code, message, 10);
}
