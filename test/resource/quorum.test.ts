import t from 'tap';
import type { DiskState, Fencing, PeerRole, Role } from '../../src/resource/states.js';
import {
  type PeerLossInput,
  type PromotionInput,
  type QuorumInput,
  type QuorumPeer,
  type QuorumSetting,
  type QuorumVerdict,
  type SeenNode,
  initialLost,
  isTiebreaker,
  nextLost,
  peerLossAction,
  promotionVerdict,
  quorumVerdict,
} from '../../src/resource/quorum.js';

// Three nodes: alpha and beta hold data, gamma is the diskless tiebreaker.
const NAMES = ['alpha', 'beta', 'gamma'] as const;
type Name = (typeof NAMES)[number];
const DISKFUL: Record<Name, boolean> = { alpha: true, beta: true, gamma: false };
const BOOLS = [false, true];
const ROLES: Role[] = ['Primary', 'Secondary'];
const PEER_ROLES: PeerRole[] = ['Primary', 'Secondary', 'Unknown'];
const PEER_DISKS: DiskState[] = ['UpToDate', 'Outdated', 'Inconsistent', 'Diskless', 'DUnknown'];
const FENCING: Fencing[] = ['dont-care', 'resource-only', 'resource-and-stonith'];

function peer(name: Name, o: Partial<QuorumPeer> = {}): QuorumPeer {
  return {
    name,
    diskful: DISKFUL[name],
    connected: true,
    disk: DISKFUL[name] ? 'UpToDate' : 'Diskless',
    role: 'Secondary',
    knownOutdated: false,
    ...o,
  };
}

function input(o: Partial<QuorumInput> = {}): QuorumInput {
  return {
    quorum: 'majority',
    minimumRedundancy: 'off',
    self: { name: 'alpha', diskful: true, disk: 'UpToDate', role: 'Secondary' },
    peers: [peer('beta'), peer('gamma', { sees: [{ name: 'alpha', role: 'Secondary' }] })],
    lost: false,
    ...o,
  };
}

function promo(i: QuorumInput, o: Partial<PromotionInput> = {}): PromotionInput {
  return { ...i, allowTwoPrimaries: false, force: false, fencing: 'dont-care', ...o };
}

function same(a: QuorumVerdict, b: QuorumVerdict): boolean {
  return (
    a.quorum === b.quorum &&
    a.reason === b.reason &&
    a.contended === b.contended &&
    a.voters === b.voters &&
    a.present === b.present
  );
}

// A consistent world: who is up, which links are up, every node's state and knowledge.
// Each node's QuorumInput is derived from it the way the daemon would gather it.
interface World {
  alive: Record<Name, boolean>;
  /** Link state by sorted pair, e.g. 'alpha-beta'. */
  links: Record<string, boolean>;
  role: Record<Name, Role>;
  disk: Record<Name, DiskState>;
  knownOutdated: Record<Name, Record<Name, boolean>>;
  lost: Record<Name, boolean>;
}
const linkKey = (a: Name, b: Name) => (a < b ? `${a}-${b}` : `${b}-${a}`);

function world(o: Partial<World> = {}): World {
  const none = () => ({ alpha: false, beta: false, gamma: false });
  return {
    alive: { alpha: true, beta: true, gamma: true },
    links: { 'alpha-beta': true, 'alpha-gamma': true, 'beta-gamma': true },
    role: { alpha: 'Secondary', beta: 'Secondary', gamma: 'Secondary' },
    disk: { alpha: 'UpToDate', beta: 'UpToDate', gamma: 'Diskless' },
    knownOutdated: { alpha: none(), beta: none(), gamma: none() },
    lost: none(),
    ...o,
  };
}

const connected = (w: World, a: Name, b: Name) =>
  w.alive[a] && w.alive[b] && w.links[linkKey(a, b)] === true;

function view(w: World, self: Name, q: Partial<QuorumInput> = {}): QuorumInput {
  const peers = NAMES.filter((n) => n !== self).map((n): QuorumPeer => {
    const c = connected(w, self, n);
    const sees: SeenNode[] = NAMES.filter((m) => m !== n && connected(w, n, m)).map((m) => ({
      name: m,
      role: w.role[m],
    }));
    return {
      name: n,
      diskful: DISKFUL[n],
      connected: c,
      disk: c ? w.disk[n] : w.knownOutdated[self][n] ? 'Outdated' : 'DUnknown',
      role: c ? w.role[n] : 'Unknown',
      knownOutdated: w.knownOutdated[self][n],
      ...(c ? { sees } : {}),
    };
  });
  return {
    quorum: 'majority',
    minimumRedundancy: 'off',
    self: { name: self, diskful: DISKFUL[self], disk: w.disk[self], role: w.role[self] },
    peers,
    lost: w.lost[self],
    ...q,
  };
}

