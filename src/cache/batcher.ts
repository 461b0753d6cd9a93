/**
 * Coalesces many single-key reads into one multi-key read (the DataLoader
 * pattern), bounded to `maxInFlight` reads at a time. Keys that arrive while
 * reads are running wait for the next read and share it. A read is sent once
 * `minBatch` keys are waiting, or `maxWaitMs` after the first of them arrived:
 * a trickle of keys (logins arriving one by one from Dovecot's auth workers)
 * then shares reads too, instead of costing one statement each.
 *
 * Freshness: a key is only ever answered by a read that was sent after the key
 * was asked for, so a caller sees the database as of its own arrival or later
 * (unlike single-flight, which may hand back a read that started earlier).
 */
export interface BatcherOptions {
  /** Most keys in one read. */
  maxBatch: number;
  /** Most reads running at once. */
  maxInFlight: number;
  /** Keys that are sent at once; fewer wait up to maxWaitMs for company (default 1: no waiting). */
  minBatch?: number;
  /** The longest a key waits for company before its read is sent (default 0). */
  maxWaitMs?: number;
}

export interface Batcher<K, V> {
  /** The value for `key`, or undefined when the read found none. */
  load(key: K): Promise<V | undefined>;
  /** Reads sent so far and keys answered, for tests and tuning. */
  stats(): { reads: number; keys: number };
}

interface Waiter<V> {
  resolve(v: V | undefined): void;
  reject(err: unknown): void;
}

export function createBatcher<K, V>(read: (keys: K[]) => Promise<Map<K, V>>, opts: BatcherOptions): Batcher<K, V> {
  let queue = new Map<K, Waiter<V>[]>();
  let inFlight = 0;
  let scheduled = false;
  let reads = 0;
  let keys = 0;

  const minBatch = Math.max(1, opts.minBatch ?? 1);
  const maxWaitMs = opts.maxWaitMs ?? 0;
  let waitTimer: NodeJS.Timeout | null = null;
  // When the oldest waiting key arrived; keys left over by a full read keep it, so they are
  // overdue and go with the next read instead of waiting again.
  let waitingSince = 0;

  const waitOver = (): void => {
    waitTimer = null;
    if (!scheduled && inFlight < opts.maxInFlight && queue.size > 0) {
      scheduled = true;
      dispatch();
    }
  };

  const schedule = (): void => {
    if (scheduled || inFlight >= opts.maxInFlight || queue.size === 0) return;
    if (queue.size < minBatch && maxWaitMs > 0) {
      const left = waitingSince + maxWaitMs - performance.now();
      if (left > 0) {
        // Too few to send yet, and the oldest has not waited long enough.
        waitTimer ??= setTimeout(waitOver, Math.ceil(left));
        return;
      }
    }
    scheduled = true;
    // After the current I/O phase: requests parsed in the same loop turn share a read.
    setImmediate(dispatch);
  };

  function dispatch(): void {
    scheduled = false;
    if (waitTimer !== null) {
      clearTimeout(waitTimer);
      waitTimer = null;
    }
    while (inFlight < opts.maxInFlight && queue.size > 0) {
      let batch: Map<K, Waiter<V>[]>;
      if (queue.size <= opts.maxBatch) {
        batch = queue;
        queue = new Map();
      } else {
        batch = new Map();
        for (const [k, w] of queue) {
          if (batch.size >= opts.maxBatch) break;
          batch.set(k, w);
          queue.delete(k);
        }
      }
      inFlight++;
      reads++;
      keys += batch.size;
      read([...batch.keys()]).then(
        (found) => {
          for (const [k, waiters] of batch) for (const w of waiters) w.resolve(found.get(k));
        },
        (err: unknown) => {
          for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
        },
      ).finally(() => {
        inFlight--;
        schedule();
      });
    }
  }

  return {
    load(key) {
      return new Promise<V | undefined>((resolve, reject) => {
        const waiters = queue.get(key);
        if (waiters) waiters.push({ resolve, reject });
        else {
          if (queue.size === 0) waitingSince = performance.now();
          queue.set(key, [{ resolve, reject }]);
        }
        schedule();
      });
    },
    stats: () => ({ reads, keys }),
  };
}
