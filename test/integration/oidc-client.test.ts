/**
 * The generic OIDC client (openid-client v6 + jose) over real HTTP: against a
 * real oidc-provider and against the Keycloak double acting as a generic OP.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createOidcClient, discoverOidc, guessIssuer } from '../../src/idp/index.js';
import type { OidcClientOptions } from '../../src/idp/index.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import { startOidcOp } from '../helpers/oidc-op.js';
import { codeOf } from '../helpers/errors.js';

const op = await startOidcOp({
  clients: [
    { clientId: 'mailauth', secret: 'op-secret', grantTypes: ['client_credentials', 'password'] },
  ],
});
t.teardown(() => op.close());

const base = (over: Partial<OidcClientOptions> = {}): OidcClientOptions => ({
  issuer: op.issuer,
  clientId: 'mailauth',
  clientSecret: 'op-secret',
  scopes: ['profile', 'email', 'mailcow_template'],
  timeoutMs: 1500,
  ...over,
});

function client(tt: { teardown(fn: () => unknown): void }, over: Partial<OidcClientOptions> = {}) {
  const c = createOidcClient(base(over));
  tt.teardown(() => c.close());
  return c;
}

t.test('discovery, client credentials, password grant, userinfo, local JWT check', async (t) => {
  const c = client(t);
  t.match(await c.endpoints(), { issuer: op.issuer, tokenUrl: op.tokenUrl, userinfoUrl: op.userinfoUrl, authorizeUrl: op.authorizeUrl, jwksUri: String });
  const cc = await c.clientCredentials();
  t.match(cc, { accessToken: String, expiresIn: 300 });
  t.match(cc.scope, /openid/, 'openid is always requested');
  const pw = await c.passwordGrant('alice', 'pw-alice');
  if (!pw.ok) throw new Error('password grant failed');
  t.match(pw.scope, /openid/);
  t.match(await c.userinfo(pw.accessToken), { sub: 'u-1', email: 'alice@example.org', mailcow_template: 'staff' });
  // oidc-provider issues JWT access tokens for client credentials (typ at+jwt); the custom password grant's are opaque.
  const payload = await c.verifyAccessToken(cc.accessToken);
  t.equal(payload.client_id, 'mailauth');
  t.match(await c.passwordGrant('alice', 'wrong'), { ok: false, reason: 'invalid_credentials', error: 'invalid_grant' });
});

t.test('static endpoints without an issuer (Keycloak-shaped token URL names the issuer)', async (t) => {
  t.equal(guessIssuer(op.tokenUrl), op.issuer);
  t.equal(guessIssuer('https://id.example.org/oauth2/token'), 'https://id.example.org');
  const c = client(t, { issuer: null, tokenUrl: op.tokenUrl, userinfoUrl: op.userinfoUrl });
  const pw = await c.passwordGrant('alice', 'pw-alice');
  if (!pw.ok) throw new Error('password grant failed');
  t.equal((await c.userinfo(pw.accessToken)).sub, 'u-1');
});

t.test('errors are coded at the edge', async (t) => {
  const bad = await codeOf(client(t, { clientSecret: 'wrong' }).clientCredentials());
  t.equal(bad.code, 'ERR_IDP_AUTH');
  t.equal(bad.details?.reason, 'bad_client_credentials');
  t.notMatch(`${bad.message} ${JSON.stringify(bad.details)}`, 'wrong');

  const missing = await codeOf(client(t, { issuer: `${op.url}/realms/nope` }).endpoints());
  t.equal(missing.code, 'ERR_IDP_NOT_FOUND');

  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const down = await codeOf(client(t, { issuer: `http://127.0.0.1:${port}/realms/x` }).endpoints());
  t.equal(down.code, 'ERR_IDP_UNAVAILABLE');
  t.equal(down.details?.networkCode, 'ECONNREFUSED');

  const hang = http.createServer(() => undefined);
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    hang.closeAllConnections();
    hang.close();
  });
  const slow = await codeOf(client(t, { issuer: `http://127.0.0.1:${(hang.address() as AddressInfo).port}/x`, timeoutMs: 200 }).endpoints());
  t.equal(slow.code, 'ERR_IDP_TIMEOUT');

  const garbage = await codeOf(client(t).userinfo('not-a-token'));
  t.equal(garbage.code, 'ERR_IDP_AUTH');
  t.equal(garbage.details?.reason, 'invalid_token');
});

t.test('transport rule: plain http only to loopback, or with ignore_ssl_error', async (t) => {
  t.throws(() => createOidcClient(base({ issuer: 'http://id.example.org' })), { code: 'ERR_INVALID_INPUT' });
  const lax = createOidcClient(base({ issuer: 'http://id.example.org', ignoreSslError: true }));
  await lax.close();
  t.pass('allowed with ignore_ssl_error');
});

t.test('against the Keycloak double: userinfo needs openid, issuer mismatch, JWT checks', async (t) => {
  const clock = { now: Date.now() };
  const kc = await startKeycloakDouble({
    now: () => clock.now,
    users: [{ username: 'alice', email: 'alice@example.org', password: 'pw', attributes: { mailcow_template: ['staff'] } }],
  });
  t.teardown(() => kc.close());
  const c = client(t, { issuer: kc.issuer, clientSecret: 'kc-secret', now: () => clock.now });
  const pw = await c.passwordGrant('alice@example.org', 'pw');
  if (!pw.ok) throw new Error('password grant failed');
  t.match(await c.userinfo(pw.accessToken), { preferred_username: 'alice', mailcow_template: 'staff' });
  const payload = await c.verifyAccessToken(pw.accessToken);
  t.match(payload, { azp: 'mailauth', typ: 'Bearer' }, 'typ JWT tokens verify (no at+jwt requirement)');
  t.match(await c.passwordGrant('alice', 'nope'), { ok: false, reason: 'invalid_credentials' });
  kc.disableUser('alice');
  t.match(await c.passwordGrant('alice', 'pw'), { ok: false, reason: 'account_disabled' });

  const cc = await c.clientCredentials();
  await kc.rotateSigningKey();
  // A verifier that fetches the keys now finds no key for the old kid (a running one keeps its cached set).
  const stale = await codeOf(client(t, { issuer: kc.issuer, clientSecret: 'kc-secret' }).verifyAccessToken(cc.accessToken));
  t.equal(stale.code, 'ERR_IDP_AUTH');
  t.match(String(stale.details?.reason), /ERR_JWKS_NO_MATCHING_KEY|ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);

  const fresh = await c.clientCredentials();
  clock.now += 3_600_000;
  const later = client(t, { issuer: kc.issuer, clientSecret: 'kc-secret', now: () => clock.now });
  t.equal((await codeOf(later.verifyAccessToken(fresh.accessToken))).details?.reason, 'ERR_JWT_EXPIRED');

  kc.client('mailauth').directAccessGrantsEnabled = false;
  const noGrant = await codeOf(c.passwordGrant('alice', 'pw'));
  t.equal(noGrant.code, 'ERR_IDP_AUTH');
  t.equal(noGrant.details?.reason, 'grant_not_allowed');

  const other = await startKeycloakDouble({ issuerOverride: 'https://login.example.org/realms/mail' });
  t.teardown(() => other.close());
  const mismatch = await codeOf(discoverOidc(`${other.url}/realms/mail`, { timeoutMs: 1000 }));
  t.equal(mismatch.code, 'ERR_IDP_BAD_RESPONSE');
  t.equal(mismatch.details?.reason, 'issuer_mismatch');
});
