/**
 * Account loading and the per-account rules that need no password: resource
 * kinds, active flags, service access. Loading goes through one function so the
 * account cache can wrap it without the decision knowing (STYLE 5).
 */
import { ACCESS_FLAGS } from '../config/index.js';
import type { AccessFlag } from '../config/index.js';
import { findAccount, isResourceKind, listAppPasswords } from '../db/index.js';
import type { AppPasswordRow, Queryable } from '../db/index.js';
import type { Account, AccountLoader } from './types.js';

/** The database-backed loader: mailbox+domain row and its active app passwords, in parallel. */
export function dbAccountLoader(db: Queryable): AccountLoader {
  return async (username) => {
    const [mailbox, appPasswords] = await Promise.all([
      findAccount(db, username),
      listAppPasswords(db, username, { activeOnly: true }),
    ]);
    return mailbox === null ? null : { mailbox, appPasswords };
  };
}

export function isResource(account: Account): boolean {
  return isResourceKind(account.mailbox.kind);
}

/** Why this account may not log in at all (before any password check), or null. */
export function disabledReason(account: Account): string | null {
  const { active, domainActive, domain } = account.mailbox;
  if (active === 2) return 'mailbox is receive-only (active=2)';
  if (active !== 1) return `mailbox is disabled (active=${active})`;
  if (domainActive !== 1) return `domain ${domain} is disabled (active=${domainActive})`;
  return null;
}

// Made once from the config's flag list, not per login (`${flag}_access` allocated a string each time).
const ATTRIBUTE_OF = Object.fromEntries(ACCESS_FLAGS.map((f) => [f, `${f}_access`])) as Readonly<Record<AccessFlag, string>>;

/** The mailbox attributes a login reads: the service flags, and the template hash (Keycloak re-applies templates). */
export const LOGIN_ATTRIBUTES: readonly string[] = [...Object.values(ATTRIBUTE_OF), 'attribute_hash'];

/**
 * mailcow's Dovecot SQL tests `JSON_UNQUOTE(JSON_VALUE(attributes, '$.imap_access')) = '1'`:
 * "1" or 1 allows, anything else (including a missing key) refuses.
 */
export function mailboxAllows(account: Account, flag: AccessFlag): boolean {
  const v = account.mailbox.attributes[ATTRIBUTE_OF[flag]];
  return v === '1' || v === 1;
}

/** App passwords that may be tried for this service, oldest first, at most `max`. */
export function candidateAppPasswords(
  account: Account,
  flag: AccessFlag,
  max: number,
): { candidates: AppPasswordRow[]; skipped: number } {
  const eligible = account.appPasswords.filter((a) => a.active === 1 && a.access[flag] === 1);
  return { candidates: eligible.slice(0, max), skipped: Math.max(0, eligible.length - max) };
}

/** Dovecot service name → access flag, or null for a service outside the mapping. */
export function accessFlagFor(services: Readonly<Record<string, AccessFlag>>, service: string): AccessFlag | null {
  const key = service.toLowerCase();
  return Object.hasOwn(services, key) ? (services[key] ?? null) : null;
}
