import fc from 'fast-check';
import t from 'tap';

import { FlushPlan } from '../../src/storage/flush-plan.js';

/** One step of a disk's life, as FileDisk drives its plan. */
type Step =
  | { op: 'start' }
  | { op: 'complete'; pick: number }
  | { op: 'idleTurn' }
  | { op: 'flush' }
  | { op: 'syncEnd'; pick: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ op: 'start' as const }) },
  { weight: 3, arbitrary: fc.nat(7).map((pick) => ({ op: 'complete' as const, pick })) },
  { weight: 2, arbitrary: fc.constant({ op: 'idleTurn' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 2, arbitrary: fc.nat(3).map((pick) => ({ op: 'syncEnd' as const, pick })) },
);

interface Sync {
  /** The changes completed when it started: what it makes durable. */
  covers: Set<number>;
  ahead: boolean;
}

/**
 * Plays the steps against a plan and a model that remembers which changes each fdatasync
 * covers; returns how many flush-aheads started. Throws when a rule is broken.
 */
function play(steps: readonly Step[]): { aheads: number; syncs: number } {
  const plan = new FlushPlan();
  let nextId = 0;
  const inFlight: number[] = [];
  const completed = new Set<number>();
  const running: Sync[] = [];
  let latest: Sync | undefined;
  let checkDue = false;
  let aheads = 0;
  let syncs = 0;
  const startSync = (ahead: boolean): void => {
    plan.syncStarted(ahead);
    latest = { covers: new Set(completed), ahead };
    running.push(latest);
    syncs++;
    if (ahead) aheads++;
  };
  for (const s of steps) {
    switch (s.op) {
      case 'start':
        plan.changeStarted();
        inFlight.push(nextId++);
        break;
      case 'complete': {
        if (inFlight.length === 0) break;
        const [id] = inFlight.splice(s.pick % inFlight.length, 1);
        completed.add(id!);
        const due = plan.changeCompleted();
        // A false answer must never hide a flush-ahead that is wanted right now.
        if (!due && plan.aheadWanted()) throw new Error('changeCompleted hid a due flush-ahead');
        if (due) checkDue = true;
        break;
      }
      case 'idleTurn':
        // The setImmediate that FileDisk queues when the disk went idle.
        if (!checkDue) break;
        checkDue = false;
        if (plan.aheadWanted()) {
          if (inFlight.length > 0) throw new Error('flush-ahead while changes are in flight');
          if (running.some((r) => r.ahead)) throw new Error('two flush-aheads at once');
          if (latest && [...completed].every((c) => latest!.covers.has(c))) {
            throw new Error('flush-ahead with nothing new to flush');
          }
          startSync(true);
        }
        break;
      case 'flush':
        if (plan.flushRequested() === 'reuse') {
          if (latest === undefined) throw new Error('reuse before any fdatasync');
          for (const c of completed) {
            if (!latest.covers.has(c)) throw new Error(`reused an fdatasync that misses #${c}`);
          }
        } else {
          startSync(false);
        }
        break;
      case 'syncEnd': {
        if (running.length === 0) break;
        const [r] = running.splice(s.pick % running.length, 1);
        if (r!.ahead) plan.aheadEnded();
        break;
      }
    }
  }
  return { aheads, syncs };
}

t.test('a reused fdatasync covers every completed change; flush-aheads keep their limits', (t) => {
  fc.assert(
    fc.property(fc.array(stepArb, { maxLength: 80 }), (steps) => {
      play(steps);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 random histories');
  t.end();
});

t.test('writes without flushes never start a flush-ahead', (t) => {
  const noFlush = stepArb.filter((s) => s.op !== 'flush');
  fc.assert(
    fc.property(fc.array(noFlush, { maxLength: 80 }), (steps) => {
      const { syncs } = play(steps);
      if (syncs !== 0) throw new Error(`${syncs} fdatasyncs without a flush`);
    }),
    { numRuns: 1000 },
  );
  t.pass('1000 random histories');
  t.end();
});

t.test('the commit pattern: write, idle, flush turns flush-ahead on', (t) => {
  const commit: Step[] = [
    { op: 'start' },
    { op: 'complete', pick: 0 },
    { op: 'idleTurn' },
    { op: 'flush' },
    { op: 'syncEnd', pick: 0 },
  ];
  // The first commit teaches the plan; each later one flushes ahead and its FLUSH reuses it.
  t.same(play(commit), { aheads: 0, syncs: 1 });
  t.same(play([...commit, ...commit, ...commit]), { aheads: 2, syncs: 3 });

  const plan = new FlushPlan();
  plan.changeStarted();
  plan.changeCompleted();
  t.equal(plan.flushRequested(), 'start', 'nothing flushed yet');
  plan.syncStarted(false);
  t.equal(plan.flushRequested(), 'reuse', 'a second FLUSH with no change between');
  plan.changeStarted();
  t.equal(plan.changeCompleted(), true, 'idle again after one burst: a flush-ahead is due');
  t.equal(plan.aheadWanted(), true, 'flush follows idle: flush ahead');
  plan.syncStarted(true);
  t.equal(plan.aheadWanted(), false, 'one at a time');
  t.equal(plan.flushRequested(), 'reuse', 'the FLUSH takes the flush-ahead');
  t.end();
});

/** A plan that has seen one commit of one write: write, idle, FLUSH answered by an fdatasync. */
function afterOneCommit(): FlushPlan {
  const plan = new FlushPlan();
  plan.changeStarted();
  plan.changeCompleted();
  plan.flushRequested();
  plan.syncStarted(false);
  return plan;
}

/** One change started and completed: a burst at queue depth 1; true when a flush-ahead may be due. */
function burst(plan: FlushPlan): boolean {
  plan.changeStarted();
  return plan.changeCompleted();
}

for (const aheadDone of [true, false]) {
  const when = aheadDone ? 'after the flush-ahead ended' : 'while the flush-ahead runs';
  t.test(`a write where a flush was expected turns flush-ahead off (${when})`, (t) => {
    const plan = afterOneCommit();
    burst(plan);
    plan.syncStarted(true);
    if (aheadDone) plan.aheadEnded();
    // No FLUSH came: the next write finds the disk idle and the pattern broken.
    t.equal(burst(plan), false, 'one burst more than expected: nothing due');
    t.equal(plan.aheadWanted(), false, 'no flush-ahead after write, idle, write');
    t.equal(plan.flushRequested(), 'start', 'the flush-ahead does not cover that write');
    t.end();
  });
}

t.test('commits of two bursts: the flush-ahead waits for the second', (t) => {
  const plan = new FlushPlan();
  burst(plan);
  burst(plan);
  t.equal(plan.flushRequested(), 'start');
  plan.syncStarted(false);
  t.equal(burst(plan), false);
  t.equal(plan.aheadWanted(), false, 'one burst of the two: not yet');
  t.equal(burst(plan), true);
  t.equal(plan.aheadWanted(), true, 'the second burst: the FLUSH comes next');
  plan.syncStarted(true);
  t.equal(plan.flushRequested(), 'reuse');
  t.end();
});

t.test('a flush while changes are in flight turns flush-ahead off', (t) => {
  const plan = afterOneCommit();
  plan.changeStarted();
  plan.changeStarted();
  plan.changeCompleted();
  t.equal(plan.flushRequested(), 'start', 'the completed change is not covered');
  plan.syncStarted(false);
  t.equal(plan.changeCompleted(), false, 'idle, but nothing is due');
  t.equal(plan.aheadWanted(), false, 'queue depth above one: no pattern to follow');
  t.end();
});
