/**
 * The queue in front of every costly hash (bcrypt, argon2, SHA-crypt, PBKDF2):
 * at most `concurrency` run at once, the rest wait here in arrival order.
 * bcrypt/argon2/PBKDF2 run on libuv's thread pool, which also serves file writes
 * (the log) and DNS lookups (database reconnects); SHA-crypt runs on the hash
 * pool's worker threads (src/passwords/hash-pool.ts). More hashes than CPUs at
 * once only slow each other and the event loop down.
 *
 * Issue 16 found three ways this queue let an attacker starve everyone else:
 * - unbounded: 450 parallel wrong bcrypt guesses kept ~300 checks queued for
 *   16.5 s, and correct logins sent after the attack got internal_failure;
 * - checks ran after their request had already been answered at the deadline;
 * - one stored cost-18 bcrypt held a slot for 18.6 s.
 * So the queue has a bound (`maxQueue`), knows each request's deadline (the
 * signal from deadline.ts carries it): a check whose request was answered is
 * dropped unrun, and one that cannot start before its deadline (by the queue's
 * own estimate) fails at once with ERR_OVERLOADED; and hashes whose work is above
 * `caps` (auth.hash_limits) are refused as unverifiable before they queue.
 *
 * Fast schemes (SSHA256 and friends, microseconds) never wait here.
 */
import { MailauthError } from '../errors.js';
import { excessesOf, readHashWork } from '../passwords/index.js';
import type { HashWork, VerifyResult, WorkCaps } from '../passwords/index.js';
import { deadlineOf } from './deadline.js';
import type { HashVerifier } from './types.js';

const COSTLY = new Set(['BLF-CRYPT', 'ARGON2I', 'ARGON2ID', 'PBKDF2', 'PBKDF2-SHA512', 'SHA256-CRYPT', 'SHA512-CRYPT']);

export function isSlowHash(stored: string): boolean {
  const read = readHashWork(stored);
  return read !== null && COSTLY.has(read.scheme);
}

/** The work of one check in units that scale linearly with its time, per scheme. */
function workUnits(w: HashWork['work']): number {
  if (w.bcryptCost !== undefined) return 2 ** w.bcryptCost;
  if (w.argon2MemoryKib !== undefined) return w.argon2MemoryKib * (w.argon2TimeCost ?? 1);
  if (w.shaCryptRounds !== undefined) return w.shaCryptRounds;
  if (w.pbkdf2Iterations !== undefined) return w.pbkdf2Iterations;
  return 1;
}

/**
 * Starting estimates, ms per unit, on one core of the 2-core test VM: bcrypt cost 10
 * ~60 ms, argon2id 64 MiB t=3 ~100 ms, SHA512-crypt 5,000 rounds ~12 ms, PBKDF2-SHA1
 * ~1 µs per iteration. Replaced by what the checks measure (moving average).
 */
const INITIAL_MS_PER_UNIT: Record<string, number> = {
  'BLF-CRYPT': 60 / 1024,
  ARGON2I: 100 / 196_608,
  ARGON2ID: 100 / 196_608,
  'SHA256-CRYPT': 10 / 5000,
  'SHA512-CRYPT': 12 / 5000,
  PBKDF2: 0.001,
  'PBKDF2-SHA512': 0.002,
};

export interface HashQueueOptions {
  /** Checks running at once. */
  concurrency: number;
  /** Checks waiting at most; more are refused at once (ERR_OVERLOADED). Default concurrency × 64. */
  maxQueue?: number;
  /** Work above these is refused as unverifiable without hashing (auth.hash_limits). Default: none. */
  caps?: Readonly<WorkCaps>;
  /** performance.now(), injected for tests. */
  now?: () => number;
}

export interface HashQueueStats {
  running: number;
  queued: number;
  /** Checks dropped unrun because their request had already been answered. */
  dropped: number;
  /** Checks refused at once: queue full, or no chance to finish before the deadline. */
  refused: number;
  /** Stored hashes refused because their work is above auth.hash_limits. */
  overCeiling: number;
}

export interface HashLimiter {
  verify: HashVerifier;
  stats(): HashQueueStats;
}

