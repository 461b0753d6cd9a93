/**
 * Security review, door 3: secrets. A whole login sequence runs through the
 * daemon with the log at `trace` (mailcow passwords, app passwords, a
 * malformed hash, the Keycloak mailpassword flow, login provisioning, the
 * password grant, wrong tokens, a bad body), and no password, hash, token,
 * client secret or IdP token may reach a log line, an HTTP answer or /metrics.
 * Then the CLI: its errors and outputs carry no secret, and no command needs a
 * secret in argv (where `ps` shows it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command, Option } from 'commander';
import t from 'tap';
import type { Test } from 'tap';
import { createApp } from '../../src/cli/app.js';
import { buildProgram } from '../../src/cli/main.js';
import { startDaemon } from '../../src/cli/serve.js';
import { insertAppPassword, writeIdpSettings } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { seedTemplates } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { KeycloakDouble } from '../helpers/keycloak-double.js';
import { captureLog } from '../helpers/log-capture.js';

const S = {
  mailboxPw: 'Mailbox-Password-Alpha-1',
  wrongGuess: 'Wrong-Guess-Bravo-2',
  appPw: 'App-Password-Charlie-3',
  idpPw: 'Idp-Password-Delta-4',
  newbiePw: 'Newbie-Password-Echo-5',
  grantPw: 'Grant-Password-Foxtrot-6',
  token: 'Listen-Token-Golf-0123456789',
  wrongToken: 'Wrong-Token-Hotel-0123456789',
  clientSecret: 'Client-Secret-India-0123456789',
  badBodyPw: 'Body-Password-Juliet-7',
  brokenPayload: 'U2VjcmV0SGFzaFBheWxvYWRLaWxv',
} as const;

const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The secret, and for a `{SCHEME}payload` hash also the payload (what a careless log would cut out). */
function forms(secret: string): string[] {
  const payload = secret.replace(/^\{[^}]*\}/, '');
  return payload === secret ? [secret] : [secret, payload];
}

async function keycloakWorld(t: Test, tdb: TestDatabase): Promise<{ kc: KeycloakDouble; hashes: string[] }> {
  const idpHash = await hash('BLF-CRYPT', S.idpPw, { bcryptCost: 4 });
  const newbieHash = await hash('SSHA512', S.newbiePw);
  const kc = await startKeycloakDouble({
    clients: [{ clientId: 'mailauth', secret: S.clientSecret, serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] }],
    users: [
      { username: 'kcuser', email: 'kcuser@example.org', enabled: true, password: S.grantPw, attributes: { mailcow_password: [idpHash], mailcow_template: ['staff'] } },
      { username: 'newbie', email: 'newbie@example.org', enabled: true, attributes: { mailcow_password: [newbieHash], mailcow_template: ['staff'] } },
    ],
  });
  t.teardown(() => kc.close());
  await writeIdpSettings(tdb.db, {
    authsource: 'keycloak', server_url: kc.serverUrl, realm: kc.realm, client_id: 'mailauth', client_secret: S.clientSecret,
    mailpassword_flow: '1', login_provisioning: '1', periodic_sync: '0', import_users: '0', sync_interval: '15', ignore_ssl_error: '0',
    mappers: JSON.stringify(['staff']), templates: JSON.stringify(['Staff']), default_template: '',
  });
  return { kc, hashes: [idpHash, newbieHash] };
}

