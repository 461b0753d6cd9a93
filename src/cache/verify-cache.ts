/**
 * The verify cache: HMAC-SHA256(process secret, stored hash ‖ 0x00 ‖ password)
 * → the outcome. Verification is a pure function of (hash, password), so an
 * entry is exact and can never be stale: a changed hash is a different key and
 * simply misses. Both match and mismatch are kept (a retried wrong password
 * costs no bcrypt run either); malformed and unsupported hashes never are,
 * because they say something about the row, not about the password.
 *
 * Neither the password nor the hash is stored: the key is a keyed digest whose
 * secret lives only in this process, and the value is the outcome plus the
 * scheme label.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { VerifyResult } from '../passwords/index.js';
import { createSingleFlight } from './single-flight.js';
import { newCounters, statsOf } from './stats.js';
import type { CacheStats } from './stats.js';

/** A verifier in the shape src/auth uses; the cache wraps one. Never throws. */
export type Verifier = (stored: string, password: string) => Promise<VerifyResult>;

export interface VerifyCacheOptions {
  /** 0 switches the cache off. */
  maxEntries: number;
  maxBytes: number;
  /** Injected for tests; a fresh random 32 bytes per process otherwise. */
  secret?: Buffer;
}

export interface VerifyCache {
  readonly enabled: boolean;
  /** The cached outcome, or undefined on a miss. Counts a hit or a miss. */
  lookup(stored: string, password: string): VerifyResult | undefined;
  /** Remembers definite outcomes only (match / mismatch); anything else is ignored. */
  remember(stored: string, password: string, result: VerifyResult): void;
  /** `verifier` with the cache in front of it. */
  wrap(verifier: Verifier): Verifier;
  stats(): CacheStats;
  clear(): void;
  /** Keys and values as stored, for tests proving no secret is kept. */
  dump(): Array<[string, Readonly<VerifyResult>]>;
}

/**
 * What one entry costs: a 32-char one-byte key string (~48 B), lru-cache's
 * per-slot arrays and Map entry (~60 B). Checked against RSS by `npm run bench`
 * (100,000 entries).
 */
export const VERIFY_ENTRY_BYTES = 128;

// Values are shared frozen objects, one per (outcome, scheme): an entry costs a pointer.
const outcomes = new Map<string, Readonly<VerifyResult>>();
function sharedOutcome(outcome: 'match' | 'mismatch', scheme: string): Readonly<VerifyResult> {
  const k = `${outcome}\u0000${scheme}`;
  let v = outcomes.get(k);
  if (v === undefined) {
    v = Object.freeze({ outcome, scheme });
    outcomes.set(k, v);
  }
  return v;
}

const SEPARATOR = Buffer.from([0]);

export function createVerifyCache(opts: VerifyCacheOptions): VerifyCache {
  const counters = newCounters();
  const enabled = opts.maxEntries > 0 && opts.maxBytes >= VERIFY_ENTRY_BYTES;
  const secret = opts.secret ?? randomBytes(32);
  const store = enabled
    ? new LRUCache<string, Readonly<VerifyResult>>({
        max: opts.maxEntries,
        maxSize: opts.maxBytes,
        sizeCalculation: () => VERIFY_ENTRY_BYTES,
        dispose: (_v, _k, reason) => {
          if (reason === 'evict') counters.evictions++;
        },
      })
    : null;

  // null: not cacheable. A NUL inside the stored value would make "hash ‖ 0x00 ‖ password"
  // ambiguous; real hashes never contain one, so such rows simply bypass the cache.
  const keyOf = (stored: string, password: string): string | null => {
    if (stored.includes('\u0000')) return null;
    return createHmac('sha256', secret).update(stored, 'utf8').update(SEPARATOR).update(password, 'utf8').digest('binary');
  };

  const get = (key: string | null): VerifyResult | undefined => {
    const hit = key === null || !store ? undefined : store.get(key);
    if (hit === undefined) counters.misses++;
    else counters.hits++;
    return hit;
  };
  const put = (key: string | null, result: VerifyResult): void => {
    if (key === null || !store) return;
    if (result.outcome !== 'match' && result.outcome !== 'mismatch') return;
    store.set(key, sharedOutcome(result.outcome, result.scheme));
  };
  const lookup = (stored: string, password: string): VerifyResult | undefined =>
    store ? get(keyOf(stored, password)) : undefined;
  const remember = (stored: string, password: string, result: VerifyResult): void => {
    if (store) put(keyOf(stored, password), result);
  };
  // A burst of logins with one password (a client opening many connections after a
  // restart) runs one bcrypt, not one per connection.
  const flights = createSingleFlight<string, VerifyResult>();

  return {
    enabled,
    lookup,
    remember,
    wrap(verifier) {
      if (!store) return verifier;
      return async (stored, password) => {
        const key = keyOf(stored, password);
        const cached = get(key);
        if (cached !== undefined) return cached;
        if (key === null) return verifier(stored, password);
        return flights.run(key, async () => {
          const result = await verifier(stored, password);
          put(key, result);
          return result;
        });
      };
    },
    stats: () => statsOf(counters, store, opts.maxEntries, opts.maxBytes),
    clear: () => store?.clear(),
    dump: () => (store ? [...store.entries()] : []),
  };
}
