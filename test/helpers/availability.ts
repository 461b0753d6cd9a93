/**
 * Issue 16: the daemon under a bounded hostile load, as a real child process (so its
 * CPU time is its own), and clients that measure what other users see. Used by
 * test/availability/*.test.ts; bench/availability.ts prints the same figures as a table.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Daemon {
  url: string;
  port: number;
  pid: number;
  token: string;
  /** Everything the daemon logged so far (JSON lines). */
  log(): string;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

function tsLoaderArgs(): string[] {
  const fromTap = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  if (fromTap.length) return fromTap;
  return [`--import=${pathToFileURL(join(ROOT, 'node_modules/@tapjs/typescript/dist/esm/import.mjs')).href}`];
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => done(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * `mailauth serve` from the sources, on 127.0.0.1 with a token. `nofile` runs it under
 * that file-descriptor limit. `config` is merged over the test defaults and must only
 * use keys that main also knows when a case has to be checked against main.
 */
export async function startDaemon(t: Teardown, databaseUrl: string, opts: { config?: Record<string, unknown>; nofile?: number } = {}): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'ma-avail-'));
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const tree = {
    listen: { address: `127.0.0.1:${port}`, token_file: join(dir, 'token') },
    database: { url: databaseUrl, pool_size: 8 },
    log: { level: 'info', format: 'json' },
    login_log: { enabled: false },
    ...opts.config,
  };
  writeFileSync(join(dir, 'config.yaml'), YAML.stringify(tree));
  const node = [...tsLoaderArgs(), '--input-type=module', '--eval', `import(${JSON.stringify(pathToFileURL(join(ROOT, 'src/cli/main.ts')).href)}).then((m) => m.main())`, '--', 'mailauth', '--config', join(dir, 'config.yaml'), 'serve'];
  const env = { ...process.env, NODE_OPTIONS: '', UV_THREADPOOL_SIZE: '4', TS_NODE_TRANSPILE_ONLY: '1' };
  const child: ChildProcess =
    opts.nofile === undefined
      ? spawn(process.execPath, node, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('/bin/sh', ['-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, process.execPath, ...node], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
  });
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const stop = (): Promise<void> =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        rmSync(dir, { recursive: true, force: true });
        done();
        return;
      }
      child.once('exit', () => {
        rmSync(dir, { recursive: true, force: true });
        done();
      });
      child.kill('SIGKILL');
    });
  t.teardown(stop);
  const url = `http://127.0.0.1:${port}`;
  // ts-node compiles the sources first: on a loaded 2-core box that took over a minute.
  const until = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited: ${out.slice(-3000)}`);
    const h = await get(url, '/healthz', 1000).catch(() => null);
    if (h?.status === 200) break;
    if (Date.now() > until) throw new Error(`daemon not ready: ${out.slice(-3000)}`);
    await sleep(100);
  }
  return { url, port, pid: child.pid ?? 0, token, log: () => out, cpuSeconds: () => cpuSecondsOf(child.pid ?? 0), stop };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** GET with a fresh connection; rejects on a reset or after `timeoutMs`. */
export function get(url: string, path: string, timeoutMs = 5000): Promise<Answer> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const req = http.get(`${url}${path}`, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => done({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
      res.on('error', fail);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
  });
}

export interface Client {
  agent: http.Agent;
  passdb(user: string, password: string, ip?: string, timeoutMs?: number): Promise<Answer & { result: string }>;
  close(): void;
}

/** A keep-alive client with the token, like Dovecot's auth workers. */
export function client(d: Daemon, maxSockets = 8): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  return {
    agent,
    passdb(user, password, ip = '198.51.100.7', timeoutMs = 15_000) {
      const body = JSON.stringify({ user, password, service: 'imap', remote_ip: ip });
      const started = performance.now();
      return new Promise((done, fail) => {
        const req = http.request(
          `${d.url}/v1/passdb`,
          { method: 'POST', agent, timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-mailauth-token': d.token } },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => {
              let result = `http_${res.statusCode}`;
              try {
                result = (JSON.parse(text) as { result?: string }).result ?? result;
              } catch {
                // not JSON
              }
              done({ status: res.statusCode ?? 0, body: text, ms: performance.now() - started, result });
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', fail);
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}

/**
 * Warm logins of other users, `concurrency` at a time until `until()` says stop: every
 * answer's latency, and any answer that is not `ok` (they are all correct and cached).
 */
export async function warmLogins(c: Client, users: Array<[string, string]>, concurrency: number, until: () => boolean): Promise<{ ms: number[]; notOk: string[] }> {
  const ms: number[] = [];
  const notOk: string[] = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!until()) {
        const [u, p] = users[i++ % users.length] as [string, string];
        try {
          const r = await c.passdb(u, p);
          ms.push(r.ms);
          if (r.result !== 'ok') notOk.push(r.result);
        } catch (err) {
          notOk.push(String((err as Error).message));
          ms.push(15_000);
        }
        await sleep(5);
      }
    }),
  );
  return { ms, notOk };
}

/** /healthz on a fresh connection every `everyMs` until `until()`: the slowest answer, and failures. */
export async function healthProbe(url: string, everyMs: number, until: () => boolean): Promise<{ worst: number; failures: number; count: number }> {
  let worst = 0;
  let failures = 0;
  let count = 0;
  while (!until()) {
    count++;
    try {
      const r = await get(url, '/healthz', 5000);
      worst = Math.max(worst, r.ms);
      if (r.status !== 200) failures++;
    } catch {
      failures++;
      worst = Math.max(worst, 5000);
    }
    await sleep(everyMs);
  }
  return { worst, failures, count };
}

/** The daemon's CPU use (cores) over `ms`. */
export async function cpuOver(d: Daemon, ms: number): Promise<number> {
  const a = d.cpuSeconds();
  const t0 = performance.now();
  await sleep(ms);
  return (d.cpuSeconds() - a) / ((performance.now() - t0) / 1000);
}
