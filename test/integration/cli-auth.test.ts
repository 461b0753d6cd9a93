/** `mailauth auth test`, in-process and against a running daemon (--url). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { createAuthenticator } from '../../src/auth/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createServer } from '../../src/server/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';

const PW = 'cli-auth-password';
const TOKEN = 'cli-auth-token-0123456789';

async function setup(t: Test) {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA256', PW), { attributes: { smtp_access: '0' } });
  const config = configFile(t, { database: { url: tdb.url } });
  return { tdb, config };
}

t.test('in-process: result, reason and exit code', async (t) => {
  const { config, tdb } = await setup(t);
  const ok = await cli(['--config', config, 'auth', 'test', 'alice@example.org'], { stdin: `${PW}\n` });
  t.equal(ok.code, 0);
  t.match(ok.stdout, /^result: +ok$/m);
  t.match(ok.stdout, /^user: +alice@example\.org$/m);
  t.match(ok.stdout, /^reason: +mailcow password$/m);
  t.notMatch(ok.stdout + ok.stderr, PW, 'the password is not echoed');

  const wrong = await cli(['--config', config, 'auth', 'test', 'alice@example.org'], { stdin: 'nope\n' });
  t.equal(wrong.code, 1);
  t.match(wrong.stdout, /result: +password_mismatch/);

  const smtp = await cli(['--config', config, '--json', 'auth', 'test', 'alice@example.org', '--service', 'smtp', '--remote-ip', '192.0.2.4'], { stdin: `${PW}\n` });
  t.equal(smtp.code, 1);
  t.same(smtp.json(), { result: 'user_disabled', reason: 'smtp_access is not enabled for this mailbox' });

  const doveadm = await cli(['--config', config, '--json', 'auth', 'test', 'alice@example.org', '-s', 'doveadm'], { stdin: `${PW}\n` });
  t.match(doveadm.json(), { result: 'password_mismatch', reason: /auth\.services/ });

  const unknown = await cli(['--config', config, '--json', 'auth', 'test', 'ghost@example.org'], { stdin: `${PW}\n` });
  t.same([unknown.code, unknown.json()], [1, { result: 'user_unknown', reason: 'no such mailbox' }]);

  const rows = await tdb.sql('SELECT * FROM sasl_log');
  t.equal(rows.length, 0, 'auth test writes no login log');
});

t.test('--url: asks a running daemon, over TCP and a Unix socket, with the token', async (t) => {
  const { tdb } = await setup(t);
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const sock = join(dir, 'm.sock');
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0', socket: sock, token_file: tokenFile } });
  const server = createServer({ config, authenticator: createAuthenticator({ db: tdb.db, logger: silentLogger(), config: config.auth }), db: tdb.db, logger: silentLogger() });
  const [tcp] = await server.listen();
  t.teardown(() => server.close());
  const url = tcp?.url ?? '';

  const ok = await cli(['--json', 'auth', 'test', 'alice@example.org', '--url', url, '--token-file', tokenFile], { stdin: `${PW}\n` });
  t.same([ok.code, ok.json()], [0, { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' }]);

  const viaEnv = await cli(['auth', 'test', 'alice@example.org', '--url', `unix:${sock}`], { stdin: 'wrong\n', env: { MAILAUTH_TOKEN: TOKEN } });
  t.equal(viaEnv.code, 1);
  t.match(viaEnv.stdout, /result: +password_mismatch/);

  const noToken = await cli(['auth', 'test', 'alice@example.org', '--url', url], { stdin: `${PW}\n` });
  t.equal(noToken.code, 1);
  t.match(noToken.stderr, /HTTP 401.*--token-file/);

  await server.close();
  const down = await cli(['auth', 'test', 'alice@example.org', '--url', url], { stdin: `${PW}\n` });
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach the daemon at .*ECONNREFUSED/);
});

t.test('usage errors exit 2', async (t) => {
  const bad = await cli(['auth', 'test', 'alice@example.org', '--url', 'not a url'], { stdin: 'x\n' });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--url: not a URL/);
  const missing = await cli(['auth', 'test'], { stdin: 'x\n' });
  t.equal(missing.code, 2);
  const noFile = await cli(['auth', 'test', 'a@example.org', '--url', 'http://127.0.0.1:1', '--token-file', '/nonexistent/token'], { stdin: 'x\n' });
  t.equal(noFile.code, 2);
  t.match(noFile.stderr, /--token-file: cannot read/);
  const help = await cli(['auth', 'test', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Examples:/);
});
