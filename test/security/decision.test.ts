/**
 * Security review, door 2: the decision, exercised through the daemon as
 * `mailauth serve` builds it (startDaemon: account and verify caches, IdP
 * sources, HTTP). Every case is a way to be let in that must not work: a
 * near-miss password, a corrupt row, someone else's or a disabled app
 * password, a resource mailbox, a stored SQL hash on an IdP mailbox, a cached
 * answer for another password or hash, a deadline, a database outage.
 */
import { createServer as netServer } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { startDaemon } from '../../src/cli/serve.js';
import type { Daemon } from '../../src/cli/serve.js';
import { createDb, insertAppPassword } from '../../src/db/index.js';
import type { Db } from '../../src/db/index.js';
import { MailauthError } from '../../src/errors.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { setKeycloakIdp } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';

const PW = 'Decision-Secret-pw-9';
const ALL = { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 };
const NONE = { imap: 0, pop3: 0, smtp: 0, sieve: 0, eas: 0, dav: 0 };

interface Answer {
  result: string;
  user?: string;
  reason?: string;
}

interface World {
  tdb: TestDatabase;
  daemon: Daemon;
  passdb(user: string, password: string, service?: string): Promise<Answer>;
  userdb(user: string): Promise<Answer>;
  /** Make every database call fail (ERR_DB_UNAVAILABLE) or stall, as an outage would. */
  database: { down: boolean; delayMs: number };
}

/** A Db whose calls can be made to fail or stall, in front of the test database. */
function switchableDb(real: Db, state: { down: boolean; delayMs: number }): Db {
  const gate = async (): Promise<void> => {
    if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
    if (state.down) throw new MailauthError('ERR_DB_UNAVAILABLE', 'database unavailable during test (ECONNREFUSED)');
  };
  return {
    database: real.database,
    rows: async (sql, params) => (await gate(), real.rows(sql, params)),
    exec: async (sql, params) => (await gate(), real.exec(sql, params)),
    transaction: async (fn) => (await gate(), real.transaction(fn)),
    ping: async () => (await gate(), real.ping()),
    close: () => real.close(),
    stats: () => real.stats(),
  };
}

async function world(t: Test, yaml: Record<string, unknown> = {}, tdbIn?: TestDatabase): Promise<World> {
  const tdb = tdbIn ?? (await createTestDatabase(t));
  if (!tdbIn) await seedDomain(tdb, 'example.org');
  // These are the decision's answers to hundreds of near misses from one address; the throttle in
  // front of it (which would refuse most of them unverified) has its own tests (test/unit/policy-throttle.test.ts).
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' }, login_log: { enabled: false }, throttle: { enabled: false }, ...yaml });
  const database = { down: false, delayMs: 0 };
  const daemon = await startDaemon(config, { db: switchableDb(tdb.db, database), logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url ?? '';
  const post = async (path: string, body: unknown): Promise<Answer> => {
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 200) throw new Error(`${path} answered HTTP ${res.status}`);
    return (await res.json()) as Answer;
  };
  return {
    tdb,
    daemon,
    database,
    passdb: (user, password, service = 'imap') => post('/v1/passdb', { user, password, service, remote_ip: '198.51.100.7' }),
    userdb: (user) => post('/v1/userdb', { user }),
  };
}

const app = (tdb: TestDatabase, mailbox: string, password: string, access: Record<string, number> = ALL, active = 1) =>
  insertAppPassword(tdb.db, { name: 'client', mailbox, domain: 'example.org', password, access: access as never, active });

t.test('a wrong password is never ok, whatever the scheme and however close it is', async (t) => {
  const w = await world(t);
  const schemes = ['BLF-CRYPT', 'ARGON2ID', 'SHA512-CRYPT', 'SHA256-CRYPT', 'SSHA512', 'SSHA256'] as const;
  const hashes: Record<string, string> = {};
  for (const s of schemes) {
    hashes[s] = await hash(s, PW, { bcryptCost: 4 });
    await seedMailbox(w.tdb, `${s.toLowerCase()}@example.org`, hashes[s] as string);
  }
  await seedMailbox(w.tdb, 'plain@example.org', `{PLAIN}${PW}`);
  const nfc = 'pässwörd-Ünïcode';
  await seedMailbox(w.tdb, 'unicode@example.org', await hash('SSHA256', nfc));
  for (const s of [...schemes.map((x) => x.toLowerCase()), 'plain']) {
    const user = `${s}@example.org`;
    const stored = (hashes[s.toUpperCase()] ?? `{PLAIN}${PW}`) as string;
    t.match(await w.passdb(user, PW), { result: 'ok', user }, `${s}: control, the right password`);
    const near = [
      PW.slice(0, -1), `${PW}x`, `${PW} `, ` ${PW}`, `${PW}\n`, `${PW}\u0000`, `${PW}\u0000junk`, PW.toUpperCase(), PW.toLowerCase(),
      stored, stored.replace(/^\{[^}]*\}/, ''), 'password', '*', '%',
    ];
    for (const guess of near.filter((g) => g !== PW)) {
      const r = await w.passdb(user, guess);
      t.equal(r.result, 'password_mismatch', `${s}: ${JSON.stringify(guess.slice(0, 24))} is a mismatch`);
    }
  }
  // Passwords are compared byte for byte, as Dovecot and mailcow do: no normalisation lets a look-alike in.
  t.match(await w.passdb('unicode@example.org', nfc), { result: 'ok' }, 'control: NFC as stored');
  t.match(await w.passdb('unicode@example.org', nfc.normalize('NFD')), { result: 'password_mismatch' }, 'NFD of the same text');
});

