/**
 * A MariaDB/MySQL advisory lock (GET_LOCK) on a connection of its own, held
 * for as long as the caller works. The server releases it when that
 * connection ends, so a crashed process never leaves a stale lock behind, and
 * it works across hosts because the server, not a file, holds it.
 */
import { createHash } from 'node:crypto';
import mysql from 'mysql2/promise';
import type { Connection } from 'mysql2/promise';
import type { DatabaseConfig } from '../config/index.js';
import { MailauthError } from '../errors.js';
import { connectionOptions, translateDbError } from './pool.js';

export interface AdvisoryLock {
  readonly name: string;
  /** Releases the lock and closes its connection; false when the lock was lost on the way (the connection broke). */
  release(): Promise<boolean>;
}

/** MariaDB limits lock names to 64 characters. */
const MAX_NAME = 64;

/**
 * The lock name for `base` in `database`. Lock names are server-wide, so two
 * databases on one server (two mail systems, parallel tests) get their own
 * lock; a long name is shortened with a hash.
 */
export function advisoryLockName(base: string, database: string): string {
  const full = `${base}:${database}`;
  if (full.length <= MAX_NAME) return full;
  return `${base}:${createHash('sha256').update(database).digest('hex')}`.slice(0, MAX_NAME);
}

async function connect(cfg: DatabaseConfig): Promise<Connection> {
  try {
    const conn = await mysql.createConnection({ ...connectionOptions(cfg), enableKeepAlive: true });
    // A broken lock connection shows up in release(); it must not crash the process meanwhile.
    conn.on('error', () => undefined);
    return conn;
  } catch (err) {
    throw translateDbError(err, 'lock connection');
  }
}

/**
 * Try once to take the lock (timeout 0: never wait). Null when another
 * session holds it.
 */
export async function tryAdvisoryLock(cfg: DatabaseConfig, name: string): Promise<AdvisoryLock | null> {
  const conn = await connect(cfg);
  let got: unknown;
  try {
    const [rows] = await conn.query({ sql: 'SELECT GET_LOCK(?, 0) AS got', values: [name], timeout: cfg.queryTimeoutMs });
    got = (rows as { got: unknown }[])[0]?.got;
  } catch (err) {
    await conn.end().catch(() => undefined);
    if ((err as { code?: string }).code === 'ER_NOT_SUPPORTED_YET') {
      // MariaDB refuses GET_LOCK on a Galera node (MDEV-30473), where a lock would not span the cluster anyway.
      throw new MailauthError('ERR_DB_QUERY', `the database server refuses GET_LOCK (a Galera cluster with wsrep_on=ON?), so the lock "${name}" cannot be taken`, {
        cause: err,
        details: { dbCode: 'ER_NOT_SUPPORTED_YET' },
      });
    }
    throw translateDbError(err, 'GET_LOCK');
  }
  if (Number(got) !== 1) {
    await conn.end().catch(() => undefined);
    return null;
  }
  let released = false;
  return {
    name,
    async release() {
      if (released) return true;
      released = true;
      try {
        const [rows] = await conn.query({ sql: 'SELECT RELEASE_LOCK(?) AS released', values: [name], timeout: cfg.queryTimeoutMs });
        return Number((rows as { released: unknown }[])[0]?.released) === 1;
      } catch {
        return false;
      } finally {
        // Closing the connection frees the lock in any case.
        await conn.end().catch(() => conn.destroy());
      }
    },
  };
}
