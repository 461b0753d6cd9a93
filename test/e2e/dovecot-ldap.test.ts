/**
 * Issue 18 end to end, on Dovecot 2.3 (host) and 2.4 (Debian 13 root): IMAP
 * LOGIN of LDAP users through a private Dovecot with lua/mailauth.lua, the
 * mailauth daemon, a real OpenLDAP (private slapd) and MariaDB — a bind at
 * login, a wrong password, a disabled entry, first-login provisioning, and
 * the directory hanging: temp_fail / [UNAVAILABLE], never a mismatch.
 */
import t from 'tap';
import { provisionMailbox } from '../../src/provisioning/index.js';
import { createTestDatabase, seedDomain } from '../helpers/db.js';
import { DOVECOT_VERSIONS, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import { seedTemplates, startIdpDaemon } from '../helpers/idp-login.js';
import { PEOPLE_FIXTURE, setLdapIdp } from '../helpers/ldap-world.js';
import { requireSlapd, startSlapd } from '../helpers/slapd.js';

// Two Dovecots (2.4 in its Debian 13 root), a daemon and a slapd: past two minutes on a busy machine.
t.setTimeout(300_000);

for (const version of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${version}: IMAP logins of LDAP users`, async (t) => {
    if (!requireDovecot(t, version) || !requireSlapd(t)) return;
    const slapd = await startSlapd(t, { people: PEOPLE_FIXTURE });
    const tdb = await createTestDatabase(t);
    await seedDomain(tdb, 'example.org');
    await seedTemplates(tdb);
    await setLdapIdp(tdb, slapd);
    for (const u of ['alice', 'bob', 'disabled']) {
      const r = await tdb.db.transaction((tx) =>
        provisionMailbox(tx, { username: `${u}@example.org`, name: u, templateName: 'Staff', passwordHash: '', authsource: 'ldap' }, { mode: 'create' }),
      );
      if ('refused' in r) throw new Error(r.message);
    }
    const d = await startIdpDaemon(t, tdb, { auth: { deadline: '1500ms' }, database: { query_timeout: '1s' }, idp: { cooldown: '0s' } });
    const dv = await startDovecot(t, { version, lua: { url: d.url, timeout: 3 }, userdb: 'static' });

    t.match(await dv.imapLogin('alice@example.org', 'alice-pw'), /^l OK .*Logged in/, 'bind as the entry');
    t.match(await dv.imapLogin('alice@example.org', 'wrong'), /^l NO \[AUTHENTICATIONFAILED\]/, 'wrong password');
    t.match(await dv.imapLogin('disabled@example.org', 'disabled-pw'), /^l NO /, 'disabled entry');
    t.match(await dv.imapLogin('dave@example.org', 'dave-pw'), /^l OK .*Logged in/, 'provisioned at its first login');
    t.match(await tdb.sql('SELECT authsource, name FROM mailbox WHERE username = ?', ['dave@example.org']), [{ authsource: 'ldap', name: 'Dave New' }]);

    slapd.pause();
    try {
      const bob = await dv.doveadmAuthTest('bob@example.org', 'bob-pw');
      t.notOk(bob.ok, 'directory hanging: bob cannot be decided');
      t.equal(bob.fields.code, 'temp_fail', 'temp_fail, not a mismatch', { output: bob.output });
      t.match(await dv.imapLogin('bob@example.org', 'bob-pw'), /^l NO \[UNAVAILABLE\]/);
    } finally {
      slapd.resume();
    }
    t.match(await dv.imapLogin('bob@example.org', 'bob-pw'), /^l OK .*Logged in/, 'directory back');
    t.notMatch(d.logText(), /alice-pw|bob-pw|dave-pw|service-secret/, 'no password in the mailauth log');
    t.notMatch(dv.log(), /alice-pw|bob-pw|dave-pw/, 'nor in the Dovecot log');
  });
}
