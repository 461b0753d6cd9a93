/**
 * Issue 7 end to end: logins through the daemon over HTTP (startDaemon →
 * createServer) for keycloak mailboxes, against the Keycloak double and a real
 * MariaDB database: the mailpassword flow, the hash allow-list, the idp cache
 * (fresh, stale-if-error, deadline), login provisioning and template
 * re-application, and app passwords first.
 */
import t from 'tap';
import { provisionMailbox, templateAttributeHash } from '../../src/provisioning/index.js';
import { getTemplate } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import { snapshot } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { seedTemplates, setKeycloakIdp, startIdpDaemon } from '../helpers/idp-login.js';
import type { IdpDaemon, KeycloakRows } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { DoubleConfig, DoubleUserInput, KeycloakDouble } from '../helpers/keycloak-double.js';

interface World {
  tdb: TestDatabase;
  kc: KeycloakDouble;
  d: IdpDaemon;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function world(t: Teardown, o: { rows?: KeycloakRows; yaml?: Record<string, unknown>; kc?: Partial<DoubleConfig>; users?: DoubleUserInput[] } = {}): Promise<World> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { mailboxes: 100, maxquota: 10240, quota: 102400 });
  await seedTemplates(tdb);
  const kc = await startKeycloakDouble({ ...o.kc, users: o.users ?? [] });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, o.rows);
  const d = await startIdpDaemon(t, tdb, o.yaml);
  return { tdb, kc, d };
}

/** An existing keycloak mailbox built from a template, as sync or an earlier login would have. */
async function keycloakMailbox(tdb: TestDatabase, username: string, template = 'Staff', name = 'Alice Example'): Promise<void> {
  const r = await tdb.db.transaction((tx) => provisionMailbox(tx, { username, name, templateName: template, passwordHash: '', authsource: 'keycloak' }, { mode: 'create' }));
  if ('refused' in r) throw new Error(r.message);
}

const ssha = (pw: string): Promise<string> => hash('SSHA256', pw);

function alice(password: string, over: Partial<DoubleUserInput> = {}): DoubleUserInput {
  return {
    username: 'alice',
    email: 'alice@example.org',
    firstName: 'Alice',
    lastName: 'Example',
    enabled: true,
    attributes: { mailcow_password: [password], mailcow_template: ['staff'] },
    ...over,
  };
}

const userLookups = (kc: KeycloakDouble): number => kc.countRequests('users');

t.test('valid and invalid mailpassword; bcrypt and salted SHA-2 accepted', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [alice(await hash('BLF-CRYPT', 'alice-pw', { bcryptCost: 4 })), { username: 'bob', email: 'bob@example.org', attributes: { mailcow_password: [await ssha('bob-pw')] } }],
  });
  await keycloakMailbox(tdb, 'alice@example.org');
  await keycloakMailbox(tdb, 'bob@example.org', 'Student', 'bob');
  t.same(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', user: 'alice@example.org', reason: 'keycloak password' });
  t.match(await d.passdb('alice@example.org', 'wrong'), { result: 'password_mismatch', reason: 'password mismatch' });
  t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok' });
  t.match(await d.passdb('bob@example.org', 'alice-pw'), { result: 'password_mismatch' });
  t.equal(userLookups(kc), 2, 'one admin-API lookup per user: the rest came from the idp cache');
  t.notMatch(d.logText(), /alice-pw|bob-pw|\$2y\$|\{SSHA256\}/, 'no password or hash in any log line');
});

