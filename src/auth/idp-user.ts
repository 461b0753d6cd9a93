/**
 * The pure rules of an IdP login (no I/O): which Keycloak user a login names,
 * whether the hash it holds may be trusted, which template it maps to, and
 * whether an existing mailbox needs its template re-applied. Unit-tested on
 * their own; keycloak-source.ts and login-provisioning.ts do the I/O around them.
 */
import type { IdpMapping, KeycloakUser } from '../idp/index.js';
import { templateFor } from '../idp/index.js';
import type { TemplateChoice } from '../idp/index.js';
import { IDP_WORK_CAPS, isSchemeAllowed, schemeOf, workOverCaps } from '../passwords/index.js';

export const PASSWORD_ATTRIBUTE = 'mailcow_password';
export const TEMPLATE_ATTRIBUTE = 'mailcow_template';

/**
 * What the login path keeps of a Keycloak user (and what the idp cache holds):
 * no token, no plaintext; the password hash is as sensitive as the one in a
 * mailbox row and is treated the same way (never logged).
 */
export interface IdpAnswer {
  id: string;
  /** Lower-case, as it matched the login. */
  email: string;
  /** "firstName lastName" as mailcow builds it; '' when the IdP has neither. */
  name: string;
  /** mailcow_password[0]; null when the attribute is absent or has no values. */
  password: string | null;
  /** How many values mailcow_password has (more than one is logged). */
  passwordValues: number;
  /** False when the user had no attributes at all: a hint at the user-profile policy. */
  attributesVisible: boolean;
  /** mailcow_template values in the IdP's order. */
  templateValues: readonly string[];
}

export type SelectProblem = 'no_user' | 'disabled' | 'ambiguous';

export type Selection = { ok: true; user: KeycloakUser } | { ok: false; problem: SelectProblem; reason: string };

/**
 * Exactly one enabled user whose email equals the login, case-insensitively.
 * The admin API is asked with exact=true, but this does not trust it: a
 * proxy, an old Keycloak or a custom user storage may answer by substring.
 * Disabled users are ignored, so a disabled duplicate does not block the
 * enabled one; two enabled users with one email are ambiguous and refused.
 */
export function selectIdpUser(users: readonly KeycloakUser[], login: string): Selection {
  const want = login.trim().toLowerCase();
  const matching = users.filter((u) => u.email !== null && u.email.trim().toLowerCase() === want && u.serviceAccountClientId === null);
  if (matching.length === 0) {
    const extra = users.length > 0 ? ` (the IdP answered ${users.length} user(s) whose email differs)` : '';
    return { ok: false, problem: 'no_user', reason: `no IdP user has this email${extra}` };
  }
  const enabled = matching.filter((u) => u.enabled);
  if (enabled.length === 0) {
    return { ok: false, problem: 'disabled', reason: matching.length === 1 ? 'the IdP user is disabled' : `all ${matching.length} IdP users with this email are disabled` };
  }
  if (enabled.length > 1) {
    return { ok: false, problem: 'ambiguous', reason: `${enabled.length} enabled IdP users share this email; refusing an ambiguous login` };
  }
  return { ok: true, user: enabled[0] as KeycloakUser };
}

/** mailcow names an IdP mailbox "firstName lastName" (same rule as sync). */
export function displayName(first: string | null, last: string | null): string {
  return `${first ?? ''} ${last ?? ''}`.trim().replace(/\s+/g, ' ');
}

export function toIdpAnswer(u: KeycloakUser): IdpAnswer {
  const pw = u.attributes[PASSWORD_ATTRIBUTE] ?? [];
  const first = pw[0];
  return {
    id: u.id,
    email: (u.email ?? '').trim().toLowerCase(),
    name: displayName(u.firstName, u.lastName),
    password: first === undefined ? null : first,
    passwordValues: pw.length,
    attributesVisible: Object.keys(u.attributes).length > 0,
    templateValues: (u.attributes[TEMPLATE_ATTRIBUTE] ?? []).filter((v) => v !== ''),
  };
}

export type HashCheck =
  | { ok: true; scheme: string }
  | { ok: false; kind: 'missing' | 'refused'; reason: string; scheme?: string }
  | { ok: false; kind: 'unparseable'; reason: string };