t.test('a malformed or unsupported hash row is never ok, for any password', async (t) => {
  const w = await world(t);
  const rows = [
    '{BLF-CRYPT}garbage',
    '{BLF-CRYPT}$2y$04$short',
    '{BLF-CRYPT}$2y$31$' + 'a'.repeat(53),
    '{SSHA256}!!not-base64!!',
    '{SSHA256}' + 'A'.repeat(40),
    '{SHA512-CRYPT}$6$rounds=99999999999$salt$' + 'a'.repeat(86),
    '{ARGON2ID}$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaA',
    '{ARGON2ID}$argon2d$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA',
    '{PBKDF2}$1$salt$0$' + '0'.repeat(40),
    '{FANCY}whatever',
    '{PLAIN',
    '{CRYPT}$y$j9T$salt$hash',
    'no-prefix-and-no-crypt',
  ];
  let i = 0;
  for (const stored of rows) {
    const user = `broken${i++}@example.org`;
    await seedMailbox(w.tdb, user, stored);
    for (const guess of [PW, stored, stored.replace(/^\{[^}]*\}/, ''), 'garbage', 'whatever', 'a', '{PLAIN']) {
      const r = await w.passdb(user, guess);
      t.not(r.result, 'ok', `${stored.slice(0, 30)} with ${JSON.stringify(guess.slice(0, 20))}: not ok`);
      t.equal(r.result, 'internal_failure', `${stored.slice(0, 30)}: internal_failure (Dovecot keeps its cache), not a mismatch`);
    }
  }
});