t.test('quorum off: always quorum, no reason', async (t) => {
  for (const lost of BOOLS)
    for (const c of BOOLS) {
      const v = quorumVerdict(
        input({ quorum: 'off', lost, peers: [peer('beta', { connected: c })] }),
      );
      t.same([v.quorum, v.reason, v.contended], [true, '', false]);
    }
  t.equal(initialLost('off'), false);
  t.equal(initialLost('majority'), true);
  t.equal(initialLost(2), true);
});

t.test('majority, every view of three nodes: invariants', async (t) => {
  // Everything a node can know about its two peers, enumerated: link up or down, the
  // peer's disk, role, known-Outdated flag and (for the tiebreaker) what it reports seeing.
  let cases = 0;
  let withQuorum = 0;
  let contended = 0;
  let failures = 0;
  const fail = (what: string, i: QuorumInput, v: QuorumVerdict) => {
    if (failures++ < 20) t.fail(`${what}: ${JSON.stringify(i)} -> ${JSON.stringify(v)}`);
  };
  for (const self of NAMES) {
    const [p1, p2] = NAMES.filter((n) => n !== self);
    const selfDisks: DiskState[] = DISKFUL[self]
      ? ['UpToDate', 'Outdated', 'Inconsistent', 'Consistent', 'Diskless']
      : ['Diskless'];
    const seesOptions = (p: Name): Array<SeenNode[] | undefined> => {
      if (DISKFUL[p]) return [undefined];
      const other = NAMES.find((n) => n !== p && n !== self)!;
      return [
        undefined,
        [],
        [{ name: self, role: 'Secondary' }],
        ...PEER_ROLES.map((role) => [
          { name: self, role: 'Secondary' as PeerRole },
          { name: other, role },
        ]),
      ];
    };
    const peerOptions = (p: Name): QuorumPeer[] => {
      const out: QuorumPeer[] = [];
      for (const c of BOOLS)
        for (const disk of PEER_DISKS)
          for (const role of PEER_ROLES)
            for (const knownOutdated of BOOLS)
              for (const sees of seesOptions(p))
                out.push({
                  name: p,
                  diskful: DISKFUL[p],
                  connected: c,
                  disk,
                  role,
                  knownOutdated,
                  ...(sees ? { sees } : {}),
                });
      return out;
    };
    const opts1 = peerOptions(p1);
    const opts2 = peerOptions(p2);
    for (const disk of selfDisks)
      for (const role of DISKFUL[self] ? ROLES : (['Secondary'] as Role[]))
        for (const a of opts1)
          for (const b of opts2)
            for (const lost of BOOLS) {
              const i: QuorumInput = {
                quorum: 'majority',
                minimumRedundancy: 'off',
                self: { name: self, diskful: DISKFUL[self], disk, role },
                peers: [a, b],
                lost,
              };
              const v = quorumVerdict(i);
              cases++;
              if (v.quorum) withQuorum++;
              if (v.contended) contended++;
              // Shape: one line, a reason exactly when there is no quorum.
              if (v.quorum && (v.reason !== '' || v.contended)) fail('shape', i, v);
              if (!v.quorum && !/^no quorum: [^\n]+$/.test(v.reason)) fail('reason', i, v);
              // Known-Outdated peers never count: the verdict is the one without them.
              const kept = i.peers.filter((p) => !p.knownOutdated);
              if (kept.length < 2 && !same(v, quorumVerdict({ ...i, peers: kept })))
                fail('a known-Outdated peer counted', i, v);
              // Counting: self votes unless Outdated; peers unless known (or seen) Outdated.
              const voters =
                (disk === 'Outdated' ? 0 : 1) +
                i.peers.filter((p) => !p.knownOutdated && !(p.connected && p.disk === 'Outdated'))
                  .length;
              if (v.voters !== voters) fail('voters', i, v);
              // A strict majority of the data nodes always has quorum.
              const dv =
                (DISKFUL[self] && disk !== 'Outdated' ? 1 : 0) +
                i.peers.filter(
                  (p) => p.diskful && !p.knownOutdated && !(p.connected && p.disk === 'Outdated'),
                ).length;
              const dp =
                (DISKFUL[self] && disk !== 'Outdated' ? 1 : 0) +
                i.peers.filter(
                  (p) => p.diskful && p.connected && !p.knownOutdated && p.disk !== 'Outdated',
                ).length;
              if (2 * dp > dv && !v.quorum) fail('strict majority refused', i, v);
              if (2 * dp < dv && v.quorum) fail('minority has quorum', i, v);
              if (dv === 0 && v.quorum) fail('quorum without a data voter', i, v);
              // `lost` only ever takes quorum away, and a lost node never gets quorum from the
              // tiebreaker alone: drop every diskless peer and it still has quorum.
              if (lost) {
                if (v.quorum && !quorumVerdict({ ...i, lost: false }).quorum)
                  fail('lost gave quorum', i, v);
                const noTb = i.peers.map((p) => (p.diskful ? p : { ...p, connected: false }));
                if (v.quorum && !quorumVerdict({ ...i, peers: noTb }).quorum)
                  fail('lost node got quorum from the tiebreaker alone', i, v);
              }
              // A contended verdict needs a connected tiebreaker and a tie.
              if (v.contended && (v.quorum || 2 * dp !== dv)) fail('contended', i, v);
              // A tie is won only with the tiebreaker in the partition.
              if (
                v.quorum &&
                2 * dp === dv &&
                DISKFUL[self] &&
                !i.peers.some((p) => !p.diskful && p.connected && !p.knownOutdated)
              )
                fail('tie won without a tiebreaker', i, v);
            }
  }
  t.equal(failures, 0, 'no invariant broken');
  t.ok(withQuorum > 0 && withQuorum < cases, `${withQuorum} of ${cases} views have quorum`);
  t.ok(contended > 0, `${contended} contended`);
});

