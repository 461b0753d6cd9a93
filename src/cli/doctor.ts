/**
 * `mailauth doctor`: one checklist over everything a working install needs —
 * config, secrets' permissions, database and schema, identity provider, the
 * listener, the Lua script and its settings, Dovecot's config — each failure
 * with its fix. Exit 1 when any check fails (warnings do not fail).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import { dovecotAuthSettings, parseDoveconf } from '../dovecot/index.js';
import { isMailauthError } from '../errors.js';
import type { CliApp } from './app.js';
import { EXIT, intOption } from './app.js';
import { configFileCheck, databaseChecks, DEFAULT_LUA_CONFIG, dovecotSnippet, listenerChecks, luaChecks, secretFileCheck, systemDoctorIo } from './doctor-checks.js';
import type { Check, DoctorIo } from './doctor-checks.js';
import { dovecotChecks, rootedIo } from './doctor-dovecot.js';
import { hashLimitChecks } from './doctor-hashes.js';
import { idpChecks } from './doctor-idp.js';
import { dovecotNotifyChecks } from './doctor-notify.js';
import { packagePaths } from './paths.js';
import { checkLine } from './render.js';

interface DoctorOptions {
  luaScript?: string;
  luaConfig?: string;
  dovecotConfig?: string;
  dovecotRoot?: string;
  doveconfOutput?: string;
  dovecot?: boolean;
  idp?: boolean;
  serviceUser: string;
  timeout: number;
}

export interface DoctorReport {
  ok: boolean;
  config: string | null;
  checks: Check[];
  counts: Record<Check['status'], number>;
  /** The Dovecot configuration this setup expects (for the version found, else 2.3). */
  dovecot: string;
  /** The Dovecot version whose configuration was read, or null. */
  dovecotVersion: string | null;
}

