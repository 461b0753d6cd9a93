/**
 * The sync plan: IdP users × mailboxes → steps, each with a reason. Pure (no
 * I/O, no clock): the runner reads a page of users and the matching mailboxes,
 * asks this module what to do, and applies the answer; a dry run prints it.
 *
 * Two planners, because "gone" can only be known after a complete listing:
 * - planSync: one page of users; creates, updates, reactivations and skips.
 * - planDeprovision: one page of `keycloak` mailboxes, after every user page
 *   was read; deactivations of mailboxes whose user is disabled or gone.
 * checkDeprovisionSafety then decides whether the run may apply them.
 */
import { isResourceKind } from '../db/index.js';
import type { SyncMailboxState, SyncedAuthsource } from '../db/index.js';
import { templateFor } from '../idp/index.js';
import type { IdpMapping, TemplateChoice } from '../idp/index.js';
import { normalizeAddress } from '../provisioning/index.js';

/** A Keycloak user as sync sees it (see users.ts for the conversion). */
export interface SyncUser {
  id: string;
  /** As the IdP has it (trimmed); null when the user has none. */
  email: string | null;
  enabled: boolean;
  /** "firstName lastName" as mailcow builds it; '' when the IdP has neither. */
  name: string;
  /** Values of the `mailcow_template` attribute, in the IdP's order. */
  templateValues: readonly string[];
  serviceAccount: boolean;
}

/** The mailbox columns planning needs: what src/db reads for sync. */
export type PlanMailbox = SyncMailboxState;

export interface SyncSettings {
  importUsers: boolean;
  periodicSync: boolean;
  mapping: IdpMapping;
  /** The mailboxes this sync manages (default keycloak); the IdP's template attribute, for messages. */
  authsource?: SyncedAuthsource;
  templateAttribute?: string;
}

export interface PlanOptions {
  deprovision: 'off' | 'deactivate';
  /** Existing mailbox templates: name → attribute hash. */
  templates: ReadonlyMap<string, string>;
  /** Domains of this page's users that exist: name → active. */
  domains: ReadonlyMap<string, boolean>;
  /** Addresses of users in earlier pages of this run (lower-case). */
  seen: { has(address: string): boolean };
}

export type SyncAction = 'create' | 'update' | 'reactivate' | 'deactivate' | 'skip';

export type SkipReason =
  | 'service_account'
  | 'no_email'
  | 'invalid_email'
  | 'duplicate_email'
  | 'other_authsource'
  | 'resource_mailbox'
  | 'user_disabled'
  | 'no_template'
  | 'template_missing'
  | 'domain_missing'
  | 'domain_inactive'
  | 'import_disabled'
  | 'periodic_sync_disabled'
  | 'unchanged'
  /** Set by the runner: the mailbox changed between planning and applying (an admin was faster). */
  | 'changed_meanwhile';

export type StepReason =
  | SkipReason
  | 'new_user'
  | 'template_changed'
  | 'name_changed'
  | 'template_and_name_changed'
  | 'user_enabled_again'
  | 'user_gone';

export interface SyncStep {
  action: SyncAction;
  reason: StepReason;
  /** For people: what and why, naming the user, template or domain. */
  detail: string;
  /** The mailbox address (lower-case), or the IdP user's id when it has no usable email. */
  email: string;
  userId?: string;
  /** create/update: the template to apply and the display name. */
  template?: string;
  name?: string;
  /** deactivate: the active value now; reactivate: the value to restore. */
  active?: number;
}

const isResource = isResourceKind;

/**
 * The template for a user: the first `mailcow_template` value that has a
 * mapping (mailcow's sync accepts any of a multi-valued attribute), else the
 * default template, else none.
 */
export function chooseTemplate(values: readonly string[], settings: { mapping: IdpMapping }): TemplateChoice | null {
  for (const v of values) {
    const choice = templateFor(v, settings);
    if (choice?.via === 'mapping') return choice;
  }
  return templateFor(null, settings);
}

/**
 * The mailbox address of an IdP user as mailcow stores it (lower-case,
 * punycode domain), or why there is none. Service accounts have none.
 */
export function userAddress(user: SyncUser): { address: string; domain: string } | { skip: SkipReason; problem: string } {
  if (user.serviceAccount) return { skip: 'service_account', problem: `IdP user ${user.id} is a client's service account, not a person` };
  if (user.email === null || user.email === '') return { skip: 'no_email', problem: `IdP user ${user.id} has no email address` };
  const addr = normalizeAddress(user.email);
  if ('problem' in addr) return { skip: 'invalid_email', problem: `IdP user ${user.id}: ${addr.problem}` };
  return { address: addr.username, domain: addr.domain };
}

