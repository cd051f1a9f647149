/**
 * Carries out a plan from option-changes.ts on a resource that is up: the running
 * configuration is replaced (the peers, the resync controller and the state rules read it
 * where they use it), peers whose session was built on a changed option are dropped and
 * connected again, and — for `adjust`, which brings the resource to what the file says, as
 * drbdadm's does — a peer left StandAlone is connected.
 */
import type { Resource } from './resource.js';
import { commandError } from './resource.js';
import { describePlan, planChanges, type RunningConfig } from './option-changes.js';

export interface ReconfigureOptions {
  /** Only say what would be done (`adjust --dry-run`, drbdadm's `-d`). */
  dryRun: boolean;
  /** Connect peers that are StandAlone (adjust; not net-options). */
  connectStandAlone: boolean;
}

/** Applies `wanted`; returns one line per change (and per reconnect). Refusals are exit 10. */
export async function reconfigure(
  r: Resource,
  wanted: RunningConfig,
  opts: ReconfigureOptions,
): Promise<string[]> {
  const plan = planChanges({ config: r.config, host: r.host }, wanted, r.attached);
  if ('refused' in plan) throw commandError('ERR_ADJUST', plan.refused);
  const lines = describePlan(r.name, plan);
  const reconnect = new Map(plan.reconnect.map((x) => [x.peer, x.why]));
  const toConnect = opts.connectStandAlone
    ? r.peers.filter((p) => p.connection === 'StandAlone' && addressOf(wanted, p.name))
    : [];
  for (const p of toConnect) {
    reconnect.delete(p.name);
    lines.push(`${r.name}: connect to ${p.name}`);
  }
  if (opts.dryRun) return lines;

  r.config = wanted.config;
  r.host = wanted.host;
  for (const p of r.peers) p.address = addressOf(wanted, p.name);
  if (plan.changes.length > 0) {
    r.log.info({ changes: plan.changes.map((c) => c.keyword) }, 'running options changed');
  }
  for (const p of r.peers) {
    const why = reconnect.get(p.name);
    if (why === undefined || p.connection === 'StandAlone') continue;
    await p.disconnect(why);
    try {
      await p.connect(false);
    } catch (err) {
      throw commandError('ERR_CONNECT', (err as Error).message);
    }
  }
  for (const p of toConnect) await r.connect(false, p.name);
  r.changed();
  return lines;
}

function addressOf(wanted: RunningConfig, peer: string): RunningConfig['host']['address'] {
  return wanted.config.hosts.find((h) => h.name === peer)?.address;
}
