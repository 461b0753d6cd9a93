export { createAuthenticator, defaultVerifyHash, pooledVerifyHash, publicReason } from './authenticator.js';
export type { Authenticator, AuthenticatorOptions, AuthConfig } from './authenticator.js';
export { createLoginLog, sqlDatetime } from './login-log.js';
export type { LoginLog, LoginLogConfig, LoginLogOptions, LoginLogStats } from './login-log.js';
export { createAuthCaches, cachedAccountLoader, cachedVerifier, accountIsCurrent } from './cached.js';
export { limitSlowHashes, isSlowHash } from './hash-limit.js';
export type { HashLimiter, HashQueueOptions, HashQueueStats } from './hash-limit.js';
export type { AuthCaches } from './cached.js';
export { dbAccountLoader, accessFlagFor, mailboxAllows, disabledReason, isResource, candidateAppPasswords } from './account.js';
export { mailcowSource, notConfiguredSource, defaultSources, checkSources } from './sources.js';
export { createIdpSources, keycloakSource, genericOidcSource } from './idp-sources.js';
export type { IdpSources } from './idp-sources.js';
export type { IdpRuntime, IdpRuntimeOptions, IdpRuntimeConfig, IdpInstrument, IdpCounters } from './idp-runtime.js';
export { selectIdpUser, toIdpAnswer, checkIdpHash, chooseTemplate, templateDecision, PASSWORD_ATTRIBUTE, TEMPLATE_ATTRIBUTE } from './idp-user.js';
export type { IdpAnswer, Selection, HashCheck, TemplateDecision } from './idp-user.js';
export { decidePassdb } from './passdb.js';
export { createTokenLogin, isTokenMechanism, providerResolver, TOKEN_MECHANISMS, TOKEN_AUTHSOURCES } from './token-login.js';
export type { TokenLoginOptions } from './token-login.js';
export type { PassdbDeps, PassdbDecision } from './passdb.js';
export { decideUserdb } from './userdb.js';
export { userNameProblem, passwordProblem, loggableUser, MAX_USER_BYTES } from './validate.js';
export { PASSDB_RESULTS, USERDB_RESULTS, systemClock } from './types.js';
export type {
  Account,
  AccountLoader,
  Clock,
  HashVerifier,
  IntrospectionRequest,
  TokenLogin,
  TokenVerifyOutcome,
  LoginRecord,
  LoginRecorder,
  PassdbRequest,
  PassdbResult,
  PassdbResultCode,
  PasswordSource,
  SourceContext,
  SourceOutcome,
  UnknownMailboxContext,
  UnknownMailboxHandler,
  UnknownMailboxOutcome,
  UserdbRequest,
  UserdbResult,
  UserdbResultCode,
} from './types.js';
