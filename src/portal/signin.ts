/**
 * Sign-in with the configured identity provider: the authorization-code flow
 * with PKCE (S256), `state` and `nonce`, through openid-client. The provider
 * comes from the identity_provider rows (Keycloak: the realm's issuer;
 * generic OIDC: its issuer, discovered). One openid-client Configuration per
 * set of connection settings, rebuilt when they change.
 *
 * Transport: the same rule as src/idp (https; plain http only to a loopback
 * host or with ignore_ssl_error, which also turns off certificate checks).
 */
import type * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Dispatcher } from 'undici';
import { MailauthError } from '../errors.js';
import { keycloakUrls, transportAllowed, translateOidcError } from '../idp/index.js';
import type { IdpSettings } from '../idp/index.js';

type OidcLib = typeof import('openid-client');
let lib: Promise<OidcLib> | null = null;
const oidcLib = (): Promise<OidcLib> => (lib ??= import('openid-client'));

export interface SignInStart {
  url: string;
  state: string;
  nonce: string;
  verifier: string;
}

/** What the provider told us about the person, after every check passed. */
export interface SignInIdentity {
  email: string | null;
  emailVerified: boolean;
  subject: string;
}

export interface SignInClient {
  /** The provider the portal sends browsers to (null when no IdP with a browser sign-in is configured). */
  available(): Promise<{ source: string } | null>;
  begin(redirectUri: string, opts?: { forceLogin?: boolean }): Promise<SignInStart>;
  /**
   * Checks state, exchanges the code with the PKCE verifier, checks the ID token (nonce, issuer,
   * audience). With `maxAgeS` (a re-authentication) the ID token's auth_time must be that recent:
   * else ERR_IDP_FORBIDDEN with reason `stale_auth_time`.
   */
  finish(callbackUrl: URL, expected: { state: string; nonce: string; verifier: string; maxAgeS?: number }, redirectUri: string): Promise<SignInIdentity>;
  close(): Promise<void>;
}

export interface SignInOptions {
  settings: () => Promise<IdpSettings | null>;
  emailClaim: string;
  timeoutMs: number;
  /** undici dispatcher for the provider calls (tests). */
  dispatcher?: Dispatcher;
}

/** Which issuer to discover for these settings, or why the portal cannot use them. */
export function issuerFor(s: IdpSettings): { issuer: string } | { problem: string } {
  if (s.source === 'keycloak') return { issuer: keycloakUrls(s.serverUrl, s.realm).realmBase };
  if (s.source === 'generic-oidc') {
    if (!s.issuer) return { problem: 'the generic-oidc settings have no issuer; the portal needs discovery (mailauth idp set generic-oidc --issuer URL)' };
    return { issuer: s.issuer };
  }
  return { problem: `authsource ${s.source} has no browser sign-in` };
}

/** openid-client's "auth_time older than maxAge" (its ClientError around oauth4webapi's error, whose cause names the claim). */
function staleAuthTime(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: { claim?: unknown; cause?: { claim?: unknown } } } | null;
  return e?.code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED' && (e.cause?.claim === 'auth_time' || e.cause?.cause?.claim === 'auth_time');
}

function fingerprint(s: IdpSettings, issuer: string): string {
  return JSON.stringify([issuer, 'clientId' in s ? s.clientId : '', 'clientSecret' in s ? s.clientSecret : '', s.ignoreSslError]);
}