t.test('a login sequence at log level trace leaves no secret in the log, the answers or /metrics', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  const mailboxHash = await hash('SSHA512', S.mailboxPw);
  const appHash = await hash('BLF-CRYPT', S.appPw, { bcryptCost: 4 });
  const brokenHash = `{SSHA256}${S.brokenPayload}!!`;
  await seedMailbox(tdb, 'alice@example.org', mailboxHash);
  await seedMailbox(tdb, 'broken@example.org', brokenHash);
  await seedMailbox(tdb, 'kcuser@example.org', '', { authsource: 'keycloak' });
  await insertAppPassword(tdb.db, { name: 'phone', mailbox: 'alice@example.org', domain: 'example.org', password: appHash, access: { imap: 1, pop3: 0, smtp: 1, sieve: 0, eas: 0, dav: 0 } });
  const { kc, hashes: idpHashes } = await keycloakWorld(t, tdb);

  const tokenFile = join(tmp(t), 'token');
  writeFileSync(tokenFile, `${S.token}\n`);
  const config = testConfig(tdb, {
    listen: { address: '127.0.0.1:0', token_file: tokenFile },
    login_log: { enabled: false },
    auth: { oidc_password_grant: true },
    log: { level: 'trace', format: 'json' },
  });
  const log = captureLog('trace');
  const logger = log.logger;
  const daemon = await startDaemon(config, { db: tdb.db, logger });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url ?? '';
  let answers = '';
  const send = async (path: string, body: string, token: string | null = S.token, method = 'POST'): Promise<Record<string, unknown>> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers['x-mailauth-token'] = token;
    const res = await fetch(`${url}${path}`, { method, headers, ...(method === 'POST' ? { body } : {}) });
    const text = await res.text();
    answers += `${res.status} ${text}\n`;
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return {};
    }
  };
  const login = (user: string, password: string, service = 'imap') => send('/v1/passdb', JSON.stringify({ user, password, service, remote_ip: '203.0.113.9', session: 'sess-1' }));

  t.match(await login('alice@example.org', S.mailboxPw), { result: 'ok' });
  t.match(await login('alice@example.org', S.wrongGuess), { result: 'password_mismatch' });
  t.match(await login('alice@example.org', S.appPw, 'smtp'), { result: 'ok' });
  t.match(await login('alice@example.org', S.appPw, 'pop3'), { result: 'password_mismatch' });
  t.match(await login('broken@example.org', S.mailboxPw), { result: 'internal_failure' });
  t.match(await login('kcuser@example.org', S.idpPw), { result: 'ok' }, 'Keycloak mailpassword flow');
  t.match(await login('kcuser@example.org', S.wrongGuess), { result: 'password_mismatch' });
  t.match(await login('newbie@example.org', S.newbiePw), { result: 'ok' }, 'login provisioning');
  t.match(await login('ghost@example.org', S.wrongGuess), { result: 'user_unknown' });
  await send('/', JSON.stringify({ username: 'alice@example.org', password: S.mailboxPw, real_rip: '203.0.113.9', service: 'imap' }));
  await send('/v1/passdb', JSON.stringify({ user: 'alice@example.org', password: S.mailboxPw, service: 'imap' }), S.wrongToken);
  await send('/v1/passdb', JSON.stringify({ user: 'alice@example.org', password: S.mailboxPw, service: 'imap' }), null);
  await send('/v1/passdb', `{"user":"alice@example.org","password":"${S.badBodyPw}",`);
  await send('/v1/passdb', JSON.stringify({ user: 'alice@example.org', password: [S.badBodyPw], service: 'imap' }));
  await send('/v1/userdb', JSON.stringify({ user: 'alice@example.org' }));

  // The mailpassword flow off: keycloak mailboxes go through the password grant (the password goes to the IdP).
  await writeIdpSettings(tdb.db, { mailpassword_flow: '0' });
  daemon.idp.runtime.invalidateSettings();
  t.match(await login('kcuser@example.org', S.grantPw), { result: 'ok' }, 'password grant');
  t.match(await login('kcuser@example.org', S.wrongGuess), { result: 'password_mismatch' });
  const metrics = await fetch(`${url}/metrics`, { headers: { 'x-mailauth-token': S.token } }).then((r) => r.text());
  await daemon.stop();
  await new Promise<void>((r) => logger.flush(() => r()));

  // Controls: the sink saw the sequence, at trace level, and the IdP was really asked.
  const lines = log.lines;
  t.ok(lines.filter((l) => l.msg === 'passdb decision').length >= 12, 'every decision was logged');
  t.ok(lines.some((l) => l.user === 'kcuser@example.org'), 'lines name the user');
  t.equal(logger.level, 'trace');
  t.ok(kc.requests.some((r) => r.route === 'token'), 'the IdP issued tokens');
  t.ok(kc.requests.some((r) => r.route === 'users'), 'the IdP was asked for users');

  const secrets = [...Object.values(S), mailboxHash, appHash, brokenHash, ...idpHashes].flatMap(forms);
  for (const [where, text] of [['log', log.text()], ['HTTP answers', answers], ['/metrics', metrics]] as const) {
    for (const s of secrets) t.notOk(text.includes(s), `${where}: no ${s.slice(0, 14)}…`);
    t.notMatch(text, JWT, `${where}: no IdP access token`);
    t.notMatch(text, /\$2[aby]\$\d\d\$|\$argon2|\{SSHA|\{BLF-CRYPT\}/, `${where}: no hash-shaped text`);
  }
});

