/**
 * The account cache: user → what the decision needs from the database (the
 * mailbox row and its app-password rows), for a short TTL, so repeated logins
 * skip the full load (two queries, the attributes JSON, row building).
 *
 * It never serves stale credentials. A hit is confirmed by `revalidate.probe`,
 * one narrow indexed query for the fields that must take effect on the very
 * next login (password hashes, active flags); when they differ from the cached
 * entry, the entry is dropped and the account reloaded. What the TTL alone
 * governs is the rest (service access flags, name, quota…), which may lag by
 * up to the TTL.
 *
 * With revalidation, "no such user" is cached too (and confirmed the same way),
 * so a stream of logins for unknown users costs one narrow query each.
 *
 * Concurrent misses for one user share one load (single-flight). A caller
 * that joins a load already running sees the database as of that load's
 * start: at most one query's duration earlier than its own arrival.
 */
import { LRUCache } from 'lru-cache';
import { createSingleFlight } from './single-flight.js';
import { estimateBytes } from './size.js';
import { newCounters, statsOf, systemClock } from './stats.js';
import type { CacheStats, Clock } from './stats.js';

export type Loader<V> = (key: string, signal: AbortSignal) => Promise<V | null>;

export interface Revalidation<V, S> {
  /** A cheap read of the fields that must never be stale; null when the row is gone. */
  probe(key: string, signal: AbortSignal): Promise<S | null>;
  /** Whether the cached value still agrees with the probed state. */
  isCurrent(value: V, state: S): boolean;
}

export interface AccountCacheOptions<V> {
  /** 0 switches the cache off (as does ttlMs 0). */
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
  clock?: Clock;
  /** Estimated heap bytes of one value; defaults to a structural estimate. */
  sizeOf?: (value: V) => number;
}

export interface AccountCache<V> {
  readonly enabled: boolean;
  /** `load` with the cache in front of it; with `revalidate`, every hit is confirmed first. */
  wrap<S>(load: Loader<V>, revalidate?: Revalidation<V, S>): Loader<V>;
  /** The cached value when fresh; no counting (tests, diagnostics). */
  peek(key: string): V | undefined;
  delete(key: string): void;
  clear(): void;
  stats(): CacheStats;
  /** Keys and values as stored, for tests proving no secret is kept. */
  dump(): Array<[string, V]>;
}

interface Entry<V> {
  /** null: "no such user", kept only when every hit is revalidated. */
  value: V | null;
  expires: number;
}

const ENTRY_OVERHEAD = 96; // the Entry wrapper, lru-cache's slots and Map entry

export function createAccountCache<V extends object>(opts: AccountCacheOptions<V>): AccountCache<V> {
  const clock = opts.clock ?? systemClock;
  const sizeOf = opts.sizeOf ?? ((v: V) => estimateBytes(v));
  const counters = newCounters();
  const enabled = opts.maxEntries > 0 && opts.ttlMs > 0 && opts.maxBytes > 0;
  const store = enabled
    ? new LRUCache<string, Entry<V>>({
        max: opts.maxEntries,
        maxSize: opts.maxBytes,
        // An entry larger than the whole budget is simply not stored (lru-cache refuses it).
        sizeCalculation: (e, key) => Math.max(1, ENTRY_OVERHEAD + key.length + (e.value === null ? 0 : sizeOf(e.value))),
        dispose: (_v, _k, reason) => {
          if (reason === 'evict') counters.evictions++;
        },
      })
    : null;
  const flights = createSingleFlight<string, V | null>();
  // Expired entries are dropped lazily on access, and all at once every quarter TTL (amortised
  // over inserts, no timer), so memory follows the TTL rather than the entry bound: at a steady
  // login rate the cache holds at most 1.25 TTLs' worth of accounts, where a sweep once per TTL
  // let it reach two (bench "memory", ~2,000 logins/s, 10 s TTL: ~22,000 accounts, was ~30,000).
  // A sweep walks every entry; at that size it takes about a millisecond.
  const sweepEvery = Math.max(1, Math.floor(opts.ttlMs / 4));
  let nextSweep = clock.now() + sweepEvery;
  const sweep = (now: number): void => {
    if (!store || now < nextSweep) return;
    nextSweep = now + sweepEvery;
    const dead: string[] = [];
    for (const [k, e] of store.entries()) if (e.expires <= now) dead.push(k);
    for (const k of dead) store.delete(k);
  };
  const put = (key: string, value: V | null): void => {
    if (!store) return;
    const now = clock.now();
    sweep(now);
    store.set(key, { value, expires: now + opts.ttlMs });
  };

  const fresh = (key: string): Entry<V> | undefined => {
    const e = store?.get(key);
    if (e === undefined) return undefined;
    if (e.expires > clock.now()) return e;
    store?.delete(key);
    return undefined;
  };

  return {
    enabled,
    wrap<S>(load: Loader<V>, revalidate?: Revalidation<V, S>): Loader<V> {
      if (!store) return load;
      // Without revalidation an absent user is not remembered: it may be created any moment.
      const keepAbsent = revalidate !== undefined;
      const loadShared = (key: string, signal: AbortSignal): Promise<V | null> =>
        flights.run(key, async () => {
          const value = await load(key, signal);
          if (value !== null || keepAbsent) put(key, value);
          return value;
        });
      return async (key, signal) => {
        const e = fresh(key);
        if (e === undefined) {
          counters.misses++;
          return loadShared(key, signal);
        }
        if (revalidate) {
          const state = await revalidate.probe(key, signal);
          const current = state === null ? e.value === null : e.value !== null && revalidate.isCurrent(e.value, state);
          if (!current) {
            counters.stale++;
            // Only drop what we checked: a concurrent reload may already have replaced it.
            if (store.peek(key) === e) store.delete(key);
            if (state === null) {
              put(key, null);
              return null;
            }
            return loadShared(key, signal);
          }
        }
        counters.hits++;
        return e.value;
      };
    },
    peek(key) {
      const e = store?.peek(key);
      return e !== undefined && e.expires > clock.now() && e.value !== null ? e.value : undefined;
    },
    delete: (key) => void store?.delete(key),
    clear: () => store?.clear(),
    stats: () => statsOf(counters, store, opts.maxEntries, opts.maxBytes),
    dump: () => (store ? [...store.entries()].flatMap(([k, e]) => (e.value === null ? [] : [[k, e.value] as [string, V]])) : []),
  };
}
