import t from 'tap';
import {
  DISK_STATES,
  REPLICATION_STATES,
  type DiskState,
  type Fencing,
  type PeerRole,
  type Role,
  decideDemote,
  decideDetach,
  decideInvalidate,
  decideInvalidateRemote,
  decideOutdate,
  decidePromote,
  diskRank,
  crashDealtWith,
  diskStateOnAttach,
  keepCrashedPrimary,
  persistentFlags,
} from '../../src/resource/states.js';

const ROLES: Role[] = ['Primary', 'Secondary'];
const PEER_ROLES: PeerRole[] = ['Primary', 'Secondary', 'Unknown'];
const FENCING: Fencing[] = ['dont-care', 'resource-only', 'resource-and-stonith'];
const BOOLS = [false, true];

t.test('disk state on attach follows the persistent flags (drbd.md §2.5)', async (t) => {
  for (const consistent of BOOLS)
    for (const wasUpToDate of BOOLS)
      for (const peerOutdated of BOOLS)
        for (const fencing of FENCING) {
          const r = diskStateOnAttach({ consistent, wasUpToDate, peerOutdated }, fencing);
          const expected: DiskState = !consistent
            ? 'Inconsistent'
            : !wasUpToDate
              ? 'Outdated'
              : peerOutdated || fencing === 'dont-care'
                ? 'UpToDate'
                : 'Consistent';
          t.equal(r.disk, expected, `${consistent}/${wasUpToDate}/${peerOutdated}/${fencing}`);
          t.equal(r.peerDisk, peerOutdated ? 'Outdated' : 'DUnknown');
        }
});

t.test('promotion: every combination obeys the invariants', async (t) => {
  let cases = 0;
  for (const role of ROLES)
    for (const disk of DISK_STATES)
      for (const connected of BOOLS)
        for (const peerRole of PEER_ROLES)
          for (const peerDisk of DISK_STATES)
            for (const allowTwoPrimaries of BOOLS)
              for (const fencing of FENCING)
                for (const force of BOOLS) {
                  const input = {
                    role,
                    disk,
                    connected,
                    peerRole,
                    peerDisk,
                    allowTwoPrimaries,
                    fencing,
                    force,
                  };
                  const d = decidePromote(input);
                  cases++;
                  const name = JSON.stringify(input);
                  if (role === 'Primary') {
                    if (!('forced' in d) || d.forced) t.fail(`already Primary is a no-op: ${name}`);
                    continue;
                  }
                  if ('code' in d) {
                    if (!/^SS_[A-Z_]+$/.test(d.code) || d.message.length === 0)
                      t.fail(`refusal shape: ${name}`);
                    continue;
                  }
                  // Allowed: there must be UpToDate data somewhere, or --force.
                  const localOk = disk === 'UpToDate';
                  const peerOk = connected && peerDisk === 'UpToDate';
                  if (!localOk && !peerOk && !force)
                    t.fail(`promoted without UpToDate data: ${name}`);
                  if (d.forced && !force) t.fail(`forced without --force: ${name}`);
                  if (d.forced && (localOk || peerOk)) t.fail(`forced needlessly: ${name}`);
                  if (connected && peerRole === 'Primary' && !allowTwoPrimaries)
                    t.fail(`two primaries: ${name}`);
                  if (diskRank(disk) < diskRank('Inconsistent') && !peerOk)
                    t.fail(`diskless promoted: ${name}`);
                }
  t.equal(cases, 2 * 9 * 2 * 3 * 9 * 2 * 3 * 2);
});

t.test('promotion: the cases an admin meets', async (t) => {
  const base = {
    role: 'Secondary' as Role,
    disk: 'UpToDate' as DiskState,
    connected: false,
    peerRole: 'Unknown' as PeerRole,
    peerDisk: 'DUnknown' as DiskState,
    allowTwoPrimaries: false,
    fencing: 'dont-care' as Fencing,
    force: false,
  };
  t.same(decidePromote(base), { forced: false });
  const fresh = decidePromote({ ...base, disk: 'Inconsistent' });
  t.match(fresh, { code: 'SS_NO_UP_TO_DATE_DISK', message: /Inconsistent.*--force/ });
  t.same(decidePromote({ ...base, disk: 'Inconsistent', force: true }), { forced: true });
  t.same(decidePromote({ ...base, disk: 'Outdated', force: true }), { forced: true });
  t.match(decidePromote({ ...base, disk: 'Outdated' }), { code: 'SS_NO_UP_TO_DATE_DISK' });
  t.match(decidePromote({ ...base, disk: 'Consistent' }), { code: 'SS_NO_UP_TO_DATE_DISK' });
  t.match(decidePromote({ ...base, disk: 'Diskless', force: true }), {
    code: 'SS_NO_UP_TO_DATE_DISK',
  });
  t.match(decidePromote({ ...base, fencing: 'resource-only' }), { code: 'SS_PRIMARY_NOP' });
  t.same(decidePromote({ ...base, fencing: 'resource-only', peerDisk: 'Outdated' }), {
    forced: false,
  });
  t.match(decidePromote({ ...base, connected: true, peerRole: 'Primary', peerDisk: 'UpToDate' }), {
    code: 'SS_TWO_PRIMARIES',
  });
  t.same(
    decidePromote({
      ...base,
      disk: 'Inconsistent',
      connected: true,
      peerDisk: 'UpToDate',
      peerRole: 'Secondary',
    }),
    {
      forced: false,
    },
  );
});

