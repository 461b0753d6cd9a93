/**
 * SMTP AUTH through a real Postfix (a private instance, test/helpers/postfix.ts)
 * using Dovecot SASL, on Dovecot 2.3 and 2.4, in front of the real mailauth.
 * Postfix, Dovecot and the Lua settings all run the configuration blocks of
 * docs/dovecot.md. PLAIN and LOGIN, right and wrong password, an SMTP-only app
 * password, a mailbox with smtp_access off, a disabled one; then mailauth stops:
 * a user with a cached SMTP login still gets 235, a new one gets Postfix's
 * permanent 535 5.7.8 although Dovecot reported a temporary failure.
 */
import t from 'tap';
import type { Test } from 'tap';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { DOVECOT_VERSIONS, requireDovecot, scratchDir, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { PASSWORDS, seedDovecotWorld, startMailauth } from '../helpers/mailauth-daemon.js';
import { requirePostfix, startPostfix } from '../helpers/postfix.js';

const FRANK = 'frank-Secret-6';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scenario(t: Test, tdb: TestDatabase, version: DovecotVersion): Promise<void> {
  const mailauth = await startMailauth(t, tdb);
  const pf = await startPostfix(t, { dir: scratchDir(t, version).host });
  const dv = await startDovecot(t, {
    version,
    lua: { url: mailauth.url, tokenFile: mailauth.tokenFile ?? '', fromDocs: true },
    docs: [`dovecot-${version}-auth`, `dovecot-${version}-postfix`],
    postfixQueueDir: pf.queueDir,
    cacheTtl: '2 secs',
    cacheNegativeTtl: '2 secs',
  });

  t.same(await pf.authMechanisms(), ['PLAIN', 'LOGIN'], 'after STARTTLS Postfix offers the mechanisms Dovecot has');
  // The app password first: Dovecot's cache re-asks on a password that differs from a cached
  // success, but not from a cached failure, so its order against the wrong passwords matters.
  t.equal((await pf.smtpAuth('alice@example.org', PASSWORDS.aliceApp)).code, 235, 'the SMTP-only app password is accepted for SMTP');
  t.match(await dv.imapLogin('alice@example.org', PASSWORDS.aliceApp), /^l NO \[AUTHENTICATIONFAILED\]/, 'and still refused for IMAP');
  for (const mech of ['PLAIN', 'LOGIN'] as const) {
    const ok = await pf.smtpAuth('alice@example.org', PASSWORDS.alice, { mech });
    t.equal(ok.code, 235, `${mech}: the right password is accepted`, { reply: ok.reply });
    t.match(ok.reply, /^235 2\.7\.0 Authentication successful/);
  }
  t.equal((await pf.smtpAuth('frank@example.org', FRANK)).code, 535, 'a mailbox with smtp_access off is refused with its right password');
  t.match(await dv.imapLogin('frank@example.org', FRANK), /^l OK/, 'while it may use IMAP');
  t.equal((await pf.smtpAuth('bob@example.org', PASSWORDS.bob)).code, 535, 'a disabled mailbox is refused');
  for (const mech of ['PLAIN', 'LOGIN'] as const) {
    const wrong = await pf.smtpAuth('alice@example.org', 'not-her-password', { mech });
    t.equal(wrong.code, 535, `${mech}: a wrong password is refused`, { reply: wrong.reply });
    t.match(wrong.reply, /^535 5\.7\.8 Error: authentication failed:/);
  }
  t.notMatch(pf.log() + dv.log(), PASSWORDS.alice, 'no password reaches either log');

  await t.test('mailauth down', async (t) => {
    await mailauth.stop();
    await sleep(2300); // past auth_cache_ttl: what follows comes from expired entries or nowhere
    const cached = await pf.smtpAuth('alice@example.org', PASSWORDS.alice);
    t.equal(cached.code, 235, 'a user with a cached SMTP login still gets 235', { reply: cached.reply });
    const fresh = await pf.smtpAuth('erin@example.org', PASSWORDS.erin);
    t.equal(fresh.code, 535, 'a user never seen gets the permanent 535 from Postfix', { reply: fresh.reply });
    t.match(fresh.reply, /^535 5\.7\.8 Error: authentication failed:/, 'exactly as for a wrong password');
    const doveadm = await dv.doveadmAuthTest('erin@example.org', PASSWORDS.erin, { service: 'smtp' });
    t.equal(doveadm.fields.code, 'temp_fail', 'although Dovecot reports a temporary failure for the same login');
    t.match(
      pf.log(),
      /SASL PLAIN authentication failed: \(reason unavailable\), sasl_username=erin@example\.org/,
      "Postfix's log line is the same as for a wrong password",
    );
    t.match(await dv.waitForLog(/passdb-lua: mailauth: unreachable: connection refused \[builtin: /), /passdb-lua: mailauth: unreachable: connection refused \[builtin: /, "only Dovecot's log names the cause");
  });
}

const tdb = await createTestDatabase(t);
await seedDovecotWorld(tdb);
await seedMailbox(tdb, 'frank@example.org', await hash('SSHA256', FRANK), { attributes: { smtp_access: '0' } });
for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version} + Postfix`, async (t) => {
    if (requireDovecot(t, version) && requirePostfix(t)) await scenario(t, tdb, version);
  });
}
