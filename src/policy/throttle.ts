/**
 * Brute-force throttling (issue 17): failure counters per client address
 * (IPv6 by prefix), per mailbox and per (address, mailbox). The server asks
 * `check()` before a login is decided and reports the outcome after; a refused
 * login is answered without touching the database or a hash.
 *
 * Each counter is a leaky bucket of *distinct* wrong passwords: a failure whose
 * fingerprint (keyed HMAC of user and password, 32 bits) is among the counter's
 * last eight is not counted again, so a client repeating one stale password —
 * an old phone after a password change — counts once, not once a minute. One
 * counted failure leaks away every `forget_one_every`. Above `free` the counter
 * imposes an exponential back-off (base · 2^(n-1), capped) during which every
 * attempt is refused at once; at `block_after` a block of `block_for`.
 *
 * The per-mailbox counter (distributed guessing: many addresses, one mailbox)
 * does not apply to an address the mailbox has logged in from successfully
 * within `familiar_for`, so an attack from elsewhere cannot lock the owner out
 * of the devices they use. With the defaults a single address cannot push a
 * mailbox into a block at all (its own (address, mailbox) counter blocks at 30,
 * the mailbox's at 50).
 *
 * Memory: every table is an lru-cache bounded by `max_entries` with per-entry
 * TTLs (the time the bucket needs to drain), so an attacker with a million
 * addresses evicts the oldest counters rather than growing the heap.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createSecretKey } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ThrottleConfig, ThrottleScopeConfig } from '../config/index.js';
import { clientKey, networkMatcher } from './address.js';

export type ThrottleScope = 'ip' | 'user' | 'ip_user';
export const THROTTLE_SCOPES: readonly ThrottleScope[] = ['ip', 'user', 'ip_user'];

export type Verdict =
  | { allowed: true }
  | {
      allowed: false;
      scope: ThrottleScope;
      /** Milliseconds until the counter lets the next attempt through. */
      retryAfterMs: number;
      /** A block (block_after reached), not just back-off. */
      blocked: boolean;
    };

const ALLOWED: Verdict = Object.freeze({ allowed: true });

export interface ThrottleEntryView {
  scope: ThrottleScope;
  /** The address key ("192.0.2.7", "2001:db8:1:2::/64"), for ip and ip_user. */
  ip?: string;
  /** The mailbox, for user and ip_user. */
  user?: string;
  /** Distinct failures still counted (after leaking). */
  failures: number;
  blocked: boolean;
  /** ISO time until which attempts are refused; null when none are. */
  until: string | null;
}

export interface ThrottleStats {
  entries: Record<ThrottleScope | 'familiar', number>;
  /** Attempts refused before the decision, by the scope that refused them. */
  refused: Record<ThrottleScope, number>;
  /** Failures reported, and those counted (distinct) per scope. */
  failures: number;
  counted: Record<ThrottleScope, number>;
  /** Blocks started. */
  blocks: Record<ThrottleScope, number>;
  /** Counters pushed out by max_entries before they drained. */
  evictions: number;
}

export interface Throttle {
  readonly enabled: boolean;
  /** Before the decision: may this attempt be verified at all? */
  check(ip: string, user: string): Verdict;
  /** After a failed login (password_mismatch, user_unknown, user_disabled). */
  failed(ip: string, user: string, fingerprint: number): void;
  /** After a successful login: the (address, mailbox) counter is cleared, the address becomes familiar. */
  succeeded(ip: string, user: string): void;
  /** 32-bit keyed fingerprint of a guess; the key is per process and never leaves it. */
  fingerprint(user: string, password: string): number;
  /** Counters that refuse attempts now (all counters with `all`). */
  list(filter?: { ip?: string; user?: string; all?: boolean }): ThrottleEntryView[];
  /** Drop counters matching the filter (none: all of them); familiar addresses stay. Returns how many went. */
  clear(filter?: { ip?: string; user?: string }): number;
  stats(): ThrottleStats;
}

export interface ThrottleOptions {
  config: ThrottleConfig;
  clock?: { now(): number };
  /** Told once when a counter starts a block (for the log). */
  onBlock?: (event: { scope: ThrottleScope; ip?: string; user?: string; untilMs: number; failures: number }) => void;
}

const RING = 8;
const FAMILIAR_REFRESH_MS = 86_400_000;

/** One leaky bucket; a class so every entry has one shape. */
class Bucket {
  level = 0;
  at = 0;
  until = 0;
  blocked = false;
  ring = new Uint32Array(RING);
  ringUsed = 0;
  ringPos = 0;

