import type { ResourceStatus } from '../resource/status.js';

/**
 * The event stream, modelled on `drbdsetup events2`: every object (resource, device,
 * connection, peer-device) is announced with `exists` when a listener joins, then `create`,
 * `change` and `destroy` as the daemon's state moves. Each event carries the object's whole
 * current state, so a consumer never has to remember earlier lines to act on one.
 *
 * With --statistics (drbdsetup events2 --statistics) a listener also gets the counters of
 * `status --statistics` on each device and peer-device line, and while a resync runs, a
 * `change peer-device` line with its progress (done, eta) every second. The counters never
 * make an event by themselves: a plain listener sees state changes only.
 */
export type EventObject = 'resource' | 'device' | 'connection' | 'peer-device';
export type EventKind = 'exists' | 'create' | 'change' | 'destroy';

export interface UrbdEvent {
  kind: EventKind;
  object: EventObject;
  /** Identifying fields first (name, volume, peer), then the state. */
  fields: Record<string, string | number | boolean>;
  time: string;
}

type Fields = UrbdEvent['fields'];

interface EventSource {
  key: string;
  object: EventObject;
  fields: Fields;
  /** The counters --statistics adds; not part of the state. */
  stats: Fields;
}

/** The objects a resource consists of, keyed by identity. */
export function eventObjects(s: ResourceStatus): EventSource[] {
  const out: EventSource[] = [];
  const kib = (bytes: number): number => Math.ceil(bytes / 1024);
  out.push({
    key: `resource/${s.name}`,
    object: 'resource',
    fields: {
      name: s.name,
      role: s.role,
      suspended: s.suspended ? 'yes' : 'no',
      // drbdsetup events2's may_promote, where quorum or a third node make it matter.
      ...(s.quorum.enabled || s.peers.length > 1
        ? { 'may-promote': s.mayPromote.may === true ? 'yes' : 'no' }
        : {}),
    },
    stats: {},
  });
  const d = s.device.statistics;
  out.push({
    key: `device/${s.name}/0`,
    object: 'device',
    fields: {
      name: s.name,
      volume: s.device.volume,
      minor: s.device.minor,
      disk: s.device.diskState,
      client: 'no',
      ...(s.quorum.enabled ? { quorum: s.quorum.quorum ? 'yes' : 'no' } : {}),
    },
    stats: {
      size: kib(s.device.size),
      read: kib(d.read),
      written: kib(d.written),
      'al-writes': d.alWrites,
      'bm-writes': d.bmWrites,
      'lower-pending': d.lowerPending,
    },
  });
  for (const p of s.peers) {
    const id = { name: s.name, 'peer-node-id': p.nodeId ?? -1, 'conn-name': p.name };
    out.push({
      key: `connection/${s.name}/${p.name}`,
      object: 'connection',
      fields: { ...id, connection: p.connection, role: p.role },
      stats: {},
    });
    const x = p.statistics;
    const sync = p.sync;
    out.push({
      key: `peer-device/${s.name}/${p.name}/0`,
      object: 'peer-device',
      fields: { ...id, volume: 0, replication: p.replication, 'peer-disk': p.peerDisk },
      stats: {
        received: kib(x.received),
        sent: kib(x.sent),
        'out-of-sync': kib(p.outOfSync),
        pending: x.pending,
        unacked: x.unacked,
        ...(sync
          ? {
              done: sync.done.toFixed(2),
              ...(sync.etaSeconds !== undefined ? { eta: sync.etaSeconds } : {}),
              dbdt1: kib(sync.rate),
            }
          : {}),
      },
    });
  }
  return out;
}

/**
 * Remembers the last state of every object and turns a new snapshot into the events that
 * describe the difference. One hub per daemon; listeners are the control connections.
 */
export class EventHub {
  private readonly last = new Map<string, { object: EventObject; fields: Fields; stats: Fields }>();
  private readonly listeners = new Map<(e: UrbdEvent) => void, { statistics: boolean }>();

  subscribe(fn: (e: UrbdEvent) => void, statistics = false): () => void {
    this.listeners.set(fn, { statistics });
    return () => this.listeners.delete(fn);
  }

  /** Some listener asked for --statistics (the daemon then reports resync progress). */
  get wantsProgress(): boolean {
    for (const l of this.listeners.values()) if (l.statistics) return true;
    return false;
  }

  /** What a new listener is told first: every object as it is now. */
  snapshot(statistics = false): UrbdEvent[] {
    const time = new Date().toISOString();
    return [...this.last.values()].map((o) => ({
      kind: 'exists',
      object: o.object,
      fields: statistics ? { ...o.fields, ...o.stats } : o.fields,
      time,
    }));
  }

  /** A resource's current state; emits create/change for what differs from last time. */
  publish(s: ResourceStatus): void {
    const seen = new Set<string>();
    for (const o of eventObjects(s)) {
      seen.add(o.key);
      const prev = this.last.get(o.key);
      this.last.set(o.key, { object: o.object, fields: o.fields, stats: o.stats });
      if (prev && sameFields(prev.fields, o.fields)) continue;
      this.emit(prev ? 'change' : 'create', o.object, o.fields, o.stats);
    }
    for (const [key, o] of this.last) {
      if (key.split('/')[1] === s.name && !seen.has(key)) this.remove(key, o);
    }
  }

  /**
   * Resync progress for --statistics listeners: a `change peer-device` line for each peer
   * device whose resync moved since the last one. State changes go through publish().
   */
  progress(s: ResourceStatus): void {
    for (const o of eventObjects(s)) {
      if (o.object !== 'peer-device' || o.stats.done === undefined) continue;
      const prev = this.last.get(o.key);
      if (!prev || !sameFields(prev.fields, o.fields)) continue; // publish() tells that
      if (prev.stats.done === o.stats.done) continue;
      prev.stats = o.stats;
      this.emit('change', o.object, o.fields, o.stats, true);
    }
  }

  /** A resource went down: its objects are destroyed, peers and devices first. */
  destroy(name: string): void {
    const keys = [...this.last.keys()].filter((k) => k.split('/')[1] === name).reverse();
    for (const key of keys) this.remove(key, this.last.get(key)!);
  }

  private remove(key: string, o: { object: EventObject; fields: Fields; stats: Fields }): void {
    this.last.delete(key);
    this.emit('destroy', o.object, o.fields, o.stats);
  }

  private emit(
    kind: EventKind,
    object: EventObject,
    fields: Fields,
    stats: Fields,
    statisticsOnly = false,
  ): void {
    const time = new Date().toISOString();
    for (const [fn, l] of this.listeners) {
      if (statisticsOnly && !l.statistics) continue;
      fn({ kind, object, fields: l.statistics ? { ...fields, ...stats } : fields, time });
    }
  }
}

function sameFields(a: Fields, b: Fields): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

/** One event as `drbdsetup events2` prints it: `change resource name:r0 role:Primary`. */
export function formatEventText(e: UrbdEvent, withTimestamp = false): string {
  const fields = Object.entries(e.fields)
    .map(([k, v]) => `${k}:${String(v)}`)
    .join(' ');
  const line = [e.kind, e.object, fields].filter((x) => x !== '').join(' ');
  return withTimestamp ? `${e.time} ${line}` : line;
}
