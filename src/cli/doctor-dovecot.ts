/**
 * The Dovecot part of `mailauth doctor`: the running configuration (from
 * `doveconf -n -P`, 2.3 or 2.4) against every setting docs/dovecot.md calls
 * broken. Each finding fails with the line to write instead; the reasons are
 * the ones docs/dovecot.md gives (and the e2e tests show).
 */
import { basename, join } from 'node:path';
import { checksPasswords } from '../dovecot/index.js';
import type { DovecotAuthSettings, LuaDb } from '../dovecot/index.js';
import type { Check, DoctorIo } from './doctor-checks.js';
import { lookupUser } from './doctor-checks.js';

/** Below this an idle auth process (and the auth cache in it) is gone after a quiet night. */
export const IDLE_KILL_FAIL_BELOW = 86_400;
/** 2.3's largest idle_kill; at or above it (or `infinite` on 2.4) the auth process is never killed for idling. */
export const IDLE_KILL_NEVER = 4_294_967_295;

const where = (db: LuaDb, major: '2.3' | '2.4'): string => (major === '2.4' ? `${db.kind} ${db.name ?? 'lua'} { }` : `${db.kind} { driver = lua }`);

function describeSize(bytes: number): string {
  for (const [unit, n] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['k', 1024]] as const) if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  return `${bytes} B`;
}

function describeSeconds(s: number): string {
  if (s === Infinity) return 'never';
  if (s >= IDLE_KILL_NEVER) return `${s} s (never)`;
  for (const [unit, n] of [['day', 86400], ['hour', 3600], ['min', 60]] as const) if (s >= n && s % n === 0) return `${s / n} ${unit}${s === n ? '' : 's'}`;
  return `${s} s`;
}

export interface DovecotCheckOptions {
  /** The script mailauth's passdb should load (`--lua-script`), else any `…/mailauth.lua`. */
  script?: string;
  /** Logins mailauth hashes at once (auth.hash_concurrency resolved), or null without a config. */
  hashConcurrency: number | null;
  /** Where the configuration came from (shown in the first line). */
  source: string;
}

/** True when `db` loads mailauth's script. */
function loadsMailauth(db: LuaDb, script: string | undefined): boolean {
  if (db.file === null) return false;
  return script ? db.file === script || basename(db.file) === basename(script) : basename(db.file) === 'mailauth.lua';
}

