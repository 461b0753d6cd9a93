/** `mailauth serve`: the passdb/userdb daemon, with a graceful shutdown on SIGTERM/SIGINT. */
import type { Command } from 'commander';
import { availableParallelism } from 'node:os';
import { cachedAccountLoader, cachedVerifier, createAuthCaches, createAuthenticator, createIdpSources, createLoginLog, createTokenLogin, limitSlowHashes, pooledVerifyHash } from '../auth/index.js';
import { createHashPool } from '../passwords/index.js';
import type { HashPool } from '../passwords/index.js';
import type { AuthCaches, Authenticator, IdpSources, LoginLog } from '../auth/index.js';
import type { BreakerSnapshot } from '../breaker/index.js';
import type { Config } from '../config/index.js';
import { createGuardedDb } from '../db/index.js';
import type { Db, GuardedDb } from '../db/index.js';
import { createLogger } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { createMetrics, instrumentDb, registerBreakerMetrics, registerIdpLoginMetrics, registerThrottleMetrics, timeIdpCall } from '../metrics/index.js';
import type { Metrics } from '../metrics/index.js';
import { createServer, healthRoutes, introspectionRoute, metricsRoute, policyRoutes, recordResponse } from '../server/index.js';
import { createThrottle, sessionMemory, throttled } from '../policy/index.js';
import type { Throttle } from '../policy/index.js';
import type { ListenAddress, MailauthServer } from '../server/index.js';
import type { CliApp } from './app.js';
import { EXIT } from './app.js';
import type { Io } from './io.js';
import { startPortal } from '../portal/index.js';
import { createDovecotNotifier } from '../dovecot/index.js';
import { dovecotPendingStore } from '../db/index.js';
import type { ChangeHook, RunningPortal } from '../portal/index.js';
import type { Clock } from '../auth/index.js';
import { reloadConfig } from './reload.js';

export interface Daemon {
  addresses: ListenAddress[];
  server: MailauthServer;
  authenticator: Authenticator;
  loginLog: LoginLog;
  metrics: Metrics;
  caches: AuthCaches;
  /** Keycloak / generic-OIDC sources and login provisioning (issue 7). */
  idp: IdpSources;
  /** Issue 17: the brute-force throttle in front of the decision (also behind /v1/policy). */
  throttle: Throttle;
  /** Issue 21: the database's circuit breaker and readiness probe. */
  database: GuardedDb;
  /** The self-service portal on its own listener (issue 19); null when portal.listen is not set. */
  portal: RunningPortal | null;
  /** SHA-crypt worker threads (issue 16). */
  hashPool: HashPool;
  /** Stop accepting, finish in-flight requests, flush the login log. The caller closes the pool. */
  stop(): Promise<void>;
}

/**
 * auth.hash_concurrency 0: one slot per CPU but one, at least one (issue 16). A slot runs a
 * hash at full speed on a core; with every core hashing, the event loop (cached logins,
 * /healthz) and MariaDB queue behind the hashes. On the 2-core test VM one slot kept warm
 * logins of others within a few ms during a bcrypt or SHA-crypt guess flood (bench/availability).
 */
export function defaultHashConcurrency(cpus = availableParallelism()): number {
  return Math.max(1, cpus - 1);
}

