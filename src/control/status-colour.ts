import type { ConnectionState, DiskState, ReplicationState } from '../resource/states.js';

/**
 * Colour in `urbdadm status`, for an admin scanning a terminal: green for the states of a
 * healthy pair, yellow for what is on its way somewhere (connecting, resyncing), red for
 * what stays wrong until someone acts. The tables are typed over every state, so a new
 * state word does not compile until it has a tone.
 */
export type Tone = 'good' | 'busy' | 'bad';

export const DISK_TONE: Record<DiskState, Tone> = {
  UpToDate: 'good',
  Consistent: 'busy',
  Attaching: 'busy',
  Negotiating: 'busy',
  DUnknown: 'busy',
  // A diskless client or witness is Diskless by design; elsewhere it was detached.
  Diskless: 'busy',
  Inconsistent: 'bad',
  Outdated: 'bad',
  Failed: 'bad',
};

export const CONNECTION_TONE: Record<ConnectionState, Tone> = {
  Connected: 'good',
  // The link is being set up again on its own.
  Connecting: 'busy',
  Unconnected: 'busy',
  Disconnecting: 'busy',
  Timeout: 'busy',
  BrokenPipe: 'busy',
  NetworkFailure: 'busy',
  ProtocolError: 'busy',
  TearDown: 'busy',
  // Nothing happens until `urbdadm connect`.
  StandAlone: 'bad',
};

export const REPLICATION_TONE: Record<ReplicationState, Tone> = {
  Established: 'good',
  StartingSyncS: 'busy',
  StartingSyncT: 'busy',
  WFBitMapS: 'busy',
  WFBitMapT: 'busy',
  WFSyncUUID: 'busy',
  SyncSource: 'busy',
  SyncTarget: 'busy',
  PausedSyncS: 'busy',
  PausedSyncT: 'busy',
  VerifyS: 'busy',
  VerifyT: 'busy',
  // Connected but not replicating (a handshake refused, or not connected at all).
  Off: 'bad',
};

/** The tone of `key:value` in the status text, or undefined to leave it plain. */
export function toneOf(key: string, value: string): Tone | undefined {
  switch (key) {
    case 'disk':
    case 'peer-disk':
      return DISK_TONE[value as DiskState];
    case 'connection':
      return CONNECTION_TONE[value as ConnectionState];
    case 'replication':
      return REPLICATION_TONE[value as ReplicationState];
    case 'suspended':
      return value === 'yes' ? 'bad' : undefined;
    case 'serving':
      return undefined;
    case 'last-error':
      return 'bad';
    default:
      return undefined;
  }
}

/**
 * ANSI SGR codes, set and reset. Our own, so that wantColour() alone decides: Node's
 * util.styleText consults the environment too, differently from one 20.x release to the next.
 */
const SGR = { bold: [1, 22], red: [31, 39], green: [32, 39], yellow: [33, 39] } as const;
type Style = keyof typeof SGR;

function paint(styles: readonly Style[], text: string): string {
  const on = styles.map((st) => `\x1b[${SGR[st][0]}m`).join('');
  const off = [...styles]
    .reverse()
    .map((st) => `\x1b[${SGR[st][1]}m`)
    .join('');
  return on + text + off;
}

const STYLE: Record<Tone, readonly Style[]> = {
  good: ['green'],
  busy: ['yellow'],
  bad: ['bold', 'red'],
};

/** Colours the `key:value` words of rendered status text; `role:Primary` is set in bold. */
export function colourStatus(text: string): string {
  return text.replace(
    /\b(disk|peer-disk|connection|replication|suspended|last-error|role):("(?:[^"\\\n]|\\.)*"|\S+)/g,
    (whole, key: string, value: string) => {
      if (key === 'role') return value === 'Primary' ? paint(['bold'], whole) : whole;
      const tone = toneOf(key, value);
      return tone === undefined ? whole : `${key}:${paint(STYLE[tone], value)}`;
    },
  );
}

/**
 * Colour only for a person at a terminal: never into a pipe or file, never on TERM=dumb,
 * and never when NO_COLOR is set to anything but the empty string (https://no-color.org).
 */
export function wantColour(isTTY: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  if (isTTY !== true || env.TERM === 'dumb') return false;
  const no = env.NO_COLOR;
  return no === undefined || no === '';
}
