/**
 * Issue 19, the portal's HTTP boundary without a browser: security headers on
 * every kind of answer, CSRF and Origin checks on the sign-in form, bad
 * methods, types and sizes, cookie attributes (http and https public URLs),
 * X-Forwarded-For honoured only from configured proxies, nothing of the portal
 * on the Dovecot-facing listener, and no password in the log.
 */
import t from 'tap';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { startPortalDaemon } from '../helpers/portal.js';

const PASSWORD = 'Carol-Secret-1';
const tdb = await createTestDatabase(t);
await seedDomain(tdb, 'example.org');
await seedMailbox(tdb, 'carol@example.org', await hash('BLF-CRYPT', PASSWORD, { bcryptCost: 4 }));

/** GET the sign-in page: its pre-session cookie and the form's token. */
async function signInForm(base: string): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/`);
  const cookie = (r.headers.getSetCookie().find((c) => c.includes('mailauth_pre=')) ?? '').split(';')[0] as string;
  const csrf = /name="csrf" value="([^"]+)"/.exec(await r.text())?.[1] ?? '';
  return { cookie, csrf };
}

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
}

const p = await startPortalDaemon(t, tdb, { trusted_proxies: [] }, { throttle: { enabled: false } });
const base = p.portalUrl;

t.test('security headers on every kind of answer', async (t) => {
  const answers = [
    await fetch(`${base}/`),
    await fetch(`${base}/static/portal.css`),
    await fetch(`${base}/no/such/page`, { redirect: 'manual' }),
    await post(`${base}/signin/password`, 'x=1'),
    await fetch(`${base}/`, { method: 'PUT' }),
    await fetch(`${base}/../etc/passwd`, { redirect: 'manual' }),
  ];
  t.same(answers.map((r) => r.status), [200, 200, 303, 403, 405, 303]);
  for (const r of answers) {
    const csp = r.headers.get('content-security-policy') ?? '';
    t.match(csp, /default-src 'none'/);
    t.match(csp, /frame-ancestors 'none'/);
    t.notMatch(csp, /unsafe-inline|unsafe-eval/);
    t.equal(r.headers.get('referrer-policy'), 'no-referrer');
    t.equal(r.headers.get('x-content-type-options'), 'nosniff');
    t.equal(r.headers.get('x-frame-options'), 'DENY');
  }
  const page = await (await fetch(`${base}/`)).text();
  t.notMatch(page, /<script>|<script [^>]*>[^<]|\son[a-z]+=|style=/i, 'no inline script, handler or style in the page');
});

t.test('the sign-in form needs its token; foreign origins are refused', async (t) => {
  const { cookie, csrf } = await signInForm(base);
  t.ok(cookie && csrf, 'a pre-session cookie and a token');
  const body = `csrf=${encodeURIComponent(csrf)}&username=carol%40example.org&password=${encodeURIComponent(PASSWORD)}`;
  t.equal((await post(`${base}/signin/password`, body)).status, 403, 'without the cookie');
  t.equal((await post(`${base}/signin/password`, body.replace(/^csrf=[^&]+/, 'csrf=forged'), { cookie })).status, 403, 'with a forged token');
  t.equal((await post(`${base}/signin/password`, body, { cookie, origin: 'https://evil.example' })).status, 403, 'from another origin');
  const ok = await post(`${base}/signin/password`, body, { cookie, origin: 'null' });
  t.equal(ok.status, 303, 'with cookie and token (Origin null, as no-referrer makes browsers send)');
  const session = ok.headers.getSetCookie().find((c) => c.startsWith('mailauth_portal=')) ?? '';
  t.match(session, /HttpOnly/);
  t.match(session, /SameSite=Lax/);
  t.notMatch(session, /Secure/, 'http public URL: no Secure flag');
  const sid = session.split(';')[0] as string;
  const home = await fetch(`${base}/`, { headers: { cookie: sid } });
  t.match(await home.text(), /carol@example\.org/);
  t.equal(home.headers.get('cache-control'), 'no-store');
  // The session's own token: a post without it changes nothing.
  t.equal((await post(`${base}/signout`, 'csrf=nope', { cookie: sid })).status, 403);
  t.match(await (await fetch(`${base}/`, { headers: { cookie: sid } })).text(), /Sign out/, 'still signed in');
});

t.test('bad methods, types and sizes', async (t) => {
  const { cookie, csrf } = await signInForm(base);
  t.equal((await post(`${base}/signin/password`, JSON.stringify({ csrf }), { cookie, 'content-type': 'application/json' })).status, 415);
  t.equal((await post(`${base}/signin/password`, `csrf=${csrf}&x=${'a'.repeat(10_000)}`, { cookie })).status, 413);
  t.equal((await fetch(`${base}/`, { method: 'DELETE' })).status, 405);
});

t.test('X-Forwarded-For: only from configured proxies', async (t) => {
  const signIn = async (url: string): Promise<void> => {
    const { cookie, csrf } = await signInForm(url);
    await post(`${url}/signin/password`, `csrf=${encodeURIComponent(csrf)}&username=carol%40example.org&password=${encodeURIComponent(PASSWORD)}`, { cookie, 'x-forwarded-for': '203.0.113.5' });
  };
  await signIn(base);
  const lines = p.logs().filter((l) => l.msg === 'portal: signed in');
  t.equal(lines.at(-1)?.ip, '127.0.0.1', 'not a configured proxy: the header is ignored');
  const behind = await startPortalDaemon(t, tdb, { trusted_proxies: ['127.0.0.1'] }, { throttle: { enabled: false } });
  await signIn(behind.portalUrl);
  t.equal(behind.logs().filter((l) => l.msg === 'portal: signed in').at(-1)?.ip, '203.0.113.5', 'from a configured proxy: the client it names');
});

t.test('https public URL: Secure __Host- cookies and HSTS', async (t) => {
  const s = await startPortalDaemon(t, tdb, { public_url: 'https://mail.example.org/account' }, { throttle: { enabled: false } });
  const r = await fetch(`${s.portalUrl}/account/`);
  t.equal(r.status, 200, 'routes live below the public URL path');
  t.match(r.headers.get('strict-transport-security') ?? '', /max-age=/);
  const pre = r.headers.getSetCookie().find((c) => c.includes('mailauth_pre=')) ?? '';
  t.match(pre, /^__Host-mailauth_pre=.*; Path=\/; HttpOnly; SameSite=Lax; Secure/);
  t.equal((await fetch(`${s.portalUrl}/`, { redirect: 'manual' })).status, 404, 'nothing outside the base path');
  t.equal((await post(`${s.portalUrl}/account/signin/password`, 'csrf=x', { origin: 'http://127.0.0.1' })).status, 403, 'the origin must be the public one');
});

t.test('the Dovecot-facing listener does not serve the portal; no password in the log', async (t) => {
  for (const path of ['/static/portal.css', '/signin/password', '/callback']) {
    const r = await fetch(`${p.url}${path}`);
    t.equal(r.status, 404, `${path}: no such route there`);
    t.notMatch(r.headers.get('content-type') ?? '', /text\/(css|html)/);
    t.notMatch(await r.text(), /Mail account/);
  }
  t.notOk(p.logText().includes(PASSWORD), 'the password never reaches the log');
});
