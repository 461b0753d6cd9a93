/// <reference path="./oidc-provider.d.ts" />
/**
 * A real OpenID provider (panva oidc-provider@9) on 127.0.0.1:0 with
 * Keycloak-shaped paths (/realms/<realm>/protocol/openid-connect/…), client
 * credentials, a password grant (registered the documented way; the library
 * has none) and userinfo. The generic-OIDC conformance target of
 * docs reference §3.1; it is not a Keycloak double (error codes differ).
 * oidc-provider prints an "Unsupported runtime" warning on Node 20: expected.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { errors } from 'oidc-provider';
import type { GrantContext } from 'oidc-provider';

export interface OpUser {
  sub: string;
  username: string;
  password: string;
  email: string;
  emailVerified?: boolean;
  givenName?: string;
  familyName?: string;
  mailcowTemplate?: string;
}

export interface OpClient {
  clientId: string;
  secret: string;
  grantTypes?: string[];
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  /** Browser sign-in (issue 19): registered redirect URIs; adds authorization_code and response type code. */
  redirectUris?: string[];
}

export interface OidcOpOptions {
  realm?: string;
  clients?: OpClient[];
  users?: OpUser[];
  /** false: no userinfo endpoint (and none in discovery). */
  userinfo?: boolean;
  accessTokenTtlSec?: number;
  /**
   * Format of password-grant access tokens: 'opaque' (the library's default without a resource
   * indicator; only introspection can read it) or 'jwt' (RFC 9068, for the test API resource).
   */
  passwordGrantFormat?: 'opaque' | 'jwt';
}

export interface OidcOp {
  /** http://127.0.0.1:PORT/realms/<realm> */
  issuer: string;
  url: string;
  tokenUrl: string;
  userinfoUrl: string;
  authorizeUrl: string;
  introspectionUrl: string;
  revocationUrl: string;
  /** The audience of JWT access tokens (the test API resource indicator). */
  audience: string;
  /** A password-grant access token for a user (over HTTP, as a client would get it). */
  passwordToken(username: string, opts?: { scope?: string; clientId?: string }): Promise<string>;
  close(): Promise<void>;
}

const API = 'urn:mailauth:test-api';

export const DEFAULT_OP_CLIENT: OpClient = { clientId: 'mailauth', secret: 'op-secret', grantTypes: ['client_credentials', 'password'] };
export const DEFAULT_OP_USERS: OpUser[] = [
  { sub: 'u-1', username: 'alice', password: 'pw-alice', email: 'alice@example.org', emailVerified: true, givenName: 'Alice', familyName: 'A', mailcowTemplate: 'staff' },
  { sub: 'u-2', username: 'bob', password: 'pw-bob', email: 'bob@example.org', emailVerified: true },
];