t.test(
  'consistent worlds: two data nodes that cannot reach each other never both have quorum',
  async (t) => {
    let worlds = 0;
    let oneSide = 0;
    let failures = 0;
    const settings: Array<[QuorumSetting, QuorumSetting]> = [
      ['majority', 'off'],
      ['majority', 1],
      ['majority', 'majority'],
      ['all', 'off'],
      [3, 'off'],
    ];
    const diskStates: DiskState[] = ['UpToDate', 'Outdated', 'Inconsistent'];
    for (const ab of BOOLS)
      for (const ag of BOOLS)
        for (const bg of BOOLS)
          for (const ra of ROLES)
            for (const rb of ROLES)
              for (const da of diskStates)
                for (const db of diskStates)
                  // Known Outdated only when it is true: the data peer is Outdated, or the
                  // tiebreaker left gracefully (so its link is down).
                  for (const aKnowsB of db === 'Outdated' ? BOOLS : [false])
                    for (const bKnowsA of da === 'Outdated' ? BOOLS : [false])
                      for (const aKnowsG of ag ? [false] : BOOLS)
                        for (const bKnowsG of bg ? [false] : BOOLS)
                          for (const la of BOOLS)
                            for (const lb of BOOLS) {
                              const w = world({
                                links: { 'alpha-beta': ab, 'alpha-gamma': ag, 'beta-gamma': bg },
                                role: { alpha: ra, beta: rb, gamma: 'Secondary' },
                                disk: { alpha: da, beta: db, gamma: 'Diskless' },
                                knownOutdated: {
                                  alpha: { alpha: false, beta: aKnowsB, gamma: aKnowsG },
                                  beta: { alpha: bKnowsA, beta: false, gamma: bKnowsG },
                                  gamma: { alpha: false, beta: false, gamma: false },
                                },
                                lost: { alpha: la, beta: lb, gamma: false },
                              });
                              worlds++;
                              for (const [quorum, minimumRedundancy] of settings) {
                                const q = { quorum, minimumRedundancy };
                                const qa = quorumVerdict(view(w, 'alpha', q)).quorum;
                                const qb = quorumVerdict(view(w, 'beta', q)).quorum;
                                if (
                                  qa !== qb &&
                                  quorum === 'majority' &&
                                  minimumRedundancy === 'off'
                                )
                                  oneSide++;
                                if (!ab && qa && qb && failures++ < 20)
                                  t.fail(
                                    `both sides have quorum (${String(quorum)}): ${JSON.stringify(w)}`,
                                  );
                              }
                            }
    t.equal(failures, 0);
    t.ok(oneSide > 0, `${oneSide} of ${worlds} worlds give quorum to one side only`);
  },
);

