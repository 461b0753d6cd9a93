import t from 'tap';
import { checkDeprovisionSafety, planDeprovision, planSync, toSyncUser } from '../../src/sync/index.js';
import type { KeycloakUser } from '../../src/idp/index.js';
import type { PlanMailbox, PlanOptions, SafetyInput, SyncSettings, SyncStep, SyncUser } from '../../src/sync/index.js';

const HASH_STAFF = 'a'.repeat(40);
const HASH_DEFAULT = 'b'.repeat(40);

function user(over: Partial<SyncUser> = {}): SyncUser {
  return { id: 'u1', email: 'alice@example.org', enabled: true, name: 'Alice Example', templateValues: ['staff'], serviceAccount: false, ...over };
}

function mailbox(over: Partial<PlanMailbox> = {}): PlanMailbox {
  return {
    username: 'alice@example.org',
    authsource: 'keycloak',
    kind: '',
    active: 1,
    name: 'Alice Example',
    attributeHash: HASH_STAFF,
    deactivatedBySync: false,
    activeBefore: null,
    ...over,
  };
}

function settings(over: Partial<SyncSettings> = {}, defaultTemplate: string | null = 'Default'): SyncSettings {
  return { importUsers: true, periodicSync: true, mapping: { mappers: ['staff', 'student'], templates: ['Staff', 'Student'], defaultTemplate }, ...over };
}

function options(over: Partial<PlanOptions> = {}): PlanOptions {
  return {
    deprovision: 'deactivate',
    templates: new Map([
      ['Staff', HASH_STAFF],
      ['Default', HASH_DEFAULT],
    ]),
    domains: new Map([
      ['example.org', true],
      ['inactive.org', false],
    ]),
    seen: new Set<string>(),
    ...over,
  };
}

/** The parts of a step a rule decides. */
function brief(s: SyncStep): Record<string, unknown> {
  const out: Record<string, unknown> = { action: s.action, reason: s.reason, email: s.email };
  if (s.template !== undefined) out.template = s.template;
  if (s.active !== undefined) out.active = s.active;
  return out;
}

interface Case {
  name: string;
  users: SyncUser[];
  mailboxes?: PlanMailbox[];
  settings?: SyncSettings;
  options?: Partial<PlanOptions>;
  want: Record<string, unknown>[];
}

