/**
 * Login provisioning (Keycloak mailpassword flow): a login for a mailbox that
 * does not exist yet, whose IdP user passes the mailpassword check, creates
 * the mailbox from the mapped template through src/provisioning in one
 * transaction; and an existing keycloak mailbox gets its template re-applied
 * when the mapped template or the display name changed — compared in memory
 * first, so an unchanged mailbox costs no database access at all.
 *
 * Results for an unknown mailbox, and why:
 * - not a provisioning case (no Keycloak IdP, mailpassword flow or
 *   login_provisioning off, login not an address, domain not hosted here or
 *   inactive, no acceptable IdP user): user_unknown, as without provisioning.
 *   The domain is checked before the IdP is asked, so a spray of made-up
 *   addresses costs one indexed query each, not an IdP call.
 * - IdP user found but the password is wrong: password_mismatch.
 * - right password but provisioning refused or skipped (no template, template
 *   missing, domain limits, an alias in the way): password_mismatch with the
 *   reason, nothing written. Not user_unknown: the user exists at the IdP, the
 *   admin can fix the cause at once, and Dovecot would cache user_unknown for
 *   auth_cache_negative_ttl (and may try its next passdb).
 * - IdP or database unavailable: internal_failure. A stale IdP answer is good
 *   enough to let a known user in, never to create a mailbox.
 */
import type { KeycloakSettings } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import { verifyKeycloakPassword } from './idp-password.js';
import { provisionLdapMailbox } from './ldap-source.js';
import { applyTemplateDecision } from './template-at-login.js';
import type { LdapRuntime } from './ldap-source.js';
import type { IdpRuntime } from './idp-runtime.js';
import type { IdpSnapshot } from './idp-settings-source.js';
import { templateDecision } from './idp-user.js';
import { createAtLogin, provisioningGate, unknownMailbox } from './provision-at-login.js';
import type { IdpAnswer } from './idp-user.js';
import type { UnknownMailboxContext, UnknownMailboxOutcome } from './types.js';

export async function provisionUnknownMailbox(
  rt: IdpRuntime,
  login: string,
  password: string,
  ctx: UnknownMailboxContext,
  ldap?: LdapRuntime,
): Promise<UnknownMailboxOutcome> {
  const log = ctx.logger;
  const snap = await rt.snapshot();
  // Broken IdP rows: whether this login would be provisioned cannot be known (logged by the settings source).
  if (snap.invalid !== null) return { result: 'internal_failure', reason: 'no such mailbox, and the identity provider settings are invalid (see mailauth idp show)' };
  const s = snap.settings;
  if (s !== null && s.source === 'ldap' && ldap) return provisionLdapMailbox(rt, ldap, snap, s, login, password, ctx);
  if (s === null || s.source !== 'keycloak') return unknownMailbox('no such mailbox');
  if (!s.mailpasswordFlow) return unknownMailbox('no such mailbox (login provisioning needs the keycloak mailpassword flow)');
  const addr = await provisioningGate(rt.db, s, login, ctx.signal);
  if ('outcome' in addr) return addr.outcome;

  const v = await verifyKeycloakPassword(rt, s, addr.username, password, ctx);
  if (v.result === 'internal_failure') return v;
  if (v.result === 'password_mismatch') return v.noUser ? unknownMailbox(`no such mailbox (${v.reason})`) : v;
  if (v.source === 'stale') {
    return { result: 'internal_failure', reason: 'identity provider unavailable; a stale answer does not create mailboxes' };
  }

  return createFromIdpUser(rt, snap, s, addr.username, v.answer, ctx);
}

/**
 * A token login (issue 20) for a mailbox that does not exist yet: the token already proved who the
 * user is, so the Keycloak user is looked up by the address (admin API, for the template attribute)
 * instead of checking a password; the rest is the same provisioning as a password login's.
 */
export async function provisionForToken(rt: IdpRuntime, login: string, ctx: UnknownMailboxContext): Promise<UnknownMailboxOutcome> {
  const snap = await rt.snapshot();
  if (snap.invalid !== null) return { result: 'internal_failure', reason: 'no such mailbox, and the identity provider settings are invalid (see mailauth idp show)' };
  const s = snap.settings;
  if (s === null || s.source !== 'keycloak') return unknownMailbox('no such mailbox (login provisioning needs a keycloak identity provider)');
  const addr = await provisioningGate(rt.db, s, login, ctx.signal);
  if ('outcome' in addr) return addr.outcome;
  let r;
  try {
    r = await rt.keycloakUser(s, addr.username, ctx.signal, { fresh: true });
  } catch (err) {
    ctx.logger.warn({ err, mailbox: addr.username }, 'identity provider unavailable for login provisioning');
    return { result: 'internal_failure', reason: 'identity provider unavailable' };
  }
  if (r.value === null) return unknownMailbox(`no such mailbox (${r.reason ?? 'no acceptable IdP user'})`);
  if (r.source === 'stale') return { result: 'internal_failure', reason: 'identity provider unavailable; a stale answer does not create mailboxes' };
  return createFromIdpUser(rt, snap, s, addr.username, r.value, ctx);
}

/** Creates the mailbox of a verified Keycloak user (provision-at-login.ts). */
function createFromIdpUser(rt: IdpRuntime, snap: IdpSnapshot, s: KeycloakSettings, username: string, answer: IdpAnswer, ctx: UnknownMailboxContext): Promise<UnknownMailboxOutcome> {
  return createAtLogin(
    rt,
    snap,
    s,
    {
      username,
      name: answer.name,
      templateValues: answer.templateValues,
      authsource: 'keycloak',
      attribute: 'mailcow_template',
      noAttribute: 'the IdP user has no mailcow_template',
      who: { idpUser: answer.id },
    },
    ctx.signal,
    ctx.logger,
  );
}

/**
 * After a successful mailpassword login: re-apply the mapped template when
 * the attribute hash or the display name changed. Never fails the login: a
 * refusal or a database error is logged and the next login tries again.
 */
export async function reapplyTemplate(
  rt: IdpRuntime,
  snap: IdpSnapshot,
  settings: KeycloakSettings,
  mailbox: { username: string; name: string; attributes: Record<string, unknown> },
  answer: IdpAnswer,
  log: Logger,
): Promise<void> {
  await applyTemplateDecision(rt, snap, mailbox, templateDecision(mailbox, answer, settings, snap.templateHashes), 'keycloak', log);
}
