/** Repository for `app_passwd`. */
import type { AccessFlag } from '../config/index.js';
import type { Queryable, Row } from './pool.js';

export interface AppPasswordRow {
  id: number;
  name: string;
  mailbox: string;
  domain: string;
  password: string;
  active: number;
  access: Record<AccessFlag, number>;
  created: string;
}

const COLUMNS =
  'id, name, mailbox, domain, password, active, imap_access, pop3_access, smtp_access, sieve_access, eas_access, dav_access, created';

/** The six `<flag>_access` columns of an app_passwd row (also read by joined queries). */
export function accessFromRow(r: Row): Record<AccessFlag, number> {
  return {
    imap: Number(r.imap_access ?? 0),
    pop3: Number(r.pop3_access ?? 0),
    smtp: Number(r.smtp_access ?? 0),
    sieve: Number(r.sieve_access ?? 0),
    eas: Number(r.eas_access ?? 0),
    dav: Number(r.dav_access ?? 0),
  };
}

function toRow(r: Row): AppPasswordRow {
  return {
    id: Number(r.id),
    name: String(r.name ?? ''),
    mailbox: String(r.mailbox),
    domain: String(r.domain ?? ''),
    password: String(r.password ?? ''),
    active: Number(r.active ?? 0),
    access: accessFromRow(r),
    created: String(r.created ?? ''),
  };
}

export async function listAppPasswords(q: Queryable, mailbox: string, opts: { activeOnly?: boolean } = {}): Promise<AppPasswordRow[]> {
  const rows = await q.rows(
    `SELECT ${COLUMNS} FROM app_passwd WHERE mailbox = ?${opts.activeOnly ? ' AND active = 1' : ''} ORDER BY id`,
    [mailbox],
  );
  return rows.map(toRow);
}

export async function getAppPassword(q: Queryable, id: number): Promise<AppPasswordRow | null> {
  const rows = await q.rows(`SELECT ${COLUMNS} FROM app_passwd WHERE id = ?`, [id]);
  return rows[0] ? toRow(rows[0]) : null;
}

/** An app password's hash with what says whether it is used at login (a scan for `mailauth doctor`). */
export interface AppPasswordHashRow {
  id: number;
  mailbox: string;
  password: string;
  active: number;
  /** The mailbox's `active`; null when the row names no mailbox. */
  mailboxActive: number | null;
}

/** The next `limit` app passwords after id `after`, in primary-key order (see mailboxHashPage). */
export async function appPasswordHashPage(q: Queryable, after: number, limit: number): Promise<AppPasswordHashRow[]> {
  const rows = await q.rows(
    "SELECT a.id, a.mailbox, a.password, a.active, m.active AS mailbox_active FROM app_passwd a LEFT JOIN mailbox m ON m.username = a.mailbox WHERE a.id > ? AND a.password <> '' ORDER BY a.id LIMIT ?",
    [after, Math.max(1, Math.floor(limit))],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    mailbox: String(r.mailbox),
    password: String(r.password ?? ''),
    active: Number(r.active ?? 0),
    mailboxActive: r.mailbox_active === null || r.mailbox_active === undefined ? null : Number(r.mailbox_active),
  }));
}

export interface NewAppPassword {
  name: string;
  mailbox: string;
  domain: string;
  password: string;
  access: Record<AccessFlag, number>;
  active?: number;
}

export async function insertAppPassword(q: Queryable, a: NewAppPassword): Promise<number> {
  const res = await q.exec(
    `INSERT INTO app_passwd (name, mailbox, domain, password, imap_access, pop3_access, smtp_access, sieve_access, eas_access, dav_access, active)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [a.name, a.mailbox, a.domain, a.password, a.access.imap, a.access.pop3, a.access.smtp, a.access.sieve, a.access.eas, a.access.dav, a.active ?? 1],
  );
  return res.insertId;
}

export async function deleteAppPassword(q: Queryable, mailbox: string, id: number): Promise<boolean> {
  const res = await q.exec('DELETE FROM app_passwd WHERE id = ? AND mailbox = ?', [id, mailbox]);
  return res.affectedRows > 0;
}
