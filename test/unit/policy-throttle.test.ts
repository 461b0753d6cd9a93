/**
 * Issue 17: the throttle's contract, with an injected clock — distinct counting,
 * back-off, blocks, familiar addresses, trusted networks, IPv6 /64, bounded
 * memory, and the seam in front of the decision (a refused guess costs no hash).
 */
import t from 'tap';
import { buildConfig } from '../../src/config/index.js';
import type { ThrottleConfig } from '../../src/config/index.js';
import { answerPolicy, clientKey, createThrottle, parsePolicyRequest, sessionMemory, throttled } from '../../src/policy/index.js';
import type { Authenticator, PassdbRequest, PassdbResult } from '../../src/auth/index.js';

function config(over: Record<string, unknown> = {}): ThrottleConfig {
  return buildConfig({ throttle: over }, { env: {} }).throttle;
}

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

const small = {
  backoff_base: '1s',
  backoff_max: '8s',
  ip: { free: 3, block_after: 6, block_for: '1m', forget_one_every: '1m' },
  user: { free: 3, block_after: 6, block_for: '1m', forget_one_every: '1m' },
  ip_user: { free: 2, block_after: 5, block_for: '1m', forget_one_every: '1m' },
};

t.test('address keys: IPv4 as is, IPv6 by prefix, mapped IPv4 unwrapped, nothing for no address', async (t) => {
  t.equal(clientKey('192.0.2.7', 64), '192.0.2.7');
  t.equal(clientKey('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2:0:0:0:0/64');
  t.equal(clientKey('2001:db8:1:2::99', 64), '2001:db8:1:2:0:0:0:0/64', 'two addresses of one /64 share a key');
  t.not(clientKey('2001:db8:1:3::1', 64), clientKey('2001:db8:1:2::1', 64), 'the next /64 does not');
  t.equal(clientKey('2001:db8:1:2:3:4:5:6', 48), '2001:db8:1:0:0:0:0:0/48');
  t.equal(clientKey('::ffff:198.51.100.9', 64), '198.51.100.9');
  t.equal(clientKey('::1', 128), '0:0:0:0:0:0:0:1');
  t.equal(clientKey('', 64), null);
  t.equal(clientKey('not-an-ip', 64), '?not-an-ip');
});

t.test('distinct wrong passwords: a repeated one counts once (the stale phone)', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  const fp = th.fingerprint('alice@example.org', 'old-password');
  for (let i = 0; i < 100; i++) {
    th.failed('192.0.2.1', 'alice@example.org', fp);
    c.t += 1000;
  }
  t.ok(th.check('192.0.2.1', 'alice@example.org').allowed, '100 repeats of one wrong password are not a guessing attack');
  t.equal(th.stats().counted.ip_user, 1);
  t.equal(th.stats().failures, 100);
  t.equal(th.fingerprint('ALICE@example.org', 'x'), th.fingerprint('alice@example.org', 'x'), 'the user is case-folded');
  t.not(th.fingerprint('alice@example.org', 'x'), th.fingerprint('bob@example.org', 'x'), 'the same password for two users is two guesses');
});

t.test('back-off grows exponentially above free, then a block; refusals are not counted', async (t) => {
  const c = clock();
  const blocks: string[] = [];
  const th = createThrottle({ config: config(small), clock: c, onBlock: (e) => blocks.push(e.scope) });
  const ip = '192.0.2.2';
  const fail = (n: number) => th.failed(ip, 'bob@example.org', th.fingerprint('bob@example.org', `guess-${n}`));
  fail(1);
  fail(2);
  t.ok(th.check(ip, 'bob@example.org').allowed, 'within free');
  fail(3);
  let v = th.check(ip, 'bob@example.org');
  t.match(v, { allowed: false, scope: 'ip_user', blocked: false, retryAfterMs: 1000 }, 'first step of back-off: base');
  c.t += 1000;
  t.ok(th.check(ip, 'bob@example.org').allowed, 'allowed again once it ran out');
  fail(4);
  v = th.check(ip, 'bob@example.org');
  t.match(v, { allowed: false, retryAfterMs: 2000 }, 'doubled');
  c.t += 2000;
  fail(5);
  v = th.check(ip, 'bob@example.org');
  t.match(v, { allowed: false, scope: 'ip_user', blocked: true }, 'block_after reached: a block');
  t.ok(!v.allowed && v.retryAfterMs >= 59_000, 'for block_for');
  t.same(blocks, ['ip_user'], 'one block event');
  t.match(th.check('192.0.2.3', 'bob@example.org'), { allowed: false, scope: 'user', blocked: false }, 'a new address for bob: back-off only (the mailbox counter is at 5, its block at 6)');
  t.ok(th.check('192.0.2.3', 'other@example.org').allowed, 'another mailbox from another address is not affected');
  t.equal(th.stats().refused.ip_user, 3);
});

