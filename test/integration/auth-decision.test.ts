/** The decision rules of DESIGN.md on the real MariaDB: every rule, every result. */
import { createServer as netServer } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { createAuthenticator, dbAccountLoader, defaultVerifyHash } from '../../src/auth/index.js';
import type { AccountLoader, HashVerifier, LoginRecord, PasswordSource } from '../../src/auth/index.js';
import { createDb, insertAppPassword } from '../../src/db/index.js';
import { createLogger, silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

const PW = 'correct horse battery';
const APP_PW = 'app-secret-4711-xyz';
const ALL = { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 };
const NONE = { imap: 0, pop3: 0, smtp: 0, sieve: 0, eas: 0, dav: 0 };

async function fixture(t: Test, auth: Record<string, unknown> = {}, more: Record<string, unknown> = {}) {
  const tdb = await createTestDatabase(t);
  const config = testConfig(tdb, { auth, ...more });
  await seedDomain(tdb, 'example.org');
  const recorded: LoginRecord[] = [];
  const make = (over: { loadAccount?: AccountLoader; verifyHash?: HashVerifier; sources?: ReadonlyMap<string, PasswordSource>; logger?: ReturnType<typeof silentLogger> } = {}) =>
    createAuthenticator({ db: tdb.db, logger: over.logger ?? silentLogger(), config: config.auth, loginLog: { record: (e) => recorded.push(e) }, ...over });
  return { tdb, config, recorded, auth: make(), make };
}

const login = (user: string, password: string, service = 'imap') => ({ user, password, service, remoteIp: '192.0.2.7' });

let ssha: string;
let bcrypt: string;
let appHash: string;
t.before(async () => {
  ssha = await hash('SSHA256', PW);
  bcrypt = await hash('BLF-CRYPT', PW, { bcryptCost: 4 });
  appHash = await hash('SSHA512', APP_PW);
});

async function addApp(tdb: TestDatabase, mailbox: string, access: Record<string, number>, opts: { password?: string; active?: number } = {}): Promise<number> {
  return insertAppPassword(tdb.db, {
    name: 'client',
    mailbox,
    domain: mailbox.split('@')[1] ?? '',
    password: opts.password ?? appHash,
    access: access as never,
    active: opts.active ?? 1,
  });
}

t.test('mailbox password: ok, mismatch, unknown user, case-insensitive name', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  await seedMailbox(f.tdb, 'bob@example.org', bcrypt);
  t.same(await f.auth.passdb(login('alice@example.org', PW)), { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' });
  t.match(await f.auth.passdb(login('bob@example.org', PW)), { result: 'ok', user: 'bob@example.org' }, 'BLF-CRYPT');
  t.match(await f.auth.passdb(login('alice@example.org', 'wrong')), { result: 'password_mismatch' });
  t.match(await f.auth.passdb(login('nobody@example.org', PW)), { result: 'user_unknown', reason: 'no such mailbox' });
  t.match(await f.auth.passdb(login('Alice@Example.ORG', PW)), { result: 'ok', user: 'alice@example.org' }, 'canonical name returned');
  t.same(
    f.recorded.map((r) => [r.username, r.appPassword, r.service, r.realRip]),
    [
      ['alice@example.org', 0, 'imap', '192.0.2.7'],
      ['bob@example.org', 0, 'imap', '192.0.2.7'],
      ['alice@example.org', 0, 'imap', '192.0.2.7'],
    ],
    'only successful logins are recorded',
  );
});

t.test('invalid user names and passwords are refused without touching the database', async (t) => {
  const f = await fixture(t, { max_password_bytes: 32 });
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  let loads = 0;
  const real = dbAccountLoader(f.tdb.db);
  const auth = f.make({ loadAccount: (u, s) => (loads++, real(u, s)) });
  const cases: [string, string, RegExp][] = [
    ['', PW, /empty user/],
    ['a'.repeat(250) + '@example.org', PW, /longer than 255/],
    ['alice@example.org\n', PW, /control/],
    ['alice\u0000@example.org', PW, /control/],
    ['alice smith', PW, /neither an email/],
    ['alice@@example.org', PW, /neither an email/],
    ["x' OR '1'='1", PW, /neither an email/],
    ['alice@example.org', '', /empty password/],
    ['alice@example.org', 'x'.repeat(33), /longer than 32 bytes/],
    ['alice@example.org', 'ü'.repeat(17), /longer than 32 bytes/],
  ];
  for (const [user, password, reason] of cases) {
    const r = await auth.passdb(login(user, password));
    t.equal(r.result, 'password_mismatch', JSON.stringify(user.slice(0, 20)));
    t.match(r.reason, reason);
  }
  t.equal(loads, 0, 'no database access for invalid input');
  t.match(await auth.passdb(login('plain_name-1.x', PW)), { result: 'user_unknown' }, 'a non-email name is valid');
  t.equal(loads, 1);
});

t.test('service mapping: each default service needs its access flag', async (t) => {
  const f = await fixture(t);
  const flags = ['imap', 'pop3', 'smtp', 'sieve', 'eas', 'dav'] as const;
  const services: Record<string, (typeof flags)[number]> = {
    imap: 'imap', pop3: 'pop3', smtp: 'smtp', submission: 'smtp', sieve: 'sieve', managesieve: 'sieve', eas: 'eas', dav: 'dav',
  };
  for (const flag of flags) {
    const attributes = Object.fromEntries(flags.map((x) => [`${x}_access`, x === flag ? '1' : '0']));
    await seedMailbox(f.tdb, `${flag}only@example.org`, ssha, { attributes });
  }
  for (const [service, flag] of Object.entries(services)) {
    for (const only of flags) {
      const r = await f.auth.passdb(login(`${only}only@example.org`, PW, service));
      if (only === flag) t.equal(r.result, 'ok', `${service} on ${only}only`);
      else {
        t.equal(r.result, 'user_disabled', `${service} refused on ${only}only`);
        t.equal(r.reason, `${flag}_access is not enabled for this mailbox`);
      }
    }
  }
  t.match(await f.auth.passdb(login('imaponly@example.org', PW, 'IMAP')), { result: 'ok' }, 'service names are case-insensitive');
});

t.test('a service outside the mapping is refused; the mapping is configurable', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  for (const service of ['doveadm', 'lmtp', 'constructor', '__proto__', 'toString', '']) {
    const r = await f.auth.passdb(login('alice@example.org', PW, service));
    t.equal(r.result, 'password_mismatch', `service ${JSON.stringify(service)}`);
    t.match(r.reason, /is not in auth\.services/);
  }
  const g = await fixture(t, { services: { doveadm: 'imap', imap: 'imap' } });
  await seedMailbox(g.tdb, 'alice@example.org', ssha, { attributes: { pop3_access: '0' } });
  t.match(await g.auth.passdb(login('alice@example.org', PW, 'doveadm')), { result: 'ok' }, 'doveadm mapped to imap');
  t.match(await g.auth.passdb(login('alice@example.org', PW, 'pop3')), { result: 'password_mismatch' }, 'pop3 no longer mapped');
});

t.test('missing or non-"1" access attributes refuse, like mailcow\'s SQL', async (t) => {
  const f = await fixture(t);
  await f.tdb.db.exec(
    "INSERT INTO mailbox (username, password, name, quota, local_part, domain, attributes) VALUES ('noattr@example.org', ?, 'n', 0, 'noattr', 'example.org', '{}')",
    [ssha],
  );
  await seedMailbox(f.tdb, 'numeric@example.org', ssha, { attributes: { imap_access: 1 } });
  await seedMailbox(f.tdb, 'truthy@example.org', ssha, { attributes: { imap_access: true } });
  await seedMailbox(f.tdb, 'yes@example.org', ssha, { attributes: { imap_access: 'yes' } });
  t.match(await f.auth.passdb(login('noattr@example.org', PW)), { result: 'user_disabled', reason: 'imap_access is not enabled for this mailbox' });
  t.match(await f.auth.passdb(login('numeric@example.org', PW)), { result: 'ok' }, 'JSON number 1 unquotes to "1"');
  t.match(await f.auth.passdb(login('truthy@example.org', PW)), { result: 'user_disabled' });
  t.match(await f.auth.passdb(login('yes@example.org', PW)), { result: 'user_disabled' });
});

t.test('disabled mailbox vs disabled domain vs receive-only', async (t) => {
  const f = await fixture(t);
  await seedDomain(f.tdb, 'off.example', { active: 0 });
  await seedMailbox(f.tdb, 'disabled@example.org', ssha, { active: 0 });
  await seedMailbox(f.tdb, 'receive@example.org', ssha, { active: 2 });
  await seedMailbox(f.tdb, 'user@off.example', ssha);
  t.same(await f.auth.passdb(login('disabled@example.org', PW)), { result: 'user_disabled', reason: 'mailbox is disabled (active=0)' });
  t.same(await f.auth.passdb(login('receive@example.org', PW)), { result: 'user_disabled', reason: 'mailbox is receive-only (active=2)' });
  t.same(await f.auth.passdb(login('user@off.example', PW)), { result: 'user_disabled', reason: 'domain off.example is disabled (active=0)' });
  const app = await addApp(f.tdb, 'disabled@example.org', ALL, { password: ssha });
  t.ok(app);
  t.match(await f.auth.passdb(login('disabled@example.org', PW)), { result: 'user_disabled' }, 'app passwords do not bypass a disabled mailbox');
  t.equal(f.recorded.length, 0);
});

t.test('resource kinds are not login accounts', async (t) => {
  const f = await fixture(t);
  for (const kind of ['location', 'thing', 'group']) {
    await seedMailbox(f.tdb, `${kind}@example.org`, ssha, { kind });
    t.same(await f.auth.passdb(login(`${kind}@example.org`, PW)), { result: 'user_unknown', reason: `resource mailbox (kind ${kind}) is not a login account` });
  }
});

t.test('app passwords: tried first, per protocol, active only, recorded with their id', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  const smtpOnly = await addApp(f.tdb, 'alice@example.org', { ...NONE, smtp: 1 });
  const inactive = await addApp(f.tdb, 'alice@example.org', ALL, { active: 0, password: await hash('SSHA256', 'inactive-pw') });
  t.match(await f.auth.passdb(login('alice@example.org', APP_PW, 'smtp')), { result: 'ok', user: 'alice@example.org', reason: `app password ${smtpOnly}` });
  t.match(await f.auth.passdb(login('alice@example.org', APP_PW, 'submission')), { result: 'ok' });
  t.match(await f.auth.passdb(login('alice@example.org', APP_PW, 'imap')), { result: 'password_mismatch' }, 'restricted to another protocol');
  t.match(await f.auth.passdb(login('alice@example.org', 'inactive-pw', 'imap')), { result: 'password_mismatch' }, 'inactive app password');
  t.same(f.recorded.map((r) => [r.service, r.appPassword]), [['smtp', smtpOnly], ['submission', smtpOnly]]);
  t.not(inactive, smtpOnly);

  // Ordering: every candidate app password is verified before the mailbox hash, and a match stops there.
  const seen: string[] = [];
  const spy: HashVerifier = (stored, pw) => (seen.push(stored), defaultVerifyHash(stored, pw));
  const auth = f.make({ verifyHash: spy });
  const second = await addApp(f.tdb, 'alice@example.org', ALL, { password: await hash('SSHA256', 'second-app-pw') });
  t.match(await auth.passdb(login('alice@example.org', PW, 'smtp')), { result: 'ok', reason: 'mailcow password' });
  t.same(seen, [appHash, seen[1], ssha], 'both smtp app passwords, then the mailbox hash');
  t.equal(seen.length, 3);
  seen.length = 0;
  t.match(await auth.passdb(login('alice@example.org', 'second-app-pw', 'imap')), { result: 'ok', reason: `app password ${second}` });
  t.equal(seen.length, 1, 'the imap candidate matched; the mailbox hash was never run');
});