t.test('demotion is refused while clients are attached, unless forced', async (t) => {
  for (const role of ROLES)
    for (const openCount of [0, 1, 3])
      for (const force of BOOLS) {
        const r = decideDemote({ role, openCount, force });
        const refused = role === 'Primary' && openCount > 0 && !force;
        t.equal(r !== null, refused, `${role} open=${openCount} force=${force}`);
        if (r)
          t.match(r, { code: 'SS_DEVICE_IN_USE', message: new RegExp(`${openCount} NBD client`) });
      }
});

t.test('outdate needs consistent data and a Secondary, connected or not', async (t) => {
  for (const role of ROLES)
    for (const disk of DISK_STATES) {
      const r = decideOutdate({ role, disk });
      const ok = role === 'Secondary' && diskRank(disk) >= diskRank('Outdated');
      t.equal(r === null, ok, `${role} ${disk}`);
    }
});

t.test('detach leaves no Primary without data', async (t) => {
  for (const role of ROLES)
    for (const disk of DISK_STATES)
      for (const connected of BOOLS)
        for (const peerDisk of DISK_STATES) {
          const r = decideDetach({ role, disk, connected, peerDisk });
          const ok =
            disk !== 'Diskless' && (role === 'Secondary' || (connected && peerDisk === 'UpToDate'));
          t.equal(r === null, ok, `${role} ${disk} ${connected} ${peerDisk}`);
        }
});

t.test('persistent flags follow the state', async (t) => {
  for (const role of ROLES)
    for (const disk of DISK_STATES)
      for (const connected of BOOLS)
        for (const peerRole of PEER_ROLES)
          for (const peerDisk of DISK_STATES) {
            const f = persistentFlags({ role, disk, connected, peerRole, peerDisk });
            const ctx = `${role} ${disk} ${connected} ${peerRole} ${peerDisk}`;
            if (f.consistent !== ['Outdated', 'DUnknown', 'Consistent', 'UpToDate'].includes(disk))
              t.fail(ctx);
            if (f.wasUpToDate !== ['DUnknown', 'Consistent', 'UpToDate'].includes(disk))
              t.fail(ctx);
            if (
              f.primaryIndicator !==
              (role === 'Primary' || (peerRole === 'Primary' && peerDisk === 'Diskless'))
            )
              t.fail(ctx);
            if (f.connectedIndicator !== connected) t.fail(ctx);
            if (f.peerOutdated !== (peerDisk === 'Inconsistent' || peerDisk === 'Outdated'))
              t.fail(ctx);
          }
  t.pass('all combinations checked');
});

t.test(
  'a crash as Primary is dealt with only on an Established link of two UpToDate disks',
  async (t) => {
    let dealt = 0;
    for (const disk of DISK_STATES)
      for (const peerDisk of DISK_STATES)
        for (const replication of REPLICATION_STATES) {
          const ctx = `${disk} ${peerDisk} ${replication}`;
          const r = crashDealtWith({ disk, peerDisk, replication });
          // A resync running (or paused, or still exchanging bitmaps) has not copied the tail
          // yet; a diskless, Outdated or Inconsistent side holds nothing it was compared with.
          const expected =
            replication === 'Established' && disk === 'UpToDate' && peerDisk === 'UpToDate';
          if (r !== expected) t.fail(ctx);
          if (r) dealt++;
          for (const was of BOOLS) {
            const kept = keepCrashedPrimary(was, disk, [{ disk: peerDisk, replication }]);
            if (kept !== (was && !expected)) t.fail(`${was} ${ctx}`);
          }
        }
    t.equal(dealt, 1, 'exactly one combination of the three');
  },
);

