import t from 'tap';
import { checkIdpHash, chooseTemplate, selectIdpUser, templateDecision, toIdpAnswer } from '../../src/auth/idp-user.js';
import { DEFAULT_IDP_HASH_SCHEMES } from '../../src/config/index.js';
import type { IdpMapping, KeycloakUser } from '../../src/idp/index.js';
import { hash } from '../../src/passwords/index.js';
import { chooseTemplate as syncChooseTemplate } from '../../src/sync/plan.js';

function kcUser(over: Partial<KeycloakUser> & { id: string }): KeycloakUser {
  return {
    username: over.id,
    email: null,
    firstName: null,
    lastName: null,
    enabled: true,
    emailVerified: true,
    createdTimestamp: 0,
    attributes: {},
    requiredActions: [],
    serviceAccountClientId: null,
    federationLink: null,
    ...over,
  };
}

t.test('selectIdpUser: exactly one enabled user whose email equals the login', async (t) => {
  const alice = kcUser({ id: 'a', email: 'alice@example.org' });
  const cases: [string, KeycloakUser[], string, string | null][] = [
    ['one exact match', [alice], 'alice@example.org', null],
    ['login differs only in case', [alice], 'Alice@Example.ORG', null],
    ['stored email differs only in case', [kcUser({ id: 'a', email: 'ALICE@example.org' })], 'alice@example.org', null],
    ['nobody', [], 'alice@example.org', 'no_user'],
    ['substring answer (exact ignored upstream)', [kcUser({ id: 'm', email: 'malice@example.org' })], 'alice@example.org', 'no_user'],
    ['user without email', [kcUser({ id: 'x' })], 'alice@example.org', 'no_user'],
    ['disabled', [kcUser({ id: 'a', email: 'alice@example.org', enabled: false })], 'alice@example.org', 'disabled'],
    ['two enabled with one email', [alice, kcUser({ id: 'b', email: 'alice@example.org' })], 'alice@example.org', 'ambiguous'],
    ['two, one disabled: the enabled one', [kcUser({ id: 'b', email: 'alice@example.org', enabled: false }), alice], 'alice@example.org', null],
    ['service account with the email', [kcUser({ id: 's', email: 'alice@example.org', serviceAccountClientId: 'mailauth' })], 'alice@example.org', 'no_user'],
  ];
  for (const [name, users, login, problem] of cases) {
    const s = selectIdpUser(users, login);
    if (problem === null) t.ok(s.ok && s.user.id === 'a', name);
    else t.equal(s.ok ? 'ok' : s.problem, problem, name);
    if (!s.ok) t.notMatch(s.reason, /password|hash/i, `${name}: the reason names no secret`);
  }
});

t.test('toIdpAnswer keeps what the login path needs', async (t) => {
  const a = toIdpAnswer(
    kcUser({
      id: 'a',
      email: 'Alice@Example.org',
      firstName: ' Alice ',
      lastName: 'Example',
      attributes: { mailcow_password: ['{BLF-CRYPT}x', '{SSHA256}y'], mailcow_template: ['', 'staff'] },
    }),
  );
  t.same(a, { id: 'a', email: 'alice@example.org', name: 'Alice Example', password: '{BLF-CRYPT}x', passwordValues: 2, attributesVisible: true, templateValues: ['staff'] });
  t.same(toIdpAnswer(kcUser({ id: 'b', email: 'b@x.test' })), {
    id: 'b',
    email: 'b@x.test',
    name: '',
    password: null,
    passwordValues: 0,
    attributesVisible: false,
    templateValues: [],
  });
  t.equal(toIdpAnswer(kcUser({ id: 'c', attributes: { mailcow_password: [] } })).password, null, 'empty array: no password');
});

