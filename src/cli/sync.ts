/**
 * `mailauth sync [--dry-run] [--force] [--verbose]` and `mailauth sync status`.
 * Built for cron and systemd timers: exit 0 done, 1 finished with per-user
 * errors (or stopped by an IdP/database fault), 2 configuration error, 3 lock
 * held or too early, 4 aborted by the deprovisioning safety threshold.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { advisoryLockName, lastSuccessfulSyncRun, listSyncRuns, tryAdvisoryLock } from '../db/index.js';
import type { SyncRunRow } from '../db/index.js';
import { connectionOptionsOf, createKeycloakClient, createLdapDirectory, keycloakOptionsOf, loadIdpSettings } from '../idp/index.js';
import { tellDovecot } from './dovecot-notify.js';
import { SYNC_EXIT, SYNC_LOCK_NAME, exitCodeOf, keycloakUserPages, ldapUserPages, runSync, syncPreconditions } from '../sync/index.js';
import type { StepEvent, SyncProgress, SyncReport, UserPages } from '../sync/index.js';
import type { CliApp } from './app.js';
import { CliFailure, intOption } from './app.js';
import type { Io } from './io.js';
import { table } from './render.js';

interface SyncOptions {
  dryRun?: boolean;
  force?: boolean;
  verbose?: boolean;
}

/** Sync runs long transactions of a page each; logins keep their short timeout. */
const SYNC_QUERY_TIMEOUT_MS = 60_000;

export function registerSync(program: Command, app: CliApp): void {
  const sync = program
    .command('sync')
    .description('sync mailboxes with the Keycloak realm or the LDAP directory: import new users, re-apply templates, optionally deactivate users who are gone')
    .option('-n, --dry-run', 'plan and report, write nothing (not gated by sync_interval)')
    .option('-f, --force', 'run even within sync_interval of the last run, and past the deprovisioning safety threshold')
    .option('-v, --verbose', 'also say why a run exits without doing anything (sync switched off, too early)')
    .addHelpText(
      'after',
      `
What it does (identity_provider settings, see mailauth idp show):
  import_users=1    create missing mailboxes from the mapped template (mailcow_template, or LDAP's attribute_field
                    → mappers/templates → default_template)
  periodic_sync=1   re-apply the mapped template to existing keycloak/ldap mailboxes whose template or name changed
  sync.deprovision  (config file) off | deactivate: set active=0 on keycloak/ldap mailboxes whose user is disabled or gone,
                    never delete; reactivate them when the user is back. Refused when more than
                    sync.max_deactivate_ratio of them would go, or the IdP lists no users, unless --force.
Mailboxes of another authsource are never touched. One run at a time across hosts (database lock).
LDAP: the entries under basedn matching filter, read with simple paged results (sync.page_size);
an entry is disabled when pwdAccountLockedTime is 000001010000Z or userAccountControl has ACCOUNTDISABLE.

Exit codes: 0 done, 1 per-user errors or stopped by a fault, 2 configuration error,
            3 another run holds the lock or sync_interval has not passed, 4 aborted by the safety threshold.

Examples:
  mailauth sync --dry-run                 show what a run would do now
  mailauth sync                           what cron or the systemd timer runs (every minute is fine)
  mailauth sync --force                   run now, past the interval and the safety threshold
  mailauth sync status --limit 5          the last five runs`,
    )
    .action(app.action(async (opts: SyncOptions, cmd: Command) => runCommand(app, opts, cmd)));

  sync
    .command('status')
    .description('show the last sync runs')
    .option('--limit <n>', 'how many runs', intOption('--limit', 1, 1000), 10)
    .addHelpText('after', '\nExamples:\n  mailauth sync status\n  mailauth sync status --limit 50 --json')
    .action(
      app.action(async (opts: { limit: number }, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const runs = await listSyncRuns(db, opts.limit);
        const last = await lastSuccessfulSyncRun(db);
        app.print(cmd, { runs, lastSuccessful: last ? { id: last.run.id, started: last.run.started, ageSeconds: Math.floor(last.ageSeconds) } : null }, () =>
          runs.length === 0
            ? 'no sync run recorded yet\n'
            : statusTable(runs) + (last ? `\nlast successful run: #${last.run.id}, ${ago(last.ageSeconds)}\n` : '\nno successful run yet\n'),
        );
      }),
    );
}

