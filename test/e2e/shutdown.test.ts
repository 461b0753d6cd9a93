/**
 * SIGTERM during load: `mailauth serve` runs as a real child process with N
 * logins inside it when SIGTERM arrives. To know they are inside (not still in
 * the kernel's accept queue), the test holds a WRITE lock on `mailbox`: every
 * login then waits in its account query, visible in SHOW PROCESSLIST. Then
 * SIGTERM, then the lock is released. Every request must get its real answer,
 * the queued login-log rows (flush_interval far away, so only the shutdown
 * flush can write them) must reach sasl_log, and the process must exit 0.
 *
 * SIGHUP (`systemctl reload`): the config is re-read, log.level applied, other
 * changes named as needing a restart, an invalid file rejected, and the daemon
 * keeps serving (Node's default for SIGHUP would be to exit).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import mysql from 'mysql2/promise';
import t from 'tap';
import YAML from 'yaml';
import { hash } from '../../src/passwords/index.js';
import { configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const N = 30;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The TypeScript loader tap runs us with, so the child runs the same sources. */
function tsLoaderArgs(): string[] {
  const fromTap = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  if (fromTap.length) return fromTap;
  return [`--import=${pathToFileURL(join(ROOT, 'node_modules/@tapjs/typescript/dist/esm/import.mjs')).href}`];
}

interface Line {
  level?: number;
  msg?: string;
  addresses?: string[];
  inFlight?: number;
  loginLog?: { written: number; dropped: number; lost: number };
  needRestart?: string[];
  error?: string;
}

