/**
 * `mailauth doctor` in-process against real MariaDB databases and a real
 * daemon: each finding it exists for (and its exit code), asserted on the
 * check's id and status, plus the fix where the fix is the point.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { startDaemon } from '../../src/cli/serve.js';
import { buildConfig } from '../../src/config/index.js';
import { createDb, writeIdpSettings } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { cli } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/db.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';

interface Report {
  ok: boolean;
  checks: { id: string; status: string; title: string; detail?: string; fix?: string }[];
  dovecot: string;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

function workDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-doctor-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function writeYaml(dir: string, name: string, tree: Record<string, unknown>): string {
  const p = join(dir, name);
  writeFileSync(p, YAML.stringify({ log: { level: 'silent', format: 'json' }, ...tree }), { mode: 0o640 });
  return p;
}

async function doctor(cfg: string, extra: string[] = []): Promise<{ code: number; report: Report; stdout: string }> {
  const r = await cli(['--config', cfg, '--json', 'doctor', '--no-dovecot', '--timeout', '2000', ...extra]);
  return { code: r.code, report: r.json<Report>(), stdout: r.stdout };
}

const status = (r: Report, id: string): string | undefined => r.checks.find((c) => c.id === id)?.status;
const check = (r: Report, id: string) => r.checks.find((c) => c.id === id);

t.test('a healthy setup with the daemon running: all pass, exit 0', async (t) => {
  const tdb = await createTestDatabase(t);
  const dir = workDir(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'a-token-of-at-least-16-chars\n', { mode: 0o640 });
  const port = await freePort();
  const tree = { listen: { address: `127.0.0.1:${port}`, token_file: tokenFile }, database: { url: tdb.url } };
  const cfg = writeYaml(dir, 'config.yaml', tree);
  const luaConf = join(dir, 'dovecot-lua.conf');
  writeFileSync(luaConf, `# settings\nurl = http://127.0.0.1:${port}\ntoken_file = ${tokenFile}\n`, { mode: 0o640 });

  const config = buildConfig({ ...tree, log: { level: 'silent' } }, { env: {} });
  const db = createDb(config.database);
  const daemon = await startDaemon(config, { db, logger: silentLogger() });
  t.teardown(async () => {
    await daemon.stop();
    await db.close();
  });

  const { code, report, stdout } = await doctor(cfg, ['--lua-config', luaConf, '--lua-script', join(process.cwd(), 'lua/mailauth.lua')]);
  t.equal(code, 0, 'exit 0');
  t.equal(report.ok, true);
  for (const id of ['config', 'config.file', 'secret:listen.token_file', 'database', 'schema', `listener:127.0.0.1:${port}`, 'lua.packaged', 'lua.script', 'lua.config', 'lua.token']) {
    t.equal(status(report, id), 'pass', `${id} passes`);
  }
  t.equal(status(report, 'idp'), 'skip', 'no identity provider configured');
  t.match(check(report, `listener:127.0.0.1:${port}`)?.title, 'answers and is ready');
  t.match(report.dovecot, `url = http://127.0.0.1:${port}`, 'the Lua settings it expects');
  t.match(report.dovecot, `token_file = ${tokenFile}`);
  t.notMatch(stdout, 'a-token-of-at-least-16-chars', 'the token never appears in the output');

  // The running daemon has another token than this config: the listener check says so.
  const otherToken = join(dir, 'token2');
  writeFileSync(otherToken, 'another-token-of-16-chars\n', { mode: 0o640 });
  const cfg2 = writeYaml(dir, 'config2.yaml', { ...tree, listen: { ...tree.listen, token_file: otherToken } });
  const mismatch = await doctor(cfg2, ['--lua-config', luaConf]);
  t.equal(mismatch.code, 1, 'exit 1');
  t.match(check(mismatch.report, `listener:127.0.0.1:${port}`), { status: 'fail', title: /rejects the token/, fix: /restart/ }, 'a daemon that rejects the configured token');
  t.match(check(mismatch.report, 'lua.config'), { status: 'fail', title: /different token/ }, 'and the Lua token_file differs from the config');
});

t.test('database and schema failures, each with its fix', async (t) => {
  const dir = workDir(t);
  const port = await freePort();
  const down = writeYaml(dir, 'down.yaml', { listen: { address: `127.0.0.1:${port}` }, database: { url: `mysql://root@127.0.0.1:${await freePort()}/nothere`, connect_timeout: '1s' } });
  const r1 = await doctor(down);
  t.equal(r1.code, 1, 'unreachable database: exit 1');
  t.match(check(r1.report, 'database'), { status: 'fail', fix: /nothing accepts connections/ });
  t.equal(status(r1.report, 'schema'), 'skip');
  t.equal(status(r1.report, 'idp'), 'skip', 'the IdP check needs the database');

  const tdb = await createTestDatabase(t);
  const missingDb = new URL(tdb.url);
  missingDb.pathname = '/mailauth_doctor_no_such_db';
  const nodb = writeYaml(dir, 'nodb.yaml', { listen: { address: `127.0.0.1:${port}` }, database: { url: missingDb.href } });
  const r2 = await doctor(nodb);
  t.match(check(r2.report, 'database'), { status: 'fail', fix: /CREATE DATABASE `mailauth_doctor_no_such_db`/ }, 'a database that does not exist');

  await tdb.sql('ALTER TABLE user_acl DROP COLUMN pw_reset');
  const older = writeYaml(dir, 'older.yaml', { listen: { address: `127.0.0.1:${port}` }, database: { url: tdb.url } });
  const r25 = await doctor(older);
  t.match(check(r25.report, 'schema'), { status: 'warn', title: /user_acl\.pw_reset/, fix: /mailauth db migrate/ }, "a column current mailcow has and the table lacks: a warning");

  await tdb.sql('DROP TABLE sasl_log');
  const partial = writeYaml(dir, 'partial.yaml', { listen: { address: `127.0.0.1:${port}` }, database: { url: tdb.url } });
  const r3 = await doctor(partial);
  t.equal(r3.code, 1);
  t.match(check(r3.report, 'schema'), { status: 'fail', title: /sasl_log/, fix: /mailauth db migrate/ }, 'a missing table');
});

t.test('config and secret-file findings', async (t) => {
  const dir = workDir(t);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'database:\n  pool_size: ten\n');
  const r1 = await doctor(bad);
  t.equal(r1.code, 1, 'invalid config: exit 1');
  t.match(check(r1.report, 'config'), { status: 'fail', detail: /database\.pool_size: must be an integer between 1 and 100/ });
  t.equal(status(r1.report, 'lua.packaged'), 'pass', 'the checks that need no config still run');

  const tdb = await createTestDatabase(t);
  const open = join(dir, 'token-open');
  writeFileSync(open, 'a-token-of-at-least-16-chars\n');
  chmodSync(open, 0o666);
  const cfg = writeYaml(dir, 'c.yaml', { listen: { address: `127.0.0.1:${await freePort()}`, token_file: open }, database: { url: tdb.url } });
  const r2 = await doctor(cfg);
  t.match(check(r2.report, 'secret:listen.token_file'), { status: 'warn', title: /readable by every local user and writable by every local user/, fix: /chmod 0640/ }, 'a world-readable, world-writable token file');

  // A secret the service user cannot read: the service would not start.
  chmodSync(open, 0o600);
  const r3 = await doctor(cfg, ['--service-user', 'nobody']);
  t.match(check(r3.report, 'secret:listen.token_file'), { status: 'fail', title: /nobody cannot read/, fix: /chown root:nobody/ });
  t.equal(r3.code, 1);

  // A password inline in database.url makes the config file itself a secret.
  const inline = new URL(tdb.url);
  inline.password = 'inline-pw';
  const cfgInline = writeYaml(dir, 'inline.yaml', { listen: { address: `127.0.0.1:${await freePort()}` }, database: { url: inline.href } });
  chmodSync(cfgInline, 0o644);
  const r4 = await doctor(cfgInline);
  t.match(check(r4.report, 'config.file'), { status: 'warn', title: /holds the database password.*readable by every local user/ });
  t.notMatch(r4.stdout, 'inline-pw', 'the password is not printed');
});

t.test('listener findings: not running, someone else, socket path', async (t) => {
  const tdb = await createTestDatabase(t);
  const dir = workDir(t);
  const other = http.createServer((_req, res) => res.writeHead(404).end('nope'));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.teardown(() => other.close());
  const port = (other.address() as AddressInfo).port;
  const cfg = writeYaml(dir, 'c.yaml', { listen: { address: `127.0.0.1:${port}`, socket: join(dir, 'run', 'mailauth.sock') }, database: { url: tdb.url } });
  const r = await doctor(cfg);
  t.match(check(r.report, `listener:127.0.0.1:${port}`), { status: 'fail', title: /another program answers there/ }, 'an HTTP server that is not mailauth');
  t.match(check(r.report, `listener:unix:${join(dir, 'run', 'mailauth.sock')}`), { status: 'warn', title: /no socket yet/, detail: /RuntimeDirectory/ }, 'a socket whose directory does not exist yet');
});

t.test('Lua settings findings', async (t) => {
  const tdb = await createTestDatabase(t);
  const dir = workDir(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'a-token-of-at-least-16-chars\n', { mode: 0o640 });
  const port = await freePort();
  const cfg = writeYaml(dir, 'c.yaml', { listen: { address: `127.0.0.1:${port}`, token_file: tokenFile }, database: { url: tdb.url } });

  const wrongUrl = join(dir, 'wrong.conf');
  writeFileSync(wrongUrl, 'url = http://127.0.0.1:1\n');
  const r1 = await doctor(cfg, ['--lua-config', wrongUrl]);
  const lua = r1.report.checks.filter((c) => c.id === 'lua.config');
  t.match(lua, [{ status: 'fail', title: /not one of mailauth's listeners/, fix: new RegExp(`url = http://127.0.0.1:${port}`) }, { status: 'fail', title: /no token_file, but mailauth requires a token/ }], 'wrong url and no token');

  const malformed = join(dir, 'bad.conf');
  writeFileSync(malformed, 'url http://x\n');
  const r2 = await doctor(cfg, ['--lua-config', malformed]);
  t.match(check(r2.report, 'lua.config'), { status: 'fail', title: /malformed/ });

  const r3 = await doctor(cfg, ['--lua-config', join(dir, 'absent.conf'), '--lua-script', join(dir, 'absent.lua')]);
  t.match(check(r3.report, 'lua.config'), { status: 'warn', title: /does not exist/ }, 'no settings file: a warning (the script has defaults)');
  t.match(check(r3.report, 'lua.script'), { status: 'fail', fix: /mailauth lua-path/ }, 'a named script that does not exist: a failure with the install line');

  const stale = join(dir, 'old.lua');
  writeFileSync(stale, '-- an old copy\n', { mode: 0o644 });
  const r4 = await doctor(cfg, ['--lua-script', stale]);
  t.match(check(r4.report, 'lua.script'), { status: 'warn', title: /differs from the installed package/ });
});

t.test('human output: a checklist with fixes and the Dovecot block', async (t) => {
  const dir = workDir(t);
  const cfg = writeYaml(dir, 'c.yaml', { listen: { address: `127.0.0.1:${await freePort()}` }, database: { url: `mysql://root@127.0.0.1:${await freePort()}/x`, connect_timeout: '1s' } });
  const r = await cli(['--config', cfg, 'doctor', '--no-dovecot', '--timeout', '2000']);
  t.equal(r.code, 1);
  t.match(r.stdout, /^✗ database: cannot reach x at 127\.0\.0\.1:\d+$/m);
  t.match(r.stdout, /^ {4}fix: nothing accepts connections/m);
  t.match(r.stdout, /passdb \{\n\s+driver = lua\n\s+args = file=\S+mailauth\.lua blocking=yes cache_key=%u%s\n\s+\}/);
  t.match(r.stdout, /\d+ checks: \d+ passed, \d+ warnings, [1-9]\d* failed/);
  t.match(r.stdout, /FAILED: fix the ✗ lines above\n$/);
});

t.test('identity provider: reachability and credentials from the idp test checklist', async (t) => {
  const tdb = await createTestDatabase(t);
  const dir = workDir(t);
  const kc = await startKeycloakDouble({ users: [{ username: 'alice', email: 'alice@example.org', attributes: { mailcow_template: ['staff'] } }] });
  t.teardown(() => kc.close());
  const idp = { authsource: 'keycloak', server_url: kc.serverUrl, realm: kc.realm, client_id: 'mailauth', client_secret: 'kc-secret', mappers: '[]', templates: '[]' };
  await writeIdpSettings(tdb.db, idp);
  const cfg = writeYaml(dir, 'c.yaml', { listen: { address: `127.0.0.1:${await freePort()}` }, database: { url: tdb.url }, idp: { retries: 0, timeout: '3s' } });

  const good = await doctor(cfg);
  t.match(check(good.report, 'idp'), { status: 'pass', title: new RegExp(`keycloak ${kc.serverUrl} realm ${kc.realm}`), detail: /mailauth idp test/ });
  for (const id of ['idp:reachable', 'idp:discovery', 'idp:client-credentials', 'idp:admin-api']) t.equal(status(good.report, id), 'pass', `${id} passes`);
  t.notOk(good.report.checks.some((c) => ['idp:attributes', 'idp:mapping', 'idp:user-count'].includes(c.id)), 'attribute, count and mapping checks stay with `idp test`');
  t.notMatch(good.stdout, 'kc-secret', 'the client secret is never printed');

  await writeIdpSettings(tdb.db, { client_secret: 'wrong-secret' });
  const badSecret = await doctor(cfg);
  t.equal(badSecret.code, 1, 'a rejected client secret fails doctor');
  t.match(check(badSecret.report, 'idp:client-credentials'), { status: 'fail', fix: /Client secret/ });
  t.equal(status(badSecret.report, 'idp'), 'fail');

  await writeIdpSettings(tdb.db, { client_secret: 'kc-secret' });
  kc.removeRole('mailauth', 'view-users');
  kc.removeRole('mailauth', 'query-users');
  const noRole = await doctor(cfg);
  t.match(check(noRole.report, 'idp:admin-api'), { status: 'fail', fix: /view-users/ }, 'missing view-users: where to grant it');

  await kc.close();
  const down = await doctor(cfg);
  t.match(check(down.report, 'idp:reachable'), { status: 'fail' }, 'an unreachable IdP');

  await writeIdpSettings(tdb.db, { realm: '' });
  const invalid = await doctor(cfg);
  t.match(check(invalid.report, 'idp'), { status: 'fail', title: /not valid/, fix: /mailauth idp/ }, 'settings that do not parse');
});
