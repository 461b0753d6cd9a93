/** The HTTP server over real sockets: every endpoint, every protocol error, listeners, graceful close. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { connect as netConnect, createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { createAuthenticator, createLoginLog } from '../../src/auth/index.js';
import type { Authenticator, PassdbRequest } from '../../src/auth/index.js';
import type { Config } from '../../src/config/index.js';
import { insertAppPassword } from '../../src/db/index.js';
import { createLogger, silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createServer } from '../../src/server/index.js';
import type { ListenAddress, MailauthServer } from '../../src/server/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { jsonOrNull } from '../helpers/json-body.js';

const PW = 'server-test-password';
const TOKEN = 'a-shared-token-0123456789';

interface Fixture {
  tdb: TestDatabase;
  config: Config;
  server: MailauthServer;
  addresses: ListenAddress[];
  base: string;
}

let hashed: string;
t.before(async () => {
  hashed = await hash('SSHA256', PW);
});

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-srv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(
  t: Test,
  opts: { listen?: Record<string, unknown>; authenticator?: (tdb: TestDatabase, config: Config) => Authenticator; db?: { ping(): Promise<void> }; env?: Record<string, string> } = {},
): Promise<Fixture> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', hashed, { quota: 5000 });
  await seedMailbox(tdb, 'off@example.org', hashed, { active: 0 });
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0', ...opts.listen } });
  const authenticator = opts.authenticator?.(tdb, config) ?? createAuthenticator({ db: tdb.db, logger: silentLogger(), config: config.auth });
  const server = createServer({ config, authenticator, db: opts.db ?? tdb.db, logger: silentLogger() });
  const addresses = await server.listen();
  t.teardown(() => server.close());
  const first = addresses[0];
  return { tdb, config, server, addresses, base: first?.kind === 'tcp' ? first.url : 'http://localhost' };
}

async function call(base: string, path: string, init: { method?: string; body?: string | Buffer; headers?: Record<string, string>; dispatcher?: Agent } = {}) {
  const res = await request(`${base}${path}`, {
    method: (init.method ?? 'POST') as 'POST',
    headers: init.headers ?? { 'content-type': 'application/json' },
    ...(init.body !== undefined ? { body: init.body } : {}),
    ...(init.dispatcher ? { dispatcher: init.dispatcher } : {}),
  });
  const text = await res.body.text();
  const json = jsonOrNull(text);
  return { status: res.statusCode, headers: res.headers, text, json };
}

const post = (f: Fixture, path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  call(f.base, path, { body: JSON.stringify(body), headers });

t.test('POST /v1/passdb answers 200 with the decision for every result', async (t) => {
  const f = await start(t);
  const passdb = (user: string, password: string, service = 'imap') => post(f, '/v1/passdb', { user, password, service, remote_ip: '192.0.2.1' });
  t.same((await passdb('alice@example.org', PW)).json, { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' });
  t.same((await passdb('alice@example.org', 'nope')).json, { result: 'password_mismatch', reason: 'password mismatch' });
  t.same((await passdb('ghost@example.org', PW)).json, { result: 'user_unknown', reason: 'no such mailbox' });
  t.same((await passdb('off@example.org', PW)).json, { result: 'user_disabled', reason: 'mailbox is disabled (active=0)' });
  const r = await passdb('alice@example.org', PW, 'doveadm');
  t.equal(r.status, 200);
  t.equal(r.json?.result, 'password_mismatch');
  t.equal(r.headers['content-type'], 'application/json');
  t.equal(r.headers['cache-control'], 'no-store');
  // Optional fields, unknown fields, remote_ip absent (doveadm auth test has none), JSON null for optional.
  const full = await post(f, '/v1/passdb', {
    user: 'alice@example.org', password: PW, service: 'imap', local_ip: '127.0.0.1', mech: 'PLAIN', secured: true, session: 'abc', future_field: { x: 1 }, remote_ip: null,
  });
  t.same(full.json, { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' });
  t.same((await post(f, '/v1/passdb', { user: 'alice@example.org', password: PW, service: 'imap' })).json?.result, 'ok');
});

t.test('internal_failure is a 200 on /v1/passdb and a 500 on the mailcow endpoint', async (t) => {
  const failing: Authenticator = {
    passdb: async () => ({ result: 'internal_failure', reason: 'database unavailable' }),
    userdb: async () => ({ result: 'internal_failure', reason: 'database unavailable' }),
  };
  const f = await start(t, { authenticator: () => failing });
  t.same(await post(f, '/v1/passdb', { user: 'a@example.org', password: 'x', service: 'imap', remote_ip: '' }).then((r) => [r.status, r.json]), [200, { result: 'internal_failure', reason: 'database unavailable' }]);
  t.same(await post(f, '/v1/userdb', { user: 'a@example.org' }).then((r) => [r.status, r.json]), [200, { result: 'internal_failure', reason: 'database unavailable' }]);
  const compat = await post(f, '/', { username: 'a@example.org', password: 'x', real_rip: '192.0.2.1', service: 'imap' });
  t.same([compat.status, compat.json], [500, { success: false }]);
});

t.test('mailcow-compatible POST / with the request shape of mailcow\'s Lua script', async (t) => {
  const recorded: unknown[] = [];
  const f = await start(t, {
    authenticator: (tdb, config) =>
      createAuthenticator({ db: tdb.db, logger: silentLogger(), config: config.auth, loginLog: { record: (e) => recorded.push(e) } }),
  });
  // Exactly what passwd-verify.lua sends: cjson-encoded {username, password, real_rip, service},
  // content-type and content-length headers, POST to the root URL.
  const send = async (body: Record<string, unknown>, headers?: Record<string, string>) => {
    const json = JSON.stringify(body);
    return call(f.base, '/', { body: json, headers: headers ?? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)) } });
  };
  const ok = await send({ username: 'alice@example.org', password: PW, real_rip: '192.0.2.1', service: 'imap' });
  t.same([ok.status, ok.text], [200, '{"success":true}']);
  const bad = await send({ username: 'alice@example.org', password: 'wrong', real_rip: '192.0.2.1', service: 'imap' });
  t.same([bad.status, bad.text], [401, '{"success":false}']);
  const unknown = await send({ username: 'ghost@example.org', password: PW, real_rip: '192.0.2.1', service: 'imap' });
  t.same([unknown.status, unknown.json], [401, { success: false }]);
  const disabled = await send({ username: 'off@example.org', password: PW, real_rip: '192.0.2.1', service: 'smtp' });
  t.same([disabled.status, disabled.json], [401, { success: false }]);
  for (const missing of ['username', 'password', 'real_rip', 'service']) {
    const body: Record<string, unknown> = { username: 'alice@example.org', password: PW, real_rip: '192.0.2.1', service: 'imap' };
    delete body[missing];
    const r = await send(body);
    t.equal(r.status, 400, `missing ${missing} → 400`);
    t.equal(r.json?.success, false);
  }
  const noType = await send({ username: 'alice@example.org', password: PW, real_rip: '192.0.2.1', service: 'imap' }, {});
  t.equal(noType.status, 200, 'like mailcow\'s PHP, no content-type is accepted here');
  t.same(recorded, [
    { service: 'imap', appPassword: 0, username: 'alice@example.org', realRip: '192.0.2.1' },
    { service: 'imap', appPassword: 0, username: 'alice@example.org', realRip: '192.0.2.1' },
  ]);
});

t.test('POST /v1/userdb', async (t) => {
  const f = await start(t);
  t.same((await post(f, '/v1/userdb', { user: 'alice@example.org', service: 'lmtp' })).json, { result: 'ok', user: 'alice@example.org', fields: { quota_rule: '*:bytes=5000' } });
  t.same((await post(f, '/v1/userdb', { user: 'ghost@example.org' })).json, { result: 'user_unknown', reason: 'no such mailbox' });
  t.equal((await post(f, '/v1/userdb', { service: 'imap' })).status, 400);
});

t.test('health and readiness', async (t) => {
  const f = await start(t);
  t.same(await call(f.base, '/healthz', { method: 'GET', headers: {} }).then((r) => [r.status, r.json]), [200, { status: 'ok' }]);
  t.same(await call(f.base, '/readyz', { method: 'GET', headers: {} }).then((r) => [r.status, r.json]), [200, { status: 'ready' }]);
  const head = await call(f.base, '/healthz', { method: 'HEAD', headers: {} });
  t.same([head.status, head.text], [200, '']);
  const down = await start(t, { db: { ping: () => Promise.reject(Object.assign(new Error('x'), { code: 'ERR_DB_UNAVAILABLE' })) } });
  t.same(await call(down.base, '/readyz', { method: 'GET', headers: {} }).then((r) => [r.status, r.json]), [503, { status: 'unavailable', reason: 'database unavailable' }]);
});

t.test('protocol errors are 4xx with a JSON body', async (t) => {
  const f = await start(t, { listen: { body_limit: 512 } });
  const json = { 'content-type': 'application/json' };
  const cases: [string, { body?: string | Buffer; headers?: Record<string, string>; method?: string; path?: string }, number, string][] = [
    ['bad JSON', { body: '{"user": ' }, 400, 'invalid_json'],
    ['empty body', { body: '' }, 400, 'invalid_json'],
    ['array body', { body: '[]' }, 400, 'bad_request'],
    ['string body', { body: '"x"' }, 400, 'bad_request'],
    ['invalid UTF-8', { body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }, 400, 'invalid_json'],
    ['missing fields', { body: '{"user":"a@example.org"}' }, 400, 'bad_request'],
    ['wrong type', { body: '{"user":5,"password":"x","service":"imap"}' }, 400, 'bad_request'],
    ['wrong optional type', { body: '{"user":"a@example.org","password":"x","service":"imap","secured":"yes"}' }, 400, 'bad_request'],
    ['too large', { body: JSON.stringify({ user: 'a@example.org', password: 'x'.repeat(600), service: 'imap' }) }, 413, 'payload_too_large'],
    ['wrong content type', { body: '{}', headers: { 'content-type': 'text/plain' } }, 415, 'unsupported_media_type'],
    ['form content type', { body: 'user=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'unsupported_media_type'],
    ['no content type', { body: '{}', headers: {} }, 415, 'unsupported_media_type'],
    ['unknown route', { body: '{}', path: '/v2/passdb' }, 404, 'not_found'],
    ['wrong method', { method: 'GET', headers: {} }, 405, 'method_not_allowed'],
    ['wrong method on health', { method: 'POST', body: '{}', path: '/healthz' }, 405, 'method_not_allowed'],
  ];
  for (const [name, c, status, code] of cases) {
    const r = await call(f.base, c.path ?? '/v1/passdb', { method: c.method ?? 'POST', headers: c.headers ?? json, ...(c.body !== undefined ? { body: c.body } : {}) });
    t.equal(r.status, status, `${name}: status`);
    t.equal(r.json?.error, code, `${name}: error code`);
    t.type(r.json?.message, 'string', `${name}: message`);
    t.notMatch(r.text, /at .*\.ts:\d+|Error:/, `${name}: no stack`);
  }
  const wrong = await call(f.base, '/v1/passdb', { body: '{"user":5,"password":[],"service":"imap"}' });
  t.match(wrong.json?.message, /user: must be a string, got number; password: must be a string, got array/);
  const allow = await call(f.base, '/v1/passdb', { method: 'GET', headers: {} });
  t.equal(allow.headers.allow, 'POST');
  const charset = await call(f.base, '/v1/passdb', { body: JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' }), headers: { 'content-type': 'Application/JSON; charset=utf-8' } });
  t.equal(charset.json?.result, 'ok', 'content type parameters and case are accepted');
  t.equal((await call(f.base, '/?x=1', { body: JSON.stringify({ username: 'alice@example.org', password: PW, real_rip: '', service: 'imap' }) })).status, 200, 'query strings are ignored');

  // A chunked body (no content-length) that grows past the limit is cut off with 413, and the server lives on.
  const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const u = new URL(f.base);
    const req = http.request({ host: u.hostname, port: u.port, path: '/v1/passdb', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write('{"user":"' + 'a'.repeat(400));
    req.write('b'.repeat(400) + '"');
    req.end('}');
  });
  t.equal(chunked.status, 413);
  t.match(JSON.parse(chunked.body), { error: 'payload_too_large' });
  // A raw malformed request line gets a JSON 400 from the client-error handler.
  const raw = await new Promise<string>((resolve) => {
    const u = new URL(f.base);
    const s = netConnect(Number(u.port), u.hostname, () => s.write('BOGUS\r\n\r\n'));
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('close', () => resolve(out));
  });
  t.match(raw, /^HTTP\/1\.1 400 Bad Request/);
  t.same((await call(f.base, '/healthz', { method: 'GET', headers: {} })).status, 200, 'still serving');
});

t.test('the shared token: required when configured, compared in constant time, not on health checks', async (t) => {
  const dir = tmp(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN + '\n');
  const f = await start(t, { listen: { token_file: tokenFile } });
  const body = JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' });
  const ct = { 'content-type': 'application/json' };
  t.same(await call(f.base, '/v1/passdb', { body, headers: ct }).then((r) => [r.status, r.json?.error]), [401, 'unauthorized']);
  t.same(await call(f.base, '/v1/passdb', { body, headers: { ...ct, 'x-mailauth-token': 'wrong' } }).then((r) => [r.status, r.json?.error]), [401, 'unauthorized']);
  t.same(await call(f.base, '/v1/passdb', { body, headers: { ...ct, 'x-mailauth-token': TOKEN + 'x' } }).then((r) => r.status), 401);
  t.same(await call(f.base, '/v1/passdb', { body, headers: { ...ct, 'x-mailauth-token': TOKEN } }).then((r) => [r.status, r.json?.result]), [200, 'ok']);
  const compat = await call(f.base, '/', { body: JSON.stringify({ username: 'alice@example.org', password: PW, real_rip: '', service: 'imap' }), headers: ct });
  // mailcow's script reads 401 as a wrong password: a refused caller is "could not decide" there.
  t.same([compat.status, compat.text], [500, '{"success":false}']);
  t.equal((await call(f.base, '/v1/userdb', { body: '{"user":"alice@example.org"}', headers: ct })).status, 401);
  t.equal((await call(f.base, '/healthz', { method: 'GET', headers: {} })).status, 200);
  t.equal((await call(f.base, '/readyz', { method: 'GET', headers: {} })).status, 200);
});

t.test('unix socket listener with its mode, next to TCP', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'mailauth.sock');
  const f = await start(t, { listen: { socket: path, socket_mode: '0600' } });
  t.same(f.addresses.map((a) => a.kind), ['tcp', 'unix']);
  t.equal(statSync(path).mode & 0o777, 0o600);
  const agent = new Agent({ connect: { socketPath: path } });
  t.teardown(() => agent.close());
  const r = await call('http://localhost', '/v1/passdb', { body: JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' }), headers: { 'content-type': 'application/json' }, dispatcher: agent });
  t.equal(r.json?.result, 'ok');
  await f.server.close();
  t.notOk(existsSync(path), 'the socket file is removed on close');

  const g = await start(t, { listen: { address: `unix:${path}`, socket_mode: '0660' } });
  t.same(g.addresses, [{ kind: 'unix', path, mode: 0o660, url: `unix:${path}` }]);
  t.equal(statSync(path).mode & 0o777, 0o660);
});

t.test('a stale socket file is replaced; a live one or a regular file is not', async (t) => {
  const dir = tmp(t);
  const stale = join(dir, 'stale.sock');
  // A process that dies while listening leaves its socket file behind.
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    child.on('exit', () => resolve());
    child.on('error', reject);
  });
  t.ok(statSync(stale).isSocket(), 'stale socket exists');
  const f = await start(t, { listen: { address: `unix:${stale}` } });
  t.equal(f.addresses[0]?.kind, 'unix');

  const live = join(dir, 'live.sock');
  const other = netServer().listen(live);
  await new Promise((r) => other.once('listening', r));
  t.teardown(() => other.close());
  await t.rejects(start(t, { listen: { address: `unix:${live}` } }), { code: 'ERR_CONFIG_INVALID', message: /another process is listening/ });

  const file = join(dir, 'file.sock');
  writeFileSync(file, 'keep me');
  await t.rejects(start(t, { listen: { address: `unix:${file}` } }), { message: /not a socket/ });
  t.ok(existsSync(file), 'the regular file is untouched');
});

t.test('graceful close: stop accepting, finish the request in flight, then resolve', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const slow: Authenticator = {
    async passdb(req: PassdbRequest) {
      entered();
      await gate;
      return { result: 'ok', user: req.user };
    },
    userdb: async () => ({ result: 'user_unknown' }),
  };
  const f = await start(t, { authenticator: () => slow });
  // An idle keep-alive connection must not hold the close up.
  const keep = new Agent({ keepAliveTimeout: 60_000 });
  t.teardown(() => keep.close());
  t.equal((await call(f.base, '/healthz', { method: 'GET', headers: {}, dispatcher: keep })).status, 200);

  const inflight = post(f, '/v1/passdb', { user: 'alice@example.org', password: PW, service: 'imap' });
  await inside;
  t.equal(f.server.inFlight(), 1);
  let closed = false;
  const closing = f.server.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 50));
  t.notOk(closed, 'close waits for the request in flight');
  const refused = await call(f.base, '/healthz', { method: 'GET', headers: {}, dispatcher: new Agent() }).then(
    () => 'answered',
    (err: { code?: string }) => err.code ?? 'error',
  );
  t.equal(refused, 'ECONNREFUSED', 'no new connections');
  release();
  const r = await inflight;
  t.same([r.status, r.json], [200, { result: 'ok', user: 'alice@example.org' }]);
  await closing;
  t.ok(closed);
  t.equal(f.server.inFlight(), 0);
});

t.test('a throwing authenticator gives 500 without a stack, and the server keeps serving', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', format: 'json', destination: { write: (s: string) => lines.push(s) } as never });
  const broken: Authenticator = {
    passdb: async () => {
      throw new Error('kaboom with secret ' + PW);
    },
    userdb: async () => ({ result: 'user_unknown' }),
  };
  const tdb = await createTestDatabase(t);
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' } });
  const server = createServer({ config, authenticator: broken, db: tdb.db, logger });
  const [addr] = await server.listen();
  t.teardown(() => server.close());
  const base = addr?.url ?? '';
  const r = await call(base, '/v1/passdb', { body: JSON.stringify({ user: 'a@example.org', password: PW, service: 'imap' }) });
  t.same([r.status, r.json], [500, { error: 'internal', message: 'internal error' }]);
  t.notMatch(r.text, /kaboom|at /);
  t.equal((await call(base, '/healthz', { method: 'GET', headers: {} })).status, 200);
});

t.test('logins through the server reach sasl_log via the login log', async (t) => {
  let log!: ReturnType<typeof createLoginLog>;
  const f = await start(t, {
    authenticator: (tdb, config) => {
      log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: config.loginLog });
      return createAuthenticator({ db: tdb.db, logger: silentLogger(), config: config.auth, loginLog: log });
    },
  });
  const id = await insertAppPassword(f.tdb.db, {
    name: 'phone', mailbox: 'alice@example.org', domain: 'example.org', password: await hash('SSHA256', 'app-pw-123'),
    access: { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 },
  });
  await post(f, '/', { username: 'alice@example.org', password: 'app-pw-123', real_rip: '203.0.113.5', service: 'smtp' });
  await post(f, '/v1/passdb', { user: 'alice@example.org', password: PW, service: 'imap', remote_ip: '203.0.113.6' });
  await log.stop();
  const rows = await f.tdb.sql<{ service: string; app_password: number; real_rip: string }>('SELECT service, app_password, real_rip FROM sasl_log ORDER BY service');
  t.same(rows.map((r) => [r.service, r.app_password, r.real_rip]), [['imap', 0, '203.0.113.6'], ['smtp', id, '203.0.113.5']]);
});

t.test('graceful close also waits for a handler whose client hung up', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  let finished = false;
  const slow: Authenticator = {
    async passdb(req: PassdbRequest) {
      entered();
      await gate;
      finished = true;
      return { result: 'ok', user: req.user };
    },
    userdb: async () => ({ result: 'user_unknown' }),
  };
  const f = await start(t, { authenticator: () => slow });
  const abort = new AbortController();
  const aborted = request(`${f.base}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap' }),
    signal: abort.signal,
  }).catch(() => 'aborted');
  await inside;
  abort.abort();
  t.equal(await aborted, 'aborted');
  let closed = false;
  const closing = f.server.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 50));
  t.notOk(closed, 'the decision is still running');
  t.equal(f.server.inFlight(), 1);
  release();
  await closing;
  t.ok(finished, 'close resolved only after the handler finished');
});

t.test('a client that never finishes its headers gets 408 after listen.headers_timeout', async (t) => {
  const f = await start(t, { listen: { headers_timeout: '200ms', request_timeout: '1s' } });
  const u = new URL(f.base);
  const answer = await new Promise<string>((resolve) => {
    const s = netConnect(Number(u.port), u.hostname, () => s.write('POST /v1/passdb HTTP/1.1\r\nHost: x\r\n'));
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('close', () => resolve(out));
  });
  t.match(answer, /^HTTP\/1\.1 408 Request Timeout/);
  t.match(answer, /"error":"request_timeout"/);
});
