/**
 * Keycloak client, hand-written on undici (reasons: docs reference §0): the
 * service-account token (client_credentials, cached, single-flight), the admin
 * users API (search by email, one user, count, paging), discovery, userinfo
 * and a password-grant helper. Every response is shape-checked; every failure
 * is a coded MailauthError whose details are safe to log.
 */
import type { Dispatcher } from 'undici';
import { MailauthError } from '../errors.js';
import { exchange, jsonBody, oauthError, parseChallenge, pathOf, undici } from './http.js';
import type { CallEvent, HttpResponse } from './http.js';
import { createSharedRequest } from './shared-request.js';
import type { KeycloakSettings } from './settings.js';

export interface KeycloakClientOptions {
  /** Base URL; may end in /auth (Keycloak ≤ 16, or ≥ 17 with --http-relative-path=/auth). */
  serverUrl: string;
  realm: string;
  clientId: string;
  clientSecret: string;
  /** Per-request timeout (config idp.timeout). */
  timeoutMs: number;
  /** Extra attempts on 5xx / network errors (config idp.retries). */
  retries: number;
  retryBackoffMs: number;
  /** Turns off TLS certificate checks (mailcow's ignore_ssl_error); ignored when `dispatcher` is given. */
  ignoreSslError?: boolean;
  dispatcher?: Dispatcher;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  onCall?: (e: CallEvent) => void;
}

/** What a keycloak settings row says about the client: server, realm, credentials, certificate checks. */
export function keycloakOptionsOf(s: KeycloakSettings): Pick<KeycloakClientOptions, 'serverUrl' | 'realm' | 'clientId' | 'clientSecret' | 'ignoreSslError'> {
  return { serverUrl: s.serverUrl, realm: s.realm, clientId: s.clientId, clientSecret: s.clientSecret, ignoreSslError: s.ignoreSslError };
}

export interface KeycloakUrls {
  realmBase: string;
  adminBase: string;
  discovery: string;
  token: string;
  userinfo: string;
  certs: string;
  users: string;
  usersCount: string;
}

export function keycloakUrls(serverUrl: string, realm: string): KeycloakUrls {
  const server = serverUrl.replace(/\/+$/, '');
  const r = encodeURIComponent(realm);
  const realmBase = `${server}/realms/${r}`;
  const adminBase = `${server}/admin/realms/${r}`;
  const oidc = `${realmBase}/protocol/openid-connect`;
  return {
    realmBase,
    adminBase,
    discovery: `${realmBase}/.well-known/openid-configuration`,
    token: `${oidc}/token`,
    userinfo: `${oidc}/userinfo`,
    certs: `${oidc}/certs`,
    users: `${adminBase}/users`,
    usersCount: `${adminBase}/users/count`,
  };
}

/** The same server with the /auth prefix toggled (to hint at the right one when discovery is 404). */
export function alternateServerUrl(serverUrl: string): string {
  const s = serverUrl.replace(/\/+$/, '');
  return s.endsWith('/auth') ? s.slice(0, -'/auth'.length) : `${s}/auth`;
}

export interface KeycloakDiscovery {
  issuer: string;
  tokenEndpoint: string;
  userinfoEndpoint: string | null;
  jwksUri: string | null;
  introspectionEndpoint: string | null;
  authorizationEndpoint: string | null;
  grantTypesSupported: string[];
}

export interface KeycloakUser {
  id: string;
  username: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  enabled: boolean;
  emailVerified: boolean;
  /** Epoch milliseconds. */
  createdTimestamp: number | null;
  /** `{}` when Keycloak left the key out (no visible attributes, or a brief representation). */
  attributes: Readonly<Record<string, readonly string[]>>;
  requiredActions: readonly string[];
  serviceAccountClientId: string | null;
  federationLink: string | null;
}

