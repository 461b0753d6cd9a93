/**
 * What the IdP password sources share for the daemon's lifetime: the settings
 * snapshot, one Keycloak client and one OIDC client (rebuilt when the
 * connection settings change), the idp cache with its lookup policy
 * (idp-lookup.ts), the password-grant cache, and counters for /metrics.
 * Built once by the entry point (createIdpSources); sources never build
 * their own collaborators.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { createIdpCache, splitBudget } from '../cache/index.js';
import type { IdpCache } from '../cache/index.js';
import { createBreaker, logOutages } from '../breaker/index.js';
import type { Breaker } from '../breaker/index.js';
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import { createKeycloakClient, createOidcClient, keycloakOptionsOf, oidcOptionsOf } from '../idp/index.js';
import type { GenericOidcSettings, KeycloakClient, KeycloakSettings, OidcClient, PasswordGrantResult } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import { createIdpLookup } from './idp-lookup.js';
import type { IdpLookup, LookupResult } from './idp-lookup.js';
import { createIdpSettingsSource, DEFAULT_SETTINGS_RELOAD_MS } from './idp-settings-source.js';
import type { IdpSettingsSource, IdpSnapshot } from './idp-settings-source.js';
import { selectIdpUser, toIdpAnswer } from './idp-user.js';
import type { IdpAnswer } from './idp-user.js';
import { systemClock } from './types.js';
import type { Clock } from './types.js';

/** Wraps one outbound IdP call, e.g. with timeIdpCall for /metrics. */
export type IdpInstrument = <T>(idp: string, operation: string, call: () => Promise<T>) => Promise<T>;

export type IdpRuntimeConfig = {
  cache: Config['cache'];
  auth: Pick<Config['auth'], 'idpHashSchemes' | 'oidcPasswordGrant' | 'deadlineMs'>;
  idp: Config['idp'];
  /** Issue 21: the IdP's breaker grows its back-off up to outage.max_backoff, with jitter; absent: a fixed idp.cooldown. */
  outage?: Pick<Config['outage'], 'maxBackoffMs' | 'jitter' | 'logSummaryMs'>;
};

export interface IdpRuntimeOptions {
  db: Db;
  logger: Logger;
  config: IdpRuntimeConfig;
  clock?: Clock;
  /** How often the identity_provider rows and templates are re-read (default 30 s). */
  settingsReloadMs?: number;
  instrument?: IdpInstrument;
  /** undici dispatcher for the IdP clients (tests). */
  dispatcher?: Dispatcher;
  /** Key of the password-grant cache's HMAC; random per process by default. */
  secret?: Buffer;
  /** Called after a login wrote a mailbox row (created or template re-applied), so the account cache drops it. */
  onMailboxChanged?: (username: string) => void;
}

/** A password the provider's grant accepted (the cache keeps only this marker under an HMAC key). */
export interface GrantAccepted {
  accepted: true;
}

export interface IdpCounters {
  /** Mailboxes created by login provisioning. */
  provisioned: number;
  /** Login provisionings refused or skipped (no template, domain limits…), nothing written. */
  provisionRefused: number;
  /** Existing keycloak mailboxes whose template or name was re-applied at login. */
  templateApplied: number;
  /** Logins answered from a stale IdP answer while the IdP failed. */
  staleAnswers: number;
}

export interface IdpRuntime {
  readonly db: Db;
  readonly logger: Logger;
  readonly config: IdpRuntimeConfig;
  readonly clock: Clock;
  readonly counters: IdpCounters;
  readonly caches: { user: IdpCache<IdpAnswer>; grant: IdpCache<GrantAccepted> };
  /** Issue 21: the circuit breaker in front of the IdP (user lookups and password grants); null with idp.cooldown 0. */
  readonly breaker: Breaker | null;
  snapshot(): Promise<IdpSnapshot>;
  /** The Keycloak user a login names (idp cache ▸ admin API ▸ stale). */
  keycloakUser(settings: KeycloakSettings, email: string, signal: AbortSignal, opts?: { fresh?: boolean }): Promise<LookupResult<IdpAnswer>>;
  /** The provider's password grant (grant cache ▸ token endpoint ▸ stale); value null = refused. */
  passwordGrant(settings: KeycloakSettings | GenericOidcSettings, username: string, password: string, signal: AbortSignal): Promise<LookupResult<GrantAccepted>>;
  mailboxChanged(username: string): void;
  /** Re-read the settings on the next login. */
  invalidateSettings(): void;
  close(): Promise<void>;
}

