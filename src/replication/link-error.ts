/** Why a peer link (or an attempt to set one up) ended; DRBD's names where it has one. */
export type CloseKind =
  | 'NetworkFailure'
  | 'Timeout'
  | 'ProtocolError'
  | 'BrokenPipe'
  | 'TearDown'
  | 'AuthFailure'
  | 'Goodbye'
  /** The peer (or we) refused the connection for a reason a retry will not fix. */
  | 'Refused';

/** A link that could not be set up: `message` is one line saying why. */
export class LinkError extends Error {
  constructor(
    message: string,
    readonly kind: CloseKind,
    /** The socket error's code (ECONNREFUSED, ...) when the TCP connect itself failed. */
    readonly errno?: string,
  ) {
    super(message);
    this.name = 'LinkError';
  }
}
