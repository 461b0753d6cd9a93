/**
 * The mysql2 pool behind a small interface, with driver errors translated to
 * coded MailauthErrors at this edge and a timeout on every query.
 */
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection, ResultSetHeader } from 'mysql2/promise';
import { MailauthError } from '../errors.js';
import type { DatabaseConfig } from '../config/index.js';

export type Params = readonly unknown[] | Record<string, unknown>;
export type Row = Record<string, unknown>;

/** What repositories need: works the same on the pool and inside a transaction. */
export interface Queryable {
  rows<T extends Row = Row>(sql: string, params?: Params): Promise<T[]>;
  exec(sql: string, params?: Params): Promise<{ affectedRows: number; insertId: number }>;
}

export interface Db extends Queryable {
  readonly database: string;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;
  stats(): { total: number; idle: number; waiting: number };
}

const UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT',
  'PROTOCOL_CONNECTION_LOST',
  'ER_ACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_CON_COUNT_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
  'ER_SERVER_SHUTDOWN',
  'POOL_CLOSED',
]);

export function translateDbError(err: unknown, what: string): MailauthError {
  if (err instanceof MailauthError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'PROTOCOL_SEQUENCE_TIMEOUT') return new MailauthError('ERR_DB_TIMEOUT', `database timeout during ${what}`, { cause: err, details: { dbCode: code } });
  if (code === 'ER_DUP_ENTRY') return new MailauthError('ERR_DB_CONFLICT', `duplicate entry during ${what}`, { cause: err, details: { dbCode: code } });
  if (UNAVAILABLE.has(code)) {
    return new MailauthError('ERR_DB_UNAVAILABLE', `database unavailable during ${what} (${code})`, { cause: err, details: { dbCode: code } });
  }
  return new MailauthError('ERR_DB_QUERY', `database error during ${what}${code ? ` (${code})` : ''}`, { cause: err, details: { dbCode: code } });
}

function what(sql: string): string {
  return sql.trim().split(/\s+/).slice(0, 3).join(' ');
}

function queryable(conn: Pool | PoolConnection, timeoutMs: number): Queryable {
  return {
    async rows<T extends Row>(sql: string, params: Params = []): Promise<T[]> {
      try {
        const [rows] = await conn.query({ sql, timeout: timeoutMs, values: params as unknown[] });
        return rows as T[];
      } catch (err) {
        throw translateDbError(err, what(sql));
      }
    },
    async exec(sql: string, params: Params = []) {
      try {
        const [res] = await conn.query<ResultSetHeader>({ sql, timeout: timeoutMs, values: params as unknown[] });
        return { affectedRows: res.affectedRows, insertId: res.insertId };
      } catch (err) {
        throw translateDbError(err, what(sql));
      }
    },
  };
}

/** mysql2 options for a single connection (advisory locks, admin work) from the same settings as the pool. */
export function connectionOptions(cfg: DatabaseConfig, withDatabase = true): mysql.ConnectionOptions {
  return {
    host: cfg.socketPath ? undefined : cfg.host,
    port: cfg.socketPath ? undefined : cfg.port,
    socketPath: cfg.socketPath ?? undefined,
    user: cfg.user,
    password: cfg.password ?? undefined,
    database: withDatabase ? cfg.database : undefined,
    connectTimeout: cfg.connectTimeoutMs,
  };
}

export interface DbOptions {
  /** Long-running admin work (migrations, sync) may want a longer query timeout than logins. */
  queryTimeoutMs?: number;
}

export function createDb(cfg: DatabaseConfig, opts: DbOptions = {}): Db {
  const timeoutMs = opts.queryTimeoutMs ?? cfg.queryTimeoutMs;
  const pool = mysql.createPool({
    host: cfg.socketPath ? undefined : cfg.host,
    port: cfg.socketPath ? undefined : cfg.port,
    socketPath: cfg.socketPath ?? undefined,
    user: cfg.user,
    password: cfg.password ?? undefined,
    database: cfg.database,
    connectionLimit: cfg.poolSize,
    maxIdle: cfg.poolSize,
    idleTimeout: 60_000,
    connectTimeout: cfg.connectTimeoutMs,
    waitForConnections: true,
    // Bounded: when the database stalls, requests fail fast instead of piling up.
    queueLimit: cfg.poolSize * 50,
    enableKeepAlive: true,
    charset: 'utf8mb4_unicode_ci',
    timezone: 'Z',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: false,
    multipleStatements: false,
  });
  // A pool emits errors for broken idle connections; they are retried on next use.
  pool.on('connection', (c) => c.on('error', () => undefined));
  const q = queryable(pool, timeoutMs);
  // mysql2 exposes no public pool gauges; read its internals defensively for /metrics.
  type Inner = { _allConnections?: { length: number }; _freeConnections?: { length: number }; _connectionQueue?: { length: number } };
  const inner = ((pool as unknown as { pool?: Inner }).pool ?? {}) as Inner;
  return {
    database: cfg.database,
    ...q,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let conn: PoolConnection;
      try {
        conn = await pool.getConnection();
      } catch (err) {
        throw translateDbError(err, 'transaction start');
      }
      try {
        await conn.beginTransaction();
        const result = await fn(queryable(conn, timeoutMs));
        await conn.commit();
        return result;
      } catch (err) {
        await conn.rollback().catch(() => undefined);
        throw translateDbError(err, 'transaction');
      } finally {
        conn.release();
      }
    },
    async ping() {
      await q.rows('SELECT 1 AS ok');
    },
    async close() {
      await pool.end().catch(() => undefined);
    },
    stats() {
      return {
        total: inner._allConnections?.length ?? 0,
        idle: inner._freeConnections?.length ?? 0,
        waiting: inner._connectionQueue?.length ?? 0,
      };
    },
  };
}

/** JSON columns arrive parsed from MySQL and as text from MariaDB (where JSON is LONGTEXT). */
export function jsonColumn(v: unknown): unknown {
  if (typeof v !== 'string') return v ?? null;
  if (v === '') return null;
  return JSON.parse(v);
}