t.test('named cases', async (t) => {
  t.test('(1) alpha Primary, alpha-beta cut, both see gamma: alpha keeps quorum', async (t) => {
    const w = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
    w.links['alpha-beta'] = false;
    const a = quorumVerdict(view(w, 'alpha'));
    const b = quorumVerdict(view(w, 'beta'));
    t.same(a, { quorum: true, reason: '', voters: 3, present: 2, contended: false });
    t.same(b, {
      quorum: false,
      reason: 'no quorum: peer alpha is Primary and gamma still sees it',
      voters: 3,
      present: 2,
      contended: true,
    });
    t.equal(nextLost(false, b, view(w, 'beta')), false, 'a contended loss is not sticky');
    t.equal(
      peerLossAction({ ...view(w, 'alpha'), fencing: 'dont-care', lostPeer: 'beta' }),
      'outdate-through-tiebreaker',
    );
    // Nobody Primary: neither side may take the tie.
    const s = world();
    s.links['alpha-beta'] = false;
    t.same(quorumVerdict(view(s, 'alpha')), {
      quorum: false,
      reason: 'no quorum: tie with beta, both seen by gamma, neither Primary',
      voters: 3,
      present: 2,
      contended: true,
    });
    // Both Primary (after a split brain): neither.
    const both = world({ role: { alpha: 'Primary', beta: 'Primary', gamma: 'Secondary' } });
    both.links['alpha-beta'] = false;
    t.match(quorumVerdict(view(both, 'alpha')), {
      quorum: false,
      reason: 'no quorum: peer beta is Primary and gamma still sees it',
    });
  });

  t.test('(2) alpha cut from both, gamma no longer sees it: beta has quorum', async (t) => {
    const w = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
    w.links['alpha-beta'] = false;
    w.links['alpha-gamma'] = false;
    const b = quorumVerdict(view(w, 'beta'));
    t.same(b, { quorum: true, reason: '', voters: 3, present: 2, contended: false });
    const a = quorumVerdict(view(w, 'alpha'));
    t.same(a, {
      quorum: false,
      reason: 'no quorum: 1 of 2 data nodes and no tiebreaker',
      voters: 3,
      present: 1,
      contended: false,
    });
    t.equal(nextLost(false, a, view(w, 'alpha')), true, 'alone: lost');
    t.equal(
      peerLossAction({ ...view(w, 'alpha'), fencing: 'dont-care', lostPeer: 'beta' }),
      'freeze',
    );
    // Had beta lost quorum before, gamma alone could not give it back.
    w.lost.beta = true;
    t.same(quorumVerdict(view(w, 'beta')), {
      quorum: false,
      reason: 'no quorum: lost it earlier; regains it only with a data node connected',
      voters: 3,
      present: 2,
      contended: false,
    });
  });

  t.test('(3) last man standing', async (t) => {
    const w = world();
    w.alive.gamma = false;
    t.ok(quorumVerdict(view(w, 'alpha')).quorum, 'gamma down: alpha');
    t.ok(quorumVerdict(view(w, 'beta')).quorum, 'gamma down: beta');
    w.alive.beta = false;
    t.same(quorumVerdict(view(w, 'alpha')), {
      quorum: false,
      reason: 'no quorum: 1 of 2 data nodes and no tiebreaker',
      voters: 3,
      present: 1,
      contended: false,
    });
    // beta (and gamma) left with `down`, saying so: they no longer vote.
    w.knownOutdated.alpha.beta = true;
    t.same(
      quorumVerdict(view(w, 'alpha')),
      { quorum: true, reason: '', voters: 2, present: 1, contended: false },
      'gamma crashed, beta left gracefully',
    );
    w.knownOutdated.alpha.gamma = true;
    t.same(
      quorumVerdict(view(w, 'alpha')),
      { quorum: true, reason: '', voters: 1, present: 1, contended: false },
      'both left gracefully',
    );
    // The Outdated node that left cannot come back to quorum without alpha.
    w.alive.alpha = false;
    w.alive.beta = true;
    w.alive.gamma = true;
    w.disk.beta = 'Outdated';
    w.knownOutdated.alpha.gamma = false;
    t.same(quorumVerdict(view(w, 'beta')), {
      quorum: false,
      reason: 'no quorum: sees 0 of 1 data node',
      voters: 2,
      present: 1,
      contended: false,
    });
  });

  t.test('(4) two nodes, quorum majority: the survivor has none', async (t) => {
    const i = input({
      peers: [peer('beta', { connected: false, disk: 'DUnknown', role: 'Unknown' })],
    });
    t.same(quorumVerdict(i), {
      quorum: false,
      reason: 'no quorum: 1 of 2 data nodes and no tiebreaker',
      voters: 2,
      present: 1,
      contended: false,
    });
    t.ok(quorumVerdict(input({ peers: [peer('beta')] })).quorum, 'both up');
    t.ok(
      quorumVerdict(input({ peers: [peer('beta', { connected: false, knownOutdated: true })] }))
        .quorum,
      'the peer left gracefully',
    );
    t.equal(isTiebreaker({ self: { diskful: false }, peers: [peer('alpha')] }), false);
    t.equal(isTiebreaker({ self: { diskful: false }, peers: [peer('alpha'), peer('beta')] }), true);
  });

  t.test('(5) all, numbers, minimum redundancy', async (t) => {
    const w = world();
    w.links['alpha-beta'] = false;
    t.same(quorumVerdict(view(w, 'alpha', { quorum: 'all' })), {
      quorum: false,
      reason: 'no quorum: sees 2 of 3 nodes',
      voters: 3,
      present: 2,
      contended: false,
    });
    t.ok(quorumVerdict(view(world(), 'alpha', { quorum: 'all' })).quorum);
    w.alive.beta = false;
    w.knownOutdated.alpha.beta = true;
    t.ok(quorumVerdict(view(w, 'alpha', { quorum: 'all' })).quorum, 'all of the voters left');
    // A number counts voters in the partition, the tiebreaker included.
    const cut = world();
    cut.links['alpha-beta'] = false;
    cut.links['alpha-gamma'] = false;
    t.same(quorumVerdict(view(cut, 'alpha', { quorum: 2 })), {
      quorum: false,
      reason: 'no quorum: sees 1 voting node, needs 2',
      voters: 3,
      present: 1,
      contended: false,
    });
    t.ok(quorumVerdict(view(cut, 'beta', { quorum: 2 })).quorum, 'beta and gamma: 2');
    t.ok(quorumVerdict(view(cut, 'alpha', { quorum: 1 })).quorum, '1: alone is enough');
    t.match(quorumVerdict(view(cut, 'beta', { quorum: 3 })), {
      quorum: false,
      reason: 'no quorum: sees 2 voting nodes, needs 3',
    });
    // Minimum redundancy: UpToDate nodes in the partition.
    const all = world();
    t.ok(quorumVerdict(view(all, 'alpha', { minimumRedundancy: 2 })).quorum);
    t.ok(quorumVerdict(view(all, 'alpha', { minimumRedundancy: 'all' })).quorum);
    all.disk.beta = 'Inconsistent';
    t.same(quorumVerdict(view(all, 'alpha', { minimumRedundancy: 2 })), {
      quorum: false,
      reason: 'no quorum: 1 UpToDate node, minimum redundancy 2',
      voters: 3,
      present: 3,
      contended: false,
    });
    t.match(quorumVerdict(view(all, 'alpha', { minimumRedundancy: 'majority' })), {
      quorum: false,
      reason: 'no quorum: 1 UpToDate node, minimum redundancy 2',
    });
    t.ok(quorumVerdict(view(all, 'alpha', { minimumRedundancy: 1 })).quorum);
    // It disables last man standing for N > 1.
    const lms = world();
    lms.alive.beta = false;
    lms.knownOutdated.alpha.beta = true;
    t.ok(quorumVerdict(view(lms, 'alpha', { minimumRedundancy: 1 })).quorum);
    t.match(quorumVerdict(view(lms, 'alpha', { minimumRedundancy: 2 })), {
      quorum: false,
      reason: 'no quorum: 1 UpToDate node, minimum redundancy 2',
    });
  });

  t.test('a Primary that lost quorum does not win a contended tie back', async (t) => {
    // alpha froze alone; meanwhile beta had quorum with gamma, was promoted, wrote, and
    // was demoted. alpha now reaches gamma, which also sees beta.
    const w = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
    w.links['alpha-beta'] = false;
    w.lost.alpha = true;
    t.same(quorumVerdict(view(w, 'alpha')), {
      quorum: false,
      reason: 'no quorum: lost it earlier; regains it only with a data node connected',
      voters: 3,
      present: 2,
      contended: false,
    });
  });

  t.test('the tiebreaker view unknown, or a role unknown', async (t) => {
    const i = input({
      self: { name: 'alpha', diskful: true, disk: 'UpToDate', role: 'Primary' },
      peers: [peer('beta', { connected: false, disk: 'DUnknown', role: 'Unknown' }), peer('gamma')],
    });
    t.same(quorumVerdict(i), {
      quorum: false,
      reason: "no quorum: 1 of 2 data nodes, waiting for gamma's view",
      voters: 3,
      present: 2,
      contended: true,
    });
    const unknownRole = {
      ...i,
      peers: [i.peers[0]!, peer('gamma', { sees: [{ name: 'beta', role: 'Unknown' }] })],
    };
    t.match(quorumVerdict(unknownRole), {
      quorum: false,
      reason: 'no quorum: peer beta may be Primary and gamma still sees it',
      contended: true,
    });
  });
});

