/**
 * Private Dovecot instances for the end-to-end tests, on Dovecot 2.3 (the
 * host's package) and 2.4 (Debian 13's package in a chroot, see
 * ./debian13-root.ts). Each call gets its own temp base_dir, state_dir, log and
 * instance_name, IMAP (and POP3, ManageSieve) on free loopback ports, and
 * lua/mailauth.lua (copied in, readable by `dovecot`) as passdb and userdb.
 * The system Dovecot and /etc/dovecot are never touched.
 *
 * Dovecot runs its master as root and drops privileges per service, so these
 * tests need root.
 *
 * API
 *   DOVECOT_VERSIONS                 ['2.3', '2.4']: loop over it to run a scenario on both.
 *   requireDovecot(t, version?)      gate (default '2.3'): true when that version can run;
 *                                    otherwise fails the test in CI (CI=true), skips loudly
 *                                    elsewhere. For '2.4' it validates (and, if missing or
 *                                    broken, builds) the cached Debian 13 root.
 *   dovecotMissing(version?)         the reason a version cannot run, or null.
 *   startDovecot(t, { version, lua, pop3, managesieve, authSocket, cacheSize, … })
 *                                    starts one instance (stopped by t's teardown) and returns
 *                                    a DovecotInstance: imapLogin / pop3Login / sieveLogin (raw
 *                                    protocol), doveadmAuthTest / doveadmUser / flushCache,
 *                                    log(), the ports, `authSocketPath` (host path of an
 *                                    auth-client socket for Postfix's `smtpd_sasl_path`).
 *   scratchDir(t, version)           a temp folder the instance can see (for 2.4 it lives
 *                                    inside the root): `{ host, inside }` paths, e.g. for a
 *                                    stub's Unix socket or a file named in the Lua settings.
 *   instance.inside(hostPath)        a host path as that Dovecot sees it (identity on 2.3).
 *   instance.importFile(hostPath)    copies a file into the instance folder; returns the path
 *                                    as Dovecot sees it (the Lua tokenFile is copied this way).
 *
 * Typical file:
 *   for (const version of DOVECOT_VERSIONS) {
 *     t.test(`Dovecot ${version}`, async (t) => {
 *       if (!requireDovecot(t, version)) return;
 *       const dv = await startDovecot(t, { version, lua: { url, tokenFile }, pop3: true });
 *       t.match(await dv.imapLogin('alice@example.org', 'pw'), /^l OK/);
 *     });
 *   }
 *
 * On 2.4 the config is 2.4 syntax (`passdb lua { lua_file … lua_settings { config_file } }`,
 * `service auth-worker { process_limit }`, `auth_internal_failure_delay = 0` so that the
 * temp-fail cases stay fast); `extraConfig` is appended verbatim, so write it in the
 * instance's own version's syntax.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEBIAN13_ROOT, debian13RootProblem, ensureDebian13Root } from './debian13-root.js';
import { docBlock } from './doc-blocks.js';
import { freePort } from './free-port.js';
import { requireTool } from './require-tool.js';
import type { TapLike } from './require-tool.js';

// Many tests and helpers take freePort from here, next to startDovecot.
export { freePort };

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

export type DovecotVersion = '2.3' | '2.4';
/** Every version the end-to-end scenarios run on: the host's 2.3 and Debian 13's 2.4 (chroot). */
export const DOVECOT_VERSIONS: readonly DovecotVersion[] = ['2.3', '2.4'];

let root24: { problem: string | null } | null = null;
/** Validate the Debian 13 root once per process; build it (under a lock) when it is missing or broken. */
function root24Problem(): string | null {
  if (root24) return root24.problem;
  if (process.getuid?.() !== 0) return 'a private Dovecot instance needs root (its master drops privileges per service)';
  try {
    ensureDebian13Root();
    root24 = { problem: null };
  } catch (err) {
    root24 = { problem: `Debian 13 root for Dovecot 2.4: ${(err as Error).message}` };
  }
  return root24.problem;
}

