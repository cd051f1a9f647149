/**
 * How much resync data the SyncTarget may request per 100 ms tick (drbd.md §6.4).
 *
 * DRBD's dynamic controller plans requests a tick at a time from what came back, aiming at
 * a fill level; requests only leave at ticks, so on a fast link it ramps up over tens of
 * seconds from a 50 KiB fill target. urbd sends requests whenever replies free room in the
 * window, so the controller only has to say how fast it may go:
 * - fixed (`c-plan-ahead 0`): `resync-rate`;
 * - dynamic (the default): `c-max-rate` — as fast as link and disks allow, up to the cap —
 *   except while application I/O is running, when it yields down to `c-min-rate` so the
 *   application keeps its latency. The resync never drops below `c-min-rate`.
 * The window (bytes in flight at once) is `c-fill-target`, but at least 16 MiB: on a LAN the
 * pipe needs a few requests of 4 MiB in flight to stay busy.
 */
import type { DiskOptions } from '../config/index.js';

export const RESYNC_TICK_MS = 100;
/**
 * Largest single resync request: 1024 bitmap bits of 4 KiB. Larger than DRBD's 1 MiB: fewer
 * round trips per byte (a 1 GiB full sync here: 2.6 s with 1 MiB requests, 2.2 s with 4 MiB).
 */
export const RESYNC_MAX_REQUEST = 4 << 20;
const MIN_WINDOW = 16 << 20;

export interface ResyncRates {
  /** Bytes that may be requested in this tick. */
  budget: number;
  /** Bytes that may be in flight at once. */
  window: number;
}

export function resyncRates(
  disk: Pick<
    DiskOptions,
    'resyncRateKiB' | 'cPlanAheadMs' | 'cFillTargetSectors' | 'cMaxRateKiB' | 'cMinRateKiB'
  >,
  appIoActive: boolean,
): ResyncRates {
  const perTick = (kib: number): number => Math.max(4096, (kib * 1024 * RESYNC_TICK_MS) / 1000);
  const window = Math.max(disk.cFillTargetSectors * 512, MIN_WINDOW);
  if (disk.cPlanAheadMs === 0) return { budget: perTick(disk.resyncRateKiB), window };
  const max = perTick(disk.cMaxRateKiB);
  if (!appIoActive) return { budget: max, window };
  return { budget: Math.min(max, perTick(disk.cMinRateKiB)), window };
}
