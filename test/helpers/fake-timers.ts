// Fake setTimeout/clearTimeout for tests. While installed, only timers whose delay the
// `capture` predicate accepts are faked (tap's own timers keep working); the test decides
// when they run, so nothing waits for real time.

/** A captured timer; what the faked setTimeout returns. */
export class FakeHandle {
  cancelled = false;
  constructor(
    readonly fn: () => void,
    readonly ms: number,
  ) {}
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  hasRef(): boolean {
    return false;
  }
}

export class FakeTimers {
  private readonly realSet = globalThis.setTimeout;
  private readonly realClear = globalThis.clearTimeout;
  /** Captured timers neither cancelled nor fired, oldest first. */
  private readonly pending: FakeHandle[] = [];
  /** Called with every timer as it is captured. */
  onArm: ((h: FakeHandle) => void) | undefined;

  constructor(private readonly capture: (ms: number) => boolean) {}

  /**
   * Runs `body` with fake timers for delay `ms` (or every delay `capture` accepts); always
   * restores the real ones.
   */
  static async with<T>(
    capture: number | ((ms: number) => boolean),
    body: (ft: FakeTimers) => Promise<T>,
  ): Promise<T> {
    const pred = typeof capture === 'number' ? (d: number) => d === capture : capture;
    const ft = new FakeTimers(pred).install();
    try {
      return await body(ft);
    } finally {
      ft.uninstall();
    }
  }

  install(): this {
    const realSet = this.realSet as (fn: () => void, ms?: number, ...args: unknown[]) => unknown;
    const realClear = this.realClear;
    globalThis.setTimeout = ((fn: () => void, ms?: number, ...args: unknown[]) => {
      if (typeof fn === 'function' && this.capture(ms ?? 0)) {
        const h = new FakeHandle(fn, ms ?? 0);
        this.pending.push(h);
        this.onArm?.(h);
        return h;
      }
      return realSet(fn, ms, ...args);
    }) as unknown as typeof setTimeout;
    globalThis.clearTimeout = ((h: unknown) => {
      if (h instanceof FakeHandle) {
        h.cancelled = true;
        this.drop(h);
      } else realClear(h as NodeJS.Timeout);
    }) as typeof clearTimeout;
    return this;
  }

  uninstall(): void {
    globalThis.setTimeout = this.realSet;
    globalThis.clearTimeout = this.realClear;
  }

  /** Timers armed and neither cancelled nor fired, oldest first (a copy). */
  get armed(): FakeHandle[] {
    return [...this.pending];
  }

  /** Forgets every armed timer without running it. */
  reset(): void {
    this.pending.length = 0;
  }

  /**
   * Runs `h` (by default the oldest armed timer) unless it was cancelled or already ran;
   * false if nothing ran.
   */
  fire(h: FakeHandle | undefined = this.pending[0]): boolean {
    if (!h || h.cancelled) return false;
    this.drop(h);
    h.cancelled = true;
    h.fn();
    return true;
  }

  /** Time passes: every timer armed now runs (unless cancelled meanwhile); returns how many did. */
  advance(): number {
    let n = 0;
    for (const h of this.armed) n += this.fire(h) ? 1 : 0;
    return n;
  }

  private drop(h: FakeHandle): void {
    const i = this.pending.indexOf(h);
    if (i >= 0) this.pending.splice(i, 1);
  }
}
