/**
 * `doveconf -n -P` parsing, 2.3 and 2.4, against real doveconf output kept in
 * test/fixtures/doveconf (made with Dovecot 2.3.19.1 on the host and 2.4.1 in
 * the Debian 13 root; the config files they came from are named in each
 * file's first line).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { dovecotAuthSettings, findBlocks, isHidden, parseDoveconf, parseInterval, parseSize } from '../../src/dovecot/index.js';

const fixture = (name: string): string => readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/doveconf', name), 'utf8');

t.test('parseSize and parseInterval: the forms doveconf prints', async (t) => {
  t.equal(parseSize('10 M'), 10 * 1024 * 1024);
  t.equal(parseSize('10M'), 10 * 1024 * 1024);
  t.equal(parseSize('0'), 0);
  t.equal(parseSize('512 k'), 512 * 1024);
  t.equal(parseSize('lots'), null);
  t.equal(parseInterval('1 mins'), 60);
  t.equal(parseInterval('1 min'), 60);
  t.equal(parseInterval('4294967295 secs'), 4294967295);
  t.equal(parseInterval('infinite'), Infinity);
  t.equal(parseInterval('2 hours'), 7200);
  t.equal(parseInterval('1 weeks'), 604800);
  t.equal(parseInterval('500 ms'), 0.5);
  t.equal(parseInterval('60'), 60, 'a bare number is seconds');
  t.equal(parseInterval('soon'), null);
});

t.test('parseDoveconf: blocks, names, settings, version', async (t) => {
  const c = parseDoveconf(fixture('2.4-broken.txt'));
  t.equal(c.version, '2.4.1-4');
  t.equal(c.major, '2.4');
  t.same(c.problems, []);
  const passdbs = findBlocks(c.root, 'passdb');
  t.same(
    passdbs.map((p) => [p.block.name, p.filters]),
    [
      ['mailauth', []],
      ['other', ['protocol imap']],
    ],
    'passdbs anywhere, with the filter they sit in',
  );
  t.equal(passdbs[0]?.block.blocks[0]?.settings.cache_key, '%{user}', 'nested lua_settings');
  t.equal(c.root.blocks.find((b) => b.type === 'service' && b.name === 'auth')?.settings.idle_kill_interval, '5 mins');

  const old = parseDoveconf(fixture('2.3-good.txt'));
  t.equal(old.version, '2.3.19.1');
  t.equal(old.major, '2.3');
  t.same(old.problems, []);
  t.equal(old.root.settings.auth_cache_size, '10 M');

  t.equal(parseDoveconf('passdb lua {\n  lua_file = /x.lua\n}\n').major, '2.4', 'no version line: 2.4 by its named passdb');
  t.equal(parseDoveconf('passdb {\n  driver = lua\n}\n').major, '2.3', 'no version line: 2.3 by its unnamed passdb');
  t.same(parseDoveconf('passdb {\n  what is this\n').problems, ['line 2: not a setting or a block', '1 block(s) not closed']);
  t.equal(parseDoveconf('mail_log_prefix = "%{service}(%{user})<%{session}>: "\n').root.settings.mail_log_prefix, '"%{service}(%{user})<%{session}>: "', 'braces inside a value are not blocks');
  t.equal(parseDoveconf('mailbox "Sent Messages" {\n  special_use = \\Sent\n}\n').root.blocks[0]?.name, 'Sent Messages');
});

t.test('isHidden: both versions\' placeholders for values shown only with -P', async (t) => {
  t.ok(isHidden('#hidden_use-P_to_show#'));
  t.ok(isHidden('# hidden, use -P to show it'));
  t.notOk(isHidden('%u%s'));
  const hidden = dovecotAuthSettings(parseDoveconf(fixture('2.4-hidden.txt')));
  t.equal(hidden.luaPassdbs[0]?.cacheKey, 'hidden');
  const hidden23 = dovecotAuthSettings(parseDoveconf('# 2.3.19.1 (x): f\npassdb {\n  args = file=/m/mailauth.lua cache_key=#hidden_use-P_to_show#\n  driver = lua\n}\n'));
  t.equal(hidden23.luaPassdbs[0]?.cacheKey, 'hidden');
});

t.test('dovecotAuthSettings: 2.3, good and broken', async (t) => {
  const good = dovecotAuthSettings(parseDoveconf(fixture('2.3-good.txt')));
  t.match(good, {
    major: '2.3',
    luaPassdbs: [{ kind: 'passdb', name: null, file: '/usr/share/mailauth/mailauth.lua', worker: true, workerSetting: 'blocking=yes', cacheKey: '%u%s', useCache: true, filters: [] }],
    luaUserdbs: [{ kind: 'userdb', file: '/usr/share/mailauth/mailauth.lua', worker: true, cacheKey: null }],
    passdbDrivers: ['lua'],
    cacheSize: { value: 10 * 1024 * 1024, from: 'auth_cache_size = 10 M' },
    cacheTtl: { value: 300 },
    authIdleKill: { value: 4294967295, from: 'service auth { idle_kill = 4294967295 secs }' },
    authWorkers: { value: 30, from: 'default' },
  });
  const bad = dovecotAuthSettings(parseDoveconf(fixture('2.3-broken.txt')));
  t.match(bad, {
    luaPassdbs: [{ worker: false, workerSetting: 'blocking=no', cacheKey: null }],
    luaUserdbs: [],
    passdbDrivers: ['lua'],
    cacheSize: { value: 0, from: 'default' },
    authIdleKill: { value: 60, from: 'default' },
    authWorkers: { value: 2, from: 'auth_worker_max_count = 2' },
  });
  const viaDefault = dovecotAuthSettings(parseDoveconf('# 2.3.19.1 (x): f\ndefault_idle_kill = 1 days\nservice auth {\n  idle_kill = 0\n}\nservice auth-worker {\n  process_limit = 4\n}\n'));
  t.same(viaDefault.authIdleKill, { value: 86400, from: 'default_idle_kill = 1 days' }, 'idle_kill = 0 falls back to default_idle_kill');
  t.same(viaDefault.authWorkers, { value: 4, from: 'service auth-worker { process_limit = 4 }' }, 'a lower process_limit caps auth_worker_max_count');
  t.equal(dovecotAuthSettings(parseDoveconf('# 2.3.19.1 (x): f\nimport_environment = TZ MAILAUTH_LUA_CONFIG=/etc/dovecot/m.conf\n')).luaConfigEnv, '/etc/dovecot/m.conf', 'MAILAUTH_LUA_CONFIG through import_environment');
  const bare = dovecotAuthSettings(parseDoveconf('# 2.3.19.1 (x): f\npassdb {\n  args = /usr/share/mailauth/mailauth.lua\n  driver = lua\n}\n'));
  t.equal(bare.luaPassdbs[0]?.file, '/usr/share/mailauth/mailauth.lua', 'args naming the file without file=');
});

t.test('dovecotAuthSettings: 2.4, good and broken', async (t) => {
  const good = dovecotAuthSettings(parseDoveconf(fixture('2.4-good.txt')));
  t.match(good, {
    major: '2.4',
    luaPassdbs: [{ kind: 'passdb', name: 'lua', file: '/usr/share/mailauth/mailauth.lua', worker: true, workerSetting: null, cacheKey: null, useCache: true }],
    luaUserdbs: [{ kind: 'userdb', name: 'lua', file: '/usr/share/mailauth/mailauth.lua' }],
    luaConfigEnv: null,
    passdbDrivers: ['lua'],
    cacheSize: { value: 10 * 1024 * 1024 },
    authIdleKill: { value: Infinity, from: 'service auth { idle_kill_interval = infinite }' },
    authWorkers: { value: 30, from: 'service auth-worker { process_limit = 30 }' },
  });
  const bad = dovecotAuthSettings(parseDoveconf(fixture('2.4-broken.txt')));
  t.match(bad, {
    luaPassdbs: [{ name: 'mailauth', worker: false, workerSetting: 'use_worker = no', cacheKey: '%{user}' }],
    passdbDrivers: ['lua', 'static'],
    cacheSize: { value: 0, from: 'default' },
    authIdleKill: { value: 300 },
    authWorkers: { value: 2 },
  });
  t.equal(good.luaPassdbs[0]?.configFile, '/etc/mailauth/dovecot-lua.conf', 'lua_settings { config_file }');
  const noCache = dovecotAuthSettings(parseDoveconf('# 2.4.1-4 (x): f\npassdb lua {\n  lua_file = /m.lua\n  use_cache = no\n}\n'));
  t.equal(noCache.luaPassdbs[0]?.useCache, false);
  t.same(noCache.authWorkers, { value: 30, from: 'default' });
  t.same(noCache.authIdleKill, { value: 60, from: 'default' });
});

t.test('mechanisms a passdb is limited to (2.3 mechanisms, 2.4 mechanisms_filter)', async (t) => {
  t.same(dovecotAuthSettings(parseDoveconf(fixture('2.3-oauth.txt'))).luaPassdbs.map((p) => p.mechanisms), [['xoauth2', 'oauthbearer'], ['plain', 'login']]);
  t.same(dovecotAuthSettings(parseDoveconf('# 2.4.1-4 (x): f\npassdb lua {\n  lua_file = /m.lua\n  mechanisms_filter = plain login\n}\n')).luaPassdbs[0]?.mechanisms, ['plain', 'login']);
  t.equal(dovecotAuthSettings(parseDoveconf(fixture('2.4-good.txt'))).luaPassdbs[0]?.mechanisms, null);
});
