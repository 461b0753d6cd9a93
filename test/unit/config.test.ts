import t from 'tap';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { buildConfig, loadConfig, parseDuration, describeConfig } from '../../src/config/index.js';
import { isMailauthError } from '../../src/errors.js';

function problemsOf(raw: unknown, env: Record<string, string> = {}, files: Record<string, string> = {}): string[] {
  try {
    buildConfig(raw, { env, readFile: (p) => { if (p in files) return files[p] as string; throw Object.assign(new Error('nope'), { code: 'ENOENT' }); } });
  } catch (err) {
    if (isMailauthError(err, 'ERR_CONFIG_INVALID')) return (err.details?.problems as string[]) ?? [];
    throw err;
  }
  return [];
}

t.test('defaults: an empty file is a valid config', async (t) => {
  const c = buildConfig({}, { env: {} });
  t.equal(c.listen.listeners.length, 1);
  t.match(c.listen.listeners[0], { kind: 'tcp', host: '127.0.0.1', port: 9082, loopback: true });
  t.equal(c.database.poolSize, 10);
  t.equal(c.database.user, 'mailauth');
  t.equal(c.database.database, 'mailcow');
  t.equal(c.auth.deadlineMs, 5000);
  t.equal(c.auth.services.submission, 'smtp');
  t.equal(c.cache.accountTtlMs, 10_000);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.auth.services), 'config is frozen');
});

t.test('config.example.yaml is valid and equals the defaults', async (t) => {
  const example = YAML.parse(readFileSync(new URL('../../config.example.yaml', import.meta.url), 'utf8'));
  t.same(buildConfig(example, { env: {} }), buildConfig({}, { env: {} }));
});