/** Settings that decide which server and credentials a client talks to: exactly what the client is built from. */
function keycloakFingerprint(s: KeycloakSettings): string {
  return JSON.stringify(keycloakOptionsOf(s));
}

function oidcFingerprint(s: GenericOidcSettings): string {
  return JSON.stringify(oidcOptionsOf(s));
}

function grantOutcome(r: PasswordGrantResult): { value: GrantAccepted | null; reason?: string } {
  if (r.ok) return { value: { accepted: true } };
  const why = r.reason === 'account_disabled' ? 'the IdP account is disabled' : r.reason === 'account_not_set_up' ? 'the IdP account has required actions pending' : 'the IdP refused the credentials';
  return { value: null, reason: `password grant: ${why}` };
}

/**
 * A circuit breaker in front of one IdP server (null with idp.cooldown 0): open after one failure,
 * the first period idp.cooldown, growing up to outage.max_backoff with jitter; its outages logged
 * as `what`. The IdP runtime has one; token logins another when oauth.issuer names another server.
 */
export function createIdpBreaker(config: Pick<IdpRuntimeConfig, 'idp' | 'outage'>, clock: Clock, log: Logger, name: string, what: string): Breaker | null {
  const ic = config.idp;
  if (ic.cooldownMs <= 0) return null;
  const oc = config.outage;
  const b = createBreaker({
    name,
    code: 'ERR_IDP_UNAVAILABLE',
    reason: 'identity provider unavailable',
    failureThreshold: 1,
    backoffMs: ic.cooldownMs,
    maxBackoffMs: Math.max(ic.cooldownMs, oc?.maxBackoffMs ?? ic.cooldownMs),
    jitter: oc?.jitter ?? 0,
    clock,
  });
  logOutages(b, log, { summaryMs: oc?.logSummaryMs ?? 0, what });
  return b;
}

