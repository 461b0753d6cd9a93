/**
 * Generic OpenID Connect through openid-client v6 (discovery, client
 * credentials, the optional password grant, userinfo) and jose for local
 * access-token checks. Errors are translated here into coded MailauthErrors.
 *
 * Transport rule (same as the Keycloak client, settings.transportAllowed):
 * https always; plain http only to 127.0.0.1/localhost/::1, or when the admin
 * set ignore_ssl_error (then the client secret travels unencrypted, and
 * `idp test` says so). openid-client's allowInsecureRequests is switched on
 * exactly in those cases. ignore_ssl_error also turns off certificate checks.
 */
import type * as oidc from 'openid-client';
import type { JWTPayload, createRemoteJWKSet } from 'jose';
import type { Dispatcher } from 'undici';
import { MailauthError } from '../errors.js';
import { pathOf, undici } from './http.js';
import { createSharedRequest } from './shared-request.js';
import { transportAllowed } from './settings.js';
import type { GenericOidcSettings } from './settings.js';
import type { PasswordGrantResult } from './keycloak.js';

export interface OidcEndpoints {
  issuer: string | null;
  authorizeUrl: string | null;
  tokenUrl: string;
  userinfoUrl: string | null;
  jwksUri: string | null;
}

export interface OidcClientOptions {
  /** With an issuer, endpoints come from discovery; without, from the explicit URLs. */
  issuer: string | null;
  authorizeUrl?: string | null;
  tokenUrl?: string | null;
  userinfoUrl?: string | null;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  timeoutMs: number;
  ignoreSslError?: boolean;
  dispatcher?: Dispatcher;
  /** Clock for local token checks (tests). */
  now?: () => number;
}

/** What a generic-oidc settings row says about the client: endpoints, credentials, scopes, certificate checks. */
export function oidcOptionsOf(s: GenericOidcSettings): Pick<OidcClientOptions, 'issuer' | 'authorizeUrl' | 'tokenUrl' | 'userinfoUrl' | 'clientId' | 'clientSecret' | 'scopes' | 'ignoreSslError'> {
  return {
    issuer: s.issuer,
    authorizeUrl: s.authorizeUrl,
    tokenUrl: s.tokenUrl,
    userinfoUrl: s.userinfoUrl,
    clientId: s.clientId,
    clientSecret: s.clientSecret,
    scopes: s.clientScopes,
    ignoreSslError: s.ignoreSslError,
  };
}

export interface OidcClient {
  /** Discovered (or configured) endpoints; discovery runs once and is cached. */
  endpoints(): Promise<OidcEndpoints>;
  clientCredentials(): Promise<{ accessToken: string; expiresIn: number | null; scope: string }>;
  /**
   * Resource-owner password grant (scope always includes openid): a value for bad user credentials.
   * `signal` ends the caller's wait for discovery (the grant request itself ends at idp.timeout).
   */
  passwordGrant(username: string, password: string, opts?: { signal?: AbortSignal }): Promise<PasswordGrantResult>;
  userinfo(accessToken: string): Promise<Record<string, unknown>>;
  /** Local JWT check of an access token: signature (remote JWKS), issuer, expiry, azp when present. */
  verifyAccessToken(token: string, opts?: { clockToleranceSec?: number }): Promise<JWTPayload>;
  close(): Promise<void>;
}

type Route = 'discovery' | 'token' | 'userinfo' | 'jwks';

type OidcLib = typeof import('openid-client');
type JoseLib = typeof import('jose');

// openid-client and jose (ES modules, ~50 files) load at the first OIDC call, not with every
// `mailauth` start. Once loaded, the synchronous error checks below can see their classes;
// before that, no error can have come from them.
let oidcLib: OidcLib | null = null;
let libsLoading: Promise<{ oidc: OidcLib; jose: JoseLib }> | null = null;
function libs(): Promise<{ oidc: OidcLib; jose: JoseLib }> {
  libsLoading ??= Promise.all([import('openid-client'), import('jose')]).then(([o, jose]) => {
    oidcLib = o;
    return { oidc: o, jose };
  });
  return libsLoading;
}

