/**
 * Issue 17: the Dovecot notifier's contract without a Dovecot — which doveadm
 * commands each change sends, the HTTP API's request shape, that a failure never
 * throws and is kept for a retry, retries, expiry, and notify off. The real
 * Dovecot paths are in test/e2e/dovecot-brute-force.test.ts.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { buildConfig, describeConfig } from '../../src/config/index.js';
import { createDovecotNotifier, httpApiKind, runDoveadm } from '../../src/dovecot/index.js';
import type { DoveadmAction, ExecFn, PendingNotification, PendingStore } from '../../src/dovecot/index.js';
import { silentLogger } from '../../src/logging/index.js';

function memoryStore(): PendingStore & { rows: PendingNotification[] } {
  const rows: PendingNotification[] = [];
  const find = (e: { host: string; user: string; action: DoveadmAction }) => rows.findIndex((r) => r.host === e.host && r.user === e.user && r.action === e.action);
  return {
    rows,
    async failed(e, now) {
      const i = find(e);
      if (i >= 0) {
        const r = rows[i] as PendingNotification;
        r.attempts += 1;
        r.lastError = e.error;
      } else rows.push({ host: e.host, user: e.user, action: e.action, attempts: 1, firstFailed: now, lastError: e.error });
    },
    async succeeded(e) {
      const i = find(e);
      if (i >= 0) rows.splice(i, 1);
    },
    async list() {
      return [...rows];
    },
    async expire(cutoff) {
      const gone = rows.filter((r) => r.firstFailed < cutoff);
      for (const g of gone) rows.splice(rows.indexOf(g), 1);
      return gone;
    },
  };
}

function config(hosts: unknown[], extra: Record<string, unknown> = {}) {
  return buildConfig({ dovecot: { notify: true, hosts, ...extra } }, { env: {}, readFile: () => 'the-api-key' }).dovecot;
}

t.test('local command: flush for a password change; flush and kick for disable/delete/deactivate', async (t) => {
  const calls: string[] = [];
  const exec: ExecFn = async (file, args) => {
    calls.push([file, ...args].join(' '));
    return { code: 0, stdout: '', stderr: '' };
  };
  const n = createDovecotNotifier({ config: config([{ doveadm: 'chroot /srv/root doveadm', config: '/etc/dovecot/dovecot.conf' }]), logger: silentLogger(), exec });
  t.match(await n.userChanged('alice@example.org', 'password'), { ok: true, skipped: false, outcomes: [{ action: 'flush', ok: true }] });
  t.same(calls, ['chroot /srv/root doveadm -c /etc/dovecot/dovecot.conf auth cache flush -- alice@example.org']);
  calls.length = 0;
  for (const change of ['disable', 'delete', 'deactivate'] as const) await n.userChanged('bob@example.org', change);
  t.same(calls.filter((c) => c.includes(' kick ')).length, 3, 'each of them kicks');
  t.same(calls.filter((c) => c.includes('auth cache flush')).length, 3, 'and flushes');
});

t.test('a kick with nothing to kick (doveadm 68 / 67) is not a failure; other exits are', async (t) => {
  let code = 68;
  const exec: ExecFn = async (_f, args) => (args.includes('kick') ? { code, stdout: '', stderr: 'no users' } : { code: 0, stdout: '', stderr: '' });
  const host = config([{ doveadm: 'doveadm' }]).hosts[0]!;
  t.match(await runDoveadm(host, 'kick', 'x', { timeoutMs: 1000, exec }), { ok: true, detail: 'no open sessions' });
  code = 67;
  t.match(await runDoveadm(host, 'kick', 'x', { timeoutMs: 1000, exec }), { ok: true });
  code = 75;
  t.match(await runDoveadm(host, 'kick', 'x', { timeoutMs: 1000, exec }), { ok: false, detail: /doveadm kick exited 75: no users/ });
});

/** The command lists GET /doveadm/v1 answers (excerpts, as 2.3.19.1 and 2.4.1 answered them). */
const LISTING_23 = [
  { command: 'authCacheFlush', parameters: [{ name: 'socketPath', type: 'string' }, { name: 'user', type: 'array' }] },
  { command: 'fsGet', parameters: [{ name: 'fsDriver', type: 'string' }, { name: 'fsArgs', type: 'string' }, { name: 'path', type: 'string' }] },
];
const LISTING_24 = [
  { command: 'authCacheFlush', parameters: [{ name: 'socketPath', type: 'string' }, { name: 'user', type: 'array' }] },
  { command: 'fsGet', parameters: [{ name: 'filterName', type: 'string' }, { name: 'path', type: 'string' }] },
];

