/**
 * Issue 16's fault suite, the identity-provider part (the database part is
 * test/integration/db-outage.test.ts): the real `mailauth serve` in a process
 * of its own, asked over HTTP (/v1/passdb), while the IdP answers 500, hangs
 * (accepts and never answers), stalls mid-body, sends malformed JSON, a
 * truncated body or an HTML page, resets the connection, or hands out expired
 * tokens — for every path that calls the IdP at login time:
 *
 * - Keycloak mailpassword flow: the service-account token (client_credentials)
 *   and the admin users API (the Keycloak double);
 * - Keycloak password grant (auth.oidc_password_grant, flow off);
 * - generic-oidc password grant through openid-client, against a real
 *   oidc-provider behind a fault proxy (test/helpers/fault-proxy.ts);
 * - OAuth bearer tokens: discovery and the JWKS (Keycloak double, JWTs) and
 *   RFC 7662 introspection (oidc-provider, opaque tokens).
 *
 * For each fault: the login is internal_failure with a generic reason (never
 * ok, never a password_mismatch that Dovecot would count against the user —
 * a wrong password is undecided too); it is answered within auth.deadline
 * (idp.timeout is set far above it, so a wait bounded only by idp.timeout
 * would show); a mailcow (SQL) user logs in ok meanwhile and quickly; the
 * daemon process stays up; once the fault is gone a good password is ok again
 * within the breaker's back-off (no restart). Expired or inactive bearer
 * tokens are wrong credentials: password_mismatch. An expired service-account
 * token is renewed without an outage; a token endpoint that only hands out
 * expired tokens is internal_failure. Finally: no password, token, client
 * secret or stored hash in the daemon's log (at trace) or in any answer.
 *
 * App passwords of generic-oidc and keycloak mailboxes need no IdP at login
 * (the decision tries them first, src/auth/idp-sources.ts): not in this suite.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import type { Test } from 'tap';
import { writeIdpSettings } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { startDaemonProcess } from '../helpers/daemon-process.js';
import type { DaemonProcess } from '../helpers/daemon-process.js';
import { FAULT_BODY_SECRET, startFaultProxy } from '../helpers/fault-proxy.js';
import type { FaultProxy, ProxyFault } from '../helpers/fault-proxy.js';
import { seedTemplates, setKeycloakIdp } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { Fault, KeycloakDouble, Route } from '../helpers/keycloak-double.js';
import { startOidcOp } from '../helpers/oidc-op.js';
import type { OidcOp } from '../helpers/oidc-op.js';

const DEADLINE_MS = 2000;
/** The IdP's own per-request timeout, far above the deadline: nothing may wait for it. */
const IDP_TIMEOUT = '20s';
const COOLDOWN_MS = 250;
const MAX_BACKOFF_MS = 1000;
const JITTER = 0.2;
/** Scheduling slack on a shared 2-core machine (tests run two files at once). */
const SLACK_MS = 1000;
/** What a caller may read for an internal fault (src/auth/authenticator.ts publicReason). */
const GENERIC_REASONS = ['identity provider unavailable', 'deadline exceeded', 'internal error'];

// Four daemons started from the sources, ~60 fault cases of up to a few seconds each (hangs wait
// for the deadline, recoveries for the breaker): ~2 min on the 2-core test box, busy.
t.setTimeout(480_000);

const rnd = (n = 9): string => randomBytes(n).toString('base64url');
/** Every secret the suite hands to the daemon or the IdP: none may appear in a log line or an answer. */
const secrets = new Set<string>();
const secret = (prefix: string): string => {
  const s = `${prefix}-${rnd()}`;
  secrets.add(s);
  return s;
};

interface Answer {
  status: number;
  text: string;
  result: string;
  reason?: string;
  ms: number;
}