t.test('user disabled, two users with one email, email differing only in case', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [
      alice(await ssha('alice-pw'), { enabled: false }),
      { username: 'carol1', email: 'carol@example.org', enabled: true, attributes: { mailcow_password: [await ssha('carol-pw')] } },
      { username: 'carol2', email: 'carol@example.org', enabled: true, attributes: { mailcow_password: [await ssha('carol-pw')] } },
      { username: 'dave', email: 'dave@example.org', enabled: true, attributes: { mailcow_password: [await ssha('dave-pw')] } },
    ],
  });
  for (const u of ['alice', 'carol', 'dave']) await keycloakMailbox(tdb, `${u}@example.org`);
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'password_mismatch', reason: /disabled/ }, 'disabled in Keycloak');
  t.match(await d.passdb('carol@example.org', 'carol-pw'), { result: 'password_mismatch', reason: /2 enabled IdP users share this email/ }, 'ambiguous email');
  t.same(await d.passdb('Dave@Example.ORG', 'dave-pw'), { result: 'ok', user: 'dave@example.org', reason: 'keycloak password' }, 'login in other case');
  kc.updateUser('dave', { email: 'DAVE@example.org' });
  d.forgetIdp();
  t.match(await d.passdb('dave@example.org', 'dave-pw'), { result: 'ok' }, 'stored email in other case');
  // A disabled duplicate does not block the enabled user.
  kc.disableUser('carol2');
  d.forgetIdp();
  t.match(await d.passdb('carol@example.org', 'carol-pw'), { result: 'ok' });
});

t.test('mailcow_password missing, empty, multi-valued, hidden by the user-profile policy', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [
      { username: 'nopw', email: 'nopw@example.org', attributes: { mailcow_template: ['staff'] } },
      { username: 'empty', email: 'empty@example.org', attributes: { mailcow_password: [] as string[], mailcow_template: ['staff'] } },
      { username: 'blank', email: 'blank@example.org', attributes: { mailcow_password: [''] } },
      { username: 'multi', email: 'multi@example.org', attributes: { mailcow_password: [await ssha('first-pw'), await ssha('second-pw')] } },
      { username: 'hidden', email: 'hidden@example.org', attributes: { mailcow_password: [await ssha('hidden-pw')] } },
    ],
  });
  for (const u of ['nopw', 'empty', 'blank', 'multi', 'hidden']) await keycloakMailbox(tdb, `${u}@example.org`);
  t.match(await d.passdb('nopw@example.org', 'x'), { result: 'password_mismatch', reason: /no mailcow_password/ });
  t.match(await d.passdb('empty@example.org', 'x'), { result: 'password_mismatch', reason: /no mailcow_password/ });
  t.match(await d.passdb('blank@example.org', 'x'), { result: 'password_mismatch', reason: /empty/ });
  t.match(await d.passdb('multi@example.org', 'first-pw'), { result: 'ok' }, 'multi-valued: the first value counts');
  t.match(await d.passdb('multi@example.org', 'second-pw'), { result: 'password_mismatch' });
  t.ok(d.logs.some((l) => /has 2 values; only the first is used/.test(String(l.msg))), 'multi-valued attribute logged');
  t.match(await d.passdb('hidden@example.org', 'hidden-pw'), { result: 'ok' }, 'visible under ADMIN_VIEW');
  kc.config.unmanagedAttributePolicy = 'DISABLED';
  d.forgetIdp();
  t.match(await d.passdb('hidden@example.org', 'hidden-pw'), { result: 'password_mismatch', reason: /user-profile policy/ }, 'hidden by DISABLED policy');
  kc.config.managedAttributes = ['mailcow_password'];
  d.forgetIdp();
  t.match(await d.passdb('hidden@example.org', 'hidden-pw'), { result: 'ok' }, 'declared in the user profile: visible again');
});

