/**
 * Concurrent callers asking for the same key share one in-flight promise
 * (STYLE 13), so a burst of logins for one cold user costs one database load.
 * A caller joins only a load that is still running; a finished one is forgotten.
 */
export interface SingleFlight<K, V> {
  run(key: K, fn: () => Promise<V>): Promise<V>;
  /** Keys with a load in flight (for tests and metrics). */
  readonly inFlight: number;
}

export function createSingleFlight<K, V>(): SingleFlight<K, V> {
  const pending = new Map<K, Promise<V>>();
  return {
    run(key, fn) {
      const running = pending.get(key);
      if (running) return running;
      const p = (async () => {
        try {
          return await fn();
        } finally {
          pending.delete(key);
        }
      })();
      pending.set(key, p);
      return p;
    },
    get inFlight() {
      return pending.size;
    },
  };
}
