/**
 * What a failing backing disk does to the resource (drbd.md §1.3 `on-io-error`, §2.5 Failed,
 * §5.1), as pure rules. DRBD 8.4 treats `call-local-io-error` as `detach` plus the handler:
 * both take the disk to Failed and then Diskless; only `pass_on` keeps the disk and hands
 * the error up.
 */
import type { OnIoError } from '../config/types.js';

export interface IoErrorReaction {
  /** The disk goes Failed at once (reads go to the peer) and is then detached. */
  detach: boolean;
  /** The local-io-error handler is run. */
  callHandler: boolean;
}

export function ioErrorReaction(policy: OnIoError): IoErrorReaction {
  switch (policy) {
    case 'detach':
      return { detach: true, callHandler: false };
    case 'call-local-io-error':
      return { detach: true, callHandler: true };
    case 'pass_on':
      return { detach: false, callHandler: false };
  }
}

/**
 * A change whose local copy failed (drbd.md §5.1: it succeeds if either copy did). With the
 * disk being detached nothing will read the stale local block again, so the peer's copy
 * alone acknowledges it ('ok'); without the peer's copy it waits for, or fails for want of,
 * an UpToDate peer ('retry'). A disk kept (pass_on) would be read again: the change fails,
 * its blocks marked out of sync ('fail').
 */
export function failedLocalCopyOutcome(s: {
  detaching: boolean;
  peerHas: boolean;
}): 'ok' | 'retry' | 'fail' {
  if (!s.detaching) return 'fail';
  return s.peerHas ? 'ok' : 'retry';
}

/**
 * After a detach the held requests are let go once the Diskless node can serve them through
 * its peer: the data peer is back with UpToDate data, or it cannot come back (nothing was
 * connected, or the link is given up), in which case the requests get the refusal that
 * applies.
 */
export function detachMayRelease(s: {
  role: 'Primary' | 'Secondary';
  peerWasConnected: boolean;
  peerReadable: boolean;
  peerStandAlone: boolean;
}): boolean {
  if (s.role !== 'Primary' || !s.peerWasConnected) return true;
  return s.peerReadable || s.peerStandAlone;
}

/**
 * What a disk being detached must say about itself for its next attach. A disk detached
 * after an I/O error holds blocks known bad: it comes back Inconsistent (DRBD's Failed
 * clears the consistent flag), a SyncTarget, never a source. A Primary's disk misses every
 * write its peer takes while this node is Diskless, and nothing records which (the peer
 * keeps no bitmap for a diskless Primary): it comes back Inconsistent with every block out
 * of sync, so the next attach resyncs all of it from the peer. A Secondary's disk detached
 * by command is as good as it was: the Primary's bitmap tracks what it misses.
 */
export function detachedDiskMarks(s: { role: 'Primary' | 'Secondary'; afterError: boolean }): {
  failed: boolean;
  allOutOfSync: boolean;
} {
  const primary = s.role === 'Primary';
  return { failed: s.afterError || primary, allOutOfSync: primary };
}