async function runCommand(app: CliApp, opts: SyncOptions, cmd: Command): Promise<number> {
  const io = app.io;
  const json = app.globals(cmd).json === true;
  const config = app.config(cmd);
  const db = app.db(config, { queryTimeoutMs: SYNC_QUERY_TIMEOUT_MS });
  const interactive = io.stderrIsTTY === true;
  const quietNote = (message: string): void => {
    if (opts.verbose || interactive) io.stderr.write(`mailauth: ${message}\n`);
  };

  const pre = syncPreconditions(await loadIdpSettings(db));
  if (!pre.ok) {
    if (pre.status !== 'disabled') throw new CliFailure(pre.message, SYNC_EXIT.CONFIG, { status: pre.status });
    quietNote(pre.message);
    if (json) io.stdout.write(JSON.stringify({ status: 'disabled', message: pre.message }, null, 2) + '\n');
    return SYNC_EXIT.OK;
  }
  const s = pre.settings;
  let users: () => UserPages;
  if (s.source === 'ldap') {
    const dir = createLdapDirectory({ ...connectionOptionsOf(s), bindDn: s.binddn, bindPassword: s.bindpass, poolSize: 1 });
    app.cleanup(() => dir.close());
    users = () => ldapUserPages(dir, s, config.sync.pageSize);
  } else {
    const client = createKeycloakClient({
      ...keycloakOptionsOf(s),
      timeoutMs: config.idp.timeoutMs,
      retries: config.idp.retries,
      retryBackoffMs: config.idp.retryBackoffMs,
    });
    app.cleanup(() => client.close());
    users = () => keycloakUserPages(client, config.sync.pageSize);
  }
  const logger = app.logger(config);
  const progress = interactive && !json ? progressLine(io) : null;

  const deactivated: string[] = [];
  const report = await runSync(
    {
      db,
      lock: () => tryAdvisoryLock(config.database, advisoryLockName(SYNC_LOCK_NAME, config.database.database)),
      users,
      logger,
      host: hostname(),
      onStep: (e) => {
        // Issue 17: deactivated mailboxes are told to Dovecot (cache flush + kick) once the run is over.
        if (e.step.action === 'deactivate' && e.outcome === 'applied') deactivated.push(e.step.email);
        if (!progress) logStep(logger, e);
      },
      onProgress: progress?.update,
    },
    {
      dryRun: opts.dryRun === true,
      force: opts.force === true,
      deprovision: config.sync.deprovision,
      maxDeactivateRatio: config.sync.maxDeactivateRatio,
      pageSize: config.sync.pageSize,
      intervalMin: s.syncIntervalMin,
      settings: {
        importUsers: s.importUsers,
        periodicSync: s.periodicSync,
        mapping: s.mapping,
        authsource: s.source,
        templateAttribute: s.source === 'ldap' ? (s.attributeField ?? 'attribute_field') : 'mailcow_template',
      },
    },
  );
  progress?.end();
  if (!report.dryRun && deactivated.length > 0) await tellDovecot(app, config, db, deactivated, 'deactivate');

  const code = exitCodeOf(report);
  if (report.status === 'locked') {
    io.stderr.write(`mailauth: another sync run holds the lock (${advisoryLockName(SYNC_LOCK_NAME, config.database.database)}); exiting\n`);
    if (json) io.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return code;
  }
  if (report.status === 'too_early') {
    const g = report.gate;
    if (g) quietNote(`last successful sync run started ${ago(g.ageSeconds)}; sync_interval is ${g.intervalMin} min, next run in ${Math.ceil(g.waitSeconds / 60)} min (use --force to run now)`);
    if (json) io.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return code;
  }
  app.print(cmd, report, () => summary(report));
  if (report.failure) {
    io.stderr.write(
      `mailauth: sync stopped during ${report.failure.phase === 'users' ? 'the user listing' : 'deprovisioning'}: ${report.failure.message}\n` +
        `  ${report.counts.pages} page(s) (${report.counts.users} users) were applied and stay applied; the rest was not synced` +
        `${report.failure.phase === 'users' ? ' and nothing was deactivated' : ''}; the next run starts over\n`,
    );
  }
  if (report.deprovision.safety && !report.deprovision.safety.ok) io.stderr.write(`mailauth: deprovisioning refused: ${report.deprovision.safety.message}\n`);
  return code;
}

function logStep(logger: ReturnType<CliApp['logger']>, e: StepEvent): void {
  const { step, outcome } = e;
  const fields = { action: step.action, reason: step.reason, email: step.email, outcome, ...(step.template ? { template: step.template } : {}), ...(e.code ? { code: e.code } : {}) };
  if (outcome === 'refused' || outcome === 'error') logger.warn(fields, e.message ?? step.detail);
  else if (step.action === 'skip' || outcome === 'unchanged' || outcome === 'stale') logger.debug(fields, step.detail);
  else logger.info(fields, step.detail);
}