t.test('spraying: one address, many mailboxes → the address counter', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  for (let i = 0; i < 6; i++) th.failed('203.0.113.5', `u${i}@example.org`, th.fingerprint(`u${i}@example.org`, 'Summer2026!'));
  const v = th.check('203.0.113.5', 'u99@example.org');
  t.match(v, { allowed: false, scope: 'ip', blocked: true }, 'a mailbox it never tried is refused too');
  t.ok(th.check('203.0.113.6', 'u99@example.org').allowed, 'other addresses are not');
  t.match(th.check('203.0.113.5', 'u0@example.org'), { allowed: false, scope: 'ip' });
});

t.test('distributed guessing: many addresses, one mailbox → the mailbox counter, except from familiar addresses', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  th.succeeded('198.51.100.1', 'carol@example.org'); // carol's phone
  for (let i = 0; i < 6; i++) th.failed(`203.0.113.${10 + i}`, 'carol@example.org', th.fingerprint('carol@example.org', `guess-${i}`));
  t.match(th.check('203.0.113.99', 'carol@example.org'), { allowed: false, scope: 'user', blocked: true }, 'a new address is refused');
  t.ok(th.check('198.51.100.1', 'carol@example.org').allowed, 'her phone, which logged in before, is not');
  t.ok(th.check('203.0.113.99', 'dave@example.org').allowed, 'other mailboxes are not');
});

t.test('familiar_for shorter than a day still makes addresses familiar, and they expire', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config({ ...small, familiar_for: '1h' }), clock: c });
  th.succeeded('198.51.100.2', 'kim@example.org');
  for (let i = 0; i < 6; i++) th.failed(`203.0.113.${40 + i}`, 'kim@example.org', th.fingerprint('kim@example.org', `g${i}`));
  t.ok(th.check('198.51.100.2', 'kim@example.org').allowed, 'familiar');
  t.notOk(th.check('203.0.113.99', 'kim@example.org').allowed, 'a stranger is not');
});

t.test('a success resets that address\'s counter for that mailbox only', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  for (let i = 0; i < 2; i++) th.failed('192.0.2.9', 'erin@example.org', th.fingerprint('erin@example.org', `typo-${i}`));
  th.succeeded('192.0.2.9', 'erin@example.org');
  t.same(th.list({ user: 'erin@example.org', all: true }).filter((e) => e.scope === 'ip_user'), [], 'the pair counter is gone');
  t.equal(th.list({ ip: '192.0.2.9', all: true }).find((e) => e.scope === 'ip')?.failures, 2, 'the address counter stays (a sprayer with one valid account cannot reset it)');
});

t.test('counters leak: one failure forgotten per forget_one_every', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  for (let i = 0; i < 2; i++) th.failed('192.0.2.10', 'f@example.org', th.fingerprint('f@example.org', `g${i}`));
  c.t += 60_000;
  th.failed('192.0.2.10', 'f@example.org', th.fingerprint('f@example.org', 'g2'));
  t.ok(th.check('192.0.2.10', 'f@example.org').allowed, '2 - 1 + 1 = 2, still free');
  c.t += 10 * 60_000;
  t.same(th.list({ all: true }).filter((e) => e.failures > 0 && e.scope !== 'ip'), [], 'drained entries expire');
});