t.test('the number of app-password verifications per login is bounded', async (t) => {
  const f = await fixture(t, { max_app_passwords: 2 });
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  for (let i = 0; i < 3; i++) await addApp(f.tdb, 'alice@example.org', ALL, { password: await hash('SSHA256', `app-${i}`) });
  let runs = 0;
  const auth = f.make({ verifyHash: (s, p) => (runs++, defaultVerifyHash(s, p)) });
  t.match(await auth.passdb(login('alice@example.org', 'app-1')), { result: 'ok' });
  runs = 0;
  t.match(await auth.passdb(login('alice@example.org', 'app-2')), { result: 'password_mismatch' }, 'the third (newest) is not tried');
  t.equal(runs, 3, 'two app passwords + the mailbox hash');
});

t.test('identity-provider mailboxes: own password refused as not configured, app passwords work', async (t) => {
  const f = await fixture(t);
  for (const source of ['keycloak', 'generic-oidc', 'ldap']) {
    const user = `${source}@example.org`;
    await seedMailbox(f.tdb, user, ssha, { authsource: source });
    const id = await addApp(f.tdb, user, ALL);
    const own = await f.auth.passdb(login(user, PW));
    t.equal(own.result, 'password_mismatch', `${source}: stored hash is not used`);
    t.match(own.reason, new RegExp(`authsource ${source} is not configured`));
    t.same(await f.auth.passdb(login(user, APP_PW)), { result: 'ok', user, reason: `app password ${id}` });
  }
});