function httpErrorCode(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('OAUTH_')) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return '';
}

interface OAuthProblem {
  status: number | null;
  error: string | null;
  description: string | null;
}

function oauthProblem(err: unknown): OAuthProblem | null {
  const oidc = oidcLib;
  if (oidc === null) return null;
  if (err instanceof oidc.ResponseBodyError) return { status: err.status, error: err.error, description: err.error_description ?? null };
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    const ch = err.cause[0];
    const p = ch?.parameters as Record<string, string | undefined> | undefined;
    return { status: err.status, error: p?.error ?? null, description: p?.error_description ?? null };
  }
  return null;
}

/** Token-endpoint client problems, by RFC 6749 meaning (and Keycloak's descriptions). */
export function classifyTokenProblem(p: OAuthProblem): 'bad_client_credentials' | 'grant_not_allowed' | 'other' {
  const d = p.description ?? '';
  if (p.error === 'invalid_client') return d.startsWith('Client requires user consent') ? 'grant_not_allowed' : 'bad_client_credentials';
  if (p.error === 'unauthorized_client') return d.startsWith('Invalid client') || d.startsWith('Client secret not provided') ? 'bad_client_credentials' : 'grant_not_allowed';
  if (p.error === 'unsupported_grant_type') return 'grant_not_allowed';
  if (p.error === 'invalid_request' && /grant type is not allowed/i.test(d)) return 'grant_not_allowed';
  return 'other';
}

/** Any openid-client/fetch failure → a coded error, details safe to log. */
export function translateOidcError(err: unknown, route: Route, url: string | null): MailauthError {
  if (err instanceof MailauthError) return err;
  const base = { route, path: url ? pathOf(url) : null };
  const problem = oauthProblem(err);
  if (problem) {
    const details = { ...base, status: problem.status, error: problem.error, errorDescription: problem.description };
    const text = `${problem.error ?? `HTTP ${problem.status}`}${problem.description ? `: ${problem.description}` : ''}`;
    if (route === 'userinfo') {
      if (problem.error === 'insufficient_scope' || problem.status === 403) {
        return new MailauthError('ERR_IDP_FORBIDDEN', `userinfo refused the token (${text})`, { cause: err, details: { ...details, reason: 'insufficient_scope' } });
      }
      return new MailauthError('ERR_IDP_AUTH', `userinfo refused the token (${text})`, { cause: err, details: { ...details, reason: 'invalid_token' } });
    }
    const kind = classifyTokenProblem(problem);
    return new MailauthError(
      'ERR_IDP_AUTH',
      kind === 'bad_client_credentials'
        ? `the provider rejected the client id or secret (${text})`
        : kind === 'grant_not_allowed'
          ? `the provider does not allow this grant for the client (${text})`
          : `the provider rejected the ${route} request (${text})`,
      { cause: err, details: { ...details, reason: kind } },
    );
  }
  if (oidcLib !== null && err instanceof oidcLib.ClientError) {
    if (err.code === 'OAUTH_TIMEOUT') {
      return new MailauthError('ERR_IDP_TIMEOUT', `the provider did not answer ${route} within the time limit`, { cause: err, details: { ...base, reason: 'timeout' } });
    }
    const status = (err.cause as { status?: unknown } | undefined)?.status;
    if (err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' && status === 404) {
      return new MailauthError('ERR_IDP_NOT_FOUND', `the provider answered 404 on ${route}: wrong URL or issuer?`, { cause: err, details: { ...base, status, reason: 'not_found' } });
    }
    if (err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' && typeof status === 'number' && status >= 500) {
      return new MailauthError('ERR_IDP_UNAVAILABLE', `the provider answered ${route} with HTTP ${status}`, { cause: err, details: { ...base, status, reason: 'server_error' } });
    }
    if (err.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') {
      return new MailauthError('ERR_IDP_BAD_RESPONSE', `the discovered issuer differs from the configured one (${err.message})`, {
        cause: err,
        details: { ...base, reason: 'issuer_mismatch' },
      });
    }
    if (err.code === 'OAUTH_HTTP_REQUEST_FORBIDDEN') {
      return new MailauthError('ERR_INVALID_INPUT', `refusing plain http to the provider; use https (or a loopback address, or ignore_ssl_error)`, {
        cause: err,
        details: { ...base, reason: 'insecure' },
      });
    }
    return new MailauthError('ERR_IDP_BAD_RESPONSE', `unexpected answer from the provider on ${route} (${err.code ?? 'error'}: ${err.message})`, {
      cause: err,
      details: { ...base, status: typeof status === 'number' ? status : null, reason: err.code ?? 'bad_response' },
    });
  }
  const name = (err as Error)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new MailauthError('ERR_IDP_TIMEOUT', `the provider did not answer ${route} within the time limit`, { cause: err, details: { ...base, reason: 'timeout' } });
  }
  const code = httpErrorCode(err);
  const tls = /CERT|SELF_SIGNED|TLS|SSL|EPROTO/.test(code);
  return new MailauthError('ERR_IDP_UNAVAILABLE', `cannot reach the provider for ${route} (${code || (err as Error)?.message || 'network error'})`, {
    cause: err,
    details: { ...base, reason: tls ? 'tls' : 'network', networkCode: code || null },
  });
}

