/** `mailauth serve`: starts, answers, and on SIGTERM finishes, flushes the login log and exits 0. */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import type { Test } from 'tap';
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';
import { serveCommand } from '../../src/cli/serve.js';
import { hash } from '../../src/passwords/index.js';
import { configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';

const PW = 'serve-test-password';

async function setup(t: Test) {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA256', PW));
  // A long flush interval: only the shutdown flush can write the row.
  const config = configFile(t, {
    database: { url: tdb.url },
    listen: { address: '127.0.0.1:0' },
    login_log: { flush_interval: '10m' },
    log: { level: 'info', format: 'json' },
  });
  return { tdb, config };
}

async function passdb(url: string): Promise<unknown> {
  const res = await fetch(`${url}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice@example.org', password: PW, service: 'imap', remote_ip: '198.51.100.1' }),
  });
  return res.json();
}

function listeningUrl(lines: string[]): string | null {
  for (const l of lines) {
    const j = JSON.parse(l) as { msg?: string; addresses?: string[] };
    if (j.msg === 'mailauth listening') return j.addresses?.[0] ?? null;
  }
  return null;
}

t.test('in-process with an injected signal source', async (t) => {
  const { tdb, config } = await setup(t);
  const lines: string[] = [];
  let buf = '';
  const io: Io = {
    stdout: {
      write: (s: string) => {
        buf += s;
        const parts = buf.split('\n');
        buf = parts.pop() ?? '';
        lines.push(...parts.filter((p) => p.trim() !== ''));
      },
    },
    stderr: { write: () => undefined },
    stdin: Readable.from([]) as Io['stdin'],
    env: {},
    stdoutIsTTY: false,
  };
  const signals = new EventEmitter();
  const exit = runCli(['--config', config, 'serve'], io, [serveCommand(signals)]);
  let url: string | null = null;
  for (let i = 0; i < 500 && url === null; i++) {
    await new Promise((r) => setTimeout(r, 10));
    url = listeningUrl(lines);
  }
  if (url === null) throw new Error('the daemon did not log its address');
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.same(await passdb(url), { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' });
  t.equal((await tdb.sql('SELECT * FROM sasl_log')).length, 0, 'not yet written');
  signals.emit('SIGTERM');
  t.equal(await exit, 0);
  const rows = await tdb.sql<{ username: string; real_rip: string }>('SELECT username, real_rip FROM sasl_log');
  t.same(rows, [{ username: 'alice@example.org', real_rip: '198.51.100.1' }], 'the queue was flushed at shutdown');
  const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.ok(msgs.includes('shutting down') && msgs.includes('stopped'));
  t.equal(signals.listenerCount('SIGTERM'), 0, 'signal listeners removed');
  await t.rejects(fetch(`${url}/healthz`), 'no longer listening');
});

t.test('as a real process: SIGTERM → graceful exit 0', async (t) => {
  const { tdb, config } = await setup(t);
  const main = pathToFileURL(new URL('../../src/cli/main.ts', import.meta.url).pathname).href;
  // Reuse the TypeScript loader this test runs under; nothing else from the runner.
  const loader = process.execArgv.filter((a) => a.includes('typescript') || a === '--enable-source-maps');
  const child = spawn(
    process.execPath,
    // With -e, process.argv is [node, ...args] once `--` is consumed.
    [...loader, '--input-type=module', '-e', `const m = await import(${JSON.stringify(main)}); process.exitCode = await m.runCli(process.argv.slice(1));`, '--', '--config', config, 'serve'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines: string[] = [];
  let stderr = '';
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts.filter((p) => p.trim() !== ''));
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let url: string | null = null;
  for (let i = 0; i < 3000 && url === null && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 20));
    url = listeningUrl(lines);
  }
  if (url === null) throw new Error(`the daemon did not start: ${stderr.slice(0, 2000)}`);
  t.same(await passdb(url), { result: 'ok', user: 'alice@example.org', reason: 'mailcow password' });
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit code 0');
  t.equal((await tdb.sql('SELECT * FROM sasl_log')).length, 1, 'login log flushed before exit');
  t.ok(lines.some((l) => l.includes('"msg":"stopped"')));
});
