/**
 * The database behind a circuit breaker (issue 21). While the database cannot
 * be reached, every login used to open a new pool connection attempt (about two
 * per login, a reconnect storm at ~120 % CPU); behind the breaker, after
 * `failures` consecutive connection failures or timeouts no query reaches the
 * pool for a back-off period and callers get ERR_DB_UNAVAILABLE at once
 * ("database unavailable"). The readiness probe (its own connection) runs in the
 * background when a period ends and closes the breaker on its first success.
 *
 * Only faults that say the server is unreachable or stalled count
 * (ERR_DB_UNAVAILABLE, ERR_DB_TIMEOUT); a query error or a duplicate key is an
 * answer from a working server and counts as a success.
 */
import { createBreaker, logOutages } from '../breaker/index.js';
import type { Breaker, BreakerSettings, BreakerSnapshot } from '../breaker/index.js';
import type { DatabaseConfig } from '../config/index.js';
import { isMailauthError } from '../errors.js';
import type { Logger } from '../logging/index.js';
import type { Db, Params, Queryable, Row } from './pool.js';
import { createDbProbe } from './probe.js';
import type { DbProbe } from './probe.js';

export interface DbReadiness {
  ready: boolean;
  /** How long this answer took, ms. */
  ms: number;
  /** 'probe': checked just now; 'breaker': the breaker is open, answered from the last known state. */
  source: 'probe' | 'breaker';
  database: BreakerSnapshot;
}

export interface GuardedDb {
  /** The pool, refusing calls while the breaker is open. */
  db: Db;
  breaker: Breaker;
  probe: DbProbe;
  /** Readiness within probe.timeoutMs, whatever the pool is doing. */
  ready(): Promise<DbReadiness>;
  /** Stop the probe and summary timers (the pool is closed by its owner). */
  stop(): void;
}

export interface GuardOptions {
  breaker: BreakerSettings;
  readyTimeoutMs: number;
  /** Outage summary interval (0: none). */
  logSummaryMs: number;
  logger: Logger;
  random?: () => number;
}

/** Faults that mean "the database cannot be reached or does not answer". */
export function isDbOutage(err: unknown): boolean {
  return isMailauthError(err, 'ERR_DB_UNAVAILABLE') || isMailauthError(err, 'ERR_DB_TIMEOUT');
}

/** `db` behind `breaker`: refused at once while open; outcomes reported to it. */
export function guardDb(db: Db, breaker: Breaker): Db {
  const settle = <T>(p: Promise<T>): Promise<T> =>
    p.then(
      (v) => {
        breaker.success();
        return v;
      },
      (err: unknown) => {
        if (isDbOutage(err)) breaker.failure(err);
        else breaker.success();
        throw err;
      },
    );
  const q: Queryable = {
    rows<T extends Row = Row>(sql: string, params?: Params): Promise<T[]> {
      try {
        breaker.check();
      } catch (err) {
        return Promise.reject(err);
      }
      return settle(db.rows<T>(sql, params));
    },
    exec(sql: string, params?: Params) {
      try {
        breaker.check();
      } catch (err) {
        return Promise.reject(err);
      }
      return settle(db.exec(sql, params));
    },
  };
  return {
    ...db,
    ...q,
    database: db.database,
    transaction(fn) {
      try {
        breaker.check();
      } catch (err) {
        return Promise.reject(err);
      }
      return settle(db.transaction(fn));
    },
    ping() {
      try {
        breaker.check();
      } catch (err) {
        return Promise.reject(err);
      }
      return settle(db.ping());
    },
    close: () => db.close(),
    stats: () => db.stats(),
  };
}

export function createGuardedDb(pool: Db, cfg: DatabaseConfig, opts: GuardOptions): GuardedDb {
  const probe = createDbProbe(cfg, { timeoutMs: opts.readyTimeoutMs });
  const breaker = createBreaker({
    name: 'database',
    code: 'ERR_DB_UNAVAILABLE',
    reason: 'database unavailable',
    ...opts.breaker,
    probe: () => probe.check(),
    ...(opts.random ? { random: opts.random } : {}),
  });
  const outageLog = logOutages(breaker, opts.logger, { summaryMs: opts.logSummaryMs, what: 'database' });
  return {
    db: guardDb(pool, breaker),
    breaker,
    probe,
    async ready() {
      const started = performance.now();
      const snap = breaker.snapshot();
      if (!snap.up) return { ready: false, ms: performance.now() - started, source: 'breaker', database: snap };
      try {
        await probe.check();
        breaker.success();
        return { ready: true, ms: performance.now() - started, source: 'probe', database: breaker.snapshot() };
      } catch (err) {
        breaker.failure(err);
        return { ready: false, ms: performance.now() - started, source: 'probe', database: breaker.snapshot() };
      }
    },
    stop() {
      breaker.close();
      outageLog.stop();
    },
  };
}