t.test('weak and malformed IdP hashes', async (t) => {
  const { tdb, d } = await world(t, {
    users: [
      { username: 'plain', email: 'plain@example.org', attributes: { mailcow_password: ['{PLAIN}plain-pw'] } },
      { username: 'md5', email: 'md5@example.org', attributes: { mailcow_password: ['{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69'] } },
      { username: 'broken', email: 'broken@example.org', attributes: { mailcow_password: ['{SSHA256}not*base64'] } },
      { username: 'alien', email: 'alien@example.org', attributes: { mailcow_password: ['{NOSUCH}abc'] } },
    ],
  });
  for (const u of ['plain', 'md5', 'broken', 'alien']) await keycloakMailbox(tdb, `${u}@example.org`);
  t.match(await d.passdb('plain@example.org', 'plain-pw'), { result: 'password_mismatch', reason: /scheme PLAIN.*idp_hash_schemes/ }, 'right password, plaintext scheme: refused');
  t.match(await d.passdb('md5@example.org', 'secret'), { result: 'password_mismatch', reason: /scheme PLAIN-MD5/ }, 'unsalted: refused');
  t.ok(d.logs.some((l) => l.level === 40 && l.scheme === 'PLAIN' && l.mailbox === 'plain@example.org'), 'refusal logged with the scheme and the mailbox');
  t.match(await d.passdb('broken@example.org', 'x'), { result: 'internal_failure', reason: 'internal error' }, 'corrupt data is not a wrong password');
  t.match(d.decision('broken@example.org'), { result: 'internal_failure', reason: /cannot be verified/ }, 'the log says why');
  t.match(await d.passdb('alien@example.org', 'x'), { result: 'internal_failure', reason: 'internal error' });
  t.match(d.decision('alien@example.org'), { result: 'internal_failure', reason: /not a hash mailauth can read/ }, 'the log says why');
  t.ok(d.logs.some((l) => l.level === 50 && l.mailbox === 'broken@example.org'), 'logged as an error naming the mailbox');
  t.notMatch(d.logText(), /plain-pw|not\*base64|5ebe2294/, 'never the hash');
});

t.test('auth.idp_hash_schemes can be narrowed', async (t) => {
  const { tdb, d } = await world(t, { users: [alice(await ssha('alice-pw'))], yaml: { auth: { idp_hash_schemes: ['BLF-CRYPT'] } } });
  await keycloakMailbox(tdb, 'alice@example.org');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'password_mismatch', reason: /SSHA256/ });
});

t.test('IdP down: ok from a fresh cache entry, internal_failure without one, never password_mismatch', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [alice(await ssha('alice-pw')), { username: 'erin', email: 'erin@example.org', attributes: { mailcow_password: [await ssha('erin-pw')] } }],
    yaml: { idp: { cooldown: '0s', retries: 0 } },
  });
  await keycloakMailbox(tdb, 'alice@example.org');
  await keycloakMailbox(tdb, 'erin@example.org');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  kc.inject('*', { kind: 'reset' });
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' }, 'fresh idp cache entry: no IdP call needed');
  t.match(await d.passdb('erin@example.org', 'erin-pw'), { result: 'internal_failure', reason: /identity provider unavailable/ }, 'no entry: internal_failure');
  t.match(await d.passdb('erin@example.org', 'wrong'), { result: 'internal_failure' }, 'a wrong password is not judged either');
  kc.inject('*', { kind: 'error500' });
  t.match(await d.passdb('erin@example.org', 'erin-pw'), { result: 'internal_failure' }, 'HTTP 500: the same');
  kc.clearFaults();
  t.match(await d.passdb('erin@example.org', 'erin-pw'), { result: 'ok' }, 'back up: asked again, nothing was cached from the outage');
});

t.test('IdP down: a stale answer within cache.idp_stale_for lets recent users in', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [alice(await ssha('alice-pw'))],
    yaml: { cache: { idp_ttl: '0s', idp_stale_for: '1h' }, idp: { cooldown: '0s', retries: 0 } },
  });
  await keycloakMailbox(tdb, 'alice@example.org');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  const before = userLookups(kc);
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  t.equal(userLookups(kc), before + 1, 'idp_ttl 0: every login asks the IdP');
  kc.inject('users', { kind: 'proxy', status: 503 });
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', reason: /stale/ }, 'IdP 503: the stale answer');
  t.match(await d.passdb('alice@example.org', 'wrong'), { result: 'internal_failure' }, 'a password the stale hash rejects is undecided, not wrong');
  t.ok(d.logs.some((l) => l.level === 40 && /using its answer from/.test(String(l.msg))), 'serving stale is logged');
  t.match(await d.metrics(), /mailauth_cache_stale_total\{cache="idp"\} [1-9]/, 'and counted in /metrics');
  t.match(await d.metrics(), /mailauth_idp_login_events_total\{event="stale_answer"\} [1-9]/);
});

