/**
 * A private Dovecot instance per call: its own temp base_dir, state_dir, log and
 * instance_name, IMAP (and POP3) on a free loopback port, and lua/mailauth.lua
 * (copied into the temp dir, readable by `dovecot`) as passdb and userdb. The
 * system Dovecot and /etc/dovecot are never touched.
 *
 * Dovecot runs its master as root and drops privileges per service, so these
 * tests need root. `requireDovecot(t)` fails in CI and skips loudly elsewhere
 * when something is missing.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const LUA_SCRIPT = join(REPO_ROOT, 'lua/mailauth.lua');

const LUA_MODULE = '/usr/lib/dovecot/modules/auth/libauthdb_lua.so';
/** A Lua 5.4 C module in Debian's multiarch library directory (x86_64-linux-gnu, aarch64-linux-gnu, ...). */
function luaCModule(rel: string): boolean {
  try {
    return readdirSync('/usr/lib').some((d) => existsSync(`/usr/lib/${d}/lua/5.4/${rel}`));
  } catch {
    return false;
  }
}

interface TapLike {
  teardown(fn: () => unknown): void;
  fail(message: string): void;
  plan(n: number, reason?: string): void;
  end(): void;
}

/** Why the Dovecot end-to-end tests cannot run here, or null when they can. */
export function dovecotMissing(): string | null {
  for (const tool of ['dovecot', 'doveadm']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      return `${tool} not found (apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-auth-lua lua-socket lua-cjson)`;
    }
  }
  if (!existsSync(LUA_MODULE)) return `${LUA_MODULE} missing (apt-get install dovecot-auth-lua)`;
  if (!existsSync('/usr/share/lua/5.4/socket/http.lua') || !luaCModule('socket/unix.so')) return 'luasocket for Lua 5.4 missing (apt-get install lua-socket)';
  if (!luaCModule('cjson.so')) return 'lua-cjson for Lua 5.4 missing (apt-get install lua-cjson)';
  if (process.getuid?.() !== 0) return 'a private Dovecot instance needs root (its master drops privileges per service)';
  return null;
}

/**
 * Gate a Dovecot test file: `if (requireDovecot(t)) await main();`.
 * In CI (CI=true) a missing prerequisite is a failure, elsewhere a loud skip.
 */
export function requireDovecot(t: TapLike): boolean {
  const why = dovecotMissing();
  if (why === null) return true;
  if (process.env.CI === 'true') {
    t.fail(`Dovecot end-to-end prerequisites missing in CI: ${why}`);
    t.end();
    return false;
  }
  process.stderr.write(`\n*** SKIPPING Dovecot end-to-end tests: ${why} ***\n\n`);
  t.plan(0, `Dovecot end-to-end tests skipped: ${why}`);
  return false;
}

export interface LuaSettings {
  /** http://127.0.0.1:PORT or unix:/path */
  url: string;
  tokenFile?: string;
  timeout?: number;
  httpClient?: 'builtin' | 'luasocket' | 'dovecot';
}

export interface StartDovecotOptions {
  /** The settings file the script reads (through import_environment MAILAUTH_LUA_CONFIG). */
  lua: LuaSettings | { raw: string };
  /** Lua script to copy in; default lua/mailauth.lua. */
  script?: string;
  /** 'lua' → our auth_userdb_lookup (+ uid/gid/home overrides); 'static' → static userdb. */
  userdb?: 'lua' | 'static';
  /** auth_cache_size, e.g. '1M'; default 0 (off). */
  cacheSize?: string;
  cacheTtl?: string;
  cacheNegativeTtl?: string;
  /** The passdb cache_key argument; default %u%s (mailauth's answer depends on the service). */
  cacheKey?: string;
  /** auth_worker_max_count */
  workers?: number;
  /** Adds POP3 next to IMAP. */
  pop3?: boolean;
  /** Appended verbatim at the end of dovecot.conf. */
  extraConfig?: string;
}

export interface AuthTestResult {
  ok: boolean;
  exitCode: number;
  output: string;
  /** doveadm's extra fields, e.g. { code: 'temp_fail' } or { user: 'x' } */
  fields: Record<string, string>;
}