/** One self-overwriting line on a terminal, at most ten redraws a second. */
function progressLine(io: Io): { update: (p: SyncProgress) => void; end: () => void } {
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      drawn = true;
      const c = p.counts;
      const head = p.phase === 'users' ? `users ${p.users} (${p.pages} pages)` : 'deprovisioning';
      io.stderr.write(`\r\x1b[Ksync: ${head} · create ${c.create} · update ${c.update} · reactivate ${c.reactivate} · deactivate ${c.deactivate} · skip ${c.skip} · errors ${c.errors}`);
    },
    end() {
      if (drawn) io.stderr.write('\r\x1b[K');
    },
  };
}

function ago(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 360) / 10} h ago`;
}

function pct(n: number): string {
  return `${Math.round(n * 1000) / 10} %`;
}

function summary(r: SyncReport): string {
  const c = r.counts;
  const title = `sync run #${r.runId ?? '?'}${r.dryRun ? ' (dry run: nothing written)' : ''}${r.forced ? ' (forced)' : ''}: ${r.status} in ${(r.durationMs / 1000).toFixed(1)} s`;
  const lines = [title, `users read: ${c.users} in ${c.pages} page(s)${r.listing ? ` (${r.listing.detail})` : r.listingComplete ? '' : ' — listing incomplete'}`, ''];
  const verb = r.dryRun ? 'would ' : '';
  lines.push(
    table(
      ['action', 'count'],
      [
        [`${verb}create`, c.create],
        [`${verb}update`, c.update],
        [`${verb}reactivate`, c.reactivate],
        [`${verb}deactivate`, c.deactivate],
        ['skip', c.skip],
        ['errors', c.errors],
      ],
    ).trimEnd(),
  );
  const reasons = Object.entries(r.skipped).sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0));
  if (reasons.length > 0) lines.push('', `skipped: ${reasons.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const d = r.deprovision;
  let dep: string;
  if (d.skipped === 'off') dep = 'off (sync.deprovision)';
  else if (d.skipped === 'listing_incomplete') dep = 'skipped: the user listing did not complete';
  else if (d.skipped === 'listing_inconsistent') dep = 'skipped: the user listing and /users/count disagree (the realm changed during the run?); the next run tries again';
  else if (d.safety && !d.safety.ok) dep = `REFUSED: ${d.safety.message}`;
  else {
    const ratio = d.syncedActive ? ` (${pct((d.planned ?? 0) / d.syncedActive)} of the ${d.syncedActive} IdP mailboxes active at the start)` : '';
    dep = `${d.planned ?? 0} deactivation(s)${ratio}${d.safety && d.safety.ok && d.safety.forcedPast ? `, past the safety threshold (${d.safety.forcedPast}) by --force` : ''}`;
  }
  lines.push(`deprovisioning: ${dep}`);
  if (r.errors.length > 0) {
    lines.push('', table(['user', 'action', 'code', 'message'], r.errors.map((e) => [e.email, e.action, e.code, e.message])).trimEnd());
    if (c.errors > r.errors.length) lines.push(`… and ${c.errors - r.errors.length} more`);
  }
  if (r.failure) lines.push('', `stopped (${r.failure.code}): ${r.failure.message}`);
  return lines.join('\n') + '\n';
}

function statusTable(runs: readonly SyncRunRow[]): string {
  const n = (r: SyncRunRow, k: string): string => {
    const v = r.counts[k];
    return typeof v === 'number' ? String(v) : '';
  };
  const duration = (r: SyncRunRow): string => {
    if (!r.finished) return '';
    const ms = Date.parse(r.finished) - Date.parse(r.started);
    return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : '';
  };
  return table(
    ['id', 'started (utc)', 'took', 'status', 'mode', 'users', 'create', 'update', 'react.', 'deact.', 'skip', 'errors', 'host'],
    runs.map((r) => [
      r.id,
      r.started.replace('T', ' ').replace(/\.\d+Z$/, ''),
      duration(r),
      r.status,
      [r.dryRun ? 'dry-run' : '', r.forced ? 'forced' : ''].filter(Boolean).join(',') || '-',
      n(r, 'users'),
      n(r, 'create'),
      n(r, 'update'),
      n(r, 'reactivate'),
      n(r, 'deactivate'),
      n(r, 'skip'),
      n(r, 'errors'),
      r.host,
    ]),
  );
}
