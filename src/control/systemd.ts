import type { Logger } from 'pino';
import { loadNative, nativeLoadError } from '../storage/native.js';

/**
 * sd_notify for Type=notify units: READY=1 once the control socket accepts requests,
 * STOPPING=1 when an orderly stop begins. Without NOTIFY_SOCKET (not under systemd) it
 * does nothing; a failure to notify is logged, never fatal.
 */
export function notifySystemd(message: string, log: Logger): boolean {
  const socket = process.env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return false;
  const native = loadNative();
  if (!native) {
    log.warn(
      { err: nativeLoadError()?.message ?? 'disabled by URBD_NO_NATIVE' },
      'cannot notify systemd: the native addon is not loaded',
    );
    return false;
  }
  try {
    native.notify(socket, message);
    return true;
  } catch (err) {
    log.warn({ err: (err as Error).message, socket }, 'cannot notify systemd');
    return false;
  }
}
