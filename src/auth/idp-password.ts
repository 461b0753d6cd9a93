/**
 * Verifying a password against the IdP: the Keycloak mailpassword flow (the
 * hash in the user's mailcow_password attribute, read through the admin API)
 * and the provider's password grant. Both answer in the source vocabulary:
 * a wrong password or an unusable IdP user is password_mismatch with a
 * reason; an IdP that cannot be asked (and no usable stale answer) or a hash
 * that cannot be read is internal_failure — never the other way round.
 */
import { isMailauthError } from '../errors.js';
import type { GenericOidcSettings, KeycloakSettings } from '../idp/index.js';
import { logFault } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { isSchemeAllowed } from '../passwords/index.js';
import type { LookupResult } from './idp-lookup.js';
import type { IdpRuntime } from './idp-runtime.js';
import { PASSWORD_ATTRIBUTE, checkIdpHash } from './idp-user.js';
import type { IdpAnswer } from './idp-user.js';
import type { HashVerifier } from './types.js';

/**
 * An IdP that is down or not answering has its own outage lines (src/breaker/outage-log.ts) and the
 * decision line carries the reason: per login, nothing above debug. Other faults: warn, no stack.
 */
function outageLevel(err: unknown): 'warn' | null {
  return isMailauthError(err) && (err.code === 'ERR_IDP_UNAVAILABLE' || err.code === 'ERR_IDP_TIMEOUT' || err.code === 'ERR_DEADLINE') ? null : 'warn';
}

export interface IdpVerifyContext {
  logger: Logger;
  signal: AbortSignal;
  verifyHash: HashVerifier;
}

export type IdpPasswordOutcome =
  | { result: 'ok'; answer: IdpAnswer; source: LookupResult<IdpAnswer>['source'] }
  /** noUser: the IdP has no acceptable user for this login (none, disabled, ambiguous). */
  | { result: 'password_mismatch'; reason: string; noUser?: true }
  | { result: 'internal_failure'; reason: string };

function faultReason(err: unknown): string {
  if (isMailauthError(err, 'ERR_DEADLINE')) return 'deadline exceeded while asking the identity provider';
  if (isMailauthError(err)) return `identity provider unavailable (${err.code})`;
  return 'identity provider unavailable';
}

function noteStale(rt: IdpRuntime, log: Logger, r: LookupResult<object>, what: string): void {
  if (r.source !== 'stale') return;
  rt.counters.staleAnswers++;
  log.warn({ ageMs: r.ageMs, code: r.fault?.code, cause: r.fault?.message }, `identity provider failed; using its ${what} from ${Math.round(r.ageMs / 1000)} s ago (cache.idp_stale_for)`);
}

/** One IdP answer judged against the password (no I/O but the hash verification). */
async function judge(
  rt: IdpRuntime,
  r: LookupResult<IdpAnswer>,
  username: string,
  password: string,
  ctx: IdpVerifyContext,
): Promise<IdpPasswordOutcome | { result: 'mismatch_on'; answer: IdpAnswer }> {
  const log = ctx.logger;
  const a = r.value;
  if (a === null) return { result: 'password_mismatch', reason: r.reason ?? 'no acceptable IdP user', noUser: true };
  const check = checkIdpHash(a, rt.config.auth.idpHashSchemes);
  if (!check.ok) {
    if (check.kind === 'unparseable') {
      log.error({ mailbox: username, idpUser: a.id }, `${check.reason}; fix the attribute in Keycloak`);
      return { result: 'internal_failure', reason: check.reason };
    }
    if (check.kind === 'refused') log.warn({ mailbox: username, idpUser: a.id, scheme: check.scheme }, `${check.reason}; rehash it with mailauth pw -s BLF-CRYPT`);
    else log.warn({ mailbox: username, idpUser: a.id }, check.reason);
    return { result: 'password_mismatch', reason: check.reason };
  }
  if (a.passwordValues > 1) {
    log.warn({ mailbox: username, idpUser: a.id, values: a.passwordValues }, `the IdP user's ${PASSWORD_ATTRIBUTE} has ${a.passwordValues} values; only the first is used`);
  }
  const v = await ctx.verifyHash(a.password as string, password, ctx.signal);
  switch (v.outcome) {
    case 'match':
      // verify() names the format it actually ran; it must be the one the allow-list accepted.
      if (!isSchemeAllowed(v.scheme, rt.config.auth.idpHashSchemes)) {
        log.warn({ mailbox: username, idpUser: a.id, scheme: v.scheme }, `the IdP user's ${PASSWORD_ATTRIBUTE} verified as scheme ${v.scheme}, which auth.idp_hash_schemes does not accept`);
        return { result: 'password_mismatch', reason: `the IdP user's ${PASSWORD_ATTRIBUTE} uses scheme ${v.scheme}, which auth.idp_hash_schemes does not accept` };
      }
      return { result: 'ok', answer: a, source: r.source };
    case 'mismatch':
      return { result: 'mismatch_on', answer: a };
    case 'malformed':
    case 'unsupported_scheme':
      log.error({ mailbox: username, idpUser: a.id, scheme: v.scheme, problem: v.reason }, `the IdP user's ${PASSWORD_ATTRIBUTE} cannot be verified; fix the attribute in Keycloak`);
      return { result: 'internal_failure', reason: `the IdP user's ${PASSWORD_ATTRIBUTE} cannot be verified: ${v.reason ?? v.outcome}` };
  }
}