interface Waiter {
  est: number;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
  go(): void;
  drop(err: Error): void;
}

export function limitSlowHashes(verify: HashVerifier, options: number | HashQueueOptions): HashLimiter {
  const o: HashQueueOptions = typeof options === 'number' ? { concurrency: options } : options;
  const concurrency = Math.max(1, o.concurrency);
  const maxQueue = o.maxQueue ?? concurrency * 64;
  const now = o.now ?? (() => performance.now());
  const msPerUnit = new Map(Object.entries(INITIAL_MS_PER_UNIT));
  const running = new Set<{ started: number; est: number }>();
  const queue: Waiter[] = [];
  const counts = { dropped: 0, refused: 0, overCeiling: 0 };

  const dropped = (): MailauthError => new MailauthError('ERR_DEADLINE', 'hash check dropped: its request was already answered');

  /** Slots taken; a finishing check passes its slot straight to the next waiter. */
  let active = 0;

  /** Hands the slot to the next waiter whose request is still open (dropping the rest), else frees it. */
  function release(): void {
    while (queue.length > 0) {
      const next = queue.shift() as Waiter;
      if (next.signal?.aborted || (next.deadline !== undefined && now() >= next.deadline)) {
        counts.dropped++;
        next.drop(dropped());
        continue;
      }
      next.go();
      return;
    }
    active--;
  }

  /** Milliseconds until a check queued now could start, by the estimates of what is ahead. */
  function waitEstimate(t: number): number {
    let ahead = 0;
    for (const r of running) ahead += Math.max(0, r.est - (t - r.started));
    for (const q of queue) if (!q.signal?.aborted) ahead += q.est;
    return ahead / concurrency;
  }

  return {
    async verify(stored, password, signal) {
      const read = readHashWork(stored);
      if (read === null || !COSTLY.has(read.scheme)) return verify(stored, password, signal);
      if (o.caps) {
        const over = excessesOf(read, o.caps)[0];
        if (over) {
          counts.overCeiling++;
          const r: VerifyResult = {
            outcome: 'malformed',
            scheme: over.scheme,
            reason: `${over.label} ${over.value}${over.unit} is above auth.hash_limits (${over.cap}${over.unit}); not verified`,
          };
          return r;
        }
      }
      const est = workUnits(read.work) * (msPerUnit.get(read.scheme) ?? 0);
      const deadline = deadlineOf(signal);
      if (signal?.aborted) {
        counts.dropped++;
        throw dropped();
      }
      if (active < concurrency && queue.length === 0) active++;
      else {
        if (queue.length >= maxQueue) {
          // Entries whose requests were answered make room before anyone is refused.
          for (let i = queue.length - 1; i >= 0; i--) {
            const q = queue[i] as Waiter;
            if (q.signal?.aborted) {
              queue.splice(i, 1);
              counts.dropped++;
              q.drop(dropped());
            }
          }
        }
        const t = now();
        if (queue.length >= maxQueue) {
          counts.refused++;
          throw new MailauthError('ERR_OVERLOADED', `hash queue full (${maxQueue} checks waiting)`);
        }
        // "Start", not "finish": the estimates come from checks measured under whatever load there
        // was, and a check that starts in time may still make it; one that cannot start never does.
        if (deadline !== undefined && t + waitEstimate(t) > deadline) {
          counts.refused++;
          throw new MailauthError('ERR_OVERLOADED', 'hash queue too long for this check to start before the deadline');
        }
        await new Promise<void>((go, drop) => queue.push({ est, deadline, signal, go, drop }));
      }
      const job = { started: now(), est };
      running.add(job);
      try {
        return await verify(stored, password, signal);
      } finally {
        running.delete(job);
        const took = now() - job.started;
        const units = workUnits(read.work);
        if (units > 0 && took > 0) {
          const prev = msPerUnit.get(read.scheme) ?? took / units;
          msPerUnit.set(read.scheme, prev * 0.8 + (took / units) * 0.2);
        }
        release();
      }
    },
    stats: () => ({ running: active, queued: queue.length, ...counts }),
  };
}
