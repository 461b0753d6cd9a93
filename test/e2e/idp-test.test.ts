/**
 * Every line of `mailauth idp test` with the fault switched on that it
 * diagnoses: against the Keycloak double, and for generic OIDC against a real
 * oidc-provider. Asserts the status and the fix an admin gets.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { checklistPassed, runIdpTest } from '../../src/idp/index.js';
import type { Check, GenericOidcSettings, IdpTestDeps, IdpTestOptions, KeycloakSettings } from '../../src/idp/index.js';
import { hash } from '../../src/passwords/index.js';
import { selfSignedCert, startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { DoubleConfig, DoubleUserInput, KeycloakDouble } from '../helpers/keycloak-double.js';
import { startOidcOp } from '../helpers/oidc-op.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

const deps = (over: Partial<IdpTestDeps> = {}): IdpTestDeps => ({
  templateNames: async () => ['Default', 'Staff'],
  idp: { timeoutMs: 1500, retries: 0, retryBackoffMs: 5 },
  idpHashSchemes: ['BLF-CRYPT', 'SSHA512', 'ARGON2ID'],
  passwordGrant: false,
  ...over,
});

let bcrypt = '';
const people = async (): Promise<DoubleUserInput[]> => {
  bcrypt ||= await hash('BLF-CRYPT', 'alice-pw', { bcryptCost: 4 });
  return [
    { username: 'alice', email: 'alice@example.org', attributes: { mailcow_template: ['staff'], mailcow_password: [bcrypt] } },
    { username: 'bob', email: 'bob@example.org', attributes: { mailcow_template: ['staff'], mailcow_password: [bcrypt] } },
  ];
};

function kcSettings(kc: { serverUrl: string } | string, over: Partial<KeycloakSettings> = {}): KeycloakSettings {
  return {
    source: 'keycloak',
    serverUrl: typeof kc === 'string' ? kc : kc.serverUrl,
    realm: 'mail',
    clientId: 'mailauth',
    clientSecret: 'kc-secret',
    version: null,
    mailpasswordFlow: true,
    periodicSync: false,
    importUsers: false,
    syncIntervalMin: 15,
    loginProvisioning: true,
    ignoreSslError: false,
    redirectUrl: null,
    redirectUrlExtra: [],
    mapping: { mappers: ['staff'], templates: ['Staff'], defaultTemplate: 'Default' },
    ...over,
  };
}

async function kcDouble(tt: Teardown, over: Partial<DoubleConfig> = {}): Promise<KeycloakDouble> {
  const kc = await startKeycloakDouble({ users: await people(), ...over });
  tt.teardown(() => kc.close());
  return kc;
}

async function check(settings: KeycloakSettings | GenericOidcSettings, id: string, d: IdpTestDeps = deps(), opts: IdpTestOptions = {}): Promise<{ c: Check; all: Check[] }> {
  const all = await runIdpTest(settings, d, opts);
  const c = all.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in ${all.map((x) => x.id).join(', ')}`);
  return { c, all };
}

const statuses = (all: Check[]): Record<string, string> => Object.fromEntries(all.map((c) => [c.id, c.status]));

async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// ── Keycloak ────────────────────────────────────────────────────────────────

t.test('keycloak: a healthy setup passes every line', async (t) => {
  const kc = await kcDouble(t);
  const all = await runIdpTest(kcSettings(kc), deps(), { user: 'alice@example.org' });
  t.same(statuses(all), {
    reachable: 'pass',
    tls: 'skip',
    discovery: 'pass',
    'client-credentials': 'pass',
    'admin-api': 'pass',
    'user-count': 'pass',
    attributes: 'pass',
    'mailcow-password': 'pass',
    mapping: 'pass',
    user: 'pass',
  });
  t.ok(checklistPassed(all));
  t.notMatch(JSON.stringify(all), /\$2[aby]\$/, 'no hash in any line');
  t.notMatch(JSON.stringify(all), 'kc-secret');
});

t.test('reachable: connection refused, DNS failure, timeout', async (t) => {
  const port = await closedPort();
  const refused = await check(kcSettings(`http://127.0.0.1:${port}`), 'reachable');
  t.equal(refused.c.status, 'fail');
  t.match(refused.c.detail, /ECONNREFUSED/);
  t.match(refused.c.fix, /that the server runs and listens on 127\.0\.0\.1:/);
  t.match(statuses(refused.all), { tls: 'skip', discovery: 'skip', 'client-credentials': 'skip', 'admin-api': 'skip', mapping: 'pass' });
  t.notOk(checklistPassed(refused.all));

  const dns = await check(kcSettings('http://kc.nonexistent.invalid', { ignoreSslError: true }), 'reachable');
  t.equal(dns.c.status, 'fail');
  t.match(dns.c.fix, /does not resolve|check the URL/);

  const kc = await kcDouble(t);
  kc.inject('discovery', { kind: 'hang' });
  const slow = await check(kcSettings(kc), 'reachable', deps({ idp: { timeoutMs: 200, retries: 0, retryBackoffMs: 1 } }));
  t.equal(slow.c.status, 'fail');
  t.match(slow.c.detail, /did not answer/);
});

const cert = await selfSignedCert();
if (!cert && process.env.CI === 'true') t.fail('openssl is required in CI to make a test certificate for the TLS checks');
t.test('tls: an untrusted certificate fails; ignore_ssl_error warns and the rest works', { skip: cert ? false : 'OPENSSL MISSING: cannot make a self-signed certificate, TLS checks not tested' }, async (t) => {
  if (!cert) return;
  const kc = await kcDouble(t, { tls: cert });
  const strict = await check(kcSettings(kc), 'tls');
  t.equal(strict.c.status, 'fail');
  t.match(strict.c.detail, /DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED/);
  t.match(strict.c.fix, /certificate this host trusts/);
  t.equal(statuses(strict.all).reachable, 'pass', 'the server is there');
  t.equal(statuses(strict.all)['client-credentials'], 'skip');

  const lax = await check(kcSettings(kc, { ignoreSslError: true }), 'tls');
  t.equal(lax.c.status, 'warn');
  t.match(lax.c.detail, /certificate checks are off \(ignore_ssl_error\); with checks on: TLS failure/);
  t.match(lax.c.fix, /install a trusted certificate/);
  t.equal(statuses(lax.all)['admin-api'], 'pass');
  t.ok(checklistPassed(lax.all), 'a warning does not fail the test');
});

t.test('discovery: /auth missing, /auth extra, wrong realm, not Keycloak, proxy error, other issuer', async (t) => {
  const old = await kcDouble(t, { pathPrefix: '/auth' });
  const missing = await check(kcSettings(old.url), 'discovery');
  t.equal(missing.c.status, 'fail');
  t.match(missing.c.detail, /serves under \/auth/);
  t.equal(missing.c.fix, `mailauth idp set keycloak --server-url ${old.url}/auth`);

  const kc = await kcDouble(t);
  const extra = await check(kcSettings(`${kc.url}/auth`), 'discovery');
  t.equal(extra.c.status, 'fail');
  t.match(extra.c.detail, /Keycloak 17 and later serve without the \/auth prefix/);
  t.equal(extra.c.fix, `mailauth idp set keycloak --server-url ${kc.url}`);

  const realm = await check(kcSettings(kc, { realm: 'Mail' }), 'discovery');
  t.equal(realm.c.status, 'fail');
  t.match(realm.c.detail, /realm "Mail" does not exist/);
  t.match(realm.c.fix, /case-sensitive/);

  const other = http.createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'text/html' });
    res.end('<h1>Not Found</h1>');
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.teardown(() => other.close());
  const notKc = await check(kcSettings(`http://127.0.0.1:${(other.address() as AddressInfo).port}`), 'discovery');
  t.equal(notKc.c.status, 'fail');
  t.match(notKc.c.detail, /not a Keycloak server/);
  t.match(notKc.c.fix, /check --server-url/);

  kc.inject('discovery', { kind: 'proxy', status: 502 }, 1);
  const proxy = await check(kcSettings(kc), 'discovery');
  t.equal(proxy.c.status, 'fail');
  t.match(proxy.c.detail, /HTTP 502/);
  t.equal(statuses(proxy.all).reachable, 'pass');

  const fe = await kcDouble(t, { issuerOverride: 'https://login.example.org/realms/mail' });
  const front = await check(kcSettings(fe), 'discovery');
  t.equal(front.c.status, 'pass');
  t.match(front.c.detail, /differs from .*frontend hostname/);
});

t.test('client credentials: bad secret, service accounts off, public client, disabled service account, HTTPS required', async (t) => {
  const kc = await kcDouble(t);
  const bad = await check(kcSettings(kc, { clientSecret: 'wrong' }), 'client-credentials');
  t.equal(bad.c.status, 'fail');
  t.match(bad.c.detail, /rejected the client id or secret \(HTTP 401 unauthorized_client\)/);
  t.match(bad.c.fix, /Clients → mailauth → Credentials → Client secret/);
  t.match(statuses(bad.all), { 'admin-api': 'skip', attributes: 'skip' });
  t.notMatch(JSON.stringify(bad.all), 'kc-secret');

  kc.client('mailauth').serviceAccountsEnabled = false;
  const sa = await check(kcSettings(kc), 'client-credentials');
  t.match(sa.c.detail, /Service accounts roles is off/);
  t.match(sa.c.fix, /Capability config: turn on "Client authentication" and "Service accounts roles"/);
  kc.client('mailauth').serviceAccountsEnabled = true;

  kc.client('mailauth').publicClient = true;
  t.match((await check(kcSettings(kc), 'client-credentials')).c.fix, /turn on "Client authentication" \(a confidential client\)/);
  kc.client('mailauth').publicClient = false;

  kc.disableUser('service-account-mailauth');
  t.match((await check(kcSettings(kc), 'client-credentials')).c.fix, /Users → service-account-mailauth → enable/);
  kc.updateUser('service-account-mailauth', { enabled: true });

  kc.config.sslRequired = true;
  t.match((await check(kcSettings(kc), 'client-credentials')).c.fix, /https:\/\/ server URL/);
});

t.test('direct grants (only with auth.oidc_password_grant): allowed, or not; required only without the mailpassword flow', async (t) => {
  const kc = await kcDouble(t);
  t.notOk((await runIdpTest(kcSettings(kc), deps())).some((c) => c.id === 'direct-grants'), 'not checked when unused');
  const ok = await check(kcSettings(kc), 'direct-grants', deps({ passwordGrant: true }));
  t.equal(ok.c.status, 'pass');
  kc.client('mailauth').directAccessGrantsEnabled = false;
  const off = await check(kcSettings(kc), 'direct-grants', deps({ passwordGrant: true }));
  t.equal(off.c.status, 'fail');
  t.equal(off.c.required, false);
  t.match(off.c.fix, /Capability config: turn on "Direct access grants"/);
  t.ok(checklistPassed(off.all), 'not required while the mailpassword flow is on');
  const flowOff = await check(kcSettings(kc, { mailpasswordFlow: false }), 'direct-grants', deps({ passwordGrant: true }));
  t.equal(flowOff.c.status, 'fail');
  t.equal(flowOff.c.required, true, 'required when keycloak mailboxes log in through the password grant');
  t.notOk(checklistPassed(flowOff.all));
});

t.test('admin API: the view-users role missing says where to grant it', async (t) => {
  const kc = await kcDouble(t);
  kc.removeRole('mailauth', 'view-users');
  kc.removeRole('mailauth', 'query-users');
  const r = await check(kcSettings(kc), 'admin-api');
  t.equal(r.c.status, 'fail');
  t.match(r.c.detail, /403: the service account of client mailauth lacks the view-users role/);
  t.equal(r.c.fix, 'Clients → mailauth → Service accounts roles → Assign role → Filter by clients → realm-management view-users → Assign');
  t.match(statuses(r.all), { 'user-count': 'skip', attributes: 'skip', 'mailcow-password': 'skip', mapping: 'pass' });
  t.notOk(checklistPassed(r.all));
});

t.test('user count: an empty realm warns', async (t) => {
  const kc = await kcDouble(t, { users: [] });
  const r = await check(kcSettings(kc, { mailpasswordFlow: false }), 'user-count');
  t.equal(r.c.status, 'warn');
  t.match(r.c.detail, /has no users/);
  t.match(statuses(r.all), { attributes: 'skip' });
});

t.test('attributes: hidden by the Keycloak 24+ user-profile policy, or not set', async (t) => {
  const kc = await kcDouble(t, { unmanagedAttributePolicy: 'DISABLED' });
  const hidden = await check(kcSettings(kc, { mailpasswordFlow: false }), 'attributes');
  t.equal(hidden.c.status, 'warn');
  t.match(hidden.c.detail, /none of 2 users shows any attribute/);
  t.match(hidden.c.fix, /Keycloak 24 and later/);
  t.match(hidden.c.fix, /Realm settings → User profile/);
  t.match(hidden.c.fix, /Unmanaged attributes to "Admin can view"/);
  t.match(hidden.c.fix, /unmanagedAttributePolicy=ADMIN_VIEW/);

  kc.config.managedAttributes = ['mailcow_template', 'mailcow_password'];
  t.equal((await check(kcSettings(kc), 'attributes')).c.status, 'pass', 'declared attributes are visible');

  const other = await kcDouble(t, { users: [{ username: 'x', email: 'x@example.org', attributes: { department: ['it'] } }] });
  const unset = await check(kcSettings(other, { mailpasswordFlow: false }), 'attributes');
  t.equal(unset.c.status, 'warn');
  t.match(unset.c.detail, /none of 1 users has mailcow_template/);
  t.match(unset.c.fix, /Users → user → Attributes/);
});

t.test('mailcow_password: missing, refused scheme, weak scheme allowed, flow off', async (t) => {
  const kc = await kcDouble(t, { users: [{ username: 'x', email: 'x@example.org', attributes: { mailcow_template: ['staff'] } }] });
  const none = await check(kcSettings(kc), 'mailcow-password');
  t.equal(none.c.status, 'fail');
  t.equal(none.c.required, true);
  t.match(none.c.detail, /nobody can log in/);
  t.match(none.c.fix, /mailauth pw -s BLF-CRYPT/);
  t.notOk(checklistPassed(none.all));

  kc.updateUser('x', { attributes: { mailcow_template: ['staff'], mailcow_password: ['{PLAIN}hunter2'] } });
  kc.addUser({ username: 'y', email: 'y@example.org', attributes: { mailcow_password: ['{SSHA512}' + Buffer.alloc(72, 1).toString('base64')] } });
  const refused = await check(kcSettings(kc), 'mailcow-password');
  t.equal(refused.c.status, 'warn');
  t.match(refused.c.detail, /1 user cannot log in: PLAIN×1 is not in auth\.idp_hash_schemes/);
  t.match(refused.c.fix, /rehash/);
  t.notMatch(JSON.stringify(refused.all), 'hunter2');

  const weak = await check(kcSettings(kc), 'mailcow-password', deps({ idpHashSchemes: ['PLAIN', 'SSHA512'] }));
  t.equal(weak.c.status, 'warn');
  t.match(weak.c.detail, /weak \(plaintext or unsalted\) schemes are accepted/);

  const off = await check(kcSettings(kc, { mailpasswordFlow: false }), 'mailcow-password');
  t.equal(off.c.status, 'skip');

  // Accepted schemes, but one hash asks for more work than an IdP value may (bcrypt cost 17 > 13).
  const costly = `$2y$17$${'a'.repeat(53)}`;
  kc.updateUser('x', { attributes: { mailcow_template: ['staff'], mailcow_password: [`{BLF-CRYPT}${costly}`] } });
  kc.updateUser('y', { attributes: { mailcow_password: [bcrypt] } });
  const heavy = await check(kcSettings(kc), 'mailcow-password');
  t.equal(heavy.c.status, 'warn');
  t.match(heavy.c.detail, /1 user cannot log in: their hash asks for more work than mailauth accepts from an identity provider \(bcrypt cost > 13: 1\)/);
  t.match(heavy.c.fix, /mailauth pw -s BLF-CRYPT/);
  t.notMatch(JSON.stringify(heavy.all), costly.slice(7, 30), 'no hash text');
});

t.test('mapping: missing template fails, unmapped values without default warn, coverage is listed', async (t) => {
  const kc = await kcDouble(t);
  kc.addUser({ username: 'gina', email: 'gina@example.org', attributes: { mailcow_template: ['guest'], mailcow_password: [bcrypt] } });
  const missing = await check(kcSettings(kc, { mapping: { mappers: ['staff'], templates: ['Teachers'], defaultTemplate: null } }), 'mapping');
  t.equal(missing.c.status, 'fail');
  t.match(missing.c.detail, /do not exist: "Teachers" \("staff"\)/);
  t.match(missing.c.fix, /mailauth template add NAME/);
  t.notOk(checklistPassed(missing.all));

  const skipped = await check(kcSettings(kc, { mapping: { mappers: ['staff'], templates: ['Staff'], defaultTemplate: null } }), 'mapping');
  t.equal(skipped.c.status, 'warn');
  t.match(skipped.c.detail, /1 scanned user would be skipped/);
  t.match(skipped.c.detail, /"guest" \(not mapped\): 1 user → skipped/);
  t.match(skipped.c.fix, /mailauth idp map add VALUE TEMPLATE/);

  const covered = await check(kcSettings(kc), 'mapping');
  t.equal(covered.c.status, 'pass');
  t.match(covered.c.detail, /"staff" → Staff \(2 users scanned\)/);
  t.match(covered.c.detail, /"guest" \(not mapped\): 1 user → default template Default/);

  const empty = await check(kcSettings(kc, { mapping: { mappers: [], templates: [], defaultTemplate: null } }), 'mapping');
  t.equal(empty.c.status, 'warn');
  t.match(empty.c.detail, /skip every user/);

  const broken = await check(kcSettings(kc), 'mapping', deps({ templateNames: async () => Promise.reject(new Error('db down')) }));
  t.equal(broken.c.status, 'fail');
  t.match(broken.c.fix, /mailauth db status/);
});

t.test('a listing that breaks mid-scan fails the attribute line', async (t) => {
  const kc = await kcDouble(t);
  kc.inject('users', { kind: 'truncated' });
  const r = await check(kcSettings(kc), 'attributes');
  t.equal(r.c.status, 'fail');
  t.match(r.c.detail, /listing users failed: .*invalid JSON/);
});

t.test('--user: unknown, duplicate email, disabled, no hash, refused scheme, no template', async (t) => {
  const kc = await kcDouble(t);
  const opts = (user: string): IdpTestOptions => ({ user });
  const unknown = await check(kcSettings(kc), 'user', deps(), opts('nobody@example.org'));
  t.equal(unknown.c.status, 'fail');
  t.match(unknown.c.detail, /no user in realm mail has this email/);

  kc.addUser({ username: 'alice2', email: 'dup@example.org' });
  kc.addUser({ username: 'alice3', email: 'DUP@example.org' });
  const dup = await check(kcSettings(kc), 'user', deps(), opts('Dup@Example.org'));
  t.equal(dup.c.status, 'fail');
  t.match(dup.c.detail, /2 users share this email/);
  t.match(dup.c.fix, /Duplicate emails/);

  kc.disableUser('bob');
  const disabled = await check(kcSettings(kc), 'user', deps(), opts('bob@example.org'));
  t.equal(disabled.c.status, 'fail');
  t.match(disabled.c.detail, /disabled in Keycloak/);
  t.match(disabled.c.fix, /Enabled/);

  kc.addUser({ username: 'carl', email: 'carl@example.org', attributes: { mailcow_template: ['guest'] } });
  const nohash = await check(kcSettings(kc, { mapping: { mappers: ['staff'], templates: ['Staff'], defaultTemplate: null } }), 'user', deps(), opts('carl@example.org'));
  t.equal(nohash.c.status, 'fail');
  t.match(nohash.c.detail, /no visible mailcow_password/);
  t.match(nohash.c.detail, /"guest" → no template/);

  kc.updateUser('carl', { attributes: { mailcow_template: ['guest'], mailcow_password: ['{MD5}secretish'] } });
  const md5 = await check(kcSettings(kc), 'user', deps(), opts('carl@example.org'));
  t.equal(md5.c.status, 'fail');
  t.match(md5.c.detail, /password scheme .* \(refused\)/);
  t.notMatch(md5.c.detail, 'secretish');

  const noTemplate = await check(kcSettings(kc, { mailpasswordFlow: false, mapping: { mappers: [], templates: [], defaultTemplate: null } }), 'user', deps(), opts('carl@example.org'));
  t.equal(noTemplate.c.status, 'warn');
  t.match(noTemplate.c.fix, /mailauth idp map add/);

  const ok = await check(kcSettings(kc), 'user', deps(), opts('ALICE@example.org'));
  t.equal(ok.c.status, 'pass');
  t.match(ok.c.detail, /username alice, enabled, mailcow_template "staff" → template Staff \(mapping\), password scheme BLF-CRYPT \(accepted\)/);
});

// ── generic OIDC against a real oidc-provider ───────────────────────────────

t.test('generic OIDC', async (t) => {
  const op = await startOidcOp({
    clients: [
      { clientId: 'mailauth', secret: 'op-secret', grantTypes: ['client_credentials', 'password'] },
      { clientId: 'pwonly', secret: 'pw-secret', grantTypes: ['password'] },
      { clientId: 'cconly', secret: 'cc-secret', grantTypes: ['client_credentials'] },
    ],
  });
  t.teardown(() => op.close());
  const settings = (over: Partial<GenericOidcSettings> = {}): GenericOidcSettings => ({
    source: 'generic-oidc',
    issuer: op.issuer,
    authorizeUrl: op.authorizeUrl,
    tokenUrl: op.tokenUrl,
    userinfoUrl: op.userinfoUrl,
    clientId: 'mailauth',
    clientSecret: 'op-secret',
    clientScopes: ['openid', 'profile', 'email', 'mailcow_template'],
    loginProvisioning: true,
    ignoreSslError: false,
    redirectUrl: null,
    redirectUrlExtra: [],
    mapping: { mappers: ['staff'], templates: ['Staff'], defaultTemplate: null },
    ...over,
  });

  await t.test('a healthy setup passes', async (t) => {
    const all = await runIdpTest(settings(), deps());
    t.same(statuses(all), { reachable: 'pass', tls: 'skip', discovery: 'pass', 'token-endpoint': 'pass', 'userinfo-endpoint': 'pass', mapping: 'pass' });
    t.ok(checklistPassed(all));
  });

  await t.test('explicit URLs without an issuer', async (t) => {
    const all = await runIdpTest(settings({ issuer: null }), deps());
    t.match(statuses(all), { discovery: 'skip', 'token-endpoint': 'pass', 'userinfo-endpoint': 'pass' });
  });

  await t.test('server down', async (t) => {
    const port = await closedPort();
    const r = await check(settings({ issuer: `http://127.0.0.1:${port}/realms/test` }), 'reachable');
    t.equal(r.c.status, 'fail');
    t.match(statuses(r.all), { discovery: 'skip', 'token-endpoint': 'skip' });
  });

  await t.test('wrong issuer (404)', async (t) => {
    const r = await check(settings({ issuer: `${op.url}/realms/other` }), 'discovery');
    t.equal(r.c.status, 'fail');
    t.match(r.c.detail, /404/);
    t.match(r.c.fix, /check --issuer: .*\/\.well-known\/openid-configuration must exist/);
  });

  await t.test('bad client secret', async (t) => {
    const r = await check(settings({ clientSecret: 'wrong' }), 'token-endpoint');
    t.equal(r.c.status, 'fail');
    t.match(r.c.detail, /invalid_client/);
    t.match(r.c.fix, /check --client-id and the client secret/);
    t.notOk(checklistPassed(r.all));
  });

  await t.test('client credentials not allowed for the client: warn, secret unverified', async (t) => {
    const r = await check(settings({ clientId: 'pwonly', clientSecret: 'pw-secret' }), 'token-endpoint');
    t.equal(r.c.status, 'warn');
    t.match(r.c.detail, /could not be verified/);
    t.ok(checklistPassed(r.all));
  });

  await t.test('userinfo endpoint wrong', async (t) => {
    const r = await check(settings({ issuer: null, userinfoUrl: `${op.url}/realms/test/protocol/openid-connect/nope` }), 'userinfo-endpoint');
    t.equal(r.c.status, 'fail');
    t.match(r.c.detail, /answered HTTP 404/);
    t.match(r.c.fix, /--userinfo-url/);
  });

  await t.test('password grant probe (auth.oidc_password_grant on): allowed, or not', async (t) => {
    const ok = await check(settings(), 'password-grant', deps({ passwordGrant: true }));
    t.equal(ok.c.status, 'pass');
    const off = await check(settings({ clientId: 'cconly', clientSecret: 'cc-secret' }), 'password-grant', deps({ passwordGrant: true }));
    t.equal(off.c.status, 'fail');
    t.match(off.c.fix, /allow the password grant/);
    t.notOk(checklistPassed(off.all));
  });

  await t.test('--user with a password: claims and the template they map to', async (t) => {
    const ok = await check(settings(), 'user', deps(), { user: 'alice@example.org', password: 'pw-alice' });
    t.equal(ok.c.status, 'pass');
    t.match(ok.c.detail, /mailcow_template "staff" → template Staff \(mapping\)/);
    const bad = await check(settings(), 'user', deps(), { user: 'alice@example.org', password: 'wrong' });
    t.equal(bad.c.status, 'fail');
    t.match(bad.c.detail, /refused the password \(invalid_grant/);
    const noClaim = await check(settings(), 'user', deps(), { user: 'bob@example.org', password: 'pw-bob' });
    t.equal(noClaim.c.status, 'warn');
    t.match(noClaim.c.fix, /User Attribute/);
    const noPassword = await check(settings(), 'user', deps(), { user: 'alice@example.org' });
    t.equal(noPassword.c.status, 'skip');
    t.match(noPassword.c.detail, /--password-stdin/);
  });
});
