/**
 * lua/mailauth.lua itself, through a real private Dovecot (2.3 and 2.4), against a stub that
 * answers whatever each case needs: every result mapped 1:1, every failure mode
 * an INTERNAL_FAILURE (temp_fail, IMAP [UNAVAILABLE]), never a mismatch, on every
 * transport; the request it sends; keep-alive and idle reconnects; settings-file
 * errors; userdb; credential lookups that must not poison the auth cache.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { DOVECOT_VERSIONS, freePort, LUA_SCRIPT, requireDovecot, scratchDir, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion, LuaSettings } from '../helpers/dovecot.js';
import { startPassdbStub } from '../helpers/passdb-stub.js';
import type { StubAnswer, StubRequest } from '../helpers/passdb-stub.js';

const TOKEN = 'stub-token-9f2c41d07e';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The stub's answer is chosen by the login's local part. */
function answerFor(req: StubRequest): StubAnswer {
  if (req.headers['x-mailauth-token'] !== TOKEN) return { status: 401, body: { error: 'unauthorized' } };
  const body = req.body as { user?: string };
  const local = (body.user ?? '').split('@')[0] ?? '';
  if (req.path === '/v1/userdb') {
    if (local === 'ok') return { body: { result: 'ok', user: body.user, fields: { quota_rule: '*:storage=2G', mail_plugins: 'quota' } } };
    return { body: { result: local } };
  }
  switch (local) {
    case 'http500':
      return { status: 500, body: { error: 'internal' } };
    case 'garbage':
      return { body: 'this is not json' };
    case 'noresult':
      return { body: { success: true } };
    case 'hangup':
      return { hangUp: true };
    case 'slow':
      return { delayMs: 8000, body: { result: 'ok' } };
    case 'fields':
      return { body: { result: 'ok', user: 'Canonical@x.test', fields: { x_note: 'from the stub', count: 5 } } };
    default:
      return { body: { result: local, reason: `stub says ${local}` } };
  }
}

