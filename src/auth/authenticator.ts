/**
 * The entry point the server and the CLI share: runs a decision under a deadline,
 * turns every fault into internal_failure (nothing escapes), logs one line per
 * decision exit, and queues successful logins for the login log.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Queryable } from '../db/index.js';
import { isMailauthError } from '../errors.js';
import { lazyChild, logFault } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { verify } from '../passwords/index.js';
import type { HashPool } from '../passwords/index.js';
import { dbAccountLoader } from './account.js';
import { deadlineRunner } from './deadline.js';
import { decidePassdb } from './passdb.js';
import type { PassdbDecision } from './passdb.js';
import { checkSources, defaultSources } from './sources.js';
import { decideUserdb } from './userdb.js';
import { loggableUser } from './validate.js';
import { systemClock } from './types.js';
import type {
  AccountLoader,
  Clock,
  HashVerifier,
  LoginRecorder,
  IntrospectionRequest,
  PassdbRequest,
  PassdbResult,
  PasswordSource,
  TokenLogin,
  UnknownMailboxHandler,
  UserdbRequest,
  UserdbResult,
} from './types.js';

export type AuthConfig = Pick<Config['auth'], 'services' | 'maxPasswordBytes' | 'maxAppPasswords' | 'deadlineMs'>;

export interface AuthenticatorOptions {
  db: Queryable;
  logger: Logger;
  config: AuthConfig;
  clock?: Clock;
  /** authsource → source; defaults to mailcow + placeholders. Must cover every authsource. */
  sources?: ReadonlyMap<string, PasswordSource>;
  /** Where successful logins go (sasl_log); none by default (e.g. `mailauth auth test`). */
  loginLog?: LoginRecorder;
  /** Seams for the caches: replace or wrap the database loader and the hash verifier. */
  loadAccount?: AccountLoader;
  verifyHash?: HashVerifier;
  /** Login provisioning for logins without a mailbox (createIdpSources); absent: user_unknown. */
  provisionUnknown?: UnknownMailboxHandler;
  /** OAuth bearer-token logins (createTokenLogin, issue 20); absent: XOAUTH2/OAUTHBEARER are refused. */
  tokenLogin?: TokenLogin;
}

/** What every line about one request carries (undefined fields are left out of the line). */
type RequestBindings = {
  reqId: string;
  user: string;
  service: string;
  ip: string | undefined;
  session: string | undefined;
};

export interface Authenticator {
  passdb(req: PassdbRequest): Promise<PassdbResult>;
  /**
   * A bearer token on its own (mailauth's RFC 7662 endpoint for Dovecot 2.4's oauth2 passdb): the
   * token names the user, then the same decision as an OAUTHBEARER login of that user.
   */
  introspect?(req: IntrospectionRequest): Promise<PassdbResult>;
  userdb(req: UserdbRequest): Promise<UserdbResult>;
}

/** Default hash verification: passwords/ as is (prefix-less values are read as CRYPT, like Dovecot). */
export const defaultVerifyHash: HashVerifier = (stored, password) => verify(stored, password);

/** Faults that mean a dependency is down or not answering, as opposed to a bug or bad data. */
const OUTAGE_CODES = new Set(['ERR_DB_UNAVAILABLE', 'ERR_DB_TIMEOUT', 'ERR_IDP_UNAVAILABLE', 'ERR_IDP_TIMEOUT', 'ERR_DEADLINE']);
function isOutageFault(err: unknown): boolean {
  return isMailauthError(err) && OUTAGE_CODES.has(err.code);
}

/** Hash verification with SHA-crypt on the hash pool's worker threads (the daemon's). */
export function pooledVerifyHash(pool: Pick<HashPool, 'shaCrypt'>): HashVerifier {
  return (stored, password) => verify(stored, password, { shaCrypt: pool.shaCrypt });
}

function faultReason(err: unknown): string {
  if (isMailauthError(err, 'ERR_DB_UNAVAILABLE')) return 'database unavailable';
  if (isMailauthError(err, 'ERR_DB_TIMEOUT')) return 'database timeout';
  if (isMailauthError(err, 'ERR_OVERLOADED')) return `overloaded: ${err.message}`;
  if (isMailauthError(err, 'ERR_DEADLINE')) return 'deadline exceeded';
  if (isMailauthError(err)) return `internal error (${err.code})`;
  return 'internal error';
}

/**
 * What a caller over HTTP (Dovecot's log, or whoever can reach the listener) may read (issue 16):
 * an internal fault is named by its kind only, and an app password is not named by its id. The
 * full reason stays in the decision's log line and in `mailauth auth test`'s answer.
 */
const PUBLIC_FAULTS = ['database unavailable', 'database timeout', 'deadline exceeded', 'overloaded', 'identity provider unavailable'];
export function publicReason(result: string, reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined;
  if (result === 'internal_failure') return PUBLIC_FAULTS.find((f) => reason.startsWith(f)) ?? 'internal error';
  if (result === 'ok' && reason.startsWith('app password')) return 'app password';
  return reason;
}

