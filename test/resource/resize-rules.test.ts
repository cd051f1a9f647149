// The rules of online resize (src/resource/resize-rules.ts), against an oracle written
// independently over every combination of this node's and up to two data peers' states,
// plus the size choice over a grid of sizes.
import t from 'tap';
import {
  growRefusal,
  isRefusal,
  resizeSetup,
  resizeTarget,
  type ResizePeerView,
  type ResizeSetup,
} from '../../src/resource/resize-rules.js';
import {
  DISK_STATES,
  type DiskState,
  type PeerRole,
  type Role,
} from '../../src/resource/states.js';

const ROLES: Role[] = ['Primary', 'Secondary'];
const PEER_ROLES: PeerRole[] = ['Primary', 'Secondary', 'Unknown'];
const REPLICATION = ['Established', 'SyncSource', 'SyncTarget', 'PausedSyncT', 'VerifyS'];
const DISKS: DiskState[] = [...DISK_STATES];

function peerViews(name: string): ResizePeerView[] {
  const out: ResizePeerView[] = [];
  for (const established of [false, true])
    for (const replication of established ? REPLICATION : ['Off'])
      for (const disk of established ? DISKS : (['DUnknown'] as DiskState[]))
        for (const role of established ? PEER_ROLES : (['Unknown'] as PeerRole[]))
          out.push({
            name,
            established,
            connection: established ? 'Connected' : 'Connecting',
            replication,
            disk,
            role,
          });
  return out;
}

/** The oracle: the refusal code (the first that applies), or where it runs. */
function expected(role: Role, disk: DiskState, peers: ResizePeerView[]): string {
  if (disk === 'Diskless') return 'ERR_NO_DISK';
  if (peers.some((p) => !p.established)) return 'ERR_RESIZE_DISCONNECTED';
  if (peers.some((p) => p.replication !== 'Established')) return 'ERR_RESIZE_RESYNC';
  if (disk !== 'UpToDate' || peers.some((p) => p.disk !== 'UpToDate')) return 'ERR_RESIZE_DISK';
  const primaries = (role === 'Primary' ? 1 : 0) + peers.filter((p) => p.role === 'Primary').length;
  if (primaries > 1) return 'ERR_RESIZE_PRIMARIES';
  const other = peers.find((p) => p.role === 'Primary');
  return other ? `forward:${other.name}` : 'here';
}

function outcome(s: ResizeSetup): string {
  if (isRefusal(s)) return s.code;
  return s.run === 'here' ? 'here' : `forward:${s.to}`;
}

t.test('resizeSetup over every state of this node and up to two data peers', async (t) => {
  const betas = peerViews('beta');
  const gammas = peerViews('gamma');
  let cases = 0;
  let mismatches = 0;
  for (const role of ROLES)
    for (const disk of DISKS) {
      const sets: ResizePeerView[][] = [[]];
      for (const b of betas) sets.push([b]);
      for (const b of betas) for (const g of gammas) sets.push([b, g]);
      for (const peers of sets) {
        const got = resizeSetup({ node: 'alpha', role, disk, peers });
        const want = expected(role, disk, peers);
        cases++;
        if (outcome(got) !== want) {
          mismatches++;
          if (mismatches <= 5)
            t.fail(`${role}/${disk}/${JSON.stringify(peers)}: ${outcome(got)} ≠ ${want}`);
        }
        if (isRefusal(got)) {
          if (!/^[^\n]+$/.test(got.message)) t.fail(`multi-line refusal: ${got.message}`);
        }
      }
    }
  t.equal(mismatches, 0, `every one of ${cases} cases agrees with the oracle`);
  t.ok(cases > 100000, 'the grid is the whole product');
});

t.test('resizeSetup names what blocks it', async (t) => {
  const up: ResizePeerView = {
    name: 'beta',
    established: true,
    connection: 'Connected',
    replication: 'Established',
    disk: 'UpToDate',
    role: 'Secondary',
  };
  /** The refusal message for alpha (Primary) with one peer changed from `up` by `patch`. */
  const said = (patch: Partial<ResizePeerView>, disk: DiskState = 'UpToDate'): string => {
    const s = resizeSetup({ node: 'alpha', role: 'Primary', disk, peers: [{ ...up, ...patch }] });
    return isRefusal(s) ? s.message : '';
  };
  t.match(said({}, 'Diskless'), /alpha has no disk attached/);
  t.match(
    said({ established: false, connection: 'StandAlone' }),
    /beta is not connected \(StandAlone\)/,
  );
  t.match(said({ replication: 'SyncTarget' }), /SyncTarget with beta is running/);
  t.match(said({ disk: 'Outdated' }), /the disk on beta is Outdated/);
  t.match(said({ role: 'Primary' }), /alpha and beta are both Primary/);
  t.equal(said({}), '', 'nothing to refuse');
  t.same(resizeSetup({ node: 'alpha', role: 'Secondary', disk: 'UpToDate', peers: [] }), {
    run: 'here',
  });
});

t.test('resizeTarget over a grid of sizes', async (t) => {
  const S = [8, 12, 16, 20].map((m) => m << 20);
  let cases = 0;
  for (const dev of S)
    for (const a of S)
      for (const b of S)
        for (const req of [undefined, ...S]) {
          if (a < dev || b < dev) continue; // an attached disk never holds less than the device
          const backing = [
            { node: 'alpha', bytes: a },
            { node: 'beta', bytes: b },
          ];
          const requested = req === undefined ? undefined : { bytes: req, by: '--size' };
          const got = resizeTarget({ deviceBytes: dev, backing, requested });
          const limit = Math.min(a, b);
          const want = req ?? limit;
          cases++;
          if (req !== undefined && req > limit) {
            t.ok(
              isRefusal(got) && got.code === 'ERR_DISK_TOO_SMALL',
              `${dev}/${a}/${b}/${req}: too small`,
            );
          } else if (want < dev) {
            t.ok(
              isRefusal(got) && got.code === 'ERR_RESIZE_SHRINK',
              `${dev}/${a}/${b}/${req}: shrink`,
            );
            if (isRefusal(got)) t.match(got.message, `${dev}`, 'names the present size');
            if (isRefusal(got)) t.match(got.message, `${want}`, 'names the size asked');
          } else if (want === dev) {
            t.ok('unchanged' in got, `${dev}/${a}/${b}/${req}: nothing to do`);
          } else {
            t.same(got, { grow: want }, `${dev}/${a}/${b}/${req}: grows to ${want}`);
          }
        }
  t.ok(cases > 50);
});

t.test('growRefusal: never shrink, never past the own disk', async (t) => {
  const M = 1 << 20;
  t.equal(growRefusal('beta', 8 * M, 16 * M, 12 * M), undefined);
  t.equal(
    growRefusal('beta', 8 * M, 16 * M, 8 * M),
    undefined,
    'the present size is nothing to do',
  );
  t.equal(growRefusal('beta', 8 * M, 16 * M, 16 * M), undefined, 'all the disk');
  t.match(growRefusal('beta', 8 * M, 16 * M, 4 * M), {
    code: 'ERR_RESIZE_SHRINK',
    message: /from 8388608 to 4194304/,
  });
  t.match(growRefusal('beta', 8 * M, 16 * M, 20 * M), {
    code: 'ERR_DISK_TOO_SMALL',
    message: /beta has only 16777216 bytes, 20971520 asked/,
  });
});
