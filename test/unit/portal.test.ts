/**
 * Issue 19, the pure parts: portal config (off by default, required public URL,
 * never the Dovecot-facing listener), client address behind proxies, sessions
 * and pending sign-ins on an injected clock, the sign-in throttle, the
 * password policy, and the page escaping.
 */
import t from 'tap';
import { buildConfig } from '../../src/config/index.js';
import { clientAddress, createSessionStore, createSignInLimiter, policyProblems, tokensEqual } from '../../src/portal/index.js';
import { esc, html } from '../../src/portal/views.js';

const problemsOf = (tree: unknown): string[] => {
  try {
    buildConfig(tree, { env: {} });
    return [];
  } catch (err) {
    return ((err as { details?: { problems?: string[] } }).details?.problems ?? []) as string[];
  }
};

t.test('portal config', async (t) => {
  t.equal(buildConfig({}, { env: {} }).portal, null, 'off by default');
  const c = buildConfig({ portal: { listen: '127.0.0.1:9083', public_url: 'https://mail.example.org/account/' } }, { env: {} }).portal;
  t.match(c, { listen: { kind: 'tcp', host: '127.0.0.1', port: 9083 }, publicUrl: 'https://mail.example.org/account', basePath: '/account', secure: true, mailHost: 'mail.example.org', sessionTtlMs: 30 * 60_000, reauthAfterMs: 5 * 60_000, emailClaim: 'email', requireVerifiedEmail: true });
  t.equal(buildConfig({ portal: { listen: '127.0.0.1:9083', public_url: 'http://127.0.0.1:9083' } }, { env: {} }).portal?.secure, false, 'http: no Secure cookies');
  t.match(problemsOf({ portal: { listen: '127.0.0.1:9083' } }), [/portal\.public_url: required/]);
  t.match(problemsOf({ portal: { public_url: 'https://x.example' } }), [/portal\.public_url: set, but portal\.listen is null/]);
  t.match(problemsOf({ listen: { address: '127.0.0.1:9082' }, portal: { listen: '127.0.0.1:9082', public_url: 'https://x.example' } }), [/must not be the Dovecot-facing listener/]);
  t.match(problemsOf({ portal: { listen: 'unix:/run/p.sock', public_url: 'https://x.example' } }), [/portal\.listen: must be host:port/]);
  t.match(problemsOf({ portal: { listen: '127.0.0.1:9083', public_url: 'https://x.example/?a=1' } }), [/portal\.public_url: must be an http\(s\) URL without query/]);
  t.match(problemsOf({ portal: { listen: '127.0.0.1:9083', public_url: 'https://u:p@x.example' } }), [/must not contain a user name or password/]);
  t.match(problemsOf({ portal: { trusted_proxies: ['10.0.0.1', 'proxy.local'] } }), [/portal\.trusted_proxies\[1\]: must be an IP address/]);
  t.match(problemsOf({ portal: { session_ttl: '10s' } }), [/portal\.session_ttl: must be a duration between/]);
  t.match(problemsOf({ portal: { bogus: 1 } }), [/portal\.bogus: unknown key/]);
});

t.test('client address: X-Forwarded-For only from configured proxies', async (t) => {
  t.equal(clientAddress('198.51.100.7', '203.0.113.9', []), '198.51.100.7', 'no trusted proxy: the header is ignored');
  t.equal(clientAddress('::ffff:10.0.0.2', '203.0.113.9', ['10.0.0.2']), '203.0.113.9', 'from the proxy: the client it names');
  t.equal(clientAddress('10.0.0.2', '1.2.3.4, 203.0.113.9, 10.0.0.3', ['10.0.0.2', '10.0.0.3']), '203.0.113.9', 'the right-most untrusted hop (a client-sent entry cannot win)');
  t.equal(clientAddress('10.0.0.2', 'garbage', ['10.0.0.2']), '10.0.0.2', 'garbage: the peer');
  t.equal(clientAddress('10.0.0.2', undefined, ['10.0.0.2']), '10.0.0.2');
});