export async function startOidcOp(opts: OidcOpOptions = {}): Promise<OidcOp> {
  const realm = opts.realm ?? 'test';
  const users = opts.users ?? DEFAULT_OP_USERS;
  const clients = opts.clients ?? [DEFAULT_OP_CLIENT];
  const ttl = opts.accessTokenTtlSec ?? 300;
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const prefix = `/realms/${realm}`;
  const issuer = `${url}${prefix}`;
  const oidc = `${prefix}/protocol/openid-connect`;

  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.secret,
      grant_types: [...(c.grantTypes ?? ['client_credentials', 'password']), ...(c.redirectUris ? ['authorization_code'] : [])],
      response_types: c.redirectUris ? ['code'] : [],
      redirect_uris: c.redirectUris ?? [],
      token_endpoint_auth_method: c.authMethod ?? 'client_secret_basic',
    })),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['given_name', 'family_name', 'preferred_username'],
      mailcow_template: ['mailcow_template'],
    },
    scopes: ['openid', 'email', 'profile', 'mailcow_template', 'offline_access'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: opts.userinfo !== false },
      resourceIndicators: {
        enabled: true,
        // The browser sign-in asks for no resource: its access token is for userinfo (opaque).
        defaultResource: async (ctx: { oidc?: { route?: string; params?: { grant_type?: string } } }) =>
          ctx.oidc?.route === 'authorization' || ctx.oidc?.route === 'resume' || ctx.oidc?.params?.grant_type === 'authorization_code' ? undefined : API,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (resource !== API) throw new errors.InvalidTarget();
          return { scope: 'openid email profile mailcow_template', audience: API, accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
    async findAccount(_ctx: unknown, sub: string) {
      const u = users.find((x) => x.sub === sub);
      if (!u) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: u.email,
            email_verified: u.emailVerified ?? false,
            given_name: u.givenName,
            family_name: u.familyName,
            preferred_username: u.username,
            ...(u.mailcowTemplate === undefined ? {} : { mailcow_template: u.mailcowTemplate }),
          };
        },
      };
    },
    routes: {
      authorization: `${oidc}/auth`,
      token: `${oidc}/token`,
      introspection: `${oidc}/token/introspect`,
      revocation: `${oidc}/revoke`,
      userinfo: `${oidc}/userinfo`,
      jwks: `${oidc}/certs`,
      end_session: `${oidc}/logout`,
    },
    ttl: { AccessToken: ttl, ClientCredentials: ttl, Grant: 3600, Interaction: 600, Session: 3600 },
    cookies: { keys: ['test-op-cookie-key-0123456789abcdef'] },
    // Issue 19: the login and consent pages are ours (below), not devInteractions.
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    // The documented way to put user claims into access tokens: in the JWT payload, or stored with an
    // opaque token and returned by introspection as top-level claims.
    async extraTokenClaims(_ctx: unknown, token: { accountId?: string }) {
      const u = token.accountId === undefined ? undefined : users.find((x) => x.sub === token.accountId);
      return u ? { email: u.email, email_verified: u.emailVerified ?? false } : undefined;
    },
  });

  provider.registerGrantType(
    'password',
    async (ctx: GrantContext) => {
      const { username, password } = ctx.oidc.params;
      const scope = ctx.oidc.params.scope ?? 'openid';
      const u = users.find((x) => x.username === username || x.email === username);
      if (!u || u.password !== password) throw new errors.InvalidGrant('Invalid user credentials');
      const grant = new provider.Grant({ accountId: u.sub, clientId: ctx.oidc.client.clientId });
      grant.addOIDCScope(scope);
      grant.addResourceScope(API, scope);
      const grantId = await grant.save();
      const at = new provider.AccessToken({ accountId: u.sub, client: ctx.oidc.client, grantId, gty: 'password', scope });
      if (opts.passwordGrantFormat === 'jwt') {
        at.resourceServer = new provider.ResourceServer(API, { scope: 'openid email profile mailcow_template', audience: API, accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: 'RS256' } } });
      }
      ctx.body = { access_token: await at.save(), expires_in: at.expiration, token_type: 'Bearer', scope };
    },
    ['username', 'password', 'scope'],
  );

  const handler = provider.callback();
  const page = (title: string, body: string): string =>
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><main><h1>${title}</h1>${body}</main></body></html>`;
  const esc = (x: string): string => x.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch] as string);
  /** The interaction pages: a login form, and consent granted at once for what the client asked. */
  async function interaction(req: http.IncomingMessage, res: http.ServerResponse, uid: string, action: string): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction uid mismatch');
    const loginForm = (error: string | null, username = ''): void => {
      const html = page(
        'Sign in',
        `${error ? `<p role="alert">${esc(error)}</p>` : ''}<form method="post" action="/interaction/${esc(uid)}/login">
<label for="username">Username</label><input id="username" name="username" value="${esc(username)}" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Sign in</button></form>`,
      );
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html);
    };
    if (details.prompt.name === 'login') {
      if (action !== 'login' || req.method !== 'POST') return loginForm(null);
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const username = form.get('username') ?? '';
      const u = users.find((x) => x.username === username || x.email === username);
      if (!u || u.password !== form.get('password')) return loginForm('Invalid username or password.', username);
      await provider.interactionFinished(req, res, { login: { accountId: u.sub } }, { mergeWithLastSubmission: false });
      return;
    }
    // consent
    const accountId = details.session?.accountId;
    const clientId = details.params.client_id;
    if (!accountId || typeof clientId !== 'string') throw new Error('consent without a session');
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId });
    if (!grant) throw new Error('grant not found');
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  server.on('request', (req, res) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?$/.exec(req.url?.split('?')[0] ?? '');
    if (m) {
      interaction(req, res, m[1] as string, m[2] ?? '').catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
        res.end(page('Sign-in error', `<p>${esc(String((err as Error).message ?? err))}</p>`));
      });
      return;
    }
    // The discovery route is fixed relative to the mount; map the issuer-relative one onto it.
    if (req.url?.startsWith(`${prefix}/.well-known/openid-configuration`)) req.url = req.url.slice(prefix.length);
    handler(req, res);
  });

  let closing: Promise<void> | undefined;
  return {
    issuer,
    url,
    tokenUrl: `${url}${oidc}/token`,
    userinfoUrl: `${url}${oidc}/userinfo`,
    authorizeUrl: `${url}${oidc}/auth`,
    introspectionUrl: `${url}${oidc}/token/introspect`,
    revocationUrl: `${url}${oidc}/revoke`,
    audience: API,
    async passwordToken(username, o = {}) {
      const u = users.find((x) => x.username === username);
      const c = clients.find((x) => x.clientId === (o.clientId ?? clients[0]?.clientId));
      if (!u || !c) throw new Error(`no user ${username} or client`);
      const res = await fetch(`${url}${oidc}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${c.clientId}:${c.secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'password', username, password: u.password, scope: o.scope ?? 'openid email profile' }).toString(),
      });
      const body = (await res.json()) as { access_token?: string; error?: string };
      if (!body.access_token) throw new Error(`password grant failed: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    // Once: a test that stops the provider early and its teardown may both call it.
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}
