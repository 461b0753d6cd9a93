/**
 * The verify cache: HMAC-SHA256(process secret, stored hash ‖ 0x00 ‖ password)
 * → the outcome. Verification is a pure function of (hash, password), so an
 * entry is exact and can never be stale: a changed hash is a different key and
 * simply misses. Both match and mismatch are kept (a retried wrong password
 * costs no bcrypt run either); malformed and unsupported hashes never are,
 * because they say something about the row, not about the password.
 *
 * Neither the password nor the hash is stored: the key is a keyed digest whose
 * secret lives only in this process (its first 128 bits: a chance collision
 * among 10 million entries is ~2^-82), and the value is a number naming the
 * outcome and the scheme label. Entries live in a typed-array table
 * (digest-table.ts), not as strings in a Map: 100,000 of them are ~4 MB that
 * the garbage collector never has to trace.
 *
 * Remembered matches and remembered mismatches live in two tables of half the
 * capacity each (issue 16): ~100,000 distinct cheap guesses (SSHA256, microseconds
 * each) pushed every cached bcrypt success out of one shared LRU, and the users'
 * next logins all paid bcrypt again at once. A guess can only ever add a mismatch,
 * and a mismatch can only evict a mismatch; a success needs the password.
 */
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import type { VerifyResult } from '../passwords/index.js';
import { createDigestTable, DIGEST_ENTRY_BYTES } from './digest-table.js';
import type { Digest128 } from './digest-table.js';
import { createSingleFlight } from './single-flight.js';
import { newCounters, statsOf } from './stats.js';
import type { CacheStats } from './stats.js';

/** A verifier in the shape src/auth uses; the cache wraps one. Never throws. */
export type Verifier = (stored: string, password: string | Uint8Array, signal?: AbortSignal) => Promise<VerifyResult>;

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
  lookup(stored: string, password: string | Uint8Array): VerifyResult | undefined;
  /** Remembers definite outcomes only (match / mismatch); anything else is ignored. */
  remember(stored: string, password: string | Uint8Array, result: VerifyResult): void;
  /** `verifier` with the cache in front of it. */
  wrap(verifier: Verifier): Verifier;
  stats(): CacheStats;
  clear(): void;
  /** Keys (16 bytes as a latin1 string) and values as stored, for tests proving no secret is kept. */
  dump(): Array<[string, Readonly<VerifyResult>]>;
}

/**
 * What one entry costs: the digest table's typed arrays (16-byte key, outcome
 * byte, LRU links, index slots), rounded up for the index's power-of-two size.
 * The table is allocated for its capacity up front, zero-filled, so memory is
 * only touched as entries arrive. Checked against RSS by `npm run bench` (memory).
 */
export const VERIFY_ENTRY_BYTES = DIGEST_ENTRY_BYTES + 8;

// Values are shared frozen objects, one per (outcome, scheme), stored as their number.
const outcomeIds = new Map<string, number>();
const outcomeList: Array<Readonly<VerifyResult>> = [];
const MAX_OUTCOMES = 256; // the table stores one byte per entry

function outcomeId(outcome: 'match' | 'mismatch', scheme: string): number {
  const k = `${outcome}\u0000${scheme}`;
  let id = outcomeIds.get(k);
  if (id === undefined) {
    // Schemes come from a fixed list; past 256 (never in practice) results are simply not cached.
    if (outcomeList.length >= MAX_OUTCOMES) return -1;
    id = outcomeList.length;
    outcomeList.push(Object.freeze({ outcome, scheme }));
    outcomeIds.set(k, id);
  }
  return id;
}


/** The first 128 bits of a binary (latin1) digest string, as the table's four words. */
function wordsOf(d: string): Digest128 {
  const w = (i: number): number =>
    (d.charCodeAt(i) | (d.charCodeAt(i + 1) << 8) | (d.charCodeAt(i + 2) << 16) | (d.charCodeAt(i + 3) << 24)) >>> 0;
  return [w(0), w(4), w(8), w(12)];
}

