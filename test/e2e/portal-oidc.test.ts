/**
 * Issue 19 in a real headless Chromium against a real OpenID provider
 * (oidc-provider, its own login page) and Dovecot 2.4 (Debian 13 root): on a
 * phone-sized screen, sign in (the email comes from userinfo: oidc-provider
 * keeps it out of the ID token in the code flow), create an app password,
 * IMAP LOGIN with it, revoke it, the login then fails; the same without
 * JavaScript (the copy button stays hidden, everything else works); an OP
 * account whose email has no mailbox is refused. Every page passes axe-core;
 * screenshots under test-artifacts/portal-oidc/.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, launchBrowser, removeArtifacts, requireChromium } from '../helpers/browser.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { setOidcIdp } from '../helpers/idp-login.js';
import { freePort, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import { startOidcOp } from '../helpers/oidc-op.js';
import { checkPage, idpLogin, startPortalDaemon } from '../helpers/portal.js';

const GROUP = 'portal-oidc';
t.setTimeout(300_000);

async function main(): Promise<void> {
  if (!requireChromium(t)) return;
  if (!requireDovecot(t, '2.4')) return;
  removeArtifacts(GROUP);
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'generic-oidc', name: 'Alice' });
  await seedMailbox(tdb, 'bob@example.org', '', { authsource: 'generic-oidc', name: 'Bob', attributes: { pop3_access: '0', sieve_access: '0', eas_access: '0', dav_access: '0' } });

  const portalPort = await freePort();
  const portalUrl = `http://127.0.0.1:${portalPort}`;
  const op = await startOidcOp({
    clients: [{ clientId: 'mailauth', secret: 'op-secret', grantTypes: ['client_credentials'], redirectUris: [`${portalUrl}/callback`] }],
    users: [
      { sub: 'u-1', username: 'alice', password: 'pw-alice', email: 'alice@example.org', emailVerified: true },
      { sub: 'u-2', username: 'bob', password: 'pw-bob', email: 'BOB@example.org', emailVerified: true },
      { sub: 'u-3', username: 'nomail', password: 'pw-nomail', email: 'nobody@example.org', emailVerified: true },
    ],
  });
  t.teardown(() => op.close());
  await setOidcIdp(tdb, op, { login_provisioning: '0' });
  const p = await startPortalDaemon(t, tdb, {}, {}, portalPort);
  t.teardown(() => writeFileSync(join(ARTIFACTS, GROUP, 'daemon.log'), p.logText()));
  const dv = await startDovecot(t, { version: '2.4', lua: { url: p.url, timeout: 3 } });
  const home = `${portalUrl}/`;

  await t.test('on a phone: sign in at the OpenID provider, create, use over IMAP (Dovecot 2.4), revoke', async (t) => {
    const context = await launchBrowser(t, { viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    await page.goto(home);
    await checkPage(t, page, GROUP, '01-sign-in-phone');
    await Promise.all([page.waitForURL(`${op.url}/**`), page.getByRole('link', { name: 'Sign in with your identity provider' }).click()]);
    await idpLogin(page, 'alice', 'pw-alice');
    await page.waitForURL(home);
    t.equal(await page.title(), 'Your mail account · Mail account');
    t.match(p.logText(), /"method":"idp","msg":"portal: signed in"/);
    await checkPage(t, page, GROUP, '02-home-phone');
    await page.getByRole('link', { name: 'Create an app password' }).click();
    await page.getByLabel('Name').fill('Phone');
    await page.getByRole('button', { name: 'Create' }).click();
    t.equal(await page.title(), 'App password created · Mail account');
    const pw = (await page.locator('#app-password').innerText()).trim();
    await checkPage(t, page, GROUP, '03-created-phone');
    const width = await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);
    t.ok(width <= 390, `no horizontal scrolling on a phone (page is ${width}px wide)`);
    t.match(await dv.imapLogin('alice@example.org', pw), /^l OK .*Logged in/, 'IMAP LOGIN through Dovecot 2.4');
    await page.goto(home);
    await checkPage(t, page, GROUP, '04-home-phone');
    await page.getByRole('link', { name: 'Revoke Phone' }).click();
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(home);
    t.match(await dv.imapLogin('alice@example.org', pw), /^l NO/, 'revoked: the login fails');
    t.notOk(p.logText().includes(pw), 'the app password is not in the log');
  });

  await t.test('without JavaScript: everything works, the copy button stays hidden', async (t) => {
    const { chromium } = await import('playwright-core');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const profile = mkdtempSync(join(tmpdir(), 'mailauth-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, javaScriptEnabled: false });
    t.teardown(async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    });
    const page = await context.newPage();
    await page.goto(home);
    await Promise.all([page.waitForURL(`${op.url}/**`), page.getByRole('link', { name: 'Sign in with your identity provider' }).click()]);
    await idpLogin(page, 'BOB@example.org', 'pw-bob');
    await page.waitForURL(home);
    t.match(await page.locator('main').innerText(), /bob@example\.org/, 'the email BOB@example.org matched bob@example.org');
    await page.getByRole('link', { name: 'Create an app password' }).click();
    const offered = await page.locator('input[name=protocols]').evaluateAll((els) => els.map((e) => (e as unknown as { value: string }).value));
    t.same(offered, ['imap', 'smtp'], 'only what the mailbox may use is offered');
    await page.getByLabel('Name').fill('Laptop');
    await page.getByRole('button', { name: 'Create' }).click();
    t.equal(await page.title(), 'App password created · Mail account');
    t.notOk(await page.getByRole('button', { name: 'Copy password' }).isVisible(), 'no copy button without JavaScript');
    const pw = (await page.locator('#app-password').innerText()).trim();
    t.match(await dv.imapLogin('bob@example.org', pw), /^l OK/);
    await page.getByRole('link', { name: 'Done' }).click();
    await page.getByRole('button', { name: 'Sign out' }).click();
    t.match(await page.locator('main').innerText(), /signed out/i);
  });

  await t.test('re-authentication at the OpenID provider: prompt=login, and its fresh auth_time is accepted', async (t) => {
    const context = await launchBrowser(t);
    const page = await context.newPage();
    await page.goto(home);
    await Promise.all([page.waitForURL(`${op.url}/**`), page.getByRole('link', { name: 'Sign in with your identity provider' }).click()]);
    await idpLogin(page, 'alice', 'pw-alice');
    await page.waitForURL(home);
    p.advance(6 * 60_000);
    await page.getByRole('link', { name: 'Create an app password' }).click();
    t.equal(await page.title(), 'Confirm it is you · Mail account', 'older than reauth_after: confirm first');
    await Promise.all([page.waitForURL(`${op.url}/**`), page.getByRole('link', { name: 'Sign in again' }).click()]);
    // oidc-provider has a session for alice from the sign-in above: only prompt=login makes it ask again.
    await idpLogin(page, 'alice', 'pw-alice');
    await page.waitForURL(`${portalUrl}/app-passwords/new`);
    t.equal(await page.title(), 'New app password · Mail account', 'back to the form after re-authentication');
  });

  await t.test('an OP account whose email has no mailbox is refused', async (t) => {
    const context = await launchBrowser(t);
    const page = await context.newPage();
    await page.goto(home);
    await Promise.all([page.waitForURL(`${op.url}/**`), page.getByRole('link', { name: 'Sign in with your identity provider' }).click()]);
    await idpLogin(page, 'nomail', 'pw-nomail');
    t.match(await page.locator('main').innerText(), /no mailbox for nobody@example\.org/);
    await page.goto(home);
    t.equal(await page.title(), 'Sign in · Mail account', 'no session');
  });
}

await main();