t.test('slow IdP: internal_failure before the deadline; the stale answer when there is one', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [alice(await ssha('alice-pw')), { username: 'erin', email: 'erin@example.org', attributes: { mailcow_password: [await ssha('erin-pw')] } }],
    yaml: { auth: { deadline: '1s' }, database: { query_timeout: '500ms' }, cache: { idp_ttl: '0s' }, idp: { cooldown: '0s', timeout: '10s', retries: 0 } },
  });
  await keycloakMailbox(tdb, 'alice@example.org');
  await keycloakMailbox(tdb, 'erin@example.org');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  kc.inject('users', { kind: 'hang' });
  const started = Date.now();
  const r = await d.passdb('erin@example.org', 'erin-pw');
  t.comment(`answered after ${Date.now() - started} ms (deadline 1000 ms)`);
  t.match(r, { result: 'internal_failure', reason: 'identity provider unavailable' });
  t.match(d.decision('erin@example.org'), { result: 'internal_failure', reason: /identity provider unavailable \(ERR_IDP_TIMEOUT\)/ }, 'the IdP budget ended the wait, not the request deadline');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', reason: /stale/ }, 'a user with a stale entry still gets in');
});

t.test('provisioning on first login writes the rows mailcow writes', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [
      alice(await ssha('alice-pw')),
      { username: 'sam', email: 'sam@example.org', firstName: 'Sam', lastName: 'Student', attributes: { mailcow_password: [await ssha('sam-pw')], mailcow_template: ['student'] } },
    ],
  });
  t.same(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', user: 'alice@example.org', reason: 'keycloak password; mailbox provisioned at first login' });
  const [mb] = await tdb.sql<Record<string, unknown>>('SELECT username, name, quota, local_part, domain, authsource, active, password, attributes FROM mailbox WHERE username = ?', ['alice@example.org']);
  const staff = await getTemplate(tdb.db, 'Staff');
  t.match(mb, { username: 'alice@example.org', name: 'Alice Example', quota: 2048 * 1024 * 1024, local_part: 'alice', domain: 'example.org', authsource: 'keycloak', active: 1, password: '' });
  const attrs = typeof mb?.attributes === 'string' ? JSON.parse(mb.attributes) : mb?.attributes;
  t.match(attrs, { attribute_hash: templateAttributeHash(staff as NonNullable<typeof staff>), imap_access: '1', pop3_access: '0', force_pw_update: '0' });
  t.same(await tdb.sql('SELECT username, bytes, messages FROM quota2'), [{ username: 'alice@example.org', bytes: 0, messages: 0 }]);
  t.same(await tdb.sql('SELECT username, bytes, messages FROM quota2replica'), [{ username: 'alice@example.org', bytes: 0, messages: 0 }]);
  t.match(await tdb.sql('SELECT address, goto, domain, active FROM alias'), [{ address: 'alice@example.org', goto: 'alice@example.org', domain: 'example.org', active: 1 }]);
  t.match(await tdb.sql('SELECT username, spam_alias FROM user_acl'), [{ username: 'alice@example.org', spam_alias: 1 }]);
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', reason: 'keycloak password' }, 'second login: an existing mailbox');
  t.match(await d.passdb('alice@example.org', 'alice-pw', 'pop3'), { result: 'user_disabled', reason: /pop3_access/ }, "the template's access flags apply");

  // The template of the new mailbox's first login decides access too.
  t.match(await d.passdb('sam@example.org', 'sam-pw', 'sieve'), { result: 'user_disabled' }, 'created, but Student has no sieve');
  t.equal((await tdb.sql('SELECT 1 FROM mailbox WHERE username = ?', ['sam@example.org'])).length, 1);
  t.match(await d.metrics(), /mailauth_idp_login_events_total\{event="provisioned"\} 2/);
  t.match(await d.metrics(), /mailauth_idp_calls_total\{idp="keycloak",operation="user_lookup",outcome="ok"\} [1-9]/);
  t.equal(kc.countRequests('token'), 1, 'one service-account token for all of it');
});