t.test('trusted networks have no address counter; their pair and mailbox counters still count', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config({ ...small, trusted_networks: ['10.0.0.0/8', '2001:db8:ffff::/48'] }), clock: c });
  for (let i = 0; i < 20; i++) th.failed('10.1.2.3', `w${i}@example.org`, th.fingerprint(`w${i}@example.org`, 'pw'));
  t.ok(th.check('10.1.2.3', 'new@example.org').allowed, 'the webmail host is not blocked as a whole');
  for (let i = 0; i < 20; i++) th.failed('2001:db8:ffff:1::5', `v${i}@example.org`, th.fingerprint(`v${i}@example.org`, 'pw'));
  t.ok(th.check('2001:db8:ffff:1::5', 'new@example.org').allowed, 'IPv6 too');
  for (let i = 0; i < 6; i++) th.failed('10.1.2.3', 'x@example.org', th.fingerprint('x@example.org', `g${i}`));
  t.match(th.check('10.1.2.3', 'x@example.org'), { allowed: false, scope: 'ip_user' });
});

t.test('IPv6 clients are counted per /64', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  for (let i = 0; i < 6; i++) th.failed(`2001:db8:aa:bb::${i + 1}`, `s${i}@example.org`, th.fingerprint(`s${i}@example.org`, 'pw'));
  t.match(th.check('2001:db8:aa:bb:ffff::1', 'other@example.org'), { allowed: false, scope: 'ip' }, 'a fresh address in the same /64 is refused');
  t.ok(th.check('2001:db8:aa:bc::1', 'other@example.org').allowed);
});

t.test('memory is bounded by max_entries', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config({ max_entries: 100 }), clock: c });
  for (let i = 0; i < 1000; i++) th.failed(`198.18.${i >> 8}.${i & 255}`, `m${i}@example.org`, i);
  const s = th.stats();
  t.ok(s.entries.ip <= 100 && s.entries.user <= 100 && s.entries.ip_user <= 100, 'each table holds at most max_entries');
  t.ok(s.evictions >= 2700, 'the rest were evicted (and counted)');
});

t.test('list and clear, by address or mailbox', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  for (let i = 0; i < 6; i++) th.failed('192.0.2.50', 'g@example.org', th.fingerprint('g@example.org', `p${i}`));
  for (let i = 0; i < 6; i++) th.failed('192.0.2.51', `h${i}@example.org`, th.fingerprint(`h${i}@example.org`, 'p'));
  t.ok(th.list().length >= 3, 'active refusals listed');
  t.ok(th.list({ user: 'G@example.org' }).every((e) => e.user === 'g@example.org'));
  t.equal(th.clear({ ip: '192.0.2.51' }), 7, 'the address counter and its six pairs');
  t.ok(th.check('192.0.2.51', 'h0@example.org').allowed);
  t.notOk(th.check('192.0.2.50', 'g@example.org').allowed, 'the other stays');
  th.clear({ user: 'g@example.org' });
  t.ok(th.check('192.0.2.50', 'g@example.org').allowed === false, 'the address counter of .50 (6 distinct) still refuses');
  th.clear();
  t.ok(th.check('192.0.2.50', 'g@example.org').allowed, 'clear() drops everything');
});

t.test('off: everything allowed, nothing counted', async (t) => {
  const th = createThrottle({ config: config({ enabled: false }) });
  for (let i = 0; i < 500; i++) th.failed('192.0.2.1', 'a@example.org', i);
  t.ok(th.check('192.0.2.1', 'a@example.org').allowed);
  t.equal(th.stats().failures, 0);
});

/** An authenticator that counts the decisions it was asked for (each would be a hash). */
function countingAuth(correct: string): Authenticator & { calls: number } {
  const a = {
    calls: 0,
    async passdb(req: PassdbRequest): Promise<PassdbResult> {
      a.calls += 1;
      return req.password === correct ? { result: 'ok', user: req.user } : { result: 'password_mismatch' };
    },
    async userdb() {
      return { result: 'user_unknown' as const };
    },
  };
  return a;
}

