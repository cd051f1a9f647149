// The rules of disk-failure.ts, every input, and the device switch's forwarding: requests
// held while the disk changes run on the successor, a retired target's unstarted requests
// run again there, a connection made mid-switch gets the device as it was.
import t from 'tap';
import {
  detachedDiskMarks,
  detachMayRelease,
  failedLocalCopyOutcome,
  ioErrorReaction,
} from '../../src/resource/disk-failure.js';
import { DeviceSwitch, TargetRetired } from '../../src/resource/device-switch.js';
import type { BlockTarget, TargetCapabilities } from '../../src/nbd/target.js';

t.test('ioErrorReaction: DRBD 8.4 detaches for detach and call-local-io-error', async (t) => {
  t.same(ioErrorReaction('detach'), { detach: true, callHandler: false });
  t.same(ioErrorReaction('call-local-io-error'), { detach: true, callHandler: true });
  t.same(ioErrorReaction('pass_on'), { detach: false, callHandler: false });
});

t.test('failedLocalCopyOutcome: only a detaching disk with the peer copy succeeds', async (t) => {
  t.equal(failedLocalCopyOutcome({ detaching: true, peerHas: true }), 'ok');
  t.equal(failedLocalCopyOutcome({ detaching: true, peerHas: false }), 'retry');
  t.equal(failedLocalCopyOutcome({ detaching: false, peerHas: true }), 'fail');
  t.equal(failedLocalCopyOutcome({ detaching: false, peerHas: false }), 'fail');
});

t.test('detachedDiskMarks', async (t) => {
  t.same(detachedDiskMarks({ role: 'Secondary', afterError: false }), {
    failed: false,
    allOutOfSync: false,
  });
  t.same(detachedDiskMarks({ role: 'Secondary', afterError: true }), {
    failed: true,
    allOutOfSync: false,
  });
  t.same(detachedDiskMarks({ role: 'Primary', afterError: false }), {
    failed: true,
    allOutOfSync: true,
  });
  t.same(detachedDiskMarks({ role: 'Primary', afterError: true }), {
    failed: true,
    allOutOfSync: true,
  });
});

t.test('detachMayRelease', async (t) => {
  for (const role of ['Primary', 'Secondary'] as const) {
    for (const peerWasConnected of [false, true]) {
      for (const peerReadable of [false, true]) {
        for (const peerStandAlone of [false, true]) {
          const want = role === 'Secondary' || !peerWasConnected || peerReadable || peerStandAlone;
          t.equal(
            detachMayRelease({ role, peerWasConnected, peerReadable, peerStandAlone }),
            want,
            JSON.stringify({ role, peerWasConnected, peerReadable, peerStandAlone }),
          );
        }
      }
    }
  }
});

const caps: TargetCapabilities = Object.freeze({
  readOnly: false,
  flush: true,
  fua: true,
  trim: true,
  zero: true,
  fastZero: false,
  cache: false,
  multiConn: true,
});

/** An in-memory target that records its writes, and can be retired. */
function memTarget(name: string, log: string[]) {
  let retired = false;
  const target: BlockTarget = {
    size: 1 << 20,
    capabilities: caps,
    read: (buf) => {
      if (retired) return Promise.reject(new TargetRetired());
      buf.fill(name.charCodeAt(0));
      return Promise.resolve();
    },
    write: (_data, offset) => {
      if (retired) return Promise.reject(new TargetRetired());
      log.push(`${name}:${offset}`);
      return Promise.resolve();
    },
    flush: () => Promise.resolve(),
    trim: () => Promise.resolve(),
    zero: () => Promise.resolve(),
  };
  return { target, retire: () => (retired = true) };
}

t.test('DeviceSwitch: held requests and retired targets go to the successor', async (t) => {
  const log: string[] = [];
  const a = memTarget('a', log);
  const b = memTarget('b', log);
  let current: BlockTarget | undefined = a.target;
  const sw = new DeviceSwitch(() => {
    if (!current) throw new Error('nothing serves');
    return current;
  });
  const conn = sw.connectionTarget();
  t.equal(conn.size, 1 << 20);
  await conn.write(Buffer.alloc(8), 0, false);
  t.same(log, ['a:0']);

  sw.hold();
  t.ok(sw.held);
  a.retire();
  const held = conn.write(Buffer.alloc(8), 4096, false);
  const buf = Buffer.alloc(4);
  const read = conn.read(buf, 0);
  // Mid-switch nothing serves: a new connection still gets the device as it was.
  current = undefined;
  const late = sw.connectionTarget();
  t.equal(late.size, 1 << 20, 'a connection made mid-switch');
  current = b.target;
  sw.release();
  await held;
  await read;
  t.same(log, ['a:0', 'b:4096'], 'the held write ran on the successor');
  t.equal(buf[0], 'b'.charCodeAt(0), 'so did the read');

  // A request the retired target rejects runs again on what serves now.
  const c = memTarget('c', log);
  b.retire();
  current = c.target;
  await late.write(Buffer.alloc(8), 8192, false);
  t.same(log, ['a:0', 'b:4096', 'c:8192']);

  current = undefined;
  await t.rejects(conn.write(Buffer.alloc(8), 0, false), { code: 'EIO' }, 'nothing serves: EIO');
  t.throws(() => sw.connectionTarget(), /nothing serves/, 'and new connections are refused');
});
