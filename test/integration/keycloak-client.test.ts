/**
 * The Keycloak client against the Keycloak double over real HTTP: token cache,
 * re-auth, retries, timeouts, malformed answers, paging edge cases (docs
 * reference §6.3), attributes, /auth prefix. Time for token expiry is a fake
 * clock shared by client and double; back-off sleeps are recorded, not slept.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { MailauthError } from '../../src/errors.js';
import { attributeValue, createKeycloakClient } from '../../src/idp/index.js';
import type { KeycloakClient, KeycloakClientOptions, ListSummary, KeycloakUser } from '../../src/idp/index.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { DoubleConfig, DoubleUserInput, KeycloakDouble } from '../helpers/keycloak-double.js';
import { codeOf } from '../helpers/errors.js';

const SECRET = 'kc-secret';

interface Setup {
  kc: KeycloakDouble;
  client: KeycloakClient;
  clock: { now: number };
  sleeps: number[];
}

async function setup(
  tt: { teardown(fn: () => unknown): void },
  dbl: Partial<DoubleConfig> = {},
  opts: Partial<KeycloakClientOptions> = {},
): Promise<Setup> {
  const clock = { now: 1_800_000_000_000 };
  const kc = await startKeycloakDouble({ now: () => clock.now, ...dbl });
  const sleeps: number[] = [];
  const client = createKeycloakClient({
    serverUrl: kc.serverUrl,
    realm: kc.realm,
    clientId: 'mailauth',
    clientSecret: SECRET,
    timeoutMs: 2000,
    retries: 2,
    retryBackoffMs: 50,
    now: () => clock.now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...opts,
  });
  tt.teardown(async () => {
    await client.close();
    await kc.close();
  });
  return { kc, client, clock, sleeps };
}

function users(n: number, over: (i: number) => Partial<DoubleUserInput> = () => ({})): DoubleUserInput[] {
  return Array.from({ length: n }, (_, i) => ({
    username: `user${String(i).padStart(4, '0')}`,
    email: `user${i}@example.org`,
    enabled: true,
    ...over(i),
  }));
}

async function drain(client: KeycloakClient, pageSize?: number): Promise<{ pages: KeycloakUser[][]; summary: ListSummary }> {
  const it = client.listUsers(pageSize === undefined ? {} : { pageSize });
  const pages: KeycloakUser[][] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { pages, summary: r.value };
    pages.push(r.value);
  }
}

/** What secret-looking text an error carries (message + details), or null. */
function leak(err: MailauthError, kc: KeycloakDouble): string | null {
  const text = `${err.message} ${JSON.stringify(err.details)}`;
  if (text.includes(SECRET)) return 'client secret';
  if (kc.issued().some((tok) => text.includes(tok.jti))) return 'token id';
  if (/eyJ[A-Za-z0-9_-]{10,}/.test(text)) return 'JWT';
  return null;
}

// ── token cache ─────────────────────────────────────────────────────────────

t.test('the service token is reused until 30 s before expiry, then renewed', async (t) => {
  const { kc, client, clock } = await setup(t, { users: users(3) });
  t.equal(await client.countUsers(), 3);
  t.equal(await client.countUsers(), 3);
  t.equal(kc.countRequests('token'), 1, 'one token for two calls');
  clock.now += (300 - 31) * 1000;
  await client.countUsers();
  t.equal(kc.countRequests('token'), 1, 'still valid 31 s before expiry');
  clock.now += 2000;
  await client.countUsers();
  t.equal(kc.countRequests('token'), 2, 'renewed 29 s before expiry');
});

t.test('short-lived tokens are renewed at half their lifetime', async (t) => {
  const { kc, client, clock } = await setup(t, { accessTokenTtlSec: 20 });
  await client.countUsers();
  clock.now += 9_000;
  await client.countUsers();
  t.equal(kc.countRequests('token'), 1);
  clock.now += 2_000;
  await client.countUsers();
  t.equal(kc.countRequests('token'), 2);
});

