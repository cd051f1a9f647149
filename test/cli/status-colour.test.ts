// The colour rules of `urbdadm status` (src/control/status-colour.ts): every state word has
// a tone, the text is painted only where a state is, and colour is wanted only on a
// terminal without NO_COLOR or TERM=dumb.
import t from 'tap';
import {
  colourStatus,
  CONNECTION_TONE,
  DISK_TONE,
  REPLICATION_TONE,
  toneOf,
  wantColour,
} from '../../src/control/status-colour.js';
import { renderStatus } from '../../src/control/status-text.js';
import { CONNECTION_STATES, DISK_STATES, REPLICATION_STATES } from '../../src/resource/states.js';
import type { PeerStatus, ResourceStatus } from '../../src/resource/status.js';
import { peerStatus, resourceStatus } from '../helpers/status-fixture.js';

const ESC = String.fromCharCode(0x1b);
const strip = (s: string): string => s.replace(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');

t.test('every state has a tone; healthy is good, stuck is bad', async (t) => {
  t.same(Object.keys(DISK_TONE).sort(), [...DISK_STATES].sort());
  t.same(Object.keys(CONNECTION_TONE).sort(), [...CONNECTION_STATES].sort());
  t.same(Object.keys(REPLICATION_TONE).sort(), [...REPLICATION_STATES].sort());
  const good = (tbl: Record<string, string>): string[] =>
    Object.keys(tbl).filter((k) => tbl[k] === 'good');
  t.same(good(DISK_TONE), ['UpToDate']);
  t.same(good(CONNECTION_TONE), ['Connected']);
  t.same(good(REPLICATION_TONE), ['Established']);
  for (const d of ['Inconsistent', 'Outdated', 'Failed'] as const) t.equal(DISK_TONE[d], 'bad', d);
  t.equal(CONNECTION_TONE.StandAlone, 'bad');
  for (const r of ['SyncSource', 'SyncTarget', 'PausedSyncS', 'PausedSyncT'] as const) {
    t.equal(REPLICATION_TONE[r], 'busy', r);
  }
  t.equal(toneOf('peer-disk', 'Outdated'), 'bad');
  t.equal(toneOf('suspended', 'yes'), 'bad');
  t.equal(toneOf('suspended', 'no'), undefined);
  t.equal(toneOf('last-error', '"x"'), 'bad');
  t.equal(toneOf('serving', 'no'), undefined, 'a Secondary not serving is normal');
  t.equal(toneOf('size', '1024'), undefined);
  t.equal(toneOf('disk', 'NoSuchState'), undefined, 'an unknown word stays plain');
});

t.test('wantColour: a terminal, no NO_COLOR, not TERM=dumb', async (t) => {
  const cases: Array<[boolean | undefined, NodeJS.ProcessEnv, boolean]> = [
    [true, { TERM: 'xterm' }, true],
    [true, {}, true],
    [true, { NO_COLOR: '' }, true],
    [true, { NO_COLOR: '1' }, false],
    [true, { NO_COLOR: '0' }, false],
    [true, { TERM: 'dumb' }, false],
    [false, { TERM: 'xterm' }, false],
    [undefined, { TERM: 'xterm' }, false],
  ];
  for (const [tty, env, want] of cases) {
    t.equal(wantColour(tty, env), want, `${String(tty)} ${JSON.stringify(env)}`);
  }
});

/** alpha Primary, its peer StandAlone after an authentication failure (unless `over`). */
function st(over: Partial<PeerStatus> = {}): ResourceStatus {
  const standAlone: Partial<PeerStatus> = {
    connection: 'StandAlone',
    role: 'Unknown',
    peerDisk: 'DUnknown',
    replication: 'Off',
    lastError: 'auth failed: "wrong" secret',
  };
  return resourceStatus({ peers: [peerStatus({ ...standAlone, ...over })] });
}

t.test('colourStatus paints state words only, and stripping gives the plain text', async (t) => {
  for (const verbose of [false, true]) {
    const plain = renderStatus([st()], { verbose });
    const coloured = renderStatus([st()], { verbose, colour: true });
    t.not(coloured, plain, `verbose=${verbose}: coloured`);
    t.equal(strip(coloured), plain, `verbose=${verbose}: same words`);
    t.equal(colourStatus(plain), coloured);
  }
  const c = renderStatus([st()], { colour: true });
  t.match(c, `${ESC}[1mrole:Primary${ESC}[22m`, 'Primary in bold');
  t.match(c, `disk:${ESC}[32mUpToDate${ESC}[39m`, 'UpToDate in green');
  t.match(c, `connection:${ESC}[1m${ESC}[31mStandAlone${ESC}[39m${ESC}[22m`, 'StandAlone in red');
  t.match(
    c,
    `last-error:${ESC}[1m${ESC}[31m"auth failed: \\"wrong\\" secret"${ESC}[39m${ESC}[22m`,
    'the whole error, escaped quotes and all',
  );
  const syncing = renderStatus(
    [
      st({
        connection: 'Connected',
        replication: 'SyncSource',
        peerDisk: 'Inconsistent',
        role: 'Secondary',
        sync: { outOfSync: 1, total: 2, done: 50, rate: 1 << 20, etaSeconds: 1 },
      }),
    ],
    { colour: true },
  );
  t.match(syncing, `replication:${ESC}[33mSyncSource${ESC}[39m`, 'a resync in yellow');
  t.match(syncing, `peer-disk:${ESC}[1m${ESC}[31mInconsistent`, 'an Inconsistent peer in red');
  t.match(syncing, 'done:50.00 rate:1.0MiB/s', 'numbers plain');
  t.equal(renderStatus([st()]), strip(renderStatus([st()], { colour: true })));
});
