import fs from 'node:fs';
import path from 'node:path';
import type { HostConfig } from '../config/index.js';

/** Where `meta-disk internal` keeps metadata when the disk is a block device. */
export const STATE_DIR = '/var/lib/urbd';

/**
 * The metadata file of a resource on this node. urbd keeps metadata in SQLite, not inside
 * the backing device, so `meta-disk internal` means a file beside a file-backed disk
 * (DISK.urbd-md) or, for a block device, one under /var/lib/urbd (URBD_STATE_DIR overrides).
 */
export function metaPathFor(resource: string, host: HostConfig): string {
  const meta = host.metaDisk;
  if (meta === undefined || meta === 'internal') {
    const disk = host.disk;
    if (disk === undefined || disk === 'none') {
      throw new Error(`resource ${resource} on ${host.name} has no disk, so it has no metadata`);
    }
    if (isBlockDevice(disk)) {
      const dir = process.env.URBD_STATE_DIR ?? STATE_DIR;
      return path.join(dir, `${resource}.urbd-md`);
    }
    return `${disk}.urbd-md`;
  }
  if (isBlockDevice(meta)) {
    throw new Error(
      `meta-disk ${meta} of resource ${resource} is a block device; urbd keeps metadata in a file (give a file path, or "internal")`,
    );
  }
  return meta;
}

/** The Unix socket a resource's NBD export is served on. */
export function exportSocketPath(runDir: string, resource: string): string {
  return path.join(runDir, `${resource}.nbd`);
}

function isBlockDevice(p: string): boolean {
  try {
    return fs.statSync(p).isBlockDevice();
  } catch {
    return false;
  }
}
