/**
 * One resource under urbd-failover on this node: follows urbd's events for it, asks
 * decide() what to do, and runs the chain (steps.ts) one action at a time. While the chain
 * runs here it monitors every step each monitor-interval; a failed step is restarted in
 * place up to migration-threshold times within failure-timeout, then the node gives the
 * resource up (stop, demote, ban) so another takes it over. A step that cannot stop
 * blocks the resource here (still Primary: nobody else may start it) and escalates.
 */
import type { Logger } from 'pino';
import type { FailoverConfig, ResourceConfig } from '../config/index.js';
import { ControlClient } from '../control/client.js';
import type { ResourceStatus } from '../resource/status.js';
import type { ShellCommands } from '../resource/shell-command.js';
import type { AttachSpec } from './attach.js';
import { sleep } from './attach-sys.js';
import { type Action, decide, type Memory, type Phase } from './decide.js';
import { buildChain, type Step, type StepContext } from './steps.js';

export interface PhaseTiming {
  phase: string;
  ms: number;
  ok: boolean;
  error?: string;
}

/** A start or stop of the chain, for status: what happened, step by step. */
export interface Transition {
  kind: 'start' | 'stop' | 'restart';
  why: string;
  startedAt: string;
  /** From the first look that decided to act until the last step finished. */
  totalMs: number;
  phases: PhaseTiming[];
  ok: boolean;
}

export interface ResourceSupervisorStatus {
  resource: string;
  phase: Phase;
  maintenance: boolean;
  auto: boolean;
  autoWhy: string;
  role: string;
  /** What decide() said last. */
  decision: string;
  bannedForMs: number;
  failures: number;
  blockedReason?: string;
  steps: Array<{ name: string; health?: string }>;
  lastTransition?: Transition;
  lastFailover?: Transition;
}

export interface ResourceSupervisorOptions {
  res: ResourceConfig;
  cfg: FailoverConfig;
  node: string;
  runDir: string;
  order: string[];
  auto: { auto: boolean; why: string };
  shell: ShellCommands;
  attachSpec: AttachSpec;
  log: Logger;
  /** Called when a stop step failed and on-stop-failure says exit. */
  escalateExit(why: string): void;
}

const now = () => performance.now();

export class ResourceSupervisor {
  private readonly name: string;
  private readonly log: Logger;
  private readonly ctx: StepContext;
  private readonly chain: Step[];
  private phase: Phase = 'stopped';
  private maintenance = false;
  private bannedUntil = 0;
  private lastPromoteAt: number | undefined;
  private candidateSince: number | undefined;
  private failures: number[] = [];
  private blockedReason: string | undefined;
  private decision = 'starting';
  private role = 'Unknown';
  private health = new Map<string, string>();
  private lastTransition: Transition | undefined;
  private lastFailover: Transition | undefined;
  private client: ControlClient | undefined;
  private events: ControlClient | undefined;
  private busy = false;
  private again = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private nextMonitorAt = 0;
  /** When something first asked for an action (an event), for the decide phase. */
  private noticedAt: number | undefined;

  constructor(private readonly o: ResourceSupervisorOptions) {
    this.name = o.res.name;
    this.log = o.log.child({ resource: this.name });
    this.ctx = {
      resource: this.name,
      node: o.node,
      urbd: () => this.urbd(),
      status: () => this.status(),
      shell: o.shell,
      device: undefined,
      attachSpec: o.attachSpec,
      forceDemote: false,
    };
    this.chain = buildChain(this.ctx, o.cfg);
  }

  /** Probes every step (adopting a chain that already runs), then follows events. */
  async start(): Promise<void> {
    this.log.info(
      { auto: this.o.auto.auto, order: this.o.order, steps: this.chain.map((s) => s.name) },
      `supervising ${this.name}: ${this.o.auto.why}`,
    );
    await this.probe();
    this.schedule(0);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.events?.close();
    this.client?.close();
  }

  setMaintenance(on: boolean): void {
    this.maintenance = on;
    this.log.info(on ? 'maintenance on: not acting' : 'maintenance off');
    this.schedule(0);
  }

  /** Clears a blocked resource or a ban (the admin fixed what blocked it). */
  clear(): void {
    this.blockedReason = undefined;
    if (this.phase === 'blocked') this.phase = 'running';
    this.bannedUntil = 0;
    this.failures = [];
    this.schedule(0);
  }

