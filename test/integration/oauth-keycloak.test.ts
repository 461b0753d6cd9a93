/**
 * Issue 20: XOAUTH2 / OAUTHBEARER logins through the daemon over HTTP
 * (startDaemon → /v1/passdb with mech, and /v1/oauth2/introspect), with
 * access tokens issued over HTTP by the Keycloak double (RS256, real
 * signatures, its JWKS and introspection), against a real MariaDB database.
 */
import { SignJWT, generateKeyPair } from 'jose';
import t from 'tap';
import { loadIdpSettings, oauthChecklist, runIdpTest } from '../../src/idp/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { seedTemplates, setKeycloakIdp, startIdpDaemon } from '../helpers/idp-login.js';
import type { IdpDaemon } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { DoubleClient, KeycloakDouble } from '../helpers/keycloak-double.js';
import { MAIL_CLIENTS, MAIL_OAUTH, accessToken } from '../helpers/oauth-world.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

const CLIENTS: DoubleClient[] = [
  ...MAIL_CLIENTS,
  // Another app of the same realm: its tokens are for someone else.
  { clientId: 'webshop', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [], optionalScopes: ['mail'] },
  { clientId: 'spoofer', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [], optionalScopes: ['mail'], audience: ['mail-server'] },
];

const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'].map((u) => ({
  username: u,
  email: `${u}@example.org`,
  enabled: true,
  emailVerified: true,
  password: `pw-${u}`,
  firstName: u,
  attributes: { mailcow_template: ['staff'] },
}));

const OAUTH = { ...MAIL_OAUTH, jwks_cooldown: '0s' };

interface World {
  tdb: TestDatabase;
  kc: KeycloakDouble;
}

async function world(t: Teardown): Promise<World> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  for (const u of ['alice', 'bob']) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'keycloak' });
  await seedMailbox(tdb, 'carol@example.org', '{PLAIN}carol-local', { authsource: 'mailcow' });
  await seedMailbox(tdb, 'dave@example.org', '', { authsource: 'keycloak', attributes: { imap_access: '0' } });
  await seedMailbox(tdb, 'erin@example.org', '', { authsource: 'keycloak', active: 0 });
  const kc = await startKeycloakDouble({ clients: structuredClone(CLIENTS), users: USERS });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '1' });
  return { tdb, kc };
}

async function daemon(t: Teardown, w: World, oauth: Record<string, unknown> = OAUTH, extra: Record<string, unknown> = {}): Promise<IdpDaemon> {
  return startIdpDaemon(t, w.tdb, { oauth, ...extra });
}

interface Answer {
  result: string;
  user?: string;
  reason?: string;
}