t.test('app passwords: another mailbox\'s, inactive, or without the service flag never let in', async (t) => {
  const w = await world(t);
  const own = await hash('SSHA256', PW);
  await seedMailbox(w.tdb, 'alice@example.org', own);
  await seedMailbox(w.tdb, 'bob@example.org', own);
  await app(w.tdb, 'bob@example.org', await hash('SSHA256', 'bobs-app-pw'));
  await app(w.tdb, 'alice@example.org', await hash('SSHA256', 'inactive-app-pw'), ALL, 0);
  await app(w.tdb, 'alice@example.org', await hash('SSHA256', 'smtp-only-app-pw'), { ...NONE, smtp: 1 });
  t.match(await w.passdb('bob@example.org', 'bobs-app-pw'), { result: 'ok', user: 'bob@example.org' }, 'control: bob\'s app password for bob');
  t.match(await w.passdb('alice@example.org', 'bobs-app-pw'), { result: 'password_mismatch' }, 'bob\'s app password for alice');
  t.match(await w.passdb('alice@example.org', 'inactive-app-pw'), { result: 'password_mismatch' }, 'inactive app password');
  t.match(await w.passdb('alice@example.org', 'smtp-only-app-pw', 'smtp'), { result: 'ok' }, 'control: the SMTP app password for smtp');
  for (const service of ['imap', 'pop3', 'sieve', 'managesieve', 'eas', 'dav']) {
    t.match(await w.passdb('alice@example.org', 'smtp-only-app-pw', service), { result: 'password_mismatch' }, `SMTP-only app password for ${service}`);
  }
  // Deactivating an app password takes effect at the next login, even with the account cached.
  t.match(await w.passdb('bob@example.org', 'bobs-app-pw'), { result: 'ok' });
  await w.tdb.sql('UPDATE app_passwd SET active = 0 WHERE mailbox = ?', ['bob@example.org']);
  t.match(await w.passdb('bob@example.org', 'bobs-app-pw'), { result: 'password_mismatch' }, 'deactivated while cached');
  await w.tdb.sql('UPDATE app_passwd SET active = 1, imap_access = 0 WHERE mailbox = ?', ['bob@example.org']);
  t.match(await w.passdb('bob@example.org', 'bobs-app-pw'), { result: 'password_mismatch' }, 'imap_access cleared while cached');
});

t.test('resource kinds never log in, whatever the spelling of the kind', async (t) => {
  const w = await world(t);
  const ssha = await hash('SSHA256', PW);
  // mailcow excludes `kind REGEXP 'location|thing|group'`, which MariaDB matches case-insensitively and as a substring.
  let n = 0;
  for (const kind of ['location', 'thing', 'group', 'Location', 'THING', 'resource-group']) {
    const user = `room${n++}@example.org`;
    await seedMailbox(w.tdb, user, ssha, { kind });
    await app(w.tdb, user, await hash('SSHA256', 'resource-app-pw'));
    t.match(await w.passdb(user, PW), { result: 'user_unknown' }, `kind ${kind}: own password`);
    t.match(await w.passdb(user, 'resource-app-pw'), { result: 'user_unknown' }, `kind ${kind}: app password`);
  }
  await seedMailbox(w.tdb, 'person@example.org', ssha, { kind: '' });
  t.match(await w.passdb('person@example.org', PW), { result: 'ok' }, 'control: kind "" logs in');
});

t.test('a stored SQL hash does not let an IdP mailbox in; only authsource mailcow uses it', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const ssha = await hash('SSHA256', PW);
  for (const source of ['keycloak', 'generic-oidc', 'ldap']) {
    await seedMailbox(tdb, `${source}@example.org`, ssha, { authsource: source });
    await app(tdb, `${source}@example.org`, await hash('SSHA256', `${source}-app-pw`));
  }
  const w = await world(t, {}, tdb);
  for (const source of ['keycloak', 'generic-oidc', 'ldap']) {
    const user = `${source}@example.org`;
    t.match(await w.passdb(user, PW), { result: 'password_mismatch' }, `${source}, no IdP configured: the SQL hash is not used`);
    t.match(await w.passdb(user, `${source}-app-pw`), { result: 'ok', user }, `${source}: app passwords work`);
  }

  // Keycloak configured, mailpassword flow on: the IdP's attribute decides, the row's hash does not.
  const kc = await startKeycloakDouble({
    users: [{ username: 'kc', email: 'keycloak@example.org', enabled: true, attributes: { mailcow_password: [await hash('SSHA256', 'idp-side-pw')] } }],
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '1', login_provisioning: '0' });
  w.daemon.idp.runtime.invalidateSettings();
  t.match(await w.passdb('keycloak@example.org', 'idp-side-pw'), { result: 'ok' }, 'control: the IdP password');
  t.match(await w.passdb('keycloak@example.org', PW), { result: 'password_mismatch' }, 'flow on: the SQL hash is not used');
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '0' });
  w.daemon.idp.runtime.invalidateSettings();
  t.match(await w.passdb('keycloak@example.org', PW), { result: 'password_mismatch' }, 'flow off: the SQL hash is not used');
  t.match(await w.passdb('keycloak@example.org', 'idp-side-pw'), { result: 'password_mismatch' }, 'flow off: app passwords only');

  // Switching back to mailcow reuses the stored hash (DESIGN rule 6): proof that the hash above was a real one.
  await tdb.sql("UPDATE mailbox SET authsource = 'mailcow' WHERE username = ?", ['keycloak@example.org']);
  t.match(await w.passdb('keycloak@example.org', PW), { result: 'ok' }, 'control: authsource mailcow uses it at once');
});