/** Builds what the daemon runs and starts listening; shared by `serve`, tests and the demo. */
export async function startDaemon(config: Config, deps: { db: Db; logger: Logger; metrics?: Metrics; portalClock?: Clock }): Promise<Daemon> {
  const { logger } = deps;
  // Issue 4: metrics, the instrumented pool and the caches in front of the decision's seams.
  const metrics = deps.metrics ?? createMetrics();
  // Issue 21: the pool behind a circuit breaker; readiness through its own connection.
  const dbGuard = createGuardedDb(deps.db, config.database, {
    breaker: { failureThreshold: config.outage.failures, backoffMs: config.outage.backoffMs, maxBackoffMs: config.outage.maxBackoffMs, jitter: config.outage.jitter },
    readyTimeoutMs: config.outage.readyTimeoutMs,
    logSummaryMs: config.outage.logSummaryMs,
    logger: logger.child({ component: 'db' }),
  });
  const db = instrumentDb(dbGuard.db, metrics);
  metrics.addDbPool(() => deps.db.stats());
  const caches = createAuthCaches(config.cache);
  metrics.addCache('verify', caches.verify.stats);
  metrics.addCache('account', caches.account.stats);
  // Issue 16: every costly hash off the event loop (SHA-crypt on the pool's workers), under one
  // deadline-aware, bounded queue with work ceilings. See docs/security.md "Hash work".
  const concurrency = config.auth.hashConcurrency || defaultHashConcurrency();
  const hashPool = createHashPool(concurrency);
  const hashes = limitSlowHashes(pooledVerifyHash(hashPool), {
    concurrency,
    maxQueue: config.auth.hashQueue || concurrency * 64,
    caps: config.auth.hashLimits,
  });
  metrics.addHashQueue(hashes.stats);
  const loginLog = createLoginLog({ db, logger: logger.child({ component: 'login-log' }), config: config.loginLog });
  metrics.addLoginLog(() => {
    const s = loginLog.stats();
    return { depth: s.queued, dropped: s.dropped };
  });
  // Issue 7: the IdP sources (Keycloak mailpassword flow, password grant) and login provisioning.
  const idp = createIdpSources({
    db,
    logger: logger.child({ component: 'idp' }),
    config,
    instrument: (name, operation, call) => timeIdpCall(metrics, name, operation, call),
    // A login that created or re-templated a mailbox must not keep reading the old row from the cache.
    onMailboxChanged: (username) => caches.account.delete(username),
  });
  metrics.addCache('idp', idp.runtime.caches.user.stats);
  // Issue 21: every breaker's state in /metrics, /healthz and /readyz (the database first).
  const breakers = (): BreakerSnapshot[] => [
    dbGuard.breaker.snapshot(),
    ...(idp.runtime.breaker ? [idp.runtime.breaker.snapshot()] : []),
    // The token checks' own breaker when oauth.issuer names another server than the IdP's.
    ...(tokenLogin?.breaker && tokenLogin.breaker !== idp.runtime.breaker ? [tokenLogin.breaker.snapshot()] : []),
  ];
  registerBreakerMetrics(metrics, breakers);
  if (config.auth.oidcPasswordGrant) metrics.addCache('idp_grant', idp.runtime.caches.grant.stats);
  registerIdpLoginMetrics(metrics, idp.counters);
  // Issue 20: XOAUTH2/OAUTHBEARER bearer tokens, checked against the IdP's keys or introspection.
  const tokenLogin = config.oauth.enabled
    ? createTokenLogin({ runtime: idp.runtime, config: config.oauth, instrument: (operation, call) => timeIdpCall(metrics, 'oauth', operation, call) })
    : undefined;
  const authenticator = createAuthenticator({
    db,
    logger: logger.child({ component: 'auth' }),
    config: config.auth,
    loginLog,
    loadAccount: cachedAccountLoader(caches.account, db),
    verifyHash: cachedVerifier(caches.verify, hashes.verify),
    sources: idp.sources,
    provisionUnknown: idp.provisionUnknown,
    ...(tokenLogin ? { tokenLogin } : {}),
  });
  // Issue 17: the throttle is asked before each decision and told its outcome (src/policy/guard.ts).
  const throttleLog = logger.child({ component: 'throttle' });
  const throttle = createThrottle({
    config: config.throttle,
    onBlock: (e) => throttleLog.warn({ scope: e.scope, ip: e.ip, user: e.user, failures: e.failures, until: new Date(e.untilMs).toISOString() }, 'login block started'),
  });
  registerThrottleMetrics(metrics, () => throttle.stats());
  const sessions = sessionMemory();
  const guarded = throttled(authenticator, throttle, {
    sessions,
    onRefused: (req, v) => throttleLog.debug({ user: req.user.slice(0, 255), ip: req.remoteIp.slice(0, 64), scope: v.scope, blocked: v.blocked }, 'login refused by the throttle'),
  });
  const routes = [
    ...(config.metrics.enabled ? [metricsRoute(metrics, { token: config.metrics.requireToken ? config.listen.token : null })] : []),
    ...policyRoutes({ throttle, sessions, bodyLimit: config.listen.bodyLimit }),
  ];
  if (tokenLogin) routes.push(introspectionRoute({ authenticator, token: config.listen.token, bodyLimit: config.listen.bodyLimit }));
  routes.push(...healthRoutes({ ready: () => dbGuard.ready(), snapshots: breakers }));
  const server = createServer({ config, authenticator: guarded, db, logger, routes, onResponse: recordResponse(metrics) });
  metrics.addConnections(() => server.connections());
  // Issue 17: Dovecot notifications that failed (a CLI change, a sync run) are retried from here.
  const notifier = createDovecotNotifier({ config: config.dovecot, logger: logger.child({ component: 'dovecot-notify' }), store: dovecotPendingStore(db) });
  let retrying = false;
  const retryTimer = setInterval(() => {
    if (retrying || !config.dovecot.notify) return;
    retrying = true;
    notifier.retryPending().finally(() => (retrying = false));
  }, 60_000);
  retryTimer.unref();
  // What is started above, undone; the listeners are closed before it. One list for stop() and for
  // each failed start (the portal's used to leave the retry timer and the hash pool behind).
  const release = async (): Promise<void> => {
    clearInterval(retryTimer);
    await loginLog.stop();
    await tokenLogin?.close();
    await idp.close();
    dbGuard.stop();
    await hashPool.close();
    if (!deps.metrics) metrics.close();
  };
  let addresses: ListenAddress[];
  try {
    addresses = await server.listen();
  } catch (err) {
    await release();
    throw err;
  }
  // Issue 19: the portal, on its own listener, sharing the decision's seams and the login log.
  let portal: RunningPortal | null = null;
  if (config.portal) {
    // Every change the portal commits: the account cache forgets the mailbox, and every configured
    // Dovecot is told through issue 17's one place (flush; failures are kept for retry, never fatal).
    const notifier = config.dovecot.notify
      ? createDovecotNotifier({ config: config.dovecot, logger: logger.child({ component: 'dovecot-notify' }), store: dovecotPendingStore(db) })
      : null;
    const changed: ChangeHook = async (username, kind) => {
      caches.account.delete(username);
      await notifier?.userChanged(username, kind === 'password_changed' ? 'password' : 'app_password');
    };
    try {
      portal = await startPortal({
        config: { ...config, portal: config.portal },
        db,
        logger,
        loadAccount: cachedAccountLoader(caches.account, db),
        verifyHash: cachedVerifier(caches.verify, hashes.verify),
        sources: idp.sources,
        loginLog,
        idpSettings: async () => (await idp.runtime.snapshot()).settings,
        changed,
        // Password sign-ins count in the same throttle as Dovecot's logins.
        guard: (a) => throttled(a, throttle, { sessions }),
        ...(deps.portalClock ? { clock: deps.portalClock } : {}),
      });
    } catch (err) {
      await server.close();
      await release();
      throw err;
    }
  }
  let stopping: Promise<void> | null = null;
  return {
    addresses,
    server,
    authenticator,
    loginLog,
    metrics,
    caches,
    idp,
    throttle,
    database: dbGuard,
    portal,
    hashPool,
    stop() {
      stopping ??= (async () => {
        clearInterval(retryTimer);
        await portal?.close();
        await server.close();
        await release();
      })();
      return stopping;
    },
  };
}