export interface UserFilters {
  search?: string;
  username?: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  enabled?: boolean;
  emailVerified?: boolean;
  /** Field filters match exactly instead of by substring. */
  exact?: boolean;
  /** Custom-attribute query, e.g. `mailcow_template:default`. */
  q?: string;
}

export interface ListOptions {
  /** Keycloak's `max`; defaults to 100, as Keycloak does. */
  pageSize?: number;
  filters?: UserFilters;
  /** briefRepresentation=true: no attributes, cheaper. */
  brief?: boolean;
  signal?: AbortSignal;
}

export interface ListSummary {
  pages: number;
  /** Distinct users yielded. */
  users: number;
  /** Items dropped because their id was already yielded (users added between pages shift items). */
  duplicates: number;
  countBefore: number;
  countAfter: number;
  /**
   * False when the realm changed during the listing or the listing and
   * /users/count disagree: a caller that deactivates on absence must not trust it.
   */
  consistent: boolean;
}

export type PasswordGrantResult =
  | { ok: true; accessToken: string; idToken: string | null; refreshToken: string | null; expiresIn: number; scope: string }
  | { ok: false; reason: 'invalid_credentials' | 'account_disabled' | 'account_not_set_up'; error: string; description: string | null };

export interface CallOptions {
  signal?: AbortSignal;
}

