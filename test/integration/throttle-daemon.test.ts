/**
 * Issue 17 in the real daemon (startDaemon on a real MariaDB test database):
 * the throttle in front of /v1/passdb and mailcow's POST /, the auth-policy
 * endpoint over HTTP, the /metrics counters, and `mailauth block list|clear`
 * talking to the running daemon with the listener's token.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { startDaemon } from '../../src/cli/serve.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';

const PW = 'throttle-test-Password-1';
const TOKEN = 'throttle-token-0123456789abcdef';

const THROTTLE = {
  backoff_base: '30s',
  backoff_max: '1m',
  ip: { free: 10, block_after: 20, block_for: '5m', forget_one_every: '1m' },
  user: { free: 10, block_after: 40, block_for: '5m', forget_one_every: '1m' },
  ip_user: { free: 3, block_after: 8, block_for: '5m', forget_one_every: '1m' },
};

async function start(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'mat-thr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('BLF-CRYPT', PW, { bcryptCost: 4 }));
  for (let i = 0; i < 30; i++) await seedMailbox(tdb, `u${i}@example.org`, await hash('SSHA256', `pw-${i}`));
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0', token_file: tokenFile }, throttle: THROTTLE });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const address = daemon.addresses[0];
  if (address?.kind !== 'tcp') throw new Error('no tcp listener');
  const cliConfig = configFile(t, { database: { url: tdb.url }, listen: { address: `127.0.0.1:${address.port}`, token_file: tokenFile } });
  return { daemon, url: address.url, cliConfig };
}

const headers = { 'content-type': 'application/json', 'x-mailauth-token': TOKEN };

async function post(url: string, path: string, body: unknown, extra: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const login = (user: string, password: string, ip: string) => ({ user, password, service: 'imap', remote_ip: ip });

t.test('the daemon throttles /v1/passdb and POST / before deciding; other addresses log in at once', async (t) => {
  const { daemon, url } = await start(t);
  const attacker = '203.0.113.66';
  const results: string[] = [];
  for (let i = 0; i < 50; i++) results.push(String((await post(url, '/v1/passdb', login('alice@example.org', `guess-${i}`, attacker))).json.reason ?? ''));
  const decided = results.filter((r) => !r.startsWith('throttled')).length;
  t.equal(decided, 4, 'ip_user free (3) + the failure that starts the back-off were decided; 46 refused unverified');
  const verifyBefore = daemon.caches.verify.stats();
  const r = await post(url, '/v1/passdb', login('alice@example.org', PW, attacker));
  t.match(r.json, { result: 'password_mismatch', reason: /^throttled: .*this address for this mailbox; back-off/ }, 'the right password from the guessing address is refused too');
  t.same(daemon.caches.verify.stats(), verifyBefore, 'no verification (not even a verify-cache lookup) for a refused attempt');
  t.match((await post(url, '/v1/passdb', login('alice@example.org', PW, '198.51.100.7'))).json, { result: 'ok' }, 'alice from another address gets in at once');
  const mailcow = await post(url, '/', { username: 'alice@example.org', password: PW, real_rip: attacker, service: 'imap' });
  t.equal(mailcow.status, 401, "mailcow's endpoint is throttled as well");
  t.equal(daemon.throttle.stats().refused.ip_user, 48);
});

t.test('spraying: one address, many mailboxes', async (t) => {
  const { url } = await start(t);
  const sprayer = '203.0.113.77';
  let decided = 0;
  for (let i = 0; i < 30; i++) {
    const r = await post(url, '/v1/passdb', login(`u${i}@example.org`, 'Winter2026!', sprayer));
    if (!String(r.json.reason ?? '').startsWith('throttled')) decided += 1;
  }
  t.equal(decided, 11, 'ip free (10) + the failure that starts the back-off; the other 19 refused');
  t.match((await post(url, '/v1/passdb', login('u29@example.org', 'pw-29', sprayer))).json, { result: 'password_mismatch', reason: /this address; back-off/ });
  t.match((await post(url, '/v1/passdb', login('u29@example.org', 'pw-29', '198.51.100.8'))).json, { result: 'ok' }, 'from elsewhere u29 logs in');
});

t.test('Dovecot auth-policy endpoint over HTTP', async (t) => {
  const { url } = await start(t);
  const body = (pwhash: string, extra: Record<string, unknown> = {}) => ({ login: 'pol@example.org', pwhash, remote: '192.0.2.44', device_id: '', protocol: 'imap', session_id: `s-${pwhash}`, tls: false, ...extra });
  t.match(await post(url, '/v1/policy?command=allow', body('001')), { status: 200, json: { status: 0 } });
  for (const h of ['001', '002', '003', '004']) t.equal((await post(url, '/v1/policy?command=report', body(h, { success: false, policy_reject: false }))).status, 200);
  const tarpit = await post(url, '/v1/policy?command=allow', body('005'));
  t.equal(tarpit.json.status, 30, 'back-off: Dovecot tarpits for backoff_base seconds');
  for (const h of ['005', '006', '007', '008']) await post(url, '/v1/policy?command=report', body(h, { success: false, policy_reject: false }));
  t.match(await post(url, '/v1/policy?command=allow', body('009')), { json: { status: -1, msg: /Too many failed logins/ } }, 'block: refused');
  t.match(await post(url, '/v1/policy?command=allow', body('009'), { 'x-mailauth-token': 'wrong-token-0123456789' }), { status: 401 }, 'the caller check applies');
  t.match(await post(url, '/v1/policy?command=dance', body('009')), { status: 400, json: { message: /command must be allow or report/ } });
  t.match(await post(url, '/v1/policy', body('009')), { status: 400 }, 'no command');
});

t.test('/metrics and `mailauth block list|clear` against the running daemon', async (t) => {
  const { url, cliConfig } = await start(t);
  for (let i = 0; i < 12; i++) await post(url, '/v1/passdb', login('alice@example.org', `guess-${i}`, '203.0.113.99'));
  const metrics = await (await fetch(`${url}/metrics`, { headers: { 'x-mailauth-token': TOKEN } })).text();
  t.match(metrics, /^mailauth_throttle_refused_total\{scope="ip_user"\} 8$/m);
  t.match(metrics, /^mailauth_throttle_failures_total 4$/m);
  t.match(metrics, /^mailauth_throttle_entries\{table="ip_user"\} 1$/m);
  t.match(metrics, /^mailauth_requests_total\{endpoint="passdb",result="password_mismatch"\} 12$/m);

  const list = await cli(['--config', cliConfig, '--json', 'block', 'list']);
  t.equal(list.code, 0, list.stderr);
  const entries = list.json<{ entries: { scope: string; ip: string; user: string; blocked: boolean }[] }>().entries;
  t.match(entries, [{ scope: 'ip_user', ip: '203.0.113.99', user: 'alice@example.org', blocked: false }]);
  const human = await cli(['--config', cliConfig, 'block', 'list', '--all']);
  t.match(human.stdout, /^SCOPE\s+ADDRESS\s+MAILBOX\s+FAILURES\s+STATE\s+UNTIL/m);
  t.match(human.stdout, /ip_user\s+203\.0\.113\.99\s+alice@example\.org\s+4\s+back-off/);

  const all = await cli(['--config', cliConfig, 'block', 'clear']);
  t.equal(all.code, 2, 'clearing everything wants --yes');
  const cleared = await cli(['--config', cliConfig, '--json', 'block', 'clear', '--ip', '203.0.113.99']);
  t.equal(cleared.code, 0, cleared.stderr);
  t.equal(cleared.json<{ cleared: number }>().cleared, 2, 'the address counter and the (address, mailbox) counter');
  t.match((await post(url, '/v1/passdb', login('alice@example.org', PW, '203.0.113.99'))).json, { result: 'ok' }, 'lifted');

  const down = await cli(['--config', configFile(t, { listen: { address: '127.0.0.1:1' } }), 'block', 'list']);
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach the mailauth daemon at 127\.0\.0\.1:1/);
});