t.test('the verify cache never answers for another password or another hash', async (t) => {
  const w = await world(t);
  const A = 'cache-password-A';
  const B = 'cache-password-B';
  await seedMailbox(w.tdb, 'alice@example.org', await hash('BLF-CRYPT', A, { bcryptCost: 4 }));
  t.match(await w.passdb('alice@example.org', A), { result: 'ok' }, 'A: ok (now cached)');
  t.match(await w.passdb('alice@example.org', A), { result: 'ok' }, 'A again: ok');
  t.match(await w.passdb('alice@example.org', B), { result: 'password_mismatch' }, 'B after a cached match for A');
  t.match(await w.passdb('alice@example.org', B), { result: 'password_mismatch' }, 'B again (cached mismatch)');
  t.ok(w.daemon.caches.verify.stats().hits >= 2, 'the verify cache was in play');

  // The hash changes: the very next login decides against the new one, account cache or not.
  await w.tdb.sql('UPDATE mailbox SET password = ? WHERE username = ?', [await hash('BLF-CRYPT', B, { bcryptCost: 4 }), 'alice@example.org']);
  t.match(await w.passdb('alice@example.org', A), { result: 'password_mismatch' }, 'A after the hash changed to B\'s');
  t.match(await w.passdb('alice@example.org', B), { result: 'ok' }, 'B now');
  // A corrupt hash after a cached match: the cached "match" belongs to the old hash, so it cannot answer.
  await w.tdb.sql('UPDATE mailbox SET password = ? WHERE username = ?', ['{BLF-CRYPT}corrupt', 'alice@example.org']);
  t.match(await w.passdb('alice@example.org', B), { result: 'internal_failure' }, 'B against a corrupted row');

  // hash ‖ password must be unambiguous: "{PLAIN}ab" + "ab" and "{PLAIN}aba" + "b" are different questions.
  await seedMailbox(w.tdb, 'p1@example.org', '{PLAIN}ab');
  await seedMailbox(w.tdb, 'p2@example.org', '{PLAIN}aba');
  await seedMailbox(w.tdb, 'p3@example.org', '{PLAIN}a');
  t.match(await w.passdb('p1@example.org', 'ab'), { result: 'ok' }, 'p1 with its password (cached match)');
  t.match(await w.passdb('p2@example.org', 'b'), { result: 'password_mismatch' }, 'p2 with the tail of the same concatenation');
  t.match(await w.passdb('p3@example.org', 'bab'), { result: 'password_mismatch' }, 'p3 with the head-shifted concatenation');
  t.match(await w.passdb('p2@example.org', 'aba'), { result: 'ok' }, 'control: p2 with its own password');
});

