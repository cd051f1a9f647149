// A randomized fault campaign against a real pair (issue 13): writers that record every
// acknowledged change, random faults at random moments, and at the end every acknowledged
// change (or a later one) on both disks, and the disks identical.
//
// Each round is seeded. CI runs URBD_CAMPAIGN_ROUNDS rounds (default 3) from the seed in
// URBD_CAMPAIGN_SEED (default 1); a failing round prints its seed and its list of faults, and
//   URBD_CAMPAIGN_SEED=<seed> URBD_CAMPAIGN_ROUNDS=1 npx tap dist/test/replication/campaign.test.js
// replays it (the faults and their order are the same; their timing against the writes is
// whatever the machine makes of it).
import t from 'tap';
import { sleep, tmpDir } from '../helpers/server.js';
import { exportUri } from '../helpers/daemon.js';
import {
  diffBlocks,
  inSync,
  type Pair,
  promoteAndSync,
  startPair,
  status,
  waitFor,
} from '../helpers/pair.js';
import { AckLedger, seededRandom, startWriter, type Writer } from '../helpers/acked-writer.js';

const SIZE = 32 << 20;
const BLOCKS = 2048;
const ROUNDS = Number(process.env.URBD_CAMPAIGN_ROUNDS ?? 3);
const FIRST_SEED = Number(process.env.URBD_CAMPAIGN_SEED ?? 1);
const FAULTS_PER_ROUND = Number(process.env.URBD_CAMPAIGN_FAULTS ?? 6);
const ROUND_LIMIT_MS = 200_000;

t.setTimeout(ROUNDS * ROUND_LIMIT_MS + 30_000);

type NodeName = 'alpha' | 'beta';
const other = (n: NodeName): NodeName => (n === 'alpha' ? 'beta' : 'alpha');

const FAULTS = [
  'kill-secondary',
  'kill-primary',
  'cut',
  'blackhole',
  'delay',
  'sigstop',
  'switchover',
  'switchover-in-resync',
  'down-up',
  'pause-resume',
] as const;
type Fault = (typeof FAULTS)[number];

class Round {
  primary: NodeName = 'alpha';
  writer: Writer | undefined;
  readonly log: string[] = [];
  private writers = 0;

  constructor(
    readonly p: Pair,
    readonly ledger: AckLedger,
    readonly rand: () => number,
  ) {}

  note(what: string): void {
    this.log.push(what);
  }

  between(lo: number, hi: number): number {
    return Math.round(lo + this.rand() * (hi - lo));
  }

  /** Keeps a writer on the current primary while it serves; quietly retries otherwise. */
  async ensureWriter(): Promise<void> {
    if (this.writer) return;
    const s = await status(this.p[this.primary]).catch(() => undefined);
    if (!s || s.role !== 'Primary' || s.device.export.refusal) return;
    try {
      const w = await startWriter({
        uri: exportUri(this.p[this.primary]),
        ledger: this.ledger,
        rand: this.rand,
        depth: this.between(2, 8),
        fuaShare: 0.1,
        trimShare: 0.15,
        zeroShare: 0.05,
        flushShare: 0.05,
        label: `${this.primary}#${++this.writers}`,
      });
      this.writer = w;
      void w.ended.then(() => {
        if (this.writer === w) this.writer = undefined;
      });
    } catch {
      // Not serving yet: the next step tries again.
    }
  }

  async stopWriter(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    if (w) await w.stop();
  }

  async up(n: NodeName): Promise<void> {
    const r = await this.p[n].adm(['up', 'r0']);
    if (r.code !== 0) this.note(`  up on ${n}: ${r.stderr.trim()}`);
  }

  /** Promotes `n`, waiting for the connection a promotion may need; false if refused. */
  async promote(n: NodeName): Promise<boolean> {
    const until = Date.now() + 20000;
    let last = '';
    while (Date.now() < until) {
      const r = await this.p[n].adm(['primary', 'r0']);
      if (r.code === 0) return true;
      last = r.stderr.trim();
      await sleep(300);
    }
    this.note(`  primary on ${n} refused: ${last}`);
    return false;
  }

  async restart(n: NodeName): Promise<void> {
    await this.p.restart(n);
    await this.up(n);
  }

