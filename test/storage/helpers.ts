import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import t from 'tap';

export type TestContext = Parameters<Parameters<typeof t.test>[0]>[0];

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A fresh directory under the system temp dir, removed when `t` ends. */
export function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'urbd-storage-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A sparse file of `size` bytes in its own temp dir. */
export function sparseFile(t: TestContext, size: number, name = 'disk.img'): string {
  const file = path.join(tempDir(t), name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  return file;
}

/** Deterministic bytes that differ from offset to offset and from seed to seed. */
export function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

export function isAllZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** 512-byte blocks the file occupies on disk. */
export function allocatedBlocks(file: string): number {
  return fs.statSync(file).blocks;
}

/** Attach `file` to a free loop device, detached again when `t` ends. */
export function loopDevice(t: TestContext, file: string): string {
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', dev]));
  return dev;
}

/** A loop device over a fresh sparse backing file. */
export function loopDisk(t: TestContext, size: number): { file: string; dev: string } {
  const file = sparseFile(t, size, 'loop-backing.img');
  return { file, dev: loopDevice(t, file) };
}