const cases: Case[] = [
  // import
  { name: 'new user, mapped template → create', users: [user()], want: [{ action: 'create', reason: 'new_user', email: 'alice@example.org', template: 'Staff' }] },
  {
    name: 'multi-valued attribute: the first value that has a mapping wins',
    users: [user({ templateValues: ['unmapped', 'staff', 'student'] })],
    want: [{ action: 'create', reason: 'new_user', email: 'alice@example.org', template: 'Staff' }],
  },
  {
    name: 'unmapped value falls back to the default template',
    users: [user({ templateValues: ['unmapped'] })],
    want: [{ action: 'create', reason: 'new_user', email: 'alice@example.org', template: 'Default' }],
  },
  {
    name: 'no attribute at all → default template',
    users: [user({ templateValues: [] })],
    want: [{ action: 'create', reason: 'new_user', email: 'alice@example.org', template: 'Default' }],
  },
  {
    name: 'unmapped value and no default → skip no_template',
    users: [user({ templateValues: ['unmapped'] })],
    settings: settings({}, null),
    want: [{ action: 'skip', reason: 'no_template', email: 'alice@example.org' }],
  },
  {
    name: 'mapped template that does not exist → skip template_missing',
    users: [user({ templateValues: ['student'] })],
    want: [{ action: 'skip', reason: 'template_missing', email: 'alice@example.org' }],
  },
  {
    name: 'import_users off → skip import_disabled',
    users: [user()],
    settings: settings({ importUsers: false }),
    want: [{ action: 'skip', reason: 'import_disabled', email: 'alice@example.org' }],
  },
  {
    name: 'domain does not exist → skip domain_missing',
    users: [user({ email: 'bob@nowhere.org' })],
    want: [{ action: 'skip', reason: 'domain_missing', email: 'bob@nowhere.org' }],
  },
  {
    name: 'inactive domain → skip domain_inactive, no create',
    users: [user({ email: 'bob@inactive.org' })],
    want: [{ action: 'skip', reason: 'domain_inactive', email: 'bob@inactive.org' }],
  },
  {
    name: 'user without email → skip no_email, named by id',
    users: [user({ id: 'id-7', email: null })],
    want: [{ action: 'skip', reason: 'no_email', email: 'id-7' }],
  },
  {
    name: 'invalid email → skip invalid_email',
    users: [user({ email: 'not-an-address' })],
    want: [{ action: 'skip', reason: 'invalid_email', email: 'not-an-address' }],
  },
  {
    name: 'service account → skip service_account',
    users: [user({ serviceAccount: true, email: null, id: 'sa' })],
    want: [{ action: 'skip', reason: 'service_account', email: 'sa' }],
  },
  {
    name: 'upper-case email is matched and created lower-case',
    users: [user({ email: 'Carol@Example.ORG' })],
    want: [{ action: 'create', reason: 'new_user', email: 'carol@example.org', template: 'Staff' }],
  },
  {
    name: 'two users with one email in a page: the first is synced, the second skipped',
    users: [user({ id: 'a' }), user({ id: 'b', email: 'ALICE@example.org' })],
    want: [
      { action: 'create', reason: 'new_user', email: 'alice@example.org', template: 'Staff' },
      { action: 'skip', reason: 'duplicate_email', email: 'alice@example.org' },
    ],
  },
  {
    name: 'an email already seen in an earlier page → skip duplicate_email',
    users: [user()],
    options: { seen: new Set(['alice@example.org']) },
    want: [{ action: 'skip', reason: 'duplicate_email', email: 'alice@example.org' }],
  },
  // periodic sync
  { name: 'unchanged mailbox → skip unchanged (no write)', users: [user()], mailboxes: [mailbox()], want: [{ action: 'skip', reason: 'unchanged', email: 'alice@example.org' }] },
  {
    name: 'attribute hash differs → update template_changed',
    users: [user()],
    mailboxes: [mailbox({ attributeHash: 'old' })],
    want: [{ action: 'update', reason: 'template_changed', email: 'alice@example.org', template: 'Staff' }],
  },
  {
    name: 'mapping now points elsewhere → update to the new template',
    users: [user({ templateValues: ['other'] })],
    mailboxes: [mailbox()],
    want: [{ action: 'update', reason: 'template_changed', email: 'alice@example.org', template: 'Default' }],
  },
  {
    name: 'mailbox without attribute_hash → update',
    users: [user()],
    mailboxes: [mailbox({ attributeHash: null })],
    want: [{ action: 'update', reason: 'template_changed', email: 'alice@example.org', template: 'Staff' }],
  },
  {
    name: 'name differs → update name_changed',
    users: [user({ name: 'Alice Married' })],
    mailboxes: [mailbox()],
    want: [{ action: 'update', reason: 'name_changed', email: 'alice@example.org', template: 'Staff' }],
  },
  {
    name: 'both differ → update template_and_name_changed',
    users: [user({ name: 'Alice Married' })],
    mailboxes: [mailbox({ attributeHash: 'old' })],
    want: [{ action: 'update', reason: 'template_and_name_changed', email: 'alice@example.org', template: 'Staff' }],
  },
  {
    name: 'empty IdP name keeps the mailbox name → unchanged',
    users: [user({ name: '' })],
    mailboxes: [mailbox({ name: 'Set by admin' })],
    want: [{ action: 'skip', reason: 'unchanged', email: 'alice@example.org' }],
  },
  {
    name: 'periodic_sync off → existing mailbox skipped',
    users: [user()],
    mailboxes: [mailbox({ attributeHash: 'old' })],
    settings: settings({ periodicSync: false }),
    want: [{ action: 'skip', reason: 'periodic_sync_disabled', email: 'alice@example.org' }],
  },
  {
    name: 'existing mailbox in an inactive domain is still updated (only creation needs an active domain)',
    users: [user({ email: 'dan@inactive.org' })],
    mailboxes: [mailbox({ username: 'dan@inactive.org', attributeHash: 'old' })],
    want: [{ action: 'update', reason: 'template_changed', email: 'dan@inactive.org', template: 'Staff' }],
  },
  {
    name: 'mailbox of authsource mailcow is never touched',
    users: [user()],
    mailboxes: [mailbox({ authsource: 'mailcow', attributeHash: 'old' })],
    want: [{ action: 'skip', reason: 'other_authsource', email: 'alice@example.org' }],
  },
  {
    name: 'mailbox of authsource ldap is never touched, even when the user is disabled',
    users: [user({ enabled: false })],
    mailboxes: [mailbox({ authsource: 'ldap' })],
    want: [{ action: 'skip', reason: 'other_authsource', email: 'alice@example.org' }],
  },
  {
    name: 'resource with the same address → skip resource_mailbox',
    users: [user()],
    // mailcow's rule is a case-insensitive REGEXP: 'Location' is a resource as well.
    mailboxes: [mailbox({ kind: 'Location' })],
    want: [{ action: 'skip', reason: 'resource_mailbox', email: 'alice@example.org' }],
  },
  // disabled users
  {
    name: 'disabled user without mailbox → skip user_disabled (never imported)',
    users: [user({ enabled: false })],
    want: [{ action: 'skip', reason: 'user_disabled', email: 'alice@example.org' }],
  },
  {
    name: 'disabled user with active mailbox, deprovision on → no step (decided after the listing)',
    users: [user({ enabled: false })],
    mailboxes: [mailbox()],
    want: [],
  },
  {
    name: 'disabled user with active mailbox, deprovision off → skip user_disabled',
    users: [user({ enabled: false })],
    mailboxes: [mailbox()],
    options: { deprovision: 'off' },
    want: [{ action: 'skip', reason: 'user_disabled', email: 'alice@example.org' }],
  },
  {
    name: 'disabled user whose mailbox is already inactive → skip user_disabled',
    users: [user({ enabled: false })],
    mailboxes: [mailbox({ active: 0, deactivatedBySync: true, activeBefore: 1 })],
    want: [{ action: 'skip', reason: 'user_disabled', email: 'alice@example.org' }],
  },
  // reactivation
  {
    name: 'user back, mailbox deactivated by sync → reactivate only',
    users: [user()],
    mailboxes: [mailbox({ active: 0, deactivatedBySync: true, activeBefore: 1 })],
    want: [{ action: 'reactivate', reason: 'user_enabled_again', email: 'alice@example.org', active: 1 }],
  },
  {
    name: 'reactivation restores receive-only (2)',
    users: [user()],
    mailboxes: [mailbox({ active: 0, deactivatedBySync: true, activeBefore: 2 })],
    want: [{ action: 'reactivate', reason: 'user_enabled_again', email: 'alice@example.org', active: 2 }],
  },
  {
    name: 'user back and template changed → reactivate, then update',
    users: [user()],
    mailboxes: [mailbox({ active: 0, deactivatedBySync: true, activeBefore: 1, attributeHash: 'old' })],
    want: [
      { action: 'reactivate', reason: 'user_enabled_again', email: 'alice@example.org', active: 1 },
      { action: 'update', reason: 'template_changed', email: 'alice@example.org', template: 'Staff' },
    ],
  },
  {
    name: 'reactivation happens even with periodic_sync off',
    users: [user()],
    mailboxes: [mailbox({ active: 0, deactivatedBySync: true, activeBefore: 1, attributeHash: 'old' })],
    settings: settings({ periodicSync: false }),
    want: [{ action: 'reactivate', reason: 'user_enabled_again', email: 'alice@example.org', active: 1 }],
  },
  {
    name: 'mailbox disabled by an admin (no marker) stays disabled',
    users: [user()],
    mailboxes: [mailbox({ active: 0 })],
    want: [{ action: 'skip', reason: 'unchanged', email: 'alice@example.org' }],
  },
];

