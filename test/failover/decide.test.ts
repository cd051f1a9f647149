import fc from 'fast-check';
import t from 'tap';
import { FAILOVER_DEFAULTS, type FailoverConfig } from '../../src/config/index.js';
import { autoPromotion, candidateOrder, decide, type Memory } from '../../src/failover/decide.js';
import type { PeerStatus, ResourceStatus } from '../../src/resource/status.js';

const CFG: FailoverConfig = { ...FAILOVER_DEFAULTS, services: [], addresses: [] };
const ORDER = ['alpha', 'beta'];

function peer(name: string, over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name,
    nodeId: undefined,
    connection: 'Connected',
    role: 'Secondary',
    peerDisk: name === 'tb' ? 'Diskless' : 'UpToDate',
    replication: 'Established',
    outOfSync: 0,
    statistics: {} as PeerStatus['statistics'],
    sync: undefined,
    lastError: undefined,
    paused: false,
    resyncSuspended: [],
    diskful: name !== 'tb',
    knownOutdated: false,
    quorum: true,
    mayPromote: { may: name !== 'tb', reason: '' },
    ...over,
  } as PeerStatus;
}

function status(
  node: string,
  over: Partial<ResourceStatus> = {},
  peers?: PeerStatus[],
): ResourceStatus {
  const other = node === 'alpha' ? 'beta' : 'alpha';
  return {
    name: 'r0',
    node,
    nodeId: undefined,
    role: 'Secondary',
    suspended: false,
    quorum: { enabled: true, quorum: true, reason: '' },
    mayPromote: { may: true, reason: 'may be promoted' },
    device: {} as ResourceStatus['device'],
    peers: peers ?? [peer(other), peer('tb')],
    ...over,
  } as ResourceStatus;
}

const MEM: Memory = {
  phase: 'stopped',
  maintenance: false,
  bannedUntil: 0,
  lastPromoteAt: undefined,
  candidateSince: undefined,
  now: 1_000_000,
};

t.test('who may promote by itself', async (t) => {
  t.equal(autoPromotion(true, { twoNode: false }, false).auto, true);
  t.equal(autoPromotion(false, { twoNode: true }, true).auto, true);
  t.match(autoPromotion(false, { twoNode: true }, false).why, /fence-peer handler/);
  t.match(autoPromotion(false, { twoNode: false }, true).why, /never promotes by itself/);
  t.same(candidateOrder({ preferredNodes: ['beta'] }, ['alpha', 'beta']), ['beta', 'alpha']);
  t.same(candidateOrder({ preferredNodes: [] }, ['alpha', 'beta']), ['alpha', 'beta']);
});

t.test('the first candidate promotes at once, the second waits for it', async (t) => {
  t.same(decide(status('alpha'), MEM, CFG, ORDER, true).kind, 'start');
  const b = decide(status('beta'), MEM, CFG, ORDER, true);
  t.equal(b.kind, 'wait');
  t.match(b.why, /alpha may promote and goes first/);
  t.equal(b.kind === 'wait' && b.at, MEM.now + CFG.promoteDelayMs);
  // The delay has passed and alpha still did not promote (its supervisor gave it up).
  const later = { ...MEM, candidateSince: MEM.now, now: MEM.now + CFG.promoteDelayMs };
  t.equal(decide(status('beta'), later, CFG, ORDER, true).kind, 'start');
  // alpha is dead: beta does not wait.
  const dead = [
    peer('alpha', {
      connection: 'Connecting',
      role: 'Unknown',
      mayPromote: { may: null, reason: '' },
    }),
    peer('tb'),
  ];
  t.equal(decide(status('beta', {}, dead), MEM, CFG, ORDER, true).kind, 'start');
  // preferred-nodes turns the order around.
  t.equal(
    decide(status('beta'), MEM, { ...CFG, preferredNodes: ['beta'] }, ['beta', 'alpha'], true).kind,
    'start',
  );
});

t.test(
  'nobody promotes beside a Primary, without may-promote, in maintenance, or when not automatic',
  async (t) => {
    const withPrimary = [peer('alpha', { role: 'Primary' }), peer('tb')];
    t.match(decide(status('beta', {}, withPrimary), MEM, CFG, ORDER, true).why, /alpha is Primary/);
    const noQuorum = status('alpha', {
      mayPromote: { may: false, reason: 'no quorum: sees 1 of 2 data nodes' },
    });
    t.match(decide(noQuorum, MEM, CFG, ORDER, true).why, /may not promote: no quorum/);
    t.match(
      decide(status('alpha'), { ...MEM, maintenance: true }, CFG, ORDER, true).why,
      /maintenance/,
    );
    t.equal(decide(status('alpha'), MEM, CFG, ORDER, false).kind, 'none');
    t.equal(decide(status('alpha'), { ...MEM, phase: 'blocked' }, CFG, ORDER, true).kind, 'none');
  },
);

