import fs from 'node:fs';
import readline from 'node:readline/promises';
import { applyAl } from '../meta/apply-al.js';
import { MetaError, MetaStore, type Superblock } from '../meta/store.js';
import { newCurrentCommand } from '../meta/uuid.js';
import { RemoteError } from '../control/client.js';
import { metaPathFor } from '../resource/paths.js';
import { decideOutdate, diskStateOnAttach } from '../resource/states.js';
import { FileDisk } from '../storage/file-disk.js';
import { AdmError, type AdmContext, Exit } from './adm-context.js';

/**
 * The verbs that work on metadata directly (drbdmeta's job): they run with the resource
 * down, and refuse while the daemon has the disk attached, because the daemon's copy of
 * the bitmap and activity log would overwrite whatever they wrote.
 */
export async function metaPath(ctx: AdmContext, name: string, verb: string): Promise<string> {
  const { host } = ctx.resource(name);
  const st = await ctx.upStatus(name);
  if (st && st.device.diskState !== 'Diskless') {
    throw new AdmError(
      `${name} is attached to the running urbd; ${verb} needs it detached (urbdadm down ${name})`,
      Exit.FAILED,
    );
  }
  try {
    return metaPathFor(name, host);
  } catch (err) {
    throw new AdmError((err as Error).message);
  }
}

/** MetaError messages already name the path and what to do; they become exit 10. */
function withStore<T>(
  file: string,
  resource: string,
  readOnly: boolean,
  fn: (s: MetaStore) => T,
): T {
  let store: MetaStore;
  try {
    store = MetaStore.open(file, { readOnly, resource });
  } catch (err) {
    throw new AdmError((err as Error).message);
  }
  try {
    return fn(store);
  } catch (err) {
    if (err instanceof MetaError) throw new AdmError(err.message);
    throw err;
  } finally {
    store.close();
  }
}

export async function createMd(ctx: AdmContext, name: string, force: boolean): Promise<string> {
  const file = await metaPath(ctx, name, 'create-md');
  const { res, host } = ctx.resource(name);
  if (host.disk === undefined || host.disk === 'none') {
    throw new AdmError(`${name} has no disk on ${host.name}; a diskless node needs no metadata`);
  }
  let diskSize: number;
  try {
    const disk = await FileDisk.open(host.disk, { readOnly: true });
    diskSize = disk.size;
    await disk.close();
  } catch (err) {
    throw new AdmError(`cannot open disk ${host.disk}: ${(err as Error).message}`);
  }
  const want = res.disk.sizeBytes;
  if (want !== undefined && want > diskSize) {
    throw new AdmError(
      `${name}: disk { size } is ${want} bytes but ${host.disk} has only ${diskSize}`,
    );
  }
  const sizeBytes = want ?? diskSize;
  if (sizeBytes === 0) throw new AdmError(`${name}: ${host.disk} is empty (0 bytes)`);
  try {
    MetaStore.create(file, {
      sizeBytes,
      nodeId: host.nodeId ?? 0,
      alExtents: res.disk.alExtents,
      force,
    }).close();
  } catch (err) {
    throw new AdmError((err as Error).message);
  }
  return `${name}: new metadata written to ${file} (device ${sizeBytes} bytes, ${Math.ceil(sizeBytes / 4096)} bitmap bits, ${res.disk.alExtents} activity-log extents); the disk is Inconsistent until it is synced or forced Primary`;
}

export async function wipeMd(ctx: AdmContext, name: string, force: boolean): Promise<string> {
  const file = await metaPath(ctx, name, 'wipe-md');
  if (!fs.existsSync(file)) throw new AdmError(`${name}: no metadata at ${file}; nothing to wipe`);
  if (!force) {
    if (!process.stdin.isTTY) {
      throw new AdmError(
        `${name}: wipe-md destroys the metadata at ${file}; confirm with --force`,
        Exit.USAGE,
      );
    }
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(
      `Do you really want to wipe out the urbd metadata of ${name} at ${file}?\n[need to type 'yes' to confirm] `,
    );
    rl.close();
    if (answer.trim() !== 'yes')
      throw new AdmError('wipe-md: not confirmed; nothing changed', Exit.USAGE);
  }
  try {
    MetaStore.wipe(file);
  } catch (err) {
    throw new AdmError((err as Error).message);
  }
  return `${name}: metadata at ${file} wiped`;
}

export async function dumpMd(
  ctx: AdmContext,
  name: string,
): Promise<ReturnType<MetaStore['dump']>> {
  const file = await metaPath(ctx, name, 'dump-md');
  return withStore(file, name, true, (s) => s.dump());
}

export async function applyAlVerb(ctx: AdmContext, name: string): Promise<string> {
  const file = await metaPath(ctx, name, 'apply-al');
  const r = withStore(file, name, false, (s) => applyAl(s));
  if (!r.applied) return `${name}: metadata is clean; nothing to apply`;
  return `${name}: applied ${r.extents.length} activity-log extents (${r.bitsSet} bits set)${r.crashedPrimary ? '; it was a crashed Primary' : ''}`;
}

/**
 * Generation identifiers, from the daemon when the disk is attached (`attached`), else
 * from the file.
 */
export async function readSuperblock(
  ctx: AdmContext,
  name: string,
): Promise<{ sb: Superblock; attached: boolean }> {
  const st = await ctx.upStatus(name);
  if (st && st.device.diskState !== 'Diskless') {
    const c = await ctx.requireDaemon();
    return { sb: superblockFromJson(await c.request('get-gi', name)), attached: true };
  }
  const { host } = ctx.resource(name);
  const sb = withStore(metaPathFor(name, host), name, true, (s) => s.superblock());
  return { sb, attached: false };
}

/** Offline outdate (drbdmeta outdate): consistent data is marked as known to be behind. */
export async function outdateOffline(ctx: AdmContext, name: string): Promise<void> {
  const file = await metaPath(ctx, name, 'outdate');
  withStore(file, name, false, (s) => {
    // The same rule as the daemon's, on the state the disk would come up in, reported
    // the way a refusal from the daemon is.
    const { disk } = diskStateOnAttach(s.superblock().flags, 'dont-care');
    const refusal = decideOutdate({ role: 'Secondary', disk });
    if (refusal) throw new RemoteError(refusal.code, refusal.message, Exit.STATE_CHANGE);
    s.setFlags({ wasUpToDate: false });
  });
}

export async function newCurrentUuidOffline(
  ctx: AdmContext,
  name: string,
  clearBitmap: boolean,
): Promise<Superblock> {
  const file = await metaPath(ctx, name, 'new-current-uuid');
  return withStore(file, name, false, (s) => {
    const sb = s.superblock();
    s.setUuids(newCurrentCommand(sb.uuids, false, clearBitmap));
    if (clearBitmap)
      s.writeBitmapPages([...s.readBitmapPages()].map((p) => ({ page: p.page, data: null })));
    return s.superblock();
  });
}

/** The daemon sends UUIDs as hex strings (JSON has no 64-bit integers). */
export function superblockFromJson(v: unknown): Superblock {
  const sb = v as Superblock & { deviceUuid: unknown; uuids: Record<string, unknown> };
  const big = (x: unknown): bigint => BigInt(x as string);
  const h = sb.uuids.history as unknown[];
  return {
    ...sb,
    deviceUuid: big(sb.deviceUuid),
    uuids: {
      current: big(sb.uuids.current),
      bitmap: big(sb.uuids.bitmap),
      history: [big(h[0]), big(h[1])],
    },
  };
}