t.test('planSync', async (t) => {
  for (const c of cases) {
    const byEmail = new Map((c.mailboxes ?? []).map((m) => [m.username.toLowerCase(), m]));
    const steps = planSync(c.users, byEmail, c.settings ?? settings(), options(c.options));
    t.same(steps.map(brief), c.want, c.name);
    for (const s of steps) t.ok(s.detail.length > 0, `${c.name}: every step explains itself`);
  }
});

t.test('planSync is pure: same input, same output, inputs untouched', async (t) => {
  const users = Object.freeze([Object.freeze(user()), Object.freeze(user({ id: 'u2', email: 'bob@example.org' }))]);
  const byEmail = new Map([['alice@example.org', Object.freeze(mailbox({ attributeHash: 'old' }))]]);
  const a = planSync(users, byEmail, settings(), options());
  const b = planSync(users, byEmail, settings(), options());
  t.same(a, b);
  t.equal(a.length, 2);
});

t.test('create and update carry the display name', async (t) => {
  const [step] = planSync([user({ name: 'Zoë Ä' })], new Map(), settings(), options());
  t.equal(step?.name, 'Zoë Ä');
  t.equal(step?.userId, 'u1');
});

interface DeprovisionCase {
  name: string;
  mailboxes: PlanMailbox[];
  enabled?: string[];
  disabled?: string[];
  want: Record<string, unknown>[];
}

const deprovisionCases: DeprovisionCase[] = [
  { name: 'user gone → deactivate user_gone', mailboxes: [mailbox()], want: [{ action: 'deactivate', reason: 'user_gone', email: 'alice@example.org', active: 1 }] },
  {
    name: 'user disabled → deactivate user_disabled',
    mailboxes: [mailbox()],
    disabled: ['alice@example.org'],
    want: [{ action: 'deactivate', reason: 'user_disabled', email: 'alice@example.org', active: 1 }],
  },
  { name: 'user enabled → nothing', mailboxes: [mailbox()], enabled: ['alice@example.org'], want: [] },
  {
    name: 'an enabled user wins over a disabled one with the same email',
    mailboxes: [mailbox()],
    enabled: ['alice@example.org'],
    disabled: ['alice@example.org'],
    want: [],
  },
  { name: 'already inactive → nothing', mailboxes: [mailbox({ active: 0 })], want: [] },
  {
    name: 'receive-only mailbox is deactivated and remembers 2',
    mailboxes: [mailbox({ active: 2 })],
    want: [{ action: 'deactivate', reason: 'user_gone', email: 'alice@example.org', active: 2 }],
  },
  { name: 'other authsource → nothing', mailboxes: [mailbox({ authsource: 'mailcow' })], want: [] },
  { name: 'resource → nothing', mailboxes: [mailbox({ kind: 'thing' })], want: [] },
  { name: 'resource in another case → nothing', mailboxes: [mailbox({ kind: 'GROUP' })], want: [] },
  { name: 'mailbox address in other case matches', mailboxes: [mailbox({ username: 'Alice@Example.org' })], enabled: ['alice@example.org'], want: [] },
];