/**
 * The mailpassword flow for `username` (the mailbox address or a login to
 * provision). A mismatch against a cached answer at least
 * cache.idp_negative_ttl old asks the IdP once more (the password may have
 * just been changed there), so a brute-force run costs at most one IdP call
 * per user per that interval.
 */
export async function verifyKeycloakPassword(
  rt: IdpRuntime,
  settings: KeycloakSettings,
  username: string,
  password: string,
  ctx: IdpVerifyContext,
): Promise<IdpPasswordOutcome> {
  const log = ctx.logger;
  let r: LookupResult<IdpAnswer>;
  try {
    r = await rt.keycloakUser(settings, username, ctx.signal);
  } catch (err) {
    logFault(log, outageLevel(err), { mailbox: username }, 'Keycloak user lookup failed and no recent answer is cached', err);
    return { result: 'internal_failure', reason: faultReason(err) };
  }
  noteStale(rt, log, r, 'answer');
  const first = await judge(rt, r, username, password, ctx);
  if (first.result !== 'mismatch_on') return first;
  // The user may have changed the password at the IdP since: with the IdP unreachable that cannot be known.
  if (r.source === 'stale') {
    return { result: 'internal_failure', reason: 'the password does not match the stale IdP answer and the identity provider cannot be asked' };
  }

  if (r.source === 'cache' && r.ageMs >= rt.config.cache.idpNegativeTtlMs) {
    let again: LookupResult<IdpAnswer>;
    try {
      again = await rt.keycloakUser(settings, username, ctx.signal, { fresh: true });
    } catch (err) {
      logFault(log, outageLevel(err), { mailbox: username }, 'could not re-check a mismatching password with Keycloak', err);
      return { result: 'password_mismatch', reason: 'password mismatch (the re-check with the IdP failed)' };
    }
    if (again.source === 'idp' && (again.value === null || again.value.password !== first.answer.password)) {
      log.debug({ mailbox: username }, 'the IdP user changed since it was cached; checking again');
      const second = await judge(rt, again, username, password, ctx);
      if (second.result !== 'mismatch_on') return second;
    }
  }
  return { result: 'password_mismatch', reason: 'password mismatch' };
}

/**
 * auth.oidc_password_grant: the provider checks the password itself
 * (Keycloak "Direct access grants", or any OIDC provider allowing the grant).
 */
export async function verifyByPasswordGrant(
  rt: IdpRuntime,
  settings: KeycloakSettings | GenericOidcSettings,
  username: string,
  password: string,
  ctx: Pick<IdpVerifyContext, 'logger' | 'signal'>,
): Promise<{ result: 'ok' | 'password_mismatch' | 'internal_failure'; reason: string }> {
  let r;
  try {
    r = await rt.passwordGrant(settings, username, password, ctx.signal);
  } catch (err) {
    logFault(ctx.logger, outageLevel(err), { mailbox: username }, 'password grant failed and no recent answer is cached', err);
    return { result: 'internal_failure', reason: faultReason(err) };
  }
  noteStale(rt, ctx.logger, r, 'acceptance of this password');
  if (r.value === null) return { result: 'password_mismatch', reason: r.reason ?? 'password grant: the IdP refused the credentials' };
  return { result: 'ok', reason: r.source === 'stale' ? `${settings.source} password grant (stale answer: the IdP is unavailable)` : `${settings.source} password grant` };
}