export function createSignInClient(opts: SignInOptions): SignInClient {
  let current: { fp: string; config: Promise<oidc.Configuration>; agent: Agent | null } | null = null;
  const retired: Promise<void>[] = [];

  async function configuration(): Promise<{ config: oidc.Configuration; settings: IdpSettings }> {
    const settings = await opts.settings();
    if (settings === null) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'no identity provider is configured');
    const which = issuerFor(settings);
    if ('problem' in which) throw new MailauthError('ERR_IDP_NOT_CONFIGURED', which.problem);
    if (settings.source === 'ldap') throw new MailauthError('ERR_IDP_NOT_CONFIGURED', 'ldap has no browser sign-in');
    const fp = fingerprint(settings, which.issuer);
    if (current?.fp !== fp) {
      if (current?.agent) retired.push(current.agent.close());
      const url = new URL(which.issuer);
      if (!transportAllowed(url, settings.ignoreSslError)) {
        throw new MailauthError('ERR_INVALID_INPUT', `refusing plain http to ${url.host}: use https (or a loopback address, or ignore_ssl_error)`);
      }
      const agent = opts.dispatcher === undefined && settings.ignoreSslError ? new Agent({ connect: { rejectUnauthorized: false } }) : null;
      const dispatcher = opts.dispatcher ?? agent ?? undefined;
      const secret = settings.clientSecret;
      const clientId = settings.clientId;
      const config = (async () => {
        const o = await oidcLib();
        const customFetch: oidc.CustomFetch = async (u, init) =>
          (await undiciFetch(u, { ...init, body: init.body as string | undefined, ...(dispatcher ? { dispatcher } : {}) })) as unknown as Response;
        let c: oidc.Configuration;
        try {
          c = await o.discovery(url, clientId, undefined, o.ClientSecretBasic(secret), {
            execute: url.protocol === 'http:' ? [o.allowInsecureRequests] : [],
            timeout: opts.timeoutMs / 1000,
            [o.customFetch]: customFetch,
          });
        } catch (err) {
          throw translateOidcError(err, 'discovery', `${which.issuer}/.well-known/openid-configuration`);
        }
        const methods = c.serverMetadata().token_endpoint_auth_methods_supported;
        if (methods && methods.length > 0 && !methods.includes('client_secret_basic') && methods.includes('client_secret_post')) {
          c = new o.Configuration(c.serverMetadata(), clientId, undefined, o.ClientSecretPost(secret));
          c[o.customFetch] = customFetch;
          if (url.protocol === 'http:') o.allowInsecureRequests(c);
        }
        c.timeout = opts.timeoutMs / 1000;
        return c;
      })();
      // A failed discovery is retried on the next sign-in.
      config.catch(() => {
        if (current?.config === config) current = null;
      });
      current = { fp, config, agent };
    }
    return { config: await current.config, settings };
  }

  return {
    async available() {
      const s = await opts.settings();
      if (s === null || s.source === 'ldap') return null;
      return 'problem' in issuerFor(s) ? null : { source: s.source };
    },
    async begin(redirectUri, o = {}) {
      const { config, settings } = await configuration();
      const lib = await oidcLib();
      const verifier = lib.randomPKCECodeVerifier();
      const state = lib.randomState();
      const nonce = lib.randomNonce();
      const scopes = settings.source === 'generic-oidc' ? settings.clientScopes.filter((x) => x !== 'openid') : [];
      const scope = ['openid', 'email', ...scopes.filter((x) => x !== 'email')].join(' ');
      const url = lib.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope,
        response_type: 'code',
        code_challenge: await lib.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        ...(o.forceLogin ? { prompt: 'login', max_age: '0' } : {}),
      });
      return { url: url.href, state, nonce, verifier };
    },
    async finish(callbackUrl, expected, redirectUri) {
      const { config } = await configuration();
      const lib = await oidcLib();
      let tokens: Awaited<ReturnType<OidcLib['authorizationCodeGrant']>>;
      try {
        // The callback URL as the provider built it (the redirect URI + its parameters), not as a proxy rewrote it.
        const current = new URL(redirectUri);
        current.search = callbackUrl.search;
        tokens = await lib.authorizationCodeGrant(config, current, {
          pkceCodeVerifier: expected.verifier,
          expectedState: expected.state,
          expectedNonce: expected.nonce,
          idTokenExpected: true,
          // prompt=login asks for a fresh sign-in, but an IdP may still answer from its SSO session:
          // auth_time is what proves the person typed their credentials again (OIDC Core 3.1.2.1).
          ...(expected.maxAgeS === undefined ? {} : { maxAge: expected.maxAgeS }),
        });
      } catch (err) {
        if (staleAuthTime(err)) {
          throw new MailauthError('ERR_IDP_FORBIDDEN', 'the identity provider did not sign the user in again (auth_time is too old)', { details: { reason: 'stale_auth_time' } });
        }
        throw translateOidcError(err, 'token', config.serverMetadata().token_endpoint ?? null);
      }
      const claims = tokens.claims();
      if (!claims) throw new MailauthError('ERR_IDP_BAD_RESPONSE', 'the provider returned no ID token');
      let email: unknown = claims[opts.emailClaim];
      let verified: unknown = claims.email_verified;
      if (email === undefined && config.serverMetadata().userinfo_endpoint) {
        try {
          const info = await lib.fetchUserInfo(config, tokens.access_token, claims.sub);
          email = info[opts.emailClaim];
          verified = info.email_verified;
        } catch (err) {
          throw translateOidcError(err, 'userinfo', config.serverMetadata().userinfo_endpoint ?? null);
        }
      }
      return {
        email: typeof email === 'string' && email !== '' ? email : null,
        emailVerified: verified === true || verified === 'true',
        subject: claims.sub,
      };
    },
    async close() {
      const agent = current?.agent;
      current = null;
      await Promise.allSettled([...retired, agent?.close()]);
    },
  };
}