t.test('concurrent callers share one token request (single flight)', async (t) => {
  const { kc, client } = await setup(t, { users: users(2) });
  kc.inject('token', { kind: 'delay', ms: 100 }, 1);
  const counts = await Promise.all(Array.from({ length: 8 }, () => client.countUsers()));
  t.same(counts, Array(8).fill(2));
  t.equal(kc.countRequests('token'), 1);
});

t.test('issue 16: a hung token request is given up once every caller has; the next caller asks again', async (t) => {
  const { kc, client } = await setup(t, { users: users(2) }, { timeoutMs: 60_000 });
  kc.inject('token', { kind: 'hang' }, 1);
  const gaveUp = await Promise.all([0, 1].map(() => codeOf(client.countUsers(undefined, { signal: AbortSignal.timeout(100) }))));
  t.same(gaveUp.map((e) => [e.code, e.details?.reason]), [['ERR_IDP_TIMEOUT', 'deadline'], ['ERR_IDP_TIMEOUT', 'deadline']], 'both callers give up at their deadline');
  const started = performance.now();
  t.equal(await client.countUsers(undefined, { signal: AbortSignal.timeout(5000) }), 2, 'the IdP answers again: the next caller gets a token');
  t.ok(performance.now() - started < 2000, `without waiting for the hung request's 60 s timeout (${(performance.now() - started).toFixed(0)} ms)`);
  t.equal(kc.countRequests('token'), 2, 'a new token request');
});

t.test('issue 16: a caller giving up does not abandon the token request others still wait for', async (t) => {
  const { kc, client } = await setup(t, { users: users(2) });
  kc.inject('token', { kind: 'delay', ms: 300 }, 1);
  const [early, patient] = await Promise.all([
    codeOf(client.countUsers(undefined, { signal: AbortSignal.timeout(50) })),
    client.countUsers(undefined, { signal: AbortSignal.timeout(5000) }),
  ]);
  t.equal(early.code, 'ERR_IDP_TIMEOUT', 'the impatient caller gives up');
  t.equal(patient, 2, 'the patient one gets its answer');
  t.equal(kc.countRequests('token'), 1, 'from the one shared token request');
});

t.test('an admin 401 re-authenticates once and retries once', async (t) => {
  const { kc, client } = await setup(t, { users: users(2) });
  await client.countUsers();
  kc.expireAllTokens();
  t.equal(await client.countUsers(), 2);
  t.equal(kc.countRequests('token'), 2, 'one new token');
  t.equal(kc.countRequests('count'), 3, 'first call, rejected call, retry');
});

t.test('a second 401 after re-auth is ERR_IDP_AUTH, not a loop', async (t) => {
  const { kc, client } = await setup(t);
  kc.inject('count', { kind: 'status', status: 401, body: { error: 'HTTP 401 Unauthorized' } });
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_AUTH');
  t.equal(err.details?.reason, 'admin_token_rejected');
  t.equal(kc.countRequests('count'), 2);
  t.equal(kc.countRequests('token'), 2);
  t.equal(leak(err, kc), null, 'no secret or token in the error');
});

t.test('a rotated signing key is survived by one re-auth', async (t) => {
  const { kc, client } = await setup(t, { users: users(1) });
  await client.countUsers();
  await kc.rotateSigningKey();
  t.equal(await client.countUsers(), 1);
  t.equal(kc.countRequests('token'), 2);
});

t.test('a revoked token is survived by one re-auth', async (t) => {
  const { kc, client } = await setup(t, { users: users(1) });
  await client.countUsers();
  kc.revokeToken(kc.issued()[0]?.jti ?? '');
  t.equal(await client.countUsers(), 1);
  t.equal(kc.countRequests('token'), 2);
});