t.test('crashed-primary: one peer that dealt with it is enough, none keeps it', async (t) => {
  const inSync = { disk: 'UpToDate', replication: 'Established' } as const;
  const witness = { disk: 'Diskless', replication: 'Established' } as const;
  const syncing = { disk: 'Inconsistent', replication: 'SyncSource' } as const;
  t.equal(keepCrashedPrimary(true, 'UpToDate', []), true, 'no peer at all');
  t.equal(keepCrashedPrimary(true, 'UpToDate', [witness]), true, 'a diskless witness only');
  t.equal(keepCrashedPrimary(true, 'UpToDate', [witness, syncing]), true, 'resync running');
  t.equal(keepCrashedPrimary(true, 'UpToDate', [witness, inSync]), false, 'the data peer in sync');
  t.equal(keepCrashedPrimary(true, 'Outdated', [inSync]), true, 'this disk not UpToDate');
  t.equal(keepCrashedPrimary(false, 'UpToDate', [syncing]), false, 'never set by a state');
});

t.test('invalidate and invalidate-remote: every state (drbd.md §1.2, §2.6)', async (t) => {
  const hasData = (d: DiskState): boolean => diskRank(d) >= diskRank('Inconsistent');
  const idle = (r: string): boolean => r === 'Off' || r === 'Established';
  let cases = 0;
  for (const role of ROLES)
    for (const disk of DISK_STATES)
      for (const replication of REPLICATION_STATES)
        for (const handshaking of BOOLS)
          for (const peerDisk of DISK_STATES)
            for (const peerRole of PEER_ROLES) {
              const s = { role, disk, replication, handshaking, peerDisk, peerRole };
              const ctx = JSON.stringify(s);
              const linked = replication === 'Established';
              const local = decideInvalidate(s);
              const localOk =
                hasData(disk) &&
                !handshaking &&
                idle(replication) &&
                (linked ? peerDisk === 'UpToDate' : role === 'Secondary');
              if ((local === null) !== localOk) t.fail(`invalidate ${ctx}: ${local?.message}`);
              const remote = decideInvalidateRemote(s);
              const remoteOk =
                disk === 'UpToDate' &&
                !handshaking &&
                linked &&
                hasData(peerDisk) &&
                peerRole !== 'Primary';
              if ((remote === null) !== remoteOk) t.fail(`remote ${ctx}: ${remote?.message}`);
              for (const r of [local, remote]) {
                if (r && (!/^SS_[A-Z_]+$/.test(r.code) || r.message.includes('\n'))) {
                  t.fail(`${ctx}: ${r.code} ${r.message}`);
                }
              }
              cases++;
            }
  t.equal(cases, 2 * DISK_STATES.length ** 2 * REPLICATION_STATES.length * 2 * 3, 'all cases');
  // The reasons an admin reads, one per rule.
  const base = {
    role: 'Secondary' as Role,
    disk: 'UpToDate' as DiskState,
    replication: 'Established' as const,
    handshaking: false,
    peerDisk: 'UpToDate' as DiskState,
    peerRole: 'Secondary' as PeerRole,
  };
  t.equal(decideInvalidate(base), null, 'connected Secondary');
  t.equal(decideInvalidate({ ...base, role: 'Primary' }), null, 'connected Primary');
  t.equal(decideInvalidate({ ...base, replication: 'Off' }), null, 'disconnected Secondary');
  t.equal(decideInvalidateRemote(base), null, 'connected, peer Secondary');
  t.match(decideInvalidate({ ...base, disk: 'Diskless' })?.code, 'SS_IS_DISKLESS');
  t.match(decideInvalidate({ ...base, peerDisk: 'Outdated' })?.message, /Outdated, not UpToDate/);
  t.match(decideInvalidate({ ...base, replication: 'SyncTarget' })?.code, 'SS_RESYNC_RUNNING');
  t.match(decideInvalidate({ ...base, handshaking: true })?.code, 'SS_IN_TRANSIENT_STATE');
  t.match(
    decideInvalidate({ ...base, role: 'Primary', replication: 'Off' })?.message,
    /Primary that is not connected/,
  );
  t.match(decideInvalidateRemote({ ...base, replication: 'Off' })?.code, 'SS_NEED_CONNECTION');
  t.match(decideInvalidateRemote({ ...base, disk: 'Outdated' })?.message, /Outdated, not UpToDate/);
  t.match(decideInvalidateRemote({ ...base, peerDisk: 'Diskless' })?.code, 'SS_PEER_DISKLESS');
  t.match(decideInvalidateRemote({ ...base, peerRole: 'Primary' })?.code, 'SS_PEER_PRIMARY');
  t.match(
    decideInvalidateRemote({ ...base, replication: 'PausedSyncS' })?.code,
    'SS_RESYNC_RUNNING',
  );
});
