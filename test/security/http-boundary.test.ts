/**
 * Security review, door 1: the HTTP boundary of the daemon (startDaemon →
 * createServer) over real sockets. Every case is something a hostile caller
 * can send; each asserts the door stays shut: no second request smuggled in,
 * no login from a malformed body, no stack or internal text in an answer, the
 * token required on every deciding route, and mailcow's endpoint speaking only
 * mailcow's four answers.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { request } from 'undici';
import { createAuthenticator, dbAccountLoader } from '../../src/auth/index.js';
import type { Authenticator } from '../../src/auth/index.js';
import { startDaemon } from '../../src/cli/serve.js';
import type { Daemon } from '../../src/cli/serve.js';
import type { Config } from '../../src/config/index.js';
import { insertAppPassword } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createServer } from '../../src/server/index.js';
import { coreRoutes } from '../../src/server/routes.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { http11, raw, sleep } from '../helpers/raw-http.js';
import { jsonOrNull } from '../helpers/json-body.js';

const PW = 'boundary-Secret-pw-1';
const APP_PW = 'boundary-app-pw-77';
const TOKEN = 'tok-0123456789abcdef-boundary';
// 1024 bytes in 512 characters: the default auth.max_password_bytes exactly.
const PW_MAX = 'é'.repeat(512);
const PW_OVER = `${PW_MAX}a`;
// A 255-byte user name (the longest allowed) and its one-byte-longer siblings.
const LONG_DOMAIN = `${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(58)}.org`;
const USER_255 = `${'l'.repeat(64)}@${LONG_DOMAIN}`;

// A stack frame, a source location, an error class name or a path of this machine.
const LEAK = /\bat [\w.<>]+ \(|\.ts:\d+|node:internal|\w*Error\b|\/work\/|ECONNREFUSED|ER_[A-Z_]+|SELECT|mysql/;

interface World {
  tdb: TestDatabase;
  config: Config;
  daemon: Daemon;
  url: string;
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-sec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function seed(tdb: TestDatabase): Promise<void> {
  await seedDomain(tdb, 'example.org');
  await seedDomain(tdb, LONG_DOMAIN);
  const ssha = await hash('SSHA256', PW);
  await seedMailbox(tdb, 'alice@example.org', ssha);
  // utf8mb4_unicode_ci says 'straße' = 'strasse', 'ａ' = 'a' and 'x ' = 'x': none of those may log in here.
  await seedMailbox(tdb, 'strasse@example.org', ssha);
  await seedMailbox(tdb, 'empty@example.org', '{CLEAR}');
  await seedMailbox(tdb, 'max@example.org', await hash('SSHA256', PW_MAX));
  await seedMailbox(tdb, 'over@example.org', await hash('SSHA256', PW_OVER));
  await seedMailbox(tdb, USER_255, ssha);
  await insertAppPassword(tdb.db, {
    name: 'phone', mailbox: 'alice@example.org', domain: 'example.org', password: await hash('SSHA256', APP_PW),
    access: { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 },
  });
}

/** The daemon as `mailauth serve` builds it, with a token unless `token: false`. */
async function world(t: Test, opts: { token?: boolean; listen?: Record<string, unknown> } = {}): Promise<World> {
  const tdb = await createTestDatabase(t);
  await seed(tdb);
  let tokenFile: string | null = null;
  if (opts.token !== false) {
    tokenFile = join(tmp(t), 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
  }
  const config = testConfig(tdb, {
    listen: { address: '127.0.0.1:0', token_file: tokenFile, ...opts.listen },
    login_log: { enabled: false },
  });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url ?? '';
  return { tdb, config, daemon, url };
}

interface Answer {
  status: number;
  text: string;
  json: Record<string, unknown> | null;
  headers: Record<string, string | string[] | undefined>;
}

async function call(url: string, path: string, init: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(`${url}${path}`, {
    method: (init.method ?? 'POST') as 'POST',
    headers: init.headers ?? { 'content-type': 'application/json', 'x-mailauth-token': TOKEN },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.body.text();
  const json = jsonOrNull(text);
  return { status: res.statusCode, text, json, headers: res.headers };
}

const WITH_TOKEN = { 'content-type': 'application/json', 'x-mailauth-token': TOKEN };
const passdb = (url: string, body: unknown, headers: Record<string, string> = WITH_TOKEN) => call(url, '/v1/passdb', { body: typeof body === 'string' ? body : JSON.stringify(body), headers });
const login = (url: string, user: unknown, password: unknown, service: unknown = 'imap') => passdb(url, { user, password, service, remote_ip: '192.0.2.1' });

t.test('request smuggling: ambiguous framing is refused before any route runs', async (t) => {
  const w = await world(t, { token: false });
  const body = JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' });
  const ct = 'Content-Type: application/json';
  const smuggled = http11('POST', '/v1/passdb', [ct, `Content-Length: ${body.length}`], body);

  // Control: two honest pipelined requests get two answers, so the counting below can see a smuggled one.
  const control = await raw(w.url, http11('GET', '/healthz', []) + http11('GET', '/healthz', ['Connection: close']));
  t.same(control.statuses, [200, 200], 'control: pipelined requests are each answered');

  const cases: [string, string][] = [
    ['two Content-Length values', http11('POST', '/v1/passdb', [ct, `Content-Length: ${body.length}`, 'Content-Length: 2'], body)],
    ['the same Content-Length twice', http11('POST', '/v1/passdb', [ct, `Content-Length: ${body.length}`, `Content-Length: ${body.length}`], body)],
    ['a Content-Length list', http11('POST', '/v1/passdb', [ct, `Content-Length: ${body.length}, ${body.length}`], body)],
    ['Transfer-Encoding with Content-Length (CL.TE)', http11('POST', '/v1/passdb', [ct, 'Transfer-Encoding: chunked', 'Content-Length: 5'], `0\r\n\r\n${smuggled}`)],
    ['Content-Length with Transfer-Encoding (TE.CL)', http11('POST', '/v1/passdb', [ct, `Content-Length: ${smuggled.length + 5}`, 'Transfer-Encoding: chunked'], `0\r\n\r\n${smuggled}`)],
    ['Transfer-Encoding: chunked, identity', http11('POST', '/v1/passdb', [ct, 'Transfer-Encoding: chunked, identity'], `0\r\n\r\n${smuggled}`)],
    ['Transfer-Encoding: xchunked', http11('POST', '/v1/passdb', [ct, 'Transfer-Encoding: xchunked'], `0\r\n\r\n${smuggled}`)],
    ['space before the colon', http11('POST', '/v1/passdb', [ct, 'Transfer-Encoding : chunked', `Content-Length: ${body.length}`], body)],
    ['Content-Length: +N', http11('POST', '/v1/passdb', [ct, `Content-Length: +${body.length}`], body)],
    ['Content-Length: -1', http11('POST', '/v1/passdb', [ct, 'Content-Length: -1'], body)],
    ['Content-Length beyond 2^64', http11('POST', '/v1/passdb', [ct, 'Content-Length: 99999999999999999999999'], body)],
    ['obsolete line folding', http11('POST', '/v1/passdb', [ct, 'X-Fold: a', ' b', `Content-Length: ${body.length}`], body)],
    ['bare LF line ends', `POST /v1/passdb HTTP/1.1\nHost: x\n${ct}\nContent-Length: ${body.length}\n\n${body}${smuggled}`],
    ['a chunk size that overflows', http11('POST', '/v1/passdb', [ct, 'Transfer-Encoding: chunked'], `FFFFFFFFFFFFFFFFFFFF\r\n${body}\r\n0\r\n\r\n`)],
    ['NUL in a header value', http11('POST', '/v1/passdb', [ct, 'X-A: a\u0000b', `Content-Length: ${body.length}`], body)],
  ];
  const before = await w.daemon.metrics.render();
  for (const [name, bytes] of cases) {
    const r = await raw(w.url, bytes);
    t.same(r.statuses, [400], `${name}: exactly one answer, 400`);
    t.ok(r.closed, `${name}: connection closed`);
    t.match(r.text, /"error":"bad_request"/, `${name}: JSON error body`);
  }
  const after = await w.daemon.metrics.render();
  const decided = (m: string): number => [...m.matchAll(/mailauth_requests_total\{endpoint="passdb",result="(?:ok|password_mismatch|user_unknown|user_disabled|internal_failure)"\} (\d+)/g)].reduce((n, x) => n + Number(x[1]), 0);
  t.equal(decided(after), decided(before), 'no login was decided from any of them');
  t.equal((await call(w.url, '/healthz', { method: 'GET', headers: {} })).status, 200, 'still serving');
});

t.test('oversized headers get 431; slow clients get 408 and decide nothing', async (t) => {
  const w = await world(t, { token: false, listen: { headers_timeout: '300ms', request_timeout: '800ms' } });
  const ct = 'Content-Type: application/json';
  const big = await raw(w.url, http11('POST', '/v1/passdb', [ct, `X-Big: ${'a'.repeat(20_000)}`, 'Content-Length: 2'], '{}'));
  t.same(big.statuses, [431], 'one 20 KB header');
  const many = await raw(w.url, http11('POST', '/v1/passdb', [ct, ...Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`), 'Content-Length: 2'], '{}'));
  t.same(many.statuses, [431], '3000 small headers');

  // Slowloris: every byte arrives in time for the socket, but the head as a whole does not.
  const slowHead = await raw(
    w.url,
    async (s) => {
      for (const ch of 'POST /v1/passdb HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n') {
        if (s.destroyed) return;
        s.write(ch);
        await sleep(25);
      }
    },
    4000,
  );
  t.same(slowHead.statuses, [408], 'a head trickled byte by byte');
  t.ok(slowHead.closed);

  // Headers complete, body never finishes: listen.request_timeout ends it without a decision.
  const body = JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' });
  const slowBody = await raw(w.url, http11('POST', '/v1/passdb', [ct, `Content-Length: ${body.length}`], body.slice(0, -1)), 4000);
  t.same(slowBody.statuses, [408], 'a body one byte short');
  t.ok(slowBody.closed);
  t.notMatch(slowBody.text, /"result"/, 'no decision was answered');
});

t.test('JSON bodies: prototype keys, nesting, numbers and wrong types never become a login', async (t) => {
  const w = await world(t, { listen: { body_limit: 1_048_576 } });
  const base = { user: 'alice@example.org', password: PW, service: 'imap', remote_ip: '192.0.2.1' };

  // __proto__ inside JSON is an own key after JSON.parse; it must neither pollute nor supply fields.
  const proto = await passdb(w.url, `{"user":"alice@example.org","password":${JSON.stringify(PW)},"service":"imap","__proto__":{"polluted":1,"user":"x"}}`);
  t.same([proto.status, proto.json?.result, proto.json?.user], [200, 'ok', 'alice@example.org'], '__proto__ next to real fields is ignored');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  const onlyProto = await passdb(w.url, `{"__proto__":{"user":"alice@example.org","password":${JSON.stringify(PW)},"service":"imap"}}`);
  t.same([onlyProto.status, onlyProto.json?.error], [400, 'bad_request'], 'fields hidden in __proto__ are not read');
  const ctor = await passdb(w.url, `{"constructor":{"prototype":{"user":"alice@example.org"}},"password":${JSON.stringify(PW)},"service":"imap"}`);
  t.same([ctor.status, ctor.json?.error], [400, 'bad_request'], 'constructor.prototype does not supply user');
  for (const user of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    t.same((await login(w.url, user, PW)).json, { result: 'user_unknown', reason: 'no such mailbox' }, `user ${user}`);
    t.same((await login(w.url, user, PW)).json, { result: 'user_unknown', reason: 'no such mailbox' }, `user ${user} again (cached)`);
  }
  for (const service of ['__proto__', 'constructor', 'toString']) {
    t.match((await login(w.url, 'alice@example.org', PW, service)).json, { result: 'password_mismatch', reason: /not in auth\.services/ }, `service ${service}`);
  }

  // Depth: half a million levels in an ignored field parse fine; in a known field they are a type error.
  const deep = 500_000;
  const nested = `${'['.repeat(deep)}${']'.repeat(deep)}`;
  const ignored = await passdb(w.url, `{"user":"alice@example.org","password":${JSON.stringify(PW)},"service":"imap","x":${nested}}`);
  t.same([ignored.status, ignored.json?.result], [200, 'ok'], 'deep unknown field');
  const inPassword = await passdb(w.url, `{"user":"alice@example.org","password":${nested},"service":"imap"}`);
  t.same([inPassword.status, inPassword.json?.message], [400, 'password: must be a string, got array'], 'deep password field');
  const deepObject = await passdb(w.url, `{"user":"alice@example.org","password":${JSON.stringify(PW)},"service":"imap","x":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`);
  t.equal(deepObject.json?.result, 'ok', 'deep objects too');

  const wrong: [string, string, RegExp][] = [
    ['user as 1e999 (Infinity)', `{"user":1e999,"password":"x","service":"imap"}`, /^user: must be a string, got number$/],
    ['password as a 40-digit number', `{"user":"alice@example.org","password":1234567890123456789012345678901234567890,"service":"imap"}`, /^password: must be a string, got number$/],
    ['password as -0', `{"user":"alice@example.org","password":-0,"service":"imap"}`, /^password: must be a string, got number$/],
    ['user as true', `{"user":true,"password":"x","service":"imap"}`, /^user: must be a string, got boolean$/],
    ['user as an object', `{"user":{"toString":"alice@example.org"},"password":"x","service":"imap"}`, /^user: must be a string, got object$/],
    ['user as an array', `{"user":["alice@example.org"],"password":"x","service":"imap"}`, /^user: must be a string, got array$/],
    ['password as null', `{"user":"alice@example.org","password":null,"service":"imap"}`, /^password: missing$/],
    ['secured as "true"', `{"user":"alice@example.org","password":"x","service":"imap","secured":"true"}`, /^secured: must be a boolean, got string$/],
  ];
  for (const [name, body, message] of wrong) {
    const r = await passdb(w.url, body);
    t.same([r.status, r.json?.error], [400, 'bad_request'], name);
    t.match(r.json?.message, message, `${name}: names the field and type, never the value`);
  }
  // Duplicate keys: JSON.parse keeps the last, which must be the one validated and used.
  const dup = await passdb(w.url, `{"user":"alice@example.org","password":${JSON.stringify(PW)},"password":"not-it","service":"imap"}`);
  t.same([dup.status, dup.json?.result], [200, 'password_mismatch'], 'duplicate password key: the last one counts');
  t.same((await passdb(w.url, { ...base, password: PW })).json?.result, 'ok', 'the honest request still works');
});

t.test('user names: control characters, length in bytes, and Unicode look-alikes', async (t) => {
  const w = await world(t);
  const refused: [string, string, RegExp][] = [
    ['NUL at the end', 'alice@example.org\u0000', /control characters/],
    ['NUL inside', 'alice\u0000@example.org', /control characters/],
    ['CR LF (log injection)', 'alice@example.org\r\nresult=ok', /control characters/],
    ['C1 control NEL', 'alice@example.org\u0085', /control characters/],
    ['DEL', 'alice@example.org\u007f', /control characters/],
    ['leading space', ' alice@example.org', /neither an email/],
    ['trailing space (PAD SPACE collation would match it)', 'alice@example.org ', /neither an email/],
    ['fullwidth @', 'alice\uff20example.org', /neither an email/],
    ['fullwidth letter', '\uff41lice@example.org', /neither an email/],
    ['ß for ss (unicode_ci matches strasse)', 'straße@example.org', /neither an email/],
    ['zero-width space', 'alice\u200b@example.org', /neither an email/],
    ['LINE SEPARATOR', 'alice@example.org\u2028', /neither an email/],
    ['combining accent', 'a\u0301lice@example.org', /neither an email/],
    ['trailing dot', 'alice@example.org.', /neither an email/],
    ['256 bytes', `l${USER_255}`, /longer than 255 bytes/],
    // 255 characters but 256 bytes: the limit is in bytes, as the database column and Dovecot count.
    ['255 characters, 256 bytes', `${USER_255.slice(0, -1)}é`, /longer than 255 bytes/],
  ];
  for (const [name, user, reason] of refused) {
    const r = await login(w.url, user, PW);
    t.equal(r.status, 200, `${name}: 200`);
    t.match(r.json, { result: 'password_mismatch', reason }, `${name}: password_mismatch before any lookup`);
  }
  const r255 = await login(w.url, USER_255, PW);
  t.same(r255.json, { result: 'ok', user: USER_255, reason: 'mailcow password' }, 'exactly 255 bytes is accepted');
  t.equal(Buffer.byteLength(USER_255), 255);

  // Case folding maps to the same mailbox, as mailcow's case-insensitive collation does, and the answer names
  // the stored mailbox, so Dovecot's user (and sasl_log) never carry the caller's spelling.
  for (const user of ['ALICE@EXAMPLE.ORG', 'Alice@Example.Org', 'aLiCe@eXaMpLe.oRg']) {
    t.same((await login(w.url, user, PW)).json, { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' }, `${user}: canonical user`);
    t.same((await login(w.url, user, APP_PW)).json, { result: 'ok', user: 'alice@example.org', reason: 'app password' }, `${user}: app password, canonical user (issue 16: no id for the caller)`);
    t.match((await login(w.url, user, 'wrong')).json, { result: 'password_mismatch' }, `${user}: wrong password`);
  }
  t.same((await call(w.url, '/v1/userdb', { body: JSON.stringify({ user: 'ALICE@example.org' }), headers: WITH_TOKEN })).json?.user, 'alice@example.org', 'userdb answers the canonical name too');

  // Without the validator, the collation would let these in as strasse@ / alice@: prove the mailboxes exist.
  t.match((await login(w.url, 'strasse@example.org', PW)).json, { result: 'ok' }, 'control: strasse@ itself logs in');
  const rows = await w.tdb.sql<{ username: string }>('SELECT username FROM mailbox WHERE username = ?', ['straße@example.org']);
  t.same(rows.map((r) => r.username), ['strasse@example.org'], 'control: the database would have matched straße@ to strasse@');
});

t.test('passwords: empty, exactly the byte limit, one byte over', async (t) => {
  const w = await world(t);
  t.match((await login(w.url, 'empty@example.org', '')).json, { result: 'password_mismatch', reason: 'empty password' }, 'empty password refused even against an empty stored password');
  t.match((await login(w.url, 'alice@example.org', '')).json, { result: 'password_mismatch', reason: 'empty password' });
  t.same((await login(w.url, 'max@example.org', PW_MAX)).json, { result: 'ok', user: 'max@example.org', reason: 'mailcow password' }, `${Buffer.byteLength(PW_MAX)} bytes: verified`);
  t.match((await login(w.url, 'over@example.org', PW_OVER)).json, { result: 'password_mismatch', reason: 'password longer than 1024 bytes' }, `${Buffer.byteLength(PW_OVER)} bytes: refused although it is the stored password`);
  t.match((await call(w.url, '/', { body: JSON.stringify({ username: 'over@example.org', password: PW_OVER, real_rip: '', service: 'imap' }), headers: WITH_TOKEN })), { status: 401, text: '{"success":false}' }, 'the same on the mailcow endpoint');
});

t.test('the token: required on every POST route and /metrics, compared whole, never from the query string', async (t) => {
  const w = await world(t);
  // Every POST route the server is built with asks for the token (a new route without it fails here).
  const routes = coreRoutes({ authenticator: {} as Authenticator, db: { ping: async () => undefined }, bodyLimit: 1 });
  const posts = routes.filter((r) => r.method === 'POST');
  t.same(posts.map((r) => r.path).sort(), ['/', '/v1/passdb', '/v1/userdb'], 'the POST routes');
  t.ok(posts.every((r) => r.auth), 'each is marked auth');

  const bodies: Record<string, string> = {
    '/v1/passdb': JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' }),
    '/': JSON.stringify({ username: 'alice@example.org', password: PW, real_rip: '', service: 'imap' }),
    '/v1/userdb': JSON.stringify({ user: 'alice@example.org' }),
  };
  const refusedStatus = (path: string): number => (path === '/' ? 500 : 401);
  for (const path of Object.keys(bodies)) {
    const body = bodies[path] as string;
    const ct = { 'content-type': 'application/json' };
    const attempts: [string, string, Record<string, string>][] = [
      ['absent', path, ct],
      ['empty', path, { ...ct, 'x-mailauth-token': '' }],
      ['a prefix', path, { ...ct, 'x-mailauth-token': TOKEN.slice(0, -1) }],
      ['with a suffix', path, { ...ct, 'x-mailauth-token': `${TOKEN}x` }],
      ['upper-cased', path, { ...ct, 'x-mailauth-token': TOKEN.toUpperCase() }],
      ['as a Bearer token', path, { ...ct, authorization: `Bearer ${TOKEN}` }],
      ['in the query string', `${path}?x-mailauth-token=${TOKEN}&token=${TOKEN}`, ct],
    ];
    for (const [name, target, headers] of attempts) {
      const r = await call(w.url, target, { body, headers });
      t.equal(r.status, refusedStatus(path), `${path}: token ${name} → ${refusedStatus(path)}`);
      t.notOk(r.text.includes(TOKEN), `${path}: the answer does not echo the token`);
      t.notMatch(r.text, /"result"|"success":true/, `${path}: token ${name}: nothing decided`);
    }
    // Two token headers are joined by Node ("a, b"), which is not the token.
    const twice = await raw(w.url, http11('POST', path, ['Content-Type: application/json', `X-Mailauth-Token: ${TOKEN}`, `X-Mailauth-Token: ${TOKEN}`, `Content-Length: ${body.length}`, 'Connection: close'], body));
    t.same(twice.statuses, [refusedStatus(path)], `${path}: the token header twice`);
    const ok = await call(w.url, path, { body, headers: { 'content-type': 'application/json', 'X-Mailauth-Token': TOKEN } });
    t.equal(ok.status, 200, `${path}: the right token (any header-name case) → 200`);
  }
  t.equal((await call(w.url, '/metrics', { method: 'GET', headers: {} })).status, 401, '/metrics without the token');
  t.equal((await call(w.url, '/metrics?x-mailauth-token=' + TOKEN, { method: 'GET', headers: {} })).status, 401, '/metrics with the token in the query');
  t.equal((await call(w.url, '/metrics', { method: 'HEAD', headers: {} })).status, 401, 'HEAD /metrics without the token');
  t.equal((await call(w.url, '/metrics', { method: 'GET', headers: { 'x-mailauth-token': TOKEN } })).status, 200, '/metrics with the token');
  t.equal((await call(w.url, '/healthz', { method: 'GET', headers: {} })).status, 200, '/healthz stays open');

  // Constant-time comparison (review pinned in code): both sides hashed to a fixed size, then timingSafeEqual.
  for (const file of ['src/server/index.ts', 'src/server/metrics-route.ts']) {
    const src = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
    t.match(src, /timingSafeEqual\(digest\(got\), expected/, `${file}: token compared with timingSafeEqual over digests`);
    t.notMatch(src.replace(/[!=]==\s*null\b|typeof \w+ [!=]== '\w+'/g, ''), /\b(?:got|token)\s*[!=]==|[!=]==\s*(?:got|token)\b/, `${file}: no plain string comparison of the token`);
  }
});

t.test('the mailcow endpoint answers only 200/401/400/500, with exactly mailcow\'s bodies', async (t) => {
  const w = await world(t, { token: false, listen: { body_limit: 512 } });
  const good = { username: 'alice@example.org', password: PW, real_rip: '192.0.2.1', service: 'imap' };
  const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, method = 'POST') => call(w.url, '/', { body, headers, method });
  const expect: [string, Promise<Answer>, number, string][] = [
    ['ok', post(JSON.stringify(good)), 200, '{"success":true}'],
    ['ok with a case-folded name', post(JSON.stringify({ ...good, username: 'ALICE@example.org' })), 200, '{"success":true}'],
    ['wrong password', post(JSON.stringify({ ...good, password: 'nope' })), 401, '{"success":false}'],
    ['unknown user', post(JSON.stringify({ ...good, username: 'ghost@example.org' })), 401, '{"success":false}'],
    ['invalid user name', post(JSON.stringify({ ...good, username: 'alice@example.org\u0000' })), 401, '{"success":false}'],
    ['missing field', post(JSON.stringify({ username: 'alice@example.org', password: PW, service: 'imap' })), 400, '{"success":false}'],
    ['wrong type', post(JSON.stringify({ ...good, password: 5 })), 400, '{"success":false}'],
    ['bad JSON', post('{"username":'), 400, '{"success":false}'],
    ['not UTF-8', call(w.url, '/', { body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]), headers: { 'content-type': 'application/json' } }), 400, '{"success":false}'],
    ['empty body', post(''), 400, '{"success":false}'],
    ['too large', post(JSON.stringify({ ...good, password: 'x'.repeat(600) })), 400, '{"success":false}'],
    ['wrong content type', post(JSON.stringify(good), { 'content-type': 'text/plain' }), 400, '{"success":false}'],
  ];
  for (const [name, pending, status, text] of expect) {
    const r = await pending;
    t.same([r.status, r.text], [status, text], name);
  }
  const get = await call(w.url, '/', { method: 'GET', headers: {} });
  t.same([get.status, get.text], [400, '{"success":false}'], 'GET /');

  // Token configured but mailcow's script sends none: "could not decide", never a wrong password (mailcow's
  // script turns 401 into PASSWORD_MISMATCH, which would drop Dovecot's cached logins).
  const guarded = await world(t);
  const noToken = await call(guarded.url, '/', { body: JSON.stringify(good), headers: { 'content-type': 'application/json' } });
  t.same([noToken.status, noToken.text], [500, '{"success":false}'], 'missing token → 500');

  // internal_failure and a crashing authenticator: 500 with the same body, no internals.
  const tdb = await createTestDatabase(t);
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' } });
  for (const [name, authenticator] of [
    ['internal_failure', { passdb: async () => ({ result: 'internal_failure' as const, reason: 'database unavailable' }), userdb: async () => ({ result: 'user_unknown' as const }) }],
    ['a throw', { passdb: async () => { throw new Error(`boom at /work/main/src/x.ts:1 ${PW}`); }, userdb: async () => ({ result: 'user_unknown' as const }) }],
  ] as const) {
    const server = createServer({ config, authenticator, db: tdb.db, logger: silentLogger() });
    const [addr] = await server.listen();
    t.teardown(() => server.close());
    const r = await call(addr?.url ?? '', '/', { body: JSON.stringify(good), headers: { 'content-type': 'application/json' } });
    t.same([r.status, r.text], [500, '{"success":false}'], name);
  }
});

t.test('no stack trace, internal message or secret in any 4xx/5xx body', async (t) => {
  const w = await world(t, { listen: { body_limit: 512 } });
  const secret = 'Leak-Me-Password-123';
  const probes: [string, string, { method?: string; body?: string; headers?: Record<string, string> }][] = [
    ['bad JSON quoting the password', '/v1/passdb', { body: `{"user":"alice@example.org","password":"${secret}",` }],
    ['bad JSON (mailcow)', '/', { body: `{"username":"alice@example.org","password":"${secret}"` }],
    ['wrong type', '/v1/passdb', { body: JSON.stringify({ user: 'alice@example.org', password: [secret], service: 'imap' }) }],
    ['too large', '/v1/passdb', { body: JSON.stringify({ user: 'alice@example.org', password: secret.repeat(40), service: 'imap' }) }],
    ['unknown route', '/v1/passdb/../../etc/passwd', { body: '{}' }],
    ['wrong method', '/v1/passdb', { method: 'GET', headers: { 'x-mailauth-token': TOKEN } }],
    ['no token', '/v1/passdb', { body: JSON.stringify({ user: 'alice@example.org', password: secret, service: 'imap' }), headers: { 'content-type': 'application/json' } }],
    ['wrong content type', '/v1/userdb', { body: '{}', headers: { 'content-type': 'text/plain', 'x-mailauth-token': TOKEN } }],
  ];
  for (const [name, path, init] of probes) {
    const r = await call(w.url, path, { headers: WITH_TOKEN, ...init });
    t.ok(r.status >= 400, `${name}: ${r.status}`);
    t.notMatch(r.text, LEAK, `${name}: no stack or internals`);
    t.notOk(r.text.includes(secret), `${name}: the password is not echoed`);
  }
  const rawErr = await raw(w.url, 'GARBAGE\r\n\r\n');
  t.notMatch(rawErr.text, LEAK, 'parser error: no internals');

  // readyz with the database gone names no driver code or host.
  const down = await createTestDatabase(t);
  const dconfig = testConfig(down, { listen: { address: '127.0.0.1:0' } });
  const server = createServer({
    config: dconfig,
    authenticator: createAuthenticator({ db: down.db, logger: silentLogger(), config: dconfig.auth, loadAccount: dbAccountLoader(down.db) }),
    db: { ping: async () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:3306 for mailauth@db'), { code: 'ERR_DB_UNAVAILABLE' })) },
    logger: silentLogger(),
  });
  const [addr] = await server.listen();
  t.teardown(() => server.close());
  const ready = await call(addr?.url ?? '', '/readyz', { method: 'GET', headers: {} });
  t.same([ready.status, ready.json], [503, { status: 'unavailable', reason: 'database unavailable' }]);
  t.notMatch(ready.text, LEAK);
});
