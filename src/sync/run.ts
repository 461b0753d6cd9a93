/**
 * One sync run: lock, interval gate, then page by page plan (pure) and apply
 * (one transaction per page), then — only after a complete listing —
 * deprovisioning behind its safety threshold. Every run is recorded in
 * mailauth_sync_run.
 *
 * Memory: a page of users and its mailboxes at a time, plus the addresses
 * seen (two Sets of lower-case strings, about 100 bytes per user: ~10 MB for
 * 100,000 users) — deprovisioning cannot know who is gone without them.
 * Deactivations are counted in one pass over the keycloak mailboxes and
 * applied in a second, so nothing else grows with the number of users.
 */
import {
  countKeycloakMailboxes,
  deactivateMailboxBySync,
  finishSyncRun,
  keycloakMailboxPage,
  lastSuccessfulSyncRun,
  listTemplates,
  markInterruptedSyncRuns,
  reactivateMailboxBySync,
  startSyncRun,
  syncDomainStates,
  syncMailboxStates,
} from '../db/index.js';
import type { AdvisoryLock, Db, Queryable, SyncMailboxState, SyncedAuthsource } from '../db/index.js';
import { isMailauthError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../logging/index.js';
import { provisionMailbox, provisionSession, templateAttributeHash } from '../provisioning/index.js';
import type { ProvisionSession } from '../provisioning/index.js';
import type { TemplateInput } from '../provisioning/index.js';
import { checkDeprovisionSafety, planDeprovision, planSync, userAddress } from './plan.js';
import type { SafetyVerdict, SkipReason, SyncAction, SyncSettings, SyncStep, SyncUser } from './plan.js';
import type { ListingResult, UserPages } from './users.js';

export interface SyncRunOptions {
  dryRun: boolean;
  /** Past the interval gate and the safety threshold. */
  force: boolean;
  deprovision: 'off' | 'deactivate';
  maxDeactivateRatio: number;
  /** Mailboxes per deprovisioning page and transaction. */
  pageSize: number;
  /** `sync_interval` of the IdP settings, in minutes. */
  intervalMin: number;
  settings: SyncSettings;
}

/** What happened to a step: done, only planned (dry run), found already done, refused by provisioning, or failed. */
export type StepOutcome = 'applied' | 'planned' | 'unchanged' | 'stale' | 'refused' | 'error';

export interface StepEvent {
  step: SyncStep;
  outcome: StepOutcome;
  /** refused/error: a stable code (provisioning's refusal reason or an ERR_* code) and a message. */
  code?: string;
  message?: string;
}

export interface SyncProgress {
  phase: 'users' | 'deprovision';
  pages: number;
  users: number;
  counts: SyncCounts;
}

export interface SyncDeps {
  db: Db;
  /** Takes the run lock on its own connection; null when another run holds it. */
  lock: () => Promise<AdvisoryLock | null>;
  /** Pages of users; called only once the gates are passed. */
  users: () => UserPages;
  logger: Logger;
  host: string;
  now?: () => Date;
  onStep?: (e: StepEvent) => void;
  onProgress?: (p: SyncProgress) => void;
}

export interface SyncCounts {
  users: number;
  pages: number;
  create: number;
  update: number;
  reactivate: number;
  deactivate: number;
  skip: number;
  errors: number;
}

export interface SyncErrorEntry {
  email: string;
  action: SyncAction;
  code: string;
  message: string;
}

export type SyncStatus = 'ok' | 'partial' | 'failed' | 'aborted' | 'locked' | 'too_early';

export interface SyncReport {
  status: SyncStatus;
  runId: number | null;
  dryRun: boolean;
  forced: boolean;
  counts: SyncCounts;
  /** Skips by reason. */
  skipped: Partial<Record<SkipReason, number>>;
  /** The first MAX_ERRORS per-user errors; counts.errors has the total. */
  errors: SyncErrorEntry[];
  /** Whether every page of users was read: only then can anyone be "gone". */
  listingComplete: boolean;
  /** The listing's own verdict once complete (the count cross-check). */
  listing?: ListingResult;
  deprovision: {
    mode: 'off' | 'deactivate';
    /** Why deprovisioning did not run, when it did not. */
    skipped?: 'off' | 'listing_incomplete' | 'listing_inconsistent';
    planned?: number;
    syncedActive?: number;
    safety?: SafetyVerdict;
  };
  /** The fault that stopped the run early. */
  failure?: { code: string; message: string; phase: 'users' | 'deprovision' };
  /** too_early: seconds until the interval has passed; the last successful run's start. */
  gate?: { lastRunStarted: string; ageSeconds: number; intervalMin: number; waitSeconds: number };
  durationMs: number;
}

export const MAX_ERRORS = 100;

/** Exit codes for cron and systemd (documented in docs/sync.md). */
export const SYNC_EXIT = { OK: 0, ERRORS: 1, CONFIG: 2, BUSY: 3, ABORTED: 4 } as const;

export function exitCodeOf(report: SyncReport): number {
  switch (report.status) {
    case 'ok':
      return SYNC_EXIT.OK;
    case 'partial':
    case 'failed':
      return SYNC_EXIT.ERRORS;
    case 'locked':
    case 'too_early':
      return SYNC_EXIT.BUSY;
    case 'aborted':
      return SYNC_EXIT.ABORTED;
  }
}

function emptyCounts(): SyncCounts {
  return { users: 0, pages: 0, create: 0, update: 0, reactivate: 0, deactivate: 0, skip: 0, errors: 0 };
}

interface RunTemplate {
  input: TemplateInput;
  hash: string;
}

/** Mailbox templates, read once per run (there are few). The oldest row wins a duplicated name, as getTemplate does. */
async function loadTemplates(q: Queryable): Promise<Map<string, RunTemplate>> {
  const rows = (await listTemplates(q, 'mailbox')).sort((a, b) => a.id - b.id);
  const map = new Map<string, RunTemplate>();
  for (const t of rows) {
    if (map.has(t.name)) continue;
    const input: TemplateInput = { name: t.name, attributes: t.attributes, attributesText: t.attributesText };
    map.set(t.name, { input, hash: templateAttributeHash(input) });
  }
  return map;
}

function errorCode(err: unknown): string {
  return isMailauthError(err) ? err.code : 'ERR_UNEXPECTED';
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Database faults that will not go away by retrying the same statement on its own. */
const RUN_STOPPING: readonly ErrorCode[] = ['ERR_DB_UNAVAILABLE', 'ERR_DB_TIMEOUT'];

export async function runSync(deps: SyncDeps, opts: SyncRunOptions): Promise<SyncReport> {
  const started = performance.now();
  const now = deps.now ?? (() => new Date());
  const counts = emptyCounts();
  const report: SyncReport = {
    status: 'ok',
    runId: null,
    dryRun: opts.dryRun,
    forced: opts.force,
    counts,
    skipped: {},
    errors: [],
    listingComplete: false,
    deprovision: { mode: opts.deprovision },
    durationMs: 0,
  };
  const done = (): SyncReport => ({ ...report, durationMs: Math.round(performance.now() - started) });

  const lock = await deps.lock();
  if (lock === null) {
    report.status = 'locked';
    return done();
  }
  try {
    const { db } = deps;
    const interrupted = await markInterruptedSyncRuns(db);
    if (interrupted > 0) deps.logger.warn({ runs: interrupted }, 'earlier sync run(s) ended without finishing (process died?); marked interrupted');

    // Dry runs answer "what would happen now" and are not gated; real runs wait sync_interval after a successful one.
    if (!opts.force && !opts.dryRun) {
      const last = await lastSuccessfulSyncRun(db);
      const intervalSec = opts.intervalMin * 60;
      if (last && last.ageSeconds < intervalSec) {
        report.status = 'too_early';
        report.gate = {
          lastRunStarted: last.run.started,
          ageSeconds: Math.floor(last.ageSeconds),
          intervalMin: opts.intervalMin,
          waitSeconds: Math.ceil(intervalSec - last.ageSeconds),
        };
        return done();
      }
    }

    report.runId = await startSyncRun(db, { forced: opts.force, dryRun: opts.dryRun, host: deps.host });
    const log = deps.logger.child({ syncRun: report.runId, dryRun: opts.dryRun });

    const bump = (reason: SkipReason): void => {
      report.skipped[reason] = (report.skipped[reason] ?? 0) + 1;
    };
    const record = (e: StepEvent): void => {
      const { step, outcome } = e;
      switch (outcome) {
        case 'applied':
        case 'planned':
          counts[step.action] += 1;
          if (step.action === 'skip') bump(step.reason as SkipReason);
          break;
        case 'unchanged':
          counts.skip += 1;
          bump('unchanged');
          break;
        case 'stale':
          counts.skip += 1;
          bump('changed_meanwhile');
          break;
        case 'refused':
        case 'error':
          counts.errors += 1;
          if (report.errors.length < MAX_ERRORS) {
            report.errors.push({ email: step.email, action: step.action, code: e.code ?? 'ERR_UNEXPECTED', message: e.message ?? '' });
          }
          break;
      }
      deps.onStep?.(e);
    };

    const enabled = new Set<string>();
    const disabled = new Set<string>();
    const seen = { has: (a: string): boolean => enabled.has(a) || disabled.has(a) };
    const progress = (phase: SyncProgress['phase']): void => deps.onProgress?.({ phase, pages: counts.pages, users: counts.users, counts: { ...counts } });

    // The threshold's base: mailboxes that existed before this run (a run importing a wrong realm must not dilute it).
    let syncedActive = 0;
    try {
      syncedActive = (await countKeycloakMailboxes(db, opts.settings.authsource ?? 'keycloak')).active;
      const templates = await loadTemplates(db);
      const templateHashes = new Map([...templates].map(([name, t]) => [name, t.hash]));
      const pages = deps.users();
      for (;;) {
        const next = await pages.next();
        if (next.done) {
          report.listing = next.value;
          break;
        }
        const page = next.value;
        await syncPage(db, page, { opts, authsource: opts.settings.authsource ?? 'keycloak', templates, templateHashes, seen, record, now });
        for (const user of page) {
          const a = userAddress(user);
          if ('skip' in a) continue;
          if (user.enabled) enabled.add(a.address);
          else if (!enabled.has(a.address)) disabled.add(a.address);
        }
        counts.users += page.length;
        counts.pages += 1;
        progress('users');
      }
      report.listingComplete = true;
    } catch (err) {
      report.status = 'failed';
      report.failure = { code: errorCode(err), message: errorMessage(err), phase: 'users' };
      log.error({ err, pages: counts.pages, users: counts.users }, 'sync stopped: pages read so far stay applied; deprovisioning skipped');
    }

    if (opts.deprovision === 'off') report.deprovision.skipped = 'off';
    else if (!report.listingComplete) report.deprovision.skipped = 'listing_incomplete';
    else if (report.listing?.consistent === false) {
      // Someone may be missing from the listing only because the realm changed under it: no one is "gone" this time.
      report.deprovision.skipped = 'listing_inconsistent';
      if (report.status === 'ok') report.status = 'partial';
      log.warn({ listing: report.listing.detail }, 'deprovisioning skipped: the user listing and /users/count disagree; the next run tries again');
    } else {
      try {
        await deprovision(db, report, { opts, syncedActive, enabled, disabled, record, now, progress: () => progress('deprovision') });
      } catch (err) {
        report.status = 'failed';
        report.failure = { code: errorCode(err), message: errorMessage(err), phase: 'deprovision' };
        log.error({ err }, 'sync stopped during deprovisioning');
      }
    }

    if (report.status === 'ok' && counts.errors > 0) report.status = 'partial';
    const errors: unknown[] = [...report.errors];
    if (report.failure) errors.unshift({ run: report.failure });
    await finishSyncRun(db, report.runId, {
      status: report.status as 'ok' | 'partial' | 'failed' | 'aborted',
      counts: { ...counts, skipped: report.skipped, listingComplete: report.listingComplete, deprovision: report.deprovision },
      errors,
    });
    return done();
  } finally {
    const kept = await lock.release();
    if (!kept) deps.logger.warn('the sync lock was lost during the run (database connection dropped); another run may have started');
  }
}

interface PageContext {
  opts: SyncRunOptions;
  authsource: SyncedAuthsource;
  templates: ReadonlyMap<string, RunTemplate>;
  templateHashes: ReadonlyMap<string, string>;
  seen: { has(a: string): boolean };
  record: (e: StepEvent) => void;
  now: () => Date;
}

/** Plan one page of users and apply it in one transaction (dry run: plan only). */
async function syncPage(db: Db, users: readonly SyncUser[], ctx: PageContext): Promise<void> {
  const addresses = new Set<string>();
  const domains = new Set<string>();
  for (const u of users) {
    const a = userAddress(u);
    if ('skip' in a) continue;
    addresses.add(a.address);
    domains.add(a.domain);
  }
  const [mailboxes, domainRows] = await Promise.all([syncMailboxStates(db, [...addresses]), syncDomainStates(db, [...domains])]);
  const byEmail = new Map(mailboxes.map((m) => [m.username.toLowerCase(), m]));
  const domainMap = new Map(domainRows.map((d) => [d.domain.toLowerCase(), d.active === 1]));
  const steps = planSync(users, byEmail, ctx.opts.settings, {
    deprovision: ctx.opts.deprovision,
    templates: ctx.templateHashes,
    domains: domainMap,
    seen: ctx.seen,
  });
  const changes = steps.filter((s) => s.action !== 'skip');
  for (const s of steps) if (s.action === 'skip') ctx.record({ step: s, outcome: 'planned' });
  if (changes.length === 0) return;
  if (ctx.opts.dryRun) {
    for (const s of changes) ctx.record({ step: s, outcome: 'planned' });
    return;
  }
  await applySteps(db, changes, ctx);
}

/**
 * All steps in one transaction; events are reported only after the commit.
 * When the transaction fails on a statement (not on the connection), each
 * step is retried in a transaction of its own, so one bad row costs one user,
 * not the page.
 */
async function applySteps(db: Db, steps: readonly SyncStep[], ctx: Pick<PageContext, 'templates' | 'record' | 'now' | 'authsource'>): Promise<void> {
  try {
    const events = await db.transaction(async (tx) => {
      const out: StepEvent[] = [];
      const session = provisionSession();
      for (const s of steps) out.push(await applyStep(tx, s, ctx, session));
      return out;
    });
    events.forEach(ctx.record);
    return;
  } catch (err) {
    if (isMailauthError(err) && RUN_STOPPING.includes(err.code)) throw err;
    if (steps.length === 1) {
      ctx.record({ step: steps[0] as SyncStep, outcome: 'error', code: errorCode(err), message: errorMessage(err) });
      return;
    }
  }
  for (const s of steps) await applySteps(db, [s], ctx);
}

async function applyStep(tx: Queryable, step: SyncStep, ctx: Pick<PageContext, 'templates' | 'now' | 'authsource'>, session: ProvisionSession): Promise<StepEvent> {
  switch (step.action) {
    case 'create':
    case 'update': {
      const template = ctx.templates.get(step.template ?? '');
      if (!template) return { step, outcome: 'refused', code: 'template_missing', message: `mailbox template "${step.template ?? ''}" does not exist` };
      const res = await provisionMailbox(
        tx,
        { username: step.email, name: step.name ?? '', template: template.input, passwordHash: '', authsource: ctx.authsource },
        { mode: step.action, session },
      );
      if ('refused' in res) return { step, outcome: 'refused', code: res.refused, message: res.message };
      return { step, outcome: res.action === 'unchanged' ? 'unchanged' : 'applied' };
    }
    case 'reactivate': {
      const res = await reactivateMailboxBySync(tx, step.email, ctx.authsource);
      return res === null ? { step, outcome: 'stale' } : { step: { ...step, active: res.active }, outcome: 'applied' };
    }
    case 'deactivate': {
      const ok = await deactivateMailboxBySync(tx, step.email, ctx.now().toISOString(), ctx.authsource);
      return { step, outcome: ok ? 'applied' : 'stale' };
    }
    case 'skip':
      return { step, outcome: 'planned' };
  }
}

/**
 * Two passes over the keycloak mailboxes (keyset pages): count what would be
 * deactivated, check the threshold, then plan again page by page and apply.
 */
async function deprovision(
  db: Db,
  report: SyncReport,
  ctx: {
    opts: SyncRunOptions;
    /** Active keycloak mailboxes when the run started. */
    syncedActive: number;
    enabled: ReadonlySet<string>;
    disabled: ReadonlySet<string>;
    record: (e: StepEvent) => void;
    now: () => Date;
    progress: () => void;
  },
): Promise<void> {
  const seen = { enabled: ctx.enabled, disabled: ctx.disabled };
  const authsource = ctx.opts.settings.authsource ?? 'keycloak';
  const pages = async function* (): AsyncGenerator<SyncStep[]> {
    let after: string | null = null;
    for (;;) {
      const page = await keycloakMailboxPage(db, after, ctx.opts.pageSize, authsource);
      if (page.length === 0) return;
      after = (page[page.length - 1] as SyncMailboxState).username;
      yield planDeprovision(page, seen, authsource);
      if (page.length < ctx.opts.pageSize) return;
    }
  };
  let planned = 0;
  for await (const steps of pages()) planned += steps.length;
  const { syncedActive } = ctx;
  const safety = checkDeprovisionSafety({
    deactivations: planned,
    syncedActive,
    idpUsers: ctx.enabled.size + ctx.disabled.size,
    maxDeactivateRatio: ctx.opts.maxDeactivateRatio,
    force: ctx.opts.force,
    authsource,
  });
  report.deprovision = { mode: 'deactivate', planned, syncedActive, safety };
  if (!safety.ok) {
    report.status = 'aborted';
    return;
  }
  if (planned === 0) return;
  for await (const steps of pages()) {
    if (steps.length === 0) continue;
    if (ctx.opts.dryRun) steps.forEach((s) => ctx.record({ step: s, outcome: 'planned' }));
    else await applySteps(db, steps, { templates: new Map(), record: ctx.record, now: ctx.now, authsource });
    ctx.progress();
  }
}