/**
 * Whether the IdP-held hash may be verified at all. IdP attributes can be set
 * by people other than the mail admin, so only the schemes in
 * auth.idp_hash_schemes count; plaintext and unsalted ones are refused (a
 * wrong password, with a reason). The check uses the format actually found
 * (`{CRYPT}` holding a DES hash is DES-CRYPT). For the same reason a hash
 * asking for more work than IDP_WORK_CAPS (bcrypt cost, argon2 memory…) is
 * refused here, before anything is hashed: otherwise whoever may edit the
 * attribute chooses what each login attempt costs us. A value that cannot be
 * parsed is corrupt data, not a wrong password: the caller answers
 * internal_failure.
 */
export function checkIdpHash(a: Pick<IdpAnswer, 'password' | 'attributesVisible'>, allowed: readonly string[]): HashCheck {
  if (a.password === null) {
    return {
      ok: false,
      kind: 'missing',
      reason: a.attributesVisible
        ? `the IdP user has no ${PASSWORD_ATTRIBUTE} attribute`
        : `the IdP user shows no attributes at all: ${PASSWORD_ATTRIBUTE} is missing or hidden by the realm's user-profile policy (run mailauth idp test)`,
    };
  }
  if (a.password.trim() === '') return { ok: false, kind: 'missing', reason: `the IdP user's ${PASSWORD_ATTRIBUTE} is empty` };
  const scheme = schemeOf(a.password);
  if (scheme === null) return { ok: false, kind: 'unparseable', reason: `the IdP user's ${PASSWORD_ATTRIBUTE} is not a hash mailauth can read (unknown scheme or malformed)` };
  if (!isSchemeAllowed(scheme, allowed)) {
    return { ok: false, kind: 'refused', scheme, reason: `the IdP user's ${PASSWORD_ATTRIBUTE} uses scheme ${scheme}, which auth.idp_hash_schemes does not accept` };
  }
  const over = workOverCaps(a.password, IDP_WORK_CAPS);
  if (over !== null) {
    // The caller's log line adds how to rehash; the reason names numbers only, never the hash.
    const reason = `the IdP user's ${PASSWORD_ATTRIBUTE} asks for ${over.label} ${over.value}${over.unit}, more than mailauth accepts from an identity provider (${over.cap}${over.unit})`;
    return { ok: false, kind: 'refused', scheme, reason };
  }
  return { ok: true, scheme };
}

/**
 * The template for an IdP user: the first `mailcow_template` value that is
 * mapped, else the default template, else null (skipped). The same rule as
 * sync's chooseTemplate, so a login and a sync run never disagree about a
 * mailbox's template and rewrite it back and forth.
 */
export function chooseTemplate(values: readonly string[], settings: { mapping: IdpMapping }): TemplateChoice | null {
  for (const v of values) {
    const choice = templateFor(v, settings);
    if (choice?.via === 'mapping') return choice;
  }
  return templateFor(null, settings);
}

/** What an existing keycloak mailbox needs after a successful login. */
export type TemplateDecision =
  | { apply: false; reason: string }
  | { apply: true; template: string; name: string; why: string };

/**
 * Compare first, write only on change: the mailbox's attribute_hash against
 * the mapped template's hash, and its name against the IdP's display name
 * (an IdP without a name keeps the mailbox's). Templates that do not exist
 * are skipped, not created.
 */
export function templateDecision(
  mailbox: { attributes: Record<string, unknown>; name: string },
  answer: Pick<IdpAnswer, 'templateValues' | 'name'>,
  settings: { mapping: IdpMapping },
  templateHashes: ReadonlyMap<string, string>,
): TemplateDecision {
  const choice = chooseTemplate(answer.templateValues, settings);
  if (choice === null) {
    const what = answer.templateValues.length > 0 ? `${TEMPLATE_ATTRIBUTE} ${JSON.stringify(answer.templateValues)} is not mapped` : `no ${TEMPLATE_ATTRIBUTE}`;
    return { apply: false, reason: `${what} and no default template is set` };
  }
  const hash = templateHashes.get(choice.template);
  if (hash === undefined) return { apply: false, reason: `mailbox template ${JSON.stringify(choice.template)} does not exist` };
  const changed: string[] = [];
  if (mailbox.attributes.attribute_hash !== hash) changed.push(`template ${choice.template} (${choice.via})`);
  const name = comparableName(answer.name);
  if (name !== '' && name !== mailbox.name) changed.push('display name');
  if (changed.length === 0) return { apply: false, reason: 'unchanged' };
  return { apply: true, template: choice.template, name, why: `${changed.join(' and ')} changed` };
}

/** The name as provisioning stores it (mailcow strips '<' and '>' at the ends), so an odd name is not "changed" on every login. */
function comparableName(name: string): string {
  return name.trim().replace(/^<+/, '').replace(/>+$/, '').trim();
}