t.test('403 (view-users removed) is ERR_IDP_FORBIDDEN without retry', async (t) => {
  const { kc, client } = await setup(t);
  await client.countUsers();
  kc.removeRole('mailauth', 'view-users');
  kc.removeRole('mailauth', 'query-users');
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_FORBIDDEN');
  t.equal(err.details?.reason, 'missing_view_users');
  t.match(err.message, /view-users/);
  t.equal(kc.countRequests('count'), 2, 'one call before, one after: no retry');
  t.equal(kc.countRequests('token'), 1, 'no re-auth on 403');
});

t.test('legacy 403 body is handled the same way', async (t) => {
  const { kc, client } = await setup(t, { legacy403Body: true });
  kc.removeRole('mailauth', 'view-users');
  kc.removeRole('mailauth', 'query-users');
  const err = await codeOf(client.findUsersByEmail('a@example.org'));
  t.equal(err.code, 'ERR_IDP_FORBIDDEN');
  t.equal(err.details?.error, 'HTTP 403 Forbidden');
});

// ── retries, timeouts, malformed answers ──────────────────────────────────────

t.test('5xx is retried with back-off and then succeeds', async (t) => {
  const { kc, client, sleeps } = await setup(t, { users: users(4) });
  kc.inject('count', { kind: 'error500' }, 2);
  t.equal(await client.countUsers(), 4);
  t.equal(kc.countRequests('count'), 3);
  t.same(sleeps, [50, 100], 'exponential back-off');
});

for (const fault of [{ kind: 'error500' }, { kind: 'proxy', status: 502 }, { kind: 'proxy', status: 503 }] as const) {
  t.test(`persistent ${fault.kind === 'proxy' ? fault.status : 500} → ERR_IDP_UNAVAILABLE after retries`, async (t) => {
    const { kc, client, sleeps } = await setup(t);
    kc.inject('count', fault);
    const err = await codeOf(client.countUsers());
    t.equal(err.code, 'ERR_IDP_UNAVAILABLE');
    t.equal(err.details?.status, fault.kind === 'proxy' ? fault.status : 500);
    t.equal(err.details?.attempts, 3);
    t.equal(kc.countRequests('count'), 3, 'retries + 1 attempts');
    t.same(sleeps, [50, 100]);
  });
}

t.test('5xx on the token endpoint is retried too', async (t) => {
  const { kc, client } = await setup(t);
  kc.inject('token', { kind: 'proxy', status: 503 }, 1);
  t.equal(await client.countUsers(), 0);
  t.equal(kc.countRequests('token'), 2);
});

t.test('other 4xx are not retried', async (t) => {
  const { kc, client } = await setup(t);
  kc.inject('count', { kind: 'status', status: 400, body: { error: 'invalid_request' } });
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_BAD_RESPONSE');
  t.equal(kc.countRequests('count'), 1);
});

t.test('a hanging server → ERR_IDP_TIMEOUT, not retried', async (t) => {
  const { kc, client } = await setup(t, {}, { timeoutMs: 150 });
  kc.inject('count', { kind: 'hang' });
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_TIMEOUT');
  t.equal(err.details?.reason, 'timeout');
  t.equal(kc.countRequests('count'), 1);
});

t.test('a hanging token endpoint → ERR_IDP_TIMEOUT', async (t) => {
  const { kc, client } = await setup(t, {}, { timeoutMs: 150 });
  kc.inject('token', { kind: 'hang' });
  t.equal((await codeOf(client.countUsers())).code, 'ERR_IDP_TIMEOUT');
});

t.test("the caller's deadline aborts a slow request", async (t) => {
  const { kc, client } = await setup(t, {}, { timeoutMs: 5000 });
  await client.countUsers();
  kc.inject('count', { kind: 'hang' });
  const err = await codeOf(client.countUsers(undefined, { signal: AbortSignal.timeout(100) }));
  t.equal(err.code, 'ERR_IDP_TIMEOUT');
  t.equal(err.details?.reason, 'deadline');
});