t.test('a ban and min-failover-interval hold a node back', async (t) => {
  const banned = decide(status('alpha'), { ...MEM, bannedUntil: MEM.now + 5000 }, CFG, ORDER, true);
  t.equal(banned.kind, 'wait');
  t.equal(banned.kind === 'wait' && banned.candidate, false);
  const recent = decide(
    status('alpha'),
    { ...MEM, lastPromoteAt: MEM.now - 1000 },
    CFG,
    ORDER,
    true,
  );
  t.match(recent.why, /min-failover-interval/);
  const old = { ...MEM, lastPromoteAt: MEM.now - CFG.minFailoverIntervalMs };
  t.equal(decide(status('alpha'), old, CFG, ORDER, true).kind, 'start');
});

t.test(
  'a Primary: starts its chain, stops on lost quorum, yields to a Primary ahead, fails back only when asked',
  async (t) => {
    const p = status('alpha', { role: 'Primary' });
    t.equal(decide(p, MEM, CFG, ORDER, true).kind, 'start');
    t.equal(decide(p, { ...MEM, phase: 'running' }, CFG, ORDER, true).kind, 'none');
    const lost = decide(
      status('alpha', {
        role: 'Primary',
        quorum: { enabled: true, quorum: false, reason: 'no quorum: sees 0 of 1' },
      }),
      { ...MEM, phase: 'running' },
      CFG,
      ORDER,
      true,
    );
    t.same(lost.kind === 'stop' && [lost.demote, lost.force], [true, true]);
    // Both Primary at once: the one behind stops before it mounts anything.
    const both = status('beta', { role: 'Primary' }, [
      peer('alpha', { role: 'Primary' }),
      peer('tb'),
    ]);
    t.equal(decide(both, { ...MEM, phase: 'starting' }, CFG, ORDER, true).kind, 'stop');
    t.equal(
      decide(
        status('alpha', { role: 'Primary' }, [peer('beta', { role: 'Primary' })]),
        MEM,
        CFG,
        ORDER,
        true,
      ).kind,
      'start',
    );
    // Failback: beta runs it, alpha (preferred) is back and UpToDate.
    const onBeta = status('beta', { role: 'Primary' });
    const fb = { ...CFG, preferredNodes: ['alpha'], failback: true };
    t.equal(
      decide(onBeta, { ...MEM, phase: 'running' }, CFG, ORDER, true).kind,
      'none',
      'no failback by default',
    );
    const back = decide(onBeta, { ...MEM, phase: 'running' }, fb, ORDER, true);
    t.same(back.kind === 'stop' && [back.demote, back.ban], [true, true]);
    // A Secondary whose chain still runs (demoted under it) takes it down without demoting.
    const sec = decide(status('alpha'), { ...MEM, phase: 'running' }, CFG, ORDER, true);
    t.same(sec.kind === 'stop' && sec.demote, false);
  },
);

t.test(
  'property: two data nodes that see each other never both start at the same moment',
  async (t) => {
    const mayArb = fc.record({ may: fc.constantFrom(true, false, null), reason: fc.constant('') });
    fc.assert(
      fc.property(
        mayArb,
        mayArb,
        fc.integer({ min: 0, max: 10_000 }),
        fc.constantFrom(['alpha', 'beta'], ['beta', 'alpha']),
        (ma, mb, elapsed, order) => {
          // Each node's own verdict, and what the other hears of it.
          const sa = status('alpha', { mayPromote: ma }, [
            peer('beta', { mayPromote: mb }),
            peer('tb'),
          ]);
          const sb = status('beta', { mayPromote: mb }, [
            peer('alpha', { mayPromote: ma }),
            peer('tb'),
          ]);
          const mem = {
            ...MEM,
            candidateSince: MEM.now,
            now: MEM.now + Math.min(elapsed, CFG.promoteDelayMs - 1),
          };
          const a = decide(sa, mem, CFG, order, true).kind === 'start';
          const b = decide(sb, mem, CFG, order, true).kind === 'start';
          return !(a && b);
        },
      ),
    );
    t.pass('at most one starts within promote-delay');
  },
);
