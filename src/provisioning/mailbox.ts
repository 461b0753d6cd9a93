/**
 * Mailbox from template: the rows mailcow writes when it creates a mailbox
 * (mailbox with its attributes JSON, quota2, quota2replica, self-alias,
 * user_acl), the domain's limits enforced under a lock on the domain row, all in
 * the caller's transaction. Used by the CLI, login provisioning and sync.
 */
import { MailauthError } from '../errors.js';
import {
  AUTH_SOURCES,
  isResourceKind,
  domainUsage,
  findAlias,
  getDomainForUpdate,
  getMailboxForUpdate,
  getTemplate,
  insertMailbox,
  insertSelfAlias,
  resetQuotaRows,
  setSelfAliasActive,
  stampPasswordUpdate,
  updateMailbox,
  upsertUserAcl,
  userAclColumns,
} from '../db/index.js';
import type { AuthSource, DomainRow, MailboxPatch, MailboxRow, Queryable } from '../db/index.js';
import { normalizeAddress } from './address.js';
import { templateAttributeHash } from './attribute-hash.js';
import { MIB, mib, refuse } from './refusal.js';
import type { Refusal } from './refusal.js';
import { TEMPLATE_ACL_KEYS, TEMPLATE_FLAG_KEYS, flagString, validateTemplateAttributes } from './template-attributes.js';

export type ProvisionRefusalReason =
  | 'invalid_address'
  | 'invalid_name'
  | 'invalid_quota'
  | 'password_required'
  | 'domain_missing'
  | 'domain_inactive'
  | 'mailbox_exists'
  | 'mailbox_missing'
  | 'not_a_mailbox'
  | 'alias_exists'
  | 'template_missing'
  | 'template_invalid'
  | 'quota_exceeds_max'
  | 'domain_quota_exceeded'
  | 'mailbox_count_exceeded';

export type ProvisionRefusal = Refusal<ProvisionRefusalReason>;

/** A template as provisioning needs it: a row from `getTemplate`, or the same shape cached by a caller. */
export interface TemplateInput {
  name: string;
  attributes: Record<string, unknown>;
  /** The stored column text; the attribute hash is computed over it when present. */
  attributesText?: string | undefined;
}

export interface ProvisionInput {
  username: string;
  /** Display name; '' means the local part on create and "keep" on update. */
  name: string;
  /** Looked up in `templates` (type mailbox) when `template` is not given. */
  templateName?: string;
  template?: TemplateInput;
  /** `{SCHEME}hash` for authsource mailcow; '' for IdP mailboxes. Ignored on update. */
  passwordHash: string;
  /** Used on create; an update never changes a mailbox's authsource. */
  authsource: AuthSource;
  /** Overrides the template's quota (0 = unlimited, as in mailcow). */
  quotaBytes?: number;
  /** Overrides the template's `active` on create. */
  active?: 0 | 1 | 2;
}

export interface ProvisionOptions {
  mode: 'create' | 'update' | 'upsert';
  /** Update even when the attribute hash and name are unchanged. */
  force?: boolean;
  /** Reuse facts between provisionings in the same transaction (bulk callers such as sync). */
  session?: ProvisionSession;
}

type DomainUsage = Awaited<ReturnType<typeof domainUsage>>;

/**
 * Facts several provisionings in ONE transaction may share. A domain's usage
 * is read (with a locking read) the first time the transaction provisions in
 * that domain and then kept up to date by the provisionings themselves: the
 * domain row lock taken before each one is held until commit, so no other
 * mailauth writer changes that domain in between. Without it every create
 * would re-count the whole domain — O(n) per mailbox, O(n²) per import.
 * Never reuse a session across transactions.
 */
export interface ProvisionSession {
  usage: Map<string, DomainUsage>;
  aclColumns?: Set<string>;
}

export function provisionSession(): ProvisionSession {
  return { usage: new Map() };
}

export interface Provisioned {
  action: 'created' | 'updated' | 'unchanged';
  username: string;
  domain: string;
  name: string;
  template: string;
  attributeHash: string;
  quotaBytes: number;
  active: number;
  authsource: string;
}