/** Why the Dovecot end-to-end tests of that version cannot run here, or null when they can. */
export function dovecotMissing(version: DovecotVersion = '2.3'): string | null {
  if (version === '2.4') return root24Problem();
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
 * Gate a Dovecot test file or subtest: `if (requireDovecot(t)) await main();`, or
 * `if (!requireDovecot(t, '2.4')) return;` inside a per-version subtest.
 * In CI (CI=true) a missing prerequisite is a failure, elsewhere a loud skip.
 * For 2.4 this may build the Debian 13 root (minutes) when the cache has none.
 */
export function requireDovecot(t: TapLike, version: DovecotVersion = '2.3'): boolean {
  if (version === '2.4' && root24 === null && debian13RootProblem() !== null) {
    // A build is coming: give it time (CI builds the root before the tests, see .ci/run).
    t.setTimeout?.(40 * 60_000);
  }
  return requireTool(t, `Dovecot ${version} end-to-end`, dovecotMissing(version));
}

export interface LuaSettings {
  /** http://127.0.0.1:PORT or unix:/path */
  url: string;
  tokenFile?: string;
  timeout?: number;
  httpClient?: 'builtin' | 'luasocket' | 'dovecot';
  /**
   * Start from the settings file in docs/dovecot.md (block `lua-settings`) and
   * change only the keys given here (url; token_file, dropped when not given).
   */
  fromDocs?: boolean;
}

export interface StartDovecotOptions {
  /** '2.3' (default, the host's Dovecot) or '2.4' (Debian 13's, in the chroot). */
  version?: DovecotVersion;
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
  /**
   * 2.3: the passdb cache_key argument; default %u%s (mailauth's answer depends on the service).
   * 2.4: `lua_settings { cache_key }` (the script's default %{user}\t%{protocol} when unset).
   */
  cacheKey?: string;
  /** 2.3 auth_worker_max_count, 2.4 service auth-worker { process_limit } */
  workers?: number;
  /** Adds POP3 next to IMAP. */
  pop3?: boolean;
  /** Adds ManageSieve (protocol sieve) next to IMAP. */
  managesieve?: boolean;
  /** Adds an auth-client listener (mode 0666) for an MTA's SASL: see DovecotInstance.authSocketPath. */
  authSocket?: boolean;
  /**
   * Tagged configuration blocks of docs/ (see ./doc-blocks.ts) that replace the
   * helper's own passdb, userdb, auth cache and auth worker settings, e.g.
   * ['dovecot-2.4-auth']. Only paths and the mail user are swapped (see
   * adaptDocsConfig); cacheSize/cacheTtl/cacheNegativeTtl/workers, when given,
   * are appended after them and win.
   */
  docs?: string[];
  /** Postfix's queue directory (host path) for docs blocks that name /var/spool/postfix. */
  postfixQueueDir?: string;
  /** Appended verbatim at the end of dovecot.conf. */
  extraConfig?: string;
  /** 2.3: config placed before the helper's passdb (a passdb that must be asked first, e.g. one for OAuth mechanisms). */
  passdbBefore?: string;
}

export interface AuthTestResult {
  ok: boolean;
  exitCode: number;
  output: string;
  /** doveadm's extra fields, e.g. { code: 'temp_fail' } or { user: 'x' } */
  fields: Record<string, string>;
}

export interface DovecotInstance {
  version: DovecotVersion;
  /** The chroot this Dovecot runs in ('' for 2.3, which runs on the host). */
  root: string;
  /** The instance folder (host path). */
  dir: string;
  /** Host paths of the config and log. */
  configPath: string;
  logPath: string;
  /** The settings file the Lua script reads (host path); rewrite it to change settings (read once per Lua state). */
  luaConfigPath: string;
  imapPort: number;
  pop3Port: number | null;
  sievePort: number | null;
  /** Host path of the auth-client socket (start with authSocket: true), for Postfix's smtpd_sasl_path. */
  authSocketPath: string | null;
  /** A host path as this Dovecot sees it (identity on 2.3; throws for a path outside the 2.4 root). */
  inside(hostPath: string): string;
  /** Copy a host file into the instance folder (same mode); returns its path as Dovecot sees it. */
  importFile(hostPath: string, name?: string): string;
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
  /** Raw ManageSieve AUTHENTICATE "PLAIN"; returns the response line (OK / NO …). */
  sieveLogin(user: string, password: string): Promise<string>;
  /** The same command line the helper uses for this version: ['chroot', ROOT, 'doveadm', …] on 2.4. */
  command(tool: 'dovecot' | 'doveadm' | 'doveconf', args: string[]): [string, string[]];
  /** `doveadm -c CONF auth cache flush` */
  flushCache(): Promise<void>;
  /** This instance's processes (master and descendants) with their titles, e.g. 'dovecot/auth', from /proc. */
  processes(): { pid: number; title: string }[];
  /** pid of the auth master process (which holds the auth cache), or null while none runs. */
  authPid(): number | null;
  log(): string;
  /**
   * The log once it holds `text` (or after `timeoutMs`, as it is then): Dovecot's auth process writes
   * through its log process, so a line can land just after doveadm has had its answer.
   */
  waitForLog(text: string | RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** A TEST-NET-ish (198.18.0.0/15, RFC 2544) address, unique enough to keep anvil's per-IP auth penalty out of the way. */
export function randomClientIp(): string {
  const b = randomBytes(3);
  return `198.${18 + ((b[0] ?? 0) & 1)}.${b[1] ?? 0}.${Math.max(1, b[2] ?? 1)}`;
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
function startMaster(cmd: [string, string[]], errPath: string): Promise<{ code: number; stderr: string }> {
  const fd = openSync(errPath, 'w');
  return new Promise((done) => {
    const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', fd, fd] });
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

function luaSettingsText(lua: LuaSettings | { raw: string }, tokenFile: string | undefined): string {
  if ('raw' in lua) return lua.raw;
  if (lua.fromDocs) {
    const set: Record<string, string | undefined> = { url: lua.url, token_file: tokenFile };
    if (lua.timeout !== undefined) set.timeout = String(lua.timeout);
    if (lua.httpClient) set.http_client = lua.httpClient;
    const lines = docBlock('lua-settings')
      .split('\n')
      .flatMap((line) => {
        const key = /^\s*([a-z_]+)\s*=/.exec(line)?.[1];
        if (key === undefined || !(key in set)) return [line];
        const value = set[key];
        delete set[key];
        return value === undefined ? [] : [`${key} = ${value}`];
      });
    for (const [key, value] of Object.entries(set)) if (value !== undefined) lines.push(`${key} = ${value}`);
    return lines.join('\n');
  }
  const lines = ['# written by test/helpers/dovecot.ts', `url = ${lua.url}`];
  if (tokenFile) lines.push(`token_file = ${tokenFile}`);
  if (lua.timeout !== undefined) lines.push(`timeout = ${lua.timeout}`);
  if (lua.httpClient) lines.push(`http_client = ${lua.httpClient}`);
  return lines.join('\n') + '\n';
}

interface ConfInput {
  /** The instance folder as Dovecot sees it. */
  dir: string;
  name: string;
  imapPort: number;
  pop3Port: number | null;
  sievePort: number | null;
  script: string;
  luaConf: string;
  /** Postfix's queue directory as Dovecot sees it. */
  postfixQueueDir?: string;
  opts: StartDovecotOptions;
}

function dovecotConf(o: ConfInput): string {
  return (o.opts.version ?? '2.3') === '2.4' ? dovecotConf24(o) : dovecotConf23(o);
}

/**
 * A docs block made runnable in a private instance. The only changes: the
 * documented install paths become the instance's (script, settings file, mail
 * folder, Postfix queue directory) and the `vmail` user becomes nobody/nogroup.
 */
export function adaptDocsConfig(text: string, paths: { script: string; luaConf: string; mailDir: string; postfixQueueDir?: string }): string {
  if (text.includes('/var/spool/postfix') && paths.postfixQueueDir === undefined) {
    throw new Error('this docs block names /var/spool/postfix: start Dovecot with postfixQueueDir');
  }
  return text
    .replaceAll('/usr/share/mailauth/mailauth.lua', paths.script)
    .replaceAll('/etc/mailauth/dovecot-lua.conf', paths.luaConf)
    .replaceAll('/var/vmail', paths.mailDir)
    .replaceAll('/var/spool/postfix', paths.postfixQueueDir ?? '/var/spool/postfix')
    .replace(/\buid(\s*=\s*)vmail\b/g, 'uid$1nobody')
    .replace(/\bgid(\s*=\s*)vmail\b/g, 'gid$1nogroup');
}

/** The docs blocks plus the explicitly given cache/worker options after them (later settings win). */
function docsAuthConfig(o: ConfInput): string {
  const { opts } = o;
  const version = opts.version ?? '2.3';
  const blocks = (opts.docs ?? []).map(
    (id) =>
      `# --- docs block ${id} ---\n` +
      adaptDocsConfig(docBlock(id), { script: o.script, luaConf: o.luaConf, mailDir: `${o.dir}/mail`, postfixQueueDir: o.postfixQueueDir }),
  );
  const overrides: string[] = [];
  if (opts.cacheSize !== undefined) overrides.push(`auth_cache_size = ${opts.cacheSize}`);
  if (opts.cacheTtl !== undefined) overrides.push(`auth_cache_ttl = ${opts.cacheTtl}`);
  if (opts.cacheNegativeTtl !== undefined) overrides.push(`auth_cache_negative_ttl = ${opts.cacheNegativeTtl}`);
  if (opts.workers !== undefined) overrides.push(version === '2.4' ? `service auth-worker {\n  process_limit = ${opts.workers}\n}` : `auth_worker_max_count = ${opts.workers}`);
  return `${blocks.join('\n')}\n${overrides.length ? `# --- the test's own overrides ---\n${overrides.join('\n')}\n` : ''}`;
}

function protocolsOf(o: ConfInput): string {
  return ['imap', o.pop3Port === null ? '' : 'pop3', o.sievePort === null ? '' : 'sieve'].filter(Boolean).join(' ');
}

/** Postfix's SASL socket (run/auth-mta), the same block in 2.3 and 2.4. */
const AUTH_MTA_LISTENER = `
service auth {
  unix_listener auth-mta {
    mode = 0666
  }
}`;

/** Where the private instance keeps its sockets, state and one log file; the same settings in 2.3 and 2.4. */
function instancePaths(o: ConfInput): string {
  return `base_dir = ${o.dir}/run
state_dir = ${o.dir}/state
instance_name = ${o.name}
log_path = ${o.dir}/dovecot.log
info_log_path = ${o.dir}/dovecot.log
debug_log_path = ${o.dir}/dovecot.log`;
}

function dovecotConf23(o: ConfInput): string {
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
  const sieve = o.sievePort === null ? '' : `
service managesieve-login {
  inet_listener sieve {
    address = 127.0.0.1
    port = ${o.sievePort}
  }
}`;
  const authSocket = opts.authSocket ? AUTH_MTA_LISTENER : '';
  return `# private test instance written by test/helpers/dovecot.ts
${instancePaths(o)}
protocols = ${protocolsOf(o)}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# 0 is allowed; failed logins still wait for Dovecot's 500 ms failure-flush timer.
auth_failure_delay = 0
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
}${pop3}${sieve}${authSocket}
${opts.passdbBefore ?? ''}
${
  opts.docs
    ? docsAuthConfig(o)
    : `auth_cache_size = ${opts.cacheSize ?? '0'}
auth_cache_ttl = ${opts.cacheTtl ?? '1 hour'}
auth_cache_negative_ttl = ${opts.cacheNegativeTtl ?? '1 hour'}
auth_worker_max_count = ${opts.workers ?? 4}
passdb {
  driver = lua
  args = ${luaArgs}
}
${userdb}`
}
${opts.extraConfig ?? ''}
`;
}

function dovecotConf24(o: ConfInput): string {
  const { dir, opts } = o;
  const mailHome = `${dir}/mail/%{user}`;
  const cacheKey = opts.cacheKey === undefined ? '' : `\n    cache_key = ${opts.cacheKey}`;
  const userdb =
    (opts.userdb ?? 'lua') === 'lua'
      ? `userdb lua {
  lua_file = ${o.script}
  lua_settings {
    config_file = ${o.luaConf}
  }
  fields {
    uid = nobody
    gid = nogroup
    home = ${mailHome}
  }
}`
      : `userdb static {
  fields {
    uid = nobody
    gid = nogroup
    home = ${mailHome}
  }
}
userdb_static_allow_all_users = yes`;
  const pop3 = o.pop3Port === null ? '' : `
service pop3-login {
  inet_listener pop3 {
    port = ${o.pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}`;
  const sieve = o.sievePort === null ? '' : `
service managesieve-login {
  inet_listener sieve {
    port = ${o.sievePort}
  }
}`;
  const authSocket = opts.authSocket ? AUTH_MTA_LISTENER : '';
  return `# private test instance written by test/helpers/dovecot.ts
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
${instancePaths(o)}
protocols = ${protocolsOf(o)}
listen = 127.0.0.1
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
# 2.4 holds back every INTERNAL_FAILURE answer for this long (default 2 s); the
# tests check many temporary failures, so answer them at once.
auth_internal_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_internal_user = dovecot
default_login_user = dovenull
mail_driver = maildir
mail_path = ${mailHome}/Maildir
first_valid_uid = 1
service imap-login {
  inet_listener imap {
    port = ${o.imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}${pop3}${sieve}${authSocket}
${
  opts.docs
    ? docsAuthConfig(o)
    : `auth_cache_size = ${opts.cacheSize ?? '0'}
auth_cache_ttl = ${opts.cacheTtl ?? '1 hour'}
auth_cache_negative_ttl = ${opts.cacheNegativeTtl ?? '1 hour'}
service auth-worker {
  process_limit = ${opts.workers ?? 4}
}
passdb lua {
  lua_file = ${o.script}
  lua_settings {
    config_file = ${o.luaConf}${cacheKey}
  }
}
${userdb}`
}
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
export function processTree(root: number): Map<number, string> {
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
export function alive(pid: number, start: string): boolean {
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
 * After a master's stop: up to 3 s for the processes of `tree` (from processTree before the stop)
 * to end by themselves, then SIGKILL those still alive — only those, checked by start time.
 */
export async function killLeftovers(tree: Map<number, string>): Promise<void> {
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
}

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

/** Where a version's instance folders live on the host, and how Dovecot sees a host path. */
function placeFor(version: DovecotVersion): { root: string; tmp: string } {
  return version === '2.4' ? { root: DEBIAN13_ROOT, tmp: join(DEBIAN13_ROOT, 'tmp') } : { root: '', tmp: tmpdir() };
}

function insidePath(root: string, hostPath: string): string {
  if (!root) return hostPath;
  const rel = relative(root, resolve(hostPath));
  if (rel.startsWith('..') || rel.startsWith('/')) throw new Error(`${hostPath} is outside the Dovecot 2.4 root ${root}; use scratchDir() or importFile()`);
  return `/${rel}`;
}

function commandFor(version: DovecotVersion, tool: string, args: string[]): [string, string[]] {
  return version === '2.4' ? ['chroot', [DEBIAN13_ROOT, tool, ...args]] : [tool, args];
}

/**
 * A temp folder (mode 0755) the given version's Dovecot can see, removed by t's teardown:
 * `host` to create files or sockets in, `inside` to name them in Dovecot or Lua settings.
 */
export function scratchDir(t: { teardown(fn: () => unknown): void }, version: DovecotVersion = '2.3'): { host: string; inside: string } {
  const { root, tmp } = placeFor(version);
  const host = mkdtempSync(join(tmp, 'mas-'));
  chmodSync(host, 0o755);
  // Teardowns run in the order they were added: this one may come before the stop of a
  // server that still writes into the folder (Postfix's queue), so retry, and never throw.
  t.teardown(async () => {
    for (let i = 0; ; i++) {
      try {
        rmSync(host, { recursive: true, force: true });
        return;
      } catch (err) {
        if (i >= 50) {
          process.stderr.write(`scratchDir: could not remove ${host}: ${(err as Error).message}\n`);
          return;
        }
        await sleep(100);
      }
    }
  });
  return { host, inside: insidePath(root, host) };
}

export async function startDovecot(t: { teardown(fn: () => unknown): void }, opts: StartDovecotOptions): Promise<DovecotInstance> {
  const version = opts.version ?? '2.3';
  if (version === '2.4') {
    const why = dovecotMissing('2.4');
    if (why) throw new Error(why);
  }
  const { root, tmp } = placeFor(version);
  const dir = mkdtempSync(join(tmp, 'mad-'));
  const inside = (hostPath: string) => insidePath(root, hostPath);
  const vdir = inside(dir);
  // dovecot (auth master) and dovenull (login chroot) must traverse it.
  chmodSync(dir, 0o755);
  const mailDir = join(dir, 'mail');
  mkdirSync(mailDir);
  chmodSync(mailDir, 0o1777);
  const script = join(dir, 'mailauth.lua');
  copyFileSync(opts.script ?? LUA_SCRIPT, script);
  chmodSync(script, 0o644);
  const importFile = (hostPath: string, fileName?: string): string => {
    const target = join(dir, fileName ?? `import-${randomBytes(3).toString('hex')}-${hostPath.split('/').at(-1) ?? 'file'}`);
    copyFileSync(hostPath, target);
    chmodSync(target, statSync(hostPath).mode & 0o7777);
    return inside(target);
  };
  let tokenFile: string | undefined;
  if (!('raw' in opts.lua) && opts.lua.tokenFile) tokenFile = version === '2.4' ? importFile(opts.lua.tokenFile, 'token') : opts.lua.tokenFile;
  const luaConf = join(dir, 'mailauth-lua.conf');
  writeFileSync(luaConf, luaSettingsText(opts.lua, tokenFile), { mode: 0o644 });
  const configPath = join(dir, 'dovecot.conf');
  const logPath = join(dir, 'dovecot.log');
  const name = `mailauth-t-${randomBytes(4).toString('hex')}`;
  const cmd = (tool: string, args: string[]) => commandFor(version, tool, args);
  const conf = ['-c', inside(configPath)];

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const master = readMasterPid(dir);
    const tree = master === null ? new Map<number, string>() : processTree(master);
    await run(...cmd('dovecot', [...conf, 'stop']));
    if (master !== null) runningMasters.delete(master);
    // The master waits for its children; give stragglers (log, stats) a moment, then kill what is left.
    await killLeftovers(tree);
    rmSync(dir, { recursive: true, force: true });
  };
  stopWithTest(t, stop);

  let imapPort = 0;
  let pop3Port: number | null = null;
  let sievePort: number | null = null;
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    imapPort = await freePort();
    pop3Port = opts.pop3 ? await freePort() : null;
    sievePort = opts.managesieve ? await freePort() : null;
    writeFileSync(
      configPath,
      dovecotConf({
        dir: vdir,
        name,
        imapPort,
        pop3Port,
        sievePort,
        script: inside(script),
        luaConf: inside(luaConf),
        postfixQueueDir: opts.postfixQueueDir === undefined ? undefined : inside(opts.postfixQueueDir),
        opts: { ...opts, version },
      }),
    );
    const res = await startMaster(cmd('dovecot', conf), join(dir, 'startup.err'));
    if (res.code === 0) {
      lastError = '';
      break;
    }
    const log = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
    lastError = `Dovecot ${version}: dovecot -c ${configPath} exited ${res.code}: ${res.stderr.trim()} ${log.split('\n').slice(-5).join('\n')}`;
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
      if (Date.now() > readyBy) throw new Error(`Dovecot ${version} did not come up on port ${imapPort}: ${(err as Error).message}\n${readLog()}`);
      await sleep(100);
    }
  }

  const masterPid = readMasterPid(dir);
  if (masterPid !== null) {
    runningMasters.add(masterPid);
    hookExit();
  }

  const doveadm = (args: string[]) => run(...cmd('doveadm', [...conf, ...args]));
  const processes = (): { pid: number; title: string }[] => {
    const master = readMasterPid(dir);
    if (master === null) return [];
    const out: { pid: number; title: string }[] = [];
    for (const [pid, start] of processTree(master)) {
      if (!alive(pid, start)) continue;
      try {
        out.push({ pid, title: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ') });
      } catch {
        // ended while we looked
      }
    }
    return out;
  };

  return {
    version,
    root,
    dir,
    configPath,
    logPath,
    luaConfigPath: luaConf,
    imapPort,
    pop3Port,
    sievePort,
    authSocketPath: opts.authSocket ? join(dir, 'run', 'auth-mta') : null,
    inside,
    importFile,
    command: (tool, args) => cmd(tool, tool === 'dovecot' || tool === 'doveadm' || tool === 'doveconf' ? [...conf, ...args] : args),
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
    async sieveLogin(user, password) {
      if (sievePort === null) throw new Error('start Dovecot with managesieve: true');
      const s = lineSession(sievePort, 20_000);
      try {
        // The greeting is the capability list, ended by OK.
        await s.expect(/^OK/);
        const initial = Buffer.from(`\0${user}\0${password}`).toString('base64');
        s.send(`AUTHENTICATE "PLAIN" "${initial}"`);
        const line = await s.expect(/^(OK|NO|BYE)/);
        s.send('LOGOUT');
        return line;
      } finally {
        s.close();
      }
    },
    async flushCache() {
      const res = await doveadm(['auth', 'cache', 'flush']);
      if (res.code !== 0) throw new Error(`doveadm auth cache flush: ${res.stderr}`);
    },
    processes,
    // Titles are INSTANCE/auth (with verbose_proctitle: INSTANCE/auth [...]); workers are INSTANCE/auth -w or …/auth-worker.
    authPid: () => processes().find((p) => /^\S*\/auth(?:\s+\[.*\])?$/.test(p.title))?.pid ?? null,
    log: readLog,
    async waitForLog(text, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const log = readLog();
        if ((typeof text === 'string' ? log.includes(text) : text.test(log)) || Date.now() > until) return log;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop,
  };
}
