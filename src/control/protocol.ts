import path from 'node:path';
import type { UrbdEvent } from './events.js';

/**
 * The control protocol between urbdadm and urbd: JSON lines over a Unix socket in the run
 * directory. A request names a command and usually a resource; the reply echoes its id.
 * `events` turns the connection into a stream of event lines until the client hangs up.
 */
export const CONTROL_SOCKET_NAME = 'urbd.sock';
export const DEFAULT_RUN_DIR = '/run/urbd';
/** A request line longer than this is not from urbdadm; the connection is dropped. */
export const MAX_LINE = 1024 * 1024;

export function controlSocketPath(runDir: string): string {
  return path.join(runDir, CONTROL_SOCKET_NAME);
}

export interface ControlRequest {
  id: number;
  cmd: string;
  resource?: string;
  args?: Record<string, unknown>;
}

export interface ControlFailure {
  /** SS_* for refused state changes, ERR_* for failed commands, EPROTO for bad requests. */
  code: string;
  message: string;
  /** The exit code urbdadm should end with (drbdadm's: 10 failed, 11 state change refused). */
  exit: number;
}

export type ControlReply =
  | { id: number; ok: true; result: unknown }
  | { id: number | null; ok: false; error: ControlFailure };

export interface EventLine {
  event: UrbdEvent;
}

/** JSON that carries 64-bit UUIDs: bigints travel as 0x-prefixed hex strings. */
export function toJsonLine(value: unknown): string {
  return (
    JSON.stringify(value, (_k, v: unknown) =>
      typeof v === 'bigint' ? `0x${v.toString(16).toUpperCase().padStart(16, '0')}` : v,
    ) + '\n'
  );
}
