/**
 * A private MariaDB server a test starts, breaks and stops: `mariadbd` from the
 * installed package as a child process, on its own loopback port (picked by the
 * OS) with its own data directory in a temp dir, so a fault test can pause it
 * (SIGSTOP/SIGCONT), kill it, stop it cleanly (then it refuses connections) and
 * start it again on the same port and data directory — without touching the
 * shared server on 3306 or any system service.
 *
 * Initialising a data directory takes ~2 s of `mariadb-install-db`; it is done
 * once per machine and package version into a template under the temp dir and
 * copied (~0.2 s) for each server. Every server is stopped (SIGKILL if a clean
 * stop hangs) and its directory removed in the test's teardown.
 *
 *   if (!requirePrivateMariadb(t)) return;
 *   const m = await startPrivateMariadb(t);
 *   const tdb = await m.createDatabase(t);          // same shape as createTestDatabase()
 *   m.pause(); ... m.resume();                      // stalled server: connects hang
 *   await m.stop(); ... await m.start();            // refused connections, then back
 *   await m.kill(); ... await m.start();            // crash, recovery on restart
 *   await m.status('Connections');                  // SHOW GLOBAL STATUS counters
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { buildConfig } from '../../src/config/index.js';
import type { DatabaseConfig } from '../../src/config/index.js';
import { createDb, migrate } from '../../src/db/index.js';
import type { TestDatabase } from './db.js';
import { freePort } from './free-port.js';
import { requireTool } from './require-tool.js';
import type { TapLike } from './require-tool.js';

const MARIADBD = ['/usr/sbin/mariadbd', '/usr/sbin/mysqld'];
const INSTALL_DB = ['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db'];

interface Teardown {
  teardown(fn: () => unknown): void;
}

function firstExisting(paths: string[]): string | null {
  return paths.find((p) => existsSync(p)) ?? null;
}

/** Why a private MariaDB cannot run here, or null. */
export function privateMariadbMissing(): string | null {
  if (!firstExisting(MARIADBD)) return `mariadbd not found (${MARIADBD.join(', ')}); install mariadb-server`;
  if (!firstExisting(INSTALL_DB)) return `mariadb-install-db not found (${INSTALL_DB.join(', ')}); install mariadb-server`;
  return null;
}

/**
 * Gate a test file: `if (!requirePrivateMariadb(t)) return;`. In CI (CI=true)
 * a missing server binary is a failure, elsewhere a loud skip.
 */
export function requirePrivateMariadb(t: TapLike): boolean {
  return requireTool(t, 'private-MariaDB', privateMariadbMissing());
}

/** Small and fast: these servers hold a handful of rows and must start in well under a second. */
const SERVER_ARGS = [
  '--skip-name-resolve',
  '--bind-address=127.0.0.1',
  '--innodb-buffer-pool-size=16M',
  '--innodb-log-file-size=4M',
  '--innodb-flush-log-at-trx-commit=0',
  '--skip-innodb-doublewrite',
  '--performance-schema=OFF',
  '--skip-log-bin',
  '--max-connections=200',
  '--max-connect-errors=1000000000',
  '--character-set-server=utf8mb4',
  '--collation-server=utf8mb4_unicode_ci',
];
const INIT_ARGS = ['--innodb-log-file-size=4M', '--innodb-data-file-path=ibdata1:4M:autoextend', '--innodb-buffer-pool-size=16M'];

function serverVersion(bin: string): string {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return (r.stdout || 'unknown').trim().replace(/[^A-Za-z0-9.]+/g, '_').slice(0, 80);
}

/**
 * The initialised template data directory: built once (under a lock file, so
 * parallel test files build it once) and reused until the package changes.
 */