export function createIdpRuntime(opts: IdpRuntimeOptions): IdpRuntime {
  const clock = opts.clock ?? systemClock;
  const { cache: cc, idp: ic, auth } = opts.config;
  const instrument: IdpInstrument = opts.instrument ?? ((_idp, _op, call) => call());
  const secret = opts.secret ?? randomBytes(32);
  const log = opts.logger;

  const idpBytes = splitBudget(cc.maxBytes, { verify: cc.verifyEntries, account: cc.accountEntries, idp: cc.idpEntries }).idp;
  const grantOn = auth.oidcPasswordGrant;
  const cacheOpts = { ttlMs: cc.idpTtlMs, negativeTtlMs: cc.idpNegativeTtlMs, staleForMs: cc.idpStaleForMs, clock };
  const userCache = createIdpCache<IdpAnswer>({ ...cacheOpts, maxEntries: cc.idpEntries, maxBytes: grantOn ? Math.floor(idpBytes / 2) : idpBytes });
  const grantCache = createIdpCache<GrantAccepted>({ ...cacheOpts, maxEntries: grantOn ? cc.idpEntries : 0, maxBytes: grantOn ? Math.floor(idpBytes / 2) : 0 });

  // The IdP call of one lookup may use most of the request deadline; the rest is left
  // for the stale fallback, the hash verification and a provisioning transaction.
  const budgetMs = Math.max(100, Math.floor(auth.deadlineMs * 0.75));

  const settingsSource: IdpSettingsSource = createIdpSettingsSource({
    db: opts.db,
    reloadMs: opts.settingsReloadMs ?? DEFAULT_SETTINGS_RELOAD_MS,
    clock,
    logger: log,
  });

  let kc: { fp: string; client: KeycloakClient } | null = null;
  let oidc: { fp: string; client: OidcClient } | null = null;
  const retired: Promise<void>[] = [];

  // One breaker for the IdP server, shared by both lookups.
  const breaker = createIdpBreaker(opts.config, clock, log, 'idp', 'identity provider');

  const userLookup: IdpLookup<IdpAnswer> = createIdpLookup<IdpAnswer>({
    cache: userCache,
    cachedNegativeReason: 'no acceptable IdP user (cached answer)',
    budgetMs,
    cooldownMs: ic.cooldownMs,
    breaker,
    clock,
    fetch: async (email, signal) => {
      const client = kc?.client;
      if (!client) throw new Error('no Keycloak client');
      const users = await instrument('keycloak', 'user_lookup', () => client.findUsersByEmail(email, { exact: true, signal }));
      const sel = selectIdpUser(users, email);
      return sel.ok ? { value: toIdpAnswer(sel.user) } : { value: null, reason: sel.reason };
    },
  });

  const grantLookup: IdpLookup<GrantAccepted> = createIdpLookup<GrantAccepted>({
    cache: grantCache,
    cachedNegativeReason: 'password grant: the IdP refused these credentials (cached answer)',
    budgetMs,
    cooldownMs: ic.cooldownMs,
    breaker,
    clock,
  });

  function keycloakClient(s: KeycloakSettings): KeycloakClient {
    const fp = keycloakFingerprint(s);
    if (kc?.fp === fp) return kc.client;
    if (kc) {
      retired.push(kc.client.close());
      log.info({ serverUrl: s.serverUrl, realm: s.realm }, 'Keycloak connection settings changed; IdP caches cleared');
      userLookup.reset();
      grantLookup.reset();
    }
    const client = createKeycloakClient({
      ...keycloakOptionsOf(s),
      timeoutMs: ic.timeoutMs,
      retries: ic.retries,
      retryBackoffMs: ic.retryBackoffMs,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    });
    kc = { fp, client };
    return client;
  }

  function oidcClient(s: GenericOidcSettings): OidcClient {
    const fp = oidcFingerprint(s);
    if (oidc?.fp === fp) return oidc.client;
    if (oidc) {
      retired.push(oidc.client.close());
      log.info({ tokenUrl: s.tokenUrl }, 'OIDC connection settings changed; IdP caches cleared');
      grantLookup.reset();
    }
    const client = createOidcClient({
      ...oidcOptionsOf(s),
      timeoutMs: ic.timeoutMs,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    });
    oidc = { fp, client };
    return client;
  }

  /** openid-client takes no per-call signal: the shared budget ends the wait instead. */
  function withSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  const counters: IdpCounters = { provisioned: 0, provisionRefused: 0, templateApplied: 0, staleAnswers: 0 };

  return {
    db: opts.db,
    logger: log,
    config: opts.config,
    clock,
    counters,
    caches: { user: userCache, grant: grantCache },
    breaker,
    snapshot: () => settingsSource.get(),
    async keycloakUser(settings, email, signal, o = {}) {
      keycloakClient(settings);
      return userLookup.lookup(email.trim().toLowerCase(), signal, o);
    },
    async passwordGrant(settings, username, password, signal) {
      const user = username.trim().toLowerCase();
      // The cache key holds an HMAC of the password, never the password.
      const key = `${settings.source}\u0000${user}\u0000${createHmac('sha256', secret).update(user).update('\u0000').update(password).digest('base64url')}`;
      const grant =
        settings.source === 'keycloak'
          ? ((client: KeycloakClient) => (sig: AbortSignal) => instrument('keycloak', 'password_grant', () => client.passwordGrant(user, password, { signal: sig })))(keycloakClient(settings))
          : ((client: OidcClient) => (sig: AbortSignal) => instrument('generic-oidc', 'password_grant', () => withSignal(client.passwordGrant(user, password, { signal: sig }), sig)))(oidcClient(settings));
      return grantLookup.lookup(key, signal, { fetch: async (_key, sig) => grantOutcome(await grant(sig)) });
    },
    mailboxChanged(username) {
      opts.onMailboxChanged?.(username);
    },
    invalidateSettings() {
      settingsSource.invalidate();
    },
    async close() {
      await Promise.allSettled([...retired, kc?.client.close(), oidc?.client.close()]);
    },
  };
}

