/**
 * Plain counters every cache keeps. They cost one increment on the hot path;
 * /metrics reads them at scrape time, so this layer needs no metrics library.
 */
export interface CacheStats {
  hits: number;
  misses: number;
  /** Entries pushed out by the entry or byte bound (not by expiry or replacement). */
  evictions: number;
  /**
   * Cache-specific "served or found out of date" count: account entries whose credentials
   * changed in the database, IdP answers served stale while the IdP failed.
   */
  stale: number;
  entries: number;
  bytes: number;
  /** Configured bounds, for dashboards ("how full is it"). */
  maxEntries: number;
  maxBytes: number;
}

export interface Counters {
  hits: number;
  misses: number;
  evictions: number;
  stale: number;
}

export function newCounters(): Counters {
  return { hits: 0, misses: 0, evictions: 0, stale: 0 };
}

/** The slice of lru-cache the stats need. */
export interface SizedStore {
  readonly size: number;
  readonly calculatedSize: number;
}

export function statsOf(c: Counters, store: SizedStore | null, maxEntries: number, maxBytes: number): CacheStats {
  return {
    hits: c.hits,
    misses: c.misses,
    evictions: c.evictions,
    stale: c.stale,
    entries: store?.size ?? 0,
    bytes: store?.calculatedSize ?? 0,
    maxEntries,
    maxBytes,
  };
}

export interface Clock {
  /** Milliseconds; any monotonic-enough origin. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
