/**
 * Password sign-in throttle: failures counted per client address and per
 * mailbox in a fixed window; at the limit, further attempts are refused
 * before any database or hash work. Until the shared throttle of issue 17
 * (src/policy/) lands this is the portal's own; it then becomes a seam for it.
 */
import type { Clock } from '../auth/index.js';

export interface SignInLimiter {
  /** Whether this attempt may go ahead. */
  allowed(ip: string, user: string): boolean;
  failed(ip: string, user: string): void;
  succeeded(ip: string, user: string): void;
}

export function createSignInLimiter(opts: { failures: number; windowMs: number; clock: Clock; maxKeys?: number }): SignInLimiter {
  const counts = new Map<string, { n: number; since: number }>();
  const maxKeys = opts.maxKeys ?? 100_000;
  const keys = (ip: string, user: string): string[] => [`ip\u0000${ip}`, `user\u0000${user.trim().toLowerCase()}`];
  const current = (k: string): number => {
    const c = counts.get(k);
    if (!c) return 0;
    if (opts.clock.now() - c.since >= opts.windowMs) {
      counts.delete(k);
      return 0;
    }
    return c.n;
  };
  return {
    allowed: (ip, user) => keys(ip, user).every((k) => current(k) < opts.failures),
    failed(ip, user) {
      for (const k of keys(ip, user)) {
        const n = current(k);
        if (n === 0) {
          if (counts.size >= maxKeys) counts.delete(counts.keys().next().value as string);
          counts.set(k, { n: 1, since: opts.clock.now() });
        } else (counts.get(k) as { n: number }).n = n + 1;
      }
    },
    succeeded(ip, user) {
      counts.delete(keys(ip, user)[1] as string);
    },
  };
}
