/**
 * The individual checks of `mailauth doctor`. Each returns check lines (never
 * throws for a finding); file-system and process access go through `DoctorIo` so
 * tests can point them at fixtures.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import http from 'node:http';
import { dirname, resolve } from 'node:path';
import type { Config, SocketListen, TcpListen } from '../config/index.js';
import type { Db } from '../db/index.js';
import { schemaStatus } from '../db/index.js';
import type { RunDoveconfOptions } from '../dovecot/index.js';
import { runDoveconf } from '../dovecot/index.js';
import { isMailauthError } from '../errors.js';

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface Check {
  /** Stable identifier (JSON consumers and tests branch on it). */
  id: string;
  status: CheckStatus;
  title: string;
  detail?: string;
  fix?: string;
  /** What the check found, one entry each, for --json (the human output shows `detail`). */
  items?: unknown[];
}

export interface Principal {
  name: string;
  uid: number;
  gids: number[];
}

export interface DoctorIo {
  stat(path: string): Stats | null;
  lstat(path: string): Stats | null;
  readText(path: string): string | null;
  realpath(path: string): string | null;
  /** A user from /etc/passwd with its groups from /etc/group, or null when absent. */
  user(name: string): Principal | null;
  /** `doveconf -n -P` output, or why not. */
  doveconf(opts: RunDoveconfOptions): Promise<{ text: string } | { error: string }>;
}

const nullOnError = <T>(fn: () => T): T | null => {
  try {
    return fn();
  } catch {
    return null;
  }
};

export function systemDoctorIo(): DoctorIo {
  const passwd = (): string => nullOnError(() => readFileSync('/etc/passwd', 'utf8')) ?? '';
  const group = (): string => nullOnError(() => readFileSync('/etc/group', 'utf8')) ?? '';
  return {
    stat: (p) => nullOnError(() => statSync(p)),
    lstat: (p) => nullOnError(() => lstatSync(p)),
    readText: (p) => nullOnError(() => readFileSync(p, 'utf8')),
    realpath: (p) => nullOnError(() => realpathSync(p)),
    user: (name) => lookupUser(name, passwd(), group()),
    doveconf: (opts) => runDoveconf(opts),
  };
}

/** getpwnam + getgrouplist from the files, which is what matters for system users. */
export function lookupUser(name: string, passwd: string, group: string): Principal | null {
  const pw = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
  if (!pw || pw.length < 4) return null;
  const uid = Number(pw[2]);
  const gid = Number(pw[3]);
  const gids = new Set([gid]);
  for (const line of group.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && (f[3] ?? '').split(',').includes(name)) gids.add(Number(f[2]));
  }
  return { name, uid, gids: [...gids] };
}

function permitted(st: Stats, who: Principal, bits: { owner: number; group: number; other: number }): boolean {
  if (who.uid === 0) return true;
  if (st.uid === who.uid) return (st.mode & bits.owner) !== 0;
  if (who.gids.includes(st.gid)) return (st.mode & bits.group) !== 0;
  return (st.mode & bits.other) !== 0;
}

/** Can `who` open `path` for reading, including search permission on every parent directory? */
export function canRead(io: DoctorIo, file: string, who: Principal): boolean {
  const path = resolve(file);
  const st = io.stat(path);
  if (!st || !permitted(st, who, { owner: 0o400, group: 0o040, other: 0o004 })) return false;
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const d = io.stat(dir);
    if (!d || !permitted(d, who, { owner: 0o100, group: 0o010, other: 0o001 })) return false;
    if (dir === dirname(dir)) return true;
  }
}

const octal = (mode: number): string => '0' + (mode & 0o7777).toString(8).padStart(3, '0');

function describeOwner(io: DoctorIo, st: Stats): string {
  const passwd = io.readText('/etc/passwd') ?? '';
  const group = io.readText('/etc/group') ?? '';
  const user = passwd.split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === st.uid && f[0])?.[0] ?? String(st.uid);
  const grp = group.split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === st.gid && f[0])?.[0] ?? String(st.gid);
  return `${user}:${grp} ${octal(st.mode)}`;
}

/**
 * A file holding a secret: it must exist, should not be readable by everyone nor
 * writable by its group or everyone, and must be readable by `reader` (the
 * account that opens it in production) when that account exists.
 */
