/**
 * Repository for `mailauth_sync_run`: one row per `mailauth sync` run. Times
 * are the database's UTC clock, so the interval gate agrees across hosts
 * whatever their own clocks say.
 */
import { MailauthError } from '../errors.js';
import { jsonColumn } from './pool.js';
import type { Queryable, Row } from './pool.js';

/**
 * `running` while a run is in progress; `ok` finished cleanly; `partial`
 * finished with per-user errors; `failed` stopped early (IdP or database
 * fault); `aborted` stopped by the deprovisioning safety threshold;
 * `interrupted` a `running` row found by a later run (the process died).
 */
export const SYNC_RUN_STATUSES = ['running', 'ok', 'partial', 'failed', 'aborted', 'interrupted'] as const;
export type SyncRunStatus = (typeof SYNC_RUN_STATUSES)[number];
/** Statuses after which the interval gate waits `sync_interval` minutes. */
export const SUCCESSFUL_SYNC_STATUSES: readonly SyncRunStatus[] = ['ok', 'partial'];

export interface SyncRunRow {
  id: number;
  /** ISO 8601, UTC. */
  started: string;
  finished: string | null;
  status: string;
  forced: boolean;
  dryRun: boolean;
  counts: Record<string, unknown>;
  errors: unknown[];
  host: string;
}

/** DATETIME(3) text in UTC → ISO 8601. */
function iso(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v);
  return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/.test(s) ? `${s.replace(' ', 'T')}Z` : s;
}

function jsonOr<T>(v: unknown, fallback: T, id: number, column: string): T {
  try {
    const parsed = jsonColumn(v);
    return parsed === null ? fallback : (parsed as T);
  } catch (err) {
    throw new MailauthError('ERR_DB_QUERY', `mailauth_sync_run ${id}: ${column} is not valid JSON`, { cause: err });
  }
}

function toRun(r: Row): SyncRunRow {
  const id = Number(r.id);
  return {
    id,
    started: iso(r.started) ?? '',
    finished: iso(r.finished),
    status: String(r.status),
    forced: Number(r.forced) === 1,
    dryRun: Number(r.dry_run) === 1,
    counts: jsonOr<Record<string, unknown>>(r.counts, {}, id, 'counts'),
    errors: jsonOr<unknown[]>(r.errors, [], id, 'errors'),
    host: String(r.host ?? ''),
  };
}

const COLUMNS = 'id, started, finished, status, forced, dry_run, counts, errors, host';

export async function startSyncRun(q: Queryable, run: { forced: boolean; dryRun: boolean; host: string }): Promise<number> {
  const res = await q.exec(
    "INSERT INTO mailauth_sync_run (started, status, forced, dry_run, host) VALUES (UTC_TIMESTAMP(3), 'running', ?, ?, ?)",
    [run.forced ? 1 : 0, run.dryRun ? 1 : 0, run.host.slice(0, 255)],
  );
  return res.insertId;
}

export async function finishSyncRun(
  q: Queryable,
  id: number,
  end: { status: Exclude<SyncRunStatus, 'running' | 'interrupted'>; counts: Record<string, unknown>; errors: readonly unknown[] },
): Promise<void> {
  await q.exec('UPDATE mailauth_sync_run SET finished = UTC_TIMESTAMP(3), status = ?, counts = ?, errors = ? WHERE id = ?', [
    end.status,
    JSON.stringify(end.counts),
    JSON.stringify(end.errors),
    id,
  ]);
}

/**
 * Marks rows still `running` as `interrupted`. Only call it while holding the
 * sync lock: then no other run can be in progress, so such rows belong to a
 * process that died.
 */
export async function markInterruptedSyncRuns(q: Queryable): Promise<number> {
  const res = await q.exec(
    "UPDATE mailauth_sync_run SET status = 'interrupted', finished = COALESCE(finished, UTC_TIMESTAMP(3)) WHERE status = 'running'",
  );
  return res.affectedRows;
}

/**
 * The newest successful real (not dry) run and how many seconds ago it
 * started, by the database's clock; null when there is none.
 */
export async function lastSuccessfulSyncRun(q: Queryable): Promise<{ run: SyncRunRow; ageSeconds: number } | null> {
  const rows = await q.rows(
    `SELECT ${COLUMNS}, TIMESTAMPDIFF(MICROSECOND, started, UTC_TIMESTAMP(3)) / 1000000 AS age
       FROM mailauth_sync_run
      WHERE dry_run = 0 AND status IN (${SUCCESSFUL_SYNC_STATUSES.map(() => '?').join(', ')})
      ORDER BY started DESC, id DESC LIMIT 1`,
    [...SUCCESSFUL_SYNC_STATUSES],
  );
  const r = rows[0];
  if (!r) return null;
  return { run: toRun(r), ageSeconds: Number(r.age) };
}

export async function listSyncRuns(q: Queryable, limit: number): Promise<SyncRunRow[]> {
  const n = Math.max(1, Math.min(1000, Math.floor(limit)));
  return (await q.rows(`SELECT ${COLUMNS} FROM mailauth_sync_run ORDER BY started DESC, id DESC LIMIT ${n}`)).map(toRun);
}
