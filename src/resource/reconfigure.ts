/**
 * Carries out a plan from option-changes.ts on a resource that is up: the running
 * configuration is replaced (the peers, the resync controller and the state rules read it
 * where they use it), peers whose session was built on a changed option are dropped and
 * connected again, and — for `adjust`, which brings the resource to what the file says, as
 * drbdadm's does — a detached disk is attached and a peer left StandAlone is connected.
 */
import type { Resource } from './resource.js';
import { commandError } from './resource.js';
import { describePlan, planChanges, type RunningConfig } from './option-changes.js';

export interface ReconfigureOptions {
  /** Only say what would be done (`adjust --dry-run`, drbdadm's `-d`). */
  dryRun: boolean;
  /** Attach a detached disk and connect StandAlone peers (adjust; not net-options). */
  adjust: boolean;
}

/** Applies `wanted`; returns one line per change (and per reconnect). Refusals are exit 10. */
export async function reconfigure(
  r: Resource,
  wanted: RunningConfig,
  opts: ReconfigureOptions,
): Promise<string[]> {
  const plan = planChanges({ config: r.config, host: r.host }, wanted, r.attached);
  if ('refused' in plan) throw commandError('ERR_ADJUST', plan.refused);
  const disk = wanted.host.disk;
  const attach = opts.adjust && !r.attached && disk !== undefined && disk !== 'none';
  const standAlone = (name: string): boolean =>
    r.peers.find((p) => p.name === name)?.connection === 'StandAlone';
  // Attaching renews every live session itself; a StandAlone peer has none to renew.
  const reconnect = attach ? [] : plan.reconnect.filter((x) => !standAlone(x.peer));
  const toConnect = opts.adjust
    ? r.peers.filter((p) => p.connection === 'StandAlone' && addressOf(wanted, p.name))
    : [];
  const lines = describePlan(r.name, { changes: plan.changes, reconnect });
  if (attach) lines.push(`${r.name}: attach ${disk}`);
  for (const p of toConnect) lines.push(`${r.name}: connect to ${p.name}`);
  if (opts.dryRun) return lines;

  r.config = wanted.config;
  r.host = wanted.host;
  for (const p of r.peers) p.address = addressOf(wanted, p.name);
  if (plan.changes.length > 0) {
    r.log.info({ changes: plan.changes.map((c) => c.keyword) }, 'running options changed');
  }
  if (attach) await r.attach();
  for (const { peer, why } of reconnect) {
    const p = r.peers.find((x) => x.name === peer)!;
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