export type ProvisionResult = Provisioned | ProvisionRefusal;

/** mailcow's MAILBOX_DEFAULT_ATTRIBUTES: what a template that lacks a key gets. */
const MAILBOX_DEFAULTS: Readonly<Record<string, unknown>> = {
  force_pw_update: '0',
  force_tfa: '0',
  tls_enforce_in: '0',
  tls_enforce_out: '0',
  sogo_access: '1',
  imap_access: '1',
  pop3_access: '1',
  smtp_access: '1',
  sieve_access: '1',
  eas_access: '1',
  dav_access: '1',
  quarantine_notification: 'hourly',
  quarantine_category: 'reject',
  active: 1,
  quota: 0,
};

const MAILBOX_FORMAT = 'maildir:';

/**
 * The mailbox-level attributes a template sets, in mailcow's key order. IdP
 * mailboxes never get force_pw_update (the password is not mailcow's), and
 * generic-oidc ones never force_tfa, as mailcow does.
 */
function templateMailboxAttributes(t: Record<string, unknown>, authsource: string, attributeHash: string): Record<string, unknown> {
  const v = (k: string): unknown => (Object.hasOwn(t, k) ? t[k] : MAILBOX_DEFAULTS[k]);
  const out: Record<string, unknown> = {};
  for (const k of TEMPLATE_FLAG_KEYS) out[k] = flagString(v(k));
  if (authsource !== 'mailcow') out.force_pw_update = '0';
  if (authsource === 'generic-oidc') out.force_tfa = '0';
  out.quarantine_notification = String(v('quarantine_notification'));
  out.quarantine_category = String(v('quarantine_category'));
  out.attribute_hash = attributeHash;
  return out;
}

/** A new mailbox's attributes JSON, key for key what mailcow writes. */
function newMailboxAttributes(t: Record<string, unknown>, authsource: string, attributeHash: string): Record<string, unknown> {
  const m = templateMailboxAttributes(t, authsource, attributeHash);
  return {
    force_pw_update: m.force_pw_update,
    force_tfa: m.force_tfa,
    tls_enforce_in: m.tls_enforce_in,
    tls_enforce_out: m.tls_enforce_out,
    sogo_access: m.sogo_access,
    imap_access: m.imap_access,
    pop3_access: m.pop3_access,
    smtp_access: m.smtp_access,
    sieve_access: m.sieve_access,
    eas_access: m.eas_access,
    dav_access: m.dav_access,
    relayhost: '0',
    // Replaced by the database's NOW() right after the insert, as mailcow does.
    passwd_update: Math.floor(Date.now() / 1000),
    mailbox_format: MAILBOX_FORMAT,
    quarantine_notification: m.quarantine_notification,
    quarantine_category: m.quarantine_category,
    attribute_hash: m.attribute_hash,
  };
}

/** user_acl flags from the template's acl_* keys: present and truthy → 1, else 0 (mailcow's rule). */
async function aclFlags(tx: Queryable, t: Record<string, unknown>, session?: ProvisionSession): Promise<Record<string, 0 | 1>> {
  const columns = session?.aclColumns ?? new Set(await userAclColumns(tx));
  if (session) session.aclColumns = columns;
  const flags: Record<string, 0 | 1> = {};
  for (const key of TEMPLATE_ACL_KEYS) {
    const col = key.slice('acl_'.length);
    if (columns.has(col)) flags[col] = flagString(t[key]) === '1' ? 1 : 0;
  }
  return flags;
}

/** mailcow strips '<' and '>' from the ends of display names. */
function cleanName(name: string): string | null {
  const cleaned = name.trim().replace(/^<+/, '').replace(/>+$/, '').trim();
  if (cleaned.length > 255 || /[\u0000-\u001f\u007f]/.test(cleaned)) return null;
  return cleaned;
}

/** Template quota 0 means the domain's default quota; quotas are whole MiB as mailcow stores them. */
export function effectiveQuota(templateAttributes: Record<string, unknown>, domain: DomainRow, override?: number): number {
  if (override !== undefined) return override;
  const raw = templateAttributes.quota;
  const bytes = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : 0;
  const whole = Math.floor(bytes / MIB) * MIB;
  return whole > 0 ? whole : domain.defquota * MIB;
}

