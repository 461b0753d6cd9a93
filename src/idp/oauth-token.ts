/**
 * Bearer-token checks for mail logins (issue 20: XOAUTH2 / OAUTHBEARER).
 *
 * A JWT access token is verified locally against the IdP's JWKS with jose:
 * signature (allowed algorithms only), issuer, expiry and not-before with a
 * small clock tolerance, then the claims the config asks for (audience,
 * authorized party / client_id, scopes) and the email claim. Any other token
 * (or every token, with `introspection: always`) goes to the IdP's RFC 7662
 * introspection endpoint, and its answer passes the same claim checks.
 *
 * Keys: the JWKS is fetched through the same HTTP edge as every IdP call
 * (deadline, retries, coded errors) and kept; a token whose `kid` is not in
 * it refetches the set once, at most every `jwks_cooldown` (single-flight),
 * so a rotated key is picked up at once and a flood of made-up kids costs
 * one request per cooldown. Hand-written rather than jose's
 * createRemoteJWKSet: that one fetches with the global fetch, without our
 * retries, dispatcher (tests, ignore_ssl_error) or error codes.
 *
 * Results: a token that is invalid, expired, revoked or meant for someone
 * else is a value (`ok: false` with a reason that is safe to log); an IdP
 * that cannot be asked throws a coded MailauthError (→ internal_failure).
 * The token itself never appears in a reason, an error or a log line.
 */
import { createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JSONWebKeySet, JWTPayload } from 'jose';
import type { Dispatcher } from 'undici';
import type { OAuthConfig } from '../config/index.js';
import { MailauthError } from '../errors.js';
import { exchange, jsonBody, pathOf, undici } from './http.js';
import type { HttpOptions } from './http.js';
import { keycloakUrls } from './keycloak.js';
import type { IdpSettings } from './settings.js';

/** Where the tokens come from: resolved per call from the IdP settings (or the oauth config). */
export interface OAuthProviderRef {
  /** The issuer to discover (and, unless discovery says otherwise, to expect in `iss`). */
  issuer: string;
  /** Client credentials for introspection; null: introspection cannot be used. */
  clientId: string | null;
  clientSecret: string | null;
  ignoreSslError: boolean;
}

export interface OAuthMetadata {
  issuer: string;
  jwksUri: string | null;
  introspectionEndpoint: string | null;
}

export type TokenCheck =
  | { ok: true; via: 'jwt' | 'introspection'; email: string; subject: string | null; client: string | null }
  | { ok: false; reason: string };

export type TokenValidatorConfig = Pick<
  OAuthConfig,
  | 'issuer'
  | 'jwksUrl'
  | 'introspectionUrl'
  | 'introspection'
  | 'audiences'
  | 'clients'
  | 'requiredScopes'
  | 'algorithms'
  | 'clockToleranceMs'
  | 'emailClaim'
  | 'requireEmailVerified'
  | 'jwksCooldownMs'
  | 'jwksMaxAgeMs'
  | 'maxTokenBytes'
>;

export interface TokenValidatorOptions {
  config: TokenValidatorConfig;
  /** The provider to ask; throws ERR_IDP_NOT_CONFIGURED when there is none. */
  provider: (signal: AbortSignal) => Promise<OAuthProviderRef>;
  http: { timeoutMs: number; retries: number; retryBackoffMs: number; dispatcher?: Dispatcher | undefined };
  now?: () => number;
  /** Wraps each outbound call (metrics). */
  instrument?: <T>(operation: string, call: () => Promise<T>) => Promise<T>;
}

export interface TokenValidator {
  validate(token: string, signal: AbortSignal): Promise<TokenCheck>;
  /** Discovery (or the configured URLs); for `mailauth idp test`. */
  metadata(signal: AbortSignal): Promise<OAuthMetadata>;
  /** Fetches the JWKS now; for `mailauth idp test`. */
  fetchKeys(signal: AbortSignal): Promise<{ url: string; kids: string[] }>;
  /** Introspects a token that is surely not active, to prove the endpoint and the client credentials work. */
  probeIntrospection(signal: AbortSignal): Promise<{ url: string; active: boolean }>;
  close(): Promise<void>;
}

