/**
 * A circuit breaker for one dependency (the database, one IdP), shared by db/
 * and idp/ callers so both behave alike (issue 21):
 *
 * - closed: calls go through; `failureThreshold` consecutive failures open it.
 * - open: calls are refused at once (no connection attempt, no queueing) for a
 *   back-off period: base·2^(openings-1), capped at maxBackoffMs, ±jitter so a
 *   fleet of daemons does not reconnect in step.
 * - when the period ends: with a `probe`, the breaker runs it in the background
 *   (calls stay refused meanwhile) and closes on its first success, or opens
 *   again with the next longer period; without one, the next call is let
 *   through as the probe (half-open, one at a time).
 * - any success (a probe, a call, a readiness check) closes it and resets the
 *   back-off.
 *
 * No I/O of its own: the clock, the random source and the timer are injected,
 * so tests drive it through time without sleeping.
 */
import { MailauthError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerClock {
  now(): number;
}

export interface BreakerTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: BreakerTimers = {
  set(fn, ms) {
    const h = setTimeout(fn, ms);
    h.unref();
    return h;
  },
  clear(h) {
    clearTimeout(h as NodeJS.Timeout);
  },
};

export interface BreakerSettings {
  /** Consecutive failures that open the breaker (1 = the first failure). */
  failureThreshold: number;
  /** First back-off period. */
  backoffMs: number;
  /** The back-off doubles per failed probe up to this. */
  maxBackoffMs: number;
  /** ± this fraction of the period, at random (0 = none). */
  jitter: number;
}

export interface BreakerOptions extends BreakerSettings {
  /** Who is behind it: 'database', 'keycloak', 'oidc' (logs, metrics, errors). */
  name: string;
  /** The code of the error refused calls get (ERR_DB_UNAVAILABLE, ERR_IDP_UNAVAILABLE). */
  code: ErrorCode;
  /** What a refused caller is told: e.g. "database unavailable". */
  reason: string;
  /** Run in the background when a back-off period ends; resolves = the dependency is back. */
  probe?: () => Promise<void>;
  clock?: BreakerClock;
  random?: () => number;
  timers?: BreakerTimers;
}

/** A transition, for the outage log and metrics. */
export type BreakerEvent =
  | { type: 'open'; name: string; at: number; failures: number; error: BreakerError; backoffMs: number; first: boolean }
  | { type: 'close'; name: string; at: number; downForMs: number; failures: number; refused: number };

export interface BreakerError {
  code: string;
  message: string;
}

export interface BreakerSnapshot {
  name: string;
  state: BreakerState;
  /** False while open or half-open. */
  up: boolean;
  /** When the current outage began (the breaker first opened), epoch ms; null when up. */
  downSince: number | null;
  /** The last failure seen (kept after recovery, for the health endpoints). */
  lastError: (BreakerError & { at: number }) | null;
  consecutiveFailures: number;
  /** When the next probe may run (open only), epoch ms. */
  nextProbeAt: number | null;
  /** The current back-off period, ms (0 when closed). */
  backoffMs: number;
  /** Totals since start. */
  failures: number;
  refused: number;
  openings: number;
  probes: number;
}

export interface Breaker {
  readonly name: string;
  /** Whether a call may go to the dependency now. Without a probe, true in half-open for one caller. */
  allow(): boolean;
  /** `allow()` or throw the coded "unavailable" error (details.reason = 'circuit_open'). */
  check(): void;
  /** The dependency answered (whatever it said). */
  success(): void;
  /** The dependency could not be reached or did not answer. */
  failure(err: unknown): void;
  snapshot(): BreakerSnapshot;
  /** Be told about transitions (outage log, metrics). */
  onEvent(fn: (e: BreakerEvent) => void): void;
  /** Back to closed without a "back" event (the dependency was replaced, e.g. new IdP settings). */
  reset(): void;
  /** Stop the probe timer. */
  close(): void;
}

export function describeError(err: unknown): BreakerError {
  const e = err as { code?: unknown; message?: unknown; details?: { dbCode?: unknown; networkCode?: unknown } };
  const inner = typeof e?.details?.dbCode === 'string' && e.details.dbCode ? e.details.dbCode : typeof e?.details?.networkCode === 'string' ? e.details.networkCode : null;
  const code = typeof e?.code === 'string' ? e.code : 'unknown';
  return { code: inner ? `${code}/${inner}` : code, message: typeof e?.message === 'string' ? e.message.slice(0, 300) : String(err).slice(0, 300) };
}

/** The back-off before the n-th probe (n ≥ 1): base·2^(n-1), capped, ± jitter. */
export function backoffFor(n: number, s: BreakerSettings, random: () => number): number {
  const raw = Math.min(s.maxBackoffMs, s.backoffMs * 2 ** Math.min(30, Math.max(0, n - 1)));
  const spread = raw * s.jitter;
  return Math.max(1, Math.round(raw - spread + 2 * spread * random()));
}

export function createBreaker(opts: BreakerOptions): Breaker {
  const clock = opts.clock ?? Date;
  const random = opts.random ?? Math.random;
  const timers = opts.timers ?? realTimers;
  const listeners: ((e: BreakerEvent) => void)[] = [];
  let state: BreakerState = 'closed';
  let consecutive = 0;
  let openedInOutage = 0; // back-off exponent: openings since the last success
  let downSince: number | null = null;
  let until = 0;
  let backoff = 0;
  let lastError: (BreakerError & { at: number }) | null = null;
  let failuresInOutage = 0;
  let refusedInOutage = 0;
  let timer: unknown = null;
  let probing = false;
  let closed = false;
  const totals = { failures: 0, refused: 0, openings: 0, probes: 0 };

  const emit = (e: BreakerEvent): void => {
    for (const fn of listeners) {
      try {
        fn(e);
      } catch {
        /* a listener's bug must not break the caller */
      }
    }
  };

  function open(error: BreakerError): void {
    const first = downSince === null;
    const now = clock.now();
    if (first) {
      downSince = now;
      failuresInOutage = consecutive;
      refusedInOutage = 0;
    }
    openedInOutage += 1;
    totals.openings += 1;
    backoff = backoffFor(openedInOutage, opts, random);
    until = now + backoff;
    state = 'open';
    emit({ type: 'open', name: opts.name, at: now, failures: consecutive, error, backoffMs: backoff, first });
    schedule();
  }

  function schedule(): void {
    if (!opts.probe || closed) return;
    if (timer !== null) timers.clear(timer);
    timer = timers.set(runProbe, Math.max(0, until - clock.now()));
  }

  function runProbe(): void {
    timer = null;
    if (closed || state === 'closed' || probing || !opts.probe) return;
    probing = true;
    totals.probes += 1;
    state = 'half_open';
    let p: Promise<void>;
    try {
      p = opts.probe();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        probing = false;
        success();
      },
      (err: unknown) => {
        probing = false;
        // A call that succeeded meanwhile closed it: this failure is an ordinary one then.
        if (state === 'closed') failure(err);
        else {
          record(err);
          open(describeError(err));
        }
      },
    );
  }

  function success(): void {
    consecutive = 0;
    if (state === 'closed' && downSince === null) return;
    const now = clock.now();
    const downForMs = downSince === null ? 0 : now - downSince;
    const ev: BreakerEvent = { type: 'close', name: opts.name, at: now, downForMs, failures: failuresInOutage, refused: refusedInOutage };
    state = 'closed';
    downSince = null;
    openedInOutage = 0;
    backoff = 0;
    until = 0;
    if (timer !== null) {
      timers.clear(timer);
      timer = null;
    }
    emit(ev);
  }

  function record(err: unknown): BreakerError {
    const error = describeError(err);
    lastError = { ...error, at: clock.now() };
    consecutive += 1;
    totals.failures += 1;
    if (downSince !== null) failuresInOutage += 1;
    return error;
  }

  function failure(err: unknown): void {
    const error = record(err);
    // Without a background probe, half-open means this was the trial call: open again.
    if (state === 'half_open' && !opts.probe) {
      open(error);
      return;
    }
    if (state === 'closed' && consecutive >= opts.failureThreshold) open(error);
    // Otherwise: calls that were in flight when it opened fail too; the period (or the running
    // probe) stands.
  }

  function allow(): boolean {
    if (state === 'closed') return true;
    const now = clock.now();
    if (!opts.probe && now >= until) {
      // No background probe: this caller is the probe; the rest are refused until its outcome.
      // A trial that neither succeeds nor fails (its caller gave up) lets the next one try after
      // another period.
      state = 'half_open';
      until = now + backoff;
      totals.probes += 1;
      return true;
    }
    totals.refused += 1;
    refusedInOutage += 1;
    return false;
  }

  return {
    name: opts.name,
    allow,
    check() {
      if (allow()) return;
      const why = lastError ? `: ${lastError.code}` : '';
      throw new MailauthError(opts.code, `${opts.reason} (not trying again for a back-off period after repeated failures${why})`, {
        details: { reason: 'circuit_open', target: opts.name },
      });
    },
    success,
    failure,
    snapshot() {
      return {
        name: opts.name,
        state,
        up: state === 'closed',
        downSince,
        lastError,
        consecutiveFailures: consecutive,
        nextProbeAt: state === 'open' ? until : null,
        backoffMs: backoff,
        ...totals,
      };
    },
    onEvent(fn) {
      listeners.push(fn);
    },
    reset() {
      consecutive = 0;
      state = 'closed';
      downSince = null;
      openedInOutage = 0;
      backoff = 0;
      until = 0;
      if (timer !== null) timers.clear(timer);
      timer = null;
    },
    close() {
      closed = true;
      if (timer !== null) timers.clear(timer);
      timer = null;
    },
  };
}
