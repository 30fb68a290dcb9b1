// A bulkhead: at most `limit` tasks run at once, the others wait their turn in arrival order.
//
// For CPU-bound database work (search), running more statements at once than the database has
// cores does not finish more of them: they share the cores, each runs longer, and the switching
// between them costs CPU of its own. Queued here instead, the same load is served with less CPU
// per statement, and it cannot take every core from the requests that share the database.

/** What the semaphore says when a task cannot have a turn (the queue is full, or the wait too long). */
export type Refusal = (reason: 'queue_full' | 'wait_timeout') => Error;

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

export class Semaphore {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    private readonly options: {
      /** Tasks running at once. */
      readonly limit: number;
      /** Tasks waiting at once; one more is refused at once. */
      readonly queueMax: number;
      /** The longest a task waits for its turn before it is refused. */
      readonly waitTimeoutMs: number;
      readonly refuse: Refusal;
    },
  ) {
    for (const [name, value, min] of [['limit', options.limit, 1], ['queueMax', options.queueMax, 0], ['waitTimeoutMs', options.waitTimeoutMs, 1]] as const) {
      if (!Number.isInteger(value) || value < min) throw new RangeError(`semaphore ${name} must be an integer ≥ ${min}: ${value}`);
    }
  }

  /** Tasks waiting for a turn now. */
  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.turn();
    try {
      return await task();
    } finally {
      this.done();
    }
  }

  private turn(): Promise<void> {
    if (this.running < this.options.limit) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.options.queueMax) return Promise.reject(this.options.refuse('queue_full'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const at = this.waiting.indexOf(waiter);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(this.options.refuse('wait_timeout'));
          // Not unref()'d: a waiter's promise must settle, even in a process with nothing else to do.
        }, this.options.waitTimeoutMs),
      };
      this.waiting.push(waiter);
    });
  }

  /** The finished task's turn passes to the first waiter (so `running` is unchanged), else it ends. */
  private done(): void {
    const next = this.waiting.shift();
    if (next) next.start();
    else this.running--;
  }
}