export interface DovecotInstance {
  dir: string;
  configPath: string;
  logPath: string;
  /** The settings file the Lua script reads; rewrite it to change settings (read once per Lua state). */
  luaConfigPath: string;
  imapPort: number;
  pop3Port: number | null;
  /** `doveadm -c CONF auth test -x service=… -x rip=… USER PASS` (argv password: tests only). */
  doveadmAuthTest(user: string, password: string, opts?: { service?: string; remoteIp?: string }): Promise<AuthTestResult>;
  /** `doveadm -c CONF auth lookup USER` (a passdb credential lookup) */
  doveadmAuthLookup(user: string): Promise<{ exitCode: number; output: string }>;
  /** `doveadm -c CONF user USER` (a userdb lookup) */
  doveadmUser(user: string): Promise<{ exitCode: number; output: string; fields: Record<string, string> }>;
  /** Raw IMAP over node:net: ID (unique x-originating-ip) then LOGIN; returns the tagged LOGIN response line. */
  imapLogin(user: string, password: string, opts?: { remoteIp?: string }): Promise<string>;
  /** Raw POP3 USER/PASS; returns the response line to PASS. */
  pop3Login(user: string, password: string): Promise<string>;
  /** `doveadm -c CONF auth cache flush` */
  flushCache(): Promise<void>;
  log(): string;
  stop(): Promise<void>;
}

/** A TEST-NET-ish (198.18.0.0/15, RFC 2544) address, unique enough to keep anvil's per-IP auth penalty out of the way. */
export function randomClientIp(): string {
  const b = randomBytes(3);
  return `198.${18 + ((b[0] ?? 0) & 1)}.${b[1] ?? 0}.${Math.max(1, b[2] ?? 1)}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePort(port));
    });
  });
}

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/**
 * `dovecot -c CONF` forks its master into the background, which keeps any stdio
 * pipe open: wait for the exit of the process we started, with output in a file.
 */
function startMaster(configPath: string, errPath: string): Promise<{ code: number; stderr: string }> {
  const fd = openSync(errPath, 'w');
  return new Promise((done) => {
    const child = spawn('dovecot', ['-c', configPath], { stdio: ['ignore', fd, fd] });
    child.on('error', (err) => {
      closeSync(fd);
      done({ code: -1, stderr: err.message });
    });
    child.on('exit', (code) => {
      closeSync(fd);
      done({ code: code ?? -1, stderr: readFileSync(errPath, 'utf8') });
    });
  });
}

function luaSettingsText(lua: LuaSettings | { raw: string }): string {
  if ('raw' in lua) return lua.raw;
  const lines = ['# written by test/helpers/dovecot.ts', `url = ${lua.url}`];
  if (lua.tokenFile) lines.push(`token_file = ${lua.tokenFile}`);
  if (lua.timeout !== undefined) lines.push(`timeout = ${lua.timeout}`);
  if (lua.httpClient) lines.push(`http_client = ${lua.httpClient}`);
  return lines.join('\n') + '\n';
}

function dovecotConf(o: {
  dir: string;
  name: string;
  imapPort: number;
  pop3Port: number | null;
  script: string;
  luaConf: string;
  opts: StartDovecotOptions;
}): string {
  const { dir, opts } = o;
  const luaArgs = `file=${o.script} blocking=yes cache_key=${opts.cacheKey ?? '%u%s'}`;
  const mailHome = `${dir}/mail/%u`;
  const userdb =
    (opts.userdb ?? 'lua') === 'lua'
      ? `userdb {\n  driver = lua\n  args = file=${o.script} blocking=yes\n  override_fields = uid=nobody gid=nogroup home=${mailHome}\n}`
      : `userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=${mailHome} allow_all_users=yes\n}`;
  const pop3 = o.pop3Port === null ? '' : `
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${o.pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}
pop3_uidl_format = %08Xu%08Xv`;
  return `# private test instance written by test/helpers/dovecot.ts
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = ${o.name}
log_path = ${dir}/dovecot.log
info_log_path = ${dir}/dovecot.log
debug_log_path = ${dir}/dovecot.log
protocols = imap${o.pop3Port === null ? '' : ' pop3'}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# 0 is allowed; failed logins still wait for Dovecot's 500 ms failure-flush timer.
auth_failure_delay = 0
auth_cache_size = ${opts.cacheSize ?? '0'}
auth_cache_ttl = ${opts.cacheTtl ?? '1 hour'}
auth_cache_negative_ttl = ${opts.cacheNegativeTtl ?? '1 hour'}
auth_worker_max_count = ${opts.workers ?? 4}
# IMAP ID x-originating-ip is honoured from here, so each login can carry its own
# client IP and anvil's per-IP auth penalty never slows a test down.
login_trusted_networks = 127.0.0.0/8
# Dovecot clears the environment; this is how 2.3 hands the script its settings path.
import_environment = $import_environment MAILAUTH_LUA_CONFIG=${o.luaConf}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:${mailHome}
first_valid_uid = 1
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${o.imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}${pop3}
passdb {
  driver = lua
  args = ${luaArgs}
}
${userdb}
${opts.extraConfig ?? ''}
`;
}

function readMasterPid(dir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(join(dir, 'run/master.pid'), 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** pid → start time, for the master and every descendant, so stop() only ever kills what this instance started. */
function processTree(root: number): Map<number, string> {
  const parents = new Map<number, number>();
  const starts = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
      starts.set(Number(entry), fields[19] ?? '');
    } catch {
      // the process ended while we looked
    }
  }
  const tree = new Map<number, string>();
  const walk = (pid: number): void => {
    tree.set(pid, starts.get(pid) ?? '');
    for (const [child, parent] of parents) if (parent === pid && !tree.has(child)) walk(child);
  };
  if (starts.has(root)) walk(root);
  return tree;
}

/** Still running (a zombie waiting to be reaped counts as gone), and still the process we saw? */
function alive(pid: number, start: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] !== 'Z' && (fields[19] ?? '') === start;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Masters of instances still running in this process. If the test process is
 * ended (tap's timeout sends SIGTERM) before its teardowns run, kill their
 * process groups: each master is a session leader (it daemonized with setsid),
 * so the group holds exactly that instance's processes.
 */
const runningMasters = new Set<number>();

function killGroupSync(master: number): void {
  try {
    const stat = readFileSync(`/proc/${master}/stat`, 'utf8');
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    if (pgrp === master && pgrp !== process.pid) process.kill(-pgrp, 'SIGKILL');
  } catch {
    // already gone
  }
}

let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const m of runningMasters) killGroupSync(m);
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      for (const m of runningMasters) killGroupSync(m);
      process.exit(signal === 'SIGTERM' ? 143 : 130);
    });
  }
}

function imapQuote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Line-oriented dialogue over a socket: send, then wait for a line matching `until`. */
function lineSession(port: number, timeoutMs: number) {
  const sock: Socket = connect({ host: '127.0.0.1', port });
  sock.setEncoding('utf8');
  let buffer = '';
  let failure: Error | null = null;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sock.on('data', (chunk: string) => {
    buffer += chunk;
    wake();
  });
  sock.on('error', (err) => {
    failure = err;
    wake();
  });
  sock.on('close', () => {
    failure ??= new Error('connection closed');
    wake();
  });
  const deadline = Date.now() + timeoutMs;
  async function expect(until: RegExp): Promise<string> {
    for (;;) {
      const lines = buffer.split('\r\n');
      for (let i = 0; i < lines.length - 1; i++) {
        const line = lines[i] ?? '';
        if (until.test(line)) {
          buffer = lines.slice(i + 1).join('\r\n');
          return line;
        }
      }
      if (failure) throw new Error(`${failure.message}; received so far: ${JSON.stringify(buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${until}; received: ${JSON.stringify(buffer)}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }
  return {
    expect,
    send: (line: string) => sock.write(`${line}\r\n`),
    close: () => sock.destroy(),
  };
}