function templateDir(): string {
  const mariadbd = firstExisting(MARIADBD)!;
  const installDb = firstExisting(INSTALL_DB)!;
  const root = join(tmpdir(), 'mailauth-private-mariadb');
  mkdirSync(root, { recursive: true });
  const dir = join(root, `template-${serverVersion(mariadbd)}`);
  if (existsSync(join(dir, 'mysql', 'user.frm')) || existsSync(join(dir, 'mysql', 'global_priv.frm'))) return dir;
  const building = mkdtempSync(join(root, 'building-'));
  const data = join(building, 'data');
  const r = spawnSync(
    installDb,
    ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', `--user=${process.getuid?.() === 0 ? 'root' : (process.env.USER ?? 'root')}`, ...INIT_ARGS],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (r.status !== 0) {
    rmSync(building, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || '').slice(-2000)}`);
  }
  try {
    renameSync(data, dir); // atomic: a racing builder's rename fails and its copy is dropped
  } catch {
    /* another test file won the race; use its template */
  }
  rmSync(building, { recursive: true, force: true });
  return dir;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Servers left behind by a test process that died without its teardown (killed by a
 * timeout): each directory records its owner's pid; when that process is gone, the
 * server it started (pid file, checked against its command line) is killed and the
 * directory removed. Servers of running test processes are not touched.
 */
function sweepOrphans(): void {
  const root = tmpdir();
  let names: string[] = [];
  try {
    names = readdirSync(root).filter((n) => n.startsWith('mailauth-pmdb-'));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(root, name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8'));
    } catch {
      continue; // being set up, or not ours to judge
    }
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) continue;
    try {
      const pid = Number(readFileSync(join(dir, 'mysqld.pid'), 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`--datadir=${join(dir, 'data')}`)) process.kill(pid, 'SIGKILL');
    } catch {
      /* no server running */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every server this process started, killed if the process exits without its teardown. */
const running = new Set<ChildProcess>();
let exitHook = false;
function killOnExit(proc: ChildProcess): void {
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of running) p.kill('SIGKILL');
  });
}

export type PrivateMariadbState = 'running' | 'paused' | 'stopped';

export interface PrivateMariadb {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly datadir: string;
  /** mysql://root@127.0.0.1:PORT/mysql (root, empty password). */
  readonly url: string;
  /** The URL of a database on this server. */
  urlFor(database: string): string;
  readonly state: PrivateMariadbState;
  /** The server process id while it runs (paused included). */
  readonly pid: number | null;
  /** SIGSTOP: the kernel still accepts TCP connections, but nothing answers (a stalled database). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** SIGKILL (a crash) and wait for the exit; connections are then refused. */
  kill(): Promise<void>;
  /** Clean shutdown (SIGTERM) and wait for the exit; connections are then refused. */
  stop(): Promise<void>;
  /** Start again on the same port and data directory (after stop/kill); resolves when it answers. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** One query on a fresh root connection (closed after); for fixtures and assertions. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A SHOW GLOBAL STATUS counter as a number (e.g. 'Connections', 'Aborted_connects', 'Threads_connected'). */
  status(name: string): Promise<number>;
  /**
   * A migrated mailauth database on this server, in the same shape as
   * createTestDatabase() (so seedDomain/seedMailbox/testConfig work); closed in teardown.
   */
  createDatabase(t: Teardown, opts?: { migrate?: boolean; name?: string; poolSize?: number; connectTimeoutMs?: number; queryTimeoutMs?: number }): Promise<TestDatabase>;
  /** The server's error log so far (for a failing test's diagnostics). */
  log(): string;
}

export interface StartPrivateMariadbOptions {
  /** Extra mariadbd arguments (e.g. '--max-connections=20'). */
  args?: string[];
  /** How long start() waits for the server to answer; default 30 s. */
  startTimeoutMs?: number;
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Start a private MariaDB; it is stopped and its directory removed in `t`'s teardown.
 * Call `requirePrivateMariadb(t)` first.
 */
export async function startPrivateMariadb(t: Teardown, opts: StartPrivateMariadbOptions = {}): Promise<PrivateMariadb> {
  const mariadbd = firstExisting(MARIADBD);
  if (!mariadbd) throw new Error(privateMariadbMissing() ?? 'mariadbd missing');
  const template = templateDir();
  sweepOrphans();
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-pmdb-'));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const datadir = join(dir, 'data');
  cpSync(template, datadir, { recursive: true });
  const socket = join(dir, 'mysqld.sock');
  const errorLog = join(dir, 'error.log');
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  let port = await freePort();
  let child: ChildProcess | null = null;
  let state: PrivateMariadbState = 'stopped';
  let disposed = false;

  const args = (): string[] => [
    '--no-defaults',
    `--datadir=${datadir}`,
    `--port=${port}`,
    `--socket=${socket}`,
    `--pid-file=${join(dir, 'mysqld.pid')}`,
    `--log-error=${errorLog}`,
    ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ...SERVER_ARGS,
    ...(opts.args ?? []),
  ];

  const readLog = (): string => {
    try {
      return readFileSync(errorLog, 'utf8');
    } catch {
      return '';
    }
  };

  const connect = (connectTimeout = 2000) =>
    mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout, multipleStatements: false });

  const launch = async (): Promise<void> => {
    const proc = spawn(mariadbd, args(), { stdio: ['ignore', 'ignore', 'pipe'] });
    killOnExit(proc);
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 16_000) stderr += d.toString();
    });
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        child = null;
        throw new Error(`mariadbd exited during start (${proc.exitCode ?? proc.signalCode}): ${stderr.slice(-1000)}${readLog().slice(-2000)}`);
      }
      try {
        const c = await connect(1000);
        await c.query('SELECT 1');
        await c.end();
        state = 'running';
        return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        await waitExit(proc, 5000);
        child = null;
        throw new Error(`mariadbd did not answer on 127.0.0.1:${port} within ${startTimeoutMs} ms: ${readLog().slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  let everStarted = false;
  const start = async (): Promise<void> => {
    if (disposed) throw new Error('private MariaDB already torn down');
    if (child) throw new Error(`private MariaDB is ${state}, not stopped`);
    // The OS-picked port may be taken between picking and binding: on the first start only, pick again.
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        everStarted = true;
        return;
      } catch (err) {
        if (everStarted || attempt >= 3 || !/already in use|Can't start server/i.test(readLog())) throw err;
        port = await freePort();
      }
    }
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    proc.kill('SIGKILL');
    await waitExit(proc, 10_000);
    child = null;
    state = 'stopped';
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    if (state === 'paused') proc.kill('SIGCONT');
    proc.kill('SIGTERM');
    if (!(await waitExit(proc, 20_000))) {
      proc.kill('SIGKILL');
      await waitExit(proc, 10_000);
    }
    child = null;
    state = 'stopped';
  };

  const query = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => {
    const c = await connect();
    try {
      const [rows] = await c.query(sql, params);
      return rows as T[];
    } finally {
      await c.end().catch(() => c.destroy());
    }
  };

  const urlFor = (database: string): string => `mysql://root@127.0.0.1:${port}/${database}`;

  const dispose = async (): Promise<void> => {
    if (disposed) return;
    await kill(); // the data directory is thrown away: no need for a clean shutdown
    disposed = true;
    rmSync(dir, { recursive: true, force: true });
  };
  t.teardown(dispose);

  await start();

  const handle: PrivateMariadb = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    datadir,
    get url() {
      return urlFor('mysql');
    },
    urlFor,
    get state() {
      return state;
    },
    get pid() {
      return child?.pid ?? null;
    },
    pause() {
      if (!child || state !== 'running') throw new Error(`cannot pause a ${state} server`);
      child.kill('SIGSTOP');
      state = 'paused';
    },
    resume() {
      if (!child || state !== 'paused') throw new Error(`cannot resume a ${state} server`);
      child.kill('SIGCONT');
      state = 'running';
    },
    kill,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    query,
    async status(name: string) {
      const rows = await query<{ Variable_name: string; Value: string }>('SHOW GLOBAL STATUS LIKE ?', [name]);
      if (!rows[0]) throw new Error(`no status variable ${name}`);
      return Number(rows[0].Value);
    },
    async createDatabase(tt, o = {}) {
      const name = o.name ?? `mailauth_p_${randomBytes(4).toString('hex')}`;
      await query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
      const url = urlFor(name);
      const base = buildConfig({ database: { url }, log: { level: 'silent', format: 'json' } }, { env: {} }).database;
      const dbConfig: DatabaseConfig = {
        ...base,
        poolSize: o.poolSize ?? 4,
        connectTimeoutMs: o.connectTimeoutMs ?? 3000,
        queryTimeoutMs: o.queryTimeoutMs ?? 10_000,
      };
      const db = createDb(dbConfig);
      // The server may be paused or gone at teardown: don't wait for a polite goodbye.
      tt.teardown(() => Promise.race([db.close(), new Promise((r) => setTimeout(r, 2000))]));
      if (o.migrate !== false) await migrate(db);
      return { name, url, db, dbConfig, sql: async (q, params = []) => (await db.rows(q, params)) as never };
    },
    log: readLog,
  };
  return handle;
}