t.test('planDeprovision', async (t) => {
  for (const c of deprovisionCases) {
    const steps = planDeprovision(c.mailboxes, { enabled: new Set(c.enabled ?? []), disabled: new Set(c.disabled ?? []) });
    t.same(steps.map(brief), c.want, c.name);
  }
});

const base: SafetyInput = { deactivations: 0, syncedActive: 10, idpUsers: 10, maxDeactivateRatio: 0.1, force: false };
const safetyCases: [string, Partial<SafetyInput>, Record<string, unknown>][] = [
  ['nothing to deactivate', {}, { ok: true }],
  ['exactly at the ratio is allowed', { deactivations: 1 }, { ok: true }],
  ['over the ratio is refused', { deactivations: 2 }, { ok: false, reason: 'ratio' }],
  ['--force passes the ratio', { deactivations: 2, force: true }, { ok: true, forcedPast: 'ratio' }],
  ['zero users while keycloak mailboxes exist is refused', { deactivations: 10, idpUsers: 0 }, { ok: false, reason: 'zero_users' }],
  ['zero users is refused even under a ratio of 1', { deactivations: 10, idpUsers: 0, maxDeactivateRatio: 1 }, { ok: false, reason: 'zero_users' }],
  ['--force passes zero users', { deactivations: 10, idpUsers: 0, force: true }, { ok: true, forcedPast: 'zero_users' }],
  ['ratio 1 allows deactivating all', { deactivations: 10, maxDeactivateRatio: 1 }, { ok: true }],
  ['no active mailbox at the start but something to deactivate is refused', { deactivations: 1, syncedActive: 0 }, { ok: false, reason: 'ratio' }],
  ['ratio 0 refuses any deactivation', { deactivations: 1, syncedActive: 100, maxDeactivateRatio: 0 }, { ok: false, reason: 'ratio' }],
];

t.test('checkDeprovisionSafety', async (t) => {
  for (const [name, over, want] of safetyCases) {
    const v = checkDeprovisionSafety({ ...base, ...over });
    t.match(v, want, name);
    if (!v.ok) t.match(v.message, /--force/, `${name}: the message says how to proceed`);
  }
});

function kcUser(over: Partial<KeycloakUser> = {}): KeycloakUser {
  return {
    id: 'id-1',
    username: 'alice',
    email: 'alice@example.org',
    firstName: 'Alice',
    lastName: 'Example',
    enabled: true,
    emailVerified: true,
    createdTimestamp: 1,
    attributes: { mailcow_template: ['staff'] },
    requiredActions: [],
    serviceAccountClientId: null,
    federationLink: null,
    ...over,
  };
}

t.test('toSyncUser: Keycloak representation → what the planner sees', async (t) => {
  const cases: [string, Partial<KeycloakUser>, Partial<SyncUser>][] = [
    ['plain user', {}, { id: 'id-1', email: 'alice@example.org', enabled: true, name: 'Alice Example', templateValues: ['staff'], serviceAccount: false }],
    ['no attributes key', { attributes: {} }, { templateValues: [] }],
    ['empty attribute', { attributes: { mailcow_template: [] } }, { templateValues: [] }],
    ['empty string value dropped', { attributes: { mailcow_template: ['', 'b'] } }, { templateValues: ['b'] }],
    ['multi-valued kept in order', { attributes: { mailcow_template: ['a', 'b'] } }, { templateValues: ['a', 'b'] }],
    ['no email', { email: null }, { email: null }],
    ['blank email', { email: '  ' }, { email: null }],
    ['first name only', { lastName: null }, { name: 'Alice' }],
    ['no names', { firstName: null, lastName: null }, { name: '' }],
    ['service account by client id', { serviceAccountClientId: 'mailauth' }, { serviceAccount: true }],
    ['service account by user name', { username: 'service-account-mailauth' }, { serviceAccount: true }],
    ['disabled', { enabled: false }, { enabled: false }],
  ];
  for (const [name, over, want] of cases) t.match(toSyncUser(kcUser(over)), want, name);
});