async function login(d: IdpDaemon, user: string, password: string, mech = 'XOAUTH2', service = 'imap'): Promise<Answer> {
  const res = await fetch(`${d.url}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, password, service, remote_ip: '192.0.2.10', mech }),
  });
  if (res.status !== 200) throw new Error(`passdb HTTP ${res.status}`);
  return (await res.json()) as Answer;
}

async function introspect(d: IdpDaemon, tok: string, headers: Record<string, string> = { 'x-dovecot-auth-service': 'imap' }): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${d.url}/v1/oauth2/introspect`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: `token=${encodeURIComponent(tok)}`,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

t.test('JWT access tokens from the Keycloak double', async (t) => {
  const w = await world(t);
  const d = await daemon(t, w);
  const issued: string[] = [];
  const tok = async (user: string, o: { client?: string; scope?: string } = {}) => {
    const x = await accessToken(w.kc, user, o);
    issued.push(x);
    return x;
  };

  const alice = await tok('alice');
  t.match(await login(d, 'alice@example.org', alice, 'XOAUTH2'), { result: 'ok', user: 'alice@example.org', reason: 'oauth bearer token (jwt)' }, 'XOAUTH2: valid token');
  t.match(await login(d, 'alice@example.org', alice, 'OAUTHBEARER'), { result: 'ok', user: 'alice@example.org' }, 'OAUTHBEARER: valid token');
  t.match(await login(d, 'Alice@Example.ORG', alice, 'xoauth2'), { result: 'ok', user: 'alice@example.org' }, 'login name and mechanism compared case-insensitively');
  t.match(await login(d, 'alice@example.org', alice, 'PLAIN'), { result: 'password_mismatch' }, 'the token is no password for PLAIN');
  t.match(await login(d, 'bob@example.org', alice, 'XOAUTH2'), { result: 'password_mismatch', reason: /email claim names another user/ }, "alice's token does not open bob's mailbox");

  t.match(await login(d, 'alice@example.org', await tok('alice', { scope: 'openid' })), { result: 'password_mismatch', reason: /lacks scope mail/ }, 'missing required scope');
  t.match(await login(d, 'alice@example.org', await tok('alice', { client: 'webshop' })), { result: 'password_mismatch', reason: /audience .* is not one of oauth.audiences/ }, 'wrong audience');
  t.match(await login(d, 'alice@example.org', await tok('alice', { client: 'spoofer' })), { result: 'password_mismatch', reason: /client "spoofer" is not one of oauth.clients/ }, 'wrong azp');

  // An ID token of the right client is not an access token.
  const idRes = await fetch(`${w.kc.serverUrl}/realms/${w.kc.realm}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', client_id: 'thunderbird', username: 'alice', password: 'pw-alice', scope: 'openid mail' }).toString(),
  });
  const idToken = ((await idRes.json()) as { id_token: string }).id_token;
  issued.push(idToken);
  t.match(await login(d, 'alice@example.org', idToken), { result: 'password_mismatch' }, 'an ID token is refused');

  w.kc.config.clockSkewSec = -3600;
  t.match(await login(d, 'alice@example.org', await tok('alice')), { result: 'password_mismatch', reason: /token expired/ }, 'expired token');
  w.kc.config.clockSkewSec = 0;

  // Another realm of the same server signs with the same key: right signature, wrong issuer.
  const other = await startKeycloakDouble({ realm: 'other', clients: structuredClone(CLIENTS), users: USERS });
  t.teardown(() => other.close());
  t.match(await login(d, 'alice@example.org', await tok('alice').then(() => accessToken(other, 'alice'))), { result: 'password_mismatch', reason: /wrong issuer/ }, 'wrong issuer');

  // Mailbox rules after a valid token.
  t.match(await login(d, 'carol@example.org', await tok('carol')), { result: 'password_mismatch', reason: /authsource is mailcow/ }, 'a mailcow mailbox takes no tokens');
  t.match(await login(d, 'dave@example.org', await tok('dave')), { result: 'user_disabled', reason: /imap_access/ }, 'service not allowed');
  t.match(await login(d, 'dave@example.org', await tok('dave'), 'XOAUTH2', 'pop3'), { result: 'ok' }, 'the same token for an allowed service');
  t.match(await login(d, 'erin@example.org', await tok('erin')), { result: 'user_disabled' }, 'inactive mailbox');
  const frank = await login(d, 'frank@example.org', await tok('frank'));
  t.match(frank, { result: 'ok', user: 'frank@example.org' }, 'no mailbox yet: provisioned as on a password login');
  const rows = await w.tdb.sql<{ authsource: string }>('SELECT authsource FROM mailbox WHERE username = ?', ['frank@example.org']);
  t.same(rows, [{ authsource: 'keycloak' }], 'the mailbox was created as a keycloak mailbox');

  t.match(await login(d, 'alice@example.org', 'not a token at all!'), { result: 'password_mismatch', reason: /not a bearer token/ }, 'garbage');
  t.match(await login(d, 'alice@example.org', 'opaque-looking-token'), { result: 'password_mismatch' }, 'an opaque token when the IdP issues none');

  // The door: no token (or its signature) reaches a log line.
  const text = d.logText();
  t.ok(text.length > 0, 'the daemon logged');
  for (const x of issued) {
    t.notOk(text.includes(x), 'no token in the log');
    t.notOk(text.includes(x.split('.')[2] ?? x), 'no token signature in the log');
  }
});

t.test('key rotation: an unknown kid refetches the JWKS once, within the cooldown', async (t) => {
  const w = await world(t);
  const d = await daemon(t, w);
  t.match(await login(d, 'alice@example.org', await accessToken(w.kc, 'alice')), { result: 'ok' });
  const certs = w.kc.countRequests('certs');
  t.equal(certs, 1, 'the JWKS was fetched once');
  t.match(await login(d, 'alice@example.org', await accessToken(w.kc, 'alice')), { result: 'ok' });
  t.equal(w.kc.countRequests('certs'), 1, 'and kept');
  await w.kc.rotateSigningKey();
  t.match(await login(d, 'alice@example.org', await accessToken(w.kc, 'alice')), { result: 'ok' }, 'a token signed with the rotated key');
  t.equal(w.kc.countRequests('certs'), 2, 'the unknown kid refetched the JWKS');

  // Right issuer and claims, but a key the IdP never published.
  const { privateKey } = await generateKeyPair('RS256');
  const now = Math.floor(Date.now() / 1000);
  const forged = await new SignJWT({ iss: w.kc.issuer, sub: 'x', azp: 'thunderbird', aud: ['mail-server'], scope: 'openid mail', email: 'alice@example.org', typ: 'Bearer', exp: now + 300, iat: now })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'forged-kid' })
    .sign(privateKey);
  t.match(await login(d, 'alice@example.org', forged), { result: 'password_mismatch', reason: /unknown kid/ }, 'forged token refused');

  // With a cooldown, a flood of unknown kids costs at most one fetch per cooldown.
  const w2 = await world(t);
  const d2 = await daemon(t, w2, { ...OAUTH, jwks_cooldown: '1h' });
  t.match(await login(d2, 'alice@example.org', await accessToken(w2.kc, 'alice')), { result: 'ok' });
  await w2.kc.rotateSigningKey();
  const before = w2.kc.countRequests('certs');
  for (let i = 0; i < 3; i++) t.match(await login(d2, 'alice@example.org', await accessToken(w2.kc, 'alice')), { result: 'password_mismatch', reason: /unknown kid/ });
  t.equal(w2.kc.countRequests('certs'), before, 'no refetch inside the cooldown');
});

t.test('introspection: revoked tokens, IdP down, the endpoint for Dovecot 2.4', async (t) => {
  const w = await world(t);
  const d = await daemon(t, w, { ...OAUTH, introspection: 'always' });
  const alice = await accessToken(w.kc, 'alice');
  t.match(await login(d, 'alice@example.org', alice, 'OAUTHBEARER'), { result: 'ok', reason: 'oauth bearer token (introspection)' }, 'introspected');
  t.ok(w.kc.countRequests('introspect') >= 1, 'the double was asked');
  const jti = w.kc.issued().at(-1)?.jti ?? '';
  w.kc.revokeToken(jti);
  t.match(await login(d, 'alice@example.org', alice), { result: 'password_mismatch', reason: /not active/ }, 'revoked token refused');

  // mailauth's own RFC 7662 endpoint.
  const bob = await accessToken(w.kc, 'bob');
  t.same(await introspect(d, bob), { status: 200, body: { active: true, username: 'bob@example.org', token_type: 'Bearer' } }, 'active, with the mailbox name');
  t.same(await introspect(d, alice), { status: 200, body: { active: false } }, 'revoked: inactive');
  t.same(await introspect(d, await accessToken(w.kc, 'dave')), { status: 200, body: { active: false } }, 'service not allowed: inactive');
  t.same((await introspect(d, await accessToken(w.kc, 'dave'), { 'x-dovecot-auth-service': 'pop3' })).body.active, true, 'allowed service: active');
  t.equal((await introspect(d, bob, {})).status, 400, 'no X-Dovecot-Auth-Service: 400');

  w.kc.inject('*', { kind: 'reset' });
  t.match(await login(d, 'bob@example.org', bob), { result: 'internal_failure' }, 'IdP down: internal_failure');
  // The HTTP answer names an internal fault by its kind only (issue 16); the decision's log line has the cause.
  t.match(d.logs.filter((l) => l.msg === 'passdb decision').at(-1), { result: 'internal_failure', reason: /identity provider unavailable \(ERR_IDP_UNAVAILABLE\)/ }, 'logged with its cause');
  t.equal((await introspect(d, bob)).status, 503, 'IdP down: the endpoint answers 503 (Dovecot: temporary failure)');
});

t.test('IdP down before the first key fetch; OAuth off', async (t) => {
  const w = await world(t);
  // A short IdP back-off (idp.cooldown): the token checks go through the IdP's breaker.
  const d = await daemon(t, w, OAUTH, { idp: { cooldown: '1s' }, outage: { jitter: 0 } });
  const alice = await accessToken(w.kc, 'alice');
  w.kc.inject('*', { kind: 'reset' });
  t.match(await login(d, 'alice@example.org', alice), { result: 'internal_failure' }, 'JWKS unreachable: internal_failure');
  w.kc.clearFaults();
  const asked = w.kc.countRequests('discovery') + w.kc.countRequests('certs');
  t.match(await login(d, 'alice@example.org', alice), { result: 'internal_failure' }, 'reachable again, but within the back-off: not asked yet');
  t.equal(w.kc.countRequests('discovery') + w.kc.countRequests('certs'), asked, 'the IdP was left alone');
  await new Promise((r) => setTimeout(r, 1100));
  t.match(await login(d, 'alice@example.org', alice), { result: 'ok' }, 'after the back-off: ok');

  // Keys known, the IdP gone at the routine refresh: the kept keys go on working.
  const aged = await daemon(t, w, { ...OAUTH, jwks_max_age: '1s', jwks_cooldown: '30s' });
  const bob = await accessToken(w.kc, 'bob');
  t.match(await login(aged, 'bob@example.org', bob), { result: 'ok' }, 'keys fetched');
  await new Promise((r) => setTimeout(r, 1100));
  w.kc.inject('*', { kind: 'reset' });
  t.match(await login(aged, 'bob@example.org', bob), { result: 'ok' }, 'refresh failed: the kept keys still verify');
  const certsAfterFailure = w.kc.countRequests('certs');
  t.match(await login(aged, 'bob@example.org', bob), { result: 'ok' }, 'and again');
  t.equal(w.kc.countRequests('certs'), certsAfterFailure, 'no new refresh attempt within the cooldown');
  w.kc.clearFaults();

  const off = await startIdpDaemon(t, w.tdb);
  t.match(await login(off, 'alice@example.org', alice), { result: 'password_mismatch', reason: /logins are off/ }, 'oauth.enabled false: refused');
  t.equal((await introspect(off, alice)).status, 404, 'and no introspection endpoint');
});

t.test('the introspection endpoint checks its caller like the passdb', async (t) => {
  const w = await world(t);
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'oauth-tok-'));
  const secret = 'listen-token-0123456789';
  writeFileSync(join(dir, 'token'), secret);
  const d = await daemon(t, w, OAUTH, { listen: { token_file: join(dir, 'token') } });
  const bob = await accessToken(w.kc, 'bob');
  t.equal((await introspect(d, bob)).status, 401, 'no credentials: 401');
  const basic = (p: string) => ({ 'x-dovecot-auth-service': 'imap', authorization: `Basic ${Buffer.from(`dovecot:${p}`).toString('base64')}` });
  t.equal((await introspect(d, bob, basic('wrong-token-000000000'))).status, 401, 'wrong Basic password: 401');
  t.same(await introspect(d, bob, basic(secret)), { status: 200, body: { active: true, username: 'bob@example.org', token_type: 'Bearer' } }, 'Basic password = listen token');
  t.same((await introspect(d, bob, { 'x-dovecot-auth-service': 'imap', 'x-mailauth-token': secret })).body.active, true, 'X-Mailauth-Token works too');
});

t.test('mailauth idp test: the JWKS and introspection lines', async (t) => {
  const w = await world(t);
  const settings = await loadIdpSettings(w.tdb.db);
  if (settings === null) throw new Error('no IdP settings');
  const deps = (oauth: Record<string, unknown>) => ({
    templateNames: async () => ['Staff'],
    idp: { timeoutMs: 3000, retries: 0, retryBackoffMs: 0 },
    idpHashSchemes: ['SSHA256'],
    passwordGrant: false,
    oauth: testConfig(w.tdb, { oauth }).oauth,
  });
  const lines = async (oauth: Record<string, unknown>) => Object.fromEntries((await oauthChecklist(settings, deps(oauth))).map((c) => [c.id, c]));

  t.same(await oauthChecklist(settings, { ...deps(OAUTH), oauth: testConfig(w.tdb).oauth }), [], 'oauth off: no lines');
  const ok = await lines(OAUTH);
  t.match(ok['oauth-jwks'], { status: 'pass', required: true, detail: /1 key with a kid/ }, 'JWKS fetched');
  t.match(ok['oauth-introspection'], { status: 'pass', required: true, detail: /made-up token is inactive/ }, 'introspection probed with mailauth\'s client');
  t.match((await lines({ ...OAUTH, introspection: 'off' }))['oauth-introspection'], { status: 'skip' }, 'introspection off: skipped');

  w.kc.rotateClientSecret('mailauth');
  t.match((await lines(OAUTH))['oauth-introspection'], { status: 'fail', fix: /check its id and secret/ }, 'wrong client secret: fails with the fix');
  w.kc.inject('*', { kind: 'reset' });
  t.match((await lines(OAUTH))['oauth-jwks'], { status: 'fail', fix: /reaches the IdP/ }, 'IdP down: the JWKS line fails');
  w.kc.clearFaults();

  // The whole checklist carries the lines too.
  const all = await runIdpTest(settings, deps(OAUTH));
  t.ok(all.some((c) => c.id === 'oauth-jwks'), 'runIdpTest includes them');
});
