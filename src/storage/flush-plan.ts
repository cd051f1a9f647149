/**
 * Which fdatasync answers a flush, and when a disk starts one before it is asked.
 *
 * An fdatasync makes durable every change that completed before it started. So a flush
 * request is answered by the latest fdatasync when no change has completed since that one
 * started (it may still be running: the request waits for it), and by a new one otherwise.
 *
 * Flush-ahead. A writer that commits one transaction at a time (a database at queue depth 1,
 * and the secondary copying it) writes, waits for the reply, then flushes. The flush cannot
 * start before it arrives, so its fdatasync adds to the round trip. The plan counts the
 * bursts of changes (from the first change to the disk being idle again) between flush
 * requests; when a flush came with the disk idle after N bursts, the disk starts the next
 * fdatasync itself as soon as the N-th burst after it completes. It then runs while the reply
 * travels to the client and the FLUSH comes back (on a pair, while the write ack travels and
 * the barrier comes), and the FLUSH finds it done or under way. One burst more than
 * expected, or a flush while changes are in flight, and nothing is flushed ahead until the
 * pattern shows again; a stream of writes without flushes costs no extra fdatasync, and at
 * most one flush-ahead runs at a time.
 *
 * Pure bookkeeping: the disk reports changes, requests and starts; the rules live here.
 */
export class FlushPlan {
  /** Changes (writes, zeroes, trims) completed so far. */
  private completed = 0;
  private changesInFlight = 0;
  /** Bursts of changes completed since the last flush request. */
  private bursts = 0;
  /** Bursts between the last two flushes when the last one found the disk idle; 0: none. */
  private expected = 0;
  /** `completed` when the latest fdatasync started; -1 before the first. */
  private latestCovers = -1;
  private aheadRunning = false;

  changeStarted(): void {
    this.changesInFlight++;
  }

  /**
   * A change completed (successfully or not: either way it is no longer in flight).
   * True when a flush-ahead may be due: the caller asks aheadWanted() once its own replies
   * are out, so the fdatasync's hand-off does not delay them.
   */
  changeCompleted(): boolean {
    this.completed++;
    this.changesInFlight--;
    if (this.changesInFlight > 0) return false;
    this.bursts++;
    return this.bursts === this.expected;
  }

  /** Whether to start a flush-ahead now. */
  aheadWanted(): boolean {
    return (
      this.changesInFlight === 0 &&
      this.expected > 0 &&
      this.bursts === this.expected &&
      !this.aheadRunning &&
      this.latestCovers !== this.completed
    );
  }

  /** A flush was requested: 'reuse' when the latest fdatasync covers every completed change. */
  flushRequested(): 'reuse' | 'start' {
    // A second flush with nothing changed since the first keeps what the first learned.
    if (this.changesInFlight > 0) this.expected = 0;
    else if (this.bursts > 0) this.expected = this.bursts;
    this.bursts = 0;
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