/**
 * The token issuer and introspection client for the IdP settings: the oauth section first, else
 * the IdP's own (Keycloak: server_url/realms/REALM; generic-oidc: issuer), with its client.
 */
export function providerFromSettings(
  s: IdpSettings | null,
  cfg: Pick<OAuthConfig, 'issuer' | 'introspectionClientId' | 'introspectionSecret'>,
): OAuthProviderRef {
  let issuer: string | null = cfg.issuer;
  let clientId: string | null = null;
  let clientSecret: string | null = null;
  let ignoreSslError = false;
  if (s?.source === 'keycloak') {
    issuer ??= keycloakUrls(s.serverUrl, s.realm).realmBase;
    ({ clientId, clientSecret, ignoreSslError } = s);
  } else if (s?.source === 'generic-oidc') {
    issuer ??= s.issuer;
    ({ clientId, clientSecret, ignoreSslError } = s);
  }
  if (issuer === null) {
    throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'no token issuer: configure a keycloak or generic-oidc IdP with an issuer (mailauth idp), or set oauth.issuer');
  }
  if (cfg.introspectionClientId !== null) {
    clientId = cfg.introspectionClientId;
    clientSecret = cfg.introspectionSecret;
  }
  return { issuer, clientId, clientSecret, ignoreSslError };
}

const MAX_JWKS_BYTES = 512 * 1024;
const MAX_INTROSPECTION_BYTES = 64 * 1024;
/** RFC 6750 b64token plus the '=' padding: anything else cannot be a bearer token. */
const TOKEN_SHAPE = /^[A-Za-z0-9\-._~+/]+=*$/;

const reject = (reason: string): TokenCheck => ({ ok: false, reason });

function formEncode(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, '+');
}

function scopesOf(claims: Record<string, unknown>): string[] {
  if (typeof claims.scope === 'string') return claims.scope.split(' ').filter((x) => x !== '');
  if (Array.isArray(claims.scp)) return claims.scp.filter((x): x is string => typeof x === 'string');
  if (typeof claims.scp === 'string') return claims.scp.split(' ').filter((x) => x !== '');
  return [];
}

function audiencesOf(claims: Record<string, unknown>): string[] {
  if (typeof claims.aud === 'string') return [claims.aud];
  if (Array.isArray(claims.aud)) return claims.aud.filter((x): x is string => typeof x === 'string');
  return [];
}

/** The rules both paths share, on the JWT payload or the introspection answer. */
export function checkClaims(claims: Record<string, unknown>, cfg: TokenValidatorConfig, via: 'jwt' | 'introspection'): TokenCheck {
  // Keycloak marks ID and refresh tokens in `typ`; neither may log in to a mailbox.
  if (typeof claims.typ === 'string' && !['bearer', 'at+jwt'].includes(claims.typ.toLowerCase())) {
    return reject(`not an access token (typ ${JSON.stringify(claims.typ.slice(0, 20))})`);
  }
  if (cfg.audiences.length > 0) {
    const aud = audiencesOf(claims);
    if (!aud.some((a) => cfg.audiences.includes(a))) return reject(`audience ${JSON.stringify(aud.slice(0, 5))} is not one of oauth.audiences`);
  }
  const client = typeof claims.azp === 'string' ? claims.azp : typeof claims.client_id === 'string' ? claims.client_id : null;
  if (cfg.clients.length > 0 && (client === null || !cfg.clients.includes(client))) {
    return reject(`client ${client === null ? '(none)' : JSON.stringify(client.slice(0, 80))} is not one of oauth.clients`);
  }
  const scopes = scopesOf(claims);
  const missing = cfg.requiredScopes.filter((s) => !scopes.includes(s));
  if (missing.length > 0) return reject(`the token lacks scope ${missing.join(' ')}`);
  const email = claims[cfg.emailClaim];
  if (typeof email !== 'string' || email === '') return reject(`the token has no ${cfg.emailClaim} claim`);
  if (cfg.requireEmailVerified && (claims.email_verified === false || claims.email_verified === 'false')) {
    return reject('the email address of the token is not verified at the IdP');
  }
  const subject = typeof claims.sub === 'string' ? claims.sub : null;
  return { ok: true, via, email, subject, client };
}

