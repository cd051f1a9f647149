// The event hub with and without --statistics (events.ts): counters ride along on the lines
// a statistics listener gets, never make a line by themselves, and resync progress reaches
// statistics listeners only.
import t from 'tap';
import { EventHub, formatEventText, type UrbdEvent } from '../../src/control/events.js';
import type { PeerStatus, ResourceStatus } from '../../src/resource/status.js';
import { peerStatus, resourceStatus } from '../helpers/status-fixture.js';

function status(o: { sent?: number; done?: number; replication?: string } = {}): ResourceStatus {
  const peer = peerStatus({
    peerDisk: o.done === undefined ? 'UpToDate' : 'Inconsistent',
    replication: (o.replication ??
      (o.done === undefined ? 'Established' : 'SyncSource')) as PeerStatus['replication'],
    outOfSync: 8192,
    sync:
      o.done === undefined
        ? undefined
        : { outOfSync: 8192, total: 1 << 20, done: o.done, rate: 1 << 20, etaSeconds: 3 },
    statistics: { sent: o.sent ?? 0, received: 0, pending: 1, unacked: 0 },
  });
  return resourceStatus({
    peers: [peer],
    device: {
      outOfSync: 8192,
      alActive: 1,
      statistics: { read: 4096, written: 2048, alWrites: 3, bmWrites: 2, lowerPending: 0 },
    },
  });
}

function listen(hub: EventHub, statistics: boolean): string[] {
  const lines: string[] = [];
  hub.subscribe((e: UrbdEvent) => lines.push(formatEventText(e)), statistics);
  return lines;
}

t.test('counters only for --statistics listeners, and never an event by themselves', async (t) => {
  const hub = new EventHub();
  const plain = listen(hub, false);
  const stats = listen(hub, true);
  t.equal(hub.wantsProgress, true, 'a statistics listener wants progress');
  hub.publish(status());
  t.equal(plain.length, 4, 'create: resource, device, connection, peer-device');
  t.equal(
    plain[1],
    'create device name:r0 volume:0 minor:0 disk:UpToDate client:no',
    'plain: state only',
  );
  t.equal(
    stats[1],
    'create device name:r0 volume:0 minor:0 disk:UpToDate client:no size:1024 read:4 written:2 al-writes:3 bm-writes:2 lower-pending:0',
  );
  t.equal(
    stats[3],
    'create peer-device name:r0 peer-node-id:1 conn-name:beta volume:0 replication:Established peer-disk:UpToDate received:0 sent:0 out-of-sync:8 pending:1 unacked:0',
  );
  hub.publish(status({ sent: 1 << 20 }));
  t.equal(plain.length, 4, 'a counter change alone is no event');
  t.equal(stats.length, 4);
  const snap = hub.snapshot(true).map((e) => formatEventText(e));
  t.match(snap[3], /sent:1024 /, 'a new statistics listener sees the current counters');
  t.notMatch(hub.snapshot(false).map((e) => formatEventText(e))[3], /sent:/);
});

t.test('resync progress: statistics listeners only, once per change of done', async (t) => {
  const hub = new EventHub();
  const plain = listen(hub, false);
  const stats = listen(hub, true);
  hub.publish(status({ done: 10 }));
  const start = { plain: plain.length, stats: stats.length };
  hub.progress(status({ done: 10 }));
  t.equal(stats.length, start.stats, 'no line while done stands still');
  hub.progress(status({ done: 25.5 }));
  hub.progress(status({ done: 25.5 }));
  t.equal(stats.length, start.stats + 1, 'one line per step');
  t.equal(
    stats.at(-1),
    'change peer-device name:r0 peer-node-id:1 conn-name:beta volume:0 replication:SyncSource peer-disk:Inconsistent received:0 sent:0 out-of-sync:8 pending:1 unacked:0 done:25.50 eta:3 dbdt1:1024',
  );
  t.equal(plain.length, start.plain, 'plain listeners see no progress lines');
  // A state change is publish()'s to tell; progress() leaves it alone.
  hub.progress(status({ done: 30, replication: 'PausedSyncS' }));
  t.equal(stats.length, start.stats + 1);
  hub.publish(status({ done: 30, replication: 'PausedSyncS' }));
  t.match(stats.at(-1), /^change peer-device .*replication:PausedSyncS.* done:30\.00/);
  t.match(plain.at(-1), /^change peer-device .*replication:PausedSyncS peer-disk:Inconsistent$/);
});

t.test('no statistics listener: no progress wanted', async (t) => {
  const hub = new EventHub();
  const stop = hub.subscribe(() => undefined, false);
  t.equal(hub.wantsProgress, false);
  const stopStats = hub.subscribe(() => undefined, true);
  t.equal(hub.wantsProgress, true);
  stopStats();
  stop();
  t.equal(hub.wantsProgress, false);
});

t.test(
  'with quorum on, quorum changes are events: device quorum, resource may-promote',
  async (t) => {
    const hub = new EventHub();
    const lines = listen(hub, false);
    const q = (quorum: boolean): ResourceStatus =>
      resourceStatus({
        role: 'Secondary',
        quorum: {
          enabled: true,
          quorum,
          reason: quorum ? '' : 'no quorum: sees 1 of 2 data nodes',
        },
        mayPromote: quorum
          ? { may: true, reason: 'may be promoted' }
          : { may: false, reason: 'no quorum: sees 1 of 2 data nodes' },
      });
    hub.publish(q(true));
    t.equal(lines[0], 'create resource name:r0 role:Secondary suspended:no may-promote:yes');
    t.equal(lines[1], 'create device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:yes');
    hub.publish(q(false));
    t.same(lines.slice(4), [
      'change resource name:r0 role:Secondary suspended:no may-promote:no',
      'change device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:no',
    ]);
  },
);