t.test('nextLost', async (t) => {
  const w = world();
  w.links['alpha-beta'] = false;
  w.links['alpha-gamma'] = false;
  const alone = view(w, 'alpha');
  const vAlone = quorumVerdict(alone);
  t.equal(nextLost(false, vAlone, alone), true, 'a loss sets it');
  const withTb = view(w, 'beta');
  t.equal(
    nextLost(false, quorumVerdict(withTb), withTb),
    false,
    'quorum through the tiebreaker keeps it clear',
  );
  t.equal(
    nextLost(true, quorumVerdict({ ...withTb, lost: true }), { ...withTb, lost: true }),
    true,
    'the tiebreaker alone does not clear it',
  );
  const full = view(world(), 'alpha', { lost: true });
  t.equal(
    nextLost(true, quorumVerdict(full), full),
    false,
    'an UpToDate data node with quorum clears it',
  );
  const outdatedPeer = view(
    world({ disk: { alpha: 'UpToDate', beta: 'Inconsistent', gamma: 'Diskless' } }),
    'alpha',
    { lost: true },
  );
  t.equal(
    nextLost(true, quorumVerdict(outdatedPeer), outdatedPeer),
    true,
    'an Inconsistent data node does not',
  );
  const contended = world();
  contended.links['alpha-beta'] = false;
  const c = view(contended, 'alpha');
  t.equal(nextLost(false, quorumVerdict(c), c), false, 'contended: unchanged');
  t.equal(nextLost(true, quorumVerdict({ ...c, lost: true }), { ...c, lost: true }), true);
  const off = { ...alone, quorum: 'off' as const };
  t.equal(nextLost(false, quorumVerdict(off), off), false, 'quorum off: unchanged');
  t.equal(nextLost(true, quorumVerdict(off), off), true);
});