t.test('a slow answer within the timeout is fine', async (t) => {
  const { kc, client } = await setup(t, { users: users(1) }, { timeoutMs: 1000 });
  kc.inject('count', { kind: 'delay', ms: 50 }, 1);
  t.equal(await client.countUsers(), 1);
});

t.test('connection reset once is retried; always → ERR_IDP_UNAVAILABLE', async (t) => {
  const { kc, client } = await setup(t, { users: users(1) });
  kc.inject('count', { kind: 'reset' }, 1);
  t.equal(await client.countUsers(), 1);
  kc.inject('count', { kind: 'reset' });
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_UNAVAILABLE');
  t.equal(err.details?.reason, 'network');
  t.equal(err.details?.attempts, 3);
});

t.test('server down → ERR_IDP_UNAVAILABLE', async (t) => {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const client = createKeycloakClient({ serverUrl: `http://127.0.0.1:${port}`, realm: 'mail', clientId: 'x', clientSecret: SECRET, timeoutMs: 1000, retries: 1, retryBackoffMs: 1 });
  const err = await codeOf(client.discovery());
  t.equal(err.code, 'ERR_IDP_UNAVAILABLE');
  t.equal(err.details?.networkCode, 'ECONNREFUSED');
});

const malformed = [
  ['html200', 'users', 'not_json'],
  ['truncated', 'users', 'invalid_json'],
  ['notArray', 'users', 'shape'],
  ['nonInteger', 'count', 'shape'],
  ['html200', 'count', 'not_json'],
  ['truncated', 'token', 'invalid_json'],
  ['html200', 'token', 'not_json'],
  ['html200', 'discovery', 'not_json'],
] as const;
for (const [kind, route, reason] of malformed) {
  t.test(`malformed success (${kind} on ${route}) → ERR_IDP_BAD_RESPONSE`, async (t) => {
    const { kc, client } = await setup(t, { users: users(2) });
    kc.inject(route, { kind });
    const call = route === 'users' ? client.findUsersByEmail('user1@example.org') : route === 'discovery' ? client.discovery() : client.countUsers();
    const err = await codeOf(call);
    t.equal(err.code, 'ERR_IDP_BAD_RESPONSE');
    t.equal(err.details?.reason, reason);
    t.equal(kc.countRequests(route), 1, 'not retried');
    t.equal(leak(err, kc), null, 'no secret or token in the error');
  });
}

t.test('wrong shapes inside a user are ERR_IDP_BAD_RESPONSE naming the field', async (t) => {
  const { kc, client } = await setup(t);
  const cases: [unknown, RegExp][] = [
    [[{ id: 'x', username: 'a', enabled: true, attributes: { mailcow_template: 'default' } }], /users\[0\]\.attributes\.mailcow_template/],
    [[{ username: 'a', enabled: true }], /users\[0\]\.id/],
    [[{ id: 'x', username: 'a', enabled: 'yes' }], /users\[0\]\.enabled/],
    [[{ id: 'x', username: 'a', attributes: [] }], /users\[0\]\.attributes/],
  ];
  for (const [body, re] of cases) {
    kc.clearFaults();
    kc.inject('users', { kind: 'status', status: 200, body });
    const err = await codeOf(client.findUsersByEmail('a@example.org'));
    t.equal(err.code, 'ERR_IDP_BAD_RESPONSE');
    t.match(err.message, re);
  }
  kc.clearFaults();
  kc.inject('count', { kind: 'status', status: 200, body: -1 });
  t.equal((await codeOf(client.countUsers())).code, 'ERR_IDP_BAD_RESPONSE');
});

// ── client credentials errors (§1.4) ─────────────────────────────────────────