export function secretFileCheck(io: DoctorIo, id: string, label: string, path: string, reader: { user: Principal | null; why: string; fixGroup: string }): Check {
  const st = io.stat(path);
  if (!st) return { id, status: 'fail', title: `${label}: ${path} does not exist`, fix: `create it (one line, mode 0640, owner root:${reader.fixGroup}) or fix the path` };
  if (!st.isFile()) return { id, status: 'fail', title: `${label}: ${path} is not a regular file`, fix: 'point the setting at the file that holds the secret' };
  const where = `${path} (${describeOwner(io, st)})`;
  const fixMode = `chown root:${reader.fixGroup} ${path} && chmod 0640 ${path}`;
  if (reader.user && !canRead(io, path, reader.user)) {
    return { id, status: 'fail', title: `${label}: ${reader.user.name} cannot read ${where}`, detail: reader.why, fix: fixMode };
  }
  const problems: string[] = [];
  if (st.mode & 0o004) problems.push('readable by every local user');
  if (st.mode & 0o002) problems.push('writable by every local user');
  else if (st.mode & 0o020) problems.push('writable by its group');
  if (problems.length) return { id, status: 'warn', title: `${label}: ${where} is ${problems.join(' and ')}`, fix: fixMode };
  return { id, status: 'pass', title: `${label}: ${where}` };
}

/** The config file itself: readable by the service user; private when it holds an inline secret. */
export function configFileCheck(io: DoctorIo, config: Config, serviceUser: Principal | null): Check {
  const path = config.file;
  if (path === null) return { id: 'config.file', status: 'skip', title: 'config file: none (built-in configuration)' };
  const inline = config.secretSources['database.password_file']?.kind === 'inline';
  if (inline) {
    return secretFileCheck(io, 'config.file', 'config file (holds the database password in database.url)', path, {
      user: serviceUser,
      why: 'the mailauth service runs as this user and reads the config at start',
      fixGroup: 'mailauth',
    });
  }
  const st = io.stat(path);
  if (serviceUser && st && !canRead(io, path, serviceUser)) {
    return {
      id: 'config.file',
      status: 'fail',
      title: `config file: ${serviceUser.name} cannot read ${path} (${describeOwner(io, st)})`,
      detail: 'the mailauth service runs as this user and reads the config at start',
      fix: `chown root:mailauth ${path} && chmod 0640 ${path} (and the directory: chgrp mailauth ${dirname(path)} && chmod 0750 ${dirname(path)})`,
    };
  }
  if (st && st.mode & 0o022) {
    return { id: 'config.file', status: 'warn', title: `config file: ${path} (${describeOwner(io, st)}) is writable by others than its owner`, fix: `chmod go-w ${path}` };
  }
  return { id: 'config.file', status: 'pass', title: `config file: ${path}${st ? ` (${describeOwner(io, st)})` : ''}` };
}

const DB_FIXES: Record<string, (c: Config) => string> = {
  ECONNREFUSED: (c) => `nothing accepts connections at ${c.database.host}:${c.database.port}: start MariaDB (systemctl start mariadb) or fix database.url`,
  EHOSTUNREACH: (c) => `host ${c.database.host} is unreachable: check database.url and the network`,
  ENOTFOUND: (c) => `host name ${c.database.host} does not resolve: fix database.url`,
  ETIMEDOUT: (c) => `no answer from ${c.database.host}:${c.database.port} within database.connect_timeout: check the address and firewalls`,
  ENOENT: (c) => `socket ${c.database.socketPath ?? '?'} does not exist: is MariaDB running, and is the ?socket= path right?`,
  ER_ACCESS_DENIED_ERROR: (c) => `access denied for ${c.database.user}: check database.password_file (or MAILAUTH_DATABASE_PASSWORD) and the account (CREATE USER / GRANT)`,
  ER_DBACCESS_DENIED_ERROR: (c) =>
    `${c.database.user} has no rights on ${c.database.database}: GRANT SELECT, INSERT, UPDATE, DELETE ON \`${c.database.database}\`.* TO '${c.database.user}'@'…' (CREATE too for \`mailauth db migrate\`)`,
  ER_BAD_DB_ERROR: (c) => `database ${c.database.database} does not exist: CREATE DATABASE \`${c.database.database}\`, then mailauth db migrate`,
};

