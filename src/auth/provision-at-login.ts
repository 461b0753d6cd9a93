/**
 * The steps of login provisioning that do not depend on the IdP, shared by
 * Keycloak (login-provisioning.ts: password and token logins) and LDAP
 * (ldap-source.ts), so every source answers with the same outcomes and reasons:
 * the gate before the IdP is asked, and creating the mailbox of a verified IdP
 * user from the mapped template.
 */
import { getDomain } from '../db/index.js';
import type { Db } from '../db/index.js';
import type { IdpMapping } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import { normalizeAddress, provisionMailbox } from '../provisioning/index.js';
import type { IdpRuntime } from './idp-runtime.js';
import type { IdpSnapshot } from './idp-settings-source.js';
import { chooseTemplate } from './idp-user.js';
import type { UnknownMailboxOutcome } from './types.js';

export const unknownMailbox = (reason: string): UnknownMailboxOutcome => ({ result: 'user_unknown', reason });

/** Aborts between steps: a provisioning that starts after the deadline would answer nobody. */
export function late(signal: AbortSignal): UnknownMailboxOutcome | null {
  return signal.aborted ? { result: 'internal_failure', reason: 'deadline exceeded' } : null;
}

/**
 * Before the IdP is asked: login_provisioning is on, the login is an address, its domain is hosted
 * here and active, and the deadline has not passed — so a spray of made-up addresses costs one
 * indexed query each, not an IdP call. The normalized address, or the outcome to answer.
 */
export async function provisioningGate(
  db: Db,
  s: { loginProvisioning: boolean },
  login: string,
  signal: AbortSignal,
): Promise<{ username: string } | { outcome: UnknownMailboxOutcome }> {
  if (!s.loginProvisioning) return { outcome: unknownMailbox('no such mailbox (login_provisioning is off)') };
  const addr = normalizeAddress(login);
  if ('problem' in addr) return { outcome: unknownMailbox('no such mailbox (the login is not an email address, so it cannot be provisioned)') };
  const domain = await getDomain(db, addr.domain);
  if (domain === null) return { outcome: unknownMailbox(`no such mailbox (domain ${addr.domain} is not hosted here)`) };
  if (domain.active !== 1) return { outcome: unknownMailbox(`no such mailbox (domain ${addr.domain} is inactive, nothing is provisioned into it)`) };
  const stop = late(signal);
  if (stop) return { outcome: stop };
  return { username: addr.username };
}

/** A verified IdP user, as the source read it. */
export interface LoginIdentity {
  username: string;
  name: string;
  /** The template attribute's values (mailcow_template, LDAP attribute_field). */
  templateValues: readonly string[];
  authsource: 'keycloak' | 'ldap';
  /** Refusal texts: `<attribute> [values] is not mapped`, and the one for a user without the attribute. */
  attribute: string;
  noAttribute: string;
  /** Log fields naming the IdP user (its id, its DN). */
  who: Record<string, unknown>;
}

/** Creates the mailbox of a verified IdP user from the mapped template, in one transaction. */
export async function createAtLogin(
  rt: IdpRuntime,
  snap: IdpSnapshot,
  s: { mapping: IdpMapping },
  user: LoginIdentity,
  signal: AbortSignal,
  log: Logger,
): Promise<UnknownMailboxOutcome> {
  const refused = (reason: string): UnknownMailboxOutcome => {
    rt.counters.provisionRefused++;
    log.warn({ mailbox: user.username, ...user.who }, `login provisioning refused: ${reason}`);
    return { result: 'password_mismatch', reason: `not provisioned: ${reason}` };
  };
  const choice = chooseTemplate(user.templateValues, s);
  if (choice === null) {
    const what = user.templateValues.length > 0 ? `${user.attribute} ${JSON.stringify(user.templateValues)} is not mapped` : user.noAttribute;
    return refused(`${what} and no default template is set`);
  }
  const template = snap.templates.get(choice.template);
  if (template === undefined) return refused(`mailbox template ${JSON.stringify(choice.template)} does not exist`);
  const stop = late(signal);
  if (stop) return stop;

  const r = await rt.db.transaction((tx) =>
    provisionMailbox(tx, { username: user.username, name: user.name, template: template.input, passwordHash: '', authsource: user.authsource }, { mode: 'create' }),
  );
  if ('refused' in r) {
    // Another login (or mailauth sync, or the admin) created it meanwhile: decide as for any existing mailbox.
    if (r.refused === 'mailbox_exists') return { result: 'exists' };
    return refused(r.message);
  }
  rt.counters.provisioned++;
  rt.mailboxChanged(user.username);
  log.info(
    { mailbox: r.username, ...user.who, template: r.template, via: choice.via, quotaBytes: r.quotaBytes },
    user.authsource === 'ldap' ? 'mailbox provisioned at first login (ldap)' : 'mailbox provisioned at first login',
  );
  return { result: 'provisioned', username: r.username };
}
