/**
 * Generation identifiers ("UUIDs", drbd.md §3.4–§3.5) as pure functions on bigints.
 *
 * A UUID is an unsigned 64-bit value. Bit 0 is a flag ("Primary when this generation was
 * written"), not identity: every comparison masks it off (sameGeneration).
 */
import { randomBytes } from 'node:crypto';

import type { GenerationUuids, Superblock } from './superblock.js';
import { checkUuid, UUID_JUST_CREATED } from './superblock.js';

const MASK64 = 0xffff_ffff_ffff_ffffn;

/** A fresh random UUID. Never 0 or UUID_JUST_CREATED (4), with bit 0 either way. */
export function newUuid(): bigint {
  for (;;) {
    const u = randomBytes(8).readBigUInt64BE(0);
    const id = u & ~1n;
    if (id !== 0n && id !== UUID_JUST_CREATED) return u;
  }
}

/** 16 upper-case hex digits, as `drbdadm get-gi` prints them. */
export function formatUuid(u: bigint): string {
  checkUuid(u, 'UUID');
  return u.toString(16).toUpperCase().padStart(16, '0');
}

/** Parses 1–16 hex digits, with or without `0x`, either case. */
export function parseUuid(s: string): bigint {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,16})$/.exec(s.trim());
  if (m === null) throw new RangeError(`not a 64-bit hex UUID: '${s}'`);
  return BigInt(`0x${m[1]}`);
}

/** Same data generation: equal once bit 0 (the Primary flag) is masked off. */
export function sameGeneration(a: bigint, b: bigint): boolean {
  return (a & ~1n) === (b & ~1n);
}

/** `u` with bit 0 set when `primary`, cleared otherwise. */
export function withPrimaryBit(u: bigint, primary: boolean): bigint {
  return primary ? (u | 1n) & MASK64 : u & ~1n;
}

/**
 * New current UUID (`uuid_new_current`): B := C (keeping C's Primary bit), C := fresh with
 * bit 0 = `primary`. History is untouched. `fresh` is for tests; it gets the Primary bit too.
 */
export function rotateNewCurrent(
  uuids: GenerationUuids,
  primary: boolean,
  fresh: bigint = newUuid(),
): GenerationUuids {
  return {
    current: withPrimaryBit(fresh, primary),
    bitmap: uuids.current,
    history: [uuids.history[0], uuids.history[1]],
  };
}

/**
 * Clearing the bitmap UUID (`drbd_uuid_set_bm(…, 0)`): a non-zero B is pushed into history
 * (H2 := H1, H1 := B) and B := 0. A B that is already 0 pushes nothing, so history is not
 * filled with zeros.
 */
export function clearBitmapUuid(uuids: GenerationUuids): GenerationUuids {
  if (uuids.bitmap === 0n) return { ...uuids, history: [uuids.history[0], uuids.history[1]] };
  return { current: uuids.current, bitmap: 0n, history: [uuids.bitmap, uuids.history[0]] };
}

/**
 * The `new-current-uuid` verb (drbd.md §3.5): first B is pushed into history (as
 * clearBitmapUuid), then a new current UUID is generated. Without `clearBitmap` the old
 * current becomes the bitmap UUID (as rotateNewCurrent: changes from now on are tracked
 * against it); with `clearBitmap` (the bitmap itself is being cleared, e.g. to skip the initial
 * sync) the bitmap UUID stays 0.
 */
export function newCurrentCommand(
  uuids: GenerationUuids,
  primary: boolean,
  clearBitmap: boolean,
  fresh: bigint = newUuid(),
): GenerationUuids {
  const pushed = clearBitmapUuid(uuids);
  const next = rotateNewCurrent(pushed, primary, fresh);
  if (clearBitmap) next.bitmap = 0n;
  return next;
}

/**
 * Added to a bitmap UUID to derive the sync UUID of a resync (drbd.md §3.4). Deriving it
 * instead of drawing a fresh one keeps it recognisable: a node that sees `B = H1 + 2^48` on
 * its peer knows the peer started a resync whose sync UUID never arrived (rule 51/71).
 */
