/**
 * The Dovecot checks of `mailauth doctor` over real `doveconf -n -P` output of
 * Dovecot 2.3.19.1 and 2.4.1 (test/fixtures/doveconf): a good configuration
 * passes everything, each broken setting fails with its fix, per version.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { dovecotChecks } from '../../src/cli/doctor-dovecot.js';
import type { Check } from '../../src/cli/doctor-checks.js';
import { dovecotAuthSettings, parseDoveconf } from '../../src/dovecot/index.js';

const fixture = (name: string): string => readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/doveconf', name), 'utf8');

function run(text: string, opts: { script?: string; hashConcurrency?: number | null } = {}): { checks: Check[]; script?: string; by: (id: string) => Check | undefined } {
  const parsed = parseDoveconf(text);
  const r = dovecotChecks(dovecotAuthSettings(parsed), parsed.problems, { hashConcurrency: opts.hashConcurrency === undefined ? 4 : opts.hashConcurrency, source: 'test', ...(opts.script ? { script: opts.script } : {}) });
  return { ...r, by: (id) => r.checks.find((c) => c.id === id) };
}

const statuses = (checks: Check[]): Record<string, string> => Object.fromEntries(checks.map((c) => [c.id, c.status]));

for (const v of ['2.3', '2.4']) {
  t.test(`${v}: the documented configuration passes every check`, async (t) => {
    const r = run(fixture(`${v}-good.txt`));
    t.same(statuses(r.checks), { dovecot: 'pass', 'dovecot.passdb': 'pass', 'dovecot.worker': 'pass', 'dovecot.cache_key': 'pass', 'dovecot.auth_cache': 'pass', 'dovecot.idle_kill': 'pass', 'dovecot.workers': 'pass' });
    t.equal(r.script, '/usr/share/mailauth/mailauth.lua', 'the script Dovecot loads');
    t.match(r.by('dovecot')?.title, new RegExp(`Dovecot ${v.replace('.', '\\.')}\\.1`));
  });
}

t.test('2.3: every broken setting fails with the 2.3 fix', async (t) => {
  const r = run(fixture('2.3-broken.txt'));
  t.match(r.by('dovecot.worker'), { status: 'fail', title: /blocking=no/, fix: /blocking=yes/ });
  t.match(r.by('dovecot.cache_key'), { status: 'fail', title: /no cache_key/, fix: 'args = file=/usr/share/mailauth/mailauth.lua blocking=yes cache_key=%u%s' });
  t.match(r.by('dovecot.auth_cache'), { status: 'fail', title: /off \(auth_cache_size = 0, the default\)/, fix: /auth_cache_size = 10M/ });
  t.match(r.by('dovecot.idle_kill'), { status: 'fail', title: /after 1 min idle \(service auth \{ idle_kill \} not set\)/, detail: /\[UNAVAILABLE\]/, fix: 'service auth { idle_kill = 4294967295 secs }' });
  t.match(r.by('dovecot.workers'), { status: 'fail', title: /2 auth workers \(auth_worker_max_count = 2\), fewer than the 4/, fix: 'auth_worker_max_count = 30' });
  t.equal(r.by('dovecot.passdb')?.status, 'pass', 'the passdb itself is there');
});

t.test('2.4: every broken setting fails with the 2.4 fix', async (t) => {
  const r = run(fixture('2.4-broken.txt'), { hashConcurrency: 40 });
  t.match(r.by('dovecot.passdb'), { status: 'pass', title: /passdb mailauth \{ \} loads/ });
  t.match(r.by('dovecot.worker'), { status: 'fail', title: /use_worker = no/, fix: /remove "use_worker = no" from passdb mailauth/ });
  t.match(r.by('dovecot.cache_key'), { status: 'fail', title: /%\{user\} does not include the protocol/, fix: /remove cache_key from lua_settings/ });
  t.match(r.by('dovecot.auth_cache'), { status: 'fail', fix: /auth_cache_size = 10M/ });
  t.match(r.by('dovecot.idle_kill'), { status: 'fail', title: /after 5 mins idle \(service auth \{ idle_kill_interval = 5 mins \}\)/, fix: 'service auth { idle_kill_interval = infinite }' });
  t.match(r.by('dovecot.workers'), { status: 'fail', title: /2 auth workers \(service auth-worker \{ process_limit = 2 \}\), fewer than the 40/, fix: 'service auth-worker { process_limit = 40 }' });

  const missing = run(fixture('2.4-good.txt').replace(/service auth \{\n  idle_kill_interval = infinite\n\}\n/, ''));
  t.match(missing.by('dovecot.idle_kill'), { status: 'fail', title: /1 min idle \(service auth \{ idle_kill_interval \} not set\)/ }, 'idle_kill_interval missing: the 1 minute default');
  const noCache = run(fixture('2.4-good.txt').replace('  lua_file = /usr/share/mailauth/mailauth.lua\n', '  lua_file = /usr/share/mailauth/mailauth.lua\n  use_cache = no\n'));
  t.match(noCache.by('dovecot.auth_cache'), { status: 'fail', title: /use_cache = no/ });
});

t.test('no Lua passdb loading mailauth.lua, in either syntax', async (t) => {
  const pam = run('# 2.3.19.1 (x): f\nauth_cache_size = 1M\npassdb {\n  driver = pam\n}\npassdb {\n  args = file=/etc/dovecot/other.lua\n  driver = lua\n}\n');
  t.match(pam.by('dovecot.passdb'), { status: 'fail', title: /no Lua passdb loads mailauth\.lua/, detail: /passdbs: pam, lua; Lua passdb scripts: \/etc\/dovecot\/other\.lua/, fix: /2\.3 passdb block/ });
  t.notOk(pam.by('dovecot.cache_key'), 'no passdb, no cache-key verdict');
  t.equal(pam.script, undefined);
  const none24 = run('# 2.4.1-4 (x): f\npassdb pam {\n}\n');
  t.match(none24.by('dovecot.passdb'), { status: 'fail', detail: /passdbs: pam/, fix: /2\.4 passdb block/ });
  const named = run(fixture('2.3-good.txt'), { script: '/opt/x/mailauth-custom.lua' });
  t.equal(named.by('dovecot.passdb')?.status, 'fail', '--lua-script names another script than Dovecot loads');
  const filtered = run('# 2.3.19.1 (x): f\nprotocol imap {\n  passdb {\n    args = file=/usr/share/mailauth/mailauth.lua cache_key=%u%s\n    driver = lua\n  }\n}\n');
  t.match(filtered.by('dovecot.passdb'), { status: 'warn', title: /only inside protocol imap/ });
});

t.test('cache key: hidden without -P is a warning; %{service} counts on 2.3', async (t) => {
  t.match(run(fixture('2.4-hidden.txt')).by('dovecot.cache_key'), { status: 'warn', title: /hidden/, fix: /doveconf -n -P/ });
  const ok = run(fixture('2.3-good.txt').replace('cache_key=%u%s', 'cache_key=%{user}%{service}'));
  t.equal(ok.by('dovecot.cache_key')?.status, 'pass');
  const noService = run(fixture('2.3-good.txt').replace('cache_key=%u%s', 'cache_key=%u%r'));
  t.match(noService.by('dovecot.cache_key'), { status: 'fail', title: /%u%r does not include the service/ });
});

t.test('idle kill: a day or more is a warning, 2.3 default_idle_kill counts', async (t) => {
  const week = run(fixture('2.3-good.txt').replace('idle_kill = 4294967295 secs', 'idle_kill = 1 weeks'));
  t.match(week.by('dovecot.idle_kill'), { status: 'warn', title: /after 7 days idle/ });
  const viaDefault = run(fixture('2.3-good.txt').replace('idle_kill = 4294967295 secs', 'idle_kill = 0').replace('auth_mechanisms', 'default_idle_kill = 4294967295 secs\nauth_mechanisms'));
  t.match(viaDefault.by('dovecot.idle_kill'), { status: 'pass', title: /default_idle_kill = 4294967295 secs/ });
});

t.test('workers: skipped without a mailauth config; the default 30 is enough for 4', async (t) => {
  t.equal(run(fixture('2.3-good.txt'), { hashConcurrency: null }).by('dovecot.workers')?.status, 'skip');
  t.match(run(fixture('2.3-good.txt')).by('dovecot.workers'), { status: 'pass', title: /30 auth workers \(the default\)/ });
});

t.test('the expected snippet: the version found, workers at least auth.hash_concurrency', async (t) => {
  const { dovecotSnippet } = await import('../../src/cli/doctor-checks.js');
  const s23 = dovecotSnippet(null, '/usr/share/mailauth/mailauth.lua', '/etc/mailauth/dovecot-lua.conf', '2.3', 40);
  t.match(s23, /args = file=\/usr\/share\/mailauth\/mailauth\.lua blocking=yes cache_key=%u%s/);
  t.match(s23, /auth_worker_max_count = 40/);
  t.match(s23, /idle_kill = 4294967295 secs/);
  const s24 = dovecotSnippet(null, '/usr/share/mailauth/mailauth.lua', '/etc/mailauth/dovecot-lua.conf', '2.4', 40);
  t.match(s24, /passdb lua \{\n\s+lua_file = \/usr\/share\/mailauth\/mailauth\.lua\n\s+lua_settings \{\n\s+config_file = \/etc\/mailauth\/dovecot-lua\.conf/);
  t.match(s24, /service auth-worker \{\n\s+process_limit = 40\n\}/);
  t.match(s24, /idle_kill_interval = infinite/);
  t.notMatch(s24, /auth_worker_max_count/, '2.4 refuses auth_worker_max_count');
  // What doctor suggests passes doctor's own checks (through the parser; the real doveconf run is in test/e2e/doctor-dovecot.test.ts).
  for (const [v, snippet] of [['2.3', s23], ['2.4', s24]] as const) {
    const r = run(`# ${v}.0 (x): f\n${snippet.split('\n# /etc/mailauth')[0]}`, { hashConcurrency: 40 });
    t.same(statuses(r.checks), { dovecot: 'pass', 'dovecot.passdb': 'pass', 'dovecot.worker': 'pass', 'dovecot.cache_key': 'pass', 'dovecot.auth_cache': 'pass', 'dovecot.idle_kill': 'pass', 'dovecot.workers': 'pass' }, `${v}: the snippet passes`);
  }
});

t.test("2.3 with docs/oauth.md's token passdb first: the password passdb is the one checked", async (t) => {
  const r = run(fixture('2.3-oauth.txt'));
  t.same(statuses(r.checks), { dovecot: 'pass', 'dovecot.passdb': 'pass', 'dovecot.worker': 'pass', 'dovecot.cache_key': 'pass', 'dovecot.auth_cache': 'pass', 'dovecot.idle_kill': 'pass', 'dovecot.workers': 'pass' }, 'cache_key=%u%{session} on the XOAUTH2 passdb is not a finding');
  t.match(r.by('dovecot.cache_key')?.title, /%u%s/);
  const tokensOnly = run(fixture('2.3-oauth.txt').replace(/passdb \{\n  args = file=\/usr\/share\/mailauth\/mailauth\.lua blocking=yes cache_key=%u%s\n  driver = lua\n  mechanisms = plain login\n\}\n/, ''));
  t.match(tokensOnly.by('dovecot.passdb'), { status: 'fail', title: /limited to xoauth2 oauthbearer/ }, 'only the token passdb: passwords never reach mailauth');
});
