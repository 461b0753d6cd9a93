/**
 * The pure rules about one directory entry (no I/O): how a login is looked
 * up, which mailbox address an entry has, whether it is disabled or locked,
 * and its change stamp (what the bind cache keys on). Shared by the login
 * source, provisioning, sync and `idp test`, so they never disagree.
 *
 * Disabled and locked, whatever the directory:
 * - OpenLDAP ppolicy: `pwdAccountLockedTime` = 000001010000Z is an
 *   administrative lock ("disabled"), refused without a bind; any other value
 *   is a lockout after failed binds, which the directory may lift by itself
 *   (pwdLockoutDuration), so it is only believed when the bind fails too.
 * - Active Directory: `userAccountControl` bit 0x2 (ACCOUNTDISABLE) is
 *   disabled, refused without a bind; `lockoutTime` > 0 (or the bind's
 *   diagnostic "data 775") is locked; "data 533" is disabled.
 */
import { equalityFilter, firstValue, userFilter } from './ldap.js';
import type { LdapEntry } from './ldap.js';
import type { LdapSettings } from './settings.js';

/** Operational and AD attributes every user read asks for (names as the directory spells them). */
export const STATE_ATTRIBUTES = ['pwdAccountLockedTime', 'userAccountControl', 'lockoutTime', 'modifyTimestamp', 'pwdChangedTime', 'pwdLastSet', 'whenChanged'] as const;

/** The attributes to read for a user: the user name, mail, the name parts, the template attribute and the state. */
export function userAttributes(s: Pick<LdapSettings, 'usernameField' | 'attributeField'>): string[] {
  return [...new Set([s.usernameField, 'mail', 'cn', 'displayName', 'givenName', 'sn', ...(s.attributeField ? [s.attributeField] : []), ...STATE_ATTRIBUTES])];
}

/**
 * The filter that finds the entry of a login: the username field equals it,
 * or — when the username field is not `mail` (sAMAccountName, uid,
 * userPrincipalName) — `mail` equals it, so the mailbox address works as a
 * login name too. Both values are escaped (RFC 4515).
 */
export function loginFilter(s: Pick<LdapSettings, 'usernameField' | 'filter'>, login: string): string {
  const byName = equalityFilter(s.usernameField, login);
  const match = s.usernameField.toLowerCase() === 'mail' ? byName : `(|${byName}${equalityFilter('mail', login)})`;
  return userFilter(s.filter, match);
}

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

/**
 * The mailbox address of an entry (lower-case): the username field's first
 * value when it is an address, else the first `mail` value, else null.
 */
export function addressOf(e: LdapEntry, s: Pick<LdapSettings, 'usernameField'>): string | null {
  for (const attr of [s.usernameField, 'mail']) {
    const v = (e.attrs[attr.toLowerCase()] ?? []).find((x) => EMAIL.test(x.trim()));
    if (v !== undefined) return v.trim().toLowerCase();
  }
  return null;
}

/** Every address an entry answers to (username field and mail values), lower-case. */
export function addressesOf(e: LdapEntry, s: Pick<LdapSettings, 'usernameField'>): string[] {
  const out = new Set<string>();
  for (const attr of [s.usernameField, 'mail']) for (const v of e.attrs[attr.toLowerCase()] ?? []) out.add(v.trim().toLowerCase());
  return [...out];
}

/** "displayName", else "givenName sn", else cn (mailcow's LDAP import uses the cn). */
export function displayNameOf(e: LdapEntry): string {
  const dn = firstValue(e, 'displayName');
  if (dn) return dn.trim();
  const parts = [firstValue(e, 'givenName'), firstValue(e, 'sn')].filter((x): x is string => !!x && x.trim() !== '');
  if (parts.length === 2) return parts.join(' ').trim();
  return (firstValue(e, 'cn') ?? parts.join(' ')).trim();
}

export function templateValuesOf(e: LdapEntry, s: Pick<LdapSettings, 'attributeField'>): string[] {
  if (!s.attributeField) return [];
  return (e.attrs[s.attributeField.toLowerCase()] ?? []).filter((v) => v !== '');
}

/** OpenLDAP ppolicy's value for "locked by an administrator until unlocked". */
export const PERMANENT_LOCK = '000001010000Z';
const UAC_ACCOUNTDISABLE = 0x2;
const UAC_LOCKOUT = 0x10;

/** Disabled before any bind: the entry says so on its own. */
export function disabledReason(e: LdapEntry): string | null {
  if (firstValue(e, 'pwdAccountLockedTime') === PERMANENT_LOCK) return 'the directory entry is disabled (pwdAccountLockedTime 000001010000Z)';
  const uac = Number(firstValue(e, 'userAccountControl') ?? '0');
  if (Number.isInteger(uac) && (uac & UAC_ACCOUNTDISABLE) !== 0) return 'the directory account is disabled (userAccountControl ACCOUNTDISABLE)';
  return null;
}

/** Locked: believed after a refused bind (a lockout may have expired by itself). */
export function lockedReason(e: LdapEntry, bindDiagnostic = ''): string | null {
  if (/data 533\b/.test(bindDiagnostic)) return 'the directory account is disabled (AD data 533)';
  if (/data 775\b/.test(bindDiagnostic)) return 'the directory account is locked out (AD data 775)';
  const t = firstValue(e, 'pwdAccountLockedTime');
  if (t !== null && t !== '') return `the directory account is locked (pwdAccountLockedTime ${t})`;
  const lockout = firstValue(e, 'lockoutTime');
  if (lockout !== null && /^\d+$/.test(lockout) && lockout !== '0') return 'the directory account is locked out (lockoutTime)';
  const uac = Number(firstValue(e, 'userAccountControl') ?? '0');
  if (Number.isInteger(uac) && (uac & UAC_LOCKOUT) !== 0) return 'the directory account is locked out (userAccountControl LOCKOUT)';
  return null;
}

/**
 * What changes when the password changes: ppolicy's pwdChangedTime on
 * OpenLDAP, pwdLastSet on AD; when the entry has neither, modifyTimestamp /
 * whenChanged (coarser: they also move on other edits, including ppolicy's
 * own failure counters, which only costs a cache miss). The bind cache keys
 * its successes on it, so a password changed in the directory misses the
 * cache at the next login. Empty when the directory shows none of them
 * (then only the cache TTL bounds a remembered bind).
 */
export function changeStamp(e: LdapEntry): string {
  const pw = ['pwdChangedTime', 'pwdLastSet'].map((a) => firstValue(e, a) ?? '').join('|');
  if (pw !== '|') return `pw:${pw}`;
  return `mod:${['modifyTimestamp', 'whenChanged'].map((a) => firstValue(e, a) ?? '').join('|')}`;
}
