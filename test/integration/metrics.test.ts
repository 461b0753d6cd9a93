/** GET /metrics: Prometheus text format, every metric family present, counters that move. */
import t from 'tap';
import type { Test } from 'tap';
import { startDaemon } from '../../src/cli/serve.js';
import { silentLogger } from '../../src/logging/index.js';
import { createMetrics, timeIdpCall } from '../../src/metrics/index.js';
import { MailauthError } from '../../src/errors.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';

const PW = 'metrics-test-password';
const TOKEN = 'metrics-token-0123456789abcdef';

async function start(t: Test, yaml: Record<string, unknown> = {}) {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA256', PW));
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' }, ...yaml });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  return { daemon, url: daemon.addresses[0]?.url ?? '' };
}

async function passdb(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return res.status;
}

async function scrape(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/metrics`, { headers });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** name{labels} → value, for every sample line. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

const alice = { user: 'alice@example.org', password: PW, service: 'imap', remote_ip: '198.51.100.1' };

t.test('format, families, and counters that move', async (t) => {
  const { url } = await start(t);
  const before = await scrape(url);
  t.equal(before.status, 200);
  t.match(before.type, /^text\/plain; version=0\.0\.4/);
  const s0 = samples(before.text);

  t.equal(await passdb(url, alice), 200);
  t.equal(await passdb(url, alice), 200);
  t.equal(await passdb(url, { ...alice, password: 'wrong' }), 200);
  t.equal(await passdb(url, { ...alice, user: 'nobody@example.org' }), 200);
  t.equal(await passdb(url, { user: 'x' }), 400);

  const after = await scrape(url);
  const s = samples(after.text);
  const get = (k: string) => s.get(k) ?? 0;
  const delta = (k: string) => get(k) - (s0.get(k) ?? 0);
  t.equal(delta('mailauth_requests_total{endpoint="passdb",result="ok"}'), 2);
  t.equal(delta('mailauth_requests_total{endpoint="passdb",result="password_mismatch"}'), 1);
  t.equal(delta('mailauth_requests_total{endpoint="passdb",result="user_unknown"}'), 1);
  t.equal(delta('mailauth_requests_total{endpoint="passdb",result="http_400"}'), 1);
  t.equal(get('mailauth_requests_total{endpoint="metrics",result="ok"}'), 1, 'the first scrape was counted');
  t.equal(delta('mailauth_request_duration_seconds_count{endpoint="passdb"}'), 5);
  t.ok(get('mailauth_request_duration_seconds_bucket{le="+Inf",endpoint="passdb"}') >= 5);

  t.ok(get('mailauth_cache_hits_total{cache="verify"}') >= 1, 'the repeated login hit the verify cache');
  t.ok(get('mailauth_cache_hits_total{cache="account"}') >= 1, 'and the account cache');
  t.ok(get('mailauth_cache_misses_total{cache="account"}') >= 1);
  t.ok(get('mailauth_cache_entries{cache="verify"}') >= 2);
  t.ok(get('mailauth_cache_bytes{cache="account"}') > 0);
  t.ok(s.has('mailauth_cache_evictions_total{cache="verify"}'));
  t.equal(get('mailauth_cache_max_entries{cache="verify"}'), 100_000);

  t.ok(get('mailauth_db_queries_total{query="select mailbox"}') >= 2, 'database queries counted by label');
  t.ok(get('mailauth_db_query_duration_seconds_count{query="select mailbox"}') >= 2);
  t.ok(s.has('mailauth_db_pool_connections{state="total"}'));
  t.ok(s.has('mailauth_login_log_queue_depth'));
  t.ok(s.has('mailauth_hash_verifications{state="queued"}'), 'the slow-hash queue');
  t.ok(s.has('mailauth_login_log_dropped_total'));
  t.ok(s.has('mailauth_event_loop_delay_seconds_count'), 'event-loop delay histogram');
  t.ok(s.has('process_cpu_user_seconds_total'), 'process metrics');
  t.ok(s.has('nodejs_heap_size_used_bytes'));
  for (const family of ['mailauth_idp_calls_total', 'mailauth_idp_call_duration_seconds', 'mailauth_idp_errors_total', 'mailauth_db_errors_total']) {
    t.match(after.text, new RegExp(`# TYPE ${family} (counter|histogram)`), `${family} is declared`);
  }
});

t.test('token: required when configured (header or Bearer), optional by config', async (t) => {
  const tdb = await createTestDatabase(t);
  const { buildConfig } = await import('../../src/config/index.js');
  const mk = (requireToken: boolean) =>
    buildConfig(
      { log: { level: 'silent', format: 'json' }, database: { url: tdb.url }, listen: { address: '127.0.0.1:0' }, metrics: { require_token: requireToken } },
      { env: { MAILAUTH_TOKEN: TOKEN } },
    );
  const strict = await startDaemon(mk(true), { db: tdb.db, logger: silentLogger() });
  t.teardown(() => strict.stop());
  const url = strict.addresses[0]?.url ?? '';
  t.equal((await scrape(url)).status, 401, 'no token: refused');
  t.equal((await scrape(url, { 'x-mailauth-token': 'wrong-token-wrong-token' })).status, 401);
  t.equal((await scrape(url, { 'x-mailauth-token': TOKEN })).status, 200);
  t.equal((await scrape(url, { authorization: `Bearer ${TOKEN}` })).status, 200, 'Prometheus-style bearer');
  const open = await startDaemon(mk(false), { db: tdb.db, logger: silentLogger() });
  t.teardown(() => open.stop());
  t.equal((await scrape(open.addresses[0]?.url ?? '')).status, 200, 'metrics.require_token: false');
  t.equal(await passdb(open.addresses[0]?.url ?? '', alice), 401, 'the passdb still wants the token');
});

t.test('metrics.enabled: false removes the route', async (t) => {
  const { url } = await start(t, { metrics: { enabled: false } });
  t.equal((await scrape(url)).status, 404);
});

t.test('registries are independent; IdP calls are recorded', async (t) => {
  const a = createMetrics({ processMetrics: false });
  const b = createMetrics({ processMetrics: false });
  t.teardown(() => (a.close(), b.close()));
  t.equal(await timeIdpCall(a, 'keycloak', 'user_lookup', async () => 42), 42);
  await t.rejects(timeIdpCall(a, 'keycloak', 'user_lookup', async () => {
    throw new MailauthError('ERR_IDP_UNAVAILABLE', 'down');
  }));
  const sa = samples(await a.render());
  t.equal(sa.get('mailauth_idp_calls_total{idp="keycloak",operation="user_lookup",outcome="ok"}'), 1);
  t.equal(sa.get('mailauth_idp_calls_total{idp="keycloak",operation="user_lookup",outcome="error"}'), 1);
  t.equal(sa.get('mailauth_idp_errors_total{idp="keycloak",operation="user_lookup",code="ERR_IDP_UNAVAILABLE"}'), 1);
  t.equal(sa.get('mailauth_idp_call_duration_seconds_count{idp="keycloak",operation="user_lookup"}'), 2);
  t.notOk(samples(await b.render()).has('mailauth_idp_calls_total{idp="keycloak",operation="user_lookup",outcome="ok"}'), 'b saw nothing');
});
