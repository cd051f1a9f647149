/**
 * Which fdatasync answers a flush, and when a disk starts one before it is asked.
 *
 * An fdatasync makes durable every change that completed before it started. So a flush
 * request is answered by the latest fdatasync when no change has completed since that one
 * started (it may still be running: the request waits for it), and by a new one otherwise.
 *
 * Flush-ahead. A writer that commits one transaction at a time (a database at queue depth 1,
 * and the secondary copying it) writes, waits for the reply, then flushes. The flush cannot
 * start before it arrives, so its fdatasync adds to the round trip. When the last change in
 * flight completes and the disk's previous idle moment was followed by a flush, the disk
 * starts that fdatasync at once instead: it runs while the reply travels to the client and
 * the FLUSH comes back (on a pair, while the write ack travels and the barrier comes), and the
 * FLUSH finds it done or under way. A change instead of the expected flush turns this off
 * until a flush follows an idle moment again, so a stream of writes without flushes costs no
 * extra fdatasync; at most one flush-ahead runs at a time.
 *
 * Pure bookkeeping: the disk reports changes, requests and starts; the rules live here.
 */
export class FlushPlan {
  /** Changes (writes, zeroes, trims) completed so far. */
  private completed = 0;
  private changesInFlight = 0;
  /** The disk went idle after a change and no change or flush request came since. */
  private idle = false;
  /** The last idle moment was followed by a flush request (the commit pattern). */
  private flushFollowsIdle = false;
  /** `completed` when the latest fdatasync started; -1 before the first. */
  private latestCovers = -1;
  private aheadRunning = false;

  changeStarted(): void {
    if (this.idle) {
      this.idle = false;
      this.flushFollowsIdle = false;
    }
    this.changesInFlight++;
  }

  /**
   * A change completed (successfully or not: either way it is no longer in flight).
   * True when the disk is now idle: the caller asks aheadWanted() once its own replies are
   * out, so the fdatasync's hand-off does not delay them.
   */
  changeCompleted(): boolean {
    this.completed++;
    this.changesInFlight--;
    if (this.changesInFlight > 0) return false;
    this.idle = true;
    return true;
  }

  /** Whether to start a flush-ahead now. */
  aheadWanted(): boolean {
    return (
      this.idle &&
      this.flushFollowsIdle &&
      !this.aheadRunning &&
      this.latestCovers !== this.completed
    );
  }

  /** A flush was requested: 'reuse' when the latest fdatasync covers every completed change. */
  flushRequested(): 'reuse' | 'start' {
    if (this.idle) {
      this.idle = false;
      this.flushFollowsIdle = true;
    }
    return this.latestCovers === this.completed ? 'reuse' : 'start';
  }

  /** An fdatasync starts now (ahead: of the disk's own accord). */
  syncStarted(ahead: boolean): void {
    this.latestCovers = this.completed;
    if (ahead) this.aheadRunning = true;
  }

  aheadEnded(): void {
    this.aheadRunning = false;
  }
}