t.test('an unknown authsource in a row is internal_failure with an error log', async (t) => {
  const f = await fixture(t);
  // A newer mailcow could add a source this version does not know.
  await f.tdb.db.exec('ALTER TABLE mailbox MODIFY authsource VARCHAR(32)');
  await seedMailbox(f.tdb, 'alice@example.org', ssha, { authsource: 'saml' });
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', format: 'json', destination: { write: (s: string) => lines.push(s) } as never });
  const auth = f.make({ logger });
  t.same(await auth.passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'unknown authsource "saml"' });
  const err = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 50);
  t.match(err, { msg: 'mailbox has an unknown authsource', authsource: 'saml', mailbox: 'alice@example.org' });
  t.throws(() => f.make({ sources: new Map([['mailcow', {} as PasswordSource]]) }), { code: 'ERR_CONFIG_INVALID' }, 'a missing source is refused at startup');
});

t.test('malformed and unsupported hashes are internal_failure, never a mismatch', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'broken@example.org', '{SSHA256}!!not-base64!!');
  await seedMailbox(f.tdb, 'alien@example.org', '{FANCY-HASH}abc');
  await seedMailbox(f.tdb, 'nopw@example.org', '');
  await seedMailbox(f.tdb, 'appbroken@example.org', ssha);
  await addApp(f.tdb, 'appbroken@example.org', ALL, { password: '{BLF-CRYPT}$2y$99$tooexpensive' });
  t.match(await f.auth.passdb(login('broken@example.org', PW)), { result: 'internal_failure', reason: /malformed hash for scheme SSHA256/ });
  t.match(await f.auth.passdb(login('broken@example.org', 'wrong')), { result: 'internal_failure' });
  t.match(await f.auth.passdb(login('alien@example.org', PW)), { result: 'internal_failure', reason: /FANCY-HASH/ });
  t.same(await f.auth.passdb(login('nopw@example.org', PW)), { result: 'password_mismatch', reason: 'mailbox has no password set' });
  t.match(await f.auth.passdb(login('appbroken@example.org', 'wrong')), { result: 'internal_failure', reason: '1 app password hash(es) cannot be verified' });
  t.match(await f.auth.passdb(login('appbroken@example.org', PW)), { result: 'ok' }, 'the mailbox password still decides when it matches');
});

