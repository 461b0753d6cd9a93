/**
 * Every metric the daemon exports, on its own prom-client Registry (never the
 * global one, so tests can build several). Lower layers do not import this:
 * caches and queues keep plain counters that are read at scrape time, and the
 * database and IdP clients are wrapped or given the metric objects by the
 * entry point.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { monitorEventLoop } from './event-loop.js';
import { registerRequestMetrics } from './requests.js';
import type { EventLoopMonitor } from './event-loop.js';
import type { CacheStats } from '../cache/index.js';

export { instrumentDb, queryLabel } from './db.js';
export { timeIdpCall } from './idp.js';
export { registerIdpLoginMetrics } from './idp-login.js';
export { registerThrottleMetrics } from './throttle.js';
export type { ThrottleCounters } from './throttle.js';
export { registerBreakerMetrics } from './breaker.js';
export type { IdpLoginCounters } from './idp-login.js';
export { EVENT_LOOP_BUCKETS } from './event-loop.js';

/** Seconds; login latencies are sub-millisecond when cached, up to the deadline when not. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface LoginLogStats {
  /** Rows waiting to be written. */
  depth: number;
  /** Rows dropped because the queue was full (oldest first), since start. */
  dropped: number;
}

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** The Prometheus text exposition. */
  render(): Promise<string>;
  /**
   * One answered request: mailauth_requests_total{endpoint,result} and
   * mailauth_request_duration_seconds{endpoint}. endpoint: passdb | mailcow | userdb |
   * healthz | readyz | metrics | other | not_found; result: the decision's result or http_<status>.
   */
  recordRequest(endpoint: string, result: string, seconds: number): void;
  /** query: "select mailbox" style label (verb + first table). */
  readonly dbQueries: Counter<'query'>;
  readonly dbQueryDuration: Histogram<'query'>;
  readonly dbErrors: Counter<'query' | 'code'>;
  /** idp: keycloak | generic-oidc | ldap; operation: token | user_lookup | userinfo | …; outcome: ok | error. */
  readonly idpCalls: Counter<'idp' | 'operation' | 'outcome'>;
  readonly idpCallDuration: Histogram<'idp' | 'operation'>;
  readonly idpErrors: Counter<'idp' | 'operation' | 'code'>;
  /** Publish a cache's counters under cache="<name>". */
  addCache(name: string, stats: () => CacheStats): void;
  addLoginLog(stats: () => LoginLogStats): void;
  addDbPool(stats: () => PoolStats): void;
  /** Slow hash verifications running and waiting for a slot (auth.hash_concurrency). */
  addHashQueue(stats: () => { running: number; queued: number; dropped?: number; refused?: number; overCeiling?: number }): void;
  /** Open connections and limit hits of the listeners (issue 16). */
  addConnections(stats: () => { open: number; reclaimed: number; idleClosed: number; refused: number; hits: Record<string, number> }): void;
  /** Stop the event-loop monitor's timer (tests, shutdown). */
  close(): void;
}

export interface MetricsOptions {
  /** Node process metrics (CPU, memory, GC, handles); default true. */
  processMetrics?: boolean;
  eventLoopResolutionMs?: number;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const loop: EventLoopMonitor = monitorEventLoop(registry, { resolutionMs: opts.eventLoopResolutionMs ?? 10 });