function skip(reason: SkipReason, email: string, detail: string, userId?: string): SyncStep {
  return userId === undefined ? { action: 'skip', reason, email, detail } : { action: 'skip', reason, email, detail, userId };
}

/**
 * Steps for one page of users. At most one step per user, plus a
 * `reactivate` before it when sync itself had deactivated the mailbox and the
 * user is enabled again. Disabled users whose active mailbox deprovisioning
 * would deactivate get no step here: planDeprovision decides them after the
 * listing is complete.
 */
export function planSync(
  users: readonly SyncUser[],
  mailboxesByEmail: ReadonlyMap<string, PlanMailbox>,
  settings: SyncSettings,
  options: PlanOptions,
): SyncStep[] {
  const steps: SyncStep[] = [];
  const pageSeen = new Set<string>();
  const managed = settings.authsource ?? 'keycloak';
  const attr = settings.templateAttribute ?? 'mailcow_template';
  for (const user of users) {
    const id = user.id;
    const addr = userAddress(user);
    if ('skip' in addr) {
      steps.push(skip(addr.skip, user.email || id, addr.problem, id));
      continue;
    }
    const email = addr.address;
    if (options.seen.has(email) || pageSeen.has(email)) {
      steps.push(skip('duplicate_email', email, `IdP user ${id} has the same email as another IdP user; only the first one is synced`, id));
      continue;
    }
    pageSeen.add(email);

    const mailbox = mailboxesByEmail.get(email);
    if (mailbox && mailbox.authsource !== managed) {
      steps.push(skip('other_authsource', email, `mailbox ${email} has authsource ${mailbox.authsource}; sync only manages ${managed} mailboxes`, id));
      continue;
    }
    if (mailbox && isResource(mailbox.kind)) {
      steps.push(skip('resource_mailbox', email, `${email} is a resource (${mailbox.kind}), not a login mailbox`, id));
      continue;
    }
    if (!user.enabled) {
      // An active mailbox of a disabled user is deprovisioning's to decide, after the complete listing.
      if (!(mailbox && mailbox.active !== 0 && options.deprovision === 'deactivate')) {
        steps.push(skip('user_disabled', email, `IdP user ${email} is disabled`, id));
      }
      continue;
    }

    let reactivated = false;
    if (mailbox && mailbox.active === 0 && mailbox.deactivatedBySync) {
      const active = mailbox.activeBefore ?? 1;
      steps.push({ action: 'reactivate', reason: 'user_enabled_again', email, userId: id, active, detail: `IdP user ${email} is back and enabled; undoing sync's deactivation` });
      reactivated = true;
    }
    // After a reactivation the mailbox has its step; a skip of the template part would only add noise.
    const skipUnlessReactivated = (reason: SkipReason, detail: string): void => {
      if (!reactivated) steps.push(skip(reason, email, detail, id));
    };

    if (!mailbox && !settings.importUsers) {
      steps.push(skip('import_disabled', email, `no mailbox ${email}; import_users is off`, id));
      continue;
    }
    if (mailbox && !settings.periodicSync) {
      skipUnlessReactivated('periodic_sync_disabled', `mailbox ${email} exists; periodic_sync is off`);
      continue;
    }
    const domainActive = options.domains.get(addr.domain);
    if (domainActive === undefined) {
      skipUnlessReactivated('domain_missing', `domain ${addr.domain} of ${email} does not exist`);
      continue;
    }
    const choice = chooseTemplate(user.templateValues, settings);
    if (choice === null) {
      const value = user.templateValues.length ? `${attr} ${JSON.stringify(user.templateValues)} has no mapping` : `no ${attr} attribute`;
      skipUnlessReactivated('no_template', `IdP user ${email}: ${value} and no default template is set`);
      continue;
    }
    const templateHash = options.templates.get(choice.template);
    if (templateHash === undefined) {
      skipUnlessReactivated('template_missing', `mailbox template "${choice.template}" for ${email} does not exist`);
      continue;
    }

    if (!mailbox) {
      if (!domainActive) {
        steps.push(skip('domain_inactive', email, `domain ${addr.domain} of ${email} is not active`, id));
        continue;
      }
      steps.push({ action: 'create', reason: 'new_user', email, userId: id, template: choice.template, name: user.name, detail: `new mailbox ${email} from template "${choice.template}"` });
      continue;
    }
    const templateChanged = mailbox.attributeHash !== templateHash;
    // An empty IdP name keeps the mailbox's name (provisioning's rule).
    const nameChanged = user.name !== '' && user.name !== mailbox.name;
    if (!templateChanged && !nameChanged) {
      skipUnlessReactivated('unchanged', `mailbox ${email} is up to date with template "${choice.template}"`);
      continue;
    }
    const reason = templateChanged && nameChanged ? 'template_and_name_changed' : templateChanged ? 'template_changed' : 'name_changed';
    const what = reason === 'name_changed' ? 'display name changed' : reason === 'template_changed' ? `template "${choice.template}" changed or newly mapped` : `template "${choice.template}" and display name changed`;
    steps.push({ action: 'update', reason, email, userId: id, template: choice.template, name: user.name, detail: `mailbox ${email}: ${what}` });
  }
  return steps;
}