t.test('promotion: each reason, exactly', async (t) => {
  const w = world();
  const may = (reason: string) => ({ may: true, reason });
  const no = (reason: string) => ({ may: false, reason });
  t.same(promotionVerdict(promo(view(w, 'alpha'))), may('may be promoted'));
  const pw = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
  t.same(promotionVerdict(promo(view(pw, 'alpha'))), may('is Primary'));
  t.same(promotionVerdict(promo(view(w, 'gamma'))), no('diskless tiebreaker: holds no data'));
  t.same(
    promotionVerdict(promo(view(w, 'gamma'), { force: true })),
    no('diskless tiebreaker: holds no data'),
  );
  t.same(promotionVerdict(promo(view(pw, 'beta'))), no('peer alpha is Primary'));
  t.same(promotionVerdict(promo(view(pw, 'beta'), { force: true })), no('peer alpha is Primary'));
  t.same(
    promotionVerdict(promo(view(pw, 'beta'), { allowTwoPrimaries: true })),
    may('may be promoted'),
  );
  // Across a cut, seen by the tiebreaker: allow-two-primaries does not help.
  const cut = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
  cut.links['alpha-beta'] = false;
  t.same(
    promotionVerdict(promo(view(cut, 'beta'), { allowTwoPrimaries: true, force: true })),
    no('peer alpha is Primary'),
  );
  t.same(
    promotionVerdict(promo(view(cut, 'beta'), { quorum: 'off' })),
    no('peer alpha is Primary'),
  );

  // Data. Alone, beta and gamma lost: quorum is off here so that only data speaks.
  const solo = world();
  solo.alive.beta = false;
  solo.alive.gamma = false;
  const soloView = (disk: DiskState, o: Partial<PromotionInput> = {}) => {
    const s = { ...solo, disk: { ...solo.disk, alpha: disk } };
    return promotionVerdict(promo(view(s, 'alpha', { quorum: 'off' }), o));
  };
  t.same(soloView('Outdated'), no('disk Outdated'));
  t.same(soloView('Outdated', { force: true }), may('forced: disk Outdated becomes UpToDate'));
  t.same(soloView('Inconsistent'), no('disk Inconsistent'));
  t.same(
    soloView('Inconsistent', { force: true }),
    may('forced: disk Inconsistent becomes UpToDate'),
  );
  t.same(soloView('Consistent'), no('disk Consistent: peer not known Outdated'));
  t.same(soloView('Consistent', { fencing: 'resource-only' }), may('fence-peer runs first'));
  t.same(soloView('Consistent', { force: true }), may('forced: disk Consistent becomes UpToDate'));
  t.same(soloView('UpToDate', { fencing: 'resource-and-stonith' }), may('fence-peer runs first'));
  t.same(soloView('UpToDate'), may('may be promoted'));
  t.same(soloView('Diskless'), no('disk Diskless and no UpToDate peer to read from'));
  t.same(
    soloView('Diskless', { force: true }),
    no('disk Diskless and no UpToDate peer to read from'),
  );
  t.same(soloView('Failed', { force: true }), no('disk Failed and no UpToDate peer to read from'));
  const gone = {
    ...solo,
    knownOutdated: { ...solo.knownOutdated, alpha: { alpha: false, beta: true, gamma: false } },
  };
  gone.disk = { ...gone.disk, alpha: 'Consistent' };
  t.same(
    promotionVerdict(promo(view(gone, 'alpha', { quorum: 'off' }))),
    may('may be promoted'),
    'Consistent, peer known Outdated',
  );
  // A diskless node of a two-node resource reads from its UpToDate peer.
  const client = input({
    self: { name: 'alpha', diskful: false, disk: 'Diskless', role: 'Secondary' },
    peers: [peer('beta')],
  });
  t.same(promotionVerdict(promo(client)), may('may be promoted'));
  const clientAlone = {
    ...client,
    quorum: 'off' as const,
    peers: [peer('beta', { connected: false, disk: 'DUnknown' })],
  };
  t.same(
    promotionVerdict(promo(clientAlone)),
    no('disk Diskless and no UpToDate peer to read from'),
  );
  // An Outdated node connected to an UpToDate peer reads from it.
  const behind = world({ disk: { alpha: 'Outdated', beta: 'UpToDate', gamma: 'Diskless' } });
  t.same(promotionVerdict(promo(view(behind, 'alpha'))), may('may be promoted'));

  // Quorum: the verdict's reason, and --force never beats it.
  const alone = world();
  alone.links['alpha-beta'] = false;
  alone.links['alpha-gamma'] = false;
  t.same(
    promotionVerdict(promo(view(alone, 'alpha'))),
    no('no quorum: 1 of 2 data nodes and no tiebreaker'),
  );
  t.same(
    promotionVerdict(promo(view(alone, 'alpha'), { force: true })),
    no('no quorum: 1 of 2 data nodes and no tiebreaker'),
  );
  t.same(
    promotionVerdict(promo(view(alone, 'alpha', { quorum: 'all' }), { force: true })),
    no('no quorum: sees 1 of 3 nodes'),
  );
  t.same(promotionVerdict(promo(view(alone, 'beta'))), may('may be promoted'));
  t.same(
    promotionVerdict(promo(view(alone, 'beta', { lost: true }), { force: true })),
    no('no quorum: lost it earlier; regains it only with a data node connected'),
  );
  // Data reasons come before quorum reasons.
  const outdatedAlone = { ...alone, disk: { ...alone.disk, alpha: 'Outdated' as DiskState } };
  t.same(promotionVerdict(promo(view(outdatedAlone, 'alpha'))), no('disk Outdated'));
  t.same(
    promotionVerdict(promo(view(outdatedAlone, 'alpha'), { force: true })),
    no('no quorum: sees 0 of 1 data node'),
  );
});

