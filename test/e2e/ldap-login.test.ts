/**
 * Issue 18: logins of `ldap` mailboxes through the daemon over HTTP against a
 * real OpenLDAP (private slapd with the ppolicy overlay) and a real MariaDB:
 * right/wrong/disabled/locked, ambiguous and hostile user names, app
 * passwords first (a failed app-password guess never binds), the bind cache
 * and how a password changed in the directory is noticed, login
 * provisioning, and a directory that is down or hangs mid-run.
 */
import t from 'tap';
import { hash } from '../../src/passwords/index.js';
import { provisionMailbox } from '../../src/provisioning/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { seedTemplates, startIdpDaemon } from '../helpers/idp-login.js';
import type { IdpDaemon } from '../helpers/idp-login.js';
import { PEOPLE_FIXTURE, setLdapIdp } from '../helpers/ldap-world.js';
import type { LdapRows } from '../helpers/ldap-world.js';
import { PEOPLE, requireSlapd, startSlapd } from '../helpers/slapd.js';
import type { SlapdInstance } from '../helpers/slapd.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

interface World {
  tdb: TestDatabase;
  slapd: SlapdInstance;
  d: IdpDaemon;
}

async function ldapMailbox(tdb: TestDatabase, username: string, template = 'Staff', name = ''): Promise<void> {
  const r = await tdb.db.transaction((tx) => provisionMailbox(tx, { username, name, templateName: template, passwordHash: '', authsource: 'ldap' }, { mode: 'create' }));
  if ('refused' in r) throw new Error(r.message);
}

async function world(t: Teardown, o: { slapd?: SlapdInstance; rows?: LdapRows; yaml?: Record<string, unknown> } = {}): Promise<World> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  const slapd = o.slapd ?? (await startSlapd(t, { people: PEOPLE_FIXTURE }));
  await setLdapIdp(tdb, slapd, o.rows);
  for (const u of ['alice', 'bob', 'carol', 'disabled', 'locked', 'adoff', 'twin', 'sam.smith']) await ldapMailbox(tdb, `${u}@example.org`);
  const d = await startIdpDaemon(t, tdb, { auth: { deadline: '2s' }, database: { query_timeout: '1s' }, ...o.yaml });
  return { tdb, slapd, d };
}

async function failureTimes(slapd: SlapdInstance, uid: string): Promise<number> {
  const text = await slapd.search(PEOPLE, `(uid=${uid})`, ['pwdFailureTime']);
  return (text.match(/^pwdFailureTime:/gm) ?? []).length;
}