t.test('the deadline turns a slow decision into internal_failure, never ok', async (t) => {
  // bcrypt cost 14 takes longer than the deadline on any machine this runs on; the ceiling
  // (auth.hash_limits, 13 by default, issue 16) is raised so that the deadline is what answers.
  const w = await world(t, { auth: { deadline: '300ms', hash_limits: { bcrypt_cost: 18 } }, database: { query_timeout: '200ms' } });
  await seedMailbox(w.tdb, 'slow@example.org', await hash('BLF-CRYPT', PW, { bcryptCost: 14 }));
  await seedMailbox(w.tdb, 'quick@example.org', await hash('SSHA256', PW));
  t.same(await w.passdb('slow@example.org', PW), { result: 'internal_failure', reason: 'deadline exceeded' }, 'right password, slow hash');
  t.match(await w.passdb('quick@example.org', PW), { result: 'ok' }, 'control: a quick hash');
  w.database.delayMs = 1000;
  t.same(await w.passdb('quick@example.org', PW), { result: 'internal_failure', reason: 'deadline exceeded' }, 'right password, stalled database');
  t.same(await w.passdb('ghost@example.org', PW), { result: 'internal_failure', reason: 'deadline exceeded' }, 'unknown user, stalled database: not user_unknown');
  w.database.delayMs = 0;
});

t.test('database down: never ok (not even from the account cache), never user_unknown', async (t) => {
  const w = await world(t);
  await seedMailbox(w.tdb, 'alice@example.org', await hash('SSHA256', PW));
  t.match(await w.passdb('alice@example.org', PW), { result: 'ok' }, 'control: ok while up (account and verify now cached)');
  w.database.down = true;
  t.same(await w.passdb('alice@example.org', PW), { result: 'internal_failure', reason: 'database unavailable' }, 'cached account, database down');
  t.same(await w.passdb('ghost@example.org', PW), { result: 'internal_failure', reason: 'database unavailable' }, 'unknown user, database down');
  t.same(await w.userdb('alice@example.org'), { result: 'internal_failure', reason: 'database unavailable' }, 'userdb, database down');
  w.database.down = false;
  // Three failures in a row opened the database breaker (issue 21): the answer stays
  // internal_failure until its background probe succeeds, within one back-off period.
  const until = Date.now() + 5000;
  let back = await w.passdb('alice@example.org', PW);
  const meanwhile = new Set<string>();
  while (back.result !== 'ok' && Date.now() < until) {
    meanwhile.add(back.result);
    await new Promise((r) => setTimeout(r, 50));
    back = await w.passdb('alice@example.org', PW);
  }
  t.match(back, { result: 'ok' }, 'back up within the breaker\'s back-off');
  t.same([...meanwhile].filter((r) => r !== 'internal_failure'), [], 'only internal_failure until then');

  // A real connection failure (nothing listens on the port), not a simulated one.
  const closed = netServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const config = testConfig(null, { listen: { address: '127.0.0.1:0' }, login_log: { enabled: false }, database: { url: `mysql://root@127.0.0.1:${port}/nowhere`, connect_timeout: '500ms' } });
  const db = createDb(config.database);
  t.teardown(() => db.close());
  const daemon = await startDaemon(config, { db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const res = await fetch(`${daemon.addresses[0]?.url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' }) });
  t.same(await res.json(), { result: 'internal_failure', reason: 'database unavailable' }, 'connection refused');
});

t.test('what the answers reveal about existence (documented: Dovecot needs user_unknown)', async (t) => {
  const w = await world(t);
  const ssha = await hash('SSHA256', PW);
  await seedMailbox(w.tdb, 'alice@example.org', ssha);
  await seedMailbox(w.tdb, 'off@example.org', ssha, { active: 0 });
  // Whoever can call the daemon learns whether a mailbox exists (user_unknown vs password_mismatch) and
  // whether it is disabled, without its password. Dovecot needs user_unknown (negative cache, passdb
  // chains); it shows clients the same "Authentication failed" for all three. Keep callers to Dovecot.
  t.match(await w.passdb('ghost@example.org', 'guess'), { result: 'user_unknown' });
  t.match(await w.passdb('alice@example.org', 'guess'), { result: 'password_mismatch' });
  t.match(await w.passdb('off@example.org', 'guess'), { result: 'user_disabled' });
  // A malformed name answers like a wrong password, so shape probing reveals nothing about the table.
  t.match(await w.passdb('ghost@example.org\u0000', 'guess'), { result: 'password_mismatch' });
});