function activeOf(v: unknown): number {
  const n = Number(v);
  return n === 0 || n === 1 || n === 2 ? n : 1;
}

async function resolveTemplate(tx: Queryable, input: ProvisionInput): Promise<TemplateInput | ProvisionRefusal> {
  if (input.template) return input.template;
  if (input.templateName === undefined) throw new MailauthError('ERR_INVALID_INPUT', 'provisionMailbox needs templateName or template');
  const row = await getTemplate(tx, input.templateName, 'mailbox');
  if (!row) return refuse('template_missing', `mailbox template "${input.templateName}" does not exist (see mailauth template list)`, { template: input.templateName });
  return row;
}

/** Per-mailbox and domain-total quota checks; `others` is the domain's usage without this mailbox. */
function checkQuota(
  domain: DomainRow,
  quotaBytes: number,
  others: { quotaBytes: number },
  username: string,
): ProvisionRefusal | null {
  // 0 is "unlimited" in mailcow and passes its checks there too.
  if (quotaBytes === 0) return null;
  if (quotaBytes > domain.maxquota * MIB) {
    return refuse('quota_exceeds_max', `quota ${mib(quotaBytes)} for ${username} exceeds the maximum per mailbox of domain ${domain.domain} (${domain.maxquota} MiB)`, {
      quotaBytes,
      maxquotaMiB: domain.maxquota,
    });
  }
  if (others.quotaBytes + quotaBytes > domain.quota * MIB) {
    const left = Math.max(0, domain.quota * MIB - others.quotaBytes);
    return refuse(
      'domain_quota_exceeded',
      `quota ${mib(quotaBytes)} for ${username} exceeds what is left of domain ${domain.domain}'s total quota (${mib(left)} of ${domain.quota} MiB left)`,
      { quotaBytes, leftBytes: left, domainQuotaMiB: domain.quota },
    );
  }
  return null;
}

/**
 * Create or update a mailbox from a template inside the caller's transaction.
 * A refusal has written nothing. Update re-applies the template only when its
 * attribute hash or the display name changed; it never changes the password,
 * authsource or active state (those belong to `passwd`, `set-authsource`,
 * `edit --active` and sync's deactivation).
 */