  const caches = new Map<string, () => CacheStats>();
  const cacheCounter = (name: string, help: string, pick: (s: CacheStats) => number): void => {
    // Counters whose truth lives in the cache: re-stated from it at every scrape.
    new Counter({
      name,
      help,
      labelNames: ['cache'],
      registers,
      collect(this: Counter<'cache'>) {
        this.reset();
        for (const [cache, stats] of caches) this.inc({ cache }, pick(stats()));
      },
    });
  };
  const cacheGauge = (name: string, help: string, pick: (s: CacheStats) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['cache'],
      registers,
      collect(this: Gauge<'cache'>) {
        this.reset();
        for (const [cache, stats] of caches) this.set({ cache }, pick(stats()));
      },
    });
  };
  cacheCounter('mailauth_cache_hits_total', 'Cache lookups answered from the cache', (s) => s.hits);
  cacheCounter('mailauth_cache_misses_total', 'Cache lookups that had to load or compute', (s) => s.misses);
  cacheCounter('mailauth_cache_evictions_total', 'Entries pushed out by the entry or byte bound', (s) => s.evictions);
  cacheCounter(
    'mailauth_cache_stale_total',
    'account: cached entries found changed in the database and reloaded; idp: stale answers served while the IdP failed',
    (s) => s.stale,
  );
  cacheGauge('mailauth_cache_entries', 'Entries held', (s) => s.entries);
  cacheGauge('mailauth_cache_bytes', 'Estimated bytes held', (s) => s.bytes);
  cacheGauge('mailauth_cache_max_entries', 'Configured entry bound', (s) => s.maxEntries);
  cacheGauge('mailauth_cache_max_bytes', 'Configured byte bound', (s) => s.maxBytes);

  let loginLog: (() => LoginLogStats) | null = null;
  new Gauge({
    name: 'mailauth_login_log_queue_depth',
    help: 'Login-log rows waiting to be written to sasl_log',
    registers,
    collect(this: Gauge) {
      if (loginLog) this.set(loginLog().depth);
    },
  });
  new Counter({
    name: 'mailauth_login_log_dropped_total',
    help: 'Login-log rows dropped because the queue was full',
    registers,
    collect(this: Counter) {
      if (!loginLog) return;
      this.reset();
      this.inc(loginLog().dropped);
    },
  });

  let pool: (() => PoolStats) | null = null;
  new Gauge({
    name: 'mailauth_db_pool_connections',
    help: 'Database pool connections by state',
    labelNames: ['state'],
    registers,
    collect(this: Gauge<'state'>) {
      if (!pool) return;
      const s = pool();
      this.set({ state: 'total' }, s.total);
      this.set({ state: 'idle' }, s.idle);
      this.set({ state: 'waiting' }, s.waiting);
    },
  });

  let hashQueue: (() => { running: number; queued: number; dropped?: number; refused?: number; overCeiling?: number }) | null = null;
  new Gauge({
    name: 'mailauth_hash_verifications',
    help: 'Slow hash verifications (bcrypt, argon2, PBKDF2) running, and queued for a slot',
    labelNames: ['state'],
    registers,
    collect(this: Gauge<'state'>) {
      if (!hashQueue) return;
      const s = hashQueue();
      this.set({ state: 'running' }, s.running);
      this.set({ state: 'queued' }, s.queued);
    },
  });
  // Issue 16: checks the hash queue did not run, by why.
  new Counter({
    name: 'mailauth_hash_checks_not_run_total',
    help: 'Costly hash checks not run: dropped (request already answered), refused (queue full or no time left before the deadline), over_ceiling (stored work above auth.hash_limits)',
    labelNames: ['why'],
    registers,
    collect(this: Counter<'why'>) {
      if (!hashQueue) return;
      const s = hashQueue();
      this.reset();
      this.inc({ why: 'dropped' }, s.dropped ?? 0);
      this.inc({ why: 'refused' }, s.refused ?? 0);
      this.inc({ why: 'over_ceiling' }, s.overCeiling ?? 0);
    },
  });

  // Issue 16: the listeners' connections and their limits.
  let connections: (() => { open: number; reclaimed: number; idleClosed: number; refused: number; hits: Record<string, number> }) | null = null;
  new Gauge({
    name: 'mailauth_connections_open',
    help: 'Connections open on the listeners',
    registers,
    collect(this: Gauge) {
      if (connections) this.set(connections().open);
    },
  });
  new Counter({
    name: 'mailauth_connection_limit_total',
    help: 'Times a connection limit was reached: total (listen.max_connections), per_peer (listen.max_connections_per_peer), fd (accept() failed for lack of file descriptors)',
    labelNames: ['limit'],
    registers,
    collect(this: Counter<'limit'>) {
      if (!connections) return;
      this.reset();
      for (const [limit, n] of Object.entries(connections().hits)) this.inc({ limit }, n);
    },
  });
  new Counter({
    name: 'mailauth_connections_closed_total',
    help: 'Connections the daemon closed: reclaimed (idle, to make room), idle_untrusted (idle without a valid token), refused (at a limit with nothing to reclaim)',
    labelNames: ['why'],
    registers,
    collect(this: Counter<'why'>) {
      if (!connections) return;
      const s = connections();
      this.reset();
      this.inc({ why: 'reclaimed' }, s.reclaimed);
      this.inc({ why: 'idle_untrusted' }, s.idleClosed);
      this.inc({ why: 'refused' }, s.refused);
    },
  });

  const requests = registerRequestMetrics(registry, LATENCY_BUCKETS);

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    recordRequest: requests.record,
    dbQueries: new Counter({ name: 'mailauth_db_queries_total', help: 'Database queries run', labelNames: ['query'], registers }),
    dbQueryDuration: new Histogram({
      name: 'mailauth_db_query_duration_seconds',
      help: 'Database query time, including the wait for a pool connection',
      labelNames: ['query'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    dbErrors: new Counter({ name: 'mailauth_db_errors_total', help: 'Database queries that failed, by error code', labelNames: ['query', 'code'], registers }),
    idpCalls: new Counter({ name: 'mailauth_idp_calls_total', help: 'Calls to the identity provider', labelNames: ['idp', 'operation', 'outcome'], registers }),
    idpCallDuration: new Histogram({
      name: 'mailauth_idp_call_duration_seconds',
      help: 'Identity-provider call time',
      labelNames: ['idp', 'operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    idpErrors: new Counter({ name: 'mailauth_idp_errors_total', help: 'Identity-provider calls that failed, by error code', labelNames: ['idp', 'operation', 'code'], registers }),
    addCache(name, stats) {
      caches.set(name, stats);
    },
    addLoginLog(stats) {
      loginLog = stats;
    },
    addDbPool(stats) {
      pool = stats;
    },
    addHashQueue(stats) {
      hashQueue = stats;
    },
    addConnections(stats) {
      connections = stats;
    },
    close() {
      loop.stop();
    },
  };
}