async function passdb(d: DaemonProcess, user: string, password: string, mech?: string): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(`${d.url}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, password, service: 'imap', remote_ip: '192.0.2.44', ...(mech ? { mech } : {}) }),
  });
  const text = await res.text();
  const body = JSON.parse(text) as { result: string; reason?: string };
  const a: Answer = { status: res.status, text, result: body.result, ms: performance.now() - started };
  if (body.reason !== undefined) a.reason = body.reason;
  answersSeen.push(a);
  return a;
}
const answersSeen: Answer[] = [];

interface Attempt {
  what: string;
  send(): Promise<Answer>;
}

interface World {
  d: DaemonProcess;
  /** A mailcow (SQL) mailbox: its logins never touch the IdP. */
  local: { user: string; password: string };
}

function daemonConfig(tdb: TestDatabase, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const e = extra as { auth?: object; oauth?: object };
  return {
    database: { url: tdb.url, pool_size: 4, query_timeout: '1s' },
    auth: { deadline: `${DEADLINE_MS}ms`, ...e.auth },
    idp: { timeout: IDP_TIMEOUT, retries: 1, retry_backoff: '50ms', cooldown: `${COOLDOWN_MS}ms` },
    outage: { max_backoff: `${MAX_BACKOFF_MS}ms`, jitter: JITTER, log_summary: '1s' },
    // Every login asks the IdP, and nothing is served stale: the fault always shows.
    cache: { idp_ttl: '0s', idp_negative_ttl: '0s', idp_stale_for: '0s' },
    // Many wrong passwords from one address: the throttle (issue 17) has its own tests.
    throttle: { enabled: false },
    login_log: { enabled: false },
    dovecot: { notify: false },
    log: { level: 'trace', format: 'json' },
    ...(e.oauth ? { oauth: e.oauth } : {}),
  };
}

async function seedLocal(tdb: TestDatabase): Promise<World['local']> {
  const local = { user: 'carol@example.org', password: secret('carol-local') };
  await seedMailbox(tdb, local.user, await hash('SSHA256', local.password));
  return local;
}

/** Polls `attempt` until it is ok; how long that took (ms), or Infinity after `giveUpMs`. */
async function recovery(attempt: Attempt, giveUpMs: number): Promise<{ ms: number; last: Answer | null }> {
  const started = performance.now();
  let last: Answer | null = null;
  while (performance.now() - started < giveUpMs) {
    last = await attempt.send();
    if (last.result === 'ok') return { ms: performance.now() - started, last };
    await new Promise((r) => setTimeout(r, 25));
  }
  return { ms: Infinity, last };
}

/** The longest a login may wait for recovery once the IdP is fine: one full back-off, plus a login's own time. */
const RECOVERY_BOUND_MS = MAX_BACKOFF_MS * (1 + JITTER) + DEADLINE_MS + SLACK_MS;

interface FaultCase {
  name: string;
  /** Called before the first round; with `rounds`, before every round (a fault per round). */
  inject(round: number): void | Promise<void>;
  /** How many rounds of attempts (default 2: the first meets the IdP, the second may meet the open breaker). */
  rounds?: number;
  perRound?: boolean;
  /** Requests that reached the faulty endpoint so far: each round must meet the fault, not only the breaker. */
  met(): number;
  clear(): void | Promise<void>;
  /** Logins that need the IdP while it misbehaves (a good and a wrong password, or tokens). */
  attempts: Attempt[];
  /** A good login that needs the IdP: ok again once the fault is gone. */
  recover: Attempt;
}

/**
 * One fault: the IdP logins are internal_failure with a generic reason within the deadline, the
 * local user logs in meanwhile, the daemon stays up, and the IdP logins recover after the fault.
 */
async function underFault(t: Test, w: World, c: FaultCase): Promise<void> {
  await t.test(c.name, async (t) => {
    let stop = false;
    const local: Answer[] = [];
    const localLoop = (async () => {
      while (!stop || local.length < 3) {
        local.push(await passdb(w.d, w.local.user, w.local.password));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const answers: { what: string; a: Answer }[] = [];
    for (let round = 0; round < (c.rounds ?? 2); round++) {
      const fresh = round === 0 || c.perRound === true;
      // The IdP's breaker is open after a failure: wait for its trial, so this round's fault is met.
      if (round > 0 && fresh) await new Promise((r) => setTimeout(r, MAX_BACKOFF_MS * (1 + JITTER) + 100));
      if (fresh) await c.inject(round);
      const asked = c.met();
      const r = await Promise.all(c.attempts.map(async (x) => ({ what: x.what, a: await x.send() })));
      answers.push(...r);
      if (fresh) t.ok(c.met() > asked, `round ${round + 1}: the logins met the fault (${c.met() - asked} requests)`);
    }
    stop = true;
    await localLoop;
    for (const { what, a } of answers) {
      t.equal(a.status, 200, `${what}: HTTP 200`);
      t.equal(a.result, 'internal_failure', `${what}: internal_failure (reason ${JSON.stringify(a.reason)})`);
      t.ok(GENERIC_REASONS.includes(a.reason ?? ''), `${what}: a generic reason (${JSON.stringify(a.reason)})`);
      t.ok(a.ms <= DEADLINE_MS + SLACK_MS, `${what}: answered in ${a.ms.toFixed(0)} ms (deadline ${DEADLINE_MS} ms)`);
    }
    t.ok(local.length >= 3, `${local.length} local logins meanwhile`);
    t.same([...new Set(local.map((a) => a.result))], ['ok'], 'the mailcow user logs in ok while the IdP misbehaves');
    const slowest = Math.max(...local.map((a) => a.ms));
    t.ok(slowest < DEADLINE_MS / 2, `local logins do not wait for the IdP (slowest ${slowest.toFixed(0)} ms)`);
    const health = await fetch(`${w.d.url}/healthz`);
    t.equal(health.status, 200, 'the daemon process still answers /healthz');
    await health.arrayBuffer();
    t.ok(isAlive(w.d.pid), 'the daemon process is alive');

    await c.clear();
    const r = await recovery(c.recover, RECOVERY_BOUND_MS + 5000);
    t.ok(r.ms <= RECOVERY_BOUND_MS, `${c.recover.what}: ok again ${r.ms.toFixed(0)} ms after the fault ended (bound ${RECOVERY_BOUND_MS} ms; last ${JSON.stringify(r.last?.result)} ${JSON.stringify(r.last?.reason)})`);
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** No secret in the log or in any answer; no stack trace; no uncaught error. */
function noSecrets(t: Test, d: DaemonProcess, extra: string[]): void {
  const text = JSON.stringify(d.lines());
  const all = [...secrets, ...extra];
  const inLog = all.filter((s) => text.includes(s));
  t.same(inLog.map((s) => s.slice(0, 12)), [], `no password, token, client secret or hash in ${d.lines().length} log lines (trace)`);
  const answers = answersSeen.map((a) => a.text).join('\n');
  t.same(all.filter((s) => answers.includes(s)).map((s) => s.slice(0, 12)), [], `nor in ${answersSeen.length} answers`);
  t.notOk(/uncaught|unhandled/i.test(text), 'no uncaught exception or unhandled rejection logged');
}

// ── Keycloak: the mailpassword flow and JWT bearer tokens ─────────────────────

async function keycloakWorld(t: Test): Promise<World & { kc: KeycloakDouble; tdb: TestDatabase; users: Record<string, string>; hashes: string[] }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  const clientSecret = secret('kc-client');
  const users: Record<string, string> = { alice: secret('alice-kc'), bob: secret('bob-kc'), dora: secret('dora-kc') };
  const hashes: string[] = [];
  const kcUsers = [];
  for (const [u, pw] of Object.entries(users)) {
    const h = await hash('SSHA256', pw);
    hashes.push(h);
    kcUsers.push({ username: u, email: `${u}@example.org`, enabled: true, emailVerified: true, password: pw, attributes: { mailcow_password: [h], mailcow_template: ['staff'] } });
  }
  const kc = await startKeycloakDouble({
    clients: [
      { clientId: 'mailauth', secret: clientSecret, serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] },
      { clientId: 'thunderbird', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [] },
    ],
    users: kcUsers,
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '1', login_provisioning: '0', extra: { client_secret: clientSecret } });
  for (const u of ['alice', 'bob', 'dora']) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'keycloak' });
  const local = await seedLocal(tdb);
  const d = await startDaemonProcess(t, { config: daemonConfig(tdb, { oauth: { enabled: true, clients: ['thunderbird'], jwks_cooldown: '0s' } }) });
  return { d, local, kc, tdb, users, hashes };
}

/** A JWT access token for a mail client (password grant of the public client `thunderbird`). */
async function kcToken(kc: KeycloakDouble, user: string, password: string): Promise<string> {
  const res = await fetch(`${kc.serverUrl}/realms/${kc.realm}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', client_id: 'thunderbird', username: user, password, scope: 'openid' }).toString(),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`token: ${JSON.stringify(body)}`);
  secrets.add(body.access_token);
  return body.access_token;
}

