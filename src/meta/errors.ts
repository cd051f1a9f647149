/**
 * Errors of the metadata store. Every failure a user can cause or meet (missing file, wrong
 * permissions, somebody else's file, a corrupt or busy store, a full disk) becomes a MetaError
 * whose message is one line naming the path and what to do. Programming errors (bad
 * arguments) stay RangeError/TypeError and are never wrapped.
 */
import Database from 'better-sqlite3';

export type MetaErrorCode =
  'ENOENT' | 'EEXIST' | 'EACCES' | 'ENOTMETA' | 'EVERSION' | 'ECORRUPT' | 'ESIZE' | 'EBUSY' | 'EIO';

export class MetaError extends Error {
  override readonly name = 'MetaError';

  constructor(
    readonly code: MetaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(oneLine(message), options);
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ');
}

/** SQLite's extended result code of an error thrown by better-sqlite3, if it is one. */
export function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

/** The Node errno name of a failed fs call, if it is one. */
function errnoName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || err instanceof Database.SqliteError) {
    return undefined;
  }
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('E') ? code : undefined;
}

export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== undefined && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export const busyMessage = (path: string): string =>
  `metadata at ${path} is in use by another process (is urbd running with this resource? stop it, or ask the daemon)`;

/**
 * Maps an error thrown while `doing` something to the store at `path` (a SQLite or fs error)
 * to a MetaError. Anything else — a MetaError already, or a programming error — is returned
 * unchanged, so callers can always `throw toMetaError(err, …)`.
 */
export function toMetaError(err: unknown, path: string, doing: string): unknown {
  if (err instanceof MetaError) return err;
  const sq = sqliteCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (sq !== undefined) {
    if (sq.startsWith('SQLITE_BUSY') || sq.startsWith('SQLITE_LOCKED')) {
      return new MetaError('EBUSY', busyMessage(path), { cause: err });
    }
    if (sq === 'SQLITE_NOTADB') {
      return new MetaError(
        'ENOTMETA',
        `${path} is not urbd metadata (not an SQLite database); check meta-disk in the resource file, or run urbdadm create-md`,
        { cause: err },
      );
    }
    if (sq.startsWith('SQLITE_CORRUPT')) {
      return new MetaError(
        'ECORRUPT',
        `metadata at ${path} is corrupt (${sq}: ${detail}); restore it from a backup, or re-create it with create-md --force (a full resync follows)`,
        { cause: err },
      );
    }
    if (sq.startsWith('SQLITE_READONLY') || sq === 'SQLITE_PERM' || sq === 'SQLITE_AUTH') {
      return new MetaError(
        'EACCES',
        `cannot write metadata at ${path} while ${doing} (${sq}: ${detail}); check the permissions of the file and its directory`,
        { cause: err },
      );
    }
    if (sq === 'SQLITE_FULL') {
      return new MetaError(
        'EIO',
        `no space left for metadata at ${path} while ${doing}; free space on its filesystem`,
        { cause: err },
      );
    }
    if (sq.startsWith('SQLITE_CANTOPEN')) {
      return new MetaError(
        'EIO',
        `cannot open metadata at ${path} (${sq}: ${detail}); check that the file and its directory exist and are readable and writable`,
        { cause: err },
      );
    }
    if (sq.startsWith('SQLITE_IOERR')) {
      return new MetaError(
        'EIO',
        `I/O error on metadata at ${path} while ${doing} (${sq}: ${detail}); check the disk under it`,
        { cause: err },
      );
    }
    return new MetaError('EIO', `metadata at ${path}: ${doing} failed (${sq}: ${detail})`, {
      cause: err,
    });
  }
  const errno = errnoName(err);
  if (errno !== undefined) {
    if (errno === 'ENOENT') {
      return new MetaError('ENOENT', `${path}: ${doing} failed: ${detail}`, { cause: err });
    }
    if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') {
      return new MetaError(
        'EACCES',
        `permission denied ${doing} ${path} (${errno}); check the permissions of the file and its directory`,
        { cause: err },
      );
    }
    if (errno === 'ENOSPC' || errno === 'EDQUOT') {
      return new MetaError(
        'EIO',
        `no space left for metadata at ${path} while ${doing}; free space on its filesystem`,
        { cause: err },
      );
    }
    if (errno === 'EIO') {
      // Worded like SQLite's SQLITE_IOERR above: the same failure, seen by our own fdatasync.
      return new MetaError(
        'EIO',
        `I/O error on metadata at ${path} while ${doing} (${detail}); check the disk under it`,
        { cause: err },
      );
    }
    return new MetaError('EIO', `${doing} ${path} failed: ${detail}`, { cause: err });
  }
  return err;
}
