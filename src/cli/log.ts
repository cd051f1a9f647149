import pino, { type Logger } from 'pino';

/**
 * The process logger: pino JSON lines on stdout, level from URBD_LOG_LEVEL (default info).
 * Writes are synchronous so the last line before an exit or a crash is never lost.
 */
export function createLogger(name: string): Logger {
  return pino(
    { name, level: process.env.URBD_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
    pino.destination({ fd: 1, sync: true }),
  );
}
