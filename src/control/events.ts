import type { ResourceStatus } from '../resource/status.js';

/**
 * The event stream, modelled on `drbdsetup events2`: every object (resource, device,
 * connection, peer-device) is announced with `exists` when a listener joins, then `create`,
 * `change` and `destroy` as the daemon's state moves. Each event carries the object's whole
 * current state, so a consumer never has to remember earlier lines to act on one.
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

/** The objects a resource consists of, keyed by identity. */
export function eventObjects(
  s: ResourceStatus,
): Array<{ key: string; object: EventObject; fields: UrbdEvent['fields'] }> {
  const out: Array<{ key: string; object: EventObject; fields: UrbdEvent['fields'] }> = [];
  out.push({
    key: `resource/${s.name}`,
    object: 'resource',
    fields: { name: s.name, role: s.role, suspended: s.suspended ? 'yes' : 'no' },
  });
  out.push({
    key: `device/${s.name}/0`,
    object: 'device',
    fields: {
      name: s.name,
      volume: s.device.volume,
      minor: s.device.minor,
      disk: s.device.diskState,
      client: 'no',
    },
  });
  for (const p of s.peers) {
    const id = { name: s.name, 'peer-node-id': p.nodeId ?? -1, 'conn-name': p.name };
    out.push({
      key: `connection/${s.name}/${p.name}`,
      object: 'connection',
      fields: { ...id, connection: p.connection, role: p.role },
    });
    out.push({
      key: `peer-device/${s.name}/${p.name}/0`,
      object: 'peer-device',
      fields: { ...id, volume: 0, replication: p.replication, 'peer-disk': p.peerDisk },
    });
  }
  return out;
}

/**
 * Remembers the last state of every object and turns a new snapshot into the events that
 * describe the difference. One hub per daemon; listeners are the control connections.
 */
export class EventHub {
  private readonly last = new Map<string, { object: EventObject; fields: UrbdEvent['fields'] }>();
  private readonly listeners = new Set<(e: UrbdEvent) => void>();

  subscribe(fn: (e: UrbdEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** What a new listener is told first: every object as it is now. */
  snapshot(): UrbdEvent[] {
    const time = new Date().toISOString();
    return [...this.last.values()].map((o) => ({
      kind: 'exists',
      object: o.object,
      fields: o.fields,
      time,
    }));
  }

  /** A resource's current state; emits create/change for what differs from last time. */
  publish(s: ResourceStatus): void {
    const seen = new Set<string>();
    for (const o of eventObjects(s)) {
      seen.add(o.key);
      const prev = this.last.get(o.key);
      if (prev && sameFields(prev.fields, o.fields)) continue;
      this.last.set(o.key, { object: o.object, fields: o.fields });
      this.emit(prev ? 'change' : 'create', o.object, o.fields);
    }
    for (const [key, o] of this.last) {
      if (key.split('/')[1] === s.name && !seen.has(key)) this.remove(key, o);
    }
  }

  /** A resource went down: its objects are destroyed, peers and devices first. */
  destroy(name: string): void {
    const keys = [...this.last.keys()].filter((k) => k.split('/')[1] === name).reverse();
    for (const key of keys) this.remove(key, this.last.get(key)!);
  }

  private remove(key: string, o: { object: EventObject; fields: UrbdEvent['fields'] }): void {
    this.last.delete(key);
    this.emit('destroy', o.object, o.fields);
  }

  private emit(kind: EventKind, object: EventObject, fields: UrbdEvent['fields']): void {
    const e: UrbdEvent = { kind, object, fields, time: new Date().toISOString() };
    for (const fn of this.listeners) fn(e);
  }
}

function sameFields(a: UrbdEvent['fields'], b: UrbdEvent['fields']): boolean {
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