  /** A planned move: stop here, demote, and stay away so another node takes it. */
  async switchover(to: string | undefined): Promise<Transition> {
    const s = await this.status();
    if (s.role !== 'Primary')
      throw new Error(
        `${this.name} is not Primary on ${this.o.node}; run switchover where it runs`,
      );
    if (to !== undefined && to !== this.o.node) {
      const p = s.peers.find((x) => x.name === to);
      if (!p || !p.diskful) throw new Error(`${to} is not a data node of ${this.name}`);
      if (p.connection !== 'Connected' || p.peerDisk !== 'UpToDate') {
        throw new Error(
          `${to} is not connected and UpToDate (${p.connection}, ${p.peerDisk}): it could not take ${this.name}`,
        );
      }
    }
    return this.exclusive(() =>
      this.stopChain({
        kind: 'stop',
        why: `switchover${to ? ` to ${to}` : ''}`,
        demote: true,
        force: false,
        ban: true,
      }),
    );
  }

  snapshot(): ResourceSupervisorStatus {
    return {
      resource: this.name,
      phase: this.phase,
      maintenance: this.maintenance,
      auto: this.o.auto.auto,
      autoWhy: this.o.auto.why,
      role: this.role,
      decision: this.decision,
      bannedForMs: Math.max(0, Math.round(this.bannedUntil - now())),
      failures: this.failures.length,
      ...(this.blockedReason ? { blockedReason: this.blockedReason } : {}),
      steps: this.chain.map((s) => ({
        name: s.name,
        ...(this.health.has(s.name) ? { health: this.health.get(s.name) } : {}),
      })),
      ...(this.lastTransition ? { lastTransition: this.lastTransition } : {}),
      ...(this.lastFailover ? { lastFailover: this.lastFailover } : {}),
    };
  }

  // ---- the daemon ------------------------------------------------------------------------

  private async urbd(): Promise<ControlClient> {
    if (this.client) return this.client;
    const c = await ControlClient.connect(this.o.runDir);
    c.closed.then(() => {
      if (this.client === c) this.client = undefined;
    });
    this.client = c;
    this.follow();
    return c;
  }

  private async status(): Promise<ResourceStatus> {
    const list = (await (await this.urbd()).request('status', this.name)) as ResourceStatus[];
    const s = list[0];
    if (!s) throw new Error(`urbd does not run ${this.name}`);
    this.role = s.role;
    return s;
  }

  /** Every event of the resource is a reason to look again. */
  private follow(): void {
    if (this.events || this.closed) return;
    void ControlClient.connect(this.o.runDir).then(
      (c) => {
        this.events = c;
        void c
          .events(
            this.name,
            () => {
              this.noticedAt ??= now();
              this.schedule(0);
            },
            false,
          )
          .catch(() => undefined)
          .finally(() => {
            if (this.events === c) this.events = undefined;
            if (!this.closed) this.schedule(1000);
          });
      },
      () => undefined,
    );
  }

