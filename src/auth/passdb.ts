/**
 * One login, one way (STYLE 5): validate → account → active/service checks →
 * app passwords → the mailbox's source. Expected negatives are returned; faults
 * throw coded errors that the authenticator turns into internal_failure.
 */
import type { AccessFlag } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { accessFlagFor, candidateAppPasswords, disabledReason, isResource, mailboxAllows } from './account.js';
import { passwordProblem, userNameProblem } from './validate.js';
import { isTokenMechanism, TOKEN_AUTHSOURCES } from './token-login.js';
import type { Account, AccountLoader, HashVerifier, PassdbRequest, PassdbResult, PasswordSource, TokenLogin, UnknownMailboxHandler } from './types.js';

export interface PassdbDeps {
  services: Readonly<Record<string, AccessFlag>>;
  maxPasswordBytes: number;
  maxAppPasswords: number;
  loadAccount: AccountLoader;
  verifyHash: HashVerifier;
  sources: ReadonlyMap<string, PasswordSource>;
  /** Login provisioning for a login without a mailbox (issue 7); absent: user_unknown. */
  provisionUnknown?: UnknownMailboxHandler | undefined;
  /** OAuth bearer-token logins (issue 20); absent: XOAUTH2/OAUTHBEARER are refused. */
  tokenLogin?: TokenLogin | undefined;
}

/** The decision plus what bookkeeping needs; `appPassword` never leaves auth/. */
export interface PassdbDecision extends PassdbResult {
  appPassword?: number;
}

const NOT_UTF8_FOR_IDP = 'the password is not valid UTF-8; only hashes stored by mailcow can check it, not an identity provider';

