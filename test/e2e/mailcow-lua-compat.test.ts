/**
 * mailcow's own Dovecot Lua passdb logic (test/fixtures/mailcow-passwd-verify.lua:
 * POST {username, password, real_rip, service} to `/`, accept 200 {"success":true})
 * works unchanged against mailauth's compatible endpoint, through a real private
 * Dovecot 2.3 and the real daemon on a MariaDB test database. On Dovecot 2.4 the
 * same script no longer sends the service (request.protocol there), which is shown.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import { DOVECOT_VERSIONS, REPO_ROOT, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { PASSWORDS, seedDovecotWorld, startMailauth } from '../helpers/mailauth-daemon.js';

async function main(t: Test, version: DovecotVersion): Promise<void> {
  const tdb = await createTestDatabase(t);
  await seedDovecotWorld(tdb);
  // mailcow's script sends no token; mailauth needs none on a loopback listener.
  const mailauth = await startMailauth(t, tdb, { token: false });
  const dir = mkdtempSync(join(tmpdir(), 'mcl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'passwd-verify.lua');
  const fixture = readFileSync(join(REPO_ROOT, 'test/fixtures/mailcow-passwd-verify.lua'), 'utf8');
  writeFileSync(script, fixture.replace('__ENDPOINT__', `${mailauth.url}/`));
  // The Lua settings file is unused by mailcow's script; the static userdb stands in for mailcow's SQL userdb.
  const dv = await startDovecot(t, { version, script, lua: { url: mailauth.url }, userdb: 'static' });

  if (version === '2.4') {
    // mailcow ships Dovecot 2.3. Its script sends request.service, which 2.4 renamed to
    // request.protocol: the request lacks the service, mailauth refuses it (400), and the
    // script turns that into a password mismatch. mailauth.lua sends either (docs/dovecot.md).
    await t.test("mailcow's 2.3 script on Dovecot 2.4: no service in the request, refused", async (t) => {
      const r = await dv.doveadmAuthTest('alice@example.org', PASSWORDS.alice);
      t.notOk(r.ok, 'the right password does not get in');
      t.equal(r.fields.code, undefined, 'and it reads as a wrong password');
      t.match(await dv.waitForLog(/HTTP request failed with 400 for user alice@example\.org/), /HTTP request failed with 400 for user alice@example\.org/, 'the script logs the 400 mailauth answered');
    });
    return;
  }

  await t.test('doveadm auth test through the compatible endpoint', async (t) => {
    t.ok((await dv.doveadmAuthTest('alice@example.org', PASSWORDS.alice)).ok, 'the local user with the right password');
    t.notOk((await dv.doveadmAuthTest('alice@example.org', 'not-her-password')).ok, 'a wrong password');
    t.notOk((await dv.doveadmAuthTest('alice@example.org', PASSWORDS.aliceApp, { service: 'imap' })).ok, 'the SMTP-only app password over IMAP');
    t.ok((await dv.doveadmAuthTest('alice@example.org', PASSWORDS.aliceApp, { service: 'smtp' })).ok, 'the same app password over SMTP');
    t.notOk((await dv.doveadmAuthTest('bob@example.org', PASSWORDS.bob)).ok, 'the disabled mailbox');
    t.notOk((await dv.doveadmAuthTest('nobody@example.org', 'whatever')).ok, 'an unknown user');
  });

  await t.test('raw IMAP LOGIN through the compatible endpoint', async (t) => {
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.alice), /^l OK .*Logged in/);
    t.match(await dv.imapLogin('alice@example.org', 'not-her-password'), /^l NO \[AUTHENTICATIONFAILED\]/);
    t.match(await dv.imapLogin('dave@example.org', PASSWORDS.dave), /^l NO \[AUTHENTICATIONFAILED\]/, 'per-service access holds (dave has no IMAP)');
  });

  await t.test('the logins land in sasl_log with real_rip, as mailcow records them', async (t) => {
    await mailauth.loginLog.flush();
    const rows = await tdb.sql<{ service: string; real_rip: string }>('SELECT service, real_rip FROM sasl_log WHERE username = ?', ['alice@example.org']);
    t.ok(rows.some((r) => r.service === 'imap' && /^198\.1[89]\./.test(r.real_rip)), 'an imap row with the client address');
    t.ok(rows.some((r) => r.service === 'smtp'), 'and the smtp app-password login');
  });

  await t.test('what mailcow script does when mailauth is down (why mailauth.lua differs)', async (t) => {
    await mailauth.stop();
    // mailcow's script turns "no answer" into a wrong password; mailauth.lua answers
    // INTERNAL_FAILURE instead (dovecot-passdb.test.ts: [UNAVAILABLE] and the cache fallback).
    t.match(await dv.imapLogin('erin@example.org', PASSWORDS.erin), /^l NO \[AUTHENTICATIONFAILED\]/);
  });
}

for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version}`, async (t) => {
    if (requireDovecot(t, version)) await main(t, version);
  });
}