interface Serve {
  child: ChildProcess;
  url: URL;
  lines: Line[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** Resolves with the first log line (already seen or coming) that matches, or null after ~6 s. */
  waitFor(match: (l: Line) => boolean): Promise<Line | null>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** `mailauth --config FILE serve` as a child process on the TypeScript sources; resolves once it listens. */
async function startServe(t: Teardown, cfg: string): Promise<Serve> {
  const child: ChildProcess = spawn(
    process.execPath,
    [...tsLoaderArgs(), '--input-type=module', '--eval', `import(${JSON.stringify(pathToFileURL(join(ROOT, 'src/cli/main.ts')).href)}).then((m) => m.main())`, '--', 'mailauth', '--config', cfg, 'serve'],
    { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: Line[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const url = await new Promise<URL>((resolveUrl, reject) => {
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const raw = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const line = JSON.parse(raw) as Line;
          lines.push(line);
          if (line.msg === 'mailauth listening' && line.addresses?.[0]) resolveUrl(new URL(line.addresses[0]));
        } catch {
          // not a log line
        }
      }
    });
    void exited.then(({ code }) => reject(new Error(`mailauth serve exited (${code}) before listening: ${stderr}`)));
  });
  return {
    child,
    url,
    lines,
    stderr: () => stderr,
    exited,
    async waitFor(match) {
      for (let i = 0; i < 300; i++) {
        const l = lines.find(match);
        if (l) return l;
        await sleep(20);
      }
      return null;
    },
  };
}

function get(url: URL, path: string): Promise<number> {
  return new Promise((r) => {
    http
      .get({ host: url.hostname, port: url.port, path, agent: false }, (res) => {
        res.resume();
        res.on('end', () => r(res.statusCode ?? 0));
      })
      .on('error', () => r(-1));
  });
}

function post(url: URL, body: unknown, agent: http.Agent): Promise<{ status: number; json: { result?: string } }> {
  const text = JSON.stringify(body);
  return new Promise((resolvePost, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: '/v1/passdb', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => {
          try {
            resolvePost({ status: res.statusCode ?? 0, json: JSON.parse(data) as { result?: string } });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

t.test('SIGTERM under load: every in-flight login answered, login log flushed, exit 0', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'shutdown.test');
  const users = Array.from({ length: N }, (_, i) => ({ user: `u${i}@shutdown.test`, password: `pw-${i}-secret` }));
  // Distinct hashes (own salts), so no verification is shared or cached.
  const hashes = await Promise.all(users.map((u) => hash('BLF-CRYPT', u.password, { bcryptCost: 6 })));
  for (const [i, u] of users.entries()) await seedMailbox(tdb, u.user, hashes[i] as string);

  const cfg = configFile(t, {
    listen: { address: '127.0.0.1:0' },
    // One connection per login, so all N queries show up waiting on the lock.
    database: { url: tdb.url, pool_size: N + 5, query_timeout: '25s' },
    auth: { deadline: '30s' },
    login_log: { enabled: true, flush_interval: '10m', batch_size: 1000, queue_size: 10000 },
    log: { level: 'info', format: 'json' },
  });
  const serve = await startServe(t, cfg);
  const { child, url, lines, exited } = serve;

  // Hold the logins in their account query.
  const locker = await mysql.createConnection({
    host: tdb.dbConfig.host,
    port: tdb.dbConfig.port,
    user: tdb.dbConfig.user,
    password: tdb.dbConfig.password ?? undefined,
    database: tdb.name,
  });
  t.teardown(() => locker.end().catch(() => undefined));
  await locker.query('LOCK TABLES mailbox WRITE');

  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  t.teardown(() => agent.destroy());
  let answered = 0;
  const requests = users.map((u) =>
    post(url, { user: u.user, password: u.password, service: 'imap', remote_ip: '192.0.2.7' }, agent).then((r) => {
      answered += 1;
      return r;
    }),
  );

  // Wait (bounded) until every login waits on the lock inside mailauth.
  let waiting = 0;
  for (let i = 0; i < 300 && waiting < N; i++) {
    const [rows] = await locker.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND STATE LIKE '%lock%'", [tdb.name]);
    waiting = Number((rows as { n: number }[])[0]?.n ?? 0);
    if (waiting < N) await sleep(100);
  }
  t.equal(waiting, N, `all ${N} logins are inside mailauth, waiting on the database`);
  t.equal(answered, 0, 'none answered yet');

  t.ok(child.kill('SIGTERM'), 'SIGTERM sent');
  const stopping = await serve.waitFor((l) => l.msg === 'shutting down');
  t.equal(stopping?.inFlight, N, `mailauth began shutting down with all ${N} requests in flight`);
  await locker.query('UNLOCK TABLES');

  const answers = await Promise.all(requests);
  const exit = await exited;

  t.equal(answered, N, 'every request got an HTTP answer');
  t.same(answers.map((a) => a.status), users.map(() => 200), 'all HTTP 200');
  t.same(answers.map((a) => a.json.result), users.map(() => 'ok'), 'all decided ok (none cut off as internal_failure)');
  t.same(exit, { code: 0, signal: null }, 'mailauth exits 0 after SIGTERM');

  const stopped = lines.find((l) => l.msg === 'stopped');
  t.equal(stopped?.loginLog?.dropped, 0, 'no login-log row dropped');
  t.equal(stopped?.loginLog?.lost, 0, 'no login-log row lost');

  const rows = await tdb.sql<{ username: string; service: string; real_rip: string; app_password: number }>('SELECT username, service, real_rip, app_password FROM sasl_log ORDER BY username');
  t.equal(rows.length, N, `sasl_log has all ${N} rows (written by the shutdown flush)`);
  t.same(
    rows.map((r) => r.username).sort(),
    users.map((u) => u.user).sort(),
    'one row per user',
  );
  t.ok(rows.every((r) => r.service === 'imap' && r.real_rip === '192.0.2.7' && Number(r.app_password) === 0), 'rows carry service, IP and app_password 0');
  t.notMatch(serve.stderr(), /secret/, 'no password on stderr');
});

t.test('SIGHUP re-reads the config: log level applied, restart-only changes named, bad file refused, still serving', async (t) => {
  const tdb = await createTestDatabase(t);
  const tree = { listen: { address: '127.0.0.1:0' }, database: { url: tdb.url }, log: { level: 'info', format: 'json' }, dovecot: { notify: false } };
  const cfg = configFile(t, tree);
  const serve = await startServe(t, cfg);
  const agent = new http.Agent({ keepAlive: false });
  t.teardown(() => agent.destroy());
  const login = { user: 'nobody@hup.test', password: 'x', service: 'imap', remote_ip: '192.0.2.9' };
  const decisions = (): number => serve.lines.filter((l) => l.msg === 'passdb decision').length;

  t.equal((await post(serve.url, login, agent)).json.result, 'user_unknown', 'a login before the reload');
  t.ok(await serve.waitFor((l) => l.msg === 'passdb decision'), 'is logged at info');

  writeFileSync(cfg, YAML.stringify({ ...tree, database: { ...tree.database, pool_size: 3 }, log: { level: 'warn', format: 'json' } }));
  serve.child.kill('SIGHUP');
  const applied = await serve.waitFor((l) => /^SIGHUP: log level applied/.test(l.msg ?? ''));
  t.same(applied?.needRestart, ['database'], 'SIGHUP applies the log level and names the change that waits for a restart');
  t.equal((await post(serve.url, login, agent)).json.result, 'user_unknown', 'still serving after SIGHUP');

  writeFileSync(cfg, 'database:\n  pool_size: ten\n');
  serve.child.kill('SIGHUP');
  const refused = await serve.waitFor((l) => /^SIGHUP: the config file is not valid/.test(l.msg ?? ''));
  t.match(refused?.error, 'database.pool_size', 'an invalid file is refused with its problem');
  t.equal(await get(serve.url, '/healthz'), 200, 'and the daemon keeps running on the old config');

  serve.child.kill('SIGTERM');
  t.same(await serve.exited, { code: 0, signal: null }, 'SIGTERM still stops it cleanly');
  t.equal(decisions(), 1, 'after the reload to log.level warn, the second login logged no info line');
});