t.test('database down → internal_failure', async (t) => {
  const f = await fixture(t);
  // A port nothing listens on: bind, note it, close.
  const port = await new Promise<number>((resolve) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const down = createDb({ ...f.tdb.dbConfig, port, connectTimeoutMs: 500 });
  t.teardown(() => down.close());
  const auth = createAuthenticator({ db: down, logger: silentLogger(), config: f.config.auth });
  t.same(await auth.passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'database unavailable' });
  t.same(await auth.userdb({ user: 'alice@example.org' }), { result: 'internal_failure', reason: 'database unavailable' });
});

t.test('the deadline turns a slow decision into internal_failure', async (t) => {
  const f = await fixture(t, { deadline: '150ms' }, { database: { query_timeout: '100ms' } });
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  let aborted = false;
  const hang: AccountLoader = (_u, signal) =>
    new Promise((resolve) => {
      signal.addEventListener('abort', () => ((aborted = true), setTimeout(() => resolve(null), 10)));
    });
  t.same(await f.make({ loadAccount: hang }).passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'deadline exceeded' });
  t.ok(aborted, 'the work was told to stop');
  t.same(await f.make({ loadAccount: hang }).userdb({ user: 'alice@example.org' }), { result: 'internal_failure', reason: 'deadline exceeded' });

  // A slow source (an IdP that does not answer) hits the same deadline; a late "ok" is not recorded.
  const slow: PasswordSource = { name: 'mailcow', verify: () => new Promise((r) => setTimeout(() => r({ result: 'ok' }), 400)) };
  const sources = new Map<string, PasswordSource>([['mailcow', slow], ['keycloak', slow], ['generic-oidc', slow], ['ldap', slow]]);
  t.same(await f.make({ sources }).passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'deadline exceeded' });
  await new Promise((r) => setTimeout(r, 400));
  t.equal(f.recorded.length, 0);
});