const cases: [string, unknown, RegExp][] = [
  ['pool size not a number', { database: { pool_size: 'ten' } }, /^database\.pool_size: must be an integer between 1 and 100, got "ten"$/],
  ['pool size too big', { database: { pool_size: 1000 } }, /^database\.pool_size: must be an integer between 1 and 100, got 1000$/],
  ['unknown top key', { lisen: {} }, /^lisen: unknown key \(known: listen, database/],
  ['unknown nested key', { cache: { verify: 3 } }, /^cache\.verify: unknown key \(known: verify_entries/],
  ['bare number duration', { auth: { deadline: 5 } }, /^auth\.deadline: must be a duration with a unit/],
  ['duration out of range', { auth: { deadline: '10m' } }, /^auth\.deadline: must be a duration between/],
  ['bad scheme', { auth: { default_scheme: 'MD5' } }, /^auth\.default_scheme: must be one of BLF-CRYPT/],
  ['bad service flag', { auth: { services: { imap: 'imaps' } } }, /^auth\.services\.imap: must be one of imap, pop3/],
  ['bad service name', { auth: { services: { 'IM AP': 'imap' } } }, /^auth\.services\.IM AP: invalid key name/],
  ['bad db url scheme', { database: { url: 'postgres://x@y/z' } }, /^database\.url: must be a mysql:\/\/ URL/],
  ['db url without database', { database: { url: 'mysql://root@127.0.0.1:3306/' } }, /^database\.url: the path must name the database/],
  ['db url without user', { database: { url: 'mysql://127.0.0.1/mailcow' } }, /^database\.url: the URL must name a user/],
  ['db url unknown param', { database: { url: 'mysql://u@h/db?ssl=1' } }, /^database\.url: unknown URL parameter "ssl"/],
  ['listen garbage', { listen: { address: 'nonsense' } }, /^listen\.address: must be host:port/],
  ['listen relative socket', { listen: { address: 'unix:run/x.sock' } }, /^listen\.address: a unix socket needs an absolute path/],
  ['socket mode', { listen: { socket_mode: '999' } }, /^listen\.socket_mode: must be an octal file mode/],
  ['public listener needs token', { listen: { address: '0.0.0.0:9082' } }, /^listen\.token_file: required when listen\.address is not a loopback address/],
  ['section not a mapping', { cache: [1, 2] }, /^cache: must be a mapping, got a list$/],
  ['query timeout vs deadline', { database: { query_timeout: '6s' } }, /^database\.query_timeout: must be shorter than auth\.deadline/],
  ['ratio', { sync: { max_deactivate_ratio: 2 } }, /^sync\.max_deactivate_ratio: must be a number between 0 and 1, got 2$/],
  ['deprovision', { sync: { deprovision: 'delete' } }, /^sync\.deprovision: must be one of off, deactivate, got "delete"$/],
  ['boolean', { auth: { oidc_password_grant: 'yes' } }, /^auth\.oidc_password_grant: must be true or false, got "yes"$/],
  ['empty scheme list', { auth: { idp_hash_schemes: [] } }, /^auth\.idp_hash_schemes: must be a list of at least 1 item/],
  ['log level', { log: { level: 'loud' } }, /^log\.level: must be one of fatal, error/],
];
for (const [name, raw, re] of cases) {
  t.test(`invalid: ${name}`, async (t) => {
    const problems = problemsOf(raw);
    t.equal(problems.length, 1, `exactly one problem: ${JSON.stringify(problems)}`);
    t.match(problems[0], re);
  });
}

t.test('all problems are reported at once', async (t) => {
  const problems = problemsOf({ database: { pool_size: 0, url: 'x' }, auth: { bcrypt_cost: 3 }, nope: 1 });
  t.equal(problems.length, 4, JSON.stringify(problems));
});

t.test('secrets from files and the environment', async (t) => {
  const c = buildConfig(
    { listen: { address: '0.0.0.0:9082', token_file: '/s/token' }, database: { password_file: '/s/db' } },
    { env: {}, readFile: (p) => ({ '/s/token': 'abcdefghijklmnopqrstuvwxyz\n', '/s/db': 'dbpass\n' })[p] ?? '' },
  );
  t.equal(c.listen.token, 'abcdefghijklmnopqrstuvwxyz');
  t.equal(c.database.password, 'dbpass');
  const e = buildConfig({ database: { url: 'mysql://u:inline@h/db' } }, { env: { MAILAUTH_DATABASE_PASSWORD: 'fromenv', MAILAUTH_TOKEN: '0123456789abcdef0' } });
  t.equal(e.database.password, 'fromenv', 'environment beats the inline URL password');
  t.equal(e.listen.token, '0123456789abcdef0');
  t.notMatch(e.database.url, /inline/, 'the password is stripped from the URL kept in config');
  const shown = JSON.stringify(describeConfig(e));
  t.notMatch(shown, /fromenv|0123456789abcdef0|inline/, 'describeConfig masks secrets');
  t.match(problemsOf({ database: { password_file: '/missing' } })[0], /^database\.password_file: cannot read \/missing \(ENOENT\)$/);
  t.match(problemsOf({ listen: { token_file: '/s/t' } }, {}, { '/s/t': 'short' })[0], /at least 16 characters/);
});

t.test('environment overrides', async (t) => {
  const c = buildConfig({}, { env: { MAILAUTH_DATABASE_URL: 'mysql://x@db.example:3307/mail?socket=/run/m.sock', MAILAUTH_LOG_LEVEL: 'debug' } });
  t.match(c.database, { host: 'db.example', port: 3307, user: 'x', database: 'mail', socketPath: '/run/m.sock' });
  t.equal(c.log.level, 'debug');
  t.match(problemsOf({}, { MAILAUTH_LOG_LEVEL: 'chatty' })[0], /^MAILAUTH_LOG_LEVEL: must be one of/);
});

t.test('listeners', async (t) => {
  const c = buildConfig({ listen: { address: '[::1]:9000', socket: '/run/mailauth/m.sock', socket_mode: '0600' } }, { env: {} });
  t.same(c.listen.listeners, [
    { kind: 'tcp', host: '::1', port: 9000, loopback: true },
    { kind: 'unix', path: '/run/mailauth/m.sock', mode: 0o600 },
  ]);
});

t.test('loadConfig: file errors', async (t) => {
  const err = (fn: () => unknown) => { try { fn(); } catch (e) { return e as Error & { code?: string }; } throw new Error('no error'); };
  const missing = err(() => loadConfig({ path: '/nonexistent/mailauth.yaml', env: {} }));
  t.equal(missing.code, 'ERR_CONFIG_INVALID');
  t.match(missing.message, /does not exist: copy config.example.yaml there/);
  const bad = err(() => loadConfig({ env: { MAILAUTH_CONFIG: '/x.yaml' }, readFile: () => 'listen: [unclosed' }));
  t.match(bad.message, /YAML/);
  const dup = err(() => loadConfig({ path: '/x.yaml', env: {}, readFile: () => 'log:\n  level: info\n  level: debug\n' }));
  t.match(dup.message, /YAML/, 'duplicate keys are an error');
  const ok = loadConfig({ path: '/x.yaml', env: {}, readFile: () => 'log:\n  level: warn\n' });
  t.equal(ok.log.level, 'warn');
  t.equal(ok.file, '/x.yaml');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('10s'), 10_000);
  t.equal(parseDuration('1.5m'), 90_000);
  t.equal(parseDuration('2h'), 7_200_000);
  t.equal(parseDuration('10'), null);
  t.equal(parseDuration('ten s'), null);
});