t.test('concurrent first logins create one mailbox and all succeed', async (t) => {
  const { tdb, kc, d } = await world(t, { users: [alice(await ssha('alice-pw'))] });
  const answers = await Promise.all(Array.from({ length: 8 }, () => d.passdb('alice@example.org', 'alice-pw')));
  t.ok(answers.every((a) => a.result === 'ok'), 'every login ok', { answers });
  t.same(await tdb.sql('SELECT COUNT(*) AS n FROM mailbox'), [{ n: 1 }]);
  t.same(await tdb.sql('SELECT COUNT(*) AS n FROM alias'), [{ n: 1 }]);
  t.equal(userLookups(kc), 1, 'one IdP lookup for the burst (single-flight)');
});

t.test('provisioning refused: nothing written', async (t) => {
  const users: DoubleUserInput[] = [];
  for (const [name, tmpl] of [['ann', 'staff'], ['nomap', 'alien'], ['ghostly', 'staff']] as const) {
    users.push({ username: name, email: `${name}@example.org`, attributes: { mailcow_password: [await ssha(`${name}-pw`)], mailcow_template: [tmpl] } });
  }
  for (const dom of ['missing.test', 'inactive.test', 'full.test', 'small.test']) {
    users.push({ username: `u-${dom}`, email: `u@${dom}`, attributes: { mailcow_password: [await ssha('u-pw')], mailcow_template: ['staff'] } });
  }
  const { tdb, kc, d } = await world(t, { users });
  await seedDomain(tdb, 'inactive.test', { active: 0 });
  await seedDomain(tdb, 'full.test', { mailboxes: 1 });
  await seedMailbox(tdb, 'existing@full.test', await ssha('x'));
  await seedDomain(tdb, 'small.test', { maxquota: 1024, quota: 1024, defquota: 512 });
  const before = await snapshot(tdb);
  const lookups = userLookups(kc);
  t.match(await d.passdb('u@missing.test', 'u-pw'), { result: 'user_unknown', reason: /domain missing\.test is not hosted here/ });
  t.match(await d.passdb('u@inactive.test', 'u-pw'), { result: 'user_unknown', reason: /inactive/ });
  t.equal(userLookups(kc), lookups, 'a domain that cannot take the mailbox costs no IdP call');
  t.match(await d.passdb('u@full.test', 'u-pw'), { result: 'password_mismatch', reason: /not provisioned: .*1 of at most 1 mailboxes/ });
  t.match(await d.passdb('u@small.test', 'u-pw'), { result: 'password_mismatch', reason: /not provisioned: .*exceeds the maximum per mailbox/ });
  t.match(await d.passdb('nomap@example.org', 'nomap-pw'), { result: 'password_mismatch', reason: /not provisioned: mailcow_template \["alien"\] is not mapped and no default template/ });
  t.match(await d.passdb('ann@example.org', 'wrong'), { result: 'password_mismatch', reason: 'password mismatch' }, 'wrong password: nothing created');
  t.match(await d.passdb('nobody@example.org', 'x'), { result: 'user_unknown', reason: /no IdP user has this email/ });
  t.match(await d.passdb('plainname', 'x'), { result: 'user_unknown' });
  t.same(await snapshot(tdb), before, 'no row written by any refused login');
  t.match(await d.metrics(), /mailauth_idp_login_events_total\{event="provision_refused"\} 3/);

  // The default template catches unmapped values once it is set.
  await setKeycloakIdp(tdb, kc, { default_template: 'Student' });
  d.forgetIdp();
  t.match(await d.passdb('nomap@example.org', 'nomap-pw'), { result: 'ok', reason: /provisioned/ });
  t.match(await tdb.sql('SELECT quota FROM mailbox WHERE username = ?', ['nomap@example.org']), [{ quota: 512 * 1024 * 1024 }]);
});

