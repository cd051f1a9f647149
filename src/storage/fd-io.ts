import fs from 'node:fs';

import { TargetError } from '../nbd/target.js';

/**
 * Positional I/O on raw descriptors. These sit on the request hot path, so they use the
 * callback fs API (no FileHandle, no intermediate promise per syscall) and allocate nothing
 * per request except one continuation closure.
 */
export type Completion = (err: Error | null) => void;

/** Fill `buf` from `position`, looping over short reads. */
export function readAll(fd: number, buf: Buffer, position: number, done: Completion): void {
  const total = buf.length;
  if (total === 0) return done(null);
  let got = 0;
  const step = (err: Error | null, n: number): void => {
    if (err !== null) return done(err);
    // Only a file shrunk under us returns EOF inside the advertised size.
    if (n === 0) return done(shortTransfer('read', fd, position + got));
    got += n;
    if (got === total) return done(null);
    fs.read(fd, buf, got, total - got, position + got, step);
  };
  fs.read(fd, buf, 0, total, position, step);
}

/** Write `length` bytes of `buf` (from its start) at `position`, looping over short writes. */
export function writeAll(
  fd: number,
  buf: Buffer,
  length: number,
  position: number,
  done: Completion,
): void {
  if (length === 0) return done(null);
  let put = 0;
  const step = (err: Error | null, n: number): void => {
    if (err !== null) return done(err);
    // write(2) returning 0 for a non-empty buffer would otherwise spin forever.
    if (n === 0) return done(shortTransfer('write', fd, position + put));
    put += n;
    if (put === length) return done(null);
    fs.write(fd, buf, put, length - put, position + put, step);
  };
  fs.write(fd, buf, 0, length, position, step);
}

/**
 * writeAll on the calling thread: for small writes into the page cache, where a thread-pool
 * round trip costs more than the copy. `done` is called before this returns.
 */
export function writeAllSync(fd: number, buf: Buffer, position: number, done: Completion): void {
  let put = 0;
  let failure: Error | null = null;
  try {
    while (put < buf.length) {
      const n = fs.writeSync(fd, buf, put, buf.length - put, position + put);
      if (n === 0) {
        failure = shortTransfer('write', fd, position + put);
        break;
      }
      put += n;
    }
  } catch (err) {
    failure = err as Error;
  }
  done(failure);
}

/** Write every piece, in order, from `position` on: one writev, looping over short writes. */
export function writevAll(
  fd: number,
  pieces: readonly Buffer[],
  position: number,
  done: Completion,
): void {
  let rest = pieces;
  let at = position;
  const step = (err: Error | null, n: number): void => {
    if (err !== null) return done(err);
    if (n === 0) return done(shortTransfer('write', fd, at));
    at += n;
    rest = dropBytes(rest, n);
    if (rest.length === 0) return done(null);
    fs.writev(fd, rest, at, step);
  };
  if (rest.length === 0) return done(null);
  fs.writev(fd, rest, at, step);
}

/** The pieces that remain after the first `n` bytes. */
function dropBytes(pieces: readonly Buffer[], n: number): readonly Buffer[] {
  let i = 0;
  while (i < pieces.length && n >= pieces[i]!.length) n -= pieces[i++]!.length;
  if (i === pieces.length) return [];
  const rest = pieces.slice(i);
  if (n > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

export function writeAllAsync(
  fd: number,
  buf: Buffer,
  length: number,
  position: number,
): Promise<void> {
  return new Promise((resolve, reject) =>
    writeAll(fd, buf, length, position, (err) => (err === null ? resolve() : reject(err))),
  );
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) =>
    fs.fdatasync(fd, (err) => (err === null ? resolve() : reject(err))),
  );
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) =>
    fs.close(fd, (err) => (err === null ? resolve() : reject(err))),
  );
}

export function openFd(path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(path, flags, (err, fd) => (err === null ? resolve(fd) : reject(err))),
  );
}

/** Largest single zero write; bounds the one shared buffer and the time any write holds a thread. */
export const ZERO_CHUNK = 1024 * 1024;

let zeroes: Buffer | undefined;

/** Write zeroes the slow way, for backings with no native zeroing. Chunks run one at a time. */
export async function writeZeroes(fd: number, offset: number, length: number): Promise<void> {
  // Never written to, so every caller and every in-flight chunk can share it.
  zeroes ??= Buffer.alloc(ZERO_CHUNK);
  const end = offset + length;
  for (let pos = offset; pos < end; pos += ZERO_CHUNK) {
    await writeAllAsync(fd, zeroes, Math.min(ZERO_CHUNK, end - pos), pos);
  }
}

function shortTransfer(op: string, fd: number, position: number): TargetError {
  return new TargetError('EIO', `unexpected end of ${op} on fd ${fd} at byte ${position}`);
}