function apiDouble(listing: unknown[]) {
  const seen: { method: string; url: string; auth: string; body: unknown }[] = [];
  const state = { reply: (): Response => new Response(JSON.stringify([['doveadmResponse', [], 'flush']]), { status: 200 }) };
  const fetchFn = (async (url: string, init: RequestInit) => {
    const method = init.method ?? 'GET';
    seen.push({ method, url, auth: String((init.headers as Record<string, string>).authorization), body: init.body === undefined ? undefined : JSON.parse(String(init.body)) });
    return method === 'GET' ? new Response(JSON.stringify(listing), { status: 200 }) : state.reply();
  }) as unknown as typeof fetch;
  return { seen, state, fetchFn };
}

t.test("doveadm's HTTP API (2.3): request shape, answers, errors", async (t) => {
  const { seen, state, fetchFn: fakeFetch } = apiDouble(LISTING_23);
  const host = config([{ name: 'mail2', url: 'http://10.0.0.5:8080/doveadm/v1', api_key_file: '/k' }]).hosts[0]!;
  const kinds = new Map();
  t.match(await runDoveadm(host, 'flush', 'alice@example.org', { timeoutMs: 1000, fetch: fakeFetch, httpApiKinds: kinds }), { ok: true, host: 'mail2' });
  t.match(await runDoveadm(host, 'kick', 'alice@example.org', { timeoutMs: 1000, fetch: fakeFetch, httpApiKinds: kinds }), { ok: true });
  const auth = `X-Dovecot-API ${Buffer.from('the-api-key').toString('base64')}`;
  t.same(seen[0], { method: 'GET', url: 'http://10.0.0.5:8080/doveadm/v1', auth, body: undefined }, 'the first flush asks what the API is');
  t.same(seen[1], { method: 'POST', url: 'http://10.0.0.5:8080/doveadm/v1', auth, body: [['authCacheFlush', { user: ['alice@example.org'] }, 'flush']] });
  t.same(seen[2]?.body, [['kick', { mask: ['alice@example.org'] }, 'kick']]);
  await runDoveadm(host, 'flush', 'bob@example.org', { timeoutMs: 1000, fetch: fakeFetch, httpApiKinds: kinds });
  t.same(seen.filter((s) => s.method === 'GET').length, 1, 'the answer is remembered');
  state.reply = () => new Response('', { status: 401 });
  t.match(await runDoveadm(host, 'flush', 'a', { timeoutMs: 1000, fetch: fakeFetch, httpApiKinds: kinds }), { ok: false, detail: /refused the API key/ });
  state.reply = () => new Response(JSON.stringify([['error', { type: 'exitCode', exitCode: 68 }, 'kick']]), { status: 200 });
  t.match(await runDoveadm(host, 'kick', 'a', { timeoutMs: 1000, fetch: fakeFetch }), { ok: true, detail: 'no open sessions' });
  t.match(await runDoveadm(host, 'flush', 'a', { timeoutMs: 1000, fetch: fakeFetch }), { ok: false, detail: /doveadm HTTP API error/ });
  const down = (async () => {
    throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
  }) as unknown as typeof fetch;
  t.match(await runDoveadm(host, 'flush', 'a', { timeoutMs: 1000, fetch: down }), { ok: false, detail: /cannot reach .*ECONNREFUSED/ });
  t.notMatch(JSON.stringify(await runDoveadm(host, 'flush', 'a', { timeoutMs: 1000, fetch: fakeFetch })), /the-api-key|dGhlLWFwaS1rZXk/, 'the key is in no outcome');
});

t.test("doveadm's HTTP API with doveadm_password: Basic doveadm:PASSWORD", async (t) => {
  const { seen, fetchFn } = apiDouble(LISTING_23);
  const host = config([{ url: 'http://10.0.0.5:8080/doveadm/v1', password_file: '/p' }]).hosts[0]!;
  t.match(await runDoveadm(host, 'kick', 'a@example.org', { timeoutMs: 1000, fetch: fetchFn }), { ok: true, host: '10.0.0.5:8080' });
  t.equal(seen[0]?.auth, `Basic ${Buffer.from('doveadm:the-api-key').toString('base64')}`);
});

