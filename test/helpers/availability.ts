/**
 * Issue 16: the daemon under a bounded hostile load, as a real child process (so its
 * CPU time is its own), the attacks, and clients that measure what other users see.
 * Used by test/availability/availability.test.ts (which asserts) and
 * bench/availability.ts (which prints the same figures, before and after, as a table).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { hash } from '../../src/passwords/index.js';
import { cpuSecondsOf, REPO } from './daemon-process.js';

export const ROOT = REPO;

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
  /** The exit code or signal once it has ended, else null. */
  exited(): number | string | null;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Merged over the defaults below (top-level sections replace theirs). */
  config?: Record<string, unknown>;
  /** The daemon's file-descriptor limit (ulimit -n). */
  nofile?: number;
  /** Another tree's built bin/mailauth (the bench's "before"); default: these sources. */
  root?: string;
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

/**
 * `mailauth serve` on 127.0.0.1 with a token, JSON logs at info, no login log. The port is
 * picked free and then given to the daemon, so another process may take it in between:
 * then it tries another.
 */
export async function startDaemon(t: Teardown, databaseUrl: string, opts: StartOptions = {}): Promise<Daemon> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(t, databaseUrl, opts);
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
}

async function startOnce(t: Teardown, databaseUrl: string, opts: StartOptions): Promise<Daemon> {
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
  const cli = ['--config', join(dir, 'config.yaml'), 'serve'];
  const node = opts.root
    ? [join(opts.root, 'bin/mailauth'), ...cli]
    : [...tsLoaderArgs(), '--input-type=module', '--eval', `import(${JSON.stringify(pathToFileURL(join(ROOT, 'src/cli/main.ts')).href)}).then((m) => m.main())`, '--', 'mailauth', ...cli];
  const env = { ...process.env, NODE_OPTIONS: '', MAILAUTH_CONFIG: '', TS_NODE_TRANSPILE_ONLY: '1' };
  const child: ChildProcess =
    opts.nofile === undefined
      ? spawn(process.execPath, node, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('/bin/sh', ['-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, process.execPath, ...node], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 8_000_000) out = out.slice(-4_000_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = (): number | string | null => child.exitCode ?? child.signalCode ?? null;
  const stop = (): Promise<void> =>
    new Promise<void>((done) => {
      const clean = (): void => {
        rmSync(dir, { recursive: true, force: true });
        done();
      };
      if (exited() !== null) return clean();
      child.once('exit', clean);
      child.kill('SIGKILL');
    });
  t.teardown(stop);
  const url = `http://127.0.0.1:${port}`;
  // The sources are compiled at start: on a loaded 2-core box that took over a minute.
  const until = Date.now() + 180_000;
  for (;;) {
    if (exited() !== null) throw new Error(`daemon exited: ${out.slice(-3000)}`);
    const h = await get(url, '/healthz', 1000).catch(() => null);
    if (h?.status === 200) break;
    if (Date.now() > until) throw new Error(`daemon not ready: ${out.slice(-3000)}`);
    await sleep(100);
  }
  return { url, port, pid: child.pid ?? 0, token, log: () => out, exited, cpuSeconds: () => cpuSecondsOf(child.pid ?? 0), stop };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** GET on a fresh connection; rejects on a reset or after `timeoutMs`. */
export function get(url: string, path: string, timeoutMs = 5000, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const req = http.get(`${url}${path}`, { agent: false, timeout: timeoutMs, headers }, (res) => {
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
  passdb(user: string, password: string, ip?: string, timeoutMs?: number): Promise<Answer & { result: string }>;
  close(): void;
}

/** A keep-alive client with the token, like Dovecot's auth workers. */
export function client(d: Daemon, maxSockets = 8): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  return {
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
export async function warmLogins(c: Client, users: ReadonlyArray<readonly [string, string]>, concurrency: number, until: () => boolean): Promise<{ ms: number[]; notOk: string[] }> {
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
          if (r.result !== 'ok') notOk.push(`${u}: ${r.result}`);
        } catch (err) {
          notOk.push(`${u}: ${(err as Error).message}`);
          ms.push(15_000);
        }
        await sleep(5);
      }
    }),
  );
  return { ms, notOk };
}

/** /healthz on a fresh connection every `everyMs` until `until()`: the slowest answer, and failures. */
export async function healthProbe(url: string, everyMs: number, until: () => boolean): Promise<{ worst: number; failures: number; count: number; errors: string[] }> {
  let worst = 0;
  let failures = 0;
  let count = 0;
  const errors: string[] = [];
  while (!until()) {
    count++;
    try {
      const r = await get(url, '/healthz', 5000);
      worst = Math.max(worst, r.ms);
      if (r.status !== 200) {
        failures++;
        errors.push(`HTTP ${r.status}`);
      }
    } catch (err) {
      failures++;
      worst = Math.max(worst, 5000);
      errors.push((err as Error).message);
    }
    await sleep(everyMs);
  }
  return { worst, failures, count, errors };
}

/** The daemon's CPU use (cores) over `ms`. */
export async function cpuOver(d: Daemon, ms: number): Promise<number> {
  const a = d.cpuSeconds();
  const t0 = performance.now();
  await sleep(ms);
  return (d.cpuSeconds() - a) / ((performance.now() - t0) / 1000);
}

// ---------------------------------------------------------------------------------------------
// The world the attacks run in, and the attacks.

type Pair = readonly [string, string];

export interface AttackWorld {
  /** Cached users (bcrypt cost 10) whose warm logins go on during every attack. */
  warm: Pair[];
  /** Cached users (bcrypt cost 10) who log in once before the cache flush and once after it. */
  dormant: Pair[];
  /** Targets of the guess floods. */
  shaVictims: string[];
  bcryptVictims: string[];
  cheapVictims: string[];
  /** Mailboxes whose stored hash asks for more work than auth.hash_limits allows. */
  overCeiling: string[];
  /** Users not cached anywhere, `count` per call, who log in correctly after an attack. */
  fresh(scheme: 'SHA512-CRYPT' | 'BLF-CRYPT', count: number): Pair[];
}

interface Seeders {
  seedDomain(tdb: never, domain: string): Promise<void>;
  seedMailbox(tdb: never, username: string, hash: string): Promise<void>;
}

const DOMAIN = 'avail.example';
const crypt64 = (n: number): string => Array.from(randomBytes(n), (b) => './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'[b & 63]).join('');
const guess = (): string => `guess-${randomBytes(9).toString('base64url')}`;
/** A different documentation-range address per request: an attacker with many addresses. */
const attackerIp = (n: number): string => `203.0.113.${n % 250}`;

/**
 * Seeds the mailboxes (the database must be migrated): every hash is real except the
 * over-ceiling ones, which only need to look right (checking them would take seconds).
 */
export async function seedAttackWorld(tdb: unknown, s: Seeders, opts: { fresh?: number } = {}): Promise<AttackWorld> {
  const db = tdb as never;
  await s.seedDomain(db, DOMAIN);
  const pw = (): string => randomBytes(12).toString('base64url');
  const make = async (prefix: string, n: number, scheme: string): Promise<Pair[]> =>
    Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const user = `${prefix}${i}@${DOMAIN}`;
        const password = pw();
        await s.seedMailbox(db, user, await hash(scheme, password));
        return [user, password] as const;
      }),
    );
  // Victims share one stored hash per scheme: every distinct guess costs a full check all the same.
  const victims = async (prefix: string, n: number, scheme: string): Promise<string[]> => {
    const stored = await hash(scheme, pw());
    const users = Array.from({ length: n }, (_, i) => `${prefix}${i}@${DOMAIN}`);
    for (const u of users) await s.seedMailbox(db, u, stored);
    return users;
  };
  const freshCount = opts.fresh ?? 12;
  const warm = await make('warm', 20, 'BLF-CRYPT');
  const dormant = await make('dormant', 20, 'BLF-CRYPT');
  const freshPools = { 'SHA512-CRYPT': await make('freshsha', freshCount, 'SHA512-CRYPT'), 'BLF-CRYPT': await make('freshbf', freshCount, 'BLF-CRYPT') };
  const shaVictims = await victims('shavictim', 50, 'SHA512-CRYPT');
  const bcryptVictims = await victims('bfvictim', 50, 'BLF-CRYPT');
  const cheapVictims = await victims('cheapvictim', 10, 'SSHA256');
  const overCeiling = [`costly-bcrypt@${DOMAIN}`, `costly-sha@${DOMAIN}`];
  // bcrypt cost 18 (~4 min of one core on this VM for cost 10 × 256) and SHA-crypt at the hard cap.
  await s.seedMailbox(db, overCeiling[0] as string, `{BLF-CRYPT}$2y$18$${crypt64(53)}`);
  await s.seedMailbox(db, overCeiling[1] as string, `{SHA512-CRYPT}$6$rounds=1000000$${crypt64(16)}$${crypt64(86)}`);
  return {
    warm,
    dormant,
    shaVictims,
    bcryptVictims,
    cheapVictims,
    overCeiling,
    fresh(scheme, count) {
      const pool = freshPools[scheme];
      if (pool.length < count) throw new Error(`seedAttackWorld: only ${pool.length} fresh ${scheme} users left (raise opts.fresh)`);
      return pool.splice(0, count);
    },
  };
}