export interface KeycloakClient {
  readonly urls: KeycloakUrls;
  discovery(opts?: CallOptions): Promise<KeycloakDiscovery>;
  /** The cached service-account access token (client_credentials). */
  serviceToken(opts?: CallOptions): Promise<string>;
  /** Forget the cached token (next call re-authenticates). */
  resetToken(): void;
  findUsersByEmail(email: string, opts?: { exact?: boolean } & CallOptions): Promise<KeycloakUser[]>;
  /** Null when Keycloak says "User not found". */
  getUser(id: string, opts?: CallOptions): Promise<KeycloakUser | null>;
  countUsers(filters?: UserFilters, opts?: CallOptions): Promise<number>;
  /** Pages of distinct users; the generator's return value is the ListSummary. */
  listUsers(opts?: ListOptions): AsyncGenerator<KeycloakUser[], ListSummary, undefined>;
  /** Resource-owner password grant with scope=openid (needs "Direct access grants" on the client). */
  passwordGrant(username: string, password: string, opts?: CallOptions): Promise<PasswordGrantResult>;
  userinfo(accessToken: string, opts?: CallOptions): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

// ── shape checks ─────────────────────────────────────────────────────────────

function bad(route: string, url: string, what: string): MailauthError {
  return new MailauthError('ERR_IDP_BAD_RESPONSE', `identity provider answered ${route} with an unexpected shape: ${what}`, {
    details: { route, path: pathOf(url), reason: 'shape', what },
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optString(o: Record<string, unknown>, key: string, at: string, fail: (w: string) => MailauthError): string | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw fail(`${at}.${key} is not a string`);
  return v;
}

export function parseUser(v: unknown, at: string, fail: (what: string) => MailauthError): KeycloakUser {
  if (!isRecord(v)) throw fail(`${at} is not an object`);
  if (typeof v.id !== 'string' || v.id === '') throw fail(`${at}.id is missing or not a string`);
  if (typeof v.username !== 'string') throw fail(`${at}.username is missing or not a string`);
  if (v.enabled !== undefined && typeof v.enabled !== 'boolean') throw fail(`${at}.enabled is not a boolean`);
  if (v.emailVerified !== undefined && typeof v.emailVerified !== 'boolean') throw fail(`${at}.emailVerified is not a boolean`);
  if (v.createdTimestamp !== undefined && v.createdTimestamp !== null && typeof v.createdTimestamp !== 'number') {
    throw fail(`${at}.createdTimestamp is not a number`);
  }
  const attributes: Record<string, readonly string[]> = {};
  if (v.attributes !== undefined && v.attributes !== null) {
    if (!isRecord(v.attributes)) throw fail(`${at}.attributes is not an object`);
    for (const [k, vals] of Object.entries(v.attributes)) {
      if (!Array.isArray(vals) || !vals.every((x) => typeof x === 'string')) throw fail(`${at}.attributes.${k} is not an array of strings`);
      attributes[k] = vals as string[];
    }
  }
  let requiredActions: string[] = [];
  if (v.requiredActions !== undefined && v.requiredActions !== null) {
    if (!Array.isArray(v.requiredActions) || !v.requiredActions.every((x) => typeof x === 'string')) {
      throw fail(`${at}.requiredActions is not an array of strings`);
    }
    requiredActions = v.requiredActions as string[];
  }
  return {
    id: v.id,
    username: v.username,
    email: optString(v, 'email', at, fail),
    firstName: optString(v, 'firstName', at, fail),
    lastName: optString(v, 'lastName', at, fail),
    // Keycloak always sends it; absent means we cannot tell, so not enabled.
    enabled: v.enabled === true,
    emailVerified: v.emailVerified === true,
    createdTimestamp: typeof v.createdTimestamp === 'number' ? v.createdTimestamp : null,
    attributes,
    requiredActions,
    serviceAccountClientId: optString(v, 'serviceAccountClientId', at, fail),
    federationLink: optString(v, 'federationLink', at, fail),
  };
}

/** The first value of a user attribute, or null when absent or `[]`. */
export function attributeValue(user: Pick<KeycloakUser, 'attributes'>, name: string): string | null {
  return user.attributes[name]?.[0] ?? null;
}

function parseDiscovery(v: unknown, url: string): KeycloakDiscovery {
  const fail = (w: string): MailauthError => bad('discovery', url, w);
  if (!isRecord(v)) throw fail('the document is not a JSON object');
  if (typeof v.issuer !== 'string' || v.issuer === '') throw fail('issuer is missing');
  if (typeof v.token_endpoint !== 'string' || v.token_endpoint === '') throw fail('token_endpoint is missing');
  const grants = Array.isArray(v.grant_types_supported) ? v.grant_types_supported.filter((g): g is string => typeof g === 'string') : [];
  return {
    issuer: v.issuer,
    tokenEndpoint: v.token_endpoint,
    userinfoEndpoint: optString(v, 'userinfo_endpoint', 'document', fail),
    jwksUri: optString(v, 'jwks_uri', 'document', fail),
    introspectionEndpoint: optString(v, 'introspection_endpoint', 'document', fail),
    authorizationEndpoint: optString(v, 'authorization_endpoint', 'document', fail),
    grantTypesSupported: grants,
  };
}

// ── error classification ────────────────────────────────────────────────────

export type TokenFailureReason =
  | 'bad_client_credentials'
  | 'secret_missing'
  | 'service_accounts_disabled'
  | 'public_client'
  | 'bearer_only_client'
  | 'service_account_missing'
  | 'service_account_disabled'
  | 'direct_grants_disabled'
  | 'consent_required'
  | 'https_required'
  | 'realm_disabled'
  | 'token_request_rejected';

function classifyClientError(description: string | null): TokenFailureReason {
  const d = description ?? '';
  if (d.startsWith('Client not enabled to retrieve service account')) return 'service_accounts_disabled';
  if (d.startsWith('Public client not allowed')) return 'public_client';
  if (d.startsWith('Bearer-only')) return 'bearer_only_client';
  if (d.startsWith('Client not allowed for direct access grants')) return 'direct_grants_disabled';
  if (d.startsWith('Client requires user consent')) return 'consent_required';
  if (d.startsWith('Client secret not provided')) return 'secret_missing';
  return 'bad_client_credentials';
}

const TOKEN_MESSAGES: Record<TokenFailureReason, string> = {
  bad_client_credentials: 'Keycloak rejected the client id or secret',
  secret_missing: 'Keycloak expects a client secret and got none',
  service_accounts_disabled: 'the client may not use its service account (Service accounts roles is off)',
  public_client: 'the client is public; a confidential client (Client authentication on) is needed',
  bearer_only_client: 'the client is bearer-only and cannot get tokens',
  service_account_missing: "the client's service-account user does not exist",
  service_account_disabled: "the client's service-account user is disabled",
  direct_grants_disabled: 'the client may not use the password grant (Direct access grants is off)',
  consent_required: 'the client requires user consent, which the password grant cannot give',
  https_required: 'the realm requires HTTPS for this request',
  realm_disabled: 'the realm is disabled',
  token_request_rejected: 'Keycloak rejected the token request',
};

/** A token-endpoint answer that is neither 200 nor an expected password-grant negative. */
function tokenFailure(res: HttpResponse, url: string, grant: string): MailauthError {
  const body = oauthError(res);
  const details = { route: 'token', path: pathOf(url), grant, status: res.status, error: body?.error ?? null, errorDescription: body?.description ?? null };
  const withReason = (code: 'ERR_IDP_AUTH' | 'ERR_IDP_FORBIDDEN', reason: TokenFailureReason): MailauthError =>
    new MailauthError(code, `${TOKEN_MESSAGES[reason]} (HTTP ${res.status}${body ? ` ${body.error}` : ''})`, { details: { ...details, reason } });
  if (res.status === 404) {
    return new MailauthError('ERR_IDP_NOT_FOUND', `the token endpoint was not found (HTTP 404): wrong server URL, /auth prefix or realm?`, {
      details: { ...details, reason: 'not_found' },
    });
  }
  if (res.status === 403) {
    if (body?.description === 'HTTPS required') return withReason('ERR_IDP_FORBIDDEN', 'https_required');
    if (body?.description === 'Realm not enabled') return withReason('ERR_IDP_FORBIDDEN', 'realm_disabled');
    return withReason('ERR_IDP_FORBIDDEN', 'token_request_rejected');
  }
  if (res.status === 400 || res.status === 401) {
    if (body === null) {
      // 401 + WWW-Authenticate: Basic when the Authorization header was not understood.
      if (res.status === 401) return withReason('ERR_IDP_AUTH', 'bad_client_credentials');
      return new MailauthError('ERR_IDP_BAD_RESPONSE', `the token endpoint answered HTTP ${res.status} without an OAuth error body`, {
        details: { ...details, reason: 'shape' },
      });
    }
    if (body.error === 'invalid_client' || body.error === 'unauthorized_client') return withReason('ERR_IDP_AUTH', classifyClientError(body.description));
    if (body.description === 'The associated service account for the client does not exist') return withReason('ERR_IDP_AUTH', 'service_account_missing');
    if (/^User '.*' disabled$/.test(body.description ?? '')) return withReason('ERR_IDP_AUTH', 'service_account_disabled');
    return withReason('ERR_IDP_AUTH', 'token_request_rejected');
  }
  return new MailauthError('ERR_IDP_BAD_RESPONSE', `the token endpoint answered with unexpected HTTP ${res.status}`, {
    details: { ...details, reason: 'status' },
  });
}

interface TokenResponse {
  accessToken: string;
  expiresIn: number;
  idToken: string | null;
  refreshToken: string | null;
  scope: string;
}

function parseTokenResponse(res: HttpResponse, url: string): TokenResponse {
  const v = jsonBody(res, 'token', url);
  const fail = (w: string): MailauthError => bad('token', url, w);
  if (!isRecord(v)) throw fail('not a JSON object');
  if (typeof v.access_token !== 'string' || v.access_token === '') throw fail('access_token is missing');
  if (typeof v.expires_in !== 'number' || !(v.expires_in > 0)) throw fail('expires_in is missing or not a positive number');
  if (v.token_type !== undefined && (typeof v.token_type !== 'string' || v.token_type.toLowerCase() !== 'bearer')) {
    throw fail('token_type is not Bearer');
  }
  return {
    accessToken: v.access_token,
    expiresIn: v.expires_in,
    idToken: typeof v.id_token === 'string' ? v.id_token : null,
    refreshToken: typeof v.refresh_token === 'string' ? v.refresh_token : null,
    scope: typeof v.scope === 'string' ? v.scope : '',
  };
}

function filterQuery(f: UserFilters = {}): URLSearchParams {
  const p = new URLSearchParams();
  for (const key of ['search', 'username', 'email', 'firstName', 'lastName', 'q'] as const) {
    const v = f[key];
    if (v !== undefined) p.set(key, v);
  }
  for (const key of ['enabled', 'emailVerified', 'exact'] as const) {
    const v = f[key];
    if (v !== undefined) p.set(key, String(v));
  }
  return p;
}

/** Refresh this long before expiry: 30 s, or half the lifetime for short-lived tokens. */
export const TOKEN_REFRESH_MARGIN_MS = 30_000;

interface CachedToken {
  value: string;
  refreshAt: number;
}

export function createKeycloakClient(opts: KeycloakClientOptions): KeycloakClient {
  const urls = keycloakUrls(opts.serverUrl, opts.realm);
  const now = opts.now ?? Date.now;
  const ownAgent = opts.dispatcher === undefined && opts.ignoreSslError === true ? new (undici().Agent)({ connect: { rejectUnauthorized: false } }) : null;
  const http = {
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
    retryBackoffMs: opts.retryBackoffMs,
    dispatcher: opts.dispatcher ?? ownAgent ?? undefined,
    sleep: opts.sleep,
    now,
    onCall: opts.onCall,
  };
  // RFC 6749 §2.3.1: both parts form-encoded before Basic; Keycloak decodes them that way.
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`;

  let cached: CachedToken | null = null;

  async function tokenRequest(form: Record<string, string>, grant: string, signal: AbortSignal | undefined): Promise<HttpResponse> {
    return exchange(
      {
        route: 'token',
        method: 'POST',
        url: urls.token,
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
        signal,
      },
      http,
    ).then((res) => {
      if (res.status !== 200 && !(grant === 'password' && isPasswordNegative(res))) throw tokenFailure(res, urls.token, grant);
      return res;
    });
  }

  async function fetchServiceToken(signal: AbortSignal | undefined): Promise<CachedToken> {
    const requestedAt = now();
    const res = await tokenRequest({ grant_type: 'client_credentials' }, 'client_credentials', signal);
    const t = parseTokenResponse(res, urls.token);
    const lifetime = t.expiresIn * 1000;
    return { value: t.accessToken, refreshAt: requestedAt + lifetime - Math.min(TOKEN_REFRESH_MARGIN_MS, lifetime / 2) };
  }

  // Single flight: concurrent callers share one token request, given up once they all have (shared-request.ts).
  const tokenFlight = createSharedRequest(
    async (signal) => (cached = await fetchServiceToken(signal)),
    () => new MailauthError('ERR_IDP_TIMEOUT', 'deadline reached while waiting for a Keycloak token', { details: { route: 'token', reason: 'deadline' } }),
  );

  async function token(signal: AbortSignal | undefined): Promise<CachedToken> {
    if (cached !== null && now() < cached.refreshAt) return cached;
    return tokenFlight.join(signal);
  }

  /** GET on the admin API: one re-authentication and one retry on 401, none on 403. */
  async function admin(route: string, url: string, signal: AbortSignal | undefined): Promise<HttpResponse> {
    for (let reauth = 0; ; reauth++) {
      const t = await token(signal);
      const res = await exchange({ route, method: 'GET', url, headers: { authorization: `Bearer ${t.value}` }, signal }, http);
      if (res.status === 401) {
        if (reauth === 0) {
          // Only drop the token this request used; a newer one may already be cached.
          if (cached === t) cached = null;
          continue;
        }
        throw new MailauthError('ERR_IDP_AUTH', `the Keycloak admin API rejected a fresh service-account token (HTTP 401 on ${route})`, {
          details: { route, path: pathOf(url), status: 401, reason: 'admin_token_rejected', error: oauthError(res)?.error ?? null },
        });
      }
      if (res.status === 403) {
        throw new MailauthError(
          'ERR_IDP_FORBIDDEN',
          `the service account of client ${opts.clientId} may not read users (HTTP 403 on ${route}): assign it the realm-management role view-users`,
          { details: { route, path: pathOf(url), status: 403, reason: 'missing_view_users', error: oauthError(res)?.error ?? null } },
        );
      }
      return res;
    }
  }

  function expectOk(res: HttpResponse, route: string, url: string): unknown {
    if (res.status === 404) {
      const body = oauthError(res);
      throw new MailauthError('ERR_IDP_NOT_FOUND', `Keycloak answered 404 on ${route}${body ? ` (${body.error})` : ''}: wrong server URL, /auth prefix or realm?`, {
        details: { route, path: pathOf(url), status: 404, error: body?.error ?? null, reason: 'not_found' },
      });
    }
    if (res.status !== 200) {
      throw new MailauthError('ERR_IDP_BAD_RESPONSE', `Keycloak answered ${route} with unexpected HTTP ${res.status}`, {
        details: { route, path: pathOf(url), status: res.status, error: oauthError(res)?.error ?? null, reason: 'status' },
      });
    }
    return jsonBody(res, route, url);
  }

  async function getUsers(params: URLSearchParams, signal: AbortSignal | undefined): Promise<KeycloakUser[]> {
    const url = `${urls.users}?${params.toString()}`;
    const v = expectOk(await admin('users', url, signal), 'users', url);
    const fail = (w: string): MailauthError => bad('users', url, w);
    if (!Array.isArray(v)) throw fail('the user list is not a JSON array');
    return v.map((u, i) => parseUser(u, `users[${i}]`, fail));
  }

  async function countUsers(filters?: UserFilters, o: CallOptions = {}): Promise<number> {
    const q = filterQuery(filters).toString();
    const url = q ? `${urls.usersCount}?${q}` : urls.usersCount;
    const v = expectOk(await admin('users.count', url, o.signal), 'users.count', url);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad('users.count', url, 'the count is not a non-negative integer');
    return v;
  }

  async function* listUsers(o: ListOptions = {}): AsyncGenerator<KeycloakUser[], ListSummary, undefined> {
    const max = o.pageSize ?? 100;
    if (!Number.isInteger(max) || max < 1) throw new MailauthError('ERR_INVALID_INPUT', `pageSize must be a positive integer, got ${max}`);
    const countBefore = await countUsers(o.filters, o);
    const seen = new Set<string>();
    let duplicates = 0;
    let pages = 0;
    for (let first = 0; ; first += max) {
      const params = filterQuery(o.filters);
      params.set('first', String(first));
      params.set('max', String(max));
      params.set('briefRepresentation', String(o.brief === true));
      const page = await getUsers(params, o.signal);
      pages++;
      const fresh = page.filter((u) => !seen.has(u.id));
      duplicates += page.length - fresh.length;
      if (page.length === max && fresh.length === 0) {
        throw new MailauthError('ERR_IDP_BAD_RESPONSE', `Keycloak returned the same page of users twice (first=${first}); does a proxy drop the query string?`, {
          details: { route: 'users', path: pathOf(urls.users), first, max, reason: 'repeated_page' },
        });
      }
      for (const u of fresh) seen.add(u.id);
      if (fresh.length > 0) yield fresh;
      // A short page ends the listing only once the count is covered: fine-grained
      // permissions drop users from a page without shortening the offsets.
      if (page.length < max && first + max >= countBefore) break;
    }
    const countAfter = await countUsers(o.filters, o);
    return {
      pages,
      users: seen.size,
      duplicates,
      countBefore,
      countAfter,
      consistent: countBefore === countAfter && seen.size === countAfter,
    };
  }

  return {
    urls,
    async discovery(o = {}) {
      const res = await exchange({ route: 'discovery', method: 'GET', url: urls.discovery, signal: o.signal }, http);
      return parseDiscovery(expectOk(res, 'discovery', urls.discovery), urls.discovery);
    },
    async serviceToken(o = {}) {
      return (await token(o.signal)).value;
    },
    resetToken() {
      cached = null;
    },
    async findUsersByEmail(email, o = {}) {
      const params = new URLSearchParams({ email, exact: String(o.exact ?? true), briefRepresentation: 'false' });
      return getUsers(params, o.signal);
    },
    async getUser(id, o = {}) {
      const url = `${urls.users}/${encodeURIComponent(id)}`;
      const res = await admin('user', url, o.signal);
      if (res.status === 404 && oauthError(res)?.error === 'User not found') return null;
      return parseUser(expectOk(res, 'user', url), 'user', (w) => bad('user', url, w));
    },
    countUsers,
    listUsers,
    async passwordGrant(username, password, o = {}) {
      const res = await tokenRequest({ grant_type: 'password', username, password, scope: 'openid' }, 'password', o.signal);
      if (res.status !== 200) {
        const body = oauthError(res) as { error: string; description: string | null };
        const reason =
          body.description === 'Account disabled' ? 'account_disabled' : body.description === 'Account is not fully set up' ? 'account_not_set_up' : 'invalid_credentials';
        return { ok: false, reason, error: body.error, description: body.description };
      }
      const t = parseTokenResponse(res, urls.token);
      return { ok: true, accessToken: t.accessToken, idToken: t.idToken, refreshToken: t.refreshToken, expiresIn: t.expiresIn, scope: t.scope };
    },
    async userinfo(accessToken, o = {}) {
      const res = await exchange({ route: 'userinfo', method: 'GET', url: urls.userinfo, headers: { authorization: `Bearer ${accessToken}` }, signal: o.signal }, http);
      if (res.status === 401 || res.status === 403) {
        const ch = parseChallenge(res.wwwAuthenticate);
        const error = ch?.params.error ?? oauthError(res)?.error ?? null;
        const description = ch?.params.error_description ?? oauthError(res)?.description ?? null;
        const code = error === 'insufficient_scope' ? 'ERR_IDP_FORBIDDEN' : 'ERR_IDP_AUTH';
        throw new MailauthError(code, `userinfo refused the token (HTTP ${res.status}${error ? ` ${error}` : ''}${description ? `: ${description}` : ''})`, {
          details: { route: 'userinfo', path: pathOf(urls.userinfo), status: res.status, error, errorDescription: description, reason: error === 'insufficient_scope' ? 'missing_openid_scope' : 'invalid_token' },
        });
      }
      const v = expectOk(res, 'userinfo', urls.userinfo);
      if (!isRecord(v) || typeof v.sub !== 'string') throw bad('userinfo', urls.userinfo, 'not a claims object with sub');
      return v;
    },
    async close() {
      if (ownAgent && !ownAgent.closed && !ownAgent.destroyed) await ownAgent.close();
    },
  };
}

/** The password-grant answers that mean "these user credentials don't work" (values, not faults). */
function isPasswordNegative(res: HttpResponse): boolean {
  const body = oauthError(res);
  if (body === null || (res.status !== 400 && res.status !== 401)) return false;
  if (body.error === 'invalid_grant') return true;
  // Missing username, or two users sharing the email: Keycloak says invalid_request "Invalid user credentials".
  return body.error === 'invalid_request' && (body.description === 'Invalid user credentials' || (body.description ?? '').startsWith('Missing parameter: username'));
}