/** In a malformed body where a token would be: it must not reach a log line either. */
const BODY_SECRET = secret('kc-body');

/** The double's faults that misbehave at the HTTP level, by name. */
const KC_FAULTS: [string, Fault][] = [
  ['HTTP 500 with a JSON error', { kind: 'error500' }],
  ['HTTP 503 HTML page from a proxy', { kind: 'proxy', status: 503 }],
  ['hang: accepted, never answered', { kind: 'hang' }],
  ['stall: headers and half a body, then silence', { kind: 'stall' }],
  ['malformed JSON with 200', { kind: 'status', status: 200, body: `[{"id": "x", "access_token": "${BODY_SECRET}", username: alice}]`, contentType: 'application/json' }],
  ['wrong content type: an HTML login page with 200', { kind: 'html200' }],
  ['truncated body', { kind: 'truncated' }],
  ['JSON of the wrong shape', { kind: 'notArray' }],
  ['connection reset', { kind: 'reset' }],
];

t.test('Keycloak: mailpassword flow (admin API, service-account token) and JWT bearer tokens', async (t) => {
  const w = await keycloakWorld(t);
  const { kc, users } = w;
  const login = (u: string, pw: string): Attempt => ({ what: `${u} ${pw === users[u] ? 'good' : 'wrong'} password`, send: () => passdb(w.d, `${u}@example.org`, pw) });
  const good = (u: string): Attempt => login(u, users[u] as string);
  const wrong = (u: string): Attempt => login(u, secret(`${u}-wrong`));

  // Before any bearer login: the issuer's discovery document fails (once it has been read, it is kept).
  const aliceToken = await kcToken(kc, 'alice', users.alice as string);
  const bearer = (tok: string, what = 'alice bearer token'): Attempt => ({ what, send: () => passdb(w.d, 'alice@example.org', tok, 'XOAUTH2') });
  const discoveryFaults = KC_FAULTS.filter(([, f]) => f.kind !== 'notArray');
  await underFault(t, w, {
    name: `OAuth discovery, a fault per round: ${discoveryFaults.map(([n]) => n.split(':')[0]).join('; ')}`,
    rounds: discoveryFaults.length,
    perRound: true,
    inject: (round) => {
      kc.clearFaults();
      kc.inject('discovery', (discoveryFaults[round] as [string, Fault])[1]);
    },
    met: () => kc.countRequests('discovery'),
    clear: () => kc.clearFaults(),
    attempts: [bearer(aliceToken)],
    recover: bearer(aliceToken),
  });

  t.match(await passdb(w.d, 'alice@example.org', users.alice as string), { result: 'ok' }, 'healthy: mailpassword flow ok');
  t.match(await passdb(w.d, 'alice@example.org', 'not-her-password'), { result: 'password_mismatch' }, 'healthy: a wrong password is a mismatch');

  for (const [name, fault] of KC_FAULTS) {
    await underFault(t, w, {
      name: `admin users API: ${name}`,
      inject: () => kc.inject('users', fault),
      met: () => kc.countRequests('users'),
      clear: () => kc.clearFaults(),
      attempts: [good('alice'), wrong('bob')],
      recover: good('alice'),
    });
  }

  await t.test('while the breaker is open a JWT is still checked against the keys held; the lookups wait for the back-off', async (t) => {
    t.match(await bearer(aliceToken).send(), { result: 'ok' }, 'healthy: the JWT logs in (keys fetched and held)');
    kc.inject('users', { kind: 'error500' });
    const asked = kc.countRequests('users');
    t.match(await good('alice').send(), { result: 'internal_failure' }, 'the admin API fails: the breaker opens');
    const first = kc.countRequests('users');
    t.ok(first > asked, 'that login asked the IdP');
    // Right away: the first back-off is idp.cooldown (250 ms here).
    const fast = await good('alice').send();
    t.match(fast, { result: 'internal_failure' });
    t.equal(kc.countRequests('users'), first, 'the next lookup within the back-off does not ask the IdP');
    const jwt = await bearer(aliceToken).send();
    t.match(jwt, { result: 'ok' }, 'a JWT logs in meanwhile: no IdP call needed');
    kc.clearFaults();
    const r = await recovery(good('alice'), RECOVERY_BOUND_MS + 5000);
    t.ok(r.ms <= RECOVERY_BOUND_MS, `ok again ${r.ms.toFixed(0)} ms after the fault ended`);
  });

  for (const [name, fault] of KC_FAULTS.filter(([, f]) => f.kind !== 'notArray')) {
    await underFault(t, w, {
      name: `service-account token endpoint (the cached token expired at the IdP): ${name}`,
      inject: () => {
        kc.expireAllTokens();
        kc.inject('token', fault);
      },
      met: () => kc.countRequests('token'),
      clear: () => kc.clearFaults(),
      attempts: [good('alice'), wrong('bob')],
      recover: good('alice'),
    });
  }

  await t.test('expired tokens', async (t) => {
    // The cached service-account token expires at the IdP (a restart, a revoked session): renewed, no outage.
    t.match(await passdb(w.d, 'dora@example.org', users.dora as string), { result: 'ok' });
    const tokensBefore = kc.countRequests('token');
    kc.expireAllTokens();
    t.match(await passdb(w.d, 'dora@example.org', users.dora as string), { result: 'ok' }, 'service token expired at the IdP: renewed, login ok');
    t.equal(kc.countRequests('token'), tokensBefore + 1, 'one new service-account token');

    // The IdP's clock is an hour behind: every token it hands out has already expired.
    kc.config.clockSkewSec = -3600;
    kc.expireAllTokens();
    const a = await passdb(w.d, 'dora@example.org', users.dora as string);
    t.match(a, { result: 'internal_failure' }, 'only expired service tokens: internal_failure, not a wrong password');
    t.ok(GENERIC_REASONS.includes(a.reason ?? ''), `generic reason (${a.reason})`);
    t.match(await passdb(w.d, 'dora@example.org', secret('dora-wrong')), { result: 'internal_failure' }, 'a wrong password is undecided too');

    // A bearer token that has expired (issued an hour ago): wrong credentials, not an outage.
    const expired = await kcToken(kc, 'alice', users.alice as string);
    const e = await passdb(w.d, 'alice@example.org', expired, 'XOAUTH2');
    t.match(e, { result: 'password_mismatch', reason: /expired/ }, 'expired bearer JWT: password_mismatch');
    kc.config.clockSkewSec = 0;
    const r = await recovery(good('dora'), RECOVERY_BOUND_MS + 5000);
    t.ok(r.ms <= RECOVERY_BOUND_MS, `the IdP's clock fixed: ok again after ${r.ms.toFixed(0)} ms`);
  });

  // JWT bearer tokens need the IdP only for keys it has not seen: a rotated key makes the daemon fetch the JWKS.
  for (const [name, fault] of KC_FAULTS.filter(([, f]) => f.kind !== 'notArray')) {
    let tok = '';
    await underFault(t, w, {
      name: `JWKS of a rotated signing key: ${name}`,
      inject: async () => {
        await kc.rotateSigningKey();
        tok = await kcToken(kc, 'alice', users.alice as string);
        kc.inject('certs', fault);
      },
      met: () => kc.countRequests('certs'),
      clear: () => kc.clearFaults(),
      attempts: [{ what: 'bearer token signed with the new key', send: () => passdb(w.d, 'alice@example.org', tok, 'XOAUTH2') }],
      recover: { what: 'bearer token signed with the new key', send: () => passdb(w.d, 'alice@example.org', tok, 'XOAUTH2') },
    });
  }

  noSecrets(t, w.d, w.hashes);
});