export const UUID_NEW_BM_OFFSET = 1n << 48n;

/** Bit 0 masked: 0 or just-created, i.e. no generation worth deriving from. */
function isNullGeneration(u: bigint): boolean {
  const id = u & ~1n;
  return id === 0n || id === UUID_JUST_CREATED;
}

/**
 * The SyncSource's rotation at resync start (`gen_and_send_sync_uuid`, drbd.md §3.5). The
 * sync UUID S is derived from B (B + 2^48, wrapping at 64 bits, keeping B's bit 0) unless B
 * holds no generation (0 or just-created, bit 0 masked): then `fresh` is used as is. B goes
 * into history and S takes its place; the peer adopts S as its current UUID (startSyncTarget),
 * so until the resync finishes this side's bitmap tracks exactly the target's generation.
 *
 * A B of 0 is not pushed (as clearBitmapUuid: history keeps real generations, not zeros);
 * DRBD's `drbd_uuid_set` does the same, and finishSyncTarget relies on both sides agreeing.
 */
export function startSyncSource(
  uuids: GenerationUuids,
  fresh: bigint = newUuid(),
): { uuids: GenerationUuids; syncUuid: bigint } {
  const b = uuids.bitmap;
  const syncUuid = isNullGeneration(b) ? fresh : (b + UUID_NEW_BM_OFFSET) & MASK64;
  const history: [bigint, bigint] =
    b === 0n ? [uuids.history[0], uuids.history[1]] : [b, uuids.history[0]];
  return { uuids: { current: uuids.current, bitmap: syncUuid, history }, syncUuid };
}

/**
 * The SyncTarget's rotation on receiving the sync UUID (drbd.md §3.5): C := S with bit 0 per
 * this node's role, B := 0, history untouched. The target's old current is dropped, not
 * pushed: it was a generation the source is about to overwrite, and the source's history
 * (which the target adopts at the end) is the one that describes the data.
 */
export function startSyncTarget(
  uuids: GenerationUuids,
  syncUuid: bigint,
  primary: boolean,
): GenerationUuids {
  return {
    current: withPrimaryBit(syncUuid, primary),
    bitmap: 0n,
    history: [uuids.history[0], uuids.history[1]],
  };
}

/** The SyncSource at resync end: S leaves the bitmap slot for history (clearBitmapUuid). */
export function finishSyncSource(uuids: GenerationUuids): GenerationUuids {
  return clearBitmapUuid(uuids);
}

/**
 * The SyncTarget at resync end: it adopts `sourceFinal`, the source's tuple after
 * finishSyncSource, with bit 0 of the current UUID per this node's own role and B = 0.
 *
 * Why this is DRBD's result: DRBD's target rebuilds it from the source's tuple learned at the
 * handshake, `Cs:Bs:H1:H2`. It takes Bs, H1, H2, sets B := its own current S (pushing Bs:
 * `S:Bs:H1`, or no push if Bs was 0), adopts Cs, then clears B (`Cs:0:S:Bs`, or `Cs:0:S:H1`).
 * The source went `Cs:Bs:H1:H2` → startSyncSource `Cs:S:Bs:H1` (or `Cs:S:H1:H2`) →
 * finishSyncSource `Cs:0:S:Bs` (or `Cs:0:S:H1`): the same tuple, except that DRBD's target
 * files S into history with its own role's bit 0 where the source kept B's; nothing reads bit
 * 0 of a history UUID. Taking the source's final tuple directly gives that result without
 * the target replaying the source's steps, and leaves both sides' tuples identical.
 */
export function finishSyncTarget(sourceFinal: GenerationUuids, primary: boolean): GenerationUuids {
  return {
    current: withPrimaryBit(sourceFinal.current, primary),
    bitmap: 0n,
    history: [sourceFinal.history[0], sourceFinal.history[1]],
  };
}

/**
 * Flag digits of get-gi, in order. The first seven are DRBD 8.4's (drbdmeta `show-gi`);
 * al-clean and al-disabled are urbd's additions at the end.
 */
