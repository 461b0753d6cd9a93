/**
 * Counts and times every query of a Db without the repositories knowing. The
 * label is "<verb> <first table>", derived once per distinct SQL text (the
 * repositories use constant SQL, so the label set stays small).
 */
import type { Db, Params, Queryable, Row } from '../db/index.js';
import { isMailauthError } from '../errors.js';
import type { Metrics } from './index.js';

const labels = new Map<string, string>();
const MAX_LABELS = 200;

export function queryLabel(sql: string): string {
  const known = labels.get(sql);
  if (known !== undefined) return known;
  const verb = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? 'query';
  const table = /\b(?:from|into|update|table)\s+`?(\w+)`?/i.exec(sql)?.[1]?.toLowerCase();
  const label = table ? `${verb} ${table}` : verb;
  if (labels.size < MAX_LABELS) labels.set(sql, label);
  return label;
}

type DbMetrics = Pick<Metrics, 'dbQueries' | 'dbQueryDuration' | 'dbErrors'>;

function timed<T>(m: DbMetrics, sql: string, run: () => Promise<T>): Promise<T> {
  const query = queryLabel(sql);
  const start = process.hrtime.bigint();
  const done = (): void => {
    m.dbQueries.inc({ query });
    m.dbQueryDuration.observe({ query }, Number(process.hrtime.bigint() - start) / 1e9);
  };
  return run().then(
    (v) => {
      done();
      return v;
    },
    (err: unknown) => {
      done();
      m.dbErrors.inc({ query, code: isMailauthError(err) ? err.code : 'unknown' });
      throw err;
    },
  );
}

function wrapQueryable(q: Queryable, m: DbMetrics): Queryable {
  return {
    rows: <T extends Row = Row>(sql: string, params?: Params) => timed(m, sql, () => q.rows<T>(sql, params)),
    exec: (sql: string, params?: Params) => timed(m, sql, () => q.exec(sql, params)),
  };
}

export function instrumentDb(db: Db, m: DbMetrics): Db {
  return {
    ...db,
    ...wrapQueryable(db, m),
    database: db.database,
    transaction: (fn) => db.transaction((tx) => fn(wrapQueryable(tx, m))),
    ping: () => timed(m, 'ping', () => db.ping()),
    close: () => db.close(),
    stats: () => db.stats(),
  };
}