export function createAuthenticator(opts: AuthenticatorOptions): Authenticator {
  const sources = opts.sources ?? defaultSources();
  checkSources(sources);
  const clock = opts.clock ?? systemClock;
  const loadAccount = opts.loadAccount ?? dbAccountLoader(opts.db);
  const verifyHash = opts.verifyHash ?? defaultVerifyHash;
  const { services, maxPasswordBytes, maxAppPasswords, deadlineMs } = opts.config;
  const passdbDeps = { services, maxPasswordBytes, maxAppPasswords, loadAccount, verifyHash, sources, provisionUnknown: opts.provisionUnknown, tokenLogin: opts.tokenLogin };
  const boot = randomBytes(3).toString('hex');
  let seq = 0;
  const nextId = (): string => `${boot}-${(++seq).toString(36)}`;

  const deadline = deadlineRunner<{ result: 'internal_failure'; reason: string }>(deadlineMs, { result: 'internal_failure', reason: 'deadline exceeded' });

  /** Runs `fn` under the deadline; any throw or expiry becomes internal_failure. */
  function guarded<R extends { result: string; reason?: string }>(
    log: Logger,
    kind: 'passdb' | 'userdb',
    fn: (signal: AbortSignal) => Promise<R>,
  ): Promise<R | { result: 'internal_failure'; reason: string }> {
    return deadline.run(fn, (err) => {
      // An outage (database or IdP unreachable) has its own lines (src/breaker/outage-log.ts) and the
      // decision line carries the reason: nothing more per login above debug. Other faults: one line,
      // no stack (issue 21).
      logFault(log, isOutageFault(err) || isMailauthError(err, 'ERR_OVERLOADED') ? null : 'error', {}, `${kind} lookup failed`, err, opts.logger);
      return { result: 'internal_failure', reason: faultReason(err) };
    });
  }

  /**
   * The one line per decision, written flat through the root logger with the request's
   * bindings (the request's child logger is only built when something else is logged).
   */
  function exitLog(b: RequestBindings, kind: string, started: number, r: { result: string; reason?: string }): void {
    // A literal of one shape, not a spread of the bindings: the spread cost ~2.5 µs per login.
    const line = { reqId: b.reqId, user: b.user, service: b.service, ip: b.ip, session: b.session, result: r.result, reason: r.reason, ms: clock.now() - started };
    if (r.result === 'internal_failure') opts.logger.warn(line, `${kind} decision`);
    else opts.logger.info(line, `${kind} decision`);
  }

  /** One passdb decision: bindings, deadline, the exit line and the login log. */
  async function runPassdb(req: PassdbRequest, decide: (signal: AbortSignal, log: Logger) => Promise<PassdbDecision>): Promise<PassdbResult> {
    const started = clock.now();
    const bindings: RequestBindings = {
      reqId: nextId(),
      user: loggableUser(req.user),
      service: req.service.slice(0, 32),
      ip: req.remoteIp.slice(0, 64),
      // Dovecot's session id lets an operator join our line with Dovecot's own log.
      session: req.session ? req.session.slice(0, 64) : undefined,
    };
    const log = lazyChild(opts.logger, bindings);
    try {
      const d: PassdbDecision | { result: 'internal_failure'; reason: string } = await guarded(log, 'passdb', (signal) => decide(signal, log));
      // An introspection learns its user from the token.
      if (bindings.user === '' && req.user !== '') bindings.user = loggableUser(req.user);
      exitLog(bindings, 'passdb', started, d);
      if (d.result === 'ok' && 'user' in d && d.user !== undefined) {
        opts.loginLog?.record({ service: req.service, appPassword: d.appPassword ?? 0, username: d.user, realRip: req.remoteIp });
        return d.reason === undefined ? { result: 'ok', user: d.user } : { result: 'ok', user: d.user, reason: d.reason };
      }
      return d.reason === undefined ? { result: d.result } : { result: d.result, reason: d.reason };
    } catch (err) {
      // Only a bug in logging or bookkeeping lands here; the login still gets an answer.
      log.error({ err }, 'passdb failed outside the decision');
      return { result: 'internal_failure', reason: 'internal error' };
    }
  }

  return {
    passdb: (req) => runPassdb(req, (signal, log) => decidePassdb(req, passdbDeps, log, signal)),

    async introspect(ir) {
      const tokenLogin = opts.tokenLogin;
      // The user is not known before the token is read: it is logged as the token's email once known.
      const req: PassdbRequest = { user: '', password: ir.token, service: ir.service, remoteIp: ir.remoteIp, mech: 'OAUTHBEARER' };
      return runPassdb(req, async (signal, log) => {
        if (!tokenLogin) return { result: 'password_mismatch', reason: 'OAuth logins are off (oauth.enabled)' };
        const id = await tokenLogin.identify(ir.token, { logger: log, signal });
        if (id.result !== 'ok') return id;
        req.user = id.email;
        // The token is checked once: the decision's token step gets this answer instead of asking again.
        const known: TokenLogin = { ...tokenLogin, verify: async () => id };
        return decidePassdb(req, { ...passdbDeps, tokenLogin: known }, log, signal);
      });
    },

    async userdb(req) {
      const started = clock.now();
      const bindings: RequestBindings = { reqId: nextId(), user: loggableUser(req.user), service: (req.service ?? '').slice(0, 32), ip: undefined, session: undefined };
      const log = lazyChild(opts.logger, bindings);
      try {
        const r = await guarded(log, 'userdb', (signal) => decideUserdb(req, { loadAccount }, log, signal));
        exitLog(bindings, 'userdb', started, r);
        return r;
      } catch (err) {
        log.error({ err }, 'userdb failed outside the decision');
        return { result: 'internal_failure', reason: 'internal error' };
      }
    },
  };
}