export async function databaseChecks(config: Config, db: Db): Promise<Check[]> {
  const where = config.database.socketPath ? `${config.database.socketPath}` : `${config.database.host}:${config.database.port}`;
  try {
    await db.ping();
  } catch (err) {
    const dbCode = isMailauthError(err) ? String(err.details?.dbCode ?? '') : '';
    const fix = DB_FIXES[dbCode]?.(config) ?? (isMailauthError(err, 'ERR_DB_TIMEOUT') ? 'the server accepted the connection but did not answer: check its load and database.query_timeout' : 'check database.url, that the server runs, and the account');
    return [
      { id: 'database', status: 'fail', title: `database: cannot reach ${config.database.database} at ${where}`, detail: err instanceof Error ? err.message : String(err), fix },
      { id: 'schema', status: 'skip', title: 'schema: needs a reachable database' },
    ];
  }
  const checks: Check[] = [{ id: 'database', status: 'pass', title: `database: ${config.database.database} at ${where} answers as ${config.database.user}` }];
  try {
    const s = await schemaStatus(db);
    checks.push(
      s.missing.length
        ? { id: 'schema', status: 'fail', title: `schema: ${s.missing.length} table(s) missing: ${s.missing.join(', ')}`, fix: "mailauth db migrate (creates only the missing tables and mailcow's newer columns; changes nothing else)" }
        : s.missingColumns.length
          ? { id: 'schema', status: 'warn', title: `schema: mailcow's newer column(s) missing: ${s.missingColumns.join(', ')}`, detail: 'logins work; provisioning writes them once they exist, as current mailcow does', fix: "mailauth db migrate (adds them with mailcow's types and defaults)" }
          : { id: 'schema', status: 'pass', title: `schema: all ${s.tables.length} tables present` },
    );
  } catch (err) {
    checks.push({ id: 'schema', status: 'fail', title: 'schema: cannot read information_schema', detail: err instanceof Error ? err.message : String(err), fix: `GRANT SELECT on \`${config.database.database}\`.* to ${config.database.user}` });
  }
  return checks;
}

interface Probe {
  status: number;
  body: string;
}

