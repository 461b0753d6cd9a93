/**
 * The narrow read behind the account cache: the fields of a login account that
 * must take effect on the very next login (password hashes, active flags,
 * authsource), by primary key and the app_passwd.mailbox key. The batched form
 * answers many logins with one statement.
 */
import type { AccessFlag } from '../config/index.js';
import type { Queryable, Row } from './pool.js';
import { accessFromRow } from './app-passwords.js';

export interface AppCredential {
  id: number;
  password: string;
  access: Record<AccessFlag, number>;
}

export interface CredentialState {
  password: string;
  active: number;
  domainActive: number;
  authsource: string;
  /** Active app passwords, in id order. */
  appPasswords: AppCredential[];
}

const SELECT = `SELECT m.username, m.password, m.active, m.authsource, d.active AS domain_active,
       a.id AS app_id, a.password AS app_password, a.imap_access, a.pop3_access, a.smtp_access,
       a.sieve_access, a.eas_access, a.dav_access
  FROM mailbox m STRAIGHT_JOIN domain d ON d.domain = m.domain
  LEFT JOIN app_passwd a ON a.mailbox = m.username AND a.active = 1`;

// STRAIGHT_JOIN: mailbox first, by its primary key. Left to itself MariaDB may start from
// domain (a small table, so it looks cheap) and walk every mailbox of the domain through
// the domain index to filter the IN list: ~0.4 ms of server time per statement with
// 3,000 mailboxes in the domain (and growing with it) against ~0.1 ms (issue 4).
function collect(rows: Row[]): Map<string, CredentialState> {
  const out = new Map<string, CredentialState>();
  for (const r of rows) {
    // Keys are lower-cased: the collation matches user names case-insensitively.
    const key = String(r.username).toLowerCase();
    let s = out.get(key);
    if (!s) {
      s = {
        password: String(r.password ?? ''),
        active: Number(r.active ?? 0),
        domainActive: Number(r.domain_active ?? 0),
        authsource: String(r.authsource ?? 'mailcow'),
        appPasswords: [],
      };
      out.set(key, s);
    }
    if (r.app_id == null) continue;
    s.appPasswords.push({
      id: Number(r.app_id),
      password: String(r.app_password ?? ''),
      access: accessFromRow(r),
    });
  }
  // Sorted here, not by ORDER BY: on the join that costs MariaDB a filesort, about
  // 40 % of this statement's server time (measured in issue 4), on every cached login.
  for (const s of out.values()) if (s.appPasswords.length > 1) s.appPasswords.sort((a, b) => a.id - b.id);
  return out;
}

/** null when there is no such mailbox (or its domain row is missing, as findAccount sees it). */
export async function findCredentials(q: Queryable, username: string): Promise<CredentialState | null> {
  const rows = await q.rows<Row>(`${SELECT} WHERE m.username = ?`, [username]);
  return collect(rows).get(username.toLowerCase()) ?? null;
}

/** Many users in one statement; the map is keyed by lower-cased user name, absent users are missing. */
export async function findCredentialsMany(q: Queryable, usernames: readonly string[]): Promise<Map<string, CredentialState>> {
  if (usernames.length === 0) return new Map();
  const rows = await q.rows<Row>(`${SELECT} WHERE m.username IN (${usernames.map(() => '?').join(', ')})`, usernames);
  return collect(rows);
}