function parseDoveadmFields(output: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of output.split('\n')) {
    const m = /^\s+([A-Za-z0-9_.-]+)=(.*)$/.exec(line);
    if (m?.[1] !== undefined) fields[m[1]] = m[2] ?? '';
  }
  return fields;
}

/** One teardown per test stops all of its instances side by side (each graceful stop takes ~2.5 s). */
const stopsByTest = new WeakMap<object, (() => Promise<void>)[]>();
function stopWithTest(t: { teardown(fn: () => unknown): void }, stop: () => Promise<void>): void {
  let stops = stopsByTest.get(t);
  if (!stops) {
    const list: (() => Promise<void>)[] = [];
    stopsByTest.set(t, list);
    t.teardown(() => Promise.all(list.map((fn) => fn())));
    stops = list;
  }
  stops.push(stop);
}

export async function startDovecot(t: { teardown(fn: () => unknown): void }, opts: StartDovecotOptions): Promise<DovecotInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'mad-'));
  // dovecot (auth master) and dovenull (login chroot) must traverse it.
  chmodSync(dir, 0o755);
  const mailDir = join(dir, 'mail');
  mkdirSync(mailDir);
  chmodSync(mailDir, 0o1777);
  const script = join(dir, 'mailauth.lua');
  copyFileSync(opts.script ?? LUA_SCRIPT, script);
  chmodSync(script, 0o644);
  const luaConf = join(dir, 'mailauth-lua.conf');
  writeFileSync(luaConf, luaSettingsText(opts.lua), { mode: 0o644 });
  const configPath = join(dir, 'dovecot.conf');
  const logPath = join(dir, 'dovecot.log');
  const name = `mailauth-t-${randomBytes(4).toString('hex')}`;

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const master = readMasterPid(dir);
    const tree = master === null ? new Map<number, string>() : processTree(master);
    await run('dovecot', ['-c', configPath, 'stop']);
    if (master !== null) runningMasters.delete(master);
    // The master waits for its children; give stragglers (log, stats) a moment, then kill what is left.
    for (let i = 0; i < 60 && [...tree].some(([pid, start]) => alive(pid, start)); i++) await sleep(50);
    for (const [pid, start] of tree) {
      if (alive(pid, start)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  stopWithTest(t, stop);

  let imapPort = 0;
  let pop3Port: number | null = null;
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    imapPort = await freePort();
    pop3Port = opts.pop3 ? await freePort() : null;
    writeFileSync(configPath, dovecotConf({ dir, name, imapPort, pop3Port, script, luaConf, opts }));
    const res = await startMaster(configPath, join(dir, 'startup.err'));
    if (res.code === 0) {
      lastError = '';
      break;
    }
    const log = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
    lastError = `dovecot -c ${configPath} exited ${res.code}: ${res.stderr.trim()} ${log.split('\n').slice(-5).join('\n')}`;
    // Another test grabbed the port between our probe and Dovecot's bind: pick again.
    if (!/in use/i.test(lastError)) break;
  }
  if (lastError) throw new Error(lastError);

  const readLog = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  // Ready when imap-login greets.
  const readyBy = Date.now() + 15_000;
  for (;;) {
    try {
      const s = lineSession(imapPort, 2000);
      await s.expect(/^\* OK/);
      s.close();
      break;
    } catch (err) {
      if (Date.now() > readyBy) throw new Error(`Dovecot did not come up on port ${imapPort}: ${(err as Error).message}\n${readLog()}`);
      await sleep(100);
    }
  }

  const masterPid = readMasterPid(dir);
  if (masterPid !== null) {
    runningMasters.add(masterPid);
    hookExit();
  }

  const doveadm = (args: string[]) => run('doveadm', ['-c', configPath, ...args]);

  return {
    dir,
    configPath,
    logPath,
    luaConfigPath: luaConf,
    imapPort,
    pop3Port,
    async doveadmAuthTest(user, password, o = {}) {
      const res = await doveadm([
        'auth', 'test',
        '-x', `service=${o.service ?? 'imap'}`,
        '-x', `rip=${o.remoteIp ?? randomClientIp()}`,
        user, password,
      ]);
      const output = `${res.stdout}${res.stderr}`;
      return { ok: res.code === 0, exitCode: res.code, output, fields: parseDoveadmFields(output) };
    },
    async doveadmAuthLookup(user) {
      const res = await doveadm(['auth', 'lookup', user]);
      return { exitCode: res.code, output: `${res.stdout}${res.stderr}` };
    },
    async doveadmUser(user) {
      const res = await doveadm(['user', user]);
      const output = `${res.stdout}${res.stderr}`;
      const fields: Record<string, string> = {};
      for (const line of res.stdout.split('\n')) {
        const m = /^(\S+)\s+(.*)$/.exec(line);
        if (m?.[1] !== undefined) fields[m[1]] = m[2] ?? '';
      }
      return { exitCode: res.code, output, fields };
    },
    async imapLogin(user, password, o = {}) {
      const s = lineSession(imapPort, 20_000);
      try {
        await s.expect(/^\* OK/);
        s.send(`i ID ("x-originating-ip" "${o.remoteIp ?? randomClientIp()}")`);
        await s.expect(/^i /);
        s.send(`l LOGIN ${imapQuote(user)} ${imapQuote(password)}`);
        const line = await s.expect(/^l /);
        s.send('o LOGOUT');
        return line;
      } finally {
        s.close();
      }
    },
    async pop3Login(user, password) {
      if (pop3Port === null) throw new Error('start Dovecot with pop3: true');
      const s = lineSession(pop3Port, 20_000);
      try {
        await s.expect(/^\+OK/);
        s.send(`USER ${user}`);
        await s.expect(/^[+-]/);
        s.send(`PASS ${password}`);
        const line = await s.expect(/^[+-]/);
        s.send('QUIT');
        return line;
      } finally {
        s.close();
      }
    },
    async flushCache() {
      const res = await doveadm(['auth', 'cache', 'flush']);
      if (res.code !== 0) throw new Error(`doveadm auth cache flush: ${res.stderr}`);
    },
    log: readLog,
    stop,
  };
}
