// The rules of wait-connect / wait-sync (src/cli/adm-wait.ts): what each waits for, when a
// wait is hopeless (a StandAlone peer), what the progress bar shows and how.
import t from 'tap';
import {
  CONNECTED,
  formatEta,
  formatRate,
  hopeless,
  IN_SYNC,
  obstacles,
  syncShown,
} from '../../src/cli/adm-wait.js';
import { CONNECTION_STATES } from '../../src/resource/states.js';
import type { PeerStatus, ResourceStatus } from '../../src/resource/status.js';
import { peerStatus, resourceStatus } from '../helpers/status-fixture.js';

function res(
  peers: Array<Partial<PeerStatus>>,
  disk: ResourceStatus['device']['diskState'] = 'UpToDate',
): ResourceStatus {
  return resourceStatus({
    role: 'Secondary',
    device: { diskState: disk },
    peers: peers.map((p, i) => peerStatus({ name: `peer${i}`, nodeId: i + 1, ...p })),
  });
}

t.test('hopeless: exactly when a peer is StandAlone, saying why and what to run', async (t) => {
  for (const c of CONNECTION_STATES) {
    const why = hopeless(res([{ connection: c }]));
    if (c === 'StandAlone') t.type(why, 'string', c);
    else t.equal(why, undefined, c);
  }
  t.equal(
    hopeless(res([{ connection: 'StandAlone', lastError: 'authentication failed' }])),
    'r0: peer0 is StandAlone (authentication failed); it stays so until "urbdadm connect r0"',
  );
  t.equal(
    hopeless(res([{ connection: 'StandAlone' }])),
    'r0: peer0 is StandAlone; it stays so until "urbdadm connect r0"',
  );
  t.match(
    hopeless(res([{}, { connection: 'StandAlone' }])),
    /^r0: peer1 is StandAlone/,
    'the StandAlone one of two peers',
  );
  t.equal(hopeless(res([])), undefined, 'no peers: nothing to be stuck on');
});

t.test('obstacles: peers not connected, with their last error', async (t) => {
  t.same(obstacles(res([{}])), []);
  t.same(obstacles(res([{ connection: 'Connecting' }])), [], 'no error yet: nothing to say');
  t.same(
    obstacles(
      res([
        { connection: 'Connecting', lastError: 'cannot connect to 10.0.0.2:7789: ECONNREFUSED' },
        { lastError: 'old news' },
        { connection: 'StandAlone', lastError: 'authentication failed' },
      ]),
    ),
    ['peer0: cannot connect to 10.0.0.2:7789: ECONNREFUSED', 'peer2: authentication failed'],
  );
});

t.test('the goals', async (t) => {
  t.ok(CONNECTED.done(res([{}])));
  t.ok(CONNECTED.done(res([{ replication: 'SyncSource', peerDisk: 'Inconsistent' }])));
  t.notOk(CONNECTED.done(res([{}, { connection: 'Connecting' }])));
  t.ok(IN_SYNC.done(res([{}])));
  t.notOk(IN_SYNC.done(res([{}], 'Inconsistent')), 'the local disk too');
  t.notOk(IN_SYNC.done(res([{ replication: 'SyncTarget' }])));
  t.notOk(IN_SYNC.done(res([{ peerDisk: 'Outdated' }])));
  t.notOk(IN_SYNC.done(res([{ connection: 'Connecting' }])));
  // A diskless tiebreaker is in sync by having nothing: only its link counts.
  t.ok(IN_SYNC.done(res([{}, { peerDisk: 'Diskless', diskful: false }])), 'with a tiebreaker');
  t.notOk(
    IN_SYNC.done(res([{}, { peerDisk: 'Diskless', diskful: false, connection: 'Connecting' }])),
  );
  t.notOk(
    IN_SYNC.done(res([{ peerDisk: 'Diskless', diskful: true }])),
    'a data peer without its disk',
  );
  t.equal(CONNECTED.what, 'connected');
  t.equal(IN_SYNC.what, 'in sync');
});

t.test('syncShown: the first peer with a resync running', async (t) => {
  t.equal(syncShown(res([{}])), undefined);
  const sync = { outOfSync: 1, total: 4, done: 75, rate: 3 << 20, etaSeconds: 2 };
  t.same(syncShown(res([{}, { replication: 'PausedSyncT', sync }])), {
    peer: 'peer1',
    state: 'PausedSyncT',
    done: 75,
    rate: 3 << 20,
    eta: 2,
  });
});

t.test('formatEta and formatRate', async (t) => {
  t.equal(formatEta(undefined), '?');
  t.equal(formatEta(Infinity), '?');
  t.equal(formatEta(-1), '?');
  t.equal(formatEta(0), '0:00');
  t.equal(formatEta(9.6), '0:10');
  t.equal(formatEta(65), '1:05');
  t.equal(formatEta(3599), '59:59');
  t.equal(formatEta(3723), '1:02:03');
  t.equal(formatRate(0), '0.0 MiB/s');
  t.equal(formatRate(1.25 * (1 << 20)), '1.3 MiB/s');
});