// ── Keycloak: the password grant ──────────────────────────────────────────────

t.test('Keycloak: password grant (auth.oidc_password_grant, mailpassword flow off)', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  const clientSecret = secret('kc-client');
  const users: Record<string, string> = { alice: secret('alice-grant'), bob: secret('bob-grant') };
  const kc = await startKeycloakDouble({
    clients: [{ clientId: 'mailauth', secret: clientSecret, serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] }],
    users: Object.entries(users).map(([u, pw]) => ({ username: u, email: `${u}@example.org`, enabled: true, emailVerified: true, password: pw })),
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '0', extra: { client_secret: clientSecret } });
  for (const u of Object.keys(users)) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'keycloak' });
  const local = await seedLocal(tdb);
  const d = await startDaemonProcess(t, { config: daemonConfig(tdb, { auth: { oidc_password_grant: true } }) });
  const w: World = { d, local };
  const good: Attempt = { what: 'alice good password', send: () => passdb(d, 'alice@example.org', users.alice as string) };
  const wrong: Attempt = { what: 'bob wrong password', send: () => passdb(d, 'bob@example.org', secret('bob-wrong')) };

  t.match(await good.send(), { result: 'ok', reason: 'keycloak password grant' }, 'healthy: ok');
  t.match(await wrong.send(), { result: 'password_mismatch' }, 'healthy: a wrong password is a mismatch');
  for (const [name, fault] of KC_FAULTS.filter(([, f]) => f.kind !== 'notArray')) {
    await underFault(t, w, { name: `token endpoint: ${name}`, inject: () => kc.inject('token', fault), met: () => kc.countRequests('token'), clear: () => kc.clearFaults(), attempts: [good, wrong], recover: good });
  }
  noSecrets(t, d, []);
});

