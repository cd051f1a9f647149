import { createRequire } from 'node:module';

/**
 * The optional C++ addon (native/). Everything it offers has a slower or weaker pure-TS
 * substitute, so a missing build degrades FileDisk instead of breaking it.
 *
 * Errors it throws or rejects with look like Node's system errors: `code` is the errno name,
 * plus `errno` and `syscall`.
 */
export interface NativeBinding {
  /** ioctl(BLKGETSIZE64). */
  blockDeviceSize(fd: number): number;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE) on the thread pool. */
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  /** fallocate(ZERO_RANGE | KEEP_SIZE) on the thread pool. */
  zeroRange(fd: number, offset: number, length: number): Promise<void>;
  /** ioctl(BLKDISCARD) on the thread pool. */
  discard(fd: number, offset: number, length: number): Promise<void>;
  /** ioctl(BLKZEROOUT) on the thread pool. */
  zeroOut(fd: number, offset: number, length: number): Promise<void>;
  /** lseek(SEEK_DATA); -1 when there is no data at or after `offset`. */
  seekData(fd: number, offset: number): number;
  /** lseek(SEEK_HOLE); -1 when `offset` is at or past the end. */
  seekHole(fd: number, offset: number): number;
  /**
   * preadv2(RWF_NOWAIT) on the calling thread: bytes read (maybe short), or -1 when the data
   * is not in the page cache and a read would have to wait for the disk.
   */
  readNowait(fd: number, buf: Buffer, offset: number): number;
  /** pwrite every buffer at its offset in one thread-pool job; one Error or null per entry. */
  writeBatch(fd: number, bufs: Buffer[], offsets: number[]): Promise<(Error | null)[]>;
  /** One AF_UNIX datagram to `socketPath` (a path, or @name for the abstract namespace). */
  notify(socketPath: string, message: string): void;
  /**
   * `bytes` of fresh anonymous memory on a 2 MiB boundary, advised MADV_HUGEPAGE (backed by
   * transparent huge pages where the kernel allows); unmapped when the Buffer is collected.
   */
  allocHuge(bytes: number): Buffer;
}

// Compiled to dist/src/storage/, so the repository root is three levels up.
const ADDON_PATH = '../../../native/build/Release/urbd_native.node';

let loaded: { binding: NativeBinding | null; error?: Error } | undefined;

function load(): { binding: NativeBinding | null; error?: Error } {
  try {
    const require = createRequire(import.meta.url);
    return { binding: require(ADDON_PATH) as NativeBinding };
  } catch (err) {
    return { binding: null, error: err as Error };
  }
}

/** True when the environment asks for the pure-TS paths (URBD_NO_NATIVE=1), e.g. in tests. */
export function nativeDisabledByEnv(): boolean {
  const v = process.env.URBD_NO_NATIVE;
  return v !== undefined && v !== '' && v !== '0';
}

/**
 * The addon, or null when it is disabled by URBD_NO_NATIVE or failed to load. The load is
 * attempted once per process; the environment is consulted on every call so a test can flip it.
 */
export function loadNative(): NativeBinding | null {
  if (nativeDisabledByEnv()) return null;
  loaded ??= load();
  return loaded.binding;
}

/** Why the addon could not be loaded, for callers that want to say so; undefined otherwise. */
export function nativeLoadError(): Error | undefined {
  loaded ??= load();
  return loaded.error;
}

const HUGE_PAGE = 2 << 20;

/**
 * `bytes` of memory on transparent huge pages (native allocHuge), or undefined without the
 * addon, or when `bytes` is not whole huge pages (the rest of the last one would be wasted).
 */
export function hugePageBuffer(bytes: number): Buffer | undefined {
  if (bytes % HUGE_PAGE !== 0) return undefined;
  return loadNative()?.allocHuge(bytes);
}