/** Where the signals come from: the process, or an EventEmitter in tests. */
export interface SignalSource {
  once(signal: 'SIGTERM' | 'SIGINT', fn: () => void): unknown;
  removeListener(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', fn: () => void): unknown;
  /** SIGHUP re-reads the config (src/cli/reload.ts); sources without it get no reload. */
  on?(signal: 'SIGHUP', fn: () => void): unknown;
}

function daemonLogger(config: Config, io: Io): Logger {
  // The daemon's log is its output: stdout (journald), asynchronous when it is the real stdout.
  if (io.stdout === process.stdout) return createLogger({ level: config.log.level, format: config.log.format });
  return createLogger({ level: config.log.level, format: config.log.format, destination: { write: (s: string) => io.stdout.write(s) } as never, isTTY: false });
}

function waitForSignal(signals: SignalSource): Promise<string> {
  return new Promise((resolve) => {
    const on = (name: 'SIGTERM' | 'SIGINT') => () => {
      signals.removeListener('SIGTERM', onTerm);
      signals.removeListener('SIGINT', onInt);
      resolve(name);
    };
    const onTerm = on('SIGTERM');
    const onInt = on('SIGINT');
    signals.once('SIGTERM', onTerm);
    signals.once('SIGINT', onInt);
  });
}

export function serveCommand(signals: SignalSource): (program: Command, app: CliApp) => void {
  return (program, app) => {
    program
      .command('serve')
      .description('run the passdb/userdb daemon Dovecot calls (HTTP/JSON on TCP and/or a Unix socket)')
      .addHelpText(
        'after',
        `
Listens where listen.address (and listen.socket) say; logs JSON lines to stdout.
SIGTERM or SIGINT: stop accepting, finish requests in flight, write queued
login-log rows, close the database pool, exit 0.
SIGHUP (systemctl reload mailauth): re-read the config file and apply log.level;
other changes are logged as needing a restart.

With portal.listen set, also serves the self-service portal on that address
(its own listener; see docs/portal.md).

Routes: POST /v1/passdb, POST / (mailcow-compatible), POST /v1/userdb,
POST /v1/policy (Dovecot's auth-policy protocol), GET /healthz, GET /readyz,
GET /metrics, GET /v1/admin/throttle and POST /v1/admin/throttle/clear
(mailauth block). See docs/http-api.md and docs/security.md.

Examples:
  mailauth serve                              with /etc/mailauth/config.yaml
  mailauth --config ./config.yaml serve
  MAILAUTH_LOG_LEVEL=debug mailauth serve     one line per decision and more`,
      )
      .action(
        app.action(async (_opts: unknown, cmd: Command) => {
          const config = app.config(cmd);
          const logger = daemonLogger(config, app.io);
          const db = app.db(config);
          const daemon = await startDaemon(config, { db, logger });
          const stop = waitForSignal(signals);
          const onHup = (): void => {
            reloadConfig(() => app.config(cmd), config, logger);
            // The IdP settings live in the database; SIGHUP also re-reads them now instead of within 30 s.
            daemon.idp.runtime.invalidateSettings();
          };
          signals.on?.('SIGHUP', onHup);
          logger.info({ addresses: daemon.addresses.map((a) => a.url), database: config.database.url }, 'mailauth listening');
          const signal = await stop;
          signals.removeListener('SIGHUP', onHup);
          logger.info({ signal, inFlight: daemon.server.inFlight() }, 'shutting down');
          await daemon.stop();
          logger.info({ loginLog: daemon.loginLog.stats() }, 'stopped');
          await new Promise<void>((resolve) => logger.flush(() => resolve()));
          return EXIT.OK;
        }),
      );
  };
}

export const registerServe = serveCommand(process);
