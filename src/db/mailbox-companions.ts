/**
 * The rows mailcow writes alongside a mailbox: quota2/quota2replica counters,
 * the self-alias (address = goto = mailbox) and the user_acl flags.
 */
import { MailauthError } from '../errors.js';
import type { Queryable } from './pool.js';

export interface AliasRow {
  id: number;
  address: string;
  goto: string;
  domain: string;
  active: number;
}

export async function findAlias(q: Queryable, address: string): Promise<AliasRow | null> {
  const rows = await q.rows('SELECT id, address, goto, domain, active FROM alias WHERE address = ? LIMIT 1', [address]);
  const r = rows[0];
  if (!r) return null;
  return { id: Number(r.id), address: String(r.address), goto: String(r.goto), domain: String(r.domain), active: Number(r.active ?? 0) };
}

export async function insertSelfAlias(q: Queryable, username: string, domain: string, active: number): Promise<void> {
  await q.exec('INSERT INTO alias (address, goto, domain, active) VALUES (?, ?, ?, ?)', [username, username, domain, active]);
}

/** mailcow keeps the mailbox's own alias in step with the mailbox's `active`. */
export async function setSelfAliasActive(q: Queryable, username: string, active: number): Promise<void> {
  await q.exec('UPDATE alias SET active = ? WHERE address = ? AND goto = ?', [active, username, username]);
}

export async function countAliasesOfDomain(q: Queryable, domain: string): Promise<number> {
  const rows = await q.rows<{ n: number }>('SELECT COUNT(*) AS n FROM alias WHERE domain = ?', [domain]);
  return Number(rows[0]?.n ?? 0);
}

export async function deleteAliasesOfDomain(q: Queryable, domain: string): Promise<number> {
  return (await q.exec('DELETE FROM alias WHERE domain = ?', [domain])).affectedRows;
}

/** Zeroed usage counters, as mailcow writes them for a new mailbox. */
export async function resetQuotaRows(q: Queryable, username: string): Promise<void> {
  for (const table of ['quota2', 'quota2replica']) {
    await q.exec(
      `INSERT INTO ${table} (username, bytes, messages) VALUES (?, 0, 0) ON DUPLICATE KEY UPDATE bytes = 0, messages = 0`,
      [username],
    );
  }
}

/** The columns of user_acl on this database (a real mailcow one may have more than mailauth creates). */
export async function userAclColumns(q: Queryable): Promise<string[]> {
  const rows = await q.rows<{ name: string }>(
    "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user_acl' ORDER BY ORDINAL_POSITION",
  );
  return rows.map((r) => String(r.name)).filter((c) => c !== 'username');
}

/** Insert or overwrite the user's ACL flags; `flags` keys must be user_acl column names. */
export async function upsertUserAcl(q: Queryable, username: string, flags: Readonly<Record<string, 0 | 1>>): Promise<void> {
  const cols = Object.keys(flags);
  for (const c of cols) if (!/^[a-z_]+$/.test(c)) throw new MailauthError('ERR_INVALID_INPUT', `invalid user_acl column ${c}`);
  if (cols.length === 0) {
    await q.exec('INSERT IGNORE INTO user_acl (username) VALUES (?)', [username]);
    return;
  }
  await q.exec(
    `INSERT INTO user_acl (username, ${cols.map((c) => `\`${c}\``).join(', ')}) VALUES (?, ${cols.map(() => '?').join(', ')})
     ON DUPLICATE KEY UPDATE ${cols.map((c) => `\`${c}\` = VALUES(\`${c}\`)`).join(', ')}`,
    [username, ...cols.map((c) => flags[c])],
  );
}

export async function getUserAcl(q: Queryable, username: string): Promise<Record<string, number> | null> {
  const rows = await q.rows('SELECT * FROM user_acl WHERE username = ? LIMIT 1', [username]);
  const r = rows[0];
  if (!r) return null;
  return Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'username').map(([k, v]) => [k, Number(v)]));
}

/** mailcow stamps `attributes.passwd_update` with the database's NOW() whenever a password is set. */
export async function stampPasswordUpdate(q: Queryable, username: string): Promise<void> {
  await q.exec("UPDATE mailbox SET attributes = JSON_SET(attributes, '$.passwd_update', NOW()) WHERE username = ?", [username]);
}
