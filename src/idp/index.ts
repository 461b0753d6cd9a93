/** Identity providers: settings model and store, Keycloak and generic-OIDC clients, the `idp test` checklist. */
export {
  IDP_SOURCES,
  SOURCE_KEYS,
  MAPPING_KEYS,
  SECRET_KEYS,
  DEFAULT_OIDC_SCOPES,
  DEFAULT_SYNC_INTERVAL_MIN,
  DEFAULT_LDAP_PORT,
  DEFAULT_LDAPS_PORT,
  DEFAULT_LDAP_CONNECT_TIMEOUT_MS,
  DEFAULT_LDAP_OP_TIMEOUT_MS,
  LDAP_PRESETS,
  LDAP_PRESET_DEFAULTS,
  MASK,
  templateFor,
  isIdpSource,
  isLoopbackHost,
  transportAllowed,
  parseIdpSettings,
  parseMapping,
  serializeIdpSettings,
  serializeMapping,
  formatProblems,
  maskRaw,
  maskSettings,
  mappingValueProblem,
  mappingTemplates,
  withMapping,
  withoutMapping,
} from './settings.js';
export type {
  IdpSource,
  IdpSettings,
  KeycloakSettings,
  GenericOidcSettings,
  LdapSettings,
  LdapPreset,
  IdpMapping,
  TemplateChoice,
  SettingsProblem,
  ParseResult,
} from './settings.js';
export {
  readIdpState,
  loadIdpSettings,
  saveIdpSettings,
  deleteIdpSettings,
  readMapping,
  updateMapping,
  templateNames,
  describeUsers,
} from './store.js';
export type { IdpState, SaveResult } from './store.js';
export { createKeycloakClient, keycloakOptionsOf, keycloakUrls, alternateServerUrl, attributeValue, TOKEN_REFRESH_MARGIN_MS } from './keycloak.js';
export type {
  KeycloakClient,
  KeycloakClientOptions,
  KeycloakUser,
  KeycloakDiscovery,
  KeycloakUrls,
  UserFilters,
  ListOptions,
  ListSummary,
  PasswordGrantResult,
  TokenFailureReason,
  CallOptions,
} from './keycloak.js';
export { createOidcClient, oidcOptionsOf, discoverOidc, guessIssuer, translateOidcError } from './oidc.js';
export type { OidcClient, OidcClientOptions, OidcEndpoints } from './oidc.js';
export type { CallEvent } from './http.js';
export { runIdpTest, checklistPassed } from './test-checklist.js';
export type { Check, CheckStatus, IdpTestDeps, IdpTestOptions } from './test-checklist.js';
export { createTokenValidator, checkClaims, providerFromSettings } from './oauth-token.js';
export { oauthChecklist } from './checklist-oauth.js';
export type { TokenValidator, TokenValidatorOptions, TokenValidatorConfig, TokenCheck, OAuthProviderRef, OAuthMetadata } from './oauth-token.js';
export { createLdapDirectory, openConnection, connectionOptionsOf, equalityFilter, userFilter, entryOf, firstValue, ldapFault } from './ldap.js';
export type { LdapDirectory, LdapDirectoryOptions, LdapConnectionOptions, LdapEntry, BindOutcome } from './ldap.js';
export {
  STATE_ATTRIBUTES,
  PERMANENT_LOCK,
  userAttributes,
  loginFilter,
  addressOf,
  addressesOf,
  displayNameOf,
  templateValuesOf,
  disabledReason,
  lockedReason,
  changeStamp,
} from './ldap-entry.js';