  seen(fp: number): boolean {
    for (let i = 0; i < this.ringUsed; i++) if (this.ring[i] === fp) return true;
    return false;
  }

  remember(fp: number): void {
    this.ring[this.ringPos] = fp;
    this.ringPos = (this.ringPos + 1) % RING;
    if (this.ringUsed < RING) this.ringUsed += 1;
  }

  /** Whole failures still counted at `now` (one leaks away per forgetMs since `at`). */
  levelAt(now: number, forgetMs: number): number {
    return Math.max(0, this.level - Math.floor((now - this.at) / forgetMs));
  }

  /** Apply the leak, moving `at` on by the whole periods that leaked. */
  leak(now: number, forgetMs: number): void {
    const periods = Math.floor((now - this.at) / forgetMs);
    if (periods <= 0) return;
    this.level = Math.max(0, this.level - periods);
    this.at = this.level === 0 ? now : this.at + periods * forgetMs;
  }
}

const SEP = '\u0000';

export function normalizeUser(user: string): string {
  return user.slice(0, 255).toLowerCase();
}

export function createThrottle(opts: ThrottleOptions): Throttle {
  const c = opts.config;
  const clock = opts.clock ?? { now: () => Date.now() };
  const trusted = networkMatcher(c.trustedNetworks);
  const key: KeyObject = createSecretKey(randomBytes(32));
  const counters = {
    refused: { ip: 0, user: 0, ip_user: 0 },
    counted: { ip: 0, user: 0, ip_user: 0 },
    blocks: { ip: 0, user: 0, ip_user: 0 },
    failures: 0,
    evictions: 0,
  };
  const dispose = (_v: unknown, _k: string, reason: string): void => {
    if (reason === 'evict') counters.evictions += 1;
  };
  const table = (): LRUCache<string, Bucket> => new LRUCache<string, Bucket>({ max: c.maxEntries, ttlAutopurge: false, dispose });
  const tables: Record<ThrottleScope, LRUCache<string, Bucket>> = { ip: table(), user: table(), ip_user: table() };
  const scopes: Record<ThrottleScope, ThrottleScopeConfig> = { ip: c.ip, user: c.user, ip_user: c.ipUser };
  const familiar = new LRUCache<string, true>({ max: c.maxEntries, ttl: Math.max(1, c.familiarForMs), ttlAutopurge: false });

  /** Trusted addresses have no address counter (a webmail host speaks for many users). */
  const ipKeyOf = (ip: string): { key: string | null; trusted: boolean } => {
    const key = clientKey(ip, c.ipv6Prefix);
    return { key, trusted: key !== null && trusted.contains(ip) };
  };

  /** The refusal of one counter at `now`, or null. */
  function refusal(scope: ThrottleScope, k: string, now: number, prev: Verdict): Verdict {
    const b = tables[scope].get(k);
    if (b === undefined || b.until <= now) return prev;
    const retryAfterMs = b.until - now;
    // The longest refusal wins: it is the one the client actually has to wait out.
    if (!prev.allowed && prev.retryAfterMs >= retryAfterMs) return prev;
    return { allowed: false, scope, retryAfterMs, blocked: b.blocked };
  }

  function count(scope: ThrottleScope, k: string, fp: number, now: number, who: { ip?: string; user?: string }): void {
    const sc = scopes[scope];
    const t = tables[scope];
    let b = t.get(k);
    if (b === undefined) b = new Bucket();
    else if (b.seen(fp)) return;
    b.leak(now, sc.forgetOneEveryMs);
    if (b.level === 0) b.at = now;
    b.level += 1;
    b.remember(fp);
    counters.counted[scope] += 1;
    if (b.level >= sc.blockAfter) {
      if (!b.blocked || b.until <= now) {
        counters.blocks[scope] += 1;
        opts.onBlock?.({ scope, ...who, untilMs: now + sc.blockForMs, failures: b.level });
      }
      b.blocked = true;
      b.until = now + sc.blockForMs;
    } else if (b.level > sc.free) {
      const n = b.level - sc.free;
      b.blocked = false;
      b.until = now + Math.min(c.backoffMaxMs, c.backoffBaseMs * 2 ** Math.min(n - 1, 40));
    } else {
      b.blocked = false;
    }
    // Kept until the bucket has drained and any refusal has run out.
    const ttl = Math.max(b.until - now, 0) + b.level * sc.forgetOneEveryMs;
    t.set(k, b, { ttl });
  }

  function view(scope: ThrottleScope, k: string, b: Bucket, now: number): ThrottleEntryView {
    const v: ThrottleEntryView = {
      scope,
      failures: b.levelAt(now, scopes[scope].forgetOneEveryMs),
      blocked: b.blocked && b.until > now,
      until: b.until > now ? new Date(b.until).toISOString() : null,
    };
    if (scope === 'ip') v.ip = k;
    else if (scope === 'user') v.user = k;
    else {
      const i = k.indexOf(SEP);
      v.ip = k.slice(0, i);
      v.user = k.slice(i + 1);
    }
    return v;
  }

  function matches(v: { ip?: string; user?: string }, f: { ip?: string; user?: string }, fIpKey: string | null): boolean {
    if (f.user !== undefined && v.user !== normalizeUser(f.user)) return false;
    if (f.ip !== undefined && v.ip !== fIpKey) return false;
    return true;
  }

  return {
    enabled: c.enabled,

    check(ip, user) {
      if (!c.enabled) return ALLOWED;
      const now = clock.now();
      const ipKey = clientKey(ip, c.ipv6Prefix);
      const u = normalizeUser(user);
      let v = ALLOWED;
      let familiarHere = false;
      if (ipKey !== null) {
        // The trusted-network test (a BlockList lookup) only when the address counter would refuse.
        const byIp = refusal('ip', ipKey, now, v);
        if (!byIp.allowed && !trusted.contains(ip)) v = byIp;
        const pair = ipKey + SEP + u;
        v = refusal('ip_user', pair, now, v);
        familiarHere = familiar.get(pair) === true;
      }
      if (!familiarHere) v = refusal('user', u, now, v);
      if (!v.allowed) counters.refused[v.scope] += 1;
      return v;
    },

    failed(ip, user, fp) {
      if (!c.enabled) return;
      counters.failures += 1;
      const now = clock.now();
      const { key: ipKey, trusted: isTrusted } = ipKeyOf(ip);
      const u = normalizeUser(user);
      if (ipKey !== null) {
        if (!isTrusted) count('ip', ipKey, fp, now, { ip: ipKey });
        count('ip_user', ipKey + SEP + u, fp, now, { ip: ipKey, user: u });
      }
      count('user', u, fp, now, { user: u });
    },

    succeeded(ip, user) {
      if (!c.enabled) return;
      const ipKey = clientKey(ip, c.ipv6Prefix);
      if (ipKey === null) return;
      const k = ipKey + SEP + normalizeUser(user);
      if (tables.ip_user.has(k)) tables.ip_user.delete(k);
      // Refreshed at most once a day: a set with a TTL is the dearest step of a warm login here.
      if (c.familiarForMs > 0 && familiar.getRemainingTTL(k) < c.familiarForMs - Math.min(FAMILIAR_REFRESH_MS, c.familiarForMs / 2)) familiar.set(k, true);
    },

    fingerprint(user, password) {
      return createHmac('sha256', key).update(`${normalizeUser(user)}${SEP}${password}`, 'utf8').digest().readUInt32BE(0);
    },

    list(filter = {}) {
      const now = clock.now();
      const fIpKey = filter.ip === undefined ? null : clientKey(filter.ip, c.ipv6Prefix);
      const out: ThrottleEntryView[] = [];
      for (const scope of THROTTLE_SCOPES) {
        for (const [k, b] of tables[scope].entries()) {
          if (!filter.all && b.until <= now) continue;
          const v = view(scope, k, b, now);
          if (matches(v, filter, fIpKey)) out.push(v);
        }
      }
      return out;
    },

    clear(filter = {}) {
      const fIpKey = filter.ip === undefined ? null : clientKey(filter.ip, c.ipv6Prefix);
      let n = 0;
      const now = clock.now();
      for (const scope of THROTTLE_SCOPES) {
        const t = tables[scope];
        for (const [k, b] of [...t.entries()]) {
          if (matches(view(scope, k, b, now), filter, fIpKey)) {
            t.delete(k);
            n += 1;
          }
        }
      }
      return n;
    },

    stats() {
      return {
        entries: { ip: tables.ip.size, user: tables.user.size, ip_user: tables.ip_user.size, familiar: familiar.size },
        refused: { ...counters.refused },
        failures: counters.failures,
        counted: { ...counters.counted },
        blocks: { ...counters.blocks },
        evictions: counters.evictions,
      };
    },
  };
}
