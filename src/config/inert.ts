// Which typed options urbd acts on and which handlers it calls, and for the others why not.
// urbd still reads and checks them (a bad value is an error, and a later release may act on
// them), but `dump` must not show them as if they were in force: a DRBD admin reads `dump` as
// "what the daemon does".
import type { HandlerName, SettingKey } from './schema.js';

/** null: urbd acts on it. A string: the reason it has no effect, as `dump` prints it. */
export const INERT: Readonly<Record<SettingKey, string | null>> = {
  'top.protocol': null,
  'net.timeoutMs': null,
  'net.connectIntMs': null,
  'net.pingIntMs': null,
  'net.pingTimeoutMs': null,
  'net.koCount': null,
  'net.maxBuffers': 'urbd allocates receive buffers as writes arrive',
  'net.maxEpochSize': null,
  'net.allowTwoPrimaries': null,
  'net.afterSb0pri': null,
  'net.afterSb1pri': null,
  'net.afterSb2pri': null,
  'net.alwaysAsbp': null,
  'net.rrConflict': null,
  'net.cramHmacAlg': null,
  'net.sharedSecret': null,
  'net.dataIntegrityAlg': 'replicated data is protected by TCP checksums only',
  'net.csumsAlg': null,
  'net.csumsAfterCrashOnly': null,
  'net.verifyAlg': null,
  'net.useRle': 'bitmaps are always sent run-length encoded',
  'net.onCongestion': 'writes always wait for a congested link, as with on-congestion block',
  'net.congestionFillSectors':
    'writes always wait for a congested link, as with on-congestion block',
  'net.congestionExtents': 'writes always wait for a congested link, as with on-congestion block',
  'net.socketCheckTimeoutMs': 'a dead link is found by ping-int and ping-timeout',
  'net.fencing': null,
  'net.discardMyData': null,
  'disk.onIoError': null,
  'disk.alExtents': null,
  'disk.alUpdates': null,
  'disk.resyncRateKiB': null,
  'disk.cPlanAheadMs': null,
  'disk.cFillTargetSectors': null,
  'disk.cDelayTargetMs': 'the resync controller follows c-fill-target and the rates only',
  'disk.cMaxRateKiB': null,
  'disk.cMinRateKiB': null,
  'disk.resyncAfter': 'resyncs of different resources run side by side',
  'disk.sizeBytes': null,
  'startup.wfcTimeoutS':
    'urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout',
  'startup.degrWfcTimeoutS':
    'urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout',
  'startup.outdatedWfcTimeoutS':
    'urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout',
  'startup.waitAfterSb':
    'urbdadm up does not wait for the peer; use urbdadm wait-connect --timeout',
  'startup.becomePrimaryOn':
    'nothing promotes at start-up; promote with urbdadm primary or urbd-failover',
  'options.onNoDataAccessible': null,
  'options.autoPromote':
    'a Secondary refuses NBD clients instead of promoting itself; promote with urbdadm primary',
  'options.autoPromoteTimeoutMs':
    'a Secondary refuses NBD clients instead of promoting itself; promote with urbdadm primary',
  'options.quorum': null,
  'options.quorumMinimumRedundancy': null,
  'options.onNoQuorum': null,
  'options.onSuspendedPrimaryOutdated':
    'a suspended Primary that meets newer data stays StandAlone with its reason; demote it with urbdadm secondary --force',
  'options.handlerTimeoutMs': null,
};

/** null: urbd calls the handler. A string: why it never does, as `dump` prints it. */
export const HANDLER_INERT: Readonly<Record<HandlerName, string | null>> = {
  'fence-peer': null,
  'unfence-peer': null,
  'split-brain': null,
  'initial-split-brain': null,
  'pri-lost-after-sb': null,
  'before-resync-target': null,
  'after-resync-target': null,
  'local-io-error': null,
  'quorum-lost': null,
  'out-of-sync': null,
  disconnected: null,
  'before-resync-source': 'not called: urbd calls before-resync-target on the target',
  'pri-on-incon-degr':
    'urbd refuses to promote an Inconsistent node without UpToDate data reachable instead of calling it',
  'pri-lost': 'urbd calls pri-lost-after-sb after a split brain; pri-lost is not called',
};

export function inertReason(key: SettingKey): string | undefined {
  return INERT[key] ?? undefined;
}

/** Why urbd never calls the handler `name`, or undefined when it does. */
export function handlerInertReason(name: string): string | undefined {
  return (HANDLER_INERT as Readonly<Record<string, string | null>>)[name] ?? undefined;
}