t.test('token endpoint refusals become ERR_IDP_AUTH with a reason', async (t) => {
  const cases: [string, Partial<DoubleConfig>, Partial<KeycloakClientOptions>, string, string][] = [
    ['wrong secret', {}, { clientSecret: 'wrong' }, 'ERR_IDP_AUTH', 'bad_client_credentials'],
    ['unknown client', {}, { clientId: 'nope' }, 'ERR_IDP_AUTH', 'bad_client_credentials'],
    ['unknown client, Keycloak 18 (400 invalid_client)', { unknownClient400: true }, { clientId: 'nope' }, 'ERR_IDP_AUTH', 'bad_client_credentials'],
    ['service accounts off', { clients: [{ clientId: 'mailauth', secret: SECRET, serviceAccountsEnabled: false, adminRoles: ['view-users'] }] }, {}, 'ERR_IDP_AUTH', 'service_accounts_disabled'],
    ['public client', { clients: [{ clientId: 'mailauth', publicClient: true, adminRoles: ['view-users'] }] }, {}, 'ERR_IDP_AUTH', 'public_client'],
    ['bearer-only client', { clients: [{ clientId: 'mailauth', secret: SECRET, bearerOnly: true, serviceAccountsEnabled: true, adminRoles: [] }] }, {}, 'ERR_IDP_AUTH', 'bearer_only_client'],
    ['HTTPS required', { sslRequired: true }, {}, 'ERR_IDP_FORBIDDEN', 'https_required'],
    ['realm disabled', { realmEnabled: false }, {}, 'ERR_IDP_FORBIDDEN', 'realm_disabled'],
  ];
  for (const [name, dbl, opts, code, reason] of cases) {
    await t.test(name, async (t) => {
      const { kc, client } = await setup(t, dbl, opts);
      const err = await codeOf(client.countUsers());
      t.equal(err.code, code);
      t.equal(err.details?.reason, reason);
      t.equal(kc.countRequests('token'), 1, 'not retried');
      t.equal(leak(err, kc), null, 'no secret or token in the error');
    });
  }
});

t.test('service-account user disabled or missing', async (t) => {
  const { kc, client } = await setup(t);
  kc.disableUser('service-account-mailauth');
  t.equal((await codeOf(client.countUsers())).details?.reason, 'service_account_disabled');
  kc.deleteUser('service-account-mailauth');
  t.equal((await codeOf(client.countUsers())).details?.reason, 'service_account_missing');
});

t.test('secret rotated mid-run: the cached token works until it expires, then ERR_IDP_AUTH', async (t) => {
  const { kc, client } = await setup(t);
  await client.countUsers();
  kc.rotateClientSecret('mailauth');
  t.equal(await client.countUsers(), 0, 'cached token still valid');
  kc.expireAllTokens();
  const err = await codeOf(client.countUsers());
  t.equal(err.code, 'ERR_IDP_AUTH');
  t.equal(err.details?.reason, 'bad_client_credentials');
});

t.test('old Keycloak returning a refresh token for client_credentials is fine', async (t) => {
  const { client } = await setup(t, { clientCredentialsRefreshToken: true, users: users(1) });
  t.equal(await client.countUsers(), 1);
});

// ── paging (§6.3) ───────────────────────────────────────────────────────────

t.test('paging: total = 0', async (t) => {
  const { kc, client } = await setup(t);
  const { pages, summary } = await drain(client, 5);
  t.same(pages, []);
  t.match(summary, { users: 0, pages: 1, consistent: true, countBefore: 0, countAfter: 0 });
  t.equal(kc.countRequests('users'), 1);
});

t.test('paging: total an exact multiple of max makes one extra call', async (t) => {
  const { kc, client } = await setup(t, { users: users(10) });
  const { pages, summary } = await drain(client, 5);
  t.same(pages.map((p) => p.length), [5, 5]);
  t.match(summary, { users: 10, consistent: true });
  t.equal(kc.countRequests('users'), 3);
});

t.test('paging: total = max + 1', async (t) => {
  const { client } = await setup(t, { users: users(6) });
  const { pages, summary } = await drain(client, 5);
  t.same(pages.map((p) => p.length), [5, 1]);
  t.equal(summary.users, 6);
});