t.test(
  'promotion: every combination obeys the invariants; --force only beats data reasons',
  async (t) => {
    const DATA_REASONS = /^disk (Outdated|Inconsistent|Consistent: peer not known Outdated)$/;
    let cases = 0;
    let allowed = 0;
    let failures = 0;
    const fail = (what: string, i: PromotionInput, r: unknown) => {
      if (failures++ < 20) t.fail(`${what}: ${JSON.stringify(i)} -> ${JSON.stringify(r)}`);
    };
    const seesOptions: Array<SeenNode[] | undefined> = [
      undefined,
      [{ name: 'alpha', role: 'Secondary' }],
      [
        { name: 'alpha', role: 'Secondary' },
        { name: 'beta', role: 'Primary' },
      ],
      [
        { name: 'alpha', role: 'Secondary' },
        { name: 'beta', role: 'Secondary' },
      ],
    ];
    for (const disk of [
      'UpToDate',
      'Outdated',
      'Inconsistent',
      'Consistent',
      'Diskless',
    ] as DiskState[])
      for (const role of ROLES)
        for (const lost of BOOLS)
          for (const bc of BOOLS)
            for (const bd of ['UpToDate', 'Outdated', 'DUnknown'] as DiskState[])
              for (const br of ['Primary', 'Secondary'] as PeerRole[])
                for (const bko of BOOLS)
                  for (const gc of BOOLS)
                    for (const gko of BOOLS)
                      for (const sees of seesOptions)
                        for (const quorum of ['off', 'majority'] as QuorumSetting[])
                          for (const allowTwoPrimaries of BOOLS)
                            for (const fencing of FENCING) {
                              const base: PromotionInput = {
                                quorum,
                                minimumRedundancy: 'off',
                                self: { name: 'alpha', diskful: true, disk, role },
                                peers: [
                                  peer('beta', {
                                    connected: bc,
                                    disk: bd,
                                    role: br,
                                    knownOutdated: bko,
                                  }),
                                  peer('gamma', {
                                    connected: gc,
                                    knownOutdated: gko,
                                    ...(sees ? { sees } : {}),
                                  }),
                                ],
                                lost,
                                allowTwoPrimaries,
                                fencing,
                                force: false,
                              };
                              const plain = promotionVerdict(base);
                              const forced = promotionVerdict({ ...base, force: true });
                              cases++;
                              if (plain.may) allowed++;
                              for (const r of [plain, forced])
                                if (r.reason === '' || r.reason.includes('\n'))
                                  fail('reason', base, r);
                              if (role === 'Primary') {
                                if (!plain.may || plain.reason !== 'is Primary')
                                  fail('Primary', base, plain);
                                continue;
                              }
                              if (plain.may && !forced.may)
                                fail('force took a promotion away', base, forced);
                              if (
                                !DATA_REASONS.test(plain.reason) &&
                                forced.reason !== plain.reason
                              )
                                fail('force changed a reason other than data', base, forced);
                              if (forced.may && !plain.may && !DATA_REASONS.test(plain.reason))
                                fail('force beat a reason other than data', base, plain);
                              if (!forced.may) continue;
                              if (quorum !== 'off' && !quorumVerdict(base).quorum)
                                fail('promoted without quorum', base, forced);
                              if (bc && br === 'Primary' && !allowTwoPrimaries)
                                fail('two Primaries', base, forced);
                              if (
                                gc &&
                                sees?.some((s) => s.name === 'beta' && s.role === 'Primary') &&
                                !bc
                              )
                                fail('a Primary across the cut', base, forced);
                              const data =
                                disk === 'UpToDate' ||
                                (bc && bd === 'UpToDate') ||
                                (disk === 'Consistent' &&
                                  (bko ||
                                    (bc && bd === 'Outdated') ||
                                    (!bc && fencing !== 'dont-care')));
                              if (plain.may && !data) fail('promoted without data', base, plain);
                              if (disk === 'Diskless' && !(bc && bd === 'UpToDate'))
                                fail('diskless without a peer', base, forced);
                            }
    t.equal(failures, 0, 'no invariant broken');
    t.ok(allowed > 0 && allowed < cases, `${allowed} of ${cases} may be promoted`);
  },
);

