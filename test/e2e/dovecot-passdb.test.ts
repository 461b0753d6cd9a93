/**
 * Issue 3 end to end, on Dovecot 2.3 and 2.4: a private Dovecot (lua/mailauth.lua as passdb and userdb,
 * auth cache on; the configuration blocks of docs/dovecot.md) in front of the real mailauth daemon on a real MariaDB test
 * database. Logins through `doveadm auth test` and raw IMAP/POP3; then mailauth
 * is stopped, and a user who logged in before still gets in from Dovecot's
 * (expired) cache while a new one gets [UNAVAILABLE].
 */
import t from 'tap';
import type { Test } from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import { DOVECOT_VERSIONS, randomClientIp, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import type { DovecotInstance, DovecotVersion } from '../helpers/dovecot.js';
import type { TestDatabase } from '../helpers/db.js';
import { PASSWORDS, seedDovecotWorld, startMailauth } from '../helpers/mailauth-daemon.js';
import type { MailauthUnderTest } from '../helpers/mailauth-daemon.js';

const CACHE_TTL_SECS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const OK = /^l OK .*Logged in/;
const REFUSED = /^l NO \[AUTHENTICATIONFAILED\]/;
const UNAVAILABLE = /^l NO \[UNAVAILABLE\]/;

async function scenario(t: Test, tdb: TestDatabase, version: DovecotVersion): Promise<void> {
  const mailauth: MailauthUnderTest = await startMailauth(t, tdb);
  const dv: DovecotInstance = await startDovecot(t, {
    version,
    // The configuration of docs/dovecot.md, with a short cache TTL so the outage below uses expired entries.
    docs: [`dovecot-${version}-auth`],
    lua: { url: mailauth.url, tokenFile: mailauth.tokenFile ?? '', fromDocs: true },
    pop3: true,
    cacheSize: '1M',
    cacheTtl: `${CACHE_TTL_SECS} secs`,
    cacheNegativeTtl: `${CACHE_TTL_SECS} secs`,
  });

  await t.test('doveadm auth test', async (t) => {
    const ok = await dv.doveadmAuthTest('alice@example.org', PASSWORDS.alice);
    t.ok(ok.ok, 'the local user with the right password', { output: ok.output });
    t.equal(ok.fields.user, 'alice@example.org');

    const wrong = await dv.doveadmAuthTest('alice@example.org', 'not-her-password');
    t.notOk(wrong.ok, 'a wrong password is refused');
    t.equal(wrong.fields.code, undefined, 'as a plain failure, not a temporary one');

    const appImap = await dv.doveadmAuthTest('alice@example.org', PASSWORDS.aliceApp, { service: 'imap' });
    t.notOk(appImap.ok, 'the SMTP-only app password is refused for IMAP');
    const appSmtp = await dv.doveadmAuthTest('alice@example.org', PASSWORDS.aliceApp, { service: 'smtp' });
    t.ok(appSmtp.ok, 'and accepted for SMTP (doveadm -x service=smtp)', { output: appSmtp.output });

    const bob = await dv.doveadmAuthTest('bob@example.org', PASSWORDS.bob);
    t.notOk(bob.ok, 'a disabled mailbox is refused with its right password');
    t.equal(bob.fields.code, 'user_disabled', 'as USER_DISABLED');
    const carol = await dv.doveadmAuthTest('carol@example.org', PASSWORDS.carol);
    t.equal(carol.fields.code, 'user_disabled', 'a receive-only mailbox (active = 2) may not log in');

    const unknown = await dv.doveadmAuthTest('nobody@example.org', 'whatever');
    t.notOk(unknown.ok, 'an unknown user is refused');
    t.equal(unknown.fields.code, undefined, 'as a plain failure');
  });

  await t.test('userdb fields: mailauth\'s quota_rule plus the docs block\'s uid, gid and home', async (t) => {
    const alice = await dv.doveadmUser('alice@example.org');
    t.equal(alice.exitCode, 0, 'doveadm user finds alice', { output: alice.output });
    t.equal(alice.fields.quota_rule, '*:bytes=0', 'quota_rule from mailauth (quota 0: no limit)');
    t.equal(alice.fields.uid, '65534', 'uid from the userdb block (vmail → nobody here)');
    t.match(alice.fields.home, /\/mail\/example\.org\/alice$/, 'home from the block, per domain and local part');
    const carol = await dv.doveadmUser('carol@example.org');
    t.equal(carol.exitCode, 0, 'a receive-only mailbox (active = 2) still exists for delivery');
    const nobody = await dv.doveadmUser('nobody@example.org');
    t.not(nobody.exitCode, 0, 'an unknown user does not');
    const bob = await dv.doveadmUser('bob@example.org');
    t.not(bob.exitCode, 0, 'nor a disabled one');
  });

  await t.test('raw IMAP LOGIN', async (t) => {
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.alice), OK, 'the local user logs in');
    t.match(await dv.imapLogin('alice@example.org', 'not-her-password'), REFUSED, 'a wrong password is refused');
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.aliceApp), REFUSED, 'the SMTP-only app password is refused for IMAP');
    t.match(await dv.imapLogin('bob@example.org', PASSWORDS.bob), REFUSED, 'the disabled mailbox is refused');
    t.match(await dv.imapLogin('nobody@example.org', 'whatever'), REFUSED, 'the unknown user is refused');
  });

  await t.test('per-service access survives the auth cache (cache_key=%u%s)', async (t) => {
    t.match(await dv.pop3Login('dave@example.org', PASSWORDS.dave), /^\+OK/, 'dave may use POP3');
    // With cache_key=%u the cached POP3 success would let this IMAP login in.
    t.match(await dv.imapLogin('dave@example.org', PASSWORDS.dave), REFUSED, 'but not IMAP, right after a cached POP3 login');
  });

  await t.test('a successful IMAP login reaches sasl_log with the client IP', async (t) => {
    const ip = randomClientIp();
    // alice's IMAP success is in Dovecot's cache since the tests above, and a cache hit never reaches mailauth.
    await dv.flushCache();
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.alice, { remoteIp: ip }), OK);
    await mailauth.loginLog.flush();
    const rows = await tdb.sql<{ service: string; app_password: number }>('SELECT service, app_password FROM sasl_log WHERE username = ? AND real_rip = ?', [
      'alice@example.org',
      ip,
    ]);
    t.same(rows.map((r) => [r.service, Number(r.app_password)]), [['imap', 0]]);
  });

  await t.test('with mailauth stopped', async (t) => {
    // alice logged in over IMAP above, so Dovecot holds a cached success for her.
    await mailauth.stop();
    await sleep(CACHE_TTL_SECS * 1000 + 1200);
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.alice), OK, 'a user who logged in before still gets in, from the expired cache entry');
    t.match(await dv.waitForLog(/Falling back to expired data from cache/), /Falling back to expired data from cache/, 'Dovecot says so in its log');
    t.match(await dv.imapLogin('erin@example.org', PASSWORDS.erin), UNAVAILABLE, 'a user never seen before gets [UNAVAILABLE], not a wrong-password answer');
    t.match(await dv.imapLogin('alice@example.org', 'not-her-password'), UNAVAILABLE, 'a wrong password while mailauth is down is a temporary failure too');
    const erin = await dv.doveadmAuthTest('erin@example.org', PASSWORDS.erin);
    t.equal(erin.fields.code, 'temp_fail', 'doveadm sees temp_fail');
    t.match(await dv.waitForLog(/passdb-lua: mailauth: unreachable: connection refused \[builtin: /), /passdb-lua: mailauth: unreachable: connection refused \[builtin: /, 'and the log names the cause');
  });
}

const tdb = await createTestDatabase(t);
await seedDovecotWorld(tdb);
for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version}`, async (t) => {
    if (requireDovecot(t, version)) await scenario(t, tdb, version);
  });
}