async function main(t: Test, version: DovecotVersion): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  // The stub's socket must be where this version's Dovecot can see it (inside the 2.4 root).
  const seen = scratchDir(t, version);
  const stub = await startPassdbStub(t, { handler: answerFor, socketPath: join(seen.host, 'stub.sock') });
  const socketUrl = `unix:${seen.inside}/stub.sock`;
  const v = { version };

  const transports: [string, LuaSettings][] = [
    ['builtin over TCP', { url: stub.url, httpClient: 'builtin' }],
    ['builtin over a Unix socket', { url: socketUrl }],
    ['luasocket socket.http over TCP', { url: stub.url, httpClient: 'luasocket' }],
    ['luasocket socket.http over a Unix socket', { url: socketUrl, httpClient: 'luasocket' }],
    ['dovecot.http over TCP', { url: stub.url, httpClient: 'dovecot' }],
  ];

  const expectations: [string, 'fail' | 'user_disabled' | 'temp_fail'][] = [
    ['password_mismatch', 'fail'],
    ['user_unknown', 'fail'],
    ['user_disabled', 'user_disabled'],
    ['internal_failure', 'temp_fail'],
    ['http500', 'temp_fail'],
    ['garbage', 'temp_fail'],
    ['noresult', 'temp_fail'],
    ['hangup', 'temp_fail'],
    ['bogus_result', 'temp_fail'],
    ['slow', 'temp_fail'],
  ];
  // The transports run side by side (one Dovecot each) to keep the file fast.
  await t.test('every result and every failure, on every transport', async (t) => {
    await Promise.all(
      transports.map(async ([name, lua]) => {
        const dv = await startDovecot(t, { ...v, lua: { ...lua, tokenFile, timeout: 3 }, userdb: 'static' });
        const first = await dv.doveadmAuthTest('ok@x.test', 'pw');
        t.ok(first.ok, `${name}: ok → auth succeeded`, { output: first.output });
        for (const [local, want] of expectations) {
          const r = await dv.doveadmAuthTest(`${local}@x.test`, 'pw');
          t.notOk(r.ok, `${name}: ${local} → auth failed`);
          t.equal(r.fields.code ?? '', want === 'fail' ? '' : want, `${name}: ${local} → code=${want === 'fail' ? '(none)' : want}`, { output: r.output });
        }
        // after a timeout and a hang-up the next lookup still gets through
        const again = await dv.doveadmAuthTest('ok@x.test', 'pw');
        t.ok(again.ok, `${name}: ok again after the failures`, { output: again.output, log: dv.log().split('\n').slice(-8) });
        t.notMatch(dv.log(), TOKEN, `${name}: the token never reaches the log`);
        // One wording per failure on every transport (docs/dovecot.md, Troubleshooting).
        const client = lua.httpClient ?? 'builtin';
        t.match(await dv.waitForLog(`passdb-lua: mailauth: unreachable: timeout [${client}: `), `passdb-lua: mailauth: unreachable: timeout [${client}: `, `${name}: the slow answer is logged as unreachable: timeout`);
        t.match(await dv.waitForLog(`passdb-lua: mailauth: unreachable: connection closed [${client}: `), `passdb-lua: mailauth: unreachable: connection closed [${client}: `, `${name}: the hang-up as unreachable: connection closed`);
      }),
    );
    const sent = stub.requests.filter((r) => r.path === '/v1/passdb' && (r.body as { user?: string }).user === 'ok@x.test').at(-1);
    t.match(sent?.body, { user: 'ok@x.test', password: 'pw', service: 'imap', mech: 'PLAIN', secured: false }, 'the request carries the login');
    t.match((sent?.body as { remote_ip?: string }).remote_ip, /^198\.1[89]\./, 'and the client IP doveadm gave');
    t.equal(sent?.headers['content-type'], 'application/json');
  });

  await t.test('nobody listening: one wording on every transport', async (t) => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    await Promise.all(
      transports.map(async ([name, lua]) => {
        const url = lua.url.startsWith('unix:') ? `unix:${seen.inside}/nobody.sock` : dead;
        const dv = await startDovecot(t, { ...v, lua: { ...lua, url, tokenFile }, userdb: 'static' });
        const r = await dv.doveadmAuthTest('ok@x.test', 'pw');
        t.equal(r.fields.code, 'temp_fail', `${name}: temp_fail`);
        const what = url === dead ? 'connection refused' : 'no such socket';
        t.match(await dv.waitForLog(`passdb-lua: mailauth: unreachable: ${what} [${lua.httpClient ?? 'builtin'}: `), `passdb-lua: mailauth: unreachable: ${what} [${lua.httpClient ?? 'builtin'}: `, `${name}: unreachable: ${what}`);
      }),
    );
  });

  await t.test('one instance with the lua userdb', async (t) => {
    const dv = await startDovecot(t, { ...v, lua: { url: stub.url, tokenFile } });

    await t.test('IMAP LOGIN maps results onto what clients see', async (t) => {
      t.match(await dv.imapLogin('ok@x.test', 'pw'), /^l OK .*Logged in/);
      t.match(await dv.imapLogin('password_mismatch@x.test', 'pw'), /^l NO \[AUTHENTICATIONFAILED\]/);
      t.match(await dv.imapLogin('user_disabled@x.test', 'pw'), /^l NO \[AUTHENTICATIONFAILED\]/);
      t.match(await dv.imapLogin('internal_failure@x.test', 'pw'), /^l NO \[UNAVAILABLE\]/);
      t.match(await dv.imapLogin('http500@x.test', 'pw'), /^l NO \[UNAVAILABLE\]/);
      const sent = stub.requests.filter((r) => (r.body as { user?: string }).user === 'ok@x.test' && r.path === '/v1/passdb').at(-1);
      t.match(sent?.body, { service: 'imap', local_ip: '127.0.0.1', mech: 'PLAIN' }, 'IMAP logins carry local_ip');
      t.type((sent?.body as { session?: unknown }).session, 'string', 'and the session id');
      t.match(await dv.waitForLog(/passdb-lua: mailauth: stub says internal_failure/), /passdb-lua: mailauth: stub says internal_failure/, 'the daemon reason of an internal failure is logged');
    });

    await t.test('OK answers: fields and the canonical user name reach Dovecot', async (t) => {
      const r = await dv.doveadmAuthTest('fields@x.test', 'pw');
      t.ok(r.ok);
      t.equal(r.fields.user, 'Canonical@x.test');
      t.equal(r.fields.x_note, 'from the stub');
      t.equal(r.fields.count, '5', 'JSON numbers arrive as integers, not 5.0');
    });

    await t.test('userdb lookups', async (t) => {
      const ok = await dv.doveadmUser('ok@x.test');
      t.equal(ok.exitCode, 0, 'doveadm user succeeds', { output: ok.output });
      t.equal(ok.fields.quota_rule, '*:storage=2G');
      t.equal(ok.fields.uid, '65534', 'the override_fields of the userdb block still apply');
      const unknown = await dv.doveadmUser('user_unknown@x.test');
      t.not(unknown.exitCode, 0);
      t.match(unknown.output, /doesn't exist|unknown/i);
      const failed = await dv.doveadmUser('internal_failure@x.test');
      t.not(failed.exitCode, 0);
      t.match(await dv.waitForLog(/userdb-lua: mailauth: internal_failure/), /userdb-lua: mailauth: internal_failure/);
      const down = stub.requests.filter((r) => r.path === '/v1/userdb').at(-1);
      t.match(down?.body, { user: 'internal_failure@x.test' });
    });
  });

  await t.test('a wrong or missing token is an internal failure, not a mismatch', async (t) => {
    const wrong = join(dir, 'wrong-token');
    writeFileSync(wrong, 'not-the-token\n', { mode: 0o600 });
    const dv = await startDovecot(t, { ...v, lua: { url: stub.url, tokenFile: wrong } });
    const r = await dv.doveadmAuthTest('ok@x.test', 'pw');
    t.notOk(r.ok);
    t.equal(r.fields.code, 'temp_fail');
    t.match(await dv.waitForLog(/passdb-lua: mailauth: answered HTTP 401/), /passdb-lua: mailauth: answered HTTP 401/);
  });

  await t.test('builtin and dovecot: one kept-alive connection, and a reconnect after the server closed it', async (t) => {
    await Promise.all(
      (['builtin', 'dovecot'] as const).map(async (httpClient) => {
        const ka = await startPassdbStub(t, { handler: answerFor, keepAliveTimeoutMs: 5000 });
        const dv = await startDovecot(t, { ...v, lua: { url: ka.url, tokenFile, httpClient }, workers: 1, userdb: 'static' });
        for (let i = 0; i < 5; i++) t.ok((await dv.doveadmAuthTest('ok@x.test', 'pw')).ok, `${httpClient}: login ${i + 1}`);
        t.equal(ka.connections(), 1, `${httpClient}: five lookups, one connection`);
        // Node closes an idle connection keepAliveTimeout + 1 s after the last answer; the
        // generous 5 s keeps a busy machine's gap between two lookups from doing it early
        // (2.5 s was not enough with the load average at 27 on two CPUs).
        await sleep(7500);
        t.ok((await dv.doveadmAuthTest('ok@x.test', 'pw')).ok, `${httpClient}: the next lookup reconnects by itself`);
        t.equal(ka.connections(), 2, `${httpClient}: on a second connection`);
        t.notMatch(dv.log(), /passdb-lua/, `${httpClient}: and nothing was logged as an error`);
      }),
    );
  });

  const badSettings: [string, string, RegExp][] = [
    ['a bad url', 'url = https://127.0.0.1:9082\n', /url must be http:\/\/HOST:PORT or unix:\/path/],
    ['a bad timeout', `url = ${stub.url}\ntimeout = soon\n`, /timeout must be a number of seconds/],
    ['an unknown http_client', `url = ${stub.url}\nhttp_client = curl\n`, /http_client must be builtin, luasocket or dovecot/],
    ['dovecot.http on a socket', `url = ${socketUrl}\nhttp_client = dovecot\n`, /cannot use a unix: url/],
    ['a missing token file', `url = ${stub.url}\ntoken_file = ${seen.inside}/nope\n`, /token_file: cannot read/],
    ['a line without =', `url = ${stub.url}\njust words\n`, /line 2: expected key = value/],
  ];
  await t.test('settings file: each mistake is an internal failure naming it; the fix needs no reload', async (t) => {
    const dv = await startDovecot(t, { ...v, lua: { url: stub.url }, userdb: 'static' });
    const token = dv.importFile(tokenFile);
    writeFileSync(dv.luaConfigPath, `url = ${stub.url}\ntoken_file = ${token}\nhttp_clinet = builtin\n`);
    for (const [what, text, message] of [['a misspelt key', '', /line 3: unknown key "http_clinet"/] as const, ...badSettings]) {
      if (text) writeFileSync(dv.luaConfigPath, text);
      const r = await dv.doveadmAuthTest('ok@x.test', 'pw');
      t.equal(r.fields.code, 'temp_fail', `${what}: temp_fail`);
      t.match(await dv.waitForLog(message), message, `${what}: logged`);
    }
    writeFileSync(dv.luaConfigPath, `url = ${stub.url}\ntoken_file = ${token}\n`);
    t.ok((await dv.doveadmAuthTest('ok@x.test', 'pw')).ok, 'the corrected file is read on the next lookup, without a reload');
  });

  await t.test('2.4-style settings: lua_settings config_file (script_init with a table) wins over the environment', async (t) => {
    // Dovecot 2.3 calls script_init() without arguments; 2.4 passes its lua_settings
    // (which every 2.4 instance here uses for real). On 2.3, simulate the 2.4 call.
    if (version !== '2.3') return;
    const good = join(dir, 'lua-settings-24.conf');
    writeFileSync(good, `url = ${stub.url}\ntoken_file = ${tokenFile}\n`);
    const script = join(dir, 'mailauth-24.lua');
    writeFileSync(
      script,
      `${readFileSync(LUA_SCRIPT, 'utf8')}\nlocal script_init_24 = script_init\nfunction script_init() return script_init_24({ config_file = ${JSON.stringify(good)} }) end\n`,
    );
    // The environment names a file that points nowhere: only config_file can make this work.
    const dv = await startDovecot(t, { ...v, script, lua: { url: 'http://127.0.0.1:1' }, userdb: 'static' });
    t.ok((await dv.doveadmAuthTest('ok@x.test', 'pw')).ok, 'the login goes through with the config_file settings');
  });

  await t.test('credential lookups are declined with NEXT and never poison the auth cache', async (t) => {
    // cache_key=%u (2.4: %{user}, written %%{user}): `doveadm auth lookup` (service doveadm) and the IMAP login share one
    // cache entry, as a CRAM-MD5 attempt and a PLAIN login of one service would with %u%s.
    // A USER_UNKNOWN answer here would be negative-cached and refuse the login below.
    // 2.4 expands %{…} in settings itself, so lua_settings needs %% to hand the script a template.
    const cacheKey = version === '2.3' ? '%u' : '%%{user}';
    const dv = await startDovecot(t, { ...v, lua: { url: stub.url, tokenFile }, cacheSize: '1M', cacheKey, userdb: 'static' });
    const lookup = await dv.doveadmAuthLookup('ok@x.test');
    t.not(lookup.exitCode, 0, 'doveadm auth lookup cannot get a password from a verify API');
    t.match(await dv.waitForLog(/credential lookups are not supported/), /credential lookups are not supported/);
    const r = await dv.doveadmAuthTest('ok@x.test', 'pw');
    t.ok(r.ok, 'a plaintext login right after it still succeeds (no negative cache entry)');
  });
}

// One version after the other: each already runs five Dovecots side by side, and the
// 3 s script timeout must not fire on a busy machine. About 1.5 + 2 minutes.
t.setTimeout(8 * 60_000);
for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version}`, async (t) => {
    if (requireDovecot(t, version)) await main(t, version);
  });
}
