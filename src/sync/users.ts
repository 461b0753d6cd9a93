/**
 * Keycloak users → the users sync plans with, and the listing as an async
 * generator of pages whose return value says whether the listing can be
 * trusted for deprovisioning.
 */
import { addressOf, disabledReason, displayNameOf, templateValuesOf, userAttributes } from '../idp/index.js';
import type { KeycloakClient, KeycloakUser, LdapDirectory, LdapEntry, LdapSettings } from '../idp/index.js';
import type { SyncUser } from './plan.js';

/** The attribute mailcow maps to a mailbox template. */
export const TEMPLATE_ATTRIBUTE = 'mailcow_template';

/** mailcow names an imported mailbox "firstName lastName". */
export function displayName(first: string | null, last: string | null): string {
  return `${first ?? ''} ${last ?? ''}`.trim().replace(/\s+/g, ' ');
}

export function toSyncUser(u: KeycloakUser): SyncUser {
  const email = u.email?.trim() ?? '';
  return {
    id: u.id,
    email: email === '' ? null : email,
    enabled: u.enabled,
    name: displayName(u.firstName, u.lastName),
    templateValues: (u.attributes[TEMPLATE_ATTRIBUTE] ?? []).filter((v) => v !== ''),
    // Hidden from unfiltered listings, but a proxy or an old version may show them.
    serviceAccount: u.serviceAccountClientId !== null || u.username.startsWith('service-account-'),
  };
}

/** What the listing says about itself once it is complete. */
export interface ListingResult {
  /**
   * False when the realm changed while it was read or the listing and the
   * user count disagree; then nobody can be called "gone" this run.
   */
  consistent: boolean;
  detail: string;
}

export type UserPages = AsyncGenerator<readonly SyncUser[], ListingResult, undefined>;

/** The realm's users through the client's paging helper (de-duplicated by id, cross-checked with /users/count). */
export async function* keycloakUserPages(client: Pick<KeycloakClient, 'listUsers'>, pageSize: number, signal?: AbortSignal): UserPages {
  const it = client.listUsers({ pageSize, brief: false, ...(signal ? { signal } : {}) });
  for (;;) {
    const r = await it.next();
    if (r.done) {
      const s = r.value;
      const detail = s.consistent
        ? `${s.users} users in ${s.pages} pages, matching /users/count`
        : `listed ${s.users} distinct users in ${s.pages} pages (${s.duplicates} duplicates dropped); /users/count said ${s.countBefore} before and ${s.countAfter} after`;
      return { consistent: s.consistent, detail };
    }
    yield r.value.map(toSyncUser);
  }
}

/**
 * An LDAP directory entry → the user sync plans with: the DN is the id, the
 * address is the username field's (or mail's) first address, disabled means
 * disabledReason (an administrative lock or AD's ACCOUNTDISABLE; a lockout
 * after failed binds is temporary and does not deactivate a mailbox), and
 * the service account itself is never a person.
 */
export function ldapSyncUser(e: LdapEntry, s: LdapSettings): SyncUser {
  return {
    id: e.dn,
    email: addressOf(e, s),
    enabled: disabledReason(e) === null,
    name: displayNameOf(e),
    templateValues: templateValuesOf(e, s),
    serviceAccount: e.dn.toLowerCase().replace(/\s*,\s*/g, ',') === s.binddn.toLowerCase().replace(/\s*,\s*/g, ','),
  };
}

/**
 * The directory's users under the base DN matching the filter, through
 * simple paged results (RFC 2696) on a connection of its own. A listing that
 * fails midway throws, so the run never believes an incomplete listing.
 */
export async function* ldapUserPages(dir: Pick<LdapDirectory, 'pages'>, s: LdapSettings, pageSize: number, signal?: AbortSignal): UserPages {
  let users = 0;
  let pages = 0;
  const it = dir.pages(s.basedn, s.filter ?? '(objectClass=*)', { pageSize, attributes: userAttributes(s), ...(signal ? { signal } : {}) });
  for await (const page of it) {
    pages++;
    users += page.length;
    yield page.map((e) => ldapSyncUser(e, s));
  }
  return { consistent: true, detail: `${users} directory entries in ${pages} pages (simple paged results)` };
}