function probe(target: { host: string; port: number } | { socketPath: string }, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number }): Promise<Probe | { error: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      { ...target, path, method: opts.method ?? 'GET', headers: { ...opts.headers, connection: 'close' }, timeout: opts.timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (body.length < 65536) body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (e) => resolve({ error: e.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end(opts.body);
  });
}

function jsonField(body: string, key: string): unknown {
  try {
    const v = JSON.parse(body) as Record<string, unknown>;
    return v && typeof v === 'object' ? v[key] : undefined;
  } catch {
    return undefined;
  }
}

/** Where a client on this host connects to reach a listener (wildcards become loopback). */
export function connectTarget(l: TcpListen | SocketListen): { host: string; port: number } | { socketPath: string } {
  if (l.kind === 'unix') return { socketPath: l.path };
  const host = l.host === '0.0.0.0' ? '127.0.0.1' : l.host === '::' ? '::1' : l.host;
  return { host, port: l.port };
}

export function listenerLabel(l: TcpListen | SocketListen): string {
  return l.kind === 'unix' ? `unix:${l.path}` : `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}

/**
 * Each listener: our daemon answering /healthz (then /readyz, then the token on
 * a harmless userdb lookup), the address free (daemon not running: a warning,
 * doctor also runs before the first start), or something else in the way.
 */
export async function listenerChecks(config: Config, io: DoctorIo, timeoutMs = 3000): Promise<Check[]> {
  const checks: Check[] = [];
  for (const l of config.listen.listeners) {
    const label = listenerLabel(l);
    const id = `listener:${label}`;
    if (l.kind === 'unix') {
      const st = io.lstat(l.path);
      if (!st) {
        const dir = dirname(l.path);
        checks.push({
          id,
          status: 'warn',
          title: `listener ${label}: no socket yet (the daemon is not running)`,
          detail: io.stat(dir) ? undefined : `${dir} does not exist either; mailauth.service creates /run/mailauth (RuntimeDirectory=) when it starts`,
          fix: 'systemctl start mailauth (journalctl -u mailauth says why it stopped)',
        });
        continue;
      }
      if (!st.isSocket()) {
        checks.push({ id, status: 'fail', title: `listener ${label}: exists and is not a socket`, fix: `remove ${l.path} or choose another path in listen.address / listen.socket` });
        continue;
      }
    }
    const target = connectTarget(l);
    const health = await probe(target, '/healthz', { timeoutMs });
    if ('error' in health) {
      const free = ['ECONNREFUSED', 'ENOENT'].includes(health.error);
      checks.push(
        free
          ? { id, status: 'warn', title: `listener ${label}: nothing listens (the daemon is not running)`, detail: l.kind === 'unix' ? 'a stale socket file is left; the daemon replaces it at start' : undefined, fix: 'systemctl start mailauth (journalctl -u mailauth says why it stopped)' }
          : { id, status: 'fail', title: `listener ${label}: ${health.error}`, fix: 'check what holds this address (ss -ltnp / ss -lxp) and listen.address' },
      );
      continue;
    }
    if (health.status !== 200 || jsonField(health.body, 'status') !== 'ok') {
      checks.push({ id, status: 'fail', title: `listener ${label}: another program answers there (GET /healthz → HTTP ${health.status})`, fix: 'stop it or move mailauth to another listen.address' });
      continue;
    }
    const ready = await probe(target, '/readyz', { timeoutMs });
    if ('error' in ready || ready.status !== 200) {
      const reason = 'error' in ready ? ready.error : String(jsonField(ready.body, 'reason') ?? `HTTP ${ready.status}`);
      checks.push({ id, status: 'fail', title: `listener ${label}: mailauth runs but is not ready (${reason})`, detail: 'every login gets internal_failure (Dovecot answers from its cache or [UNAVAILABLE])', fix: 'see the database check above and journalctl -u mailauth' });
      continue;
    }
    if (config.listen.token !== null) {
      const body = JSON.stringify({ user: 'mailauth-doctor-probe' });
      const r = await probe(target, '/v1/userdb', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-mailauth-token': config.listen.token },
        body,
        timeoutMs,
      });
      if (!('error' in r) && r.status === 401) {
        checks.push({ id, status: 'fail', title: `listener ${label}: the running daemon rejects the token in this config`, detail: 'the token file changed after the daemon started, or it reads another config', fix: 'systemctl restart mailauth (and keep the token file in the Lua settings in step)' });
        continue;
      }
    }
    checks.push({ id, status: 'pass', title: `listener ${label}: mailauth answers and is ready` });
  }
  return checks;
}

export const DEFAULT_LUA_SCRIPT = '/usr/share/mailauth/mailauth.lua';
export const DEFAULT_LUA_CONFIG = '/etc/mailauth/dovecot-lua.conf';

/** The settings file the Lua script reads: `key = value` lines, # comments. */
export function parseLuaConfig(text: string): { values: Record<string, string>; problems: string[] } {
  const values: Record<string, string> = {};
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (!m) problems.push(`line ${i + 1}: expected key = value`);
    else values[m[1] as string] = (m[2] as string).trim();
  });
  return { values, problems };
}

/** The url the Lua settings should name for a listener. */
export function luaUrlFor(l: TcpListen | SocketListen): string {
  if (l.kind === 'unix') return `unix:${l.path}`;
  const t = connectTarget(l) as { host: string; port: number };
  return `http://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export interface LuaCheckOptions {
  packaged: string;
  script?: string;
  luaConfig?: string;
  /** The script Dovecot's mailauth passdb loads, when its configuration was read. */
  fromDovecot?: string;
  /** The file system as Dovecot sees it (`--dovecot-root`); the script's path and the dovecot user resolve there. */
  dovecotIo?: DoctorIo;
  /** The root directory Dovecot runs in, named in findings about files inside it. */
  dovecotRoot?: string;
  /**
   * Dovecot's configuration came from another machine or a container (`--doveconf-output`):
   * the script and settings file it names are not on this file system, so they are not checked
   * here unless given with --lua-script / --lua-config.
   */
  elsewhere?: { script: boolean; luaConfig: boolean };
}

/** The Lua script Dovecot loads, the settings file it reads, and Dovecot's config naming it. */
export async function luaChecks(config: Config | null, io: DoctorIo, opts: LuaCheckOptions): Promise<{ checks: Check[]; script: string }> {
  const checks: Check[] = [];
  const packaged = io.stat(opts.packaged);
  checks.push(
    packaged?.isFile()
      ? { id: 'lua.packaged', status: 'pass', title: `Lua script in the package: ${opts.packaged}` }
      : { id: 'lua.packaged', status: 'fail', title: `Lua script missing from the package: ${opts.packaged}`, fix: 'reinstall dovecot-mailauth' },
  );

  const fromDovecot = opts.fromDovecot;
  const dio = opts.dovecotIo ?? io;
  const script = opts.script ?? fromDovecot ?? DEFAULT_LUA_SCRIPT;
  const st = dio.stat(script);
  if (opts.elsewhere?.script) {
    checks.push({ id: 'lua.script', status: 'skip', title: `Lua script: ${script} is on the machine the doveconf output came from; not checked here`, detail: 'check it there: it must exist and be readable by the dovecot user (mailauth doctor on that machine, or --lua-script with a copy)' });
  } else if (!st) {
    const inRoot = opts.dovecotRoot ? ` in ${opts.dovecotRoot}` : '';
    checks.push({ id: 'lua.script', status: opts.script || fromDovecot ? 'fail' : 'warn', title: `Lua script: ${script} does not exist${inRoot}`, detail: fromDovecot ? "Dovecot's passdb loads it: the auth process cannot start without it, so no login works" : undefined, fix: `install -D -m 0644 "$(mailauth lua-path)" ${script}  (or symlink it: ln -s "$(mailauth lua-path)" ${script})` });
  } else {
    const real = dio.realpath(script);
    const same = real !== null && real === io.realpath(opts.packaged);
    const a = dio.readText(script);
    const b = io.readText(opts.packaged);
    const dovecot = dio.user('dovecot');
    if (dovecot && !canRead(dio, script, dovecot)) {
      checks.push({ id: 'lua.script', status: 'fail', title: `Lua script: dovecot cannot read ${script} (${describeOwner(dio, st)})`, detail: "Dovecot's auth process (user dovecot) loads every passdb script at start: it does not start, and no login works", fix: `chmod 0644 ${script} (and o+x on its directories)` });
    } else if (same) {
      checks.push({ id: 'lua.script', status: 'pass', title: `Lua script: ${script} is the package's copy (follows upgrades)` });
    } else if (a !== null && b !== null && sha256(a) !== sha256(b)) {
      checks.push({ id: 'lua.script', status: 'warn', title: `Lua script: ${script} differs from the installed package's version`, detail: 'an older copy left from before an upgrade, or a local edit', fix: `install -m 0644 "$(mailauth lua-path)" ${script} && doveadm reload` });
    } else {
      checks.push({ id: 'lua.script', status: 'pass', title: `Lua script: ${script} matches the package` });
    }
  }

  // The settings file the script reads (url, token_file, timeout, http_client).
  const confPath = opts.luaConfig ?? DEFAULT_LUA_CONFIG;
  const inRoot = opts.dovecotRoot ? ` (in ${opts.dovecotRoot})` : '';
  if (opts.elsewhere?.luaConfig) {
    checks.push({ id: 'lua.config', status: 'skip', title: `Lua settings: ${confPath} is on the machine the doveconf output came from; not checked here`, detail: 'give a copy with --lua-config to compare its url and token with this configuration' });
    return { checks, script };
  }
  const text = dio.readText(confPath);
  if (text === null) {
    checks.push({
      id: 'lua.config',
      status: dio.stat(confPath) ? 'fail' : 'warn',
      title: dio.stat(confPath) ? `Lua settings: cannot read ${confPath}${inRoot}` : `Lua settings: ${confPath}${inRoot} does not exist`,
      detail: 'the Lua script then uses url = http://127.0.0.1:9082 without a token',
      fix: `create it with the lines printed below (mode 0640)`,
    });
    return { checks, script };
  }
  const parsed = parseLuaConfig(text);
  if (parsed.problems.length) {
    checks.push({ id: 'lua.config', status: 'fail', title: `Lua settings: ${confPath} is malformed`, detail: parsed.problems.join('; '), fix: 'use key = value lines (url, token_file, timeout, http_client)' });
    return { checks, script };
  }
  if (!config) {
    checks.push({ id: 'lua.config', status: 'skip', title: `Lua settings: ${confPath} not compared (needs a valid config)` });
    return { checks, script };
  }
  const url = parsed.values.url ?? 'http://127.0.0.1:9082';
  const expected = config.listen.listeners.map(luaUrlFor);
  const problems: Check[] = [];
  if (!expected.includes(url.replace(/\/$/, '').replace('//localhost:', '//127.0.0.1:'))) {
    problems.push({ id: 'lua.config', status: 'fail', title: `Lua settings: url = ${url} is not one of mailauth's listeners (${expected.join(', ')})`, fix: `url = ${expected[0] ?? 'http://127.0.0.1:9082'} in ${confPath}` });
  }
  const tokenFile = parsed.values.token_file;
  if (config.listen.token !== null) {
    if (!tokenFile) {
      problems.push({ id: 'lua.config', status: 'fail', title: `Lua settings: no token_file, but mailauth requires a token`, detail: 'every Dovecot request would be refused with 401 (INTERNAL_FAILURE in Dovecot)', fix: `token_file = <the file listen.token_file names> in ${confPath}` });
    } else {
      const token = dio.readText(tokenFile);
      if (token !== null && token.trim() !== config.listen.token) {
        problems.push({ id: 'lua.config', status: 'fail', title: `Lua settings: ${tokenFile} holds a different token than mailauth's`, fix: 'point token_file at the same file as listen.token_file, or copy it' });
      }
    }
  }
  if (tokenFile) {
    problems.push(secretFileCheck(dio, 'lua.token', 'Lua token_file', tokenFile, { user: null, why: '', fixGroup: 'dovecot' }));
  }
  if (problems.length === 0 || problems.every((p) => p.id !== 'lua.config')) {
    checks.push({ id: 'lua.config', status: 'pass', title: `Lua settings: ${confPath} → ${url}${tokenFile ? ' with token' : ''}` });
  }
  checks.push(...problems);
  return { checks, script };
}

/** The Dovecot blocks (2.3 or 2.4) and the Lua settings this configuration expects. */
/** `workers`: auth worker processes to suggest (at least auth.hash_concurrency; 30 is Dovecot's default). */
export function dovecotSnippet(config: Config | null, script: string, luaConfig: string, major: '2.3' | '2.4' = '2.3', workers = 30): string {
  const first = config?.listen.listeners[0];
  const url = first ? luaUrlFor(first) : 'http://127.0.0.1:9082';
  const tokenSource = config?.secretSources['listen.token_file'];
  const tokenLine =
    config?.listen.token === null || config === null
      ? '# token_file = (none: mailauth requires no token on this listener)'
      : tokenSource?.kind === 'file'
        ? `token_file = ${tokenSource.path}`
        : 'token_file = /etc/mailauth/token   # a file holding the token mailauth gets from MAILAUTH_TOKEN';
  const dovecot =
    major === '2.4'
      ? `# Dovecot 2.4 (conf.d/auth-mailauth.conf.ext; the userdb: docs/dovecot.md)
passdb lua {
  lua_file = ${script}
  lua_settings {
    config_file = ${luaConfig}
  }
}
auth_cache_size = 10M
auth_cache_ttl = 5 mins
auth_cache_negative_ttl = 1 min
service auth {
  idle_kill_interval = infinite
}
service auth-worker {
  process_limit = ${workers}
}
`
      : `# Dovecot 2.3 (conf.d/auth-mailauth.conf.ext; the userdb and 2.4: docs/dovecot.md)
passdb {
  driver = lua
  args = file=${script} blocking=yes cache_key=%u%s
}
auth_cache_size = 10M
auth_cache_ttl = 5 mins
auth_cache_negative_ttl = 1 min
auth_worker_max_count = ${workers}
service auth {
  idle_kill = 4294967295 secs
}
`;
  return `${dovecot}
# ${luaConfig} (read by the Lua script)
url = ${url}
${tokenLine}
`;
}
