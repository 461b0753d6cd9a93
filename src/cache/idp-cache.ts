/**
 * The IdP cache: user → the identity provider's answer (e.g. the attribute
 * hash, template and password hash of a Keycloak user), so a login does not
 * call the IdP every time. Three ages matter:
 *
 * - a positive answer is fresh for `ttlMs`;
 * - a negative answer ("no such user") is fresh for the shorter `negativeTtlMs`;
 * - while the IdP fails, a positive answer up to `staleForMs` old may still be
 *   used through `getStale` (stale-if-error), so an outage does not lock out
 *   users who logged in recently. Negative answers are never served stale.
 *
 * `markStale` ends an entry's freshness early (say the password did not match
 * the cached hash: maybe it was changed at the IdP) without losing it as a
 * fallback. The caller decides when the IdP "fails"; this module only keeps ages.
 */
import { LRUCache } from 'lru-cache';
import { estimateBytes } from './size.js';
import { newCounters, statsOf, systemClock } from './stats.js';
import type { CacheStats, Clock } from './stats.js';

export interface IdpCacheOptions<V> {
  /** 0 switches the cache off. */
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
  negativeTtlMs: number;
  staleForMs: number;
  clock?: Clock;
  sizeOf?: (value: V) => number;
}

/** A fresh answer: the IdP's value, or null for "no such user". */
export interface IdpHit<V> {
  value: V | null;
  ageMs: number;
}

export interface IdpCache<V> {
  readonly enabled: boolean;
  /** A fresh answer, or undefined (miss: ask the IdP). Counts a hit or a miss. */
  get(key: string): IdpHit<V> | undefined;
  /** Record the IdP's answer; null = the IdP said there is no such user. */
  set(key: string, value: V | null): void;
  /** Stop serving the entry as fresh; it stays available to getStale. */
  markStale(key: string): void;
  /**
   * For when the IdP just failed: the last positive answer if it is at most
   * staleForMs old, else undefined. Counts a stale hit when it serves one.
   */
  getStale(key: string): IdpHit<V> | undefined;
  delete(key: string): void;
  clear(): void;
  stats(): CacheStats;
}

interface Entry<V> {
  value: V | null;
  fetchedAt: number;
  /** Fresh until; lowered by markStale. */
  freshUntil: number;
}

const ENTRY_OVERHEAD = 112;

export function createIdpCache<V extends object>(opts: IdpCacheOptions<V>): IdpCache<V> {
  const clock = opts.clock ?? systemClock;
  const sizeOf = opts.sizeOf ?? ((v: V) => estimateBytes(v));
  const counters = newCounters();
  const enabled = opts.maxEntries > 0 && opts.maxBytes > 0 && (opts.ttlMs > 0 || opts.staleForMs > 0);
  // Made at the first answer worth keeping: lru-cache allocates its slot arrays for maxEntries up
  // front (~0.8 MB of heap for the default 50,000), which a daemon without an IdP never needs.
  let store: LRUCache<string, Entry<V>> | null = null;
  const storeForWrite = (): LRUCache<string, Entry<V>> =>
    (store ??= new LRUCache<string, Entry<V>>({
      max: opts.maxEntries,
      maxSize: opts.maxBytes,
      sizeCalculation: (e, key) => Math.max(1, ENTRY_OVERHEAD + key.length + (e.value === null ? 0 : sizeOf(e.value))),
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') counters.evictions++;
      },
    }));

  // Past every use: not fresh, and too old (or negative) to serve stale.
  const dead = (e: Entry<V>, now: number): boolean =>
    now >= e.freshUntil && (e.value === null || now - e.fetchedAt > opts.staleForMs);

  return {
    enabled,
    get(key) {
      const e = store?.get(key);
      const now = clock.now();
      if (e !== undefined && now < e.freshUntil) {
        counters.hits++;
        return { value: e.value, ageMs: now - e.fetchedAt };
      }
      if (e !== undefined && dead(e, now)) store?.delete(key);
      counters.misses++;
      return undefined;
    },
    set(key, value) {
      if (!enabled) return;
      const now = clock.now();
      const ttl = value === null ? opts.negativeTtlMs : opts.ttlMs;
      const entry: Entry<V> = { value, fetchedAt: now, freshUntil: now + ttl };
      if (dead(entry, now)) store?.delete(key);
      else storeForWrite().set(key, entry);
    },
    markStale(key) {
      const e = store?.peek(key);
      if (e === undefined) return;
      e.freshUntil = Math.min(e.freshUntil, clock.now());
      if (dead(e, clock.now())) store?.delete(key);
    },
    getStale(key) {
      const e = store?.peek(key);
      const now = clock.now();
      if (e === undefined || e.value === null || now - e.fetchedAt > opts.staleForMs) return undefined;
      counters.stale++;
      return { value: e.value, ageMs: now - e.fetchedAt };
    },
    delete: (key) => void store?.delete(key),
    clear: () => store?.clear(),
    stats: () => statsOf(counters, store, opts.maxEntries, opts.maxBytes),
  };
}