export interface AttackReport {
  name: string;
  quiet: { warmP99: number; warmCount: number; healthWorst: number };
  during: { warmP99: number; warmP50: number; warmCount: number; warmNotOk: string[]; healthWorst: number; healthFailures: number; healthErrors: string[]; healthCount: number; seconds: number };
  attack: { sent: number; answered: number; ok: number; results: Record<string, number>; worstMs: number };
  after: { freshCount: number; freshNotOk: string[]; freshWorstMs: number; cpuCores: number; bcryptMisses: number };
}

interface AttackTally {
  sent: number;
  answered: number;
  ok: number;
  results: Record<string, number>;
  worstMs: number;
}

function tally(): AttackTally & { add(result: string, ms: number): void } {
  const t: AttackTally = { sent: 0, answered: 0, ok: 0, results: {}, worstMs: 0 };
  return Object.assign(t, {
    add(result: string, ms: number) {
      t.answered++;
      if (result === 'ok') t.ok++;
      t.results[result] = (t.results[result] ?? 0) + 1;
      t.worstMs = Math.max(t.worstMs, ms);
    },
  });
}

/** How long the quiet run before each attack lasts. */
export const QUIET_MS = 1500;
/** Warm logins of others in flight at once, during the quiet run and the attack. */
const WARM_CONCURRENCY = 4;

