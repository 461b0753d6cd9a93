import t from 'tap';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { createTestDatabase } from '../helpers/db.js';
import { cli } from '../helpers/cli.js';
import { runCli } from '../../src/cli/main.js';
import { demoCommand, DEMO } from '../../src/cli/demo.js';
import type { Io } from '../../src/cli/io.js';

t.test('demo --no-serve seeds a database and is idempotent', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const first = await cli(['demo', '--database-url', tdb.url, '--no-serve']);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /created domain demo\.example, mailbox alice@demo\.example/);
  const second = await cli(['demo', '--database-url', tdb.url, '--no-serve']);
  t.equal(second.code, 0, second.stderr);
  t.notMatch(second.stdout, /created/);
  const apps = await tdb.sql<{ n: number }>('SELECT COUNT(*) AS n FROM app_passwd');
  t.equal(Number(apps[0]?.n), 1, 'the demo app password is replaced, not duplicated');
  const rows = await tdb.sql<{ n: number }>("SELECT COUNT(*) AS n FROM mailbox m JOIN alias a ON a.address = m.username JOIN quota2 q ON q.username = m.username WHERE m.username = 'alice@demo.example'");
  t.equal(Number(rows[0]?.n), 1, 'mailbox written with its mailcow companion rows');
});

t.test('demo explains an unreachable server', async (t) => {
  const r = await cli(['demo', '--database-url', 'mysql://root@127.0.0.1:1/mailauth_demo', '--no-serve']);
  t.equal(r.code, 1);
  t.match(r.stderr, /no MySQL\/MariaDB server answers at mysql:\/\/root@127\.0\.0\.1:1\/mailauth_demo/);
  t.match(r.stderr, /apt-get install mariadb-server/);
  const bad = await cli(['demo', '--database-url', 'postgres://x@y/z', '--no-serve']);
  t.equal(bad.code, 2);
});

t.test('demo serves real logins until a signal', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const signals = new EventEmitter();
  let stdout = '';
  const io: Io = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: () => true },
    stdin: Readable.from([]) as Io['stdin'],
    env: {},
    stdoutIsTTY: false,
  };
  const running = runCli(['demo', '--database-url', tdb.url, '--listen', '127.0.0.1:0'], io, [demoCommand(signals as never)]);
  let url = '';
  for (let i = 0; i < 200 && !url; i++) {
    url = /listening on (http:\/\/[^\s,]+)/.exec(stdout)?.[1] ?? '';
    if (!url) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(url, `daemon announced its address: ${stdout}`);
  const ask = async (password: string, service = 'imap') => {
    const res = await fetch(`${url}/v1/passdb`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: DEMO.user, password, service, remote_ip: '127.0.0.1' }),
    });
    return ((await res.json()) as { result: string }).result;
  };
  t.equal(await ask(DEMO.password), 'ok');
  t.equal(await ask(DEMO.appPassword), 'ok', 'app password for IMAP');
  t.equal(await ask(DEMO.appPassword, 'smtp'), 'password_mismatch', 'the app password is IMAP-only');
  t.equal(await ask('nope'), 'password_mismatch');
  t.match(stdout, /curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/passdb/);
  t.match(stdout, /mailauth auth test alice@demo\.example/);
  signals.emit('SIGINT');
  t.equal(await running, 0);
  t.match(stdout, /stopped/);
});
