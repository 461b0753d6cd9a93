/**
 * One IdP question ("who is this login?") behind the idp cache, with the
 * policy of STYLE 12/13 written out once:
 *
 * - a fresh cached answer is used as is (positive for cache.idp_ttl, negative
 *   for cache.idp_negative_ttl);
 * - otherwise the IdP is asked, single-flight per key, with its own time
 *   budget (not one caller's deadline, so a caller giving up does not fail the
 *   others), and the answer is cached;
 * - when the IdP fails, the last positive answer is served stale if it is at
 *   most cache.idp_stale_for old (the caller logs it), else the fault is
 *   thrown (→ internal_failure, never cached);
 * - after a failure the IdP is left alone for a back-off period (the circuit
 *   breaker of src/breaker/, shared with the database's since issue 21: the
 *   first period is idp.cooldown, doubling per failed trial up to
 *   outage.max_backoff, with jitter): logins in that window go straight to the
 *   stale answer or fail fast instead of piling up on a provider that is down;
 *   the first login after the period is the trial.
 */
import type { IdpCache } from '../cache/index.js';
import { createBreaker } from '../breaker/index.js';
import type { Breaker } from '../breaker/index.js';
import { createSingleFlight } from '../cache/index.js';
import { MailauthError, isMailauthError } from '../errors.js';
import type { Clock } from './types.js';

/** What the IdP said: a value, or null with the reason nobody matched. */
export interface IdpFetchResult<V> {
  value: V | null;
  /** Why value is null (safe to log). */
  reason?: string;
}

export type IdpFetch<V> = (key: string, signal: AbortSignal) => Promise<IdpFetchResult<V>>;

export interface LookupResult<V> {
  value: V | null;
  /** idp: asked just now; cache: a fresh cached answer; stale: the IdP failed and an older answer was used. */
  source: 'idp' | 'cache' | 'stale';
  ageMs: number;
  reason?: string;
  /** With source 'stale': why the IdP could not be asked. */
  fault?: MailauthError;
}

export interface IdpLookup<V> {
  /**
   * `fresh`: skip the cached answer (it disagreed with the password); the stale fallback still applies.
   * `fetch`: this key's own IdP call, instead of the lookup's default one.
   */
  lookup(key: string, signal: AbortSignal, opts?: { fresh?: boolean; fetch?: IdpFetch<V> }): Promise<LookupResult<V>>;
  /** Forget everything (e.g. the IdP connection settings changed). */
  reset(): void;
  /** Whether the IdP is in its post-failure cooldown right now. */
  coolingDown(): boolean;
}

export interface IdpLookupOptions<V> {
  cache: IdpCache<V>;
  /** The IdP call for a key; a lookup may pass its own instead. */
  fetch?: IdpFetch<V>;
  /** How long one shared IdP call may take, retries included. */
  budgetMs: number;
  /** After a failure, do not call the IdP again for this long (0: no cooldown). */
  cooldownMs: number;
  /** The breaker to use instead (shared by the lookups of one IdP, with outage logging and metrics). */
  breaker?: Breaker | null;
  clock: Clock;
  /** The reason given for a cached negative answer (the IdP's own reason is not kept). */
  cachedNegativeReason?: string;
}

