/**
 * OAuth 2.0 bearer-token logins (issue 20): what a token login adds to the
 * decision, as one seam the decision calls (passdb.ts), not a branch inside a
 * password source.
 *
 * - `verify`: the token is checked by src/idp (JWT against the JWKS, or RFC
 *   7662 introspection) and its email claim must name the login user,
 *   case-insensitively. Invalid, expired, revoked, foreign tokens and someone
 *   else's token are password_mismatch; an IdP that cannot be asked is
 *   internal_failure (Dovecot then says [UNAVAILABLE] and counts no failure).
 * - `provision`: a login without a mailbox is provisioned as a password login
 *   would be (Keycloak, login_provisioning on), the IdP user found by address.
 * - after the decision's active and service checks, the mailbox must have an
 *   IdP authsource (`TOKEN_AUTHSOURCES`): a token from the IdP says nothing
 *   about a mailbox whose password lives in mailcow's SQL.
 *
 * The provider is the IdP in the database (re-read like every IdP setting)
 * unless the oauth section names an issuer; introspection uses the IdP's
 * client credentials unless oauth.introspection_client_id is set.
 */
import type { Breaker } from '../breaker/index.js';
import type { OAuthConfig } from '../config/index.js';
import { isMailauthError, MailauthError } from '../errors.js';
import { createTokenValidator, providerFromSettings } from '../idp/index.js';
import type { OAuthProviderRef, TokenValidator } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import { createIdpBreaker } from './idp-runtime.js';
import type { IdpRuntime } from './idp-runtime.js';
import { provisionForToken } from './login-provisioning.js';
import type { TokenLogin, TokenVerifyOutcome } from './types.js';

/** The SASL mechanisms whose "password" is a bearer token (Dovecot's req.mech). */
export const TOKEN_MECHANISMS = ['XOAUTH2', 'OAUTHBEARER'] as const;

export function isTokenMechanism(mech: string | undefined): boolean {
  if (mech === undefined) return false;
  const m = mech.toUpperCase();
  return m === 'XOAUTH2' || m === 'OAUTHBEARER';
}

/** Mailboxes whose identity lives at the IdP that issues the tokens. */
export const TOKEN_AUTHSOURCES: readonly string[] = ['keycloak', 'generic-oidc'];

function faultReason(err: unknown): string {
  if (isMailauthError(err, 'ERR_IDP_NOT_CONFIGURED')) return `OAuth is not usable: ${err.message}`;
  if (isMailauthError(err, 'ERR_IDP_AUTH')) return 'the IdP refused mailauth\'s introspection client (see mailauth idp test)';
  if (isMailauthError(err, 'ERR_DEADLINE')) return 'deadline exceeded while asking the identity provider';
  if (isMailauthError(err)) return `identity provider unavailable (${err.code})`;
  return 'identity provider unavailable';
}

/** The token issuer and introspection client: the oauth section first, else the IdP in the database. */
export function providerResolver(rt: Pick<IdpRuntime, 'snapshot'>, cfg: Pick<OAuthConfig, 'issuer' | 'introspectionClientId' | 'introspectionSecret'>) {
  return async (): Promise<OAuthProviderRef> => {
    const snap = await rt.snapshot();
    if (snap.invalid !== null) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'the identity provider settings are invalid (see mailauth idp show)');
    return providerFromSettings(snap.settings, cfg);
  };
}

export interface TokenLoginOptions {
  runtime: IdpRuntime;
  config: OAuthConfig;
  /** Built from the config by default; tests may pass their own. */
  validator?: TokenValidator;
  instrument?: <T>(operation: string, call: () => Promise<T>) => Promise<T>;
}

/** The IdP could not be reached or answered nonsense: what opens the breaker (a refusal does not). */
const OUTAGE = new Set(['ERR_IDP_UNAVAILABLE', 'ERR_IDP_TIMEOUT', 'ERR_IDP_BAD_RESPONSE']);

/**
 * Every call the token checks make to the IdP (discovery, JWKS, introspection) goes through a
 * circuit breaker, as the password lookups do (issue 21): while the IdP is down a bearer login is
 * internal_failure at once instead of each one waiting for the deadline (issue 16's IdP fault
 * suite saw every login ask again). A JWT checked against keys already held needs no call and
 * is not stopped by it. The breaker is the IdP runtime's when the tokens come from the IdP in
 * the database (one server: its outage is one outage), one of its own when oauth.issuer names
 * another.
 */
function tokenBreaker(rt: IdpRuntime, cfg: OAuthConfig): Breaker | null {
  if (cfg.issuer === null) return rt.breaker;
  return createIdpBreaker(rt.config, rt.clock, rt.logger, 'oauth', 'OAuth token issuer');
}

export function createTokenLogin(opts: TokenLoginOptions): TokenLogin & { validator: TokenValidator; breaker: Breaker | null; close(): Promise<void> } {
  const rt = opts.runtime;
  const ic = rt.config.idp;
  const breaker = tokenBreaker(rt, opts.config);
  const instrument = opts.instrument ?? (<T>(_operation: string, call: () => Promise<T>): Promise<T> => call());
  const guarded = async <T>(operation: string, call: () => Promise<T>): Promise<T> => {
    if (breaker && !breaker.allow()) {
      throw new MailauthError('ERR_IDP_UNAVAILABLE', `not asking the identity provider (${operation}) during its back-off after a failure`, { details: { reason: 'circuit_open' } });
    }
    try {
      const r = await instrument(operation, call);
      breaker?.success();
      return r;
    } catch (err) {
      if (isMailauthError(err) && OUTAGE.has(err.code)) breaker?.failure(err);
      else breaker?.success();
      throw err;
    }
  };
  const validator =
    opts.validator ??
    createTokenValidator({
      config: opts.config,
      provider: providerResolver(rt, opts.config),
      http: { timeoutMs: ic.timeoutMs, retries: ic.retries, retryBackoffMs: ic.retryBackoffMs },
      now: () => rt.clock.now(),
      instrument: guarded,
    });
  async function identify(token: string, ctx: { logger: Logger; signal: AbortSignal }): Promise<TokenVerifyOutcome> {
    let check;
    try {
      check = await validator.validate(token, ctx.signal);
    } catch (err) {
      ctx.logger.warn({ err }, 'bearer token could not be checked');
      return { result: 'internal_failure', reason: faultReason(err) };
    }
    if (!check.ok) return { result: 'password_mismatch', reason: `bearer token refused: ${check.reason}` };
    return { result: 'ok', via: check.via, email: check.email };
  }

  return {
    validator,
    breaker,
    maxTokenBytes: opts.config.maxTokenBytes,
    identify,
    async verify(user, token, ctx): Promise<TokenVerifyOutcome> {
      const check = await identify(token, ctx);
      if (check.result !== 'ok') return check;
      if (check.email.trim().toLowerCase() !== user.trim().toLowerCase()) {
        // The claim is the other user's address: say whose field, not whose address.
        return { result: 'password_mismatch', reason: `bearer token refused: its ${opts.config.emailClaim} claim names another user` };
      }
      return check;
    },
    provision: (user, ctx) => provisionForToken(rt, user, ctx),
    close: async () => {
      if (breaker && breaker !== rt.breaker) breaker.close();
      await validator.close();
    },
  };
}