const GI_FLAGS: Array<{ key: keyof Superblock['flags']; text: string }> = [
  { key: 'consistent', text: 'Data consistency flag' },
  { key: 'wasUpToDate', text: 'Data was/is currently up-to-date' },
  { key: 'primaryIndicator', text: 'Node was/is currently primary' },
  { key: 'connectedIndicator', text: 'Node was/is currently connected' },
  { key: 'fullSync', text: 'Node was in the progress of setting all bits in the bitmap' },
  { key: 'peerOutdated', text: "The peer's disk was out-dated or inconsistent" },
  {
    key: 'crashedPrimary',
    text: 'This node was a crashed primary, and has not seen its peer since',
  },
  { key: 'alClean', text: 'The activity log is clean (applied, or an orderly stop)' },
  { key: 'alDisabled', text: 'al-updates no was in effect (a crash as primary needs a full sync)' },
];

/**
 * `get-gi`: `CURRENT:BITMAP:HISTORY1:HISTORY2:c:u:p:n:f:o:x:a:d` — four UUIDs of 16 hex
 * digits, then one digit (0/1) per flag: consistent, was-up-to-date, primary-indicator,
 * connected-indicator, full-sync, peer-outdated, crashed-primary (DRBD 8.4's seven, in its
 * order), al-clean, al-disabled. No trailing newline.
 */
export function formatGi(sb: Pick<Superblock, 'uuids' | 'flags'>): string {
  const u = sb.uuids;
  const uuids = [u.current, u.bitmap, u.history[0], u.history[1]].map(formatUuid);
  const flags = GI_FLAGS.map((f) => (sb.flags[f.key] ? '1' : '0'));
  return [...uuids, ...flags].join(':');
}

/**
 * `show-gi`: the get-gi line with each field labelled, like `drbdadm show-gi`, then the
 * clean/unclean marker and the activity-log size. Ends with a newline. `attached`: the
 * superblock came from the daemon, which keeps it unclean on purpose while the disk is
 * attached; that is not a store that needs apply-al.
 */
export function showGi(
  sb: Pick<Superblock, 'uuids' | 'flags' | 'clean' | 'alExtents'>,
  opts: { attached?: boolean } = {},
): string {
  const gi = formatGi(sb);
  const flagsCol = 4 * 17; // column of the first flag digit
  // One arrow per UUID, over its middle digit, like drbdadm's picture.
  const mids = [0, 1, 2, 3].map((i) => i * 17 + 8);
  const uuidLabels = [
    'Current data generation UUID',
    "Bitmap's base data generation UUID",
    'younger history UUID',
    'older history UUID',
  ];
  const out: string[] = uuidLabels.map((label, k) => {
    let line = '';
    for (let j = 0; j < k; j++) line = line.padEnd(mids[j]) + '|';
    return line.padEnd(mids[k]) + `+--<  ${label}  >-`;
  });
  out.push(mids.reduce((line, col) => line.padEnd(col) + 'V', ''));
  out.push(gi, ' '.repeat(flagsCol) + GI_FLAGS.map(() => '^').join(' '));
  const width = flagsCol + 2 * GI_FLAGS.length - 1;
  for (let i = 0; i < GI_FLAGS.length; i++) {
    const col = flagsCol + 2 * i;
    const label = `-<  ${GI_FLAGS[i].text}  >--+`;
    const tail = GI_FLAGS.slice(i + 1)
      .map(() => ' |')
      .join('');
    const pad = Math.max(0, col - label.length + 1);
    out.push((' '.repeat(pad) + label + tail).padEnd(width));
  }
  out.push('');
  const state = opts.attached
    ? 'in use (attached to the running urbd)'
    : sb.clean
      ? 'clean'
      : 'unclean (needs apply-al)';
  out.push(`meta-data: ${state}`);
  out.push(`al-extents: ${sb.alExtents}`);
  return out.map((l) => l.trimEnd()).join('\n') + '\n';
}