t.test('the seam: a refused guess never reaches the decision (costs no hash)', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  const inner = countingAuth('right');
  const auth = throttled(inner, th);
  const req = (password: string, ip = '192.0.2.77'): PassdbRequest => ({ user: 'alice@example.org', password, service: 'imap', remoteIp: ip });
  const results: PassdbResult[] = [];
  for (let i = 0; i < 1000; i++) results.push(await auth.passdb(req(`wrong-${i}`)));
  t.equal(inner.calls, 3, 'free (2) decisions and the one that starts the back-off; the rest are refused at once (the clock stands still)');
  t.equal(results.filter((r) => r.result === 'password_mismatch' && /^throttled: /.test(r.reason ?? '')).length, 997, '997 refused by the throttle');
  t.match(await auth.passdb(req('right')), { result: 'password_mismatch', reason: /throttled/ }, 'even the right password is refused during back-off, unverified');
  t.equal(inner.calls, 3);
  t.match(await auth.passdb(req('right', '192.0.2.78')), { result: 'ok' }, 'from another address the right password works at once');
  t.equal(th.stats().refused.ip_user, 998);
});

t.test('the seam counts user_unknown and user_disabled, not internal_failure', async (t) => {
  const th = createThrottle({ config: config(small), clock: clock() });
  let answer: PassdbResult = { result: 'internal_failure' };
  const auth = throttled({ passdb: async () => answer, userdb: async () => ({ result: 'user_unknown' }) }, th);
  for (let i = 0; i < 10; i++) await auth.passdb({ user: 'z@example.org', password: `p${i}`, service: 'imap', remoteIp: '192.0.2.90' });
  t.equal(th.stats().failures, 0, 'an outage is not a guess');
  answer = { result: 'user_unknown' };
  await auth.passdb({ user: 'nobody@example.org', password: 'p', service: 'imap', remoteIp: '192.0.2.90' });
  answer = { result: 'user_disabled' };
  await auth.passdb({ user: 'gone@example.org', password: 'p', service: 'imap', remoteIp: '192.0.2.90' });
  t.equal(th.stats().failures, 2);
});

t.test('Dovecot auth-policy: parse, allow (0, tarpit, refuse) and report', async (t) => {
  const c = clock();
  const th = createThrottle({ config: config(small), clock: c });
  const sessions = sessionMemory();
  t.match(parsePolicyRequest('frobnicate', {}), { problem: /command must be allow or report/ });
  t.match(parsePolicyRequest('allow', []), { problem: /JSON object/ });
  t.match(parsePolicyRequest('allow', { remote: '1.2.3.4' }), { problem: /login: missing/ });
  t.match(parsePolicyRequest('allow', { login: 5 }), { problem: /login: must be a string/ });
  t.match(parsePolicyRequest('report', { login: 'a', success: 'yes' }), { problem: /success: must be true or false/ });
  t.match(parsePolicyRequest('allow', { login: 'a', pwhash: 'zz' }), { problem: /pwhash: must be hex/ });
  const body = (pwhash: string, extra: Record<string, unknown> = {}) => ({ login: 'pat@example.org', pwhash, remote: '192.0.2.120', device_id: '', protocol: 'imap', session_id: '', tls: false, ...extra });
  const allow = () => answerPolicy(th, sessions, parsePolicyRequest('allow', body('abc')) as never);
  const report = (pwhash: string, extra: Record<string, unknown> = {}) => answerPolicy(th, sessions, parsePolicyRequest('report', body(pwhash, { success: false, policy_reject: false, ...extra })) as never);
  t.same(allow(), { status: 0, msg: '' });
  report('a01');
  report('a01');
  report('a02');
  t.equal(th.stats().counted.ip_user, 2, 'pwhash tells distinct wrong passwords apart; a repeat counts once');
  report('a03');
  const tarpit = allow();
  t.equal(tarpit.status, 1, "back-off becomes Dovecot's tarpit, in seconds");
  report('a04');
  report('a05');
  t.match(allow(), { status: -1, msg: /Too many failed logins/ }, 'a block refuses');
  report('a06', { policy_reject: true });
  t.equal(th.stats().counted.ip_user, 5, 'our own refusals are not counted');
  sessions.remember('sess-1');
  report('a07', { session_id: 'sess-1' });
  t.equal(th.stats().counted.ip_user, 5, 'a failure the passdb already counted (same session) is not counted twice');
  report('', { success: true, remote: '192.0.2.121' });
  t.ok(th.check('192.0.2.121', 'pat@example.org').allowed, 'a reported success makes the address familiar');
});