t.test('login_provisioning off, or the mailpassword flow off: unknown stays unknown', async (t) => {
  const { tdb, kc, d } = await world(t, { users: [alice(await ssha('alice-pw'))], rows: { login_provisioning: '0' } });
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'user_unknown', reason: /login_provisioning is off/ });
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0' });
  d.forgetIdp();
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'user_unknown', reason: /mailpassword flow/ });
  t.equal(userLookups(kc), 0);
  t.equal((await tdb.sql('SELECT 1 FROM mailbox')).length, 0);
});

t.test('template change applied on the next login; unchanged → no write', async (t) => {
  const { tdb, kc, d } = await world(t, { users: [alice(await ssha('alice-pw'))], yaml: { metrics: { enabled: true } } });
  await keycloakMailbox(tdb, 'alice@example.org', 'Staff', 'Alice Example');
  const writes = async (): Promise<number> => {
    const text = await d.metrics();
    let n = 0;
    for (const m of text.matchAll(/^mailauth_db_queries_total\{query="(update|insert|replace|delete) [a-z_0-9]+"\} (\d+)/gm)) n += Number(m[2]);
    return n;
  };
  const lockingReads = async (): Promise<number> => Number(/^mailauth_db_queries_total\{query="select domain"\} (\d+)/m.exec(await d.metrics())?.[1] ?? 0);

  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  const w0 = await writes();
  const r0 = await lockingReads();
  const [row0] = await tdb.sql<{ modified: unknown; attributes: unknown }>('SELECT modified, attributes FROM mailbox WHERE username = ?', ['alice@example.org']);
  for (let i = 0; i < 3; i++) {
    d.forgetIdp(); // every login asks the IdP and re-reads the settings: still nothing to write
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  }
  t.equal(await writes(), w0, 'unchanged template and name: no write');
  t.equal(await lockingReads(), r0, 'and not even a provisioning transaction');
  t.same(await tdb.sql('SELECT modified, attributes FROM mailbox WHERE username = ?', ['alice@example.org']), [row0]);

  kc.updateUser('alice', { attributes: { mailcow_password: [await ssha('alice-pw')], mailcow_template: ['student'] }, lastName: 'Renamed' });
  d.forgetIdp();
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  const student = await getTemplate(tdb.db, 'Student');
  const [row1] = await tdb.sql<{ name: string; quota: number; attributes: unknown }>('SELECT name, quota, attributes FROM mailbox WHERE username = ?', ['alice@example.org']);
  const attrs1 = typeof row1?.attributes === 'string' ? JSON.parse(row1.attributes) : row1?.attributes;
  t.equal(row1?.name, 'Alice Renamed');
  t.equal(row1?.quota, 512 * 1024 * 1024);
  t.match(attrs1, { attribute_hash: templateAttributeHash(student as NonNullable<typeof student>), pop3_access: '1', sieve_access: '0' });
  t.match(await tdb.sql('SELECT spam_alias FROM user_acl WHERE username = ?', ['alice@example.org']), [{ spam_alias: 0 }]);
  t.ok(d.logs.some((l) => l.msg === 'template re-applied at login'), 'logged');
  t.match(await d.metrics(), /mailauth_idp_login_events_total\{event="template_applied"\} 1/);
  t.match(await d.passdb('alice@example.org', 'alice-pw', 'sieve'), { result: 'user_disabled' }, 'the new template applies from the next login (account cache dropped)');

  // Template edited in place (same mapping, new attribute hash).
  await tdb.db.exec("UPDATE templates SET attributes = JSON_SET(attributes, '$.sieve_access', '1') WHERE template = 'Student'");
  d.forgetIdp();
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  t.match(await d.passdb('alice@example.org', 'alice-pw', 'sieve'), { result: 'ok' });
});

t.test('login_provisioning off: existing mailboxes are not re-templated', async (t) => {
  const { tdb, d } = await world(t, { users: [alice(await ssha('alice-pw'), { lastName: 'Other' })], rows: { login_provisioning: '0' } });
  await keycloakMailbox(tdb, 'alice@example.org', 'Student', 'Alice Example');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
  t.match(await tdb.sql('SELECT name FROM mailbox'), [{ name: 'Alice Example' }]);
});