/** Dovecot's running configuration: a saved `doveconf -n -P` output, or doveconf run here (in `--dovecot-root`). */
async function readDovecotConfig(io: DoctorIo, opts: DoctorOptions): Promise<{ text: string; source: string } | { error: string; status: 'skip' | 'fail' }> {
  if (opts.dovecot === false) return { error: '--no-dovecot', status: 'skip' };
  if (opts.doveconfOutput) {
    try {
      return { text: readFileSync(opts.doveconfOutput, 'utf8'), source: opts.doveconfOutput };
    } catch (err) {
      return { error: `cannot read ${opts.doveconfOutput}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, status: 'fail' };
    }
  }
  const r = await io.doveconf({ ...(opts.dovecotConfig ? { configFile: opts.dovecotConfig } : {}), ...(opts.dovecotRoot ? { root: opts.dovecotRoot } : {}) });
  const cmd = `${opts.dovecotRoot ? `chroot ${opts.dovecotRoot} ` : ''}doveconf -n -P${opts.dovecotConfig ? ` -c ${opts.dovecotConfig}` : ''}`;
  if ('error' in r) return { error: r.error, status: /is not installed here$/.test(r.error) ? 'skip' : 'fail' };
  return { text: r.text, source: cmd };
}

export async function runDoctor(app: CliApp, cmd: Command, opts: DoctorOptions, io: DoctorIo = systemDoctorIo()): Promise<DoctorReport> {
  const checks: Check[] = [];
  let config: Config | null = null;
  try {
    config = app.config(cmd);
    checks.push({ id: 'config', status: 'pass', title: `config: ${config.file ?? '(built in)'} is valid` });
  } catch (err) {
    const problems = isMailauthError(err, 'ERR_CONFIG_INVALID') ? ((err.details?.problems as string[] | undefined) ?? [err.message]) : [err instanceof Error ? err.message : String(err)];
    const file = isMailauthError(err) ? (err.details?.file as string | undefined) : undefined;
    checks.push({ id: 'config', status: 'fail', title: `config: ${file ?? 'the configuration'} is not valid`, detail: problems.join('\n    '), fix: 'correct the keys named above (config.example.yaml documents each); `mailauth config check` re-checks' });
  }

  const serviceUser = io.user(opts.serviceUser);
  if (config) {
    checks.push(configFileCheck(io, config, serviceUser));
    for (const [key, source] of Object.entries(config.secretSources)) {
      if (source?.kind === 'file') {
        checks.push(secretFileCheck(io, `secret:${key}`, key, source.path, { user: serviceUser, why: `the mailauth service runs as ${opts.serviceUser} and reads it at start`, fixGroup: opts.serviceUser }));
      } else if (source?.kind === 'env') {
        checks.push({ id: `secret:${key}`, status: 'pass', title: `${key}: from $${source.name}` });
      }
    }
    if (!serviceUser) {
      checks.push({ id: 'service-user', status: 'skip', title: `service user ${opts.serviceUser} does not exist here; file access not checked for it`, fix: `adduser --system --group --no-create-home --home /nonexistent ${opts.serviceUser} (mailauth.service runs as it)` });
    }

    const db = app.db(config, { queryTimeoutMs: Math.min(config.database.queryTimeoutMs, opts.timeout) });
    const dbChecks = await databaseChecks(config, db);
    checks.push(...dbChecks);
    const dbOk = dbChecks.every((c) => c.status === 'pass');
    if (opts.idp === false) checks.push({ id: 'idp', status: 'skip', title: 'identity provider: not checked (--no-idp)' });
    else if (!dbOk) checks.push({ id: 'idp', status: 'skip', title: 'identity provider: needs the database (its settings live there)' });
    else checks.push(...(await idpChecks(config, db, { timeoutMs: opts.timeout })));

    if (dbOk) checks.push(...(await hashLimitChecks(config, db)));
    else checks.push({ id: 'hash-limits', status: 'skip', title: 'stored hashes above auth.hash_limits: need the database' });
    if (dbOk) checks.push(...(await dovecotNotifyChecks(config, db)));
    checks.push(...(await listenerChecks(config, io, opts.timeout)));
  } else {
    checks.push({ id: 'database', status: 'skip', title: 'database, identity provider, listener: need a valid config' });
  }

  // Dovecot's configuration, then the script it loads and the settings file that script reads.
  const dc = await readDovecotConfig(io, opts);
  let fromDovecot: string | undefined;
  let luaConfigFromDovecot: string | undefined;
  let major: '2.3' | '2.4' = '2.3';
  let dovecotVersion: string | null = null;
  const hashConcurrency = config ? config.auth.hashConcurrency || availableParallelism() : null;
  if ('error' in dc) {
    checks.push(
      dc.status === 'skip'
        ? { id: 'dovecot', status: 'skip', title: `Dovecot config: not checked (${dc.error})`, detail: 'add the passdb block printed below to the Dovecot that calls mailauth; on that host: doveconf -n -P > FILE, then mailauth doctor --doveconf-output FILE' }
        : { id: 'dovecot', status: 'fail', title: `Dovecot config: cannot be read (${dc.error})`, detail: 'Dovecot refuses a configuration doveconf cannot read: it would not start or reload', fix: 'doveconf -n names the file and line; docs/dovecot.md has the settings for 2.3 and 2.4' },
    );
  } else {
    const parsed = parseDoveconf(dc.text);
    const settings = dovecotAuthSettings(parsed);
    major = settings.major;
    dovecotVersion = settings.version;
    const dv = dovecotChecks(settings, parsed.problems, { ...(opts.luaScript ? { script: opts.luaScript } : {}), hashConcurrency, source: dc.source });
    checks.push(...dv.checks);
    fromDovecot = dv.script;
    luaConfigFromDovecot = dv.luaConfig;
  }
  const luaConfig = opts.luaConfig ?? luaConfigFromDovecot ?? DEFAULT_LUA_CONFIG;
  const luaOpts = {
    packaged: packagePaths().lua,
    ...(opts.luaScript ? { script: opts.luaScript } : {}),
    luaConfig,
    ...(fromDovecot ? { fromDovecot } : {}),
    ...(opts.dovecotRoot ? { dovecotIo: rootedIo(io, opts.dovecotRoot), dovecotRoot: opts.dovecotRoot } : {}),
    ...(opts.doveconfOutput && !opts.dovecotRoot ? { elsewhere: { script: !opts.luaScript && fromDovecot !== undefined, luaConfig: !opts.luaConfig && luaConfigFromDovecot !== undefined } } : {}),
  };
  const lua = await luaChecks(config, io, luaOpts);
  checks.push(...lua.checks);

  const counts = { pass: 0, fail: 0, warn: 0, skip: 0 };
  for (const c of checks) counts[c.status] += 1;
  return { ok: counts.fail === 0, config: config?.file ?? null, checks, counts, dovecot: dovecotSnippet(config, lua.script, luaConfig, major, Math.max(30, hashConcurrency ?? 0)), dovecotVersion };
}

export function renderDoctor(r: DoctorReport): string {
  let s = '';
  for (const c of r.checks) s += checkLine(c.status, c.title, c.detail, c.fix);
  s += `\nDovecot configuration this setup expects:\n\n${r.dovecot.replace(/^/gm, '  ').replace(/^ +$/gm, '')}\n`;
  s += `${r.checks.length} checks: ${r.counts.pass} passed, ${r.counts.warn} warnings, ${r.counts.fail} failed, ${r.counts.skip} skipped\n`;
  s += r.ok ? 'ok\n' : 'FAILED: fix the ✗ lines above\n';
  return s;
}

export function registerDoctor(program: Command, app: CliApp): void {
  program
    .command('doctor')
    .description('check the whole installation (config, secrets, database, stored hashes, identity provider, listener, Lua script, Dovecot) and say how to fix each problem; exit 1 on any failure')
    .option('--lua-script <file>', 'the Lua script Dovecot loads (default: what doveconf says, else /usr/share/mailauth/mailauth.lua)')
    .option('--lua-config <file>', `the Lua script's settings file (default: what Dovecot's config names, else ${DEFAULT_LUA_CONFIG})`)
    .option('--dovecot-config <file>', "Dovecot's config file for doveconf -c (default: Dovecot's own default)")
    .option('--doveconf-output <file>', 'read the output of doveconf -n -P saved in this file instead of running doveconf (Dovecot on another host or in a container)')
    .option('--dovecot-root <dir>', 'Dovecot runs chrooted in this directory: run chroot DIR doveconf, and find the Lua script and the dovecot user there')
    .option('--no-dovecot', 'do not check Dovecot at all')
    .option('--no-idp', 'skip the identity-provider checks')
    .option('--service-user <name>', 'the account mailauth.service runs as', 'mailauth')
    .option('--timeout <ms>', 'per-check network timeout in milliseconds', intOption('--timeout', 100, 60_000), 3000)
    .addHelpText(
      'after',
      `
Each line is ✓ (ok), ! (warning: works, but look at it), ✗ (broken, with the fix) or - (not checked).
Run it as root: it reads the secrets and checks they are readable by the service user.

Stored hashes: every mailbox and app-password hash whose work (bcrypt cost, SHA-crypt
rounds, PBKDF2 iterations, argon2 memory/time/parallelism) is above auth.hash_limits is
listed (never the hash itself): the daemon refuses to verify it, so that login always fails.
✗ when such a hash is in use, ! when only unused ones are (inactive, another authsource).

Dovecot (2.3 and 2.4): doctor reads the running configuration with doveconf -n -P
(-P: doveconf hides cache_key otherwise; nothing of it is printed but the findings)
and fails on every setting docs/dovecot.md calls broken: no Lua passdb loading
mailauth.lua, the script unreadable by the dovecot user, blocking=no / use_worker = no,
a cache key without the service, the auth cache off, an auth process that is stopped
when idle (its cache dies with it: 2.3 service auth { idle_kill = 4294967295 secs },
2.4 service auth { idle_kill_interval = infinite }), fewer auth workers than
auth.hash_concurrency.

Examples:
  mailauth doctor
  mailauth doctor --no-dovecot --lua-config /etc/dovecot/mailauth-lua.conf
  docker exec dovecot doveconf -n -P > dovecot.txt && mailauth doctor --doveconf-output dovecot.txt
  mailauth doctor --json | jq '.checks[] | select(.status == "fail")'`,
    )
    .action(
      app.action(async (opts: DoctorOptions, cmd: Command) => {
        const report = await runDoctor(app, cmd, opts);
        app.print(cmd, report, () => renderDoctor(report));
        return report.ok ? EXIT.OK : EXIT.FAILED;
      }),
    );
}