/** A verify-cache counter from /metrics (the token opens it). */
async function verifyMisses(d: Daemon): Promise<number> {
  const r = await get(d.url, '/metrics', 5000, { 'x-mailauth-token': d.token });
  const m = /^mailauth_cache_misses_total\{cache="verify"\} (\d+)/m.exec(r.body);
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * The frame every attack runs in: warm up, a quiet run, the attack with warm logins of others
 * and /healthz probes beside it, then correct logins of uncached users and the daemon's CPU.
 */
async function underAttack(
  name: string,
  d: Daemon,
  world: AttackWorld,
  fresh: Pair[],
  attack: (t: ReturnType<typeof tally>) => Promise<void>,
  afterAttack?: (report: AttackReport) => Promise<void>,
): Promise<AttackReport> {
  const c = client(d, 8);
  try {
    for (const [u, p] of world.warm) await c.passdb(u, p);
    let stop = false;
    const quietEnd = performance.now() + QUIET_MS;
    const [qw, qh] = await Promise.all([
      warmLogins(c, world.warm, WARM_CONCURRENCY, () => performance.now() > quietEnd),
      healthProbe(d.url, 100, () => performance.now() > quietEnd),
    ]);
    const tl = tally();
    const t0 = performance.now();
    const [dw, dh] = await Promise.all([
      warmLogins(c, world.warm, WARM_CONCURRENCY, () => stop),
      healthProbe(d.url, 150, () => stop),
      attack(tl).finally(() => (stop = true)),
    ]);
    const seconds = (performance.now() - t0) / 1000;
    // Correct logins of users nobody has seen yet, right after the attack's last answer.
    const freshNotOk: string[] = [];
    let freshWorstMs = 0;
    for (const [u, p] of fresh) {
      const r = await c.passdb(u, p).catch((err: Error) => ({ result: err.message, ms: 15_000 }));
      freshWorstMs = Math.max(freshWorstMs, r.ms);
      if (r.result !== 'ok') freshNotOk.push(`${u}: ${r.result}`);
    }
    const report: AttackReport = {
      name,
      quiet: { warmP99: percentile(qw.ms, 99), warmCount: qw.ms.length, healthWorst: qh.worst },
      during: {
        warmP99: percentile(dw.ms, 99),
        warmP50: percentile(dw.ms, 50),
        warmCount: dw.ms.length,
        warmNotOk: dw.notOk.slice(0, 10),
        healthWorst: dh.worst,
        healthFailures: dh.failures,
        healthErrors: dh.errors.slice(0, 5),
        healthCount: dh.count,
        seconds,
      },
      attack: { sent: tl.sent, answered: tl.answered, ok: tl.ok, results: tl.results, worstMs: tl.worstMs },
      after: { freshCount: fresh.length, freshNotOk, freshWorstMs, cpuCores: Number.NaN, bcryptMisses: 0 },
    };
    if (afterAttack) await afterAttack(report);
    await sleep(1000);
    report.after.cpuCores = await cpuOver(d, 1000);
    return report;
  } finally {
    c.close();
  }
}

/** `clients` loops of distinct wrong guesses, each on its own connection, for `ms`. */
async function guessLoops(d: Daemon, users: string[], clients: number, ms: number, tl: ReturnType<typeof tally>): Promise<void> {
  const end = performance.now() + ms;
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = client(d, 1);
      try {
        while (performance.now() < end) {
          const i = n++;
          tl.sent++;
          const r = await c.passdb(users[i % users.length] as string, guess(), attackerIp(i)).catch((err: Error) => ({ result: err.message, ms: 15_000 }));
          tl.add(r.result, r.ms);
        }
      } finally {
        c.close();
      }
    }),
  );
}

