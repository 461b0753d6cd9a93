/**
 * The Keycloak double held to the reference (keycloak-oidc.md §1): raw HTTP
 * requests, exact statuses, bodies and headers, row by row.
 */
import t from 'tap';
import { decodeProtectedHeader, decodeJwt } from 'jose';
import { request } from 'undici';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { KeycloakDouble } from '../helpers/keycloak-double.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text: string;
}

async function call(url: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; form?: string } = {}): Promise<Answer> {
  const res = await request(url, {
    method: init.method ?? (init.form === undefined ? 'GET' : 'POST'),
    headers: { ...(init.form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }), ...init.headers },
    body: init.form,
  });
  const text = await res.body.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: res.statusCode, headers: res.headers, body, text };
}

const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

async function start(tt: { teardown(fn: () => unknown): void }, over: Parameters<typeof startKeycloakDouble>[0] = {}): Promise<KeycloakDouble> {
  const kc = await startKeycloakDouble({
    clients: [
      { clientId: 'mailauth', secret: 'kc-secret', serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users'] },
      { clientId: 'web', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [] },
      { clientId: 'nosa', secret: 's', serviceAccountsEnabled: false, adminRoles: [] },
    ],
    users: [
      { username: 'alice', email: 'alice@example.org', password: 'pw', firstName: 'Alice', attributes: { mailcow_template: ['staff'] } },
      { username: 'bob', email: 'bob@example.org', password: 'pw', enabled: false },
    ],
    ...over,
  });
  tt.teardown(() => kc.close());
  return kc;
}

t.test('discovery and certs', async (t) => {
  const kc = await start(t);
  const d = await call(`${kc.serverUrl}/realms/mail/.well-known/openid-configuration`);
  t.equal(d.status, 200);
  t.match(d.body, {
    issuer: `${kc.url}/realms/mail`,
    token_endpoint: `${kc.url}/realms/mail/protocol/openid-connect/token`,
    userinfo_endpoint: `${kc.url}/realms/mail/protocol/openid-connect/userinfo`,
    jwks_uri: `${kc.url}/realms/mail/protocol/openid-connect/certs`,
    grant_types_supported: ['authorization_code', 'client_credentials', 'implicit', 'password', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:openid:params:grant-type:ciba'],
  });
  t.equal((await call(`${kc.url}/realms/nope/.well-known/openid-configuration`)).status, 404);
  const certs = await call(`${kc.url}/realms/mail/protocol/openid-connect/certs`);
  t.match(certs.body, { keys: [{ kty: 'RSA', alg: 'RS256', use: 'sig', kid: String }] });
});

t.test('token endpoint: client authentication rows (§1.4)', async (t) => {
  const kc = await start(t);
  const tok = `${kc.url}/realms/mail/protocol/openid-connect/token`;
  const rows: [string, { headers?: Record<string, string>; form: string }, number, unknown][] = [
    ['no grant_type', { form: 'x=1' }, 400, { error: 'invalid_request', error_description: 'Missing form parameter: grant_type' }],
    ['duplicated parameter', { form: 'grant_type=client_credentials&scope=a&scope=b', headers: { authorization: basic('mailauth', 'kc-secret') } }, 400, { error: 'invalid_request', error_description: 'duplicated parameter' }],
    ['unknown grant', { form: 'grant_type=foo', headers: { authorization: basic('mailauth', 'kc-secret') } }, 400, { error: 'unsupported_grant_type', error_description: 'Unsupported grant_type' }],
    ['no client id', { form: 'grant_type=client_credentials' }, 400, { error: 'invalid_client', error_description: 'Missing client_id parameter' }],
    ['secret missing', { form: 'grant_type=client_credentials&client_id=mailauth' }, 401, { error: 'unauthorized_client', error_description: 'Client secret not provided in request' }],
    ['wrong secret', { form: 'grant_type=client_credentials', headers: { authorization: basic('mailauth', 'nope') } }, 401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' }],
    ['unknown client', { form: 'grant_type=client_credentials&client_id=ghost&client_secret=x' }, 401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' }],
    ['form client_id overrides the header', { form: 'grant_type=client_credentials&client_id=ghost', headers: { authorization: basic('mailauth', 'kc-secret') } }, 401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' }],
    ['public client, client_credentials', { form: 'grant_type=client_credentials&client_id=web' }, 401, { error: 'unauthorized_client', error_description: 'Public client not allowed to retrieve service account' }],
    ['service accounts off', { form: 'grant_type=client_credentials', headers: { authorization: basic('nosa', 's') } }, 401, { error: 'unauthorized_client', error_description: 'Client not enabled to retrieve service account' }],
    ['password: unknown user', { form: 'grant_type=password&username=zed&password=pw', headers: { authorization: basic('mailauth', 'kc-secret') } }, 401, { error: 'invalid_grant', error_description: 'Invalid user credentials' }],
    ['password: wrong password', { form: 'grant_type=password&username=alice&password=x', headers: { authorization: basic('mailauth', 'kc-secret') } }, 401, { error: 'invalid_grant', error_description: 'Invalid user credentials' }],
    ['password: disabled', { form: 'grant_type=password&username=bob&password=pw', headers: { authorization: basic('mailauth', 'kc-secret') } }, 400, { error: 'invalid_grant', error_description: 'Account disabled' }],
    ['password: username missing', { form: 'grant_type=password&password=pw', headers: { authorization: basic('mailauth', 'kc-secret') } }, 401, { error: 'invalid_request', error_description: 'Missing parameter: username' }],
    ['password: direct grants off', { form: 'grant_type=password&username=alice&password=pw', headers: { authorization: basic('nosa', 's') } }, 400, { error: 'unauthorized_client', error_description: 'Client not allowed for direct access grants' }],
  ];
  for (const [name, req, status, body] of rows) {
    const a = await call(tok, req);
    t.equal(a.status, status, name);
    t.same(a.body, body, name);
    t.equal(a.headers['cache-control'], 'no-store', `${name}: no-store`);
  }
  const malformed = await call(tok, { form: 'grant_type=client_credentials', headers: { authorization: 'Bearer nonsense' } });
  t.equal(malformed.status, 401);
  t.equal(malformed.headers['www-authenticate'], 'Basic realm="mail"');
});

t.test('token endpoint: success shapes and the JWT (§1.4, §1.7)', async (t) => {
  const kc = await start(t);
  const tok = `${kc.url}/realms/mail/protocol/openid-connect/token`;
  const cc = await call(tok, { form: 'grant_type=client_credentials', headers: { authorization: basic('mailauth', 'kc-secret') } });
  t.equal(cc.status, 200);
  t.same(Object.keys(cc.body as object), ['access_token', 'expires_in', 'refresh_expires_in', 'token_type', 'not-before-policy', 'scope']);
  t.match(cc.body, { expires_in: 300, refresh_expires_in: 0, token_type: 'Bearer' });
  const at = (cc.body as { access_token: string }).access_token;
  t.match(decodeProtectedHeader(at), { alg: 'RS256', typ: 'JWT', kid: String });
  t.match(decodeJwt(at), { typ: 'Bearer', azp: 'mailauth', iss: `${kc.url}/realms/mail`, preferred_username: 'service-account-mailauth', client_id: 'mailauth' });
  const pw = await call(tok, { form: 'grant_type=password&username=alice%40example.org&password=pw&scope=openid', headers: { authorization: basic('mailauth', 'kc-secret') } });
  t.equal(pw.status, 200);
  t.match(pw.body, { refresh_expires_in: 1800, refresh_token: String, id_token: String, session_state: String, scope: 'openid profile email' });
  const noOpenid = await call(tok, { form: 'grant_type=password&username=alice&password=pw', headers: { authorization: basic('mailauth', 'kc-secret') } });
  t.notOk('id_token' in (noOpenid.body as object), 'id_token only with openid');
  kc.config.clientCredentialsRefreshToken = true;
  const old = await call(tok, { form: 'grant_type=client_credentials', headers: { authorization: basic('mailauth', 'kc-secret') } });
  t.match(old.body, { refresh_token: String, session_state: String });
});

t.test('introspection rows (§1.5)', async (t) => {
  const kc = await start(t);
  const tok = `${kc.url}/realms/mail/protocol/openid-connect/token`;
  const intro = `${tok}/introspect`;
  const at = ((await call(tok, { form: 'grant_type=client_credentials', headers: { authorization: basic('mailauth', 'kc-secret') } })).body as { access_token: string }).access_token;
  const auth = { authorization: basic('mailauth', 'kc-secret') };
  t.same((await call(intro, { form: `token=${at}`, headers: { authorization: basic('mailauth', 'bad') } })).body, { error: 'invalid_request', error_description: 'Authentication failed.' });
  t.same((await call(intro, { form: `token=${at}&client_id=web` })).body, { error: 'invalid_request', error_description: 'Client not allowed.' });
  t.same((await call(intro, { form: 'x=1', headers: auth })).body, { error: 'invalid_request', error_description: 'Token not provided.' });
  t.same((await call(intro, { form: `token=${at}&token_type_hint=x`, headers: auth })).body, { error: 'invalid_request', error_description: 'Unsupported token type [x].' });
  t.match((await call(intro, { form: `token=${at}`, headers: auth })).body, { active: true, client_id: 'mailauth', username: 'service-account-mailauth', token_type: 'Bearer' });
  t.same((await call(intro, { form: 'token=garbage', headers: auth })).body, { active: false });
  kc.expireAllTokens();
  t.same((await call(intro, { form: `token=${at}`, headers: auth })).body, { active: false });
});

t.test('userinfo challenges (§1.6)', async (t) => {
  const kc = await start(t);
  const tok = `${kc.url}/realms/mail/protocol/openid-connect/token`;
  const ui = `${kc.url}/realms/mail/protocol/openid-connect/userinfo`;
  const grant = async (scope: string): Promise<string> =>
    ((await call(tok, { form: `grant_type=password&username=alice&password=pw${scope}`, headers: { authorization: basic('mailauth', 'kc-secret') } })).body as { access_token: string }).access_token;
  const none = await call(ui);
  t.equal(none.status, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="mail"');
  t.equal(none.text, '');
  const bad = await call(ui, { headers: { authorization: 'Bearer x.y.z' } });
  t.equal(bad.headers['www-authenticate'], 'Bearer realm="mail", error="invalid_token", error_description="Token verification failed"');
  const noScope = await call(ui, { headers: { authorization: `Bearer ${await grant('')}` } });
  t.equal(noScope.status, 403);
  t.equal(noScope.headers['www-authenticate'], 'Bearer realm="mail", error="insufficient_scope", error_description="Missing openid scope"');
  const ok = await call(ui, { headers: { authorization: `Bearer ${await grant('&scope=openid')}` } });
  t.same(ok.body, { sub: kc.getUser('alice')?.id, email_verified: false, preferred_username: 'alice', name: 'Alice', given_name: 'Alice', email: 'alice@example.org', mailcow_template: 'staff' });
  const post = await call(ui, { form: `access_token=${await grant('&scope=openid')}` });
  t.equal(post.status, 200, 'POST with form access_token');
  kc.config.legacyUserinfoErrors = true;
  t.same((await call(ui)).body, { error: 'invalid_request', error_description: 'Token not provided' });
});

t.test('admin API rows (§1.8)', async (t) => {
  const kc = await start(t);
  const tok = `${kc.url}/realms/mail/protocol/openid-connect/token`;
  const at = ((await call(tok, { form: 'grant_type=client_credentials', headers: { authorization: basic('mailauth', 'kc-secret') } })).body as { access_token: string }).access_token;
  const h = { authorization: `Bearer ${at}` };
  const users = `${kc.url}/admin/realms/mail/users`;
  t.same(await call(users).then((a) => [a.status, a.body]), [401, { error: 'HTTP 401 Unauthorized' }]);
  const list = await call(`${users}/`, { headers: h });
  t.equal(list.status, 200, 'trailing slash accepted');
  t.same((list.body as { username: string }[]).map((u) => u.username), ['alice', 'bob'], 'no service account, sorted');
  t.same(await call(`${users}/count`, { headers: h }).then((a) => a.text), '2');
  t.equal(((await call(`${users}?first=5`, { headers: h })).body as unknown[]).length, 0, 'first past the end');
  const brief = (await call(`${users}?briefRepresentation=true`, { headers: h })).body as Record<string, unknown>[];
  t.notOk('attributes' in (brief[0] ?? {}));
  t.notOk('requiredActions' in (brief[0] ?? {}));
  const full = (await call(`${users}?username=alice&exact=true`, { headers: h })).body as Record<string, unknown>[];
  t.same(full[0]?.attributes, { mailcow_template: ['staff'] });
  t.equal(((await call(`${users}?username=service&exact=false`, { headers: h })).body as unknown[]).length, 1, 'field filters include service accounts');
  t.equal(((await call(`${users}?search=service`, { headers: h })).body as unknown[]).length, 0, 'search does not');
  t.equal(((await call(`${users}?search=al&username=bob`, { headers: h })).body as { username: string }[])[0]?.username, 'alice', 'search overrides field filters');
  const id = kc.getUser('alice')?.id ?? '';
  t.equal(((await call(`${users}?search=id:${id}`, { headers: h })).body as unknown[]).length, 1);
  t.equal((await call(`${users}/${id}`, { headers: h })).status, 200);
  t.same(await call(`${users}/nope`, { headers: h }).then((a) => [a.status, a.body]), [404, { error: 'User not found' }]);
  t.same(await call(`${kc.url}/admin/realms/other/users`, { headers: h }).then((a) => [a.status, a.body]), [404, { error: 'Realm not found.' }]);
  kc.removeRole('mailauth', 'view-users');
  t.same(await call(users, { headers: h }).then((a) => [a.status, a.body]), [403, { error: 'unknown_error' }]);
  kc.addRole('mailauth', 'query-users');
  t.same(await call(users, { headers: h }).then((a) => a.body), [], 'query-users alone: users dropped from the page');
  t.equal((await call(`${users}/${id}`, { headers: h })).status, 403, 'and no user by id');
});

t.test('/auth prefix and faults', async (t) => {
  const kc = await start(t, { pathPrefix: '/auth' });
  t.equal((await call(`${kc.url}/auth/realms/mail/.well-known/openid-configuration`)).status, 200);
  t.equal((await call(`${kc.url}/realms/mail/.well-known/openid-configuration`)).status, 404);
  kc.inject('discovery', { kind: 'proxy', status: 503 }, 1);
  const p = await call(`${kc.serverUrl}/realms/mail/.well-known/openid-configuration`);
  t.equal(p.status, 503);
  t.match(p.headers['content-type'], /text\/html/);
  t.match(p.text, /503 Service Temporarily Unavailable/);
  kc.inject('discovery', { kind: 'error500' }, 1);
  t.same((await call(`${kc.serverUrl}/realms/mail/.well-known/openid-configuration`)).body, { error: 'unknown_error', error_description: 'For more on this error consult the server log.' });
  t.equal((await call(`${kc.serverUrl}/realms/mail/.well-known/openid-configuration`)).status, 200, 'faults end after N calls');
  kc.inject('discovery', { kind: 'reset' }, 1);
  await t.rejects(call(`${kc.serverUrl}/realms/mail/.well-known/openid-configuration`), { code: 'UND_ERR_SOCKET' });
});
