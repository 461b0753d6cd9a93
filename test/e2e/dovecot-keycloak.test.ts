/**
 * Issue 7 through a real Dovecot (2.3 and 2.4): a private instance with lua/mailauth.lua in
 * front of the mailauth daemon, in front of the Keycloak double. The happy
 * path (mailpassword login, first-login provisioning, IMAP LOGIN) and the
 * IdP-down path: a recently seen user still gets in from mailauth's idp cache
 * (Dovecot's own auth cache is off), a new one gets temp_fail / [UNAVAILABLE],
 * never a password mismatch.
 */
import t from 'tap';
import type { Test } from 'tap';
import { provisionMailbox } from '../../src/provisioning/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain } from '../helpers/db.js';
import { DOVECOT_VERSIONS, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { seedTemplates, setKeycloakIdp, startIdpDaemon } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';

async function main(t: Test, version: DovecotVersion): Promise<void> {
  if (!requireDovecot(t, version)) return;
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  const ssha = (pw: string): Promise<string> => hash('SSHA256', pw);
  const kc = await startKeycloakDouble({
    users: [
      { username: 'alice', email: 'alice@example.org', firstName: 'Alice', lastName: 'Example', attributes: { mailcow_password: [await ssha('alice-pw')], mailcow_template: ['staff'] } },
      { username: 'newbie', email: 'newbie@example.org', firstName: 'New', lastName: 'Bie', attributes: { mailcow_password: [await ssha('newbie-pw')], mailcow_template: ['student'] } },
      { username: 'erin', email: 'erin@example.org', attributes: { mailcow_password: [await ssha('erin-pw')], mailcow_template: ['staff'] } },
    ],
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc);
  for (const u of ['alice', 'erin']) {
    const r = await tdb.db.transaction((tx) =>
      provisionMailbox(tx, { username: `${u}@example.org`, name: u, templateName: 'Staff', passwordHash: '', authsource: 'keycloak' }, { mode: 'create' }),
    );
    if ('refused' in r) throw new Error(r.message);
  }
  // idp_ttl 0: every login asks the IdP while it is up, so the outage below is served by stale-if-error.
  // The outage is injected as connection resets (immediate), so a 5 s IdP timeout costs nothing and
  // keeps a busy machine's slow answer from reading as an outage.
  const d = await startIdpDaemon(t, tdb, { cache: { idp_ttl: '0s', idp_stale_for: '1h' }, idp: { cooldown: '0s', retries: 0, timeout: '5s' } });
  // The script's default timeout (8 s): a busy machine must not turn a slow answer into temp_fail.
  const dv = await startDovecot(t, { version, lua: { url: d.url }, userdb: 'static' });

  await t.test('happy path: mailpassword login, IMAP LOGIN, first-login provisioning', async (t) => {
    const ok = await dv.doveadmAuthTest('alice@example.org', 'alice-pw');
    t.ok(ok.ok, 'doveadm auth test succeeds', { output: ok.output, log: dv.log().split('\n').slice(-6) });
    const bad = await dv.doveadmAuthTest('alice@example.org', 'wrong');
    t.notOk(bad.ok, 'wrong password fails');
    t.equal(bad.fields.code ?? '', '', 'as a plain mismatch (no temp_fail)');
    t.match(await dv.imapLogin('alice@example.org', 'alice-pw'), /^l OK .*Logged in/);
    t.match(await dv.imapLogin('newbie@example.org', 'newbie-pw'), /^l OK .*Logged in/, 'unknown mailbox provisioned at its first login');
    t.match(await tdb.sql('SELECT username, authsource, name FROM mailbox WHERE username = ?', ['newbie@example.org']), [{ username: 'newbie@example.org', authsource: 'keycloak', name: 'New Bie' }]);
    t.match(await dv.imapLogin('nobody@example.org', 'x'), /^l NO \[AUTHENTICATIONFAILED\]/, 'no IdP user: a plain failure');
  });

  await t.test('IdP down: recent users still get in, others get temp_fail, never a mismatch', async (t) => {
    kc.inject('*', { kind: 'reset' });
    const ok = await dv.doveadmAuthTest('alice@example.org', 'alice-pw');
    t.ok(ok.ok, 'alice (looked up a moment ago) gets in from the stale idp cache', { output: ok.output });
    t.match(await dv.imapLogin('alice@example.org', 'alice-pw'), /^l OK .*Logged in/);
    const erin = await dv.doveadmAuthTest('erin@example.org', 'erin-pw');
    t.notOk(erin.ok, 'erin (never seen by this daemon) cannot be decided');
    t.equal(erin.fields.code, 'temp_fail', 'temp_fail, not a mismatch', { output: erin.output });
    t.match(await dv.imapLogin('erin@example.org', 'erin-pw'), /^l NO \[UNAVAILABLE\]/);
    kc.clearFaults();
    t.ok((await dv.doveadmAuthTest('erin@example.org', 'erin-pw')).ok, 'IdP back: erin gets in');
  });
  t.notMatch(d.logText(), /alice-pw|newbie-pw|erin-pw/, 'no password in the mailauth log');
  t.notMatch(dv.log(), /alice-pw|newbie-pw|erin-pw/, 'nor in the Dovecot log');
}

for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version}`, (t) => main(t, version));
}
