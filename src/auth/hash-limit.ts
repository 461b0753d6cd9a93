/**
 * At most `concurrency` slow hash verifications (bcrypt, argon2, PBKDF2) at a
 * time; the rest wait here, in arrival order. They run on libuv's thread pool,
 * which also serves file writes (the log) and DNS lookups (database
 * reconnects): without a bound, a burst of cold bcrypt logins would fill every
 * pool thread and queue that I/O behind seconds of hashing, and more hashes
 * than CPUs at once only slow each other and the event loop down. Fast schemes
 * (SSHA256 and friends, microseconds on the event loop) never wait here.
 */
import { schemeOf } from '../passwords/index.js';
import type { HashVerifier } from './types.js';

const SLOW = new Set(['BLF-CRYPT', 'ARGON2I', 'ARGON2ID', 'PBKDF2', 'PBKDF2-SHA512']);

export function isSlowHash(stored: string): boolean {
  const scheme = schemeOf(stored);
  return scheme !== null && SLOW.has(scheme);
}

export interface HashLimiter {
  verify: HashVerifier;
  stats(): { running: number; queued: number };
}

export function limitSlowHashes(verify: HashVerifier, concurrency: number): HashLimiter {
  let running = 0;
  const queue: Array<() => void> = [];
  const release = (): void => {
    const next = queue.shift();
    if (next) next();
    else running--;
  };
  return {
    async verify(stored, password) {
      if (!isSlowHash(stored)) return verify(stored, password);
      if (running < concurrency) running++;
      // The slot passes straight from the finishing job to the next one (running stays equal).
      else await new Promise<void>((go) => queue.push(go));
      try {
        return await verify(stored, password);
      } finally {
        release();
      }
    },
    stats: () => ({ running, queued: queue.length }),
  };
}
