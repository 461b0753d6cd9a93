/**
 * Issue 19 in a real headless Chromium against the Keycloak double: sign in
 * through the authorization-code flow, create an app password, log in with it
 * over IMAP through a real Dovecot (lua/mailauth.lua → the daemon), revoke it,
 * the login then fails; refusals (no mailbox for the email, disabled mailbox,
 * tampered state, CSRF, cross-site post, another user's app password),
 * session expiry and re-authentication on an injected clock, and the
 * password sign-in of a mailcow mailbox (throttled; an app password does not
 * open the portal; change password). Every page passes axe-core (no serious
 * or critical violation) and is saved under test-artifacts/portal-keycloak/.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { insertAppPassword } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import { launchBrowser, removeArtifacts, requireChromium, ARTIFACTS } from '../helpers/browser.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { freePort, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import { setKeycloakIdp } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import { checkPage, idpLogin, startPortalDaemon } from '../helpers/portal.js';

const GROUP = 'portal-keycloak';
// A real browser on a shared 2-core machine: each axe-core run and screenshot costs seconds.
t.setTimeout(300_000);

async function main(): Promise<void> {
  if (!requireChromium(t)) return;
  if (!requireDovecot(t)) return;
  removeArtifacts(GROUP);
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const cost = { bcryptCost: 4 };
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'keycloak', name: 'Alice Example', attributes: { eas_access: '0', dav_access: '0' } });
  await seedMailbox(tdb, 'bob@example.org', '', { authsource: 'keycloak' });
  await seedMailbox(tdb, 'dan@example.org', '', { authsource: 'keycloak', active: 0 });
  await seedMailbox(tdb, 'carol@example.org', await hash('BLF-CRYPT', 'Carol-Secret-1', cost), { authsource: 'mailcow' });
  const bobApp = await insertAppPassword(tdb.db, {
    name: 'bob laptop',
    mailbox: 'bob@example.org',
    domain: 'example.org',
    password: await hash('BLF-CRYPT', 'bob-app-password', cost),
    access: { imap: 1, pop3: 0, smtp: 1, sieve: 0, eas: 0, dav: 0 },
  });
  const carolApp = 'carol-app-Pw-9';
  await insertAppPassword(tdb.db, {
    name: 'carol phone',
    mailbox: 'carol@example.org',
    domain: 'example.org',
    password: await hash('BLF-CRYPT', carolApp, cost),
    access: { imap: 1, pop3: 0, smtp: 0, sieve: 0, eas: 0, dav: 0 },
  });

  const kc = await startKeycloakDouble({
    users: [
      // Mixed case at the IdP: the mailbox is matched case-insensitively.
      { username: 'alice', email: 'Alice@Example.ORG', emailVerified: true, password: 'alice-kc-pw', firstName: 'Alice' },
      { username: 'bob', email: 'bob@example.org', emailVerified: true, password: 'bob-kc-pw' },
      { username: 'zed', email: 'zed@example.org', emailVerified: true, password: 'zed-kc-pw' },
      { username: 'dan', email: 'dan@example.org', emailVerified: true, password: 'dan-kc-pw' },
      { username: 'una', email: 'alice@example.org.invalid', emailVerified: false, password: 'una-kc-pw' },
    ],
  });
  t.teardown(() => kc.close());
  // Dovecot's own auth cache is ON: only the portal's flush through src/dovecot makes a revocation count at once.
  const daemonPort = await freePort();
  const dv = await startDovecot(t, { lua: { url: `http://127.0.0.1:${daemonPort}`, timeout: 3 }, userdb: 'static', cacheSize: '1M', cacheTtl: '1h', cacheNegativeTtl: '1h' });
  const p = await startPortalDaemon(t, tdb, { reauth_after: '5m', session_ttl: '30m', sign_in_failures: 3 }, {
    listen: { address: `127.0.0.1:${daemonPort}` },
    dovecot: { notify: true, hosts: [{ doveadm: 'doveadm', config: dv.configPath }] },
  });
  kc.client('mailauth').redirectUris = [`${p.portalUrl}/callback`];
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '0' });
  t.teardown(() => writeFileSync(join(ARTIFACTS, GROUP, 'daemon.log'), p.logText()));
  const context = await launchBrowser(t);
  const started = Date.now();
  const mark = (what: string): void => void t.comment(`${what}: ${Date.now() - started} ms`);
  const page = await context.newPage();
  const home = `${p.portalUrl}/`;

  async function signInWithKeycloak(username: string, password: string): Promise<void> {
    await page.goto(home);
    await Promise.all([page.waitForURL(`${kc.url}/**`), page.getByRole('link', { name: 'Sign in with Keycloak' }).click()]);
    await idpLogin(page, username, password);
  }

  async function signOut(): Promise<void> {
    await page.goto(home);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForLoadState('domcontentloaded');
  }

  let appPassword = '';

  await t.test('sign in with Keycloak, create an app password, IMAP login through Dovecot, revoke it', async (t) => {
    mark('start: sign in with Keycloak, create ');
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account');
    await checkPage(t, page, GROUP, '01-sign-in');

    await Promise.all([page.waitForURL(`${kc.url}/**`), page.getByRole('link', { name: 'Sign in with Keycloak' }).click()]);
    const authUrl = new URL(page.url());
    t.equal(authUrl.searchParams.get('code_challenge_method'), 'S256', 'PKCE S256');
    t.ok(authUrl.searchParams.get('state'), 'state sent');
    t.ok(authUrl.searchParams.get('nonce'), 'nonce sent');
    t.equal(authUrl.searchParams.get('redirect_uri'), `${p.portalUrl}/callback`);
    await idpLogin(page, 'alice', 'alice-kc-pw');
    await page.waitForURL(home);
    t.equal(await page.title(), 'Your mail account · Mail account');
    t.match(await page.locator('main').innerText(), /alice@example\.org/);
    t.match(await page.locator('main').innerText(), /no app passwords yet/);
    const cookies = await context.cookies(p.portalUrl);
    const session = cookies.find((c) => c.name === 'mailauth_portal');
    t.ok(session, 'session cookie set');
    t.equal(session?.httpOnly, true, 'HttpOnly');
    t.equal(session?.sameSite, 'Lax', 'SameSite=Lax');
    await checkPage(t, page, GROUP, '02-home-empty');

    await page.getByRole('link', { name: 'Create an app password' }).click();
    t.equal(await page.title(), 'New app password · Mail account');
    // Defaults: what the mailbox allows (eas and dav are off for alice, so not offered).
    const offered = await page.locator('input[name=protocols]').evaluateAll((els) => els.map((e) => [(e as unknown as { value: string }).value, (e as unknown as { checked: boolean }).checked]));
    t.same(offered, [['imap', true], ['pop3', true], ['smtp', true], ['sieve', true]]);
    mark('new page');
    await checkPage(t, page, GROUP, '03-new-app-password');
    await page.getByLabel('Name').fill('Thunderbird on laptop');
    await page.getByLabel('POP3 (download mail)').uncheck();
    await page.getByLabel('ManageSieve (filters)').uncheck();
    await page.getByRole('button', { name: 'Create' }).click();
    t.equal(await page.title(), 'App password created · Mail account');
    appPassword = (await page.locator('#app-password').innerText()).trim();
    t.match(appPassword, /^[A-Za-z0-9]{4}(-[A-Za-z0-9]{4}){5}$/, 'a generated password in groups of four');
    t.ok(await page.getByRole('button', { name: 'Copy password' }).isVisible(), 'copy button shown (JavaScript on)');
    t.match(await page.locator('dl').innerText(), /IMAP[\s\S]*993[\s\S]*SMTP/);
    await checkPage(t, page, GROUP, '04-created');
    const rows = await tdb.sql<{ name: string; imap_access: number; pop3_access: number; smtp_access: number; password: string }>('SELECT name, imap_access, pop3_access, smtp_access, password FROM app_passwd WHERE mailbox = ?', ['alice@example.org']);
    t.match(rows, [{ name: 'Thunderbird on laptop', imap_access: 1, pop3_access: 0, smtp_access: 1 }]);
    t.notOk(rows[0]?.password.includes(appPassword), 'stored as a hash only');

    // Shown once: reloading does not show it again.
    await page.goto(`${p.portalUrl}/app-passwords/created`);
    t.equal(page.url(), home, 'the password page is gone after the first view');

    mark('before imap');
    t.match(await dv.imapLogin('alice@example.org', appPassword), /^l OK .*Logged in/, 'IMAP LOGIN with the new app password');
    mark('after imap');
    t.match(await dv.imapLogin('alice@example.org', 'alice-kc-pw'), /^l NO/, 'the IdP password is not a mail password');
    // The login log is written in batches; then "last used" shows it.
    await new Promise((r) => setTimeout(r, 300));
    await page.goto(home);
    const table = await page.locator('table').first().innerText();
    t.match(table, /Thunderbird on laptop/);
    t.notMatch(table, /never/, 'last used is filled from sasl_log');
    t.match(await page.locator('main').innerText(), /imap[\s\S]*app password Thunderbird on laptop/, 'the IMAP login is listed under recent logins');
    await checkPage(t, page, GROUP, '05-home');

    mark('before revoke');
    await page.getByRole('link', { name: 'Revoke Thunderbird on laptop' }).click();
    t.equal(await page.title(), 'Revoke app password · Mail account');
    await checkPage(t, page, GROUP, '06-revoke');
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(home);
    t.match(await page.locator('[role=status]').first().innerText(), /revoked/);
    await checkPage(t, page, GROUP, '07-revoked');
    t.same(await tdb.sql('SELECT id FROM app_passwd WHERE mailbox = ?', ['alice@example.org']), [], 'row deleted');
    t.match(await dv.imapLogin('alice@example.org', appPassword), /^l NO/, 'the revoked app password no longer logs in (Dovecot\'s auth cache was flushed)');
    t.match(p.logText(), /"user":"alice@example\.org","action":"flush","detail":"[1-9]\d* cache entries flushed"/, "the revocation flushed alice's cached login from Dovecot");

    const log = p.logText();
    t.notOk(log.includes(appPassword), 'the app password never reaches the log');
    t.match(log, /portal: app password created/);
    t.match(log, /portal: app password revoked/);
  });

  await t.test('a user may touch only their own app passwords; forms need the CSRF token', async (t) => {
    mark('start: a user may touch only their ow');
    await page.goto(`${p.portalUrl}/app-passwords/${bobApp}/revoke`);
    t.match(await page.locator('main').innerText(), /no such app password/i, "bob's app password is not shown to alice");
    const csrf = await page.locator('form input[name=csrf]').first().inputValue();
    t.ok(csrf.length > 20, 'a session CSRF token on the page');
    const cross = await page.request.post(`${p.portalUrl}/app-passwords/${bobApp}/revoke`, { form: { csrf }, maxRedirects: 0 });
    t.equal(cross.status(), 404, "revoking bob's app password with alice's valid token: refused");
    t.equal((await tdb.sql('SELECT id FROM app_passwd WHERE id = ?', [bobApp])).length, 1, "bob's app password is still there");

    // Without or with a wrong token: refused, nothing changes.
    mark('cross-user done');
    const before = await tdb.sql('SELECT COUNT(*) AS n FROM app_passwd');
    for (const form of [{}, { csrf: 'x'.repeat(43) }] as Record<string, string>[]) {
      const r = await page.request.post(`${p.portalUrl}/app-passwords`, { form: { ...form, name: 'sneaky', protocols: 'imap' }, maxRedirects: 0 });
      t.equal(r.status(), 403, `create without the right token (${Object.keys(form).length ? 'wrong' : 'none'}): 403`);
    }
    t.same(await tdb.sql('SELECT COUNT(*) AS n FROM app_passwd'), before, 'nothing created');

    mark('before evil');
    // A page on another origin (same site: 127.0.0.1) posting a form into the portal.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!DOCTYPE html><html><body><form method="post" action="${p.portalUrl}/app-passwords"><input name="csrf" value="${csrf}"><input name="name" value="evil"><input name="protocols" value="imap"><button id="go">go</button></form></body></html>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => {
      evil.closeAllConnections();
      evil.close(() => r());
    }));
    mark('evil listening');
    const evilPage = await context.newPage();
    await evilPage.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
    const [resp] = await Promise.all([evilPage.waitForResponse((r) => r.url().startsWith(p.portalUrl)), evilPage.click('#go')]);
    mark('evil posted');
    t.equal(resp.status(), 403, 'a cross-origin post is refused even with a stolen token');
    await evilPage.close();
    mark('evil closed');
    t.same(await tdb.sql('SELECT COUNT(*) AS n FROM app_passwd'), before, 'nothing created');
  });

  await t.test('creating an app password needs a recent sign-in; sessions expire', async (t) => {
    mark('start: creating an app password needs');
    p.advance(6 * 60_000);
    await page.goto(home);
    await page.getByRole('link', { name: 'Create an app password' }).click();
    t.equal(await page.title(), 'Confirm it is you · Mail account', 'older than reauth_after: confirm first');
    await checkPage(t, page, GROUP, '08-reauth');
    // An IdP that answers the re-authentication from an older session is not believed: here auth_time
    // is 90 s old, from before this re-authentication began (though within REAUTH_MAX_AGE_S).
    kc.config.authTimeAgeSec = 90;
    await Promise.all([page.waitForURL(`${kc.url}/**`), page.getByRole('link', { name: 'Sign in again' }).click()]);
    await idpLogin(page, 'alice', 'alice-kc-pw');
    await page.waitForURL(`${p.portalUrl}/**`);
    t.equal(await page.title(), 'Sign-in failed · Mail account', 'a stale auth_time does not count as a re-authentication');
    t.match(await page.textContent('body'), /did not ask for your password again/);
    kc.config.authTimeAgeSec = 0;
    await page.goto(home);
    await page.getByRole('link', { name: 'Create an app password' }).click();
    t.equal(await page.title(), 'Confirm it is you · Mail account', 'still not re-authenticated');
    await Promise.all([page.waitForURL(`${kc.url}/**`), page.getByRole('link', { name: 'Sign in again' }).click()]);
    t.equal(new URL(page.url()).searchParams.get('prompt'), 'login', 'the IdP is asked to sign in again');
    t.equal(new URL(page.url()).searchParams.get('max_age'), '0', 'with max_age=0');
    await idpLogin(page, 'alice', 'alice-kc-pw');
    await page.waitForURL(`${p.portalUrl}/app-passwords/new`);
    t.equal(await page.title(), 'New app password · Mail account', 'back to the form after re-authentication');

    p.advance(31 * 60_000);
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account', 'after session_ttl the session is gone');
    const r = await page.request.post(`${p.portalUrl}/app-passwords`, { form: { csrf: 'whatever', name: 'late', protocols: 'imap' }, maxRedirects: 0 });
    t.equal(r.status(), 401, 'an expired session cannot post');
  });

  await t.test('sign-in refusals: no mailbox, disabled mailbox, unverified email, tampered state', async (t) => {
    mark('start: sign-in refusals: no mailbox, ');
    await signInWithKeycloak('zed', 'zed-kc-pw');
    t.match(await page.locator('main').innerText(), /no mailbox for zed@example\.org/);
    t.equal(await page.title(), 'Sign-in failed · Mail account');
    await checkPage(t, page, GROUP, '09-no-mailbox');

    await signInWithKeycloak('dan', 'dan-kc-pw');
    t.match(await page.locator('main').innerText(), /disabled/);

    await signInWithKeycloak('una', 'una-kc-pw');
    t.match(await page.locator('main').innerText(), /not verified/);

    // The IdP's answer comes back with another state: refused, no session.
    // (Redirects are not routable: rewrite the Location of the IdP's 302 instead.)
    const isLogin = (u: URL): boolean => u.pathname.endsWith('/login-actions/authenticate');
    await page.route(isLogin, async (route) => {
      const response = await route.fetch({ maxRedirects: 0 });
      const headers = response.headers();
      const location = headers.location;
      if (location) {
        const u = new URL(location);
        u.searchParams.set('state', `${u.searchParams.get('state') ?? ''}x`);
        headers.location = u.href;
      }
      await route.fulfill({ response, headers });
    });
    await signInWithKeycloak('alice', 'alice-kc-pw');
    await page.unroute(isLogin);
    t.match(await page.locator('main').innerText(), /does not belong to this sign-in/);
    await checkPage(t, page, GROUP, '10-tampered-state');
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account', 'no session from a tampered state');

    // A callback replayed (the pending sign-in is single-use).
    let callbackUrl = '';
    page.on('request', (req) => {
      if (req.url().startsWith(`${p.portalUrl}/callback`)) callbackUrl = req.url();
    });
    await signInWithKeycloak('alice', 'alice-kc-pw');
    t.equal(await page.title(), 'Your mail account · Mail account');
    await signOut();
    t.match(await page.locator('main').innerText(), /signed out/i);
    await checkPage(t, page, GROUP, '11-signed-out');
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account', 'sign-out ended the session');
    await page.goto(callbackUrl);
    t.match(await page.locator('main').innerText(), /expired or was started elsewhere/, 'a replayed callback is refused');
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account');
  });

  await t.test('mailcow mailbox: password sign-in (throttled, no app passwords), change password', async (t) => {
    mark('start: mailcow mailbox: password sign');
    const pw = page.getByLabel('Password', { exact: true });
    await page.goto(home);
    await page.getByLabel('Email address').fill('carol@example.org');
    await pw.fill(carolApp);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    t.match(await page.locator('[role=alert]').innerText(), /Wrong email address or password/, 'an app password does not open the portal');
    await page.getByLabel('Email address').fill('carol@example.org');
    await page.getByLabel('Password', { exact: true }).fill('Carol-Secret-1');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    t.equal(await page.title(), 'Your mail account · Mail account');
    t.match(await page.locator('main').innerText(), /carol phone/);
    await page.getByRole('link', { name: 'Change mailbox password' }).click();
    await checkPage(t, page, GROUP, '12-change-password');
    await page.getByLabel('Current password').fill('Carol-Secret-1');
    await page.getByLabel('New password', { exact: true }).fill('short');
    await page.getByLabel('New password again').fill('short');
    await page.getByRole('button', { name: 'Change password' }).click();
    t.match(await page.locator('[role=alert]').innerText(), /at least 10 characters/, 'the policy from the config');
    await page.getByLabel('Current password').fill('Carol-Secret-1');
    await page.getByLabel('New password', { exact: true }).fill('Carol-Better-2');
    await page.getByLabel('New password again').fill('Carol-Better-2');
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL(home);
    t.match(await page.locator('[role=status]').first().innerText(), /Password changed/);
    t.match(await dv.imapLogin('carol@example.org', 'Carol-Better-2'), /^l OK/, 'the new password logs in over IMAP');
    t.match(await dv.imapLogin('carol@example.org', 'Carol-Secret-1'), /^l NO/, 'the old one does not');
    t.notOk(p.logText().includes('Carol-Better-2') || p.logText().includes('Carol-Secret-1'), 'no password in the log');
    await signOut();
    await page.goto(home);

    // Throttle: 3 failures (sign_in_failures) per address, then refused without checking.
    for (let i = 0; i < 3; i++) {
      await page.getByLabel('Email address').fill('carol@example.org');
      await page.getByLabel('Password', { exact: true }).fill(`wrong-${i}`);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    }
    await page.getByLabel('Email address').fill('carol@example.org');
    await page.getByLabel('Password', { exact: true }).fill('Carol-Better-2');
    const [resp] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/signin/password')), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
    t.equal(resp.status(), 429, 'the right password after 3 failures: still refused for now');
    t.match(await page.locator('[role=alert]').innerText(), /Too many failed attempts/);
  });

  await t.test('security headers on every page', async (t) => {
    mark('start: security headers on every page');
    const r = await fetch(home);
    const csp = r.headers.get('content-security-policy') ?? '';
    t.match(csp, /frame-ancestors 'none'/);
    t.match(csp, /script-src 'self'/);
    t.notMatch(csp, /unsafe-inline/);
    t.equal(r.headers.get('referrer-policy'), 'no-referrer');
    t.equal(r.headers.get('x-frame-options'), 'DENY');
    const dovecotSide = await fetch(`${p.url}/`);
    t.not(dovecotSide.headers.get('content-type'), 'text/html; charset=utf-8', 'the Dovecot-facing listener does not serve the portal');
  });
}

await main();