/** Keycloak-shaped token URLs name their issuer; elsewhere the origin is the best guess. */
export function guessIssuer(tokenUrl: string): string {
  const m = /^(.*\/realms\/[^/]+)\/protocol\/openid-connect\/token$/.exec(tokenUrl);
  return m?.[1] ?? new URL(tokenUrl).origin;
}

export function createOidcClient(opts: OidcClientOptions): OidcClient {
  const ignoreSsl = opts.ignoreSslError === true;
  const urls = [opts.issuer, opts.tokenUrl, opts.userinfoUrl, opts.authorizeUrl].filter((u): u is string => typeof u === 'string' && u !== '');
  for (const u of urls) {
    if (!transportAllowed(new URL(u), ignoreSsl)) {
      throw new MailauthError('ERR_INVALID_INPUT', `refusing plain http to ${new URL(u).host}: use https (or a loopback address, or ignore_ssl_error)`);
    }
  }
  const insecure = urls.some((u) => new URL(u).protocol === 'http:');
  const ownAgent = opts.dispatcher === undefined && ignoreSsl ? new (undici().Agent)({ connect: { rejectUnauthorized: false } }) : null;
  const dispatcher = opts.dispatcher ?? ownAgent ?? undefined;
  const customFetch: oidc.CustomFetch = async (url, init) =>
    (await undici().fetch(url, { ...init, body: init.body as string | undefined, dispatcher })) as unknown as Response;
  const timeout = opts.timeoutMs / 1000;
  const scopes = opts.scopes.includes('openid') ? [...opts.scopes] : ['openid', ...opts.scopes];

  let built: oidc.Configuration | null = null;
  let jwks: ReturnType<typeof createRemoteJWKSet> | null = null;

  function clientAuth(oidc: OidcLib, methods: readonly string[] | undefined): oidc.ClientAuth {
    // client_secret_basic is the spec default when the provider lists nothing.
    if (methods && methods.length > 0 && !methods.includes('client_secret_basic') && methods.includes('client_secret_post')) {
      return oidc.ClientSecretPost(opts.clientSecret);
    }
    return oidc.ClientSecretBasic(opts.clientSecret);
  }

  /** `signal`: the discovery request is given up (shared-request.ts). */
  async function build(signal: AbortSignal): Promise<oidc.Configuration> {
    const { oidc } = await libs();
    let config: oidc.Configuration;
    if (opts.issuer) {
      let discovered: oidc.Configuration;
      const discoveryFetch: oidc.CustomFetch = (url, init) => customFetch(url, { ...init, signal: init.signal ? AbortSignal.any([init.signal, signal]) : signal });
      try {
        discovered = await oidc.discovery(new URL(opts.issuer), opts.clientId, undefined, undefined, {
          execute: insecure ? [oidc.allowInsecureRequests] : [],
          timeout,
          [oidc.customFetch]: discoveryFetch,
        });
      } catch (err) {
        throw translateOidcError(err, 'discovery', `${opts.issuer}/.well-known/openid-configuration`);
      }
      // A plain copy: serverMetadata() also carries helper functions.
      const md = JSON.parse(JSON.stringify(discovered.serverMetadata())) as oidc.ServerMetadata;
      // Explicit URLs win over discovered ones (an internal token URL behind a public issuer).
      const metadata: oidc.ServerMetadata = {
        ...md,
        ...(opts.tokenUrl ? { token_endpoint: opts.tokenUrl } : {}),
        ...(opts.userinfoUrl ? { userinfo_endpoint: opts.userinfoUrl } : {}),
      };
      config = new oidc.Configuration(metadata, opts.clientId, undefined, clientAuth(oidc, md.token_endpoint_auth_methods_supported));
    } else {
      if (!opts.tokenUrl) throw new MailauthError('ERR_INVALID_INPUT', 'generic OIDC needs an issuer or a token URL');
      config = new oidc.Configuration(
        {
          issuer: guessIssuer(opts.tokenUrl),
          token_endpoint: opts.tokenUrl,
          ...(opts.userinfoUrl ? { userinfo_endpoint: opts.userinfoUrl } : {}),
          ...(opts.authorizeUrl ? { authorization_endpoint: opts.authorizeUrl } : {}),
        },
        opts.clientId,
        undefined,
        clientAuth(oidc, undefined),
      );
    }
    config.timeout = timeout;
    config[oidc.customFetch] = customFetch;
    if (insecure) oidc.allowInsecureRequests(config);
    return config;
  }

  // Discovery runs once and is kept; a failed or abandoned one is tried again by the next call. Shared
  // by concurrent callers and given up once they all have: a hung discovery must not hold the logins
  // that come after the provider recovered (issue 16, shared-request.ts).
  const discovery = createSharedRequest(
    async (signal) => (built = await build(signal)),
    () => new MailauthError('ERR_IDP_TIMEOUT', 'deadline reached while waiting for the provider\'s discovery document', { details: { route: 'discovery', reason: 'deadline' } }),
  );
  function configuration(signal?: AbortSignal): Promise<oidc.Configuration> {
    return built !== null ? Promise.resolve(built) : discovery.join(signal);
  }

  async function endpoints(): Promise<OidcEndpoints> {
    const md = (await configuration()).serverMetadata();
    return {
      issuer: opts.issuer ? md.issuer : null,
      authorizeUrl: md.authorization_endpoint ?? null,
      tokenUrl: md.token_endpoint ?? '',
      userinfoUrl: md.userinfo_endpoint ?? null,
      jwksUri: md.jwks_uri ?? null,
    };
  }

  return {
    endpoints,
    async clientCredentials() {
      const config = await configuration();
      const { oidc } = await libs();
      try {
        const r = await oidc.clientCredentialsGrant(config, { scope: scopes.join(' ') });
        return { accessToken: r.access_token, expiresIn: r.expires_in ?? null, scope: r.scope ?? '' };
      } catch (err) {
        throw translateOidcError(err, 'token', config.serverMetadata().token_endpoint ?? null);
      }
    },
    async passwordGrant(username, password, o = {}) {
      const config = await configuration(o.signal);
      const { oidc } = await libs();
      try {
        const r = await oidc.genericGrantRequest(config, 'password', { username, password, scope: scopes.join(' ') });
        return {
          ok: true,
          accessToken: r.access_token,
          idToken: r.id_token ?? null,
          refreshToken: r.refresh_token ?? null,
          expiresIn: r.expires_in ?? 0,
          scope: r.scope ?? '',
        };
      } catch (err) {
        const p = oauthProblem(err);
        if (p?.error === 'invalid_grant' || (p?.error === 'invalid_request' && p.description === 'Invalid user credentials')) {
          const reason = p.description === 'Account disabled' ? 'account_disabled' : p.description === 'Account is not fully set up' ? 'account_not_set_up' : 'invalid_credentials';
          return { ok: false, reason, error: p.error, description: p.description };
        }
        throw translateOidcError(err, 'token', config.serverMetadata().token_endpoint ?? null);
      }
    },
    async userinfo(accessToken) {
      const config = await configuration();
      const { oidc } = await libs();
      try {
        return { ...(await oidc.fetchUserInfo(config, accessToken, oidc.skipSubjectCheck)) };
      } catch (err) {
        throw translateOidcError(err, 'userinfo', config.serverMetadata().userinfo_endpoint ?? null);
      }
    },
    async verifyAccessToken(token, o = {}) {
      const md = (await configuration()).serverMetadata();
      if (!md.jwks_uri) throw new MailauthError('ERR_IDP_BAD_RESPONSE', 'the provider publishes no jwks_uri; tokens cannot be checked locally', { details: { route: 'jwks', reason: 'no_jwks_uri' } });
      const { jose } = await libs();
      jwks ??= jose.createRemoteJWKSet(new URL(md.jwks_uri), {
        timeoutDuration: opts.timeoutMs,
        [jose.customFetch]: async (url, init) =>
          (await undici().fetch(url, { method: init.method, headers: Object.fromEntries(init.headers.entries()), redirect: init.redirect, signal: init.signal, dispatcher })) as unknown as Response,
      });
      try {
        // Keycloak signs access tokens with typ "JWT", not "at+jwt": no typ check (reference §2.5).
        const { payload } = await jose.jwtVerify(token, jwks, {
          issuer: md.issuer,
          algorithms: ['RS256', 'PS256', 'ES256'],
          clockTolerance: o.clockToleranceSec ?? 10,
          ...(opts.now ? { currentDate: new Date(opts.now()) } : {}),
        });
        if (payload.azp !== undefined && payload.azp !== opts.clientId) {
          throw new MailauthError('ERR_IDP_AUTH', 'the access token was issued to another client (azp)', { details: { route: 'jwks', reason: 'wrong_azp' } });
        }
        return payload;
      } catch (err) {
        if (err instanceof MailauthError) throw err;
        const code = (err as { code?: string }).code ?? 'ERR_JWT_INVALID';
        if (code === 'ERR_JWKS_TIMEOUT') throw new MailauthError('ERR_IDP_TIMEOUT', 'fetching the provider keys timed out', { cause: err, details: { route: 'jwks', reason: 'timeout' } });
        throw new MailauthError('ERR_IDP_AUTH', `the access token did not verify (${code})`, { cause: err, details: { route: 'jwks', reason: code } });
      }
    },
    async close() {
      if (ownAgent && !ownAgent.closed && !ownAgent.destroyed) await ownAgent.close();
    },
  };
}

/** Discovery only, for `idp set generic-oidc --issuer` (fills the endpoint URLs). */
export async function discoverOidc(issuer: string, o: { timeoutMs: number; ignoreSslError?: boolean; dispatcher?: Dispatcher }): Promise<OidcEndpoints> {
  const c = createOidcClient({ issuer, clientId: 'discovery', clientSecret: 'unused', scopes: ['openid'], ...o });
  try {
    return await c.endpoints();
  } finally {
    await c.close();
  }
}
