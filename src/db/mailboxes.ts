/** Repository for the `mailbox` and `domain` tables (mailcow schema). */
import { MailauthError } from '../errors.js';
import { jsonColumn } from './pool.js';
import type { Queryable, Row } from './pool.js';

export const AUTH_SOURCES = ['mailcow', 'keycloak', 'generic-oidc', 'ldap'] as const;
export type AuthSource = (typeof AUTH_SOURCES)[number];
// mailcow excludes resources with `kind NOT REGEXP 'location|thing|group'`, which MariaDB evaluates under the
// column's case-insensitive collation: 'Location' (or 'group-room') is a resource there, so it is one here too.
const RESOURCE_KIND = /location|thing|group/i;

/** Whether a mailbox `kind` makes it a resource, by mailcow's own rule. */
export function isResourceKind(kind: string): boolean {
  return RESOURCE_KIND.test(kind);
}

/** The SQL condition "not a resource" on a kind column, by the same rule. */
export function notResourceSql(column: 'kind' | 'm.kind'): string {
  return `${column} NOT REGEXP 'location|thing|group'`;
}

export interface MailboxRow {
  username: string;
  password: string;
  name: string;
  description: string;
  quota: number; // bytes
  localPart: string;
  domain: string;
  attributes: Record<string, unknown>;
  kind: string;
  /** Raw text: a row may hold a value this version does not know. */
  authsource: string;
  active: number;
  created: string;
  modified: string | null;
}

/** A mailbox joined with what a login decision needs from its domain. */
export interface AccountRow extends MailboxRow {
  domainActive: number;
}

export interface DomainRow {
  domain: string;
  description: string;
  mailboxes: number; // max mailbox count
  defquota: number; // MiB
  maxquota: number; // MiB
  quota: number; // MiB, whole domain
  active: number;
  created: string;
  modified: string | null;
}

const MAILBOX_COLUMNS =
  'm.username, m.password, m.name, m.description, m.quota, m.local_part, m.domain, m.attributes, m.kind, m.authsource, m.active, m.created, m.modified';

function attributesOf(v: unknown, username: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = jsonColumn(v);
  } catch (err) {
    throw new MailauthError('ERR_DB_QUERY', `mailbox ${username}: attributes column is not valid JSON`, { cause: err });
  }
  if (parsed === null) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new MailauthError('ERR_DB_QUERY', `mailbox ${username}: attributes column is not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

function toMailbox(r: Row): MailboxRow {
  const username = String(r.username);
  return {
    username,
    password: String(r.password ?? ''),
    name: String(r.name ?? ''),
    description: String(r.description ?? ''),
    quota: Number(r.quota ?? 0),
    localPart: String(r.local_part ?? ''),
    domain: String(r.domain ?? ''),
    attributes: attributesOf(r.attributes, username),
    kind: String(r.kind ?? ''),
    authsource: String(r.authsource ?? 'mailcow'),
    active: Number(r.active ?? 0),
    created: String(r.created ?? ''),
    modified: r.modified == null ? null : String(r.modified),
  };
}

function toDomain(r: Row): DomainRow {
  return {
    domain: String(r.domain),
    description: String(r.description ?? ''),
    mailboxes: Number(r.mailboxes ?? 0),
    defquota: Number(r.defquota ?? 0),
    maxquota: Number(r.maxquota ?? 0),
    quota: Number(r.quota ?? 0),
    active: Number(r.active ?? 0),
    created: String(r.created ?? ''),
    modified: r.modified == null ? null : String(r.modified),
  };
}

/** The hot-path read: one indexed query, mailbox + domain state. */
export async function findAccount(q: Queryable, username: string): Promise<AccountRow | null> {
  const rows = await q.rows(
    `SELECT ${MAILBOX_COLUMNS}, d.active AS domain_active
       FROM mailbox m JOIN domain d ON d.domain = m.domain
      WHERE m.username = ? LIMIT 1`,
    [username],
  );
  const r = rows[0];
  if (!r) return null;
  // Not `{ ...row, domainActive }`: in a hot loop V8 gives every such spread copy a hidden
  // class of its own (~400 B each, and CPU to build it) — measured in issue 4's account cache.
  return Object.assign(toMailbox(r), { domainActive: Number(r.domain_active ?? 0) });
}

export async function getMailbox(q: Queryable, username: string): Promise<MailboxRow | null> {
  const rows = await q.rows(`SELECT ${MAILBOX_COLUMNS} FROM mailbox m WHERE m.username = ? LIMIT 1`, [username]);
  return rows[0] ? toMailbox(rows[0]) : null;
}

/** getMailbox as a locking read: sees the latest committed row whatever snapshot the transaction holds. */
export async function getMailboxForUpdate(q: Queryable, username: string): Promise<MailboxRow | null> {
  const rows = await q.rows(`SELECT ${MAILBOX_COLUMNS} FROM mailbox m WHERE m.username = ? LIMIT 1 FOR UPDATE`, [username]);
  return rows[0] ? toMailbox(rows[0]) : null;
}

export interface MailboxFilter {
  domain?: string;
  authsource?: string;
  active?: number;
  /** Include resource kinds (location/thing/group); default false. */
  includeResources?: boolean;
  limit?: number;
  offset?: number;
}

export async function listMailboxes(q: Queryable, f: MailboxFilter = {}): Promise<MailboxRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.domain !== undefined) (where.push('m.domain = ?'), params.push(f.domain));
  if (f.authsource !== undefined) (where.push('m.authsource = ?'), params.push(f.authsource));
  if (f.active !== undefined) (where.push('m.active = ?'), params.push(f.active));
  if (!f.includeResources) where.push(notResourceSql('m.kind'));
  const sql =
    `SELECT ${MAILBOX_COLUMNS} FROM mailbox m` +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    ' ORDER BY m.username' +
    (f.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(f.limit))}` : '') +
    (f.offset !== undefined ? ` OFFSET ${Math.max(0, Math.floor(f.offset))}` : '');
  return (await q.rows(sql, params)).map(toMailbox);
}