/** The checks over a parsed configuration; `script` is the file the mailauth passdb loads, when there is one. */
export function dovecotChecks(s: DovecotAuthSettings, problems: string[], opts: DovecotCheckOptions): { checks: Check[]; script?: string; luaConfig?: string } {
  const checks: Check[] = [];
  const v24 = s.major === '2.4';
  const label = `Dovecot ${s.version ?? s.major}`;
  checks.push(
    problems.length
      ? { id: 'dovecot', status: 'warn', title: `${label}: configuration from ${opts.source}, with lines not understood`, detail: problems.slice(0, 5).join('; ') }
      : { id: 'dovecot', status: 'pass', title: `${label}: configuration from ${opts.source}` },
  );

  // 1. A Lua passdb loading mailauth's script.
  // mailauth's passdbs; the one for passwords is what the checks below are about (a passdb limited to
  // XOAUTH2/OAUTHBEARER, docs/oauth.md, has a never-repeating cache key on purpose).
  const ours = s.luaPassdbs.filter((p) => loadsMailauth(p, opts.script));
  const forPasswords = ours.filter(checksPasswords);
  const passdb = forPasswords.find((p) => p.filters.length === 0) ?? forPasswords[0];
  if (!passdb) {
    const seen = s.luaPassdbs.map((p) => p.file ?? '(no file)');
    checks.push({
      id: 'dovecot.passdb',
      status: 'fail',
      title: ours.length ? `Dovecot config: the Lua passdb loading ${opts.script ?? 'mailauth.lua'} is limited to ${ours.map((p) => (p.mechanisms ?? []).join(' ')).join(', ')}: no passdb checks passwords through it` : `Dovecot config: no Lua passdb loads ${opts.script ?? 'mailauth.lua'}`,
      detail: [`passdbs: ${s.passdbDrivers.length ? s.passdbDrivers.join(', ') : 'none'}`, seen.length ? `Lua passdb scripts: ${seen.join(', ')}` : ''].filter(Boolean).join('; '),
      fix: `add the ${s.major} passdb block printed below (docs/dovecot.md), then doveadm reload`,
    });
  } else if (passdb.filters.length) {
    checks.push({ id: 'dovecot.passdb', status: 'warn', title: `Dovecot config: the mailauth passdb applies only inside ${passdb.filters.join(' > ')}`, detail: 'other protocols log in through another passdb or not at all', fix: 'move the passdb block to the top level unless that is intended' });
  } else {
    checks.push({ id: 'dovecot.passdb', status: 'pass', title: `Dovecot config: ${where(passdb, s.major)} loads ${passdb.file}` });
  }

  // 2. In an auth worker: blocking=yes (2.3) / use_worker = yes (2.4), for the passdb and a Lua userdb alike.
  const dbs = [...ours, ...s.luaUserdbs.filter((u) => loadsMailauth(u, opts.script))];
  const inline = dbs.filter((d) => !d.worker);
  if (inline.length) {
    const d = inline[0] as LuaDb;
    checks.push({
      id: 'dovecot.worker',
      status: 'fail',
      title: `Dovecot config: ${where(d, s.major)} runs mailauth.lua with ${d.workerSetting}${inline.length > 1 ? ` (and ${inline.length - 1} more block)` : ''}`,
      detail: 'the script then runs in the single auth process: each HTTP call to mailauth stalls every other login, cache hits included',
      fix: v24 ? `remove "use_worker = no" from ${where(d, s.major)} (use_worker = yes is the Lua driver's default)` : 'args = file=… blocking=yes cache_key=%u%s (drop blocking=no; yes is the default)',
    });
  } else if (dbs.length) {
    checks.push({ id: 'dovecot.worker', status: 'pass', title: `Dovecot config: mailauth.lua runs in the auth workers (${v24 ? 'use_worker' : 'blocking'} = yes)` });
  }

  // 3. The cache key includes the service: per-service access must not be answered from another service's entry.
  if (passdb) {
    const ck = passdb.cacheKey;
    const hasService = (k: string): boolean => (v24 ? /%\{(?:protocol|service)\b/.test(k) : /%s|%\{(?:service|protocol)\b|%\{s\}/.test(k));
    if (ck === 'hidden') {
      checks.push({ id: 'dovecot.cache_key', status: 'warn', title: 'Dovecot config: the passdb cache key is hidden (doveconf ran without -P)', fix: 'give doctor the output of doveconf -n -P, or let doctor run doveconf itself' });
    } else if (ck === null && !v24) {
      checks.push({
        id: 'dovecot.cache_key',
        status: 'fail',
        title: 'Dovecot config: the mailauth passdb has no cache_key (the Lua default is %u, without the service)',
        detail: 'a cached POP3 success would let the same password into IMAP, though the mailbox or app password may allow only POP3',
        fix: `args = file=${passdb.file} blocking=yes cache_key=%u%s`,
      });
    } else if (ck !== null && !hasService(ck)) {
      checks.push({
        id: 'dovecot.cache_key',
        status: 'fail',
        title: `Dovecot config: the passdb cache key ${ck} does not include the ${v24 ? 'protocol' : 'service'}`,
        detail: "mailauth's answer depends on the service (per-service access), so a cached answer for one would be used for another",
        fix: v24 ? 'remove cache_key from lua_settings (the script sets %{user}\\t%{protocol}) or add %{protocol} to it' : `cache_key=%u%s in the passdb args`,
      });
    } else {
      checks.push({ id: 'dovecot.cache_key', status: 'pass', title: `Dovecot config: passdb cache key ${ck ?? "%{user}\\t%{protocol} (the script's)"} includes the ${v24 ? 'protocol' : 'service'}` });
    }
  }

  // 4. The auth cache is on: it is what carries users through an outage.
  const uncached = forPasswords.filter((p) => !p.useCache);
  const cacheWhy = 'on internal_failure Dovecot answers from its auth cache (expired entries included): without it every user is locked out while mailauth or the database is down, and each login costs a round trip';
  if (s.cacheSize.value === 0) {
    checks.push({ id: 'dovecot.auth_cache', status: 'fail', title: `Dovecot config: the auth cache is off (${s.cacheSize.from === 'default' ? 'auth_cache_size = 0, the default' : s.cacheSize.from})`, detail: cacheWhy, fix: 'auth_cache_size = 10M, auth_cache_ttl = 5 mins, auth_cache_negative_ttl = 1 min' });
  } else if (uncached.length) {
    checks.push({ id: 'dovecot.auth_cache', status: 'fail', title: `Dovecot config: ${where(uncached[0] as LuaDb, s.major)} has use_cache = no`, detail: cacheWhy, fix: `remove "use_cache = no" from ${where(uncached[0] as LuaDb, s.major)}` });
  } else {
    checks.push({ id: 'dovecot.auth_cache', status: 'pass', title: `Dovecot config: auth cache ${describeSize(s.cacheSize.value)}, ttl ${describeSeconds(s.cacheTtl.value)}` });
  }

  // 5. The idle-kill trap: the cache lives in the auth process, which Dovecot stops when it has been idle.
  const idle = s.authIdleKill;
  const idleFix = v24 ? 'service auth { idle_kill_interval = infinite }' : 'service auth { idle_kill = 4294967295 secs }';
  const idleWhy = `Dovecot stops an auth process that has had no clients for ${describeSeconds(idle.value)}; its auth cache goes with it, so after a quiet spell the next login during an outage gets [UNAVAILABLE] instead of the cached answer`;
  if (idle.value < IDLE_KILL_FAIL_BELOW) {
    checks.push({ id: 'dovecot.idle_kill', status: 'fail', title: `Dovecot config: the auth process is stopped after ${describeSeconds(idle.value)} idle (${idle.from === 'default' ? `service auth { ${v24 ? 'idle_kill_interval' : 'idle_kill'} } not set` : idle.from})`, detail: idleWhy, fix: idleFix });
  } else if (idle.value < IDLE_KILL_NEVER) {
    checks.push({ id: 'dovecot.idle_kill', status: 'warn', title: `Dovecot config: the auth process is stopped after ${describeSeconds(idle.value)} idle (${idle.from})`, detail: idleWhy, fix: idleFix });
  } else {
    checks.push({ id: 'dovecot.idle_kill', status: 'pass', title: `Dovecot config: the auth process (and its cache) is never stopped for idling (${idle.from})` });
  }

  // 6. Enough auth workers to keep mailauth's hashing busy.
  const w = s.authWorkers;
  if (opts.hashConcurrency === null) {
    checks.push({ id: 'dovecot.workers', status: 'skip', title: `Dovecot config: ${w.value} auth workers, not compared with auth.hash_concurrency (needs a valid config)` });
  } else if (w.value > 0 && w.value < opts.hashConcurrency) {
    checks.push({
      id: 'dovecot.workers',
      status: 'fail',
      title: `Dovecot config: ${w.value} auth workers (${w.from}), fewer than the ${opts.hashConcurrency} hashes mailauth runs at once (auth.hash_concurrency)`,
      detail: 'each worker runs one lookup at a time, so logins queue in Dovecot while mailauth has idle hashing capacity',
      fix: v24 ? `service auth-worker { process_limit = ${Math.max(30, opts.hashConcurrency)} }` : `auth_worker_max_count = ${Math.max(30, opts.hashConcurrency)}`,
    });
  } else {
    checks.push({ id: 'dovecot.workers', status: 'pass', title: `Dovecot config: ${w.value} auth workers${w.from === 'default' ? ' (the default)' : ''}, at least auth.hash_concurrency (${opts.hashConcurrency})` });
  }
  // The settings file the script reads: 2.4 lua_settings { config_file }, else MAILAUTH_LUA_CONFIG.
  const luaConfig = passdb?.configFile ?? s.luaConfigEnv ?? undefined;
  return { checks, ...(passdb?.file ? { script: passdb.file } : {}), ...(luaConfig ? { luaConfig } : {}) };
}

/** The file system as Dovecot inside `root` sees it (`--dovecot-root`): paths and the dovecot user resolve there. */
export function rootedIo(io: DoctorIo, root: string): DoctorIo {
  const at = (p: string): string => join(root, p);
  return {
    stat: (p) => io.stat(at(p)),
    lstat: (p) => io.lstat(at(p)),
    readText: (p) => io.readText(at(p)),
    realpath: (p) => io.realpath(at(p)),
    user: (name) => lookupUser(name, io.readText(at('/etc/passwd')) ?? '', io.readText(at('/etc/group')) ?? ''),
    doveconf: io.doveconf,
  };
}