// ── generic-oidc through openid-client: discovery at the first login ──────────

t.test('generic-oidc password grant (openid-client) against the Keycloak double: discovery fails at the first login', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const clientSecret = secret('kc-client');
  const users: Record<string, string> = { alice: secret('alice-oidc'), bob: secret('bob-oidc') };
  const kc = await startKeycloakDouble({
    clients: [{ clientId: 'mailauth', secret: clientSecret, serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: [] }],
    users: Object.entries(users).map(([u, pw]) => ({ username: u, email: `${u}@example.org`, enabled: true, emailVerified: true, password: pw })),
  });
  t.teardown(() => kc.close());
  await writeIdpSettings(tdb.db, {
    authsource: 'generic-oidc',
    issuer: kc.issuer,
    token_url: `${kc.issuer}/protocol/openid-connect/token`,
    userinfo_url: `${kc.issuer}/protocol/openid-connect/userinfo`,
    authorize_url: `${kc.issuer}/protocol/openid-connect/auth`,
    client_id: 'mailauth',
    client_secret: clientSecret,
    client_scopes: 'openid profile email',
    login_provisioning: '0',
    ignore_ssl_error: '0',
  });
  for (const u of Object.keys(users)) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'generic-oidc' });
  const local = await seedLocal(tdb);
  const d = await startDaemonProcess(t, { config: daemonConfig(tdb, { auth: { oidc_password_grant: true } }) });
  const w: World = { d, local };
  const good: Attempt = { what: 'alice good password', send: () => passdb(d, 'alice@example.org', users.alice as string) };
  const wrong: Attempt = { what: 'bob wrong password', send: () => passdb(d, 'bob@example.org', secret('bob-wrong')) };
  // Discovery runs once and is kept: every fault is shown at the first logins, one fault per round.
  const faults = KC_FAULTS.filter(([, f]) => f.kind !== 'notArray');
  await underFault(t, w, {
    name: `discovery, a fault per round: ${faults.map(([n]) => n.split(':')[0]).join('; ')}`,
    rounds: faults.length,
    perRound: true,
    inject: (round) => {
      kc.clearFaults();
      kc.inject('discovery', (faults[round] as [string, Fault])[1]);
    },
    met: () => kc.countRequests('discovery'),
    clear: () => kc.clearFaults(),
    attempts: [good, wrong],
    recover: good,
  });
  t.match(await wrong.send(), { result: 'password_mismatch' }, 'discovered: a wrong password is a mismatch again');
  for (const [name, fault] of faults) {
    await underFault(t, w, { name: `token endpoint: ${name}`, inject: () => kc.inject('token', fault), met: () => kc.countRequests('token'), clear: () => kc.clearFaults(), attempts: [good, wrong], recover: good });
  }
  noSecrets(t, d, []);
});