function digestString(k: Digest128): string {
  const b = Buffer.alloc(16);
  k.forEach((w, i) => b.writeUInt32LE(w, i * 4));
  return b.toString('latin1');
}

export function createVerifyCache(opts: VerifyCacheOptions): VerifyCache {
  const counters = newCounters();
  const capacity = Math.min(opts.maxEntries, Math.floor(opts.maxBytes / VERIFY_ENTRY_BYTES));
  const enabled = capacity > 0;
  // A KeyObject, made once: createHmac then skips importing the raw key on every login.
  const secret = createSecretKey(opts.secret ?? randomBytes(32));
  // Half for matches (rounded up), half for mismatches; see the top of the file.
  const matchCapacity = Math.ceil(capacity / 2);
  const matches = enabled ? createDigestTable(matchCapacity) : null;
  const mismatches = enabled && capacity - matchCapacity > 0 ? createDigestTable(capacity - matchCapacity) : null;
  const entryCount = (): number => (matches?.size ?? 0) + (mismatches?.size ?? 0);
  const sized = enabled ? { get size() { return entryCount(); }, get calculatedSize() { return entryCount() * VERIFY_ENTRY_BYTES; } } : null;

  // null: not cacheable. A NUL inside the stored value would make "hash ‖ 0x00 ‖ password"
  // ambiguous; real hashes never contain one, so such rows simply bypass the cache.
  // The digest's first 16 bytes are the table key (HMAC-SHA256 truncated to 128 bits).
  // A password given as bytes hashes the same as the text whose UTF-8 they are.
  const keyOf = (stored: string, password: string | Uint8Array): string | null => {
    if (stored.includes('\u0000')) return null;
    if (typeof password === 'string') return createHmac('sha256', secret).update(`${stored}\u0000${password}`, 'utf8').digest('binary');
    return createHmac('sha256', secret).update(`${stored}\u0000`, 'utf8').update(password).digest('binary');
  };

  const get = (key: string | null): VerifyResult | undefined => {
    let id = -1;
    if (key !== null && matches) {
      const words = wordsOf(key);
      id = matches.get(words);
      if (id < 0 && mismatches) id = mismatches.get(words);
    }
    if (id < 0) {
      counters.misses++;
      return undefined;
    }
    counters.hits++;
    return outcomeList[id];
  };
  const put = (key: string | null, result: VerifyResult): void => {
    if (key === null || !matches) return;
    if (result.outcome !== 'match' && result.outcome !== 'mismatch') return;
    const into = result.outcome === 'match' ? matches : mismatches;
    if (!into) return;
    const id = outcomeId(result.outcome, result.scheme);
    if (id >= 0 && into.set(wordsOf(key), id)) counters.evictions++;
  };
  const lookup = (stored: string, password: string | Uint8Array): VerifyResult | undefined =>
    enabled ? get(keyOf(stored, password)) : undefined;
  const remember = (stored: string, password: string | Uint8Array, result: VerifyResult): void => {
    if (enabled) put(keyOf(stored, password), result);
  };
  // A burst of logins with one password (a client opening many connections after a
  // restart) runs one bcrypt, not one per connection.
  const flights = createSingleFlight<string, VerifyResult>();

  return {
    enabled,
    lookup,
    remember,
    wrap(verifier) {
      if (!enabled) return verifier;
      return async (stored, password, signal) => {
        const key = keyOf(stored, password);
        const cached = get(key);
        if (cached !== undefined) return cached;
        if (key === null) return verifier(stored, password, signal);
        return flights.run(key, async () => {
          const result = await verifier(stored, password, signal);
          put(key, result);
          return result;
        });
      };
    },
    stats: () => statsOf(counters, sized, opts.maxEntries, opts.maxBytes),
    clear: () => {
      matches?.clear();
      mismatches?.clear();
    },
    dump: () =>
      [...(matches?.entries() ?? []), ...(mismatches?.entries() ?? [])].map(([k, id]) => [digestString(k), outcomeList[id] as Readonly<VerifyResult>]),
  };
}