t.test('paging: default page size is 100, as Keycloak', async (t) => {
  const { kc, client } = await setup(t, { users: users(150) });
  const { pages, summary } = await drain(client);
  t.same(pages.map((p) => p.length), [100, 50]);
  t.ok(summary.consistent);
  t.match(kc.requests.find((r) => r.route === 'users')?.query ?? '', /max=100/);
});

t.test('paging: max larger than total is one call', async (t) => {
  const { kc, client } = await setup(t, { users: users(7) });
  const { pages } = await drain(client, 50);
  t.same(pages.map((p) => p.length), [7]);
  t.equal(kc.countRequests('users'), 1);
});

t.test('paging: users are yielded in order, none lost, none twice', async (t) => {
  const { client } = await setup(t, { users: users(23) });
  const { pages } = await drain(client, 4);
  const names = pages.flat().map((u) => u.username);
  t.equal(names.length, 23);
  t.same(names, [...names].sort());
  t.equal(new Set(names).size, 23);
});

t.test('paging: a user added between pages shifts items; duplicates are dropped and the listing flagged', async (t) => {
  const { kc, client } = await setup(t, { users: users(10) });
  let added = false;
  kc.after('users', () => {
    if (!added) {
      added = true;
      kc.addUser({ username: 'aaa-new', email: 'new@example.org' }); // sorts first
    }
  });
  const { pages, summary } = await drain(client, 4);
  const ids = pages.flat().map((u) => u.id);
  t.equal(new Set(ids).size, ids.length, 'no id twice');
  t.equal(summary.duplicates, 1);
  t.equal(summary.countBefore, 10);
  t.equal(summary.countAfter, 11);
  t.equal(summary.consistent, false);
});

t.test('paging: a user deleted between pages makes another one skipped; the listing is flagged', async (t) => {
  const { kc, client } = await setup(t, { users: users(10) });
  let deleted = false;
  kc.after('users', () => {
    if (!deleted) {
      deleted = true;
      kc.deleteUser('user0000');
    }
  });
  const { summary } = await drain(client, 4);
  t.equal(summary.consistent, false);
  t.equal(summary.countAfter, 9);
});

t.test('paging: a short page that is not the end (fine-grained permissions) does not stop the listing', async (t) => {
  const { kc, client } = await setup(t, { users: users(12) });
  kc.hideFromListing([kc.getUser('user0001')?.id ?? '', kc.getUser('user0002')?.id ?? '']);
  const { pages, summary } = await drain(client, 5);
  t.same(pages.map((p) => p.length), [3, 5, 2], 'continued past the short first page');
  t.equal(summary.users, 10);
  t.equal(summary.countAfter, 12);
  t.equal(summary.consistent, false, 'count and listing disagree');
});

t.test('paging: service-account users are hidden from the listing and the count', async (t) => {
  const { kc, client } = await setup(t, { users: users(3) });
  t.ok(kc.getUser('service-account-mailauth'));
  const { pages, summary } = await drain(client, 10);
  t.notOk(pages.flat().some((u) => u.username.startsWith('service-account-')));
  t.ok(summary.consistent);
  const viaFilter = await client.findUsersByEmail('', { exact: false });
  t.ok(viaFilter.some((u) => u.serviceAccountClientId === 'mailauth'), 'field filters include service accounts');
});

t.test('paging: a count that includes service accounts is reported as inconsistent', async (t) => {
  const { client } = await setup(t, { users: users(3), countIncludesServiceAccounts: true });
  const { summary } = await drain(client, 10);
  t.match(summary, { users: 3, countBefore: 4, consistent: false });
});

t.test('paging: count disagreeing with the listing is reported', async (t) => {
  const { kc, client } = await setup(t, { users: users(5) });
  kc.setCountOffset(2);
  const { summary } = await drain(client, 10);
  t.match(summary, { users: 5, countBefore: 7, consistent: false });
});