export async function decidePassdb(req: PassdbRequest, deps: PassdbDeps, log: Logger, signal: AbortSignal): Promise<PassdbDecision> {
  // 1. Shape, before any I/O.
  const badUser = userNameProblem(req.user);
  if (badUser) return { result: 'password_mismatch', reason: badUser };
  // A bearer token (XOAUTH2/OAUTHBEARER) takes the place of the password: longer, and never a hash's input.
  const token = isTokenMechanism(req.mech);
  if (token && !deps.tokenLogin) return { result: 'password_mismatch', reason: `${req.mech} logins are off (oauth.enabled)` };
  // Issue 16: a password that is not UTF-8 arrives as its bytes and is verified as such against
  // every hash scheme; an IdP or a token check cannot take it (refused below, before any call).
  const bytes = req.passwordBytes;
  const secret: string | Uint8Array = bytes ?? req.password;
  if (bytes !== undefined && token) return { result: 'password_mismatch', reason: 'a bearer token is never binary' };
  const badPassword = passwordProblem(secret, token && deps.tokenLogin ? deps.tokenLogin.maxTokenBytes : deps.maxPasswordBytes);
  if (badPassword) return { result: 'password_mismatch', reason: badPassword };
  const flag = accessFlagFor(deps.services, req.service);
  if (flag === null) {
    return { result: 'password_mismatch', reason: `service ${JSON.stringify(req.service.slice(0, 32))} is not in auth.services` };
  }
  // 1b. The token is valid and names this user (token-login.ts), before any mailbox is read or created.
  let tokenVia: string | null = null;
  if (token && deps.tokenLogin) {
    const t = await deps.tokenLogin.verify(req.user, req.password, { logger: log, signal });
    if (t.result !== 'ok') return t;
    tokenVia = t.via;
  }

  // 2. The account; no mailbox → login provisioning if configured (DESIGN rule 2).
  let account = await deps.loadAccount(req.user, signal);
  let provisioned = false;
  if (account === null) {
    const ctx = { logger: log, signal, service: req.service, flag, remoteIp: req.remoteIp, verifyHash: deps.verifyHash };
    if (tokenVia !== null && deps.tokenLogin) {
      const p = await deps.tokenLogin.provision(req.user, ctx);
      if (p.result !== 'provisioned' && p.result !== 'exists') return { result: p.result, reason: p.reason };
      account = await deps.loadAccount(req.user, signal);
      if (account === null) return { result: 'internal_failure', reason: 'the mailbox provisioned for this login cannot be read back' };
      return decideTokenMailbox(account, flag, tokenVia);
    }
    if (!deps.provisionUnknown) return { result: 'user_unknown', reason: 'no such mailbox' };
    if (bytes !== undefined) return { result: 'user_unknown', reason: NOT_UTF8_FOR_IDP };
    const p = await deps.provisionUnknown(req.user, req.password, ctx);
    if (p.result !== 'provisioned' && p.result !== 'exists') return { result: p.result, reason: p.reason };
    account = await deps.loadAccount(req.user, signal);
    if (account === null) return { result: 'internal_failure', reason: 'the mailbox provisioned for this login cannot be read back' };
    // Only a mailbox this login created counts as verified: one that appeared meanwhile is decided as usual.
    provisioned = p.result === 'provisioned' && (account.mailbox.authsource === 'keycloak' || account.mailbox.authsource === 'ldap');
  }
  if (tokenVia !== null) return decideTokenMailbox(account, flag, tokenVia);
  const username = account.mailbox.username;
  if (isResource(account)) return { result: 'user_unknown', reason: `resource mailbox (kind ${account.mailbox.kind}) is not a login account` };

  // 3. Active flags, 4. service access.
  const disabled = disabledReason(account);
  if (disabled) return { result: 'user_disabled', reason: disabled };
  if (!mailboxAllows(account, flag)) return { result: 'user_disabled', reason: `${flag}_access is not enabled for this mailbox` };

  // The password was verified against the IdP by the provisioning step (a new mailbox has no app passwords).
  if (provisioned) return { result: 'ok', user: username, appPassword: 0, reason: `${account.mailbox.authsource} password; mailbox provisioned at first login` };

  // 5. App passwords first, bounded: each may be a slow hash.
  const { candidates, skipped } = req.noAppPasswords === true ? { candidates: [], skipped: 0 } : candidateAppPasswords(account, flag, deps.maxAppPasswords);
  if (skipped > 0) {
    log.warn({ mailbox: username, eligible: candidates.length + skipped, checked: candidates.length }, 'more eligible app passwords than auth.max_app_passwords; the newest were not tried');
  }
  let unverifiable = 0;
  for (const app of candidates) {
    if (signal.aborted) return { result: 'internal_failure', reason: 'deadline exceeded' };
    const r = await deps.verifyHash(app.password, secret, signal);
    if (r.outcome === 'match') return { result: 'ok', user: username, appPassword: app.id, reason: `app password ${app.id}` };
    if (r.outcome !== 'mismatch') {
      unverifiable += 1;
      log.error({ mailbox: username, appPassword: app.id, scheme: r.scheme, problem: r.reason }, 'app password hash cannot be verified');
    }
  }
  if (signal.aborted) return { result: 'internal_failure', reason: 'deadline exceeded' };

  // An app password typed for a service it is not enabled for: refused here, not passed on to a remote
  // source, whose lockout policy would count it against the user (issue 18: directory accounts locked
  // by mail clients holding an app password). mailcow mailboxes keep mailcow's order.
  if (account.mailbox.authsource !== 'mailcow') {
    const other = account.appPasswords.filter((a) => a.active === 1 && a.access[flag] !== 1).slice(0, deps.maxAppPasswords);
    for (const app of other) {
      const r = await deps.verifyHash(app.password, secret, signal);
      if (r.outcome === 'match') return { result: 'password_mismatch', reason: `app password ${app.id} is not enabled for ${flag}` };
    }
    if (signal.aborted) return { result: 'internal_failure', reason: 'deadline exceeded' };
  }

  // 6. The mailbox's own source.
  const source = deps.sources.get(account.mailbox.authsource);
  if (source === undefined) {
    log.error({ mailbox: username, authsource: account.mailbox.authsource }, 'mailbox has an unknown authsource');
    return { result: 'internal_failure', reason: `unknown authsource ${JSON.stringify(account.mailbox.authsource)}` };
  }
  if (bytes !== undefined && source.name !== 'mailcow') {
    log.info({ mailbox: username, authsource: source.name }, NOT_UTF8_FOR_IDP);
    return { result: 'password_mismatch', reason: NOT_UTF8_FOR_IDP };
  }
  const outcome = await source.verify(account, req.password, {
    ...(bytes === undefined ? {} : { passwordBytes: bytes }),
    logger: log,
    signal,
    service: req.service,
    flag,
    remoteIp: req.remoteIp,
    verifyHash: deps.verifyHash,
  });
  if (outcome.result === 'ok') return { result: 'ok', user: username, appPassword: 0, reason: outcome.reason ?? `${source.name} password` };
  // The password may have belonged to an app password we could not check: that is undecided, not wrong.
  if (outcome.result === 'password_mismatch' && unverifiable > 0) {
    return { result: 'internal_failure', reason: `${unverifiable} app password hash(es) cannot be verified` };
  }
  return outcome.reason === undefined ? { result: outcome.result } : { result: outcome.result, reason: outcome.reason };
}

/** Rules 2–4 for a token login's mailbox, then the IdP authsource instead of rules 5–6 (no password to verify). */
function decideTokenMailbox(account: Account, flag: AccessFlag, via: string): PassdbDecision {
  const username = account.mailbox.username;
  if (isResource(account)) return { result: 'user_unknown', reason: `resource mailbox (kind ${account.mailbox.kind}) is not a login account` };
  const disabled = disabledReason(account);
  if (disabled) return { result: 'user_disabled', reason: disabled };
  if (!mailboxAllows(account, flag)) return { result: 'user_disabled', reason: `${flag}_access is not enabled for this mailbox` };
  if (!TOKEN_AUTHSOURCES.includes(account.mailbox.authsource)) {
    return { result: 'password_mismatch', reason: `bearer tokens are for IdP mailboxes; this one's authsource is ${account.mailbox.authsource}` };
  }
  return { result: 'ok', user: username, appPassword: 0, reason: `oauth bearer token (${via})` };
}