t.test('CLI: errors and outputs carry no secret', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA512', S.mailboxPw));
  await seedMailbox(tdb, 'broken@example.org', `{SSHA256}${S.brokenPayload}!!`);
  const appHash = await hash('SSHA256', S.appPw);
  await insertAppPassword(tdb.db, { name: 'phone', mailbox: 'alice@example.org', domain: 'example.org', password: appHash, access: { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 } });
  const dir = tmp(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${S.token}\n`);
  const dbPassFile = join(dir, 'db.pass');
  writeFileSync(dbPassFile, 'Db-Password-Kilo-8\n');
  const secretFile = join(dir, 'client.secret');
  writeFileSync(secretFile, `${S.clientSecret}\n`, { mode: 0o600 });
  const config = configFile(t, { database: { url: tdb.url }, auth: { bcrypt_cost: 4, max_password_bytes: 64 }, idp: { timeout: '1s', retries: 0 } });
  const masked = configFile(t, { database: { url: tdb.url, password_file: dbPassFile }, listen: { token_file: tokenFile } });
  const wrongTokenFile = join(dir, 'wrong');
  writeFileSync(wrongTokenFile, `${S.wrongToken}\n`);

  // A daemon for `auth test --url` that refuses the token it is sent.
  const cfg = testConfig(tdb, { listen: { address: '127.0.0.1:0', token_file: tokenFile }, login_log: { enabled: false } });
  const daemon = await startDaemon(cfg, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url ?? '';
  const kc = await startKeycloakDouble({ clients: [{ clientId: 'mailauth', secret: 'another-secret', serviceAccountsEnabled: true, adminRoles: ['view-users'] }] });
  t.teardown(() => kc.close());

  const runs: [string, string[], string | undefined][] = [
    ['auth test --url, wrong token', ['auth', 'test', 'alice@example.org', '--url', url, '--token-file', wrongTokenFile], `${S.mailboxPw}\n`],
    ['auth test, malformed row', ['--json', 'auth', 'test', 'broken@example.org'], `${S.mailboxPw}\n`],
    ['auth test, wrong password', ['auth', 'test', 'alice@example.org'], `${S.wrongGuess}\n`],
    ['pw -t with a malformed hash', ['pw', '-t', `{SSHA256}${S.brokenPayload}!!`], `${S.mailboxPw}\n`],
    ['mailbox add, password too long', ['mailbox', 'add', 'bob@example.org', '--password-stdin'], `${S.badBodyPw.repeat(4)}\n`],
    ['mailbox passwd, password too long', ['mailbox', 'passwd', 'alice@example.org', '--password-stdin'], `${S.badBodyPw.repeat(4)}\n`],
    ['mailbox show --json', ['--json', 'mailbox', 'show', 'alice@example.org'], undefined],
    ['mailbox list --json', ['--json', 'mailbox', 'list'], undefined],
    ['app-password list --json', ['--json', 'app-password', 'list', 'alice@example.org'], undefined],
    ['idp set keycloak --test, wrong secret', ['idp', 'set', 'keycloak', '--server-url', kc.serverUrl, '--realm', kc.realm, '--client-id', 'mailauth', '--client-secret-file', secretFile, '--test'], undefined],
    ['idp set keycloak --client-secret-stdin, IdP down', ['idp', 'set', 'keycloak', '--server-url', 'http://127.0.0.1:9', '--realm', 'mail', '--client-id', 'mailauth', '--client-secret-stdin', '--test'], `${S.clientSecret}\n`],
  ];
  for (const [name, argv, stdin] of runs) {
    const r = await cli(['--config', config, ...argv], stdin === undefined ? {} : { stdin });
    const out = r.stdout + r.stderr;
    t.ok(out.length > 0, `${name}: said something (exit ${r.code})`);
    if (name.includes('wrong secret')) t.match(out, /rejected the client id or secret/, `${name}: the IdP was asked with the secret`);
    if (name.includes('IdP down')) t.match(out, /cannot reach the identity provider/, `${name}: the failure is reported`);
    if (name.includes('wrong token')) t.match(out, /HTTP 401/, `${name}: the daemon refused the token`);
    for (const s of [S.mailboxPw, S.wrongGuess, S.appPw, S.token, S.wrongToken, S.clientSecret, S.badBodyPw, S.brokenPayload, appHash, appHash.replace(/^\{[^}]*\}/, '')]) {
      t.notOk(out.includes(s), `${name}: no ${s.slice(0, 14)}…`);
    }
    t.notMatch(out, /\$2[aby]\$|\{SSHA512\}|\{SSHA256\}[A-Za-z0-9+/]{8}/, `${name}: no hash`);
  }
  for (const argv of [['config', 'check'], ['--json', 'config', 'check']]) {
    const r = await cli(['--config', masked, ...argv]);
    t.equal(r.code, 0, r.stderr);
    t.notOk(r.stdout.includes(S.token), `${argv.join(' ')}: token masked`);
    t.notOk(r.stdout.includes('Db-Password-Kilo-8'), `${argv.join(' ')}: database password masked`);
  }
});

/** Every option of every command, with the command path. */
function allOptions(cmd: Command, path: string[] = []): { path: string; option: Option }[] {
  const here = [...path, cmd.name()];
  return [...cmd.options.map((option) => ({ path: here.join(' '), option })), ...cmd.commands.flatMap((c) => allOptions(c, here))];
}

t.test('no command needs a secret in argv; the few argv forms are the doveadm-style escape hatches', async (t) => {
  const app = createApp({ stdout: { write: () => true }, stderr: { write: () => true }, stdin: process.stdin, env: {}, stdoutIsTTY: false });
  const program = buildProgram(app);
  // A secret-valued option: a secret word in its name or its value placeholder; a file, stdin switch or URL is not.
  const SECRET_WORD = /^(?:password|passwd|pass|secret|token|hash|credentials?)$/;
  const isSecret = (o: Option): boolean => {
    const segments = (o.long ?? '').replace(/^--/, '').split('-');
    if (['file', 'stdin', 'url'].includes(segments[segments.length - 1] ?? '')) return false;
    const placeholder = /<([^>]+)>|\[([^\]]+)\]/.exec(o.flags)?.slice(1).find(Boolean) ?? '';
    return segments.some((w) => SECRET_WORD.test(w)) || SECRET_WORD.test(placeholder);
  };
  const valueTaking = allOptions(program).filter(({ option }) => option.required || option.optional);
  const secretArgv = valueTaking.filter(({ option }) => isSecret(option));
  // Each of these is optional, documented as visible in `ps`, and has a prompt/stdin default.
  t.same(
    secretArgv.map(({ path, option }) => `${path} ${option.flags}`).sort(),
    [
      'mailauth mailbox add -p, --password <password>',
      'mailauth mailbox passwd -p, --password <password>',
      'mailauth pw -p, --password <password>',
      'mailauth pw -t, --test <hash>',
    ],
    'the only secret-valued argv options (a new one must be reviewed here)',
  );
  for (const { path, option } of secretArgv) {
    t.notOk(option.mandatory, `${path} ${option.long}: not mandatory`);
    if (option.long === '--password') t.match(option.description, /visible in the process list/, `${path}: the help says ps shows it`);
  }
  // Commands that take a secret without argv at all.
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA256', S.mailboxPw));
  const config = configFile(t, { database: { url: tdb.url }, auth: { bcrypt_cost: 4 } });
  const pw = await cli(['--config', config, 'pw', '-s', 'SSHA256'], { stdin: `${S.newbiePw}\n` });
  t.equal(pw.code, 0, 'pw: from stdin');
  t.equal((await cli(['--config', config, 'auth', 'test', 'alice@example.org'], { stdin: `${S.mailboxPw}\n` })).code, 0, 'auth test: from stdin');
  t.equal((await cli(['--config', config, 'mailbox', 'passwd', 'alice@example.org', '--password-stdin'], { stdin: `${S.newbiePw}\n` })).code, 0, 'mailbox passwd: from stdin');
  t.equal((await cli(['--config', config, 'auth', 'test', 'alice@example.org'], { stdin: `${S.newbiePw}\n` })).code, 0, 'the new password works');
  t.equal((await cli(['--config', config, 'mailbox', 'add', 'bob@example.org', '--password-stdin'], { stdin: `${S.newbiePw}\n` })).code, 0, 'mailbox add: from stdin');
});