// ── A real OpenID provider: generic-oidc password grant and opaque tokens ─────

t.test('oidc-provider behind a fault proxy: generic-oidc password grant and introspection of opaque tokens', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const clientSecret = secret('op-client');
  const tbSecret = secret('tb-client');
  secrets.add(FAULT_BODY_SECRET);
  const pw = { alice: secret('alice-op'), bob: secret('bob-op') };
  const op: OidcOp = await startOidcOp({
    clients: [
      { clientId: 'mailauth', secret: clientSecret, grantTypes: ['client_credentials', 'password'] },
      { clientId: 'thunderbird', secret: tbSecret, grantTypes: ['password'] },
    ],
    users: [
      { sub: 'u-1', username: 'alice', password: pw.alice, email: 'alice@example.org', emailVerified: true },
      { sub: 'u-2', username: 'bob', password: pw.bob, email: 'bob@example.org', emailVerified: true },
    ],
  });
  t.teardown(() => op.close());
  const proxy: FaultProxy = await startFaultProxy(op.url);
  t.teardown(() => proxy.close());
  const via = (u: string): string => u.replace(op.url, proxy.url);
  await writeIdpSettings(tdb.db, {
    authsource: 'generic-oidc',
    issuer: op.issuer,
    token_url: via(op.tokenUrl),
    userinfo_url: via(op.userinfoUrl),
    authorize_url: op.authorizeUrl,
    client_id: 'mailauth',
    client_secret: clientSecret,
    client_scopes: 'openid profile email',
    login_provisioning: '0',
    ignore_ssl_error: '0',
  });
  for (const u of ['alice', 'bob']) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'generic-oidc' });
  const local = await seedLocal(tdb);
  const d = await startDaemonProcess(t, {
    config: daemonConfig(tdb, {
      auth: { oidc_password_grant: true },
      oauth: { enabled: true, clients: ['thunderbird'], issuer: op.issuer, jwks_url: via(`${op.issuer}/protocol/openid-connect/certs`), introspection_url: via(op.introspectionUrl) },
    }),
  });
  const w: World = { d, local };
  const good: Attempt = { what: 'alice good password', send: () => passdb(d, 'alice@example.org', pw.alice) };
  const wrong: Attempt = { what: 'bob wrong password', send: () => passdb(d, 'bob@example.org', secret('bob-wrong')) };
  const token = async (u: 'alice' | 'bob'): Promise<string> => {
    const x = await op.passwordToken(u, { clientId: 'thunderbird' });
    secrets.add(x);
    return x;
  };
  const aliceToken = await token('alice');
  const bearer: Attempt = { what: 'alice opaque token', send: () => passdb(d, 'alice@example.org', aliceToken, 'OAUTHBEARER') };

  t.match(await good.send(), { result: 'ok', reason: 'generic-oidc password grant' }, 'healthy: password grant ok');
  t.match(await wrong.send(), { result: 'password_mismatch' }, 'healthy: a wrong password is a mismatch');
  t.match(await bearer.send(), { result: 'ok', reason: 'oauth bearer token (introspection)' }, 'healthy: opaque token introspected, ok');

  const FAULTS: [string, ProxyFault][] = [
    ['HTTP 500', 'error500'],
    ['hang: accepted, never answered', 'hang'],
    ['stall: headers and half a body, then silence', 'stall'],
    ['malformed JSON with 200', 'malformed'],
    ['wrong content type: an HTML page with 200', 'html200'],
    ['truncated body', 'truncated'],
    ['connection reset', 'reset'],
  ];
  for (const [name, fault] of FAULTS) {
    await underFault(t, w, { name: `token endpoint (password grant): ${name}`, inject: () => proxy.inject('/token', fault), met: () => proxy.count('/token'), clear: () => proxy.clearFaults(), attempts: [good, wrong], recover: good });
  }
  for (const [name, fault] of FAULTS) {
    await underFault(t, w, { name: `introspection endpoint: ${name}`, inject: () => proxy.inject('/token/introspect', fault), met: () => proxy.count('/token/introspect'), clear: () => proxy.clearFaults(), attempts: [bearer], recover: bearer });
  }

  await t.test('introspection hangs: the first bearer login waits for the deadline, the next ones are answered at once', async (t) => {
    proxy.inject('/token/introspect', 'hang');
    const asked = proxy.count('/token/introspect');
    const first = await bearer.send();
    t.match(first, { result: 'internal_failure' });
    t.ok(first.ms >= DEADLINE_MS / 2, `the first one waited for the IdP (${first.ms.toFixed(0)} ms)`);
    const reached = proxy.count('/token/introspect');
    t.ok(reached > asked, 'it reached the IdP');
    // Right away: the first back-off is idp.cooldown (250 ms here).
    const next = await bearer.send();
    t.match(next, { result: 'internal_failure', reason: 'identity provider unavailable' });
    t.ok(next.ms < DEADLINE_MS / 2, `the next bearer login is answered in ${next.ms.toFixed(0)} ms, within the back-off`);
    t.equal(proxy.count('/token/introspect'), reached, 'without asking the IdP again');
    proxy.clearFaults();
    const r = await recovery(bearer, RECOVERY_BOUND_MS + 5000);
    t.ok(r.ms <= RECOVERY_BOUND_MS, `ok again ${r.ms.toFixed(0)} ms after the fault ended`);
  });

  await t.test('introspection says the token is not active: wrong credentials', async (t) => {
    const bob = await token('bob');
    t.match(await passdb(d, 'bob@example.org', bob, 'OAUTHBEARER'), { result: 'ok' }, 'active: ok');
    const rev = await fetch(op.revocationUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`thunderbird:${tbSecret}`).toString('base64')}` },
      body: `token=${encodeURIComponent(bob)}`,
    });
    await rev.arrayBuffer();
    t.match(await passdb(d, 'bob@example.org', bob, 'OAUTHBEARER'), { result: 'password_mismatch', reason: /not active/ }, 'revoked: password_mismatch');
  });
  noSecrets(t, d, []);
});
