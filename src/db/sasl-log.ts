/** Repository for `sasl_log` (last successful login per service, IP and user; mailcow's REPLACE semantics). */
import type { Queryable } from './pool.js';

export interface SaslLogEntry {
  service: string;
  appPassword: number; // app_passwd.id, 0 when the mailbox password was used
  username: string;
  realRip: string;
  /**
   * UTC 'YYYY-MM-DD HH:MM:SS' of the login, so a delayed batch keeps the real time.
   * Stored converted to the session time zone, as mailcow's NOW() would be.
   */
  datetime: string;
}

export async function writeSaslLog(q: Queryable, entries: readonly SaslLogEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const values: unknown[] = [];
  for (const e of entries) values.push(e.service.slice(0, 32), e.appPassword, e.username, e.realRip.slice(0, 64), e.datetime);
  await q.exec(
    `REPLACE INTO sasl_log (service, app_password, username, real_rip, datetime) VALUES ${entries.map(() => "(?, ?, ?, ?, CONVERT_TZ(?, '+00:00', @@session.time_zone))").join(', ')}`,
    values,
  );
}

export async function lastLogins(q: Queryable, username: string): Promise<SaslLogEntry[]> {
  const rows = await q.rows<{ service: string; app_password: number | null; username: string; real_rip: string; datetime: string }>(
    'SELECT service, app_password, username, real_rip, datetime FROM sasl_log WHERE username = ? ORDER BY datetime DESC',
    [username],
  );
  return rows.map((r) => ({
    service: String(r.service),
    appPassword: Number(r.app_password ?? 0),
    username: String(r.username),
    realRip: String(r.real_rip),
    datetime: String(r.datetime),
  }));
}