  // ---- the loop --------------------------------------------------------------------------

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.busy) await sleep(50);
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.schedule(0);
      }
    }
  }

  private async tick(): Promise<void> {
    if (this.closed || this.busy) return;
    let next = this.o.cfg.monitorIntervalMs;
    await this.exclusive(async () => {
      let s: ResourceStatus;
      try {
        s = await this.status();
      } catch (err) {
        this.decision = `cannot reach urbd: ${(err as Error).message}`;
        this.role = 'Unknown';
        // urbd is gone: nothing here can be Primary any more; what still runs on top of
        // its device only sees I/O errors. Take it down, without demoting.
        if (this.phase === 'running' || this.phase === 'starting') {
          await this.stopChain({
            kind: 'stop',
            why: 'urbd is gone',
            demote: false,
            force: false,
            ban: false,
          });
        }
        next = 1000;
        return;
      }
      const mem: Memory = {
        phase: this.phase,
        maintenance: this.maintenance,
        bannedUntil: this.bannedUntil,
        lastPromoteAt: this.lastPromoteAt,
        candidateSince: this.candidateSince,
        now: now(),
      };
      const a = decide(s, mem, this.o.cfg, this.o.order, this.o.auto.auto);
      this.note(a);
      if (a.kind === 'wait') {
        if (a.candidate) this.candidateSince ??= mem.now;
        next = Math.max(50, Math.min(next, a.at - mem.now));
        return;
      }
      this.candidateSince = undefined;
      if (a.kind === 'start') {
        await this.startChain(a);
      } else if (a.kind === 'stop') {
        await this.stopChain(a);
      } else if (this.phase === 'running' && now() >= this.nextMonitorAt) {
        await this.monitor();
      }
      this.noticedAt = undefined;
    });
    this.schedule(next);
  }

  private note(a: Action): void {
    if (a.why !== this.decision) {
      this.log.info({ action: a.kind }, `${a.kind}: ${a.why}`);
      this.decision = a.why;
    }
  }

  private async probe(): Promise<void> {
    // Like Pacemaker's probes: find out what already runs (after a restart of the
    // supervisor), so it is adopted rather than started twice or left unsupervised.
    const up: string[] = [];
    for (const step of this.chain) {
      try {
        const h = await step.monitor();
        this.health.set(step.name, h.state);
        if (h.state === 'running') up.push(step.name);
      } catch (err) {
        this.health.set(step.name, `unknown: ${(err as Error).message}`);
      }
    }
    if (up.length === this.chain.length) {
      this.phase = 'running';
      this.log.info('probe: the whole chain runs here; adopted');
    } else if (up.length > 0) {
      // Partly up (the supervisor died mid-way): on a Primary, start() completes it (steps
      // found running are skipped); elsewhere it must come down, which stop() does.
      this.phase = this.role === 'Primary' ? 'stopped' : 'running';
      this.log.warn({ up }, 'probe: the chain is partly up here');
    }
  }

  private async timed(
    phases: PhaseTiming[],
    name: string,
    fn: () => Promise<void>,
  ): Promise<boolean> {
    const t0 = now();
    try {
      await fn();
      const ms = Math.round(now() - t0);
      phases.push({ phase: name, ms, ok: true });
      this.log.info({ phase: name, ms }, `${name}: done in ${ms} ms`);
      return true;
    } catch (err) {
      const ms = Math.round(now() - t0);
      const error = (err as Error).message;
      phases.push({ phase: name, ms, ok: false, error });
      this.log.error({ phase: name, ms }, `${name}: failed: ${error}`);
      return false;
    }
  }

  private begin(kind: Transition['kind'], why: string): { t: Transition; t0: number } {
    const t0 = this.noticedAt ?? now();
    const t: Transition = {
      kind,
      why,
      startedAt: new Date().toISOString(),
      totalMs: 0,
      phases: [],
      ok: false,
    };
    if (this.noticedAt !== undefined)
      t.phases.push({ phase: 'decide', ms: Math.round(now() - t0), ok: true });
    return { t, t0 };
  }

  private async finish(t: Transition, t0: number, ok: boolean): Promise<Transition> {
    await this.status().catch(() => undefined); // the role as it is now, for status
    t.ok = ok;
    t.totalMs = Math.round(now() - t0);
    this.lastTransition = t;
    this.log.info(
      { kind: t.kind, ok, totalMs: t.totalMs, phases: t.phases },
      `${t.kind} ${ok ? 'done' : 'failed'} in ${t.totalMs} ms: ${t.why}`,
    );
    return t;
  }

  private async startChain(a: { why: string }): Promise<void> {
    const { t, t0 } = this.begin('start', a.why);
    const wasPrimary = this.role === 'Primary';
    this.phase = 'starting';
    let started = 0;
    for (const step of this.chain) {
      if (step.name === 'promote' && !wasPrimary) this.lastPromoteAt = now();
      const h = await step.monitor().catch(() => undefined);
      const okStep =
        h?.state === 'running' ? true : await this.timed(t.phases, step.name, () => step.start());
      if (!okStep) break;
      this.health.set(step.name, 'running');
      started++;
    }
    if (started === this.chain.length) {
      this.phase = 'running';
      this.nextMonitorAt = now() + this.o.cfg.monitorIntervalMs;
      const done = await this.finish(t, t0, true);
      if (!wasPrimary) this.lastFailover = done;
      return;
    }
    const failed = await this.finish(t, t0, false);
    if (!wasPrimary) this.lastFailover = failed;
    // Pacemaker's start-failure-is-fatal: a node where the chain does not start gives the
    // resource up and stays away for failure-timeout, so another node can take it.
    await this.stopChain({
      kind: 'stop',
      why: 'a step failed to start here',
      demote: true,
      force: false,
      ban: true,
    });
  }

  /** Stops steps from the top down to (and including) index `from`; false when one cannot stop. */
  private async stopFrom(from: number, phases: PhaseTiming[], demote: boolean): Promise<boolean> {
    for (let i = this.chain.length - 1; i >= from; i--) {
      const step = this.chain[i];
      if (step.name === 'promote' && !demote) continue;
      const okStep = await this.timed(phases, `stop ${step.name}`, () => step.stop());
      if (!okStep) return false;
      this.health.set(step.name, 'stopped');
    }
    return true;
  }

  private async stopChain(a: Extract<Action, { kind: 'stop' }>): Promise<Transition> {
    const { t, t0 } = this.begin('stop', a.why);
    this.phase = 'stopping';
    this.ctx.forceDemote = a.force;
    if (a.force && a.demote) await this.failHeldIo(t.phases);
    const ok = await this.stopFrom(0, t.phases, a.demote);
    this.ctx.forceDemote = false;
    if (!ok) {
      await this.block(t.phases[t.phases.length - 1]?.error ?? 'a stop step failed');
      return this.finish(t, t0, false);
    }
    this.phase = 'stopped';
    if (a.ban) this.bannedUntil = now() + this.o.cfg.failureTimeoutMs;
    return this.finish(t, t0, true);
  }

  /**
   * Quorum lost with `on-no-quorum suspend-io`: the services' writes are held and can
   * never be acknowledged, so they would hang every stop step. Demoting with --force first
   * fails what is held (the services see I/O errors and can be stopped) and makes the node
   * Secondary, where nothing can be written any more; the device is released only in the
   * sense that this node can no longer write it.
   */
  private async failHeldIo(phases: PhaseTiming[]): Promise<void> {
    const s = await this.status().catch(() => undefined);
    if (s?.role !== 'Primary' || !s.suspended) return;
    await this.timed(phases, 'secondary --force (I/O held)', async () => {
      await (await this.urbd()).request('secondary', this.name, { force: true });
    });
  }

  /**
   * A step that cannot stop: the device stays Primary here (nothing is released that may
   * still be written, so no other node starts the service), and on-stop-failure escalates.
   */
  private async block(why: string): Promise<void> {
    this.phase = 'blocked';
    this.blockedReason = why;
    const f = this.o.cfg.onStopFailure;
    this.log.fatal({ onStopFailure: f.action }, `blocked: ${why}; the device stays Primary here`);
    if (f.action === 'exit') this.o.escalateExit(`${this.name}: ${why}`);
    else if (f.action === 'fence') {
      const r = await this.o.shell.run(
        f.command,
        {
          ...process.env,
          URBD_RESOURCE: this.name,
          URBD_NODE: this.o.node,
          URBD_REASON: why,
        } as Record<string, string>,
        120_000,
      );
      this.log.fatal(
        { exitCode: r.exitCode, output: r.output },
        `on-stop-failure fence: exit code ${r.exitCode}`,
      );
    }
  }

  private async monitor(): Promise<void> {
    this.nextMonitorAt = now() + this.o.cfg.monitorIntervalMs;
    for (let i = 0; i < this.chain.length; i++) {
      const step = this.chain[i];
      let h;
      try {
        h = await step.monitor();
      } catch (err) {
        h = { state: 'failed' as const, why: (err as Error).message };
      }
      this.health.set(step.name, h.state === 'failed' ? `failed: ${h.why}` : h.state);
      if (h.state === 'running') continue;
      const why = h.state === 'failed' ? h.why : 'stopped by itself';
      this.log.warn({ step: step.name }, `monitor: ${step.name} ${why}`);
      const t = now();
      this.failures = this.failures.filter((f) => t - f < this.o.cfg.failureTimeoutMs);
      this.failures.push(t);
      if (step.name === 'promote' || this.failures.length >= this.o.cfg.migrationThreshold) {
        await this.stopChain({
          kind: 'stop',
          why: `${step.name} failed (${why}); ${this.failures.length} failure(s) within failure-timeout: giving the resource up`,
          demote: true,
          force: false,
          ban: true,
        });
        return;
      }
      await this.restartFrom(
        i,
        `${step.name} failed (${why}); restart ${this.failures.length} of ${this.o.cfg.migrationThreshold - 1}`,
      );
      return;
    }
  }

  private async restartFrom(i: number, why: string): Promise<void> {
    const { t, t0 } = this.begin('restart', why);
    if (!(await this.stopFrom(i, t.phases, false))) {
      await this.block(t.phases[t.phases.length - 1]?.error ?? 'a stop step failed');
      await this.finish(t, t0, false);
      return;
    }
    for (let k = i; k < this.chain.length; k++) {
      const step = this.chain[k];
      if (!(await this.timed(t.phases, step.name, () => step.start()))) {
        await this.finish(t, t0, false);
        await this.stopChain({
          kind: 'stop',
          why: `${step.name} did not restart`,
          demote: true,
          force: false,
          ban: true,
        });
        return;
      }
      this.health.set(step.name, 'running');
    }
    await this.finish(t, t0, true);
  }
}