/** A mailbox's stored hash with what says whether it is used at login (a scan for `mailauth doctor`). */
export interface MailboxHashRow {
  username: string;
  password: string;
  authsource: string;
  active: number;
  kind: string;
}

/**
 * The next `limit` mailboxes with a password hash after `after` in primary-key order: a scan of
 * the whole table in bounded batches, each one range of the primary key (never an OFFSET).
 */
export async function mailboxHashPage(q: Queryable, after: string | null, limit: number): Promise<MailboxHashRow[]> {
  const rows = await q.rows(
    "SELECT username, password, authsource, active, kind FROM mailbox WHERE username > ? AND password <> '' ORDER BY username LIMIT ?",
    [after ?? '', Math.max(1, Math.floor(limit))],
  );
  return rows.map((r) => ({ username: String(r.username), password: String(r.password ?? ''), authsource: String(r.authsource ?? ''), active: Number(r.active ?? 0), kind: String(r.kind ?? '') }));
}

export interface NewMailbox {
  username: string;
  password: string;
  name: string;
  description?: string;
  quota: number;
  localPart: string;
  domain: string;
  attributes: Record<string, unknown>;
  authsource: AuthSource;
  active: number;
  kind?: string;
}

export async function insertMailbox(q: Queryable, m: NewMailbox): Promise<void> {
  await q.exec(
    `INSERT INTO mailbox (username, password, name, description, quota, local_part, domain, attributes, kind, authsource, active)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      m.username,
      m.password,
      m.name,
      m.description ?? '',
      m.quota,
      m.localPart,
      m.domain,
      JSON.stringify(m.attributes),
      m.kind ?? '',
      m.authsource,
      m.active,
    ],
  );
}

export interface MailboxPatch {
  password?: string;
  name?: string;
  description?: string;
  quota?: number;
  attributes?: Record<string, unknown>;
  authsource?: AuthSource;
  active?: number;
}

export async function updateMailbox(q: Queryable, username: string, patch: MailboxPatch): Promise<boolean> {
  const sets: string[] = [];
  const params: unknown[] = [];
  const col = (name: string, v: unknown): void => {
    sets.push(`${name} = ?`);
    params.push(v);
  };
  if (patch.password !== undefined) col('password', patch.password);
  if (patch.name !== undefined) col('name', patch.name);
  if (patch.description !== undefined) col('description', patch.description);
  if (patch.quota !== undefined) col('quota', patch.quota);
  if (patch.attributes !== undefined) col('attributes', JSON.stringify(patch.attributes));
  if (patch.authsource !== undefined) col('authsource', patch.authsource);
  if (patch.active !== undefined) col('active', patch.active);
  if (sets.length === 0) return false;
  params.push(username);
  const res = await q.exec(`UPDATE mailbox SET ${sets.join(', ')} WHERE username = ?`, params);
  return res.affectedRows > 0;
}

/** Deletes the mailbox and the rows mailcow creates with it. Callers wrap this in a transaction. */
export async function deleteMailbox(q: Queryable, username: string): Promise<boolean> {
  await q.exec('DELETE FROM alias WHERE address = ? AND goto = ?', [username, username]);
  await q.exec('DELETE FROM quota2 WHERE username = ?', [username]);
  await q.exec('DELETE FROM quota2replica WHERE username = ?', [username]);
  await q.exec('DELETE FROM sasl_log WHERE username = ?', [username]);
  const res = await q.exec('DELETE FROM mailbox WHERE username = ?', [username]);
  return res.affectedRows > 0;
}

export async function countMailboxesByAuthsource(q: Queryable): Promise<Record<string, number>> {
  const rows = await q.rows<{ authsource: string; n: number }>(
    'SELECT authsource, COUNT(*) AS n FROM mailbox GROUP BY authsource',
  );
  return Object.fromEntries(rows.map((r) => [String(r.authsource), Number(r.n)]));
}

// ── domains ────────────────────────────────────────────────────────────────

const DOMAIN_COLUMNS = 'domain, description, mailboxes, defquota, maxquota, quota, active, created, modified';

export async function getDomain(q: Queryable, domain: string): Promise<DomainRow | null> {
  const rows = await q.rows(`SELECT ${DOMAIN_COLUMNS} FROM domain WHERE domain = ? LIMIT 1`, [domain]);
  return rows[0] ? toDomain(rows[0]) : null;
}

/** Same as getDomain but locks the row, so concurrent provisioning cannot overrun domain limits. */
export async function getDomainForUpdate(q: Queryable, domain: string): Promise<DomainRow | null> {
  const rows = await q.rows(`SELECT ${DOMAIN_COLUMNS} FROM domain WHERE domain = ? LIMIT 1 FOR UPDATE`, [domain]);
  return rows[0] ? toDomain(rows[0]) : null;
}

export async function listDomains(q: Queryable): Promise<DomainRow[]> {
  return (await q.rows(`SELECT ${DOMAIN_COLUMNS} FROM domain ORDER BY domain`)).map(toDomain);
}

export interface NewDomain {
  domain: string;
  description?: string;
  mailboxes: number;
  defquota: number;
  maxquota: number;
  quota: number;
  active: number;
}

export async function insertDomain(q: Queryable, d: NewDomain): Promise<void> {
  await q.exec(
    'INSERT INTO domain (domain, description, mailboxes, defquota, maxquota, quota, active) VALUES (?, ?, ?, ?, ?, ?, ?)',
    [d.domain, d.description ?? '', d.mailboxes, d.defquota, d.maxquota, d.quota, d.active],
  );
}

export async function updateDomain(q: Queryable, domain: string, patch: Partial<Omit<NewDomain, 'domain'>>): Promise<boolean> {
  const entries = Object.entries(patch).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return false;
  const allowed = new Set(['description', 'mailboxes', 'defquota', 'maxquota', 'quota', 'active']);
  for (const [k] of entries) if (!allowed.has(k)) throw new MailauthError('ERR_INVALID_INPUT', `unknown domain column ${k}`);
  const res = await q.exec(`UPDATE domain SET ${entries.map(([k]) => `${k} = ?`).join(', ')} WHERE domain = ?`, [
    ...entries.map(([, v]) => v),
    domain,
  ]);
  return res.affectedRows > 0;
}

export async function deleteDomain(q: Queryable, domain: string): Promise<boolean> {
  const res = await q.exec('DELETE FROM domain WHERE domain = ?', [domain]);
  return res.affectedRows > 0;
}

/** Mailbox count and summed quota (bytes) of a domain's login mailboxes, for limit checks. */
export async function domainUsage(
  q: Queryable,
  domain: string,
  opts: { lock?: boolean; excludeUsername?: string } = {},
): Promise<{ mailboxes: number; quotaBytes: number; maxQuotaBytes: number }> {
  // lock: a locking read counts the latest committed rows, not the transaction's snapshot.
  const rows = await q.rows<{ n: number; total: number | string | null; maxq: number | string | null }>(
    `SELECT COUNT(*) AS n, COALESCE(SUM(quota), 0) AS total, COALESCE(MAX(quota), 0) AS maxq FROM mailbox WHERE domain = ? AND ${notResourceSql('kind')}` +
      (opts.excludeUsername !== undefined ? ' AND username <> ?' : '') +
      (opts.lock ? ' LOCK IN SHARE MODE' : ''),
    opts.excludeUsername !== undefined ? [domain, opts.excludeUsername] : [domain],
  );
  const r = rows[0];
  return { mailboxes: Number(r?.n ?? 0), quotaBytes: Number(r?.total ?? 0), maxQuotaBytes: Number(r?.maxq ?? 0) };
}