t.test("doveadm's HTTP API (2.4): no authCacheFlush is sent (it kills 2.4's doveadm-server); kick is", async (t) => {
  const { seen, fetchFn } = apiDouble(LISTING_24);
  const host = config([{ name: 'mail24', url: 'http://10.0.0.6:8080/doveadm/v1', api_key_file: '/k' }]).hosts[0]!;
  t.match(await runDoveadm(host, 'flush', 'a@example.org', { timeoutMs: 1000, fetch: fetchFn }), { ok: false, detail: /Dovecot 2\.4's doveadm HTTP API cannot flush .*tcp:\/\// });
  t.same(seen.map((s) => s.method), ['GET'], 'only the listing was asked');
  t.match(await runDoveadm(host, 'kick', 'a@example.org', { timeoutMs: 1000, fetch: fetchFn }), { ok: true });
  t.same(seen.at(-1)?.body, [['kick', { mask: ['a@example.org'] }, 'kick']]);
});

t.test('httpApiKind: 2.4 by its settings-filter parameters, 2.3 otherwise, null for something else', async (t) => {
  t.equal(httpApiKind(LISTING_23), 'flush-ok');
  t.equal(httpApiKind(LISTING_24), 'flush-crashes');
  t.equal(httpApiKind([{ command: 'who', parameters: [] }]), null);
  t.equal(httpApiKind({ error: 'x' }), null);
});

t.test('a failure never throws, is kept, retried after the next change, and expires after retry_for', async (t) => {
  let up = false;
  const exec: ExecFn = async () => (up ? { code: 0, stdout: '', stderr: '' } : { code: -1, stdout: '', stderr: 'ENOENT' });
  const store = memoryStore();
  let now = new Date('2026-12-04T10:00:00Z');
  const n = createDovecotNotifier({ config: config([{ doveadm: 'doveadm' }], { retry_for: '1h' }), logger: silentLogger(), exec, store, now: () => now });
  const r = await n.userChanged('carol@example.org', 'disable');
  t.match(r, { ok: false, outcomes: [{ action: 'flush', ok: false }, { action: 'kick', ok: false }] });
  t.same(store.rows.map((p) => [p.user, p.action, p.attempts]), [['carol@example.org', 'flush', 1], ['carol@example.org', 'kick', 1]]);
  await n.userChanged('dave@example.org', 'password');
  t.same(
    store.rows.map((p) => [p.user, p.action, p.attempts]).sort(),
    [['carol@example.org', 'flush', 2], ['carol@example.org', 'kick', 2], ['dave@example.org', 'flush', 1]],
    "retried after the change's own notification (not that one twice), attempts counted",
  );
  up = true;
  t.match(await n.retryPending(), { ok: true, outcomes: [{}, {}, {}] });
  t.same(store.rows, [], 'all delivered');
  up = false;
  await n.userChanged('erin@example.org', 'app_password');
  now = new Date(now.getTime() + 2 * 3_600_000);
  await n.retryPending();
  t.same(store.rows, [], 'given up after retry_for');
});

t.test('notify off: nothing is sent', async (t) => {
  const exec: ExecFn = async () => {
    throw new Error('must not run');
  };
  const c = buildConfig({ dovecot: { notify: false } }, { env: {} }).dovecot;
  t.same(await createDovecotNotifier({ config: c, logger: silentLogger(), exec }).userChanged('a@example.org', 'delete'), { ok: true, skipped: true, outcomes: [] });
});

t.test('config: one of doveadm or url; url needs a key or password; tcp:// needs a password', async (t) => {
  const problems = (hosts: unknown[]) => {
    try {
      buildConfig({ dovecot: { hosts } }, { env: {}, readFile: () => { throw Object.assign(new Error('x'), { code: 'ENOENT' }); } });
      return [];
    } catch (err) {
      return (err as { details?: { problems?: string[] } }).details?.problems ?? [];
    }
  };
  t.match(problems([{ doveadm: 'doveadm', url: 'http://x/doveadm/v1' }]), [/exactly one of doveadm .* or url/]);
  t.match(problems([{ url: 'http://x/doveadm/v1' }]), [/api_key_file: required with url .*or password_file/]);
  t.match(problems([{ url: 'tcp://x:2425' }]), [/password_file: required with a tcp:\/\/ url/]);
  t.match(problems([{ url: 'tcp://x' }]), [/url: tcp:\/\/HOST:PORT/]);
  t.match(problems([{ url: 'tcp://x:99999', password_file: '/p' }, { url: 'http://[', api_key_file: '/k' }]), [/cannot read \/p/, /hosts\[0\]\.url: not a valid URL/, /hosts\[1\]\.url: not a valid URL/], 'a URL that does not parse is a config problem, not a TypeError');
  t.match(problems([{ url: 'tcp://x:2425/doveadm', password_file: '/p' }]), [/cannot read \/p/, /url: tcp:\/\/HOST:PORT/]);
  t.match(problems([{ doveadm: 'doveadm', password_file: '/p' }]), [/password_file: only with url/]);
  const ok = buildConfig({ dovecot: { hosts: [{ url: 'tcp://[::1]:2425', password_file: '/p' }] } }, { env: {}, readFile: () => 'pw\n' });
  t.same(ok.dovecot.hosts, [{ kind: 'tcp', name: '[::1]:2425', host: '::1', port: 2425, password: 'pw' }]);
  t.notMatch(JSON.stringify(describeConfig(ok)), /"pw"/, 'config check masks the password');
  t.match(problems([{ doveadm: 'doveadm' }, { doveadm: 'doveadm' }]), [/"local" is used twice/]);
  t.same(problems([{ doveadm: 'doveadm' }]), []);
});

/**
 * A doveadm server double (client-connection-tcp.c's exchange): VERSION, "-", PLAIN, "+", then
 * one command line per connection, answered by `answer` (default "\n+\n").
 */
async function doveadmServerDouble(t: Test, answer: (sock: Socket, line: string) => void = (s) => s.write('\n+\n')) {
  const commands: string[] = [];
  const server = createServer((sock) => {
    let buf = '';
    let step = 0;
    sock.setEncoding('latin1');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (step === 0) sock.write('-\n');
        else if (step === 1) sock.write('+\n');
        else {
          commands.push(line);
          answer(sock, line);
        }
        step++;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const host = config([{ name: 'tcp', url: `tcp://127.0.0.1:${port}`, password_file: '/p' }]).hosts[0]!;
  return { commands, host };
}

t.test("doveadm's protocol: a user name is always the user, never an option or a second command", async (t) => {
  const { commands, host } = await doveadmServerDouble(t);
  t.match(await runDoveadm(host, 'flush', '-a@example.org', { timeoutMs: 2000 }), { ok: true });
  t.match(await runDoveadm(host, 'kick', '-f@example.org', { timeoutMs: 2000 }), { ok: true });
  t.match(await runDoveadm(host, 'flush', 'a\tb\nc\x01d@example.org', { timeoutMs: 2000 }), { ok: false, detail: /control character/ }, 'TAB, LF, \\001: not sent');
  t.same(commands, ['\t\tauth cache flush\t--\t-a@example.org', '\t\tkick\t--\t-f@example.org'], "'--' ends doveadm's options (getopt_long)");
});

t.test('user names doveadm would cut or widen are not sent, on every route', async (t) => {
  const { commands, host: tcp } = await doveadmServerDouble(t);
  const calls: string[][] = [];
  const exec: ExecFn = async (_f, args) => {
    calls.push(args);
    return { code: 0, stdout: '', stderr: '' };
  };
  const { seen, fetchFn } = apiDouble(LISTING_23);
  const command = config([{ doveadm: 'doveadm' }]).hosts[0]!;
  const http = config([{ name: 'http', url: 'http://10.0.0.5:8080/doveadm/v1', api_key_file: '/k' }]).hosts[0]!;
  for (const host of [tcp, command, http]) {
    const opts = { timeoutMs: 2000, exec, fetch: fetchFn };
    // A NUL ends the user name inside Dovecot (C strings): "bob@example.org\0x" would flush or kick bob.
    t.match(await runDoveadm(host, 'flush', 'bob@example.org\0x', opts), { ok: false, detail: /control character/ }, `${host.kind}: NUL`);
    t.match(await runDoveadm(host, 'kick', 'bob@example.org\x1b[2J', opts), { ok: false, detail: /control character/ }, `${host.kind}: ESC`);
    // doveadm kick matches its argument as a wildcard mask: '*@example.org' would end every session of the domain.
    t.match(await runDoveadm(host, 'kick', '*@example.org', opts), { ok: false, detail: /wildcard/ }, `${host.kind}: * in a kick`);
    t.match(await runDoveadm(host, 'kick', 'a?c@example.org', opts), { ok: false, detail: /wildcard/ }, `${host.kind}: ? in a kick`);
    t.match(await runDoveadm(host, 'flush', '*@example.org', opts), { ok: true }, `${host.kind}: a flush names the user exactly`);
  }
  t.same(commands, ['\t\tauth cache flush\t--\t*@example.org']);
  t.same(calls, [['auth', 'cache', 'flush', '--', '*@example.org']]);
  t.same(seen.filter((s) => s.method === 'POST').map((s) => s.body), [[['authCacheFlush', { user: ['*@example.org'] }, 'flush']]]);
});

t.test("doveadm's protocol: an answer that never ends is given up at a size bound, not held until the timeout", async (t) => {
  const { host } = await doveadmServerDouble(t, (sock) => {
    const junk = 'x'.repeat(64 * 1024);
    const pump = (): void => {
      while (!sock.destroyed && sock.write(junk));
      if (!sock.destroyed) sock.once('drain', pump);
    };
    pump();
  });
  const started = Date.now();
  const r = await runDoveadm(host, 'flush', 'a@example.org', { timeoutMs: 20_000 });
  t.match(r, { ok: false, detail: /answer .*larger than/ });
  t.ok(Date.now() - started < 10_000, `given up after ${Date.now() - started} ms`);
});

t.test("doveadm's protocol: a server that never answers times out; the password is in no outcome", async (t) => {
  const { host } = await doveadmServerDouble(t, () => undefined);
  const r = await runDoveadm(host, 'kick', 'a@example.org', { timeoutMs: 300 });
  t.match(r, { ok: false, detail: /no answer within 300 ms/ });
  t.notMatch(JSON.stringify(r), /the-api-key|dGhlLWFwaS1rZXk/);
});

t.test('a host that does not answer costs one timeout per change, not one per notification', async (t) => {
  // Accepts and never answers: every try waits the whole dovecot.timeout.
  let connections = 0;
  const held: Socket[] = [];
  const silent = createServer((s) => {
    connections++;
    held.push(s);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  const port = (silent.address() as AddressInfo).port;
  const store = memoryStore();
  let now = new Date('2026-12-04T10:00:00Z');
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 5; i++) await store.failed({ host, user: `old${i}@example.org`, action: 'flush', error: 'earlier' }, now);
  const n = createDovecotNotifier({ config: config([{ url: `tcp://${host}`, password_file: '/p' }], { timeout: '300ms' }), logger: silentLogger(), store, now: () => now });
  const r = await n.userChanged('gone@example.org', 'disable');
  t.match(r.outcomes, [{ action: 'flush', ok: false, unreachable: true }, { action: 'kick', ok: false, detail: /^not tried/ }]);
  t.equal(connections, 1, 'one try: the kick and the five pending ones were not sent to a host that just timed out');
  t.same(store.rows.filter((p) => p.user.startsWith('old')).map((p) => p.attempts), [1, 1, 1, 1, 1], 'the pending ones are kept, untouched');
  t.same(store.rows.filter((p) => p.user === 'gone@example.org').map((p) => p.action).sort(), ['flush', 'kick'], "this change's are pending too");
  await n.userChanged('gone2@example.org', 'password');
  t.equal(connections, 1, 'the next change within the memo does not try either');
  now = new Date(now.getTime() + 31_000);
  await n.userChanged('gone3@example.org', 'password');
  t.equal(connections, 2, 'after it, the host is tried again');
});

t.test('a kick refused for its user name stays listed but is not retried (it would be refused again)', async (t) => {
  const calls: string[] = [];
  const exec: ExecFn = async (file, args) => {
    calls.push([file, ...args].join(' '));
    return { code: 0, stdout: '', stderr: '' };
  };
  const store = memoryStore();
  let now = new Date('2026-12-04T10:00:00Z');
  const n = createDovecotNotifier({ config: config([{ doveadm: 'doveadm' }], { retry_for: '1h' }), logger: silentLogger(), exec, store, now: () => now });
  const r = await n.userChanged('*@example.org', 'disable');
  t.match(r.outcomes, [{ action: 'flush', ok: true }, { action: 'kick', ok: false, detail: /wildcard/ }]);
  t.same(store.rows.map((p) => [p.user, p.action, p.attempts]), [['*@example.org', 'kick', 1]], 'kept, so doctor shows it');
  t.same((await n.retryPending()).outcomes, [], 'the retry skips it');
  t.same(store.rows.map((p) => p.attempts), [1], 'no new attempt, no new warning');
  now = new Date(now.getTime() + 2 * 3_600_000);
  await n.retryPending();
  t.same(store.rows, [], 'dropped after retry_for');
  t.equal(calls.filter((c) => c.includes(' kick ')).length, 0, 'never sent');
});