t.test('paging: a server that ignores `first` is detected, not looped on', async (t) => {
  const { kc, client } = await setup(t, { users: users(3) });
  kc.inject('users', { kind: 'status', status: 200, body: [{ id: 'a', username: 'a', enabled: true }, { id: 'b', username: 'b', enabled: true }] });
  const err = await codeOf(drain(client, 2));
  t.equal(err.code, 'ERR_IDP_BAD_RESPONSE');
  t.equal(err.details?.reason, 'repeated_page');
});

// ── users and attributes ─────────────────────────────────────────────────────

t.test('attributes: absent, [], multi-valued, hidden by the user-profile policy, managed', async (t) => {
  const { kc, client } = await setup(t, {
    unmanagedAttributePolicy: 'ADMIN_VIEW',
    users: [
      { username: 'none', email: 'none@example.org' },
      { username: 'empty', email: 'empty@example.org', attributes: { mailcow_template: [] } },
      { username: 'multi', email: 'multi@example.org', attributes: { mailcow_template: ['a', 'b'] } },
      { username: 'both', email: 'both@example.org', attributes: { mailcow_template: ['staff'], other: ['x'] } },
    ],
  });
  const get = async (email: string): Promise<KeycloakUser> => {
    const r = await client.findUsersByEmail(email);
    t.equal(r.length, 1);
    return r[0] as KeycloakUser;
  };
  t.same((await get('none@example.org')).attributes, {});
  t.equal(attributeValue(await get('empty@example.org'), 'mailcow_template'), null);
  t.equal(attributeValue(await get('multi@example.org'), 'mailcow_template'), 'a');
  t.equal(attributeValue(await get('both@example.org'), 'mailcow_template'), 'staff');
  kc.config.unmanagedAttributePolicy = 'DISABLED';
  t.same((await get('both@example.org')).attributes, {}, 'hidden: the key is absent');
  t.notOk(kc.requests.length === 0);
  kc.config.managedAttributes = ['mailcow_template'];
  t.same((await get('both@example.org')).attributes, { mailcow_template: ['staff'] }, 'declared attributes stay visible');
});

t.test('findUsersByEmail: exact, upper-case query vs lower-case stored, disabled users returned', async (t) => {
  const { client } = await setup(t, {
    users: [
      { username: 'alice', email: 'Alice@Example.org', enabled: false },
      { username: 'alice2', email: 'alice@example.org.evil' },
    ],
  });
  const r = await client.findUsersByEmail('ALICE@EXAMPLE.ORG');
  t.same(r.map((u) => u.username), ['alice']);
  t.equal(r[0]?.email, 'alice@example.org');
  t.equal(r[0]?.enabled, false);
  t.equal((await client.findUsersByEmail('alice@example.org', { exact: false })).length, 2, 'substring without exact');
});

t.test('getUser: found, unknown → null, with count filters', async (t) => {
  const { kc, client } = await setup(t, { users: users(3, (i) => ({ attributes: { mailcow_template: [i === 0 ? 'staff' : 'guest'] } })) });
  const id = kc.getUser('user0001')?.id ?? '';
  t.equal((await client.getUser(id))?.username, 'user0001');
  t.equal(await client.getUser('00000000-0000-0000-0000-000000000000'), null);
  t.equal(await client.countUsers({ q: 'mailcow_template:guest' }), 2);
  t.equal(await client.countUsers({ search: 'user000' }), 3);
  t.equal(await client.countUsers({ email: 'user2@example.org', exact: true }), 1);
});

t.test('/auth prefix: the configured server URL carries it', async (t) => {
  const { kc, client } = await setup(t, { pathPrefix: '/auth', users: users(2) });
  t.match(kc.serverUrl, /\/auth$/);
  t.equal(await client.countUsers(), 2);
  t.equal((await client.discovery()).issuer, `${kc.url}/auth/realms/mail`);
  const wrong = createKeycloakClient({ serverUrl: kc.url, realm: 'mail', clientId: 'mailauth', clientSecret: SECRET, timeoutMs: 1000, retries: 0, retryBackoffMs: 0 });
  t.equal((await codeOf(wrong.discovery())).code, 'ERR_IDP_NOT_FOUND');
});