t.test('checkIdpHash: only the allowed schemes, by the format actually found', async (t) => {
  const allowed = DEFAULT_IDP_HASH_SCHEMES;
  const ok = async (scheme: string) => ({ password: await hash(scheme, 'pw', { bcryptCost: 4 }), attributesVisible: true });
  for (const s of ['BLF-CRYPT', 'ARGON2ID', 'SHA512-CRYPT', 'SSHA256', 'SSHA512']) {
    const r = checkIdpHash(await ok(s), allowed);
    t.ok(r.ok, `${s} accepted`);
  }
  const refused: [string, string][] = [
    ['{PLAIN}secret', 'PLAIN'],
    ['{CLEARTEXT}secret', 'CLEARTEXT'],
    ['{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==', 'MD5'],
    ['{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=', 'SHA256'],
    ['{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69', 'PLAIN-MD5'],
    ['{CRYPT}abJnggxhB/yWI', 'DES-CRYPT'],
  ];
  for (const [stored, scheme] of refused) {
    const r = checkIdpHash({ password: stored, attributesVisible: true }, allowed);
    t.match(r, { ok: false, kind: 'refused', scheme }, `${scheme} refused`);
    if (!r.ok) t.notMatch(r.reason, stored, 'the reason does not repeat the hash');
  }
  t.match(checkIdpHash({ password: '{NOPE}abc', attributesVisible: true }, allowed), { ok: false, kind: 'unparseable' });
  t.match(checkIdpHash({ password: null, attributesVisible: true }, allowed), { ok: false, kind: 'missing', reason: /no mailcow_password/ });
  t.match(checkIdpHash({ password: null, attributesVisible: false }, allowed), { ok: false, kind: 'missing', reason: /user-profile policy/ });
  t.match(checkIdpHash({ password: '  ', attributesVisible: true }, allowed), { ok: false, kind: 'missing', reason: /empty/ });
  t.ok(checkIdpHash({ password: '{PLAIN}x', attributesVisible: true }, ['*']).ok, 'an admin may widen the list');
  t.ok(checkIdpHash({ password: '{pbkdf2}$1$c2FsdA$5000$' + 'ab'.repeat(20), attributesVisible: true }, allowed).ok, 'PBKDF2* covers PBKDF2, case-insensitively');
});

t.test('chooseTemplate agrees with sync for every case', async (t) => {
  const mapping: IdpMapping = { mappers: ['staff', 'student'], templates: ['Staff', 'Student'], defaultTemplate: 'Default' };
  const noDefault: IdpMapping = { ...mapping, defaultTemplate: null };
  const values: string[][] = [[], ['staff'], ['student'], ['unknown'], ['unknown', 'student'], ['student', 'staff'], ['']];
  for (const m of [mapping, noDefault]) {
    for (const v of values) {
      t.same(chooseTemplate(v, { mapping: m }), syncChooseTemplate(v, { mapping: m }), `${JSON.stringify(v)} default=${m.defaultTemplate}`);
    }
  }
  t.same(chooseTemplate(['unknown', 'student'], { mapping }), { template: 'Student', via: 'mapping' });
  t.equal(chooseTemplate(['unknown'], { mapping: noDefault }), null);
});

t.test('templateDecision: compare first, apply only on change', async (t) => {
  const mapping: IdpMapping = { mappers: ['staff'], templates: ['Staff'], defaultTemplate: null };
  const hashes = new Map([['Staff', 'h-staff'], ['Default', 'h-default']]);
  const mailbox = { attributes: { attribute_hash: 'h-staff' }, name: 'Alice Example' };
  t.same(templateDecision(mailbox, { templateValues: ['staff'], name: 'Alice Example' }, { mapping }, hashes), { apply: false, reason: 'unchanged' });
  t.same(templateDecision(mailbox, { templateValues: ['staff'], name: '' }, { mapping }, hashes), { apply: false, reason: 'unchanged' }, 'no IdP name keeps the mailbox name');
  t.same(templateDecision(mailbox, { templateValues: ['staff'], name: '<Alice Example>' }, { mapping }, hashes), { apply: false, reason: 'unchanged' }, 'names compared as stored');
  t.match(templateDecision(mailbox, { templateValues: ['staff'], name: 'Alice Renamed' }, { mapping }, hashes), { apply: true, template: 'Staff', name: 'Alice Renamed', why: 'display name changed' });
  t.match(templateDecision({ ...mailbox, attributes: { attribute_hash: 'old' } }, { templateValues: ['staff'], name: '' }, { mapping }, hashes), {
    apply: true,
    template: 'Staff',
    why: /template Staff \(mapping\) changed/,
  });
  t.match(templateDecision(mailbox, { templateValues: ['other'], name: '' }, { mapping }, hashes), { apply: false, reason: /not mapped and no default/ });
  t.match(templateDecision(mailbox, { templateValues: [], name: '' }, { mapping: { ...mapping, defaultTemplate: 'Gone' } }, hashes), { apply: false, reason: /"Gone" does not exist/ });
  t.match(templateDecision(mailbox, { templateValues: [], name: '' }, { mapping: { ...mapping, defaultTemplate: 'Default' } }, hashes), { apply: true, template: 'Default' });
});
