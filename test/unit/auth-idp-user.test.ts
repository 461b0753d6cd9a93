import t from 'tap';
import { verifyKeycloakPassword } from '../../src/auth/idp-password.js';
import { createIdpRuntime } from '../../src/auth/idp-runtime.js';
import { checkIdpHash, chooseTemplate, selectIdpUser, templateDecision, toIdpAnswer } from '../../src/auth/idp-user.js';
import { DEFAULT_IDP_HASH_SCHEMES } from '../../src/config/index.js';
import type { IdpMapping, KeycloakUser } from '../../src/idp/index.js';
import { hash, schemeOf, verify } from '../../src/passwords/index.js';
import { chooseTemplate as syncChooseTemplate } from '../../src/sync/plan.js';
import { createTestDatabase, testConfig } from '../helpers/db.js';
import { setKeycloakIdp } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import { captureLog } from '../helpers/log-capture.js';

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

// Well-formed hashes built by hand: refused ones must never be hashed, so their cost costs nothing here.
const BCRYPT_TAIL = `abcdefghijklmnopqrstuv${'A'.repeat(31)}`;
const bcryptOf = (cost: number): string => `{BLF-CRYPT}$2y$${cost}$${BCRYPT_TAIL}`;
const ARGON2_TAIL = 'c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
const argon2Of = (m: number, tc: number, p: number): string => `{ARGON2ID}$argon2id$v=19$m=${m},t=${tc},p=${p}$${ARGON2_TAIL}`;
const SHA_TAIL = `saltsalt$${'x'.repeat(86)}`;
const PBKDF2_KEY = 'ab'.repeat(20);

t.test('checkIdpHash: a hash asking for more work than the IdP caps is refused, naming parameter and cap', async (t) => {
  const allowed = DEFAULT_IDP_HASH_SCHEMES;
  const check = (password: string) => checkIdpHash({ password, attributesVisible: true }, allowed);
  const refused: [string, string, RegExp][] = [
    [bcryptOf(17), 'BLF-CRYPT', /asks for bcrypt cost 17, more than mailauth accepts from an identity provider \(13\)$/],
    [`{CRYPT}$2b$14$${BCRYPT_TAIL}`, 'BLF-CRYPT', /bcrypt cost 14, .*\(13\)$/],
    [argon2Of(1048576, 3, 1), 'ARGON2ID', /asks for argon2 memory 1048576 KiB, .*\(262144 KiB\)$/],
    [argon2Of(65536, 5, 1), 'ARGON2ID', /argon2 time cost 5, .*\(4\)$/],
    [argon2Of(65536, 3, 5), 'ARGON2ID', /argon2 parallelism 5, .*\(4\)$/],
    [`{PBKDF2}$1$saltsalt$1000001$${PBKDF2_KEY}`, 'PBKDF2', /PBKDF2 iterations 1000001, .*\(1000000\)$/],
    [`{PBKDF2-SHA512}5000000$c2FsdA==$${'A'.repeat(86)}==`, 'PBKDF2-SHA512', /PBKDF2 iterations 5000000, .*\(1000000\)$/],
    [`{SHA512-CRYPT}$6$rounds=100001$${SHA_TAIL}`, 'SHA512-CRYPT', /SHA-crypt rounds 100001, .*\(100000\)$/],
  ];
  for (const [stored, scheme, reason] of refused) {
    const r = check(stored);
    t.match(r, { ok: false, kind: 'refused', scheme, reason }, `${scheme}: ${reason.source}`);
    if (!r.ok) {
      t.match(r.reason, /^the IdP user's mailcow_password asks for /, `${scheme}: says whose value it is`);
      for (const piece of [stored, stored.slice(stored.indexOf('}') + 1), BCRYPT_TAIL, 'c2FsdA', SHA_TAIL, PBKDF2_KEY]) {
        t.notOk(r.reason.includes(piece), `${scheme}: the reason quotes no hash text`);
      }
    }
  }
  const atCaps = [
    bcryptOf(13),
    argon2Of(262144, 4, 4),
    `{PBKDF2}$1$saltsalt$1000000$${PBKDF2_KEY}`,
    `{SHA512-CRYPT}$6$rounds=100000$${SHA_TAIL}`,
    `{SHA512-CRYPT}$6$${SHA_TAIL}`,
  ];
  for (const stored of atCaps) t.match(check(stored), { ok: true }, `${schemeOf(stored)} at the caps is accepted`);
  t.match(
    checkIdpHash({ password: bcryptOf(17), attributesVisible: true }, ['SSHA512']),
    { ok: false, kind: 'refused', reason: /auth.idp_hash_schemes does not accept/ },
    'a scheme outside the list is refused for that first',
  );
  t.match(check(`{BLF-CRYPT}$2y$7$${BCRYPT_TAIL}`), { ok: true }, 'shape errors are left to verify() (malformed, no hashing)');
});

t.test('mailpassword flow: an over-cap hash from Keycloak is refused without being hashed', async (t) => {
  const tdb = await createTestDatabase(t);
  const slow = bcryptOf(17);
  const kc = await startKeycloakDouble({
    users: [
      { username: 'cheap', email: 'cheap@example.org', enabled: true, attributes: { mailcow_password: [await hash('BLF-CRYPT', 'right-pw', { bcryptCost: 4 })] } },
      { username: 'slow', email: 'slow@example.org', enabled: true, attributes: { mailcow_password: [slow] } },
    ],
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '1', login_provisioning: '0' });
  const log = captureLog('debug');
  const logger = log.logger;
  const rt = createIdpRuntime({ db: tdb.db, logger, config: testConfig(tdb) });
  t.teardown(() => rt.close());
  const settings = (await rt.snapshot()).settings;
  if (settings?.source !== 'keycloak') throw new Error('the Keycloak double is not configured');

  const hashed: string[] = [];
  const ctx = {
    logger,
    signal: AbortSignal.timeout(10_000),
    verifyHash: async (stored: string, password: string) => {
      hashed.push(schemeOf(stored) ?? '?');
      return verify(stored, password);
    },
  };
  t.match(await verifyKeycloakPassword(rt, settings, 'cheap@example.org', 'right-pw', ctx), { result: 'ok' }, 'control: a cheap hash is verified');
  t.same(hashed, ['BLF-CRYPT'], 'control: through the injected verifier');

  const r = await verifyKeycloakPassword(rt, settings, 'slow@example.org', 'right-pw', ctx);
  t.match(r, { result: 'password_mismatch', reason: /asks for bcrypt cost 17, more than mailauth accepts from an identity provider \(13\)/ }, 'answered like any refused IdP hash');
  t.same(hashed, ['BLF-CRYPT'], 'the cost-17 hash was never handed to the verifier');

  const warn = log.text()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { level: number; msg: string; mailbox?: string; scheme?: string })
    .find((l) => l.mailbox === 'slow@example.org' && /bcrypt cost 17/.test(l.msg));
  t.match(warn, { level: 40, scheme: 'BLF-CRYPT', msg: /\(13\); rehash it with mailauth pw -s BLF-CRYPT$/ }, 'one warn line says what to do');
  t.notOk(log.text().includes(BCRYPT_TAIL) || log.text().includes(slow.slice('{BLF-CRYPT}'.length)), 'no hash text in the log');
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