t.test('sessions expire, sign-out ends them, pending sign-ins are single-use', async (t) => {
  let now = 1_000_000;
  const clock = { now: () => now };
  const store = createSessionStore({ ttlMs: 60_000, clock });
  const { id, session } = store.create({ username: 'a@example.org', method: 'idp' });
  t.equal(store.get(id), session);
  t.ok(session.csrf.length >= 43, 'a 256-bit CSRF token');
  now += 59_999;
  t.equal(store.get(id), session, 'alive just before the TTL');
  now += 1;
  t.equal(store.get(id), null, 'gone at the TTL');
  const b = store.create({ username: 'b@example.org', method: 'password' });
  store.destroy(b.id);
  t.equal(store.get(b.id), null, 'sign-out');
  t.equal(store.get(undefined), null);
  const p = store.beginSignIn({ state: 's', nonce: 'n', verifier: 'v', reauthOf: null, returnTo: '/' });
  t.match(store.takeSignIn(p), { state: 's' });
  t.equal(store.takeSignIn(p), null, 'used once');
  const q = store.beginSignIn({ state: 's', nonce: 'n', verifier: 'v', reauthOf: null, returnTo: '/' });
  now += 10 * 60_000;
  t.equal(store.takeSignIn(q), null, 'a pending sign-in expires after 10 minutes');
  const c1 = store.create({ username: 'c@example.org', method: 'idp' });
  const c2 = store.create({ username: 'c@example.org', method: 'idp' });
  const c3 = store.create({ username: 'c@example.org', method: 'idp' });
  t.equal(store.destroyUser('c@example.org', c3.id), 2, 'every other session of the mailbox ends');
  t.equal(store.get(c1.id) ?? store.get(c2.id), null);
  t.ok(store.get(c3.id), 'the one kept stays');
  t.ok(tokensEqual('abc', 'abc'));
  t.notOk(tokensEqual('abc', 'abd'));
  t.notOk(tokensEqual('abc', 'abcd'));
});

t.test('bounded: the oldest sessions go first', async (t) => {
  const store = createSessionStore({ ttlMs: 60_000, clock: { now: () => 0 }, maxEntries: 2 });
  const a = store.create({ username: 'a', method: 'idp' });
  const b = store.create({ username: 'b', method: 'idp' });
  const c = store.create({ username: 'c', method: 'idp' });
  t.equal(store.get(a.id), null);
  t.ok(store.get(b.id) && store.get(c.id));
});

t.test('sign-in limiter: per address and per mailbox, in a window', async (t) => {
  let now = 0;
  const l = createSignInLimiter({ failures: 3, windowMs: 1000, clock: { now: () => now } });
  for (let i = 0; i < 3; i++) l.failed('192.0.2.1', 'A@example.org');
  t.notOk(l.allowed('192.0.2.1', 'other@example.org'), 'the address is limited');
  t.notOk(l.allowed('192.0.2.99', 'a@example.org'), 'the mailbox is limited (case-insensitively)');
  t.ok(l.allowed('192.0.2.99', 'other@example.org'));
  now = 1000;
  t.ok(l.allowed('192.0.2.1', 'a@example.org'), 'the window passed');
});

t.test('password policy', async (t) => {
  const policy = { minLength: 10, lowerupper: true, numbers: true, special: true };
  t.same(policyProblems('Abcdefgh1!', policy, 1024), []);
  t.match(policyProblems('abc', policy, 1024), ['at least 10 characters', 'both lower-case and upper-case letters', 'a digit', /neither a letter nor a digit/]);
  t.match(policyProblems('Abcdefgh1!'.repeat(3), policy, 16), ['at most 16 bytes']);
  t.match(policyProblems('Abcdefgh1!\n', policy, 1024), ['no control characters']);
});

t.test('views escape every value', async (t) => {
  t.equal(esc(`<a href="x">'&`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
  t.equal(html`<p>${'<script>'}</p>`.html, '<p>&lt;script&gt;</p>');
  t.equal(html`<ul>${['<b>', html`<li>ok</li>`]}</ul>`.html, '<ul>&lt;b&gt;<li>ok</li></ul>');
});