async function main(): Promise<void> {
  // A daemon, a database and (for the outage scenarios) a slapd each: past two minutes on a busy machine.
  t.setTimeout(300_000);
  const shared = await startSlapd(t, { people: PEOPLE_FIXTURE });

  t.test('right, wrong, disabled, locked, no entry, ambiguous', async (t) => {
    const { d } = await world(t, { slapd: shared });
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', user: 'alice@example.org', reason: 'ldap bind' });
    t.match(await d.passdb('alice@example.org', 'wrong'), { result: 'password_mismatch', reason: /refused the password/ });
    t.match(await d.passdb('Alice@Example.org', 'alice-pw'), { result: 'ok', user: 'alice@example.org' }, 'case-insensitive login');
    t.match(await d.passdb('disabled@example.org', 'disabled-pw'), { result: 'user_disabled', reason: /disabled \(pwdAccountLockedTime 000001010000Z\)/ });
    t.match(await d.passdb('locked@example.org', 'locked-pw'), { result: 'user_disabled', reason: /locked \(pwdAccountLockedTime 2026/ });
    t.match(await d.passdb('locked@example.org', 'wrong'), { result: 'user_disabled' });
    t.match(await d.passdb('adoff@example.org', 'adoff-pw'), { result: 'user_disabled', reason: /userAccountControl ACCOUNTDISABLE/ });
    t.match(await d.passdb('twin@example.org', 'twin-pw'), { result: 'password_mismatch', reason: /2 directory entries match/ });
    // carol has a mailbox and an entry; a mailbox whose entry is gone is a mismatch, not a fault.
    await shared.modify(`dn: uid=carol,${PEOPLE}\nchangetype: modify\nreplace: mail\nmail: carol-renamed@example.org\n`);
    t.teardown(() => shared.modify(`dn: uid=carol,${PEOPLE}\nchangetype: modify\nreplace: mail\nmail: carol@example.org\n`));
    t.match(await d.passdb('carol@example.org', 'carol-pw'), { result: 'password_mismatch', reason: /no directory entry/ });
    t.equal(await failureTimes(shared, 'disabled'), 0, 'a disabled entry is refused without a bind');
    t.notMatch(d.logText(), /alice-pw|service-secret|disabled-pw/, 'no password in the log');
  });

  t.test('filter injection: hostile user names match nobody and break nothing', async (t) => {
    const { d } = await world(t, { slapd: shared });
    // Names the user-name check lets through to the directory (RFC 5322 atext allows * = | { } ...).
    for (const user of ['*@example.org', 'a*@example.org', '*', 'alice*', '*=*@example.org', 'alice@example.org*', '|@example.org']) {
      const r = await d.passdb(user, 'alice-pw');
      t.not(r.result, 'ok', `${user}: not a login`);
      t.not(r.result, 'internal_failure', `${user}: not a fault`);
    }
    // Straight at the runtime, with what the user-name check would refuse.
    const s = (await d.daemon.idp.runtime.snapshot()).settings;
    if (s?.source !== 'ldap') throw new Error('expected ldap settings');
    const ctrl = new AbortController();
    for (const login of ['*', 'alice@example.org)(mail=*', '*)(|(mail=*', 'alice@example.org)(|(objectClass=*)', '\\2a', 'x\u0000)(mail=*', '(mail=*)']) {
      const r = await d.daemon.idp.ldap.findEntry(s, login, ctrl.signal);
      t.equal(r.value, null, `${JSON.stringify(login)} finds no entry`);
    }
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' }, 'the directory connection is still fine');
  });

  t.test('app passwords first; a failed app-password guess never reaches the directory', async (t) => {
    const { tdb, d } = await world(t, { slapd: shared });
    await tdb.db.exec(
      "INSERT INTO app_passwd (name, mailbox, domain, password, imap_access, smtp_access, pop3_access, sieve_access, dav_access, eas_access, active) VALUES ('phone', 'sam.smith@example.org', 'example.org', ?, 0, 1, 0, 0, 0, 0, 1)",
      [await hash('SSHA256', 'app-secret-1')],
    );
    t.match(await d.passdb('sam.smith@example.org', 'app-secret-1', 'smtp'), { result: 'ok', reason: /^app password( \d+)?$/ });
    for (let i = 0; i < 5; i++) {
      t.match(await d.passdb('sam.smith@example.org', 'app-secret-1', 'imap'), { result: 'password_mismatch', reason: /not enabled for imap/ });
    }
    t.equal(await failureTimes(shared, 'sam'), 0, 'no failed bind recorded for app-password attempts');
    // A client retrying one wrong password: the refusal is remembered, the directory sees one bind (lockout after 3).
    for (let i = 0; i < 6; i++) t.match(await d.passdb('sam.smith@example.org', 'old-password', 'imap'), { result: 'password_mismatch' });
    t.equal(await failureTimes(shared, 'sam'), 1, 'six retries of one wrong password cost one failed bind');
    t.match(await d.passdb('sam.smith@example.org', 'sam-pw', 'imap'), { result: 'ok' }, 'the account is not locked');
  });

  t.test('bind cache: remembered, and a password changed in the directory is noticed at the next login', async (t) => {
    const { d } = await world(t, { slapd: shared });
    t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok', reason: 'ldap bind' });
    t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok', reason: 'ldap bind (remembered)' });
    const before = d.daemon.idp.ldap.counters.binds;
    await shared.modify(`dn: uid=bob,${PEOPLE}\nchangetype: modify\nreplace: userPassword\nuserPassword: bob-new-pw\n`);
    t.teardown(() => shared.modify(`dn: uid=bob,${PEOPLE}\nchangetype: modify\nreplace: userPassword\nuserPassword: bob-pw\n`));
    // modifyTimestamp has a one-second resolution: the change may land in the second of the last bind.
    await new Promise((r) => setTimeout(r, 1100));
    await shared.modify(`dn: uid=bob,${PEOPLE}\nchangetype: modify\nreplace: description\ndescription: touched\n`);
    t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'password_mismatch' }, 'the old password is refused at once');
    t.match(await d.passdb('bob@example.org', 'bob-new-pw'), { result: 'ok', reason: 'ldap bind' });
    t.ok(d.daemon.idp.ldap.counters.binds >= before + 2, 'both were real binds');
  });

  t.test('login provisioning: first login creates the mailbox from the mapped template', async (t) => {
    const { tdb, d } = await world(t, { slapd: shared });
    t.match(await d.passdb('dave@example.org', 'wrong'), { result: 'password_mismatch' }, 'wrong password: nothing created');
    t.same(await tdb.sql('SELECT username FROM mailbox WHERE username = ?', ['dave@example.org']), []);
    t.match(await d.passdb('dave@example.org', 'dave-pw'), { result: 'ok', user: 'dave@example.org', reason: 'ldap password; mailbox provisioned at first login' });
    const [row] = await tdb.sql<{ authsource: string; name: string; quota: number; tpl: string }>(
      "SELECT authsource, name, quota, JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.pop3_access')) AS tpl FROM mailbox WHERE username = ?",
      ['dave@example.org'],
    );
    t.match(row, { authsource: 'ldap', name: 'Dave New', quota: 2048 * 1024 * 1024, tpl: '0' }, 'Staff template, name from the entry');
    t.match(await d.passdb('dave@example.org', 'dave-pw'), { result: 'ok', reason: /ldap bind/ }, 'then an ordinary ldap mailbox');
    t.match(await d.passdb('erin@example.org', 'erin-pw'), { result: 'password_mismatch', reason: /not provisioned: employeeType \["contractor"\] is not mapped/ });
    t.match(await d.passdb('nobody@example.org', 'x'), { result: 'user_unknown', reason: /no directory entry/ });
    t.match(await d.passdb('*@example.org', 'dave-pw'), { result: 'user_unknown' }, 'a wildcard login provisions nobody');
    t.match(await d.passdb('someone@elsewhere.org', 'x'), { result: 'user_unknown', reason: /not hosted here/ });
  });

  t.test('directory down and hanging mid-run: internal_failure within the deadline, then back', async (t) => {
    const slapd = await startSlapd(t, { people: PEOPLE_FIXTURE });
    const { d } = await world(t, { slapd, yaml: { auth: { deadline: '1500ms' }, database: { query_timeout: '1s' }, idp: { cooldown: '0ms' } } });
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });

    slapd.pause();
    let t0 = Date.now();
    const hung = await d.passdb('bob@example.org', 'bob-pw');
    let took = Date.now() - t0;
    t.match(hung, { result: 'internal_failure' }, 'hanging directory: could not decide');
    t.ok(took < 2500, `answered in ${took} ms (deadline 1.5 s)`);
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok', reason: /remembered; the directory is unavailable/ }, 'a recent login still gets in');
    t.match(await d.passdb('alice@example.org', 'not-her-password'), { result: 'internal_failure' }, 'an unknown password is not decided while the directory hangs');
    slapd.resume();
    t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok' }, 'resumed: connections replaced');

    await slapd.stop();
    t0 = Date.now();
    t.match(await d.passdb('bob@example.org', 'wrong'), { result: 'internal_failure' }, 'directory down');
    took = Date.now() - t0;
    t.ok(took < 2500, `answered in ${took} ms`);
    await slapd.start();
    t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok' }, 'restarted: reconnects by itself');
    t.notMatch(d.logText(), /bob-pw|alice-pw|service-secret/, 'no password in the log');
  });

  t.test('LDAPS and StartTLS with a self-signed CA: refused unless trusted or ignore_ssl_error', async (t) => {
    for (const transport of ['ldaps', 'starttls'] as const) {
      const { tdb, d } = await world(t, { slapd: shared, rows: { transport } });
      t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'internal_failure' }, `${transport}: untrusted certificate`);
      t.match(d.logText(), /TLS failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/, `${transport}: the log says why`);
      await tdb.db.exec("REPLACE INTO identity_provider (`key`, value) VALUES ('ca_file', ?)", [shared.ca.caFile]);
      d.forgetIdp();
      t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' }, `${transport}: CA trusted through ca_file`);
      await tdb.db.exec("DELETE FROM identity_provider WHERE `key` = 'ca_file'");
      await tdb.db.exec("UPDATE identity_provider SET value = '1' WHERE `key` = 'ignore_ssl_error'");
      d.forgetIdp();
      t.match(await d.passdb('bob@example.org', 'bob-pw'), { result: 'ok' }, `${transport}: ignore_ssl_error`);
    }
  });

  t.test('failover: the first host is dead, the second answers', async (t) => {
    const { d } = await world(t, { slapd: shared, rows: { host: `127.0.0.2,${shared.host}` } });
    // 127.0.0.2 is loopback with nothing on the port: refused at once, then 127.0.0.1.
    t.match(await d.passdb('alice@example.org', 'alice-pw'), { result: 'ok' });
    t.equal(d.daemon.idp.ldap.directory((await d.daemon.idp.runtime.snapshot()).settings as never).currentHost, shared.host);
  });
}

if (requireSlapd(t)) await main();