t.test('peer loss: each action and why', async (t) => {
  const primary = world({ role: { alpha: 'Primary', beta: 'Secondary', gamma: 'Secondary' } });
  const lose = (w: World, o: Partial<PeerLossInput> = {}) =>
    peerLossAction({ ...view(w, 'alpha'), fencing: 'dont-care', lostPeer: 'beta', ...o });
  const cut = structuredClone(primary);
  cut.links['alpha-beta'] = false;
  t.equal(lose(cut, { quorum: 'off' }), 'complete', 'quorum off, dont-care: as today');
  t.equal(lose(cut, { quorum: 'off', fencing: 'resource-only' }), 'fence');
  t.equal(lose(cut, { fencing: 'resource-and-stonith' }), 'fence', 'quorum kept, fencing on');
  t.equal(lose(cut), 'outdate-through-tiebreaker', 'gamma still sees beta');
  const gammaLost = structuredClone(cut);
  gammaLost.links['beta-gamma'] = false;
  t.equal(lose(gammaLost), 'outdate-through-tiebreaker', 'gamma lost beta too: it records it');
  const alone = structuredClone(cut);
  alone.links['alpha-gamma'] = false;
  t.equal(lose(alone), 'freeze');
  t.equal(lose(alone, { fencing: 'resource-only' }), 'freeze', 'no quorum: fencing would not help');
  const known = structuredClone(alone);
  known.knownOutdated.alpha.beta = true;
  t.equal(lose(known), 'complete', 'beta known Outdated: last man standing');
  t.equal(lose(alone, { quorum: 1 }), 'complete', 'a numeric quorum the admin chose');
  t.equal(lose(cut, { quorum: 2 }), 'outdate-through-tiebreaker');
  t.equal(lose(cut, { lostPeer: 'gamma' }), 'complete', 'a diskless peer holds nothing');
  t.throws(() => lose(cut, { lostPeer: 'delta' }));
});

t.test('peer loss: every combination obeys the invariants', async (t) => {
  let failures = 0;
  const seen = new Set<string>();
  for (const quorum of ['off', 'majority', 'all', 1, 2] as QuorumSetting[])
    for (const fencing of FENCING)
      for (const lost of BOOLS)
        for (const bko of BOOLS)
          for (const gc of BOOLS)
            for (const gko of BOOLS)
              for (const seesBeta of [undefined, 'none', 'Secondary', 'Primary'] as const) {
                const sees: SeenNode[] | undefined =
                  seesBeta === undefined
                    ? undefined
                    : [
                        { name: 'alpha', role: 'Primary' },
                        ...(seesBeta === 'none' ? [] : [{ name: 'beta', role: seesBeta }]),
                      ];
                const i: PeerLossInput = {
                  quorum,
                  minimumRedundancy: 'off',
                  self: { name: 'alpha', diskful: true, disk: 'UpToDate', role: 'Primary' },
                  peers: [
                    peer('beta', {
                      connected: false,
                      disk: bko ? 'Outdated' : 'DUnknown',
                      role: 'Unknown',
                      knownOutdated: bko,
                    }),
                    peer('gamma', { connected: gc, knownOutdated: gko, ...(sees ? { sees } : {}) }),
                  ],
                  lost,
                  fencing,
                  lostPeer: 'beta',
                };
                const a = peerLossAction(i);
                seen.add(a);
                const q = quorumVerdict(i).quorum;
                const bad = (what: string) => {
                  if (failures++ < 20) t.fail(`${what}: ${JSON.stringify(i)} -> ${a}`);
                };
                if ((a === 'freeze') !== (quorum !== 'off' && !q))
                  bad('freeze exactly without quorum');
                if (a === 'fence' && fencing === 'dont-care') bad('fence without fencing');
                if (a === 'outdate-through-tiebreaker' && !(gc && !gko))
                  bad('no tiebreaker to ask');
                if (a === 'complete' && !bko && fencing !== 'dont-care')
                  bad('completed without fencing the peer');
                if (a === 'complete' && !bko && quorum === 'majority') bad('completed on a tie');
              }
  t.equal(failures, 0);
  t.same([...seen].sort(), ['complete', 'fence', 'freeze', 'outdate-through-tiebreaker']);
});