function joseReason(err: unknown): string | null {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return 'wrong issuer';
    if (err.claim === 'nbf') return 'token not yet valid';
    if (err.claim === 'iat') return 'token issued in the future';
    return `claim ${err.claim} failed: ${err.reason}`;
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'signing algorithm not in oauth.algorithms';
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'several keys of the JWKS match the token';
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JOSENotSupported) return 'malformed token';
  return null;
}

function badAnswer(route: string, url: string, what: string): MailauthError {
  return new MailauthError('ERR_IDP_BAD_RESPONSE', `identity provider answered ${route} with ${what}`, { details: { route, path: pathOf(url), reason: 'shape' } });
}

interface KeyState {
  url: string;
  fetchedAt: number;
  kids: string[];
  keys: ReturnType<typeof createLocalJWKSet>;
}

export function createTokenValidator(opts: TokenValidatorOptions): TokenValidator {
  const cfg = opts.config;
  const now = opts.now ?? Date.now;
  const instrument = opts.instrument ?? ((_op, call) => call());
  // One dispatcher per ignore_ssl_error setting; tests inject their own.
  let insecure: Dispatcher | null = null;
  const dispatcherFor = (ref: OAuthProviderRef): Dispatcher | undefined => {
    if (opts.http.dispatcher) return opts.http.dispatcher;
    if (!ref.ignoreSslError) return undefined;
    insecure ??= new (undici().Agent)({ connect: { rejectUnauthorized: false } });
    return insecure;
  };
  const httpOpts = (ref: OAuthProviderRef, maxBodyBytes: number): HttpOptions => ({
    timeoutMs: opts.http.timeoutMs,
    retries: opts.http.retries,
    retryBackoffMs: opts.http.retryBackoffMs,
    dispatcher: dispatcherFor(ref),
    maxBodyBytes,
  });

  // Discovery per issuer: kept once it succeeded (a failed one is asked again on the next login).
  const discovered = new Map<string, Promise<OAuthMetadata>>();
  let keyState: KeyState | null = null;
  let keyFetch: Promise<KeyState> | null = null;
  let lastFailure = Number.NEGATIVE_INFINITY;

  async function discover(ref: OAuthProviderRef, signal: AbortSignal): Promise<OAuthMetadata> {
    const url = `${ref.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await instrument('discovery', () => exchange({ route: 'discovery', method: 'GET', url, signal }, httpOpts(ref, 1024 * 1024)));
    if (res.status !== 200) {
      throw new MailauthError(res.status === 404 ? 'ERR_IDP_NOT_FOUND' : 'ERR_IDP_BAD_RESPONSE', `identity provider answered discovery with HTTP ${res.status} (is the issuer ${ref.issuer} right?)`, {
        details: { route: 'discovery', path: pathOf(url), status: res.status },
      });
    }
    const doc = jsonBody(res, 'discovery', url) as Record<string, unknown> | null;
    if (typeof doc !== 'object' || doc === null || typeof doc.issuer !== 'string') throw badAnswer('discovery', url, 'a document without an issuer');
    const str = (k: string): string | null => (typeof doc[k] === 'string' ? (doc[k] as string) : null);
    return { issuer: doc.issuer, jwksUri: str('jwks_uri'), introspectionEndpoint: str('introspection_endpoint') };
  }

  async function metadata(ref: OAuthProviderRef, signal: AbortSignal): Promise<OAuthMetadata> {
    // Everything configured: no discovery at all.
    if (cfg.issuer !== null && cfg.jwksUrl !== null && (cfg.introspection === 'off' || cfg.introspectionUrl !== null)) {
      return { issuer: cfg.issuer, jwksUri: cfg.jwksUrl, introspectionEndpoint: cfg.introspectionUrl };
    }
    let p = discovered.get(ref.issuer);
    if (!p) {
      p = discover(ref, signal);
      discovered.set(ref.issuer, p);
      p.catch(() => discovered.delete(ref.issuer));
    }
    const m = await p;
    return {
      issuer: cfg.issuer ?? m.issuer,
      jwksUri: cfg.jwksUrl ?? m.jwksUri,
      introspectionEndpoint: cfg.introspectionUrl ?? m.introspectionEndpoint,
    };
  }

  async function loadKeys(ref: OAuthProviderRef, url: string, signal: AbortSignal): Promise<KeyState> {
    const res = await instrument('jwks', () => exchange({ route: 'jwks', method: 'GET', url, signal }, httpOpts(ref, MAX_JWKS_BYTES)));
    if (res.status !== 200) {
      throw new MailauthError('ERR_IDP_BAD_RESPONSE', `identity provider answered jwks with HTTP ${res.status}`, { details: { route: 'jwks', path: pathOf(url), status: res.status } });
    }
    const doc = jsonBody(res, 'jwks', url) as { keys?: unknown } | null;
    if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.keys)) throw badAnswer('jwks', url, 'a document without a keys list');
    const jwks = doc as JSONWebKeySet;
    let keys: ReturnType<typeof createLocalJWKSet>;
    try {
      keys = createLocalJWKSet(jwks);
    } catch (err) {
      throw new MailauthError('ERR_IDP_BAD_RESPONSE', 'identity provider answered jwks with an invalid key set', { cause: err, details: { route: 'jwks', path: pathOf(url) } });
    }
    const kids = jwks.keys.map((k) => (typeof k.kid === 'string' ? k.kid : '')).filter((k) => k !== '');
    return { url, fetchedAt: now(), kids, keys };
  }

  /**
   * The kept key set, refetched (single-flight) when asked for, when it is older than
   * jwks_max_age, or for another URL. A routine refresh that fails keeps the old keys (and tries
   * again after jwks_cooldown): an IdP outage must not stop JWT logins whose keys are known.
   */
  async function keysFor(ref: OAuthProviderRef, url: string, signal: AbortSignal, refetch: boolean): Promise<KeyState> {
    const k = keyState !== null && keyState.url === url ? keyState : null;
    if (k !== null && !refetch) {
      if (now() - k.fetchedAt < cfg.jwksMaxAgeMs) return k;
      if (now() - lastFailure < cfg.jwksCooldownMs) return k;
    }
    if (!keyFetch) {
      keyFetch = loadKeys(ref, url, signal).finally(() => {
        keyFetch = null;
      });
      keyFetch.then(
        (s) => {
          // An older answer never replaces a newer one.
          if (keyState === null || s.fetchedAt >= keyState.fetchedAt) keyState = s;
        },
        () => {
          lastFailure = now();
        },
      );
    }
    if (k !== null && !refetch) return keyFetch.catch(() => k);
    return keyFetch;
  }

  async function verifyJwt(ref: OAuthProviderRef, meta: OAuthMetadata, token: string, signal: AbortSignal): Promise<TokenCheck> {
    if (meta.jwksUri === null) {
      throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'the identity provider publishes no jwks_uri; set oauth.jwks_url or oauth.introspection: always');
    }
    const verifyWith = (k: KeyState) =>
      jwtVerify(token, k.keys, {
        issuer: meta.issuer,
        algorithms: [...cfg.algorithms],
        clockTolerance: Math.floor(cfg.clockToleranceMs / 1000),
        currentDate: new Date(now()),
        requiredClaims: ['exp', 'iss'],
        // Keycloak signs access tokens with typ "JWT", RFC 9068 servers with "at+jwt"; both pass.
      });
    let k = await keysFor(ref, meta.jwksUri, signal, false);
    for (let attempt = 0; ; attempt++) {
      try {
        const { payload } = await verifyWith(k);
        return checkClaims(payload as JWTPayload & Record<string, unknown>, cfg, 'jwt');
      } catch (err) {
        if (err instanceof joseErrors.JWKSNoMatchingKey) {
          // A kid we do not know: the IdP may have rotated its keys. One refetch, at most every cooldown.
          if (attempt === 0 && now() - k.fetchedAt >= cfg.jwksCooldownMs) {
            k = await keysFor(ref, meta.jwksUri, signal, true);
            continue;
          }
          return reject('signed with a key the IdP does not publish (unknown kid)');
        }
        const why = joseReason(err);
        if (why !== null) return reject(why);
        throw err;
      }
    }
  }

  async function introspect(ref: OAuthProviderRef, meta: OAuthMetadata, token: string, signal: AbortSignal): Promise<TokenCheck> {
    const url = meta.introspectionEndpoint;
    if (url === null) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'the identity provider publishes no introspection_endpoint; set oauth.introspection_url');
    if (ref.clientId === null || ref.clientSecret === null) {
      throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'introspection needs client credentials (the IdP client in the database, or oauth.introspection_client_id)');
    }
    const basic = Buffer.from(`${formEncode(ref.clientId)}:${formEncode(ref.clientSecret)}`).toString('base64');
    const res = await instrument('introspection', () =>
      exchange(
        {
          route: 'introspection',
          method: 'POST',
          url,
          headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: `token=${formEncode(token)}&token_type_hint=access_token`,
          signal,
        },
        httpOpts(ref, MAX_INTROSPECTION_BYTES),
      ),
    );
    if (res.status === 401 || res.status === 403) {
      throw new MailauthError('ERR_IDP_AUTH', `identity provider refused mailauth's client at the introspection endpoint (HTTP ${res.status}): check the client id and secret`, {
        details: { route: 'introspection', path: pathOf(url), status: res.status },
      });
    }
    if (res.status !== 200) throw badAnswer('introspection', url, `HTTP ${res.status}`);
    const body = jsonBody(res, 'introspection', url) as Record<string, unknown> | null;
    if (typeof body !== 'object' || body === null || typeof body.active !== 'boolean') throw badAnswer('introspection', url, 'an answer without an active flag');
    if (!body.active) return reject('the IdP says the token is not active (expired, revoked or unknown)');
    if (typeof body.iss === 'string' && body.iss !== meta.issuer) return reject('wrong issuer');
    const tol = cfg.clockToleranceMs / 1000;
    const t = now() / 1000;
    if (typeof body.exp === 'number' && body.exp + tol < t) return reject('token expired');
    if (typeof body.nbf === 'number' && body.nbf - tol > t) return reject('token not yet valid');
    return checkClaims(body, cfg, 'introspection');
  }

  function looksLikeJwt(token: string): boolean {
    if (token.split('.').length !== 3) return false;
    try {
      return typeof decodeProtectedHeader(token).alg === 'string';
    } catch {
      return false;
    }
  }

  return {
    async validate(token, signal) {
      if (Buffer.byteLength(token) > cfg.maxTokenBytes) return reject(`token longer than oauth.max_token_bytes (${cfg.maxTokenBytes})`);
      if (!TOKEN_SHAPE.test(token)) return reject('not a bearer token (characters outside RFC 6750 b64token)');
      const ref = await opts.provider(signal);
      const meta = await metadata(ref, signal);
      const jwt = looksLikeJwt(token);
      if (cfg.introspection === 'always' || (!jwt && cfg.introspection === 'opaque')) return introspect(ref, meta, token, signal);
      if (!jwt) return reject('not a JWT, and oauth.introspection is off');
      return verifyJwt(ref, meta, token, signal);
    },

    async metadata(signal) {
      return metadata(await opts.provider(signal), signal);
    },

    async fetchKeys(signal) {
      const ref = await opts.provider(signal);
      const meta = await metadata(ref, signal);
      if (meta.jwksUri === null) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'the identity provider publishes no jwks_uri; set oauth.jwks_url');
      const k = await keysFor(ref, meta.jwksUri, signal, true);
      return { url: k.url, kids: k.kids };
    },

    async probeIntrospection(signal) {
      const ref = await opts.provider(signal);
      const meta = await metadata(ref, signal);
      // A random opaque string: any working endpoint answers active=false for it.
      const r = await introspect(ref, meta, `mailauth-probe-${Math.random().toString(36).slice(2)}`, signal);
      return { url: meta.introspectionEndpoint ?? '', active: r.ok };
    },

    async close() {
      const d = insecure;
      insecure = null;
      if (d) await d.close();
    },
  };
}
