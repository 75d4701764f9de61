/** Sleeps that can be cut short: new readings, an ack, a closed connection, stop. */
export class Signal {
  private waiters = new Set<() => void>();

  /** Ends every sleep in progress. */
  notify(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  /** Resolves after `ms`, or at the next notify(), whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.waiters;
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      waiters.add(done);
    });
  }
}