function asFault(err: unknown): MailauthError {
  if (isMailauthError(err)) return err;
  if ((err as Error)?.name === 'TimeoutError' || (err as Error)?.name === 'AbortError') {
    return new MailauthError('ERR_IDP_TIMEOUT', 'the identity provider did not answer within the time budget', { cause: err, details: { reason: 'budget' } });
  }
  return new MailauthError('ERR_IDP_UNAVAILABLE', `identity provider call failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** Rejects when `signal` aborts: a caller's deadline ends its wait, not the shared call. */
function untilAborted(signal: AbortSignal): { promise: Promise<never>; done: () => void } {
  let onAbort: (() => void) | null = null;
  const promise = new Promise<never>((_, reject) => {
    const fail = (): void => reject(new MailauthError('ERR_DEADLINE', 'deadline reached while waiting for the identity provider'));
    if (signal.aborted) fail();
    else {
      onAbort = fail;
      signal.addEventListener('abort', fail, { once: true });
    }
  });
  promise.catch(() => undefined);
  return { promise, done: () => onAbort && signal.removeEventListener('abort', onAbort) };
}

export function createIdpLookup<V extends object>(opts: IdpLookupOptions<V>): IdpLookup<V> {
  const { cache, clock } = opts;
  const flights = createSingleFlight<string, IdpFetchResult<V>>();
  let lastFault: MailauthError | null = null;
  // Without a shared breaker: a fixed cooldown (threshold 1, no growth, no jitter), as before issue 21.
  const breaker: Breaker | null =
    opts.breaker !== undefined
      ? opts.breaker
      : opts.cooldownMs > 0
        ? createBreaker({ name: 'idp', code: 'ERR_IDP_UNAVAILABLE', reason: 'identity provider unavailable', failureThreshold: 1, backoffMs: opts.cooldownMs, maxBackoffMs: opts.cooldownMs, jitter: 0, clock })
        : null;
  // Bumped by reset(): an answer fetched under old settings must not land in the cache.
  let generation = 0;

  const coolingDown = (): boolean => {
    if (!breaker) return false;
    const s = breaker.snapshot();
    return s.state === 'open' && s.nextProbeAt !== null && clock.now() < s.nextProbeAt;
  };

  function fallback(key: string, fault: MailauthError): LookupResult<V> {
    const stale = cache.getStale(key);
    if (stale === undefined) throw fault;
    return { value: stale.value, source: 'stale', ageMs: stale.ageMs, fault };
  }

  async function ask(key: string, fetch: IdpFetch<V>): Promise<IdpFetchResult<V>> {
    const gen = generation;
    // A referenced timer (AbortSignal.timeout's is not): a lookup must end even when nothing else keeps the process alive.
    const budget = new AbortController();
    const timer = setTimeout(() => budget.abort(new MailauthError('ERR_IDP_TIMEOUT', `the identity provider did not answer within ${opts.budgetMs} ms`, { details: { reason: 'budget' } })), opts.budgetMs);
    try {
      const r = await fetch(key, budget.signal);
      if (gen === generation) {
        cache.set(key, r.value);
        breaker?.success();
      }
      return r;
    } catch (err) {
      const fault = asFault(err);
      if (gen === generation) {
        breaker?.failure(fault);
        lastFault = fault;
      }
      throw fault;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    async lookup(key, signal, o = {}) {
      if (!o.fresh) {
        const hit = cache.get(key);
        if (hit !== undefined) {
          return { value: hit.value, source: 'cache', ageMs: hit.ageMs, ...(hit.value === null ? { reason: opts.cachedNegativeReason ?? 'the IdP said no (cached answer)' } : {}) };
        }
      }
      if (breaker && !breaker.allow()) {
        const why = lastFault?.message ?? 'the identity provider failed';
        return fallback(key, new MailauthError(lastFault?.code ?? 'ERR_IDP_UNAVAILABLE', `not asking the identity provider during its cooldown after a failure (${why})`, { details: { reason: 'cooldown' } }));
      }
      const fetch = o.fetch ?? opts.fetch;
      if (fetch === undefined) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'no identity provider call for this lookup');
      const wait = untilAborted(signal);
      try {
        const r = await Promise.race([flights.run(key, () => ask(key, fetch)), wait.promise]);
        return { value: r.value, source: 'idp', ageMs: 0, ...(r.reason === undefined ? {} : { reason: r.reason }) };
      } catch (err) {
        if (isMailauthError(err, 'ERR_DEADLINE')) throw err;
        return fallback(key, asFault(err));
      } finally {
        wait.done();
      }
    },
    reset() {
      generation++;
      cache.clear();
      breaker?.reset();
      lastFault = null;
    },
    coolingDown,
  };
}
