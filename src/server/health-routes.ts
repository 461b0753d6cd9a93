/**
 * /readyz and /healthz with the last known state of each dependency (issue 21).
 * They replace the core routes of the same path (createServer's `routes`).
 *
 * /readyz answers within outage.ready_timeout whatever the pool is doing: the
 * database check is a fresh connection of its own (src/db/probe.ts), not a
 * pool query that queues behind logins; while the breaker is open it answers
 * 503 at once from the breaker's state (no connection attempt).
 * /healthz is "the process is alive" (always 200) and also reports the state.
 */
import type { BreakerSnapshot } from '../breaker/index.js';
import type { DbReadiness } from '../db/index.js';
import type { Route } from './routes.js';

export interface HealthSources {
  ready(): Promise<DbReadiness>;
  /** Every breaker's state: the database first, then each IdP. */
  snapshots(): BreakerSnapshot[];
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The JSON shape of one dependency's state (snake_case like the rest of the wire). */
export function dependencyState(s: BreakerSnapshot, now = Date.now()): Record<string, unknown> {
  return {
    up: s.up,
    breaker: s.state,
    down_since: iso(s.downSince),
    down_for_ms: s.downSince === null ? null : Math.max(0, now - s.downSince),
    next_probe_at: iso(s.nextProbeAt),
    // Our code only (no driver code, no message): these routes need no token; the detail is in the
    // log's outage lines and /metrics.
    last_error: s.lastError === null ? null : { code: s.lastError.code.split('/')[0], at: iso(s.lastError.at) },
  };
}

export function healthRoutes(src: HealthSources): Route[] {
  const others = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const s of src.snapshots()) if (s.name !== 'database') out[s.name] = dependencyState(s);
    return out;
  };
  return [
    {
      method: 'GET',
      path: '/readyz',
      auth: false,
      async handle() {
        const r = await src.ready();
        const database = dependencyState(r.database);
        if (r.ready) return { status: 200, json: { status: 'ready', database } };
        const reason = r.database.lastError?.code.startsWith('ERR_DB_TIMEOUT') ? 'database timeout' : 'database unavailable';
        return { status: 503, json: { status: 'unavailable', reason, database } };
      },
    },
    {
      method: 'GET',
      path: '/healthz',
      auth: false,
      async handle() {
        const db = src.snapshots().find((s) => s.name === 'database');
        const idp = others();
        return { status: 200, json: { status: 'ok', ...(db ? { database: dependencyState(db) } : {}), ...(Object.keys(idp).length ? { idp } : {}) } };
      },
    },
  ];
}