/** What the complete listing told us, for deprovisioning: lower-case addresses. */
export interface SeenUsers {
  enabled: ReadonlySet<string>;
  disabled: ReadonlySet<string>;
}

/**
 * Deactivations for one page of `keycloak` mailboxes: every mailbox that is
 * not deactivated yet and whose address belongs to no enabled IdP user.
 * Call it only after every user page was read: before that, "not seen" does
 * not mean "gone".
 */
export function planDeprovision(mailboxes: readonly PlanMailbox[], seen: SeenUsers, authsource: SyncedAuthsource = 'keycloak'): SyncStep[] {
  const steps: SyncStep[] = [];
  for (const m of mailboxes) {
    if (m.authsource !== authsource || isResource(m.kind) || m.active === 0) continue;
    const key = m.username.toLowerCase();
    if (seen.enabled.has(key)) continue;
    const disabled = seen.disabled.has(key);
    steps.push({
      action: 'deactivate',
      reason: disabled ? 'user_disabled' : 'user_gone',
      email: key,
      active: m.active,
      detail: disabled ? `IdP user ${key} is disabled; deactivating mailbox ${m.username}` : `no IdP user has the email ${key}; deactivating mailbox ${m.username}`,
    });
  }
  return steps;
}

export interface SafetyInput {
  /** Deactivations the run would make. */
  deactivations: number;
  /** `keycloak` mailboxes not deactivated when the run started: the base of the ratio. */
  syncedActive: number;
  /** Users the complete listing returned (service accounts excluded). */
  idpUsers: number;
  maxDeactivateRatio: number;
  force: boolean;
  /** For the messages (default keycloak). */
  authsource?: SyncedAuthsource;
}

export type SafetyVerdict =
  | { ok: true; forcedPast?: 'zero_users' | 'ratio' }
  | { ok: false; reason: 'zero_users' | 'ratio'; message: string };

/**
 * The deprovisioning safety threshold: refuse when the IdP listed no users at
 * all while keycloak mailboxes exist (a wrong realm or a broken permission
 * looks exactly like that), or when more than `maxDeactivateRatio` of the
 * keycloak mailboxes that were active when the run started would go (new
 * mailboxes of this run do not count: importing a wrong realm must not dilute
 * the ratio). --force overrides both.
 */
export function checkDeprovisionSafety(s: SafetyInput): SafetyVerdict {
  let verdict: SafetyVerdict = { ok: true };
  if (s.deactivations === 0) return verdict;
  const src = s.authsource ?? 'keycloak';
  const check = src === 'ldap' ? 'the base DN, the filter and the service account with mailauth idp test' : "the realm and the client's view-users role with mailauth idp test";
  if (s.idpUsers === 0 && s.syncedActive > 0) {
    verdict = {
      ok: false,
      reason: 'zero_users',
      message: `the identity provider listed no users, but ${s.syncedActive} ${src} mailbox(es) are active; refusing to deactivate them all (check ${check}; rerun with --force if this is really intended)`,
    };
  } else if (s.deactivations / Math.max(1, s.syncedActive) > s.maxDeactivateRatio) {
    const pct = (n: number): string => `${Math.round(n * 1000) / 10} %`;
    verdict = {
      ok: false,
      reason: 'ratio',
      message: `${s.deactivations} of the ${s.syncedActive} ${src} mailboxes active when the run started (${pct(s.deactivations / Math.max(1, s.syncedActive))}) would be deactivated, more than sync.max_deactivate_ratio (${pct(s.maxDeactivateRatio)}); nothing was deactivated (review with mailauth sync --dry-run, then rerun with --force or raise the ratio)`,
    };
  }
  if (!verdict.ok && s.force) return { ok: true, forcedPast: verdict.reason };
  return verdict;
}