  async run(f: Fault): Promise<void> {
    const p = this.p;
    const sec = other(this.primary);
    switch (f) {
      case 'kill-secondary': {
        await p[sec].kill9();
        await sleep(this.between(100, 1500));
        await this.restart(sec);
        return;
      }
      case 'kill-primary': {
        const pri = this.primary;
        await p[pri].kill9();
        this.writer = undefined;
        await sleep(this.between(100, 1500));
        await this.restart(pri);
        // The crashed primary comes back first as Secondary and resumes once connected.
        await waitFor(p[pri], (s) => s.peers[0]!.connection === 'Connected', 'connected', 30000);
        await this.promote(pri);
        return;
      }
      case 'cut':
        p.proxy!.cut();
        await sleep(this.between(200, 1500));
        p.proxy!.heal();
        return;
      case 'blackhole':
        p.proxy!.blackhole();
        await sleep(this.between(300, 2500));
        p.proxy!.heal();
        return;
      case 'delay':
        p.proxy!.delay(this.between(5, 80));
        await sleep(this.between(500, 2000));
        p.proxy!.heal();
        return;
      case 'sigstop': {
        const n = this.rand() < 0.5 ? this.primary : sec;
        process.kill(p[n].proc.pid, 'SIGSTOP');
        await sleep(this.between(200, 2000));
        process.kill(p[n].proc.pid, 'SIGCONT');
        this.note(`  (stopped ${n})`);
        return;
      }
      case 'switchover': {
        await this.stopWriter();
        const pri = this.primary;
        // A planned switchover, as an admin does it: on a connected pair. Promoting a node
        // that has not seen the link come back after a cut or a black hole (while the old
        // primary wrote) is a split brain by design without fencing (drbd.md), which the
        // campaign does not test; CI's seed 1 once drew that timing.
        for (const n of [pri, sec]) {
          await waitFor(p[n], (s) => s.peers[0]!.connection === 'Connected', 'connected', 30000);
        }
        const r = await p[pri].adm(['secondary', 'r0']);
        if (r.code !== 0) {
          this.note(`  secondary on ${pri} refused: ${r.stderr.trim()}`);
          return;
        }
        if (await this.promote(sec)) this.primary = sec;
        else if (!(await this.promote(pri))) throw new Error(`neither node could be promoted`);
        return;
      }
      case 'switchover-in-resync': {
        // Issue 13's setting: the secondary misses writes, the resync is held paused, and
        // the SyncTarget is promoted while it reads through its SyncSource.
        const pri = this.primary;
        await p[pri].adm(['pause-sync', 'r0']);
        p.proxy!.cut();
        await sleep(this.between(300, 1500));
        p.proxy!.heal();
        await waitFor(p[pri], (s) => s.peers[0]!.connection === 'Connected', 'connected', 30000);
        await this.run('switchover');
        await sleep(this.between(0, 800));
        await p[pri].adm(['resume-sync', 'r0']);
        return;
      }
      case 'down-up': {
        const r = await p[sec].adm(['down', 'r0']);
        if (r.code !== 0) this.note(`  down on ${sec}: ${r.stderr.trim()}`);
        await sleep(this.between(100, 1000));
        await this.up(sec);
        return;
      }
      case 'pause-resume': {
        const n = this.rand() < 0.5 ? this.primary : sec;
        await p[n].adm(['pause-sync', 'r0']);
        await sleep(this.between(200, 1500));
        await p[n].adm(['resume-sync', 'r0']);
        this.note(`  (paused on ${n})`);
        return;
      }
    }
  }
}

for (let i = 0; i < ROUNDS; i++) {
  const seed = FIRST_SEED + i;
  t.test(`campaign round, seed ${seed}`, { timeout: ROUND_LIMIT_MS }, async (t) => {
    const rand = seededRandom(seed);
    // Protocol C in half the rounds; CI's seeds 1–3 take B, C and A.
    const protocol = (['C', 'B', 'C', 'A'] as const)[seed % 4]!;
    const dir = tmpDir(t);
    const p = await startPair(t, dir, {
      sizeBytes: SIZE,
      proxy: true,
      protocol,
      net: 'ping-timeout 5; max-epoch-size 100;',
    });
    await promoteAndSync(p);
    const ledger = new AckLedger(BLOCKS);
    const round = new Round(p, ledger, rand);
    round.note(`protocol ${protocol}`);
    const replay = (): string =>
      `replay: URBD_CAMPAIGN_SEED=${seed} URBD_CAMPAIGN_ROUNDS=1; faults:\n${round.log.join('\n')}`;
    try {
      await round.ensureWriter();
      for (let k = 0; k < FAULTS_PER_ROUND; k++) {
        await sleep(round.between(200, 1200));
        await round.ensureWriter();
        const f = FAULTS[Math.floor(rand() * FAULTS.length)]!;
        round.note(`${k + 1}. ${f} (primary ${round.primary})`);
        await round.run(f);
        await round.ensureWriter();
      }
      await sleep(round.between(300, 1000));
      await round.stopWriter();
      // Quiesce: everything healed and resumed, both up, then in sync.
      p.proxy!.heal();
      for (const n of ['alpha', 'beta'] as const) await p[n].adm(['resume-sync', 'r0']);
      await waitFor(p.alpha, inSync, 'in sync', 120000);
      await waitFor(p.beta, inSync, 'in sync', 120000);
    } catch (err) {
      t.fail(`round did not settle: ${(err as Error).message}\n${replay()}`);
      return;
    }
    const counts = ledger.counts;
    t.ok(counts.acked > 0, `${counts.acked} changes acknowledged, ${counts.failed} failed`);
    for (const [node, disk] of [
      ['alpha', p.alphaDisk],
      ['beta', p.betaDisk],
    ] as const) {
      const lost = await ledger.check(disk);
      t.same(lost.slice(0, 10), [], `every acknowledged change is on ${node}'s disk`, {
        lost: lost.length,
        replay: replay(),
      });
    }
    const diff = await diffBlocks(p.alphaDisk, p.betaDisk, SIZE);
    t.equal(diff.count, 0, 'the disks are identical', { first: diff.first, replay: replay() });
    const [a, b] = [await status(p.alpha), await status(p.beta)];
    t.equal(a.device.outOfSync + b.device.outOfSync, 0, 'nothing out of sync on either node');
    t.comment(replay());
  });
}
