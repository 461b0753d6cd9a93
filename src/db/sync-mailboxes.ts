/**
 * The mailbox reads and the two writes of `mailauth sync` that are not
 * provisioning: the state sync plans with (read per page, never the whole
 * table at once) and deactivation/reactivation with sync's own marker in the
 * attributes, so a reactivation only ever undoes a deactivation sync made.
 */
import { setSelfAliasActive } from './mailbox-companions.js';
import { notResourceSql } from './mailboxes.js';
import type { Queryable, Row } from './pool.js';

/** Keys sync writes into `mailbox.attributes` when it deactivates a mailbox (mailcow ignores unknown keys). */
export const SYNC_MARKER = {
  by: 'mailauth_deactivated_by_sync',
  at: 'mailauth_deactivated_at',
  activeBefore: 'mailauth_active_before',
} as const;

/** The authsources sync manages: the mailboxes of the configured IdP (Keycloak or LDAP). */
export type SyncedAuthsource = 'keycloak' | 'ldap';

/** What sync needs to know about a mailbox; the rest of the row stays in the database. */
export interface SyncMailboxState {
  username: string;
  authsource: string;
  kind: string;
  active: number;
  name: string;
  attributeHash: string | null;
  /** Set when sync deactivated it (and nobody reactivated it since through sync). */
  deactivatedBySync: boolean;
  /** The `active` value before sync's deactivation (1 or 2); null when unknown. */
  activeBefore: number | null;
}

export interface SyncDomainState {
  domain: string;
  active: number;
}

const STATE_COLUMNS = `username, authsource, kind, active, name,
  JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.attribute_hash')) AS attribute_hash,
  JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.${SYNC_MARKER.by}')) AS sync_marker,
  JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.${SYNC_MARKER.activeBefore}')) AS active_before`;

function toState(r: Row): SyncMailboxState {
  const before = r.active_before == null ? null : Number(r.active_before);
  return {
    username: String(r.username),
    authsource: String(r.authsource ?? 'mailcow'),
    kind: String(r.kind ?? ''),
    active: Number(r.active ?? 0),
    name: String(r.name ?? ''),
    attributeHash: r.attribute_hash == null ? null : String(r.attribute_hash),
    deactivatedBySync: r.sync_marker != null && String(r.sync_marker) === '1',
    activeBefore: before === 1 || before === 2 ? before : null,
  };
}

/** The mailboxes among `usernames` (matched case-insensitively by the column's collation). */
export async function syncMailboxStates(q: Queryable, usernames: readonly string[]): Promise<SyncMailboxState[]> {
  if (usernames.length === 0) return [];
  const rows = await q.rows(`SELECT ${STATE_COLUMNS} FROM mailbox WHERE username IN (${usernames.map(() => '?').join(',')})`, [...usernames]);
  return rows.map(toState);
}

export async function syncDomainStates(q: Queryable, domains: readonly string[]): Promise<SyncDomainState[]> {
  if (domains.length === 0) return [];
  const rows = await q.rows(`SELECT domain, active FROM domain WHERE domain IN (${domains.map(() => '?').join(',')})`, [...domains]);
  return rows.map((r) => ({ domain: String(r.domain), active: Number(r.active ?? 0) }));
}

/**
 * One page of `keycloak` login mailboxes after `after` (keyset paging by
 * username: constant cost per page however large the table).
 */
export async function keycloakMailboxPage(q: Queryable, after: string | null, limit: number, authsource: SyncedAuthsource = 'keycloak'): Promise<SyncMailboxState[]> {
  const n = Math.max(1, Math.floor(limit));
  const rows = await q.rows(
    `SELECT ${STATE_COLUMNS} FROM mailbox
      WHERE authsource = ? AND ${notResourceSql('kind')}${after === null ? '' : ' AND username > ?'}
      ORDER BY username LIMIT ${n}`,
    after === null ? [authsource] : [authsource, after],
  );
  return rows.map(toState);
}

/** `keycloak` login mailboxes: all of them, and those not deactivated (`active` ≠ 0). */
export async function countKeycloakMailboxes(q: Queryable, authsource: SyncedAuthsource = 'keycloak'): Promise<{ total: number; active: number }> {
  const rows = await q.rows<{ total: number; active: number | string | null }>(
    `SELECT COUNT(*) AS total, COALESCE(SUM(active <> 0), 0) AS active FROM mailbox WHERE authsource = ? AND ${notResourceSql('kind')}`,
    [authsource],
  );
  return { total: Number(rows[0]?.total ?? 0), active: Number(rows[0]?.active ?? 0) };
}

/**
 * active → 0 with sync's marker, remembering the previous value (1, or 2 for
 * receive-only). Only while the mailbox is still a non-deactivated
 * `keycloak` one; false when it changed since it was planned. The self-alias
 * follows, as mailcow keeps it in step with the mailbox.
 */
export async function deactivateMailboxBySync(q: Queryable, username: string, atIso: string, authsource: SyncedAuthsource = 'keycloak'): Promise<boolean> {
  // `attributes` is assigned before `active`: MariaDB evaluates SET left to right, so it still sees the old value.
  const res = await q.exec(
    `UPDATE mailbox
        SET attributes = JSON_SET(COALESCE(attributes, '{}'), '$.${SYNC_MARKER.by}', '1', '$.${SYNC_MARKER.at}', ?, '$.${SYNC_MARKER.activeBefore}', CAST(active AS CHAR)),
            active = 0
      WHERE username = ? AND authsource = ? AND active <> 0`,
    [atIso, username, authsource],
  );
  if (res.affectedRows === 0) return false;
  await setSelfAliasActive(q, username, 0);
  return true;
}

/**
 * Undo sync's own deactivation: restore the previous `active`, drop the
 * marker. Only while the mailbox is still deactivated by sync; false when an
 * admin changed it meanwhile.
 */
export async function reactivateMailboxBySync(q: Queryable, username: string, authsource: SyncedAuthsource = 'keycloak'): Promise<{ active: number } | null> {
  const rows = await q.rows(`SELECT ${STATE_COLUMNS} FROM mailbox WHERE username = ? FOR UPDATE`, [username]);
  const r = rows[0];
  if (!r) return null;
  const state = toState(r);
  if (state.authsource !== authsource || state.active !== 0 || !state.deactivatedBySync) return null;
  const active = state.activeBefore ?? 1;
  await q.exec(
    `UPDATE mailbox
        SET attributes = JSON_REMOVE(attributes, '$.${SYNC_MARKER.by}', '$.${SYNC_MARKER.at}', '$.${SYNC_MARKER.activeBefore}'),
            active = ?
      WHERE username = ?`,
    [active, state.username],
  );
  await setSelfAliasActive(q, state.username, active);
  return { active };
}