export const ATTACKS = {
  /** 64 clients, distinct wrong guesses against 50 SHA512-crypt (5,000 rounds) mailboxes. */
  shaCryptFlood: (d: Daemon, world: AttackWorld, o: { clients?: number; ms?: number } = {}): Promise<AttackReport> =>
    underAttack('SHA-crypt guess flood', d, world, world.fresh('SHA512-CRYPT', 3), (tl) => guessLoops(d, world.shaVictims, o.clients ?? 64, o.ms ?? 3000, tl)),

  /** `parallel` distinct wrong bcrypt (cost 10) guesses sent at once, in `waves` waves. */
  bcryptFlood: (d: Daemon, world: AttackWorld, o: { parallel?: number; waves?: number } = {}): Promise<AttackReport> =>
    underAttack('bcrypt guess flood', d, world, world.fresh('BLF-CRYPT', 3), async (tl) => {
      const parallel = o.parallel ?? 450;
      const c = client(d, parallel);
      try {
        for (let w = 0; w < (o.waves ?? 1); w++) {
          await Promise.all(
            Array.from({ length: parallel }, async (_, i) => {
              tl.sent++;
              const r = await c.passdb(world.bcryptVictims[i % world.bcryptVictims.length] as string, guess(), attackerIp(i)).catch((err: Error) => ({ result: err.message, ms: 15_000 }));
              tl.add(r.result, r.ms);
            }),
          );
        }
      } finally {
        c.close();
      }
    }),

  /** Guesses against mailboxes whose stored hash is above auth.hash_limits, 4 clients for `ms`. */
  costCeiling: (d: Daemon, world: AttackWorld, o: { ms?: number } = {}): Promise<AttackReport> =>
    underAttack('hash above the cost ceiling', d, world, world.fresh('BLF-CRYPT', 3), (tl) => guessLoops(d, world.overCeiling, 4, o.ms ?? 2500, tl)),

  /**
   * `count` distinct cheap (SSHA256) wrong guesses, 32 at a time; then the dormant users, who
   * logged in once before, log in again: `after.bcryptMisses` counts the verify-cache misses
   * that cost them (0 when the flood could not push them out).
   */
  cacheFlush: async (d: Daemon, world: AttackWorld, count: number): Promise<AttackReport> => {
    const c = client(d, 4);
    try {
      for (const [u, p] of world.dormant) await c.passdb(u, p);
    } finally {
      c.close();
    }
    return underAttack(
      'cheap-guess cache flush',
      d,
      world,
      [],
      async (tl) => {
        const flood = client(d, 32);
        try {
          let n = 0;
          await Promise.all(
            Array.from({ length: 32 }, async () => {
              while (n < count) {
                const i = n++;
                tl.sent++;
                const r = await flood.passdb(world.cheapVictims[i % world.cheapVictims.length] as string, guess(), attackerIp(i)).catch((err: Error) => ({ result: err.message, ms: 15_000 }));
                tl.add(r.result, r.ms);
              }
            }),
          );
        } finally {
          flood.close();
        }
      },
      async (report) => {
        const before = await verifyMisses(d);
        const c2 = client(d, 4);
        const started = performance.now();
        try {
          for (const [u, p] of world.dormant) {
            const r = await c2.passdb(u, p);
            if (r.result !== 'ok') report.after.freshNotOk.push(`${u}: ${r.result}`);
          }
        } finally {
          c2.close();
        }
        report.after.freshCount = world.dormant.length;
        report.after.freshWorstMs = performance.now() - started;
        report.after.bcryptMisses = (await verifyMisses(d)) - before;
      },
    );
  },

  /**
   * `sockets` idle keep-alive connections held open for `ms` (half after a `GET /healthz`,
   * half after a POST refused with 401), each reopened when the daemon closes it.
   */
  idleSockets: (d: Daemon, world: AttackWorld, sockets: number, o: { ms?: number } = {}): Promise<AttackReport> =>
    underAttack('idle-connection exhaustion', d, world, world.fresh('BLF-CRYPT', 3), async (tl) => {
      const end = performance.now() + (o.ms ?? 4000);
      const open = new Set<net.Socket>();
      const hold = async (i: number): Promise<void> => {
        while (performance.now() < end) {
          tl.sent++;
          await new Promise<void>((done) => {
            const s = net.connect(d.port, '127.0.0.1');
            open.add(s);
            let answered = false;
            const finish = (): void => {
              open.delete(s);
              s.destroy();
              done();
            };
            s.on('connect', () =>
              s.write(
                i % 2 === 0
                  ? 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
                  : 'POST /v1/passdb HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Mailauth-Token: wrong\r\n\r\n{}',
              ),
            );
            s.on('data', (b: Buffer) => {
              if (!answered) {
                answered = true;
                const status = /^HTTP\/1\.1 (\d{3})/.exec(b.toString('latin1'))?.[1] ?? 'garbled';
                tl.add(`http_${status}`, 0);
              }
            });
            s.on('close', finish);
            s.on('error', finish);
            setTimeout(finish, Math.max(0, end - performance.now())).unref();
          });
          // A closed socket is reopened, but not in a busy loop.
          await sleep(50);
        }
      };
      await Promise.all(Array.from({ length: sockets }, (_, i) => hold(i)));
      for (const s of open) s.destroy();
    }),
};