t.test('unknown realm → ERR_IDP_NOT_FOUND', async (t) => {
  const { kc } = await setup(t);
  const wrong = createKeycloakClient({ serverUrl: kc.serverUrl, realm: 'Mail', clientId: 'mailauth', clientSecret: SECRET, timeoutMs: 1000, retries: 0, retryBackoffMs: 0 });
  t.equal((await codeOf(wrong.discovery())).code, 'ERR_IDP_NOT_FOUND');
  t.equal((await codeOf(wrong.countUsers())).code, 'ERR_IDP_NOT_FOUND');
});

// ── password grant and userinfo ─────────────────────────────────────────────

t.test('password grant: success with scope=openid lets userinfo answer', async (t) => {
  const { kc, client } = await setup(t, {
    users: [{ username: 'alice', email: 'alice@example.org', password: 'pw', attributes: { mailcow_template: ['staff'] } }],
  });
  const r = await client.passwordGrant('alice@example.org', 'pw');
  if (!r.ok) throw new Error('grant failed');
  t.match(r.scope, /openid/);
  t.ok(r.idToken, 'id_token with openid');
  const claims = await client.userinfo(r.accessToken);
  t.match(claims, { preferred_username: 'alice', email: 'alice@example.org', mailcow_template: 'staff' });
  t.match(kc.requests.find((x) => x.route === 'token')?.path, /\/token$/);
});

t.test('password grant negatives are values, client problems are errors', async (t) => {
  const { kc, client } = await setup(t, {
    users: [
      { username: 'alice', email: 'alice@example.org', password: 'pw' },
      { username: 'dup1', email: 'dup@example.org', password: 'pw' },
      { username: 'dup2', email: 'dup@example.org', password: 'pw' },
    ],
  });
  t.match(await client.passwordGrant('alice', 'wrong'), { ok: false, reason: 'invalid_credentials', error: 'invalid_grant' });
  t.match(await client.passwordGrant('nobody', 'pw'), { ok: false, reason: 'invalid_credentials' });
  t.match(await client.passwordGrant('dup@example.org', 'pw'), { ok: false, reason: 'invalid_credentials', error: 'invalid_request' });
  kc.addRequiredAction('alice', 'UPDATE_PASSWORD');
  t.match(await client.passwordGrant('alice', 'pw'), { ok: false, reason: 'account_not_set_up' });
  kc.disableUser('alice');
  t.match(await client.passwordGrant('alice', 'pw'), { ok: false, reason: 'account_disabled' });
  kc.client('mailauth').directAccessGrantsEnabled = false;
  const err = await codeOf(client.passwordGrant('alice', 'pw'));
  t.equal(err.code, 'ERR_IDP_AUTH');
  t.equal(err.details?.reason, 'direct_grants_disabled');
  t.equal(kc.requests.filter((x) => x.route === 'token' && x.status !== 200).length, 6, 'no retries on 4xx');
});

t.test('userinfo refuses a token without openid (403 insufficient_scope)', async (t) => {
  const { client } = await setup(t);
  const token = await client.serviceToken();
  const err = await codeOf(client.userinfo(token));
  t.equal(err.code, 'ERR_IDP_FORBIDDEN');
  t.equal(err.details?.reason, 'missing_openid_scope');
  t.equal(err.details?.errorDescription, 'Missing openid scope');
});

t.test('userinfo on Keycloak < 20 accepts a token without openid', async (t) => {
  const { client } = await setup(t, { requireOpenidForUserinfo: false });
  const claims = await client.userinfo(await client.serviceToken());
  t.equal(claims.preferred_username, 'service-account-mailauth');
});

t.test('ignoreSslError builds its own agent; close() releases it', async (t) => {
  const { client } = await setup(t, { users: users(1) }, { ignoreSslError: true });
  t.equal(await client.countUsers(), 1);
  await client.close();
});
