/**
 * Dovecot notifications that failed (issue 17): one row per (host, user, action)
 * in mailauth_dovecot_pending until doveadm succeeds or dovecot.retry_for passes.
 * mailauth's own table; mailcow never reads it.
 */
import type { Queryable } from './pool.js';

export type PendingAction = 'flush' | 'kick';

export interface PendingRow {
  host: string;
  user: string;
  action: PendingAction;
  attempts: number;
  firstFailed: Date;
  lastError: string;
}

interface RawRow {
  host: string;
  username: string;
  action: string;
  attempts: number;
  first_failed: Date;
  last_error: string;
}

const toRow = (r: RawRow): PendingRow => ({ host: r.host, user: r.username, action: r.action === 'kick' ? 'kick' : 'flush', attempts: Number(r.attempts), firstFailed: new Date(r.first_failed), lastError: r.last_error });

export function dovecotPendingStore(db: Queryable) {
  return {
    async failed(e: { host: string; user: string; action: PendingAction; error: string }, now: Date): Promise<void> {
      await db.exec(
        'INSERT INTO mailauth_dovecot_pending (host, username, action, attempts, first_failed, last_try, last_error) VALUES (?, ?, ?, 1, ?, ?, ?) ' +
          'ON DUPLICATE KEY UPDATE attempts = attempts + 1, last_try = VALUES(last_try), last_error = VALUES(last_error)',
        [e.host.slice(0, 255), e.user.slice(0, 255), e.action, now, now, e.error.slice(0, 1000)],
      );
    },
    async succeeded(e: { host: string; user: string; action: PendingAction }): Promise<void> {
      await db.exec('DELETE FROM mailauth_dovecot_pending WHERE host = ? AND username = ? AND action = ?', [e.host.slice(0, 255), e.user.slice(0, 255), e.action]);
    },
    async list(): Promise<PendingRow[]> {
      const rows = (await db.rows('SELECT host, username, action, attempts, first_failed, last_error FROM mailauth_dovecot_pending ORDER BY first_failed, id LIMIT 1000')) as unknown as RawRow[];
      return rows.map(toRow);
    },
    async expire(cutoff: Date): Promise<PendingRow[]> {
      const rows = (await db.rows('SELECT host, username, action, attempts, first_failed, last_error FROM mailauth_dovecot_pending WHERE first_failed < ?', [cutoff])) as unknown as RawRow[];
      if (rows.length > 0) await db.exec('DELETE FROM mailauth_dovecot_pending WHERE first_failed < ?', [cutoff]);
      return rows.map(toRow);
    },
  };
}
