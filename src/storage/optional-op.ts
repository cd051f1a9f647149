import { isUnsupported } from './errno.js';

/**
 * A native operation that this particular backing may turn out not to support. The first
 * "unsupported" answer is remembered so later requests skip the syscall instead of paying for
 * a failure each time; any other error is a real failure and propagates.
 */
export class OptionalOp {
  constructor(private supported: boolean) {}

  get available(): boolean {
    return this.supported;
  }

  /** For synchronous callers that ran the operation themselves and got an unsupported answer. */
  giveUp(): void {
    this.supported = false;
  }

  /** Resolves true when `run` succeeded, false when the operation is (now known) unsupported. */
  async attempt(run: () => Promise<void>): Promise<boolean> {
    if (!this.supported) return false;
    try {
      await run();
      return true;
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      this.supported = false;
      return false;
    }
  }
}
