/**
 * The seam between the server and the decision: the server's passdb calls go
 * through `throttled(authenticator, throttle)`, which asks the throttle first
 * and reports the outcome after. A refused attempt never reaches the decision —
 * no database query, no hash — and is answered `password_mismatch`, which
 * Dovecot neither caches on this path nor treats as an outage.
 */
import type { Authenticator, PassdbRequest, PassdbResult } from '../auth/index.js';
import { LRUCache } from 'lru-cache';
import type { Throttle, Verdict } from './throttle.js';

/** Results that count as a failed guess. internal_failure is "could not decide": never counted. */
const FAILURES = new Set<string>(['password_mismatch', 'user_unknown', 'user_disabled']);

export function refusalReason(v: Exclude<Verdict, { allowed: true }>): string {
  const what = v.scope === 'ip' ? 'this address' : v.scope === 'user' ? 'this mailbox' : 'this address for this mailbox';
  return `throttled: too many failed logins from ${what}; ${v.blocked ? 'blocked' : 'back-off'} for ${Math.ceil(v.retryAfterMs / 1000)} s`;
}

/**
 * Sessions whose failure the passdb already counted, so that Dovecot's auth-policy
 * report for the same login (when both are configured) does not count it twice.
 */
export interface SessionMemory {
  remember(session: string): void;
  /** True once per remembered session. */
  take(session: string): boolean;
}

export function sessionMemory(max = 10_000): SessionMemory {
  const seen = new LRUCache<string, true>({ max, ttl: 120_000, ttlAutopurge: false });
  return {
    remember: (s) => void seen.set(s, true),
    take: (s) => seen.delete(s),
  };
}

export interface ThrottledOptions {
  /** Where counted passdb failures leave their session id (see SessionMemory). */
  sessions?: SessionMemory;
  /** Told about each refusal (metrics are in the throttle's stats; this is for debug logging). */
  onRefused?: (req: PassdbRequest, v: Exclude<Verdict, { allowed: true }>) => void;
}

export function throttled(auth: Authenticator, throttle: Throttle, opts: ThrottledOptions = {}): Authenticator {
  if (!throttle.enabled) return auth;
  return {
    async passdb(req: PassdbRequest): Promise<PassdbResult> {
      const v = throttle.check(req.remoteIp, req.user);
      if (!v.allowed) {
        opts.onRefused?.(req, v);
        return { result: 'password_mismatch', reason: refusalReason(v) };
      }
      const r = await auth.passdb(req);
      if (r.result === 'ok') throttle.succeeded(req.remoteIp, req.user);
      else if (FAILURES.has(r.result)) {
        throttle.failed(req.remoteIp, req.user, throttle.fingerprint(req.user, req.password));
        if (req.session) opts.sessions?.remember(req.session);
      }
      return r;
    },
    userdb: (req) => auth.userdb(req),
  };
}
