/**
 * The readiness probe (issue 21): its own short-lived connection, never the
 * pool, so it cannot queue behind logins waiting for a pool connection (the
 * pool's SELECT 1 hung for up to 43 s during a database pause under load and
 * then answered 200). Every check is bounded by `timeoutMs` whatever the server
 * does (a paused server accepts TCP and never greets): connect, SELECT 1, close,
 * under one timer; concurrent checks share one attempt.
 */
import mysql from 'mysql2/promise';
import type { Connection } from 'mysql2/promise';
import type { DatabaseConfig } from '../config/index.js';
import { MailauthError } from '../errors.js';
import { connectionOptions, translateDbError } from './pool.js';

export interface DbProbe {
  /** Resolves when a fresh connection answered SELECT 1 within `timeoutMs`; else rejects with a coded error. */
  check(): Promise<void>;
  readonly timeoutMs: number;
}

export function createDbProbe(cfg: DatabaseConfig, opts: { timeoutMs: number }): DbProbe {
  const { timeoutMs } = opts;
  let inFlight: Promise<void> | null = null;

  async function attempt(): Promise<void> {
    let conn: Connection | null = null;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const connecting = mysql.createConnection({ ...connectionOptions(cfg, true), connectTimeout: timeoutMs });
    const work = (async () => {
      conn = await connecting;
      conn.on('error', () => undefined);
      await conn.query({ sql: 'SELECT 1', timeout: timeoutMs });
    })();
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new MailauthError('ERR_DB_TIMEOUT', `database did not answer the readiness probe within ${timeoutMs} ms`, { details: { dbCode: 'PROBE_TIMEOUT' } }));
      }, timeoutMs);
    });
    try {
      await Promise.race([work, limit]);
    } catch (err) {
      if (timedOut) throw err;
      throw translateDbError(err, 'readiness probe');
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined);
      // Never wait for a polite goodbye from a server that may be stalled.
      const c = conn as Connection | null;
      if (c) c.destroy();
      else connecting.then((late) => late.destroy(), () => undefined);
    }
  }

  return {
    timeoutMs,
    check() {
      inFlight ??= attempt().finally(() => {
        inFlight = null;
      });
      return inFlight;
    },
  };
}