t.test('a throwing source or loader never escapes', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  const boom: PasswordSource = {
    name: 'mailcow',
    verify: () => {
      throw new Error('boom');
    },
  };
  const sources = new Map<string, PasswordSource>([['mailcow', boom], ['keycloak', boom], ['generic-oidc', boom], ['ldap', boom]]);
  t.same(await f.make({ sources }).passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'internal error' });
  const badLoader: AccountLoader = () => Promise.reject(new TypeError('nope'));
  t.same(await f.make({ loadAccount: badLoader }).passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'internal error' });
  // A row whose attributes column is not JSON (possible where the column has no json_valid check) is a coded fault.
  await f.tdb.db.exec('ALTER TABLE mailbox MODIFY attributes LONGTEXT');
  await f.tdb.db.exec("UPDATE mailbox SET attributes = 'not json' WHERE username = 'alice@example.org'");
  t.same(await f.auth.passdb(login('alice@example.org', PW)), { result: 'internal_failure', reason: 'internal error (ERR_DB_QUERY)' });
});

t.test('userdb: quota rule, receive-only mailboxes and resources exist, disabled ones do not', async (t) => {
  const f = await fixture(t);
  await seedMailbox(f.tdb, 'alice@example.org', ssha, { quota: 1_073_741_824 });
  await seedMailbox(f.tdb, 'receive@example.org', ssha, { active: 2 });
  await seedMailbox(f.tdb, 'off@example.org', ssha, { active: 0 });
  await seedMailbox(f.tdb, 'room@example.org', ssha, { kind: 'location' });
  t.same(await f.auth.userdb({ user: 'alice@example.org', service: 'lmtp' }), { result: 'ok', user: 'alice@example.org', fields: { quota_rule: '*:bytes=1073741824' } });
  t.same(await f.auth.userdb({ user: 'ALICE@example.org' }), { result: 'ok', user: 'alice@example.org', fields: { quota_rule: '*:bytes=1073741824' } });
  t.same(await f.auth.userdb({ user: 'receive@example.org' }), { result: 'ok', user: 'receive@example.org', fields: { quota_rule: '*:bytes=0' } });
  t.match(await f.auth.userdb({ user: 'room@example.org' }), { result: 'ok' });
  t.same(await f.auth.userdb({ user: 'off@example.org' }), { result: 'user_unknown', reason: 'mailbox is disabled (active=0)' });
  t.same(await f.auth.userdb({ user: 'ghost@example.org' }), { result: 'user_unknown', reason: 'no such mailbox' });
  t.match(await f.auth.userdb({ user: 'bad name' }), { result: 'user_unknown' });
});

t.test('log sink: one line per decision, no password or hash in any line', async (t) => {
  const f = await fixture(t);
  const lines: string[] = [];
  const logger = createLogger({ level: 'trace', format: 'json', destination: { write: (s: string) => lines.push(s) } as never });
  const auth = f.make({ logger });
  const malformedHash = '{SSHA256}c2VjcmV0LWhhc2gtbWF0ZXJpYWw=!';
  await seedMailbox(f.tdb, 'alice@example.org', ssha);
  await seedMailbox(f.tdb, 'broken@example.org', malformedHash);
  await seedMailbox(f.tdb, 'kc@example.org', ssha, { authsource: 'keycloak' });
  await addApp(f.tdb, 'alice@example.org', ALL);
  await addApp(f.tdb, 'alice@example.org', ALL, { password: '{PLAIN}plain-app-secret' });
  const calls = [
    login('alice@example.org', PW),
    login('alice@example.org', APP_PW),
    login('alice@example.org', 'wrong-guess-123'),
    login('broken@example.org', PW),
    login('kc@example.org', PW),
    login('nobody@example.org', PW),
    login('alice@example.org', PW, 'doveadm'),
    login('bad user', PW),
  ];
  for (const c of calls) await auth.passdb(c);
  await auth.userdb({ user: 'alice@example.org' });
  const text = lines.join('');
  for (const secret of [PW, APP_PW, 'wrong-guess-123', 'plain-app-secret', ssha, appHash, malformedHash, 'c2VjcmV0LWhhc2gtbWF0ZXJpYWw']) {
    t.notOk(text.includes(secret), `no ${secret.slice(0, 12)}… in the log`);
  }
  const decisions = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'passdb decision');
  t.equal(decisions.length, calls.length, 'one exit line per decision');
  t.same(
    decisions.map((d) => d.result),
    ['ok', 'ok', 'password_mismatch', 'internal_failure', 'password_mismatch', 'user_unknown', 'password_mismatch', 'password_mismatch'],
  );
  t.match(decisions[0], { user: 'alice@example.org', service: 'imap', ip: '192.0.2.7', reqId: String });
  t.ok(lines.some((l) => l.includes('"mailbox":"broken@example.org"') && l.includes('cannot be verified')), 'the broken mailbox is named');
});
