/**
 * Last-login bookkeeping off the request path: successful logins are queued and
 * written to sasl_log in batches (mailcow's REPLACE semantics) every flush
 * interval, or sooner when the queue is half full. The queue is
 * keyed like sasl_log's primary key (service, real_rip, username), so a client
 * that logs in every minute costs one row per flush, not one per login. It is
 * bounded: when full, the oldest entries are dropped and counted. Write errors
 * are logged and counted, never thrown at a login.
 */
import { writeSaslLog } from '../db/index.js';
import type { Queryable, SaslLogEntry } from '../db/index.js';
import { logFault } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { systemClock } from './types.js';
import type { Clock, LoginRecord, LoginRecorder } from './types.js';

export interface LoginLogConfig {
  enabled: boolean;
  queueSize: number;
  batchSize: number;
  flushIntervalMs: number;
}

export interface LoginLogStats {
  queued: number;
  recorded: number;
  written: number;
  /** Entries dropped because the queue was full (or arrived after stop). */
  dropped: number;
  /** Failed batch writes (their entries are re-queued once). */
  writeErrors: number;
  /** Entries lost after a failed write during shutdown. */
  lost: number;
}

export interface LoginLog extends LoginRecorder {
  /** Writes everything queued now; resolves when done (errors are logged, not thrown). */
  flush(): Promise<void>;
  /** Stops the timer, refuses new entries, writes what is left. */
  stop(): Promise<void>;
  stats(): LoginLogStats;
}

export interface LoginLogOptions {
  db: Queryable;
  logger: Logger;
  config: LoginLogConfig;
  clock?: Clock;
  /** The batch writer; defaults to writeSaslLog. */
  write?: (db: Queryable, entries: readonly SaslLogEntry[]) => Promise<void>;
}

/** UTC 'YYYY-MM-DD HH:MM:SS', the login's own time even when the batch is written later. */
export function sqlDatetime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

const keyOf = (e: Pick<SaslLogEntry, 'service' | 'realRip' | 'username'>): string => `${e.service.slice(0, 32)}\u0000${e.realRip.slice(0, 64)}\u0000${e.username.toLowerCase()}`;

export function createLoginLog(opts: LoginLogOptions): LoginLog {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const write = opts.write ?? writeSaslLog;
  // Insertion order = age: the first key was queued first (a repeated login updates its entry
  // in place), and is the first dropped when the queue is full.
  let queue = new Map<string, SaslLogEntry>();
  const stats: LoginLogStats = { queued: 0, recorded: 0, written: 0, dropped: 0, writeErrors: 0, lost: 0 };
  let inFlight: Promise<void> | null = null;
  let stopped = false;
  let sizeFlushScheduled = false;
  // One formatted stamp per second, not one Date and ISO string per login.
  let stampSecond = NaN;
  let stamp = '';
  const datetime = (ms: number): string => {
    const second = Math.floor(ms / 1000);
    if (second !== stampSecond) {
      stampSecond = second;
      stamp = sqlDatetime(ms);
    }
    return stamp;
  };

  // Written every flush interval; earlier only when the queue is half full, so no entry is
  // dropped (whatever batch_size is: a threshold above queue_size would never be reached).
  // Flushing whenever a batch was ready kept MariaDB rewriting the same rows: at 14,000
  // logins/s from 1,000 clients, 8–9 REPLACEs of 500 rows a second instead of two
  // statements (each a commit and a log flush on the two cores the logins share; issue 4).
  const earlyFlushAt = Math.max(1, Math.floor(config.queueSize / 2));
  const timer = config.enabled ? setInterval(() => void kick(), config.flushIntervalMs) : null;
  timer?.unref();

  function trim(): void {
    while (queue.size > config.queueSize) {
      const oldest = queue.keys().next().value as string;
      queue.delete(oldest);
      stats.dropped += 1;
    }
  }

  function take(n: number): SaslLogEntry[] {
    const out: SaslLogEntry[] = [];
    for (const [k, e] of queue) {
      if (out.length >= n) break;
      out.push(e);
      queue.delete(k);
    }
    return out;
  }

  async function writeBatch(batch: SaslLogEntry[], requeue: boolean): Promise<boolean> {
    try {
      await write(opts.db, batch);
      stats.written += batch.length;
      return true;
    } catch (err) {
      stats.writeErrors += 1;
      if (requeue) {
        // Put the batch back in front, unless a newer login for the same key arrived meanwhile.
        const next = new Map<string, SaslLogEntry>();
        for (const e of batch) if (!queue.has(keyOf(e))) next.set(keyOf(e), e);
        for (const [k, e] of queue) next.set(k, e);
        queue = next;
        trim();
        logFault(logger, 'warn', { entries: batch.length }, 'login log write failed; entries kept for the next flush', err);
      } else {
        stats.lost += batch.length;
        logFault(logger, 'error', { entries: batch.length }, 'login log write failed during shutdown; entries lost', err);
      }
      return false;
    }
  }

  /** One pass: write batches until the queue is empty or a write fails. */
  async function drain(requeue: boolean): Promise<void> {
    while (queue.size > 0) {
      const ok = await writeBatch(take(config.batchSize), requeue);
      if (!ok) return;
    }
  }

  function kick(): Promise<void> {
    if (inFlight) return inFlight;
    if (queue.size === 0) return Promise.resolve();
    inFlight = drain(!stopped).finally(() => {
      inFlight = null;
    });
    return inFlight;
  }

  return {
    record(entry: LoginRecord) {
      if (!config.enabled) return;
      if (stopped) {
        stats.dropped += 1;
        return;
      }
      const k = keyOf(entry);
      const queued = queue.get(k);
      if (queued !== undefined) {
        // Updated in place: a client logging in again before the write allocates nothing that
        // lives until the write (such objects outlive young-generation GCs and get promoted).
        queued.appPassword = entry.appPassword;
        queued.datetime = datetime(clock.now());
      } else {
        // A literal, not `{ ...entry, datetime }`: V8 builds a new hidden class for each such copy.
        queue.set(k, { service: entry.service, appPassword: entry.appPassword, username: entry.username, realRip: entry.realRip, datetime: datetime(clock.now()) });
      }
      stats.recorded += 1;
      trim();
      if (queue.size >= earlyFlushAt && !sizeFlushScheduled) {
        sizeFlushScheduled = true;
        setImmediate(() => {
          sizeFlushScheduled = false;
          void kick();
        });
      }
    },
    async flush() {
      // Wait for a running drain, then write what arrived meanwhile.
      if (inFlight) await inFlight;
      await kick();
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      if (inFlight) await inFlight;
      await kick();
      if (queue.size > 0) {
        // A write failed: the database is not taking rows, so do not hold shutdown for the rest.
        stats.lost += queue.size;
        logger.error({ entries: queue.size }, 'login log entries not written at shutdown');
        queue.clear();
      }
    },
    stats() {
      return { ...stats, queued: queue.size };
    },
  };
}
