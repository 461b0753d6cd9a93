/**
 * Issue 20 against a real OpenID provider (panva oidc-provider): RFC 9068 JWT
 * access tokens (typ at+jwt, aud = the resource, client_id instead of azp)
 * checked locally, opaque access tokens through its RFC 7662 introspection,
 * revocation through its RFC 7009 endpoint, and the provider gone.
 */
import t from 'tap';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { setOidcIdp, startIdpDaemon } from '../helpers/idp-login.js';
import type { IdpDaemon } from '../helpers/idp-login.js';
import { DEFAULT_OP_CLIENT, DEFAULT_OP_USERS, startOidcOp } from '../helpers/oidc-op.js';
import type { OidcOp, OidcOpOptions } from '../helpers/oidc-op.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function world(t: Teardown, op: OidcOpOptions): Promise<{ tdb: TestDatabase; op: OidcOp }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'generic-oidc' });
  await seedMailbox(tdb, 'bob@example.org', '', { authsource: 'generic-oidc' });
  const provider = await startOidcOp({ ...op, clients: [DEFAULT_OP_CLIENT, { clientId: 'thunderbird', secret: 'tb-secret', grantTypes: ['password'] }], users: DEFAULT_OP_USERS });
  t.teardown(() => provider.close());
  await setOidcIdp(tdb, provider, { login_provisioning: '0' });
  return { tdb, op: provider };
}

async function login(d: IdpDaemon, user: string, token: string, mech = 'OAUTHBEARER'): Promise<{ result: string; user?: string; reason?: string }> {
  const res = await fetch(`${d.url}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, password: token, service: 'imap', remote_ip: '192.0.2.20', mech }),
  });
  return (await res.json()) as { result: string; user?: string; reason?: string };
}

t.test('JWT access tokens (RFC 9068) checked against the JWKS', async (t) => {
  const { tdb, op } = await world(t, { passwordGrantFormat: 'jwt' });
  const d = await startIdpDaemon(t, tdb, { oauth: { enabled: true, audiences: [op.audience], clients: ['thunderbird'], required_scopes: ['email'] } });
  const alice = await op.passwordToken('alice', { clientId: 'thunderbird' });
  t.equal(alice.split('.').length, 3, 'a JWT');
  t.match(await login(d, 'alice@example.org', alice), { result: 'ok', user: 'alice@example.org', reason: 'oauth bearer token (jwt)' }, 'valid token');
  t.match(await login(d, 'bob@example.org', alice), { result: 'password_mismatch', reason: /another user/ }, 'email of another user');
  t.match(await login(d, 'alice@example.org', await op.passwordToken('alice', { clientId: 'thunderbird', scope: 'openid' })), { result: 'password_mismatch', reason: /lacks scope email/ }, 'missing scope');
  t.match(await login(d, 'alice@example.org', await op.passwordToken('alice', { clientId: 'mailauth' })), { result: 'password_mismatch', reason: /client "mailauth" is not one of oauth.clients/ }, 'token of another client');

  const strict = await startIdpDaemon(t, tdb, { oauth: { enabled: true, audiences: ['urn:other-api'] } });
  t.match(await login(strict, 'alice@example.org', alice), { result: 'password_mismatch', reason: /audience/ }, 'wrong audience');
  const otherIssuer = await startIdpDaemon(t, tdb, { oauth: { enabled: true, clients: ['thunderbird'], issuer: `${op.issuer}-other`, jwks_url: `${op.issuer}/protocol/openid-connect/certs`, introspection: 'off' } });
  t.match(await login(otherIssuer, 'alice@example.org', alice), { result: 'password_mismatch', reason: /wrong issuer/ }, 'wrong issuer');
});

t.test('expired JWT', async (t) => {
  const { tdb, op } = await world(t, { passwordGrantFormat: 'jwt', accessTokenTtlSec: 1 });
  const d = await startIdpDaemon(t, tdb, { oauth: { enabled: true, clients: ['thunderbird'], clock_tolerance: '0s' } });
  const alice = await op.passwordToken('alice', { clientId: 'thunderbird' });
  await new Promise((r) => setTimeout(r, 2100));
  t.match(await login(d, 'alice@example.org', alice), { result: 'password_mismatch', reason: /expired/ }, 'expired token');
});

t.test('opaque access tokens through introspection; revocation; the provider gone', async (t) => {
  const { tdb, op } = await world(t, {});
  const d = await startIdpDaemon(t, tdb, { oauth: { enabled: true, clients: ['thunderbird'], required_scopes: ['email'] } });
  const alice = await op.passwordToken('alice', { clientId: 'thunderbird' });
  t.not(alice.split('.').length, 3, 'an opaque token');
  t.match(await login(d, 'alice@example.org', alice, 'XOAUTH2'), { result: 'ok', user: 'alice@example.org', reason: 'oauth bearer token (introspection)' }, 'introspected: ok');
  t.match(await login(d, 'bob@example.org', alice), { result: 'password_mismatch', reason: /another user/ }, 'email of another user');

  const off = await startIdpDaemon(t, tdb, { oauth: { enabled: true, clients: ['thunderbird'], introspection: 'off' } });
  t.match(await login(off, 'alice@example.org', alice), { result: 'password_mismatch', reason: /not a JWT/ }, 'introspection off: refused');

  // RFC 7009 revocation by the client that holds the token.
  const rev = await fetch(op.revocationUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('thunderbird:tb-secret').toString('base64')}` },
    body: `token=${encodeURIComponent(alice)}`,
  });
  t.equal(rev.status, 200, 'revoked at the provider');
  t.match(await login(d, 'alice@example.org', alice), { result: 'password_mismatch', reason: /not active/ }, 'revoked token refused');

  const bob = await op.passwordToken('bob', { clientId: 'thunderbird' });
  await op.close();
  t.match(await login(d, 'bob@example.org', bob), { result: 'internal_failure' }, 'provider down: internal_failure');
  t.match(d.logs.filter((l) => l.msg === 'passdb decision').at(-1), { reason: /identity provider unavailable/ }, 'logged with its cause');
  t.notOk(d.logText().includes(alice) || d.logText().includes(bob), 'no token in the log');
});