t.test('app passwords first; with the mailpassword flow off a failed guess never reaches the IdP', async (t) => {
  const appHash = await ssha('app-secret');
  const { tdb, kc, d } = await world(t, { users: [alice(await ssha('alice-pw'))], rows: { mailpassword_flow: '0' } });
  await keycloakMailbox(tdb, 'alice@example.org');
  await tdb.db.exec('INSERT INTO app_passwd (name, mailbox, domain, password, active) VALUES (?, ?, ?, ?, 1)', ['phone', 'alice@example.org', 'example.org', appHash]);
  t.match(await d.passdb('alice@example.org', 'app-secret'), { result: 'ok', reason: /app password/ });
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'password_mismatch', reason: /mailpassword flow is off: .*app passwords only/ });
  for (let i = 0; i < 5; i++) t.match(await d.passdb('alice@example.org', `guess-${i}`), { result: 'password_mismatch' });
  t.equal(kc.requests.length, 0, 'not one request reached the IdP (no token, no lookup)');

  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '1' });
  d.forgetIdp();
  t.match(await d.passdb('alice@example.org', 'app-secret'), { result: 'ok', reason: /app password/ });
  t.equal(kc.requests.length, 0, 'flow on: a matching app password still answers before the IdP');
  t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', reason: 'keycloak password' });
});

t.test('auth.oidc_password_grant: Keycloak direct access grants for keycloak mailboxes with the flow off', async (t) => {
  const { tdb, kc, d } = await world(t, {
    users: [{ ...alice('{PLAIN}unused'), password: 'kc-account-pw' }],
    rows: { mailpassword_flow: '0' },
    yaml: { auth: { oidc_password_grant: true }, idp: { cooldown: '0s', retries: 0 } },
  });
  await keycloakMailbox(tdb, 'alice@example.org');
  t.match(await d.passdb('alice@example.org', 'kc-account-pw'), { result: 'ok', reason: 'keycloak password grant' });
  t.match(await d.passdb('alice@example.org', 'wrong'), { result: 'password_mismatch', reason: /refused the credentials/ });
  const grants = kc.countRequests('token');
  t.match(await d.passdb('alice@example.org', 'kc-account-pw'), { result: 'ok' });
  t.equal(kc.countRequests('token'), grants, 'a repeated login inside cache.idp_ttl costs no grant');
  kc.inject('token', { kind: 'reset' });
  d.daemon.idp.runtime.caches.grant.clear();
  t.match(await d.passdb('alice@example.org', 'kc-account-pw'), { result: 'internal_failure' }, 'provider down, nothing cached: internal_failure');
  kc.clearFaults();
  kc.disableUser('alice');
  t.match(await d.passdb('alice@example.org', 'wrong-again'), { result: 'password_mismatch' });
  t.notMatch(d.logText(), /kc-account-pw/);
});

t.test('no Keycloak IdP configured: keycloak mailboxes are app-password only, with a reason', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'keycloak' });
  const d = await startIdpDaemon(t, tdb);
  t.match(await d.passdb('alice@example.org', 'x'), { result: 'password_mismatch', reason: /identity provider is none, not keycloak/ });
  t.match(await d.passdb('nobody@example.org', 'x'), { result: 'user_unknown', reason: 'no such mailbox' });
});

t.test('invalid identity_provider rows: internal_failure, logged', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'keycloak' });
  await tdb.db.exec("INSERT INTO identity_provider (`key`, `value`) VALUES ('authsource', 'keycloak'), ('server_url', 'ftp://nope')");
  const d = await startIdpDaemon(t, tdb);
  t.match(await d.passdb('alice@example.org', 'x'), { result: 'internal_failure', reason: 'internal error' });
  t.match(d.decision('alice@example.org'), { result: 'internal_failure', reason: /settings are invalid/ }, 'the log says why');
  t.ok(d.logs.some((l) => l.level === 50 && String(l.problem).includes('identity_provider.server_url')));
  t.match(await d.passdb('nobody@example.org', 'x'), { result: 'internal_failure' }, 'an unknown login cannot be decided either');
});