export async function provisionMailbox(tx: Queryable, input: ProvisionInput, opts: ProvisionOptions): Promise<ProvisionResult> {
  if (!(AUTH_SOURCES as readonly string[]).includes(input.authsource)) {
    throw new MailauthError('ERR_INVALID_INPUT', `unknown authsource "${String(input.authsource)}" (expected ${AUTH_SOURCES.join(', ')})`);
  }
  const addr = normalizeAddress(input.username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  const name = cleanName(input.name);
  if (name === null) return refuse('invalid_name', `the display name for ${addr.username} is longer than 255 characters or contains control characters`);
  if (input.quotaBytes !== undefined && !(Number.isSafeInteger(input.quotaBytes) && input.quotaBytes >= 0 && input.quotaBytes % MIB === 0)) {
    return refuse('invalid_quota', `quota must be a whole number of MiB, got ${String(input.quotaBytes)} bytes`);
  }
  const template = await resolveTemplate(tx, input);
  if ('refused' in template) return template;
  const problems = validateTemplateAttributes(template.attributes, { allowUnknown: true });
  if (problems.length > 0) {
    return refuse('template_invalid', `mailbox template "${template.name}" is invalid: ${problems.join('; ')}`, { template: template.name, problems });
  }
  const attributeHash = templateAttributeHash(template);

  // The domain row lock serialises every provisioning in this domain, so the limits below hold under concurrency.
  const domain = await getDomainForUpdate(tx, addr.domain);
  if (!domain) return refuse('domain_missing', `domain ${addr.domain} does not exist (add it with mailauth domain add ${addr.domain})`, { domain: addr.domain });
  const existing = await getMailboxForUpdate(tx, addr.username);

  if (existing) {
    if (opts.mode === 'create') return refuse('mailbox_exists', `mailbox ${addr.username} already exists`, { username: addr.username });
    if (isResourceKind(existing.kind)) {
      return refuse('not_a_mailbox', `${addr.username} is a resource (${existing.kind}), not a login mailbox`, { username: addr.username });
    }
    return updateFromTemplate(tx, { existing, domain, template, attributeHash, name, quotaBytes: input.quotaBytes, force: opts.force === true, session: opts.session });
  }
  if (opts.mode === 'update') return refuse('mailbox_missing', `mailbox ${addr.username} does not exist`, { username: addr.username });

  if (domain.active !== 1) {
    return refuse('domain_inactive', `domain ${domain.domain} is not active; activate it with mailauth domain edit ${domain.domain} --active 1`, { domain: domain.domain });
  }
  if (input.authsource === 'mailcow' && input.passwordHash === '') {
    return refuse('password_required', `mailbox ${addr.username} has authsource mailcow and needs a password`);
  }
  if (input.authsource !== 'mailcow' && input.passwordHash !== '') {
    throw new MailauthError('ERR_INVALID_INPUT', `a password hash is only stored for authsource mailcow, not ${input.authsource}`);
  }
  if (input.passwordHash !== '' && !/^\{[A-Za-z0-9.-]+\}./.test(input.passwordHash)) {
    throw new MailauthError('ERR_INVALID_INPUT', 'the password hash must be a {SCHEME}hash string');
  }
  const alias = await findAlias(tx, addr.username);
  if (alias) return refuse('alias_exists', `${addr.username} is already an alias (to ${alias.goto}); remove the alias first`, { username: addr.username });

  const quotaBytes = effectiveQuota(template.attributes, domain, input.quotaBytes);
  const usage = opts.session?.usage.get(domain.domain) ?? (await domainUsage(tx, domain.domain, { lock: true }));
  opts.session?.usage.set(domain.domain, usage);
  if (usage.mailboxes >= domain.mailboxes) {
    return refuse('mailbox_count_exceeded', `domain ${domain.domain} already has ${usage.mailboxes} of at most ${domain.mailboxes} mailboxes`, {
      mailboxes: usage.mailboxes,
      max: domain.mailboxes,
    });
  }
  const quotaProblem = checkQuota(domain, quotaBytes, usage, addr.username);
  if (quotaProblem) return quotaProblem;

  const active = input.active ?? activeOf(Object.hasOwn(template.attributes, 'active') ? template.attributes.active : MAILBOX_DEFAULTS.active);
  await insertMailbox(tx, {
    username: addr.username,
    password: input.passwordHash,
    name: name === '' ? addr.localPart : name,
    quota: quotaBytes,
    localPart: addr.localPart,
    domain: domain.domain,
    attributes: newMailboxAttributes(template.attributes, input.authsource, attributeHash),
    authsource: input.authsource,
    active,
  });
  await stampPasswordUpdate(tx, addr.username);
  await resetQuotaRows(tx, addr.username);
  await insertSelfAlias(tx, addr.username, domain.domain, active);
  await upsertUserAcl(tx, addr.username, await aclFlags(tx, template.attributes, opts.session));
  usage.mailboxes += 1;
  usage.quotaBytes += quotaBytes;
  usage.maxQuotaBytes = Math.max(usage.maxQuotaBytes, quotaBytes);
  return {
    action: 'created',
    username: addr.username,
    domain: domain.domain,
    name: name === '' ? addr.localPart : name,
    template: template.name,
    attributeHash,
    quotaBytes,
    active,
    authsource: input.authsource,
  };
}

async function updateFromTemplate(
  tx: Queryable,
  a: {
    existing: MailboxRow;
    domain: DomainRow;
    template: TemplateInput;
    attributeHash: string;
    name: string;
    quotaBytes: number | undefined;
    force: boolean;
    session: ProvisionSession | undefined;
  },
): Promise<ProvisionResult> {
  const { existing, domain, template, attributeHash } = a;
  const name = a.name === '' ? existing.name : a.name;
  const base: Provisioned = {
    action: 'unchanged',
    username: existing.username,
    domain: existing.domain,
    name,
    template: template.name,
    attributeHash,
    quotaBytes: existing.quota,
    active: existing.active,
    authsource: existing.authsource,
  };
  const quotaUnchanged = a.quotaBytes === undefined || a.quotaBytes === existing.quota;
  if (!a.force && existing.attributes.attribute_hash === attributeHash && existing.name === name && quotaUnchanged) return base;

  const quotaBytes = effectiveQuota(template.attributes, domain, a.quotaBytes);
  // Only a larger quota can break a limit; shrinking is always allowed, even in an over-full domain.
  if (quotaBytes > existing.quota) {
    const others = await domainUsage(tx, domain.domain, { lock: true, excludeUsername: existing.username });
    const problem = checkQuota(domain, quotaBytes, others, existing.username);
    if (problem) return problem;
  }
  const attributes = { ...existing.attributes, ...templateMailboxAttributes(template.attributes, existing.authsource, attributeHash) };
  await updateMailbox(tx, existing.username, { name, quota: quotaBytes, attributes });
  await upsertUserAcl(tx, existing.username, await aclFlags(tx, template.attributes, a.session));
  // The largest quota may have shrunk: let the next create in this domain count again.
  if (quotaBytes !== existing.quota) a.session?.usage.delete(domain.domain);
  return { ...base, action: 'updated', quotaBytes };
}

export type MailboxChangeRefusalReason = 'invalid_address' | 'invalid_name' | 'invalid_quota' | 'mailbox_missing' | 'domain_missing' | 'quota_exceeds_max' | 'domain_quota_exceeded';

export interface MailboxChange {
  name?: string;
  quotaBytes?: number;
  active?: 0 | 1 | 2;
}

/**
 * Admin edits of one mailbox (name, quota, active) with the same domain
 * limits as provisioning; `active` is mirrored onto the self-alias as mailcow does.
 */
export async function changeMailbox(
  tx: Queryable,
  username: string,
  change: MailboxChange,
): Promise<{ changed: string[]; mailbox: MailboxRow } | Refusal<MailboxChangeRefusalReason>> {
  const addr = normalizeAddress(username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  if (change.quotaBytes !== undefined && !(Number.isSafeInteger(change.quotaBytes) && change.quotaBytes >= 0 && change.quotaBytes % MIB === 0)) {
    return refuse('invalid_quota', `quota must be a whole number of MiB, got ${String(change.quotaBytes)} bytes`);
  }
  let name: string | undefined;
  if (change.name !== undefined) {
    const cleaned = cleanName(change.name);
    if (cleaned === null || cleaned === '') return refuse('invalid_name', 'the display name must be 1-255 characters without control characters');
    name = cleaned;
  }
  const domain = await getDomainForUpdate(tx, addr.domain);
  const existing = await getMailboxForUpdate(tx, addr.username);
  if (!existing) return refuse('mailbox_missing', `mailbox ${addr.username} does not exist`, { username: addr.username });
  if (!domain) return refuse('domain_missing', `domain ${addr.domain} of mailbox ${addr.username} does not exist`);

  const patch: MailboxPatch = {};
  if (name !== undefined && name !== existing.name) patch.name = name;
  if (change.active !== undefined && change.active !== existing.active) patch.active = change.active;
  if (change.quotaBytes !== undefined && change.quotaBytes !== existing.quota) {
    if (change.quotaBytes > existing.quota) {
      const others = await domainUsage(tx, domain.domain, { lock: true, excludeUsername: existing.username });
      const problem = checkQuota(domain, change.quotaBytes, others, existing.username);
      if (problem) return problem as Refusal<MailboxChangeRefusalReason>;
    }
    patch.quota = change.quotaBytes;
  }
  const changed = Object.keys(patch);
  if (changed.length === 0) return { changed, mailbox: existing };
  await updateMailbox(tx, existing.username, patch);
  if (patch.active !== undefined) await setSelfAliasActive(tx, existing.username, patch.active);
  return { changed, mailbox: { ...existing, ...patch } as MailboxRow };
}
