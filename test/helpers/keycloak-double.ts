/**
 * A Keycloak-shaped HTTP server for tests (docs reference
 * /work/shared/reference/keycloak-oidc.md §6): one realm of Keycloak ≥ 20 with
 * discovery, certs, token (client_credentials + password), introspection,
 * userinfo and the admin users API, answering with the status codes and error
 * bodies of §1, plus a programmatic fault handle (§6.3). It listens on
 * 127.0.0.1:0 (http, or https with a given key/cert); `close()` stops it and
 * drops every open connection, hung ones included.
 *
 * Fidelity notes, checked against §1 line by line:
 * - token: Cache-Control no-store + Pragma no-cache; duplicated parameters → 400;
 *   Basic (form-url-decoded) or form client auth, a form client_id overrides the
 *   header's; every error row of §1.4 incl. the password-grant table.
 * - client_credentials: no refresh token, refresh_expires_in 0 (unless
 *   clientCredentialsRefreshToken, as old Keycloak did).
 * - admin API: 401 {"error":"HTTP 401 Unauthorized"} for a missing/invalid/
 *   expired/revoked token; 403 {"error":"unknown_error"} (or legacy
 *   "HTTP 403 Forbidden") without query-users/view-users; `/users` and `/users/`;
 *   max defaults to 100; search overrides field filters; service-account users
 *   are hidden from the unfiltered and `search` listings and shown by field
 *   filters; sorted by username; briefRepresentation drops attributes,
 *   requiredActions, notBefore; the unmanaged-attribute policy hides attributes
 *   (the key is then absent, never `{}`); users the client may not view are
 *   dropped from a page after paging (fine-grained permissions).
 * - userinfo: RFC 6750 challenges in WWW-Authenticate (no JSON body), 403
 *   insufficient_scope "Missing openid scope" unless requireOpenidForUserinfo is
 *   off; legacyUserinfoErrors gives the pre-19.0.2 400 JSON "Token not provided".
 * - tokens: RS256 JWTs, header typ "JWT" with kid; claims exp, iat, jti, iss,
 *   sub, typ "Bearer", azp, scope, sid (password grant), preferred_username, email….
 * - browser sign-in (issue 19): the authorization endpoint with Keycloak's login
 *   form (#kc-form-login, #username, #password, #kc-login) posted to
 *   login-actions/authenticate; redirect_uri checked against the client's
 *   redirectUris (a trailing * is a prefix match, as in Keycloak) before
 *   anything else, error pages as HTML 400; then errors go back to the client
 *   as ?error=…&state=…; success → 302 with state, session_state, iss and code.
 *   The code is single-use, bound to client, redirect_uri and the PKCE
 *   challenge (S256 or plain); the ID token carries nonce and auth_time.
 * Open points of §8 are choices here: the unfiltered /users/count excludes
 * service accounts (switch countIncludesServiceAccounts), an unknown client is
 * 401 unauthorized_client (switch unknownClient400 for Keycloak 18's 400).
 */
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { SignJWT, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import type { JWK, JWTPayload } from 'jose';

export type AdminRole = 'view-users' | 'query-users';
export type AttributePolicy = 'DISABLED' | 'ADMIN_VIEW' | 'ADMIN_EDIT' | 'ENABLED';

export interface DoubleClient {
  clientId: string;
  secret?: string;
  publicClient?: boolean;
  bearerOnly?: boolean;
  serviceAccountsEnabled?: boolean;
  directAccessGrantsEnabled?: boolean;
  consentRequired?: boolean;
  adminRoles: AdminRole[];
  /** Optional client scopes: granted when the token request asks for them (Keycloak's "Optional" client scopes). */
  optionalScopes?: string[];
  /** An "Audience" protocol mapper on the client: these values join the access token's aud. */
  audience?: string[];
  /** Browser sign-in (authorization code); Keycloak's default for new clients is on. */
  standardFlowEnabled?: boolean;
  /** Valid redirect URIs; a trailing * matches by prefix. */
  redirectUris?: string[];
}

export interface DoubleUser {
  id: string;
  username: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  enabled: boolean;
  emailVerified: boolean;
  createdTimestamp: number;
  password?: string;
  requiredActions?: string[];
  attributes?: Record<string, string[]>;
  serviceAccountOf?: string;
  /** Brute-force protection has locked the user (password grant fails, A3 shows enabled: false). */
  locked?: boolean;
}

export type DoubleUserInput = Partial<DoubleUser> & { username: string };

export interface DoubleConfig {
  pathPrefix: '' | '/auth';
  realm: string;
  /** Other realms that exist (discovery only), like the master realm every Keycloak has. */
  otherRealms: string[];
  issuerOverride?: string;
  clients: DoubleClient[];
  users: DoubleUserInput[];
  accessTokenTtlSec: number;
  requireOpenidForUserinfo: boolean;
  unmanagedAttributePolicy: AttributePolicy;
  managedAttributes: string[];
  /** Attributes with a "User Attribute" mapper (emitted in userinfo as strings). */
  userinfoClaimsFromAttributes: string[];
  legacyUserinfoErrors: boolean;
  legacy403Body: boolean;
  clientCredentialsRefreshToken: boolean;
  unknownClient400: boolean;
  countIncludesServiceAccounts: boolean;
  /** "SSL required" for this (non-https) request: every token request → 403 HTTPS required. */
  sslRequired: boolean;
  realmEnabled: boolean;
  /** Seconds added to iat/exp of new tokens (clock skew). */
  clockSkewSec: number;
  /**
   * ID tokens' auth_time this many seconds before iat: a provider that answered prompt=login
   * from an older SSO session (Keycloak re-prompts; a misconfigured flow or another IdP may not).
   */
  authTimeAgeSec: number;
  now: () => number;
  tls?: { key: string; cert: string };
}

export type Route = 'discovery' | 'certs' | 'token' | 'introspect' | 'userinfo' | 'users' | 'count' | 'user' | 'authorize' | 'login';

export type Fault =
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'error500' }
  | { kind: 'proxy'; status: 502 | 503 | 504 }
  | { kind: 'reset' }
  | { kind: 'html200' }
  | { kind: 'truncated' }
  /** Status line, headers and half a JSON body, then silence: the socket stays open (a stalled upstream). */
  | { kind: 'stall' }
  | { kind: 'notArray' }
  | { kind: 'nonInteger' }
  | { kind: 'status'; status: number; body?: unknown; contentType?: string };

export interface RequestRecord {
  route: Route | 'unknown';
  method: string;
  path: string;
  query: string;
  status: number | null;
}

export interface KeycloakDouble {
  /** http://127.0.0.1:PORT (without the path prefix) */
  url: string;
  /** What an admin configures as server_url: url + pathPrefix. */
  serverUrl: string;
  realm: string;
  issuer: string;
  /** Switches tests may flip at any time (policy, legacy behaviours, TTL, clock skew…). */
  config: DoubleConfig;
  requests: RequestRecord[];
  countRequests(route: Route): number;
  inject(route: Route | '*', fault: Fault, times?: number): void;
  clearFaults(): void;
  /** Called after each response to `route` (e.g. add/delete a user between pages). */
  after(route: Route, fn: (rec: RequestRecord) => void): void;
  addUser(u: DoubleUserInput): DoubleUser;
  updateUser(idOrUsername: string, patch: Partial<DoubleUser>): DoubleUser;
  deleteUser(idOrUsername: string): void;
  getUser(idOrUsername: string): DoubleUser | undefined;
  users(): DoubleUser[];
  disableUser(idOrUsername: string): void;
  addRequiredAction(idOrUsername: string, action: string): void;
  /** Users the service account may not view: dropped from pages, still counted. */
  hideFromListing(ids: string[]): void;
  /** Added to every /users/count answer ("count disagrees with the listing"). */
  setCountOffset(n: number): void;
  client(clientId: string): DoubleClient;
  rotateClientSecret(clientId: string, secret?: string): string;
  removeRole(clientId: string, role: AdminRole): void;
  addRole(clientId: string, role: AdminRole): void;
  expireAllTokens(): void;
  revokeToken(jti: string): void;
  /** New signing key; tokens signed with the old kid fail unless keepOld. */
  rotateSigningKey(opts?: { keepOld?: boolean }): Promise<void>;
  /** Issued access tokens, newest last (jti, client, subject). */
  issued(): { jti: string; clientId: string; sub: string; scope: string }[];
  close(): Promise<void>;
}

const SERVER_ERROR = { error: 'unknown_error', error_description: 'For more on this error consult the server log.' };
const PROXY_HTML = (status: number): string => {
  const text = { 502: 'Bad Gateway', 503: 'Service Temporarily Unavailable', 504: 'Gateway Time-out' }[status] ?? 'Error';
  return `<html>\r\n<head><title>${status} ${text}</title></head>\r\n<body>\r\n<center><h1>${status} ${text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
};

interface SigningKey {
  kid: string;
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  jwk: JWK;
}

/** An authorization request waiting at the login form. */
interface LoginSession {
  clientId: string;
  redirectUri: string;
  state: string | null;
  nonce: string | null;
  scope: string;
  challenge: string | null;
  method: 'S256' | 'plain' | null;
}

/** An issued authorization code (single use, 60 s as in Keycloak). */
interface AuthCode extends LoginSession {
  userId: string;
  sid: string;
  issuedAt: number;
}

interface IssuedToken {
  jti: string;
  clientId: string;
  sub: string;
  scope: string;
}

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID().replace(/-/g, '').slice(0, 22);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, jwk };
}

// RSA key generation dominates start-up; doubles start with one shared key (rotation makes fresh ones).
let initialKey: Promise<SigningKey> | null = null;

function defaults(partial: Partial<DoubleConfig>): DoubleConfig {
  return {
    pathPrefix: '',
    realm: 'mail',
    otherRealms: ['master'],
    clients: [{ clientId: 'mailauth', secret: 'kc-secret', serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] }],
    users: [],
    accessTokenTtlSec: 300,
    requireOpenidForUserinfo: true,
    unmanagedAttributePolicy: 'ADMIN_VIEW',
    managedAttributes: [],
    userinfoClaimsFromAttributes: ['mailcow_template'],
    legacyUserinfoErrors: false,
    legacy403Body: false,
    clientCredentialsRefreshToken: false,
    unknownClient400: false,
    countIncludesServiceAccounts: false,
    sslRequired: false,
    realmEnabled: true,
    clockSkewSec: 0,
    authTimeAgeSec: 0,
    now: Date.now,
    ...partial,
  };
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export async function startKeycloakDouble(partial: Partial<DoubleConfig> = {}): Promise<KeycloakDouble> {
  const config = defaults(partial);
  const users = new Map<string, DoubleUser>();
  let version = 0;
  let sortedCache: { version: number; all: DoubleUser[]; humans: DoubleUser[] } | null = null;
  const hidden = new Set<string>();
  let countOffset = 0;
  let key = await (initialKey ??= newKey());
  let keptKeys: SigningKey[] = [];
  const issued = new Map<string, IssuedToken>();
  const deadTokens = new Set<string>(); // expired or revoked jtis
  const faults: { route: Route | '*'; fault: Fault; remaining: number }[] = [];
  const hooks = new Map<Route, ((rec: RequestRecord) => void)[]>();
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const loginSessions = new Map<string, LoginSession>();
  const codes = new Map<string, AuthCode>();
  const timers = new Set<NodeJS.Timeout>();
  let base = '';

  const nowSec = (): number => Math.floor(config.now() / 1000);
  const issuer = (): string => config.issuerOverride ?? `${base}${config.pathPrefix}/realms/${config.realm}`;
  const realmUrl = (): string => `${base}${config.pathPrefix}/realms/${config.realm}`;

  function addUser(u: DoubleUserInput): DoubleUser {
    const user: DoubleUser = {
      id: u.id ?? randomUUID(),
      username: u.username.toLowerCase(),
      enabled: u.enabled ?? true,
      emailVerified: u.emailVerified ?? false,
      createdTimestamp: u.createdTimestamp ?? config.now(),
      ...(u.email === undefined ? {} : { email: u.email.toLowerCase() }),
      ...(u.firstName === undefined ? {} : { firstName: u.firstName }),
      ...(u.lastName === undefined ? {} : { lastName: u.lastName }),
      ...(u.password === undefined ? {} : { password: u.password }),
      ...(u.requiredActions === undefined ? {} : { requiredActions: [...u.requiredActions] }),
      ...(u.attributes === undefined ? {} : { attributes: structuredClone(u.attributes) }),
      ...(u.serviceAccountOf === undefined ? {} : { serviceAccountOf: u.serviceAccountOf }),
      ...(u.locked === undefined ? {} : { locked: u.locked }),
    };
    users.set(user.id, user);
    version++;
    return user;
  }

  function findUser(idOrUsername: string): DoubleUser | undefined {
    return users.get(idOrUsername) ?? [...users.values()].find((u) => u.username === idOrUsername.toLowerCase());
  }

  function mustUser(idOrUsername: string): DoubleUser {
    const u = findUser(idOrUsername);
    if (!u) throw new Error(`keycloak double: no user ${idOrUsername}`);
    return u;
  }

  function client(clientId: string): DoubleClient {
    const c = config.clients.find((x) => x.clientId === clientId);
    if (!c) throw new Error(`keycloak double: no client ${clientId}`);
    return c;
  }

  function ensureServiceAccounts(): void {
    for (const c of config.clients) {
      if (c.serviceAccountsEnabled && ![...users.values()].some((u) => u.serviceAccountOf === c.clientId)) {
        addUser({ username: `service-account-${c.clientId}`, serviceAccountOf: c.clientId, enabled: true, emailVerified: false });
      }
    }
  }

  for (const u of config.users) addUser(u);
  ensureServiceAccounts();

  function sorted(): { all: DoubleUser[]; humans: DoubleUser[] } {
    if (sortedCache?.version !== version) {
      const all = [...users.values()].sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
      sortedCache = { version, all, humans: all.filter((u) => u.serviceAccountOf === undefined) };
    }
    return sortedCache;
  }

  // ── responses ────────────────────────────────────────────────────────────
  function send(res: ServerResponse, rec: RequestRecord, status: number, body: unknown, headers: Record<string, string> = {}): void {
    rec.status = status;
    const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const type = body === undefined ? {} : { 'content-type': typeof body === 'string' && !headers['content-type'] ? 'text/plain' : 'application/json' };
    res.writeHead(status, { ...type, ...headers, 'content-length': String(Buffer.byteLength(text)) });
    res.end(text);
  }
  const json = (res: ServerResponse, rec: RequestRecord, status: number, body: unknown, headers: Record<string, string> = {}): void =>
    send(res, rec, status, body, { 'content-type': 'application/json', ...headers });
  const oauthErr = (res: ServerResponse, rec: RequestRecord, status: number, error: string, description: string): void =>
    json(res, rec, status, { error, error_description: description }, { 'cache-control': 'no-store', pragma: 'no-cache' });

  // ── tokens ───────────────────────────────────────────────────────────────
  async function signAccessToken(c: DoubleClient, sub: DoubleUser, scope: string, sid: string | null, kind: 'access' | 'id' = 'access', nonce: string | null = null): Promise<{ token: string; jti: string }> {
    const jti = randomUUID();
    const iat = nowSec() + config.clockSkewSec;
    const claims: JWTPayload & Record<string, unknown> = {
      exp: iat + config.accessTokenTtlSec,
      iat,
      jti,
      iss: issuer(),
      sub: sub.id,
      // An ID token is for the client (aud = client id, typ "ID"); an access token for the APIs.
      typ: kind === 'id' ? 'ID' : 'Bearer',
      azp: c.clientId,
      preferred_username: sub.username,
      email_verified: sub.emailVerified,
    };
    if (kind === 'access') claims.scope = scope;
    if (sid) claims.sid = sid;
    if (kind === 'id') {
      claims.aud = c.clientId;
      claims.auth_time = iat - config.authTimeAgeSec;
      if (nonce !== null) claims.nonce = nonce;
    } else if (sub.serviceAccountOf) claims.client_id = c.clientId;
    else claims.aud = c.audience && c.audience.length > 0 ? [...c.audience, 'account'] : 'account';
    if (sub.email) claims.email = sub.email;
    if (sub.firstName) claims.given_name = sub.firstName;
    if (sub.lastName) claims.family_name = sub.lastName;
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid }).sign(key.privateKey);
    if (kind === 'access') issued.set(jti, { jti, clientId: c.clientId, sub: sub.id, scope });
    return { token, jti };
  }

  /** The payload of a live token of this realm, else null. */
  async function verify(token: string): Promise<(JWTPayload & Record<string, unknown>) | null> {
    try {
      const kid = decodeProtectedHeader(token).kid;
      const k = [key, ...keptKeys].find((x) => x.kid === kid);
      if (!k) return null;
      const { payload } = await jwtVerify(token, k.jwk, { issuer: issuer(), algorithms: ['RS256'], currentDate: new Date(config.now()) });
      if (typeof payload.jti !== 'string' || deadTokens.has(payload.jti) || !issued.has(payload.jti)) return null;
      return payload as JWTPayload & Record<string, unknown>;
    } catch {
      return null;
    }
  }

  // ── client authentication (ClientIdAndSecretAuthenticator) ───────────────
  type ClientAuth = { ok: true; client: DoubleClient } | { ok: false; respond: (res: ServerResponse, rec: RequestRecord) => void };

  function authenticateClient(req: IncomingMessage, form: URLSearchParams): ClientAuth {
    let clientId: string | null = null;
    let secret: string | null = null;
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header.trim());
      const decoded = m ? Buffer.from(m[1] as string, 'base64').toString('utf8') : null;
      const i = decoded?.indexOf(':') ?? -1;
      if (decoded !== null && i > 0) {
        clientId = formDecode(decoded.slice(0, i));
        secret = formDecode(decoded.slice(i + 1));
      } else if (!form.has('client_id')) {
        return {
          ok: false,
          respond: (res, rec) => send(res, rec, 401, undefined, { 'www-authenticate': `Basic realm="${config.realm}"`, 'cache-control': 'no-store', pragma: 'no-cache' }),
        };
      }
    }
    if (form.has('client_id')) clientId = form.get('client_id');
    if (form.has('client_secret')) secret = form.get('client_secret');
    if (clientId === null || clientId === '') return { ok: false, respond: (res, rec) => oauthErr(res, rec, 400, 'invalid_client', 'Missing client_id parameter') };
    const c = config.clients.find((x) => x.clientId === clientId);
    if (!c) {
      return config.unknownClient400
        ? { ok: false, respond: (res, rec) => oauthErr(res, rec, 400, 'invalid_client', 'Invalid client credentials') }
        : { ok: false, respond: (res, rec) => oauthErr(res, rec, 401, 'unauthorized_client', 'Invalid client or Invalid client credentials') };
    }
    if (c.publicClient) return { ok: true, client: c };
    if (secret === null) return { ok: false, respond: (res, rec) => oauthErr(res, rec, 401, 'unauthorized_client', 'Client secret not provided in request') };
    if (secret !== c.secret) return { ok: false, respond: (res, rec) => oauthErr(res, rec, 401, 'unauthorized_client', 'Invalid client or Invalid client credentials') };
    return { ok: true, client: c };
  }

  // ── T: token endpoint ────────────────────────────────────────────────────
  async function token(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, body: string): Promise<void> {
    if (config.sslRequired) return oauthErr(res, rec, 403, 'invalid_request', 'HTTPS required');
    if (!config.realmEnabled) return oauthErr(res, rec, 403, 'access_denied', 'Realm not enabled');
    const form = new URLSearchParams((req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') ? body : '');
    const grantType = form.get('grant_type');
    if (!grantType) return oauthErr(res, rec, 400, 'invalid_request', 'Missing form parameter: grant_type');
    for (const k of new Set(form.keys())) if (form.getAll(k).length > 1) return oauthErr(res, rec, 400, 'invalid_request', 'duplicated parameter');
    if (grantType !== 'client_credentials' && grantType !== 'password' && grantType !== 'authorization_code') return oauthErr(res, rec, 400, 'unsupported_grant_type', 'Unsupported grant_type');
    const auth = authenticateClient(req, form);
    if (!auth.ok) return auth.respond(res, rec);
    const c = auth.client;
    const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' };
    if (grantType === 'authorization_code') return codeGrant(res, rec, form, c, noStore);
    const requested = (form.get('scope') ?? '').split(' ').filter((x) => x !== '');
    const optional = requested.filter((x) => (c.optionalScopes ?? []).includes(x));
    const scope = [...new Set([...(requested.includes('openid') ? ['openid'] : []), 'profile', 'email', ...optional])].join(' ');

    if (grantType === 'client_credentials') {
      if (c.bearerOnly) return oauthErr(res, rec, 401, 'unauthorized_client', 'Bearer-only client not allowed to retrieve service account');
      if (c.publicClient) return oauthErr(res, rec, 401, 'unauthorized_client', 'Public client not allowed to retrieve service account');
      if (!c.serviceAccountsEnabled) return oauthErr(res, rec, 401, 'unauthorized_client', 'Client not enabled to retrieve service account');
      const sa = [...users.values()].find((u) => u.serviceAccountOf === c.clientId);
      if (!sa) return oauthErr(res, rec, 401, 'invalid_request', 'The associated service account for the client does not exist');
      if (!sa.enabled) return oauthErr(res, rec, 401, 'invalid_request', `User '${sa.username}' disabled`);
      const { token: at } = await signAccessToken(c, sa, scope, null);
      const extra = config.clientCredentialsRefreshToken
        ? { refresh_expires_in: 1800, refresh_token: `refresh-${randomUUID()}`, session_state: randomUUID() }
        : { refresh_expires_in: 0 };
      return json(res, rec, 200, { access_token: at, expires_in: config.accessTokenTtlSec, ...extra, token_type: 'Bearer', 'not-before-policy': 0, scope }, noStore);
    }

    // password (ResourceOwnerPasswordCredentialsGrantType + direct-grant authenticators)
    if (!c.directAccessGrantsEnabled) return oauthErr(res, rec, 400, 'unauthorized_client', 'Client not allowed for direct access grants');
    if (c.consentRequired) return oauthErr(res, rec, 400, 'invalid_client', 'Client requires user consent');
    const username = (form.get('username') ?? '').trim();
    if (username === '') return oauthErr(res, rec, 401, 'invalid_request', 'Missing parameter: username');
    const humans = [...users.values()].filter((u) => u.serviceAccountOf === undefined);
    let user: DoubleUser | undefined;
    if (username.includes('@')) {
      const byEmail = humans.filter((u) => u.email === username.toLowerCase());
      // findUserByNameOrEmail: duplicate emails are a ModelDuplicateException → invalid_request.
      if (byEmail.length > 1) return oauthErr(res, rec, 401, 'invalid_request', 'Invalid user credentials');
      user = byEmail[0];
    }
    user ??= humans.find((u) => u.username === username.toLowerCase());
    if (!user) return oauthErr(res, rec, 401, 'invalid_grant', 'Invalid user credentials');
    if (!user.enabled) return oauthErr(res, rec, 400, 'invalid_grant', 'Account disabled');
    if (user.locked || user.password === undefined || user.password !== form.get('password')) {
      return oauthErr(res, rec, 401, 'invalid_grant', 'Invalid user credentials');
    }
    if ((user.requiredActions ?? []).length > 0) return oauthErr(res, rec, 400, 'invalid_grant', 'Account is not fully set up');
    const sid = randomUUID();
    const { token: at } = await signAccessToken(c, user, scope, sid);
    const out: Record<string, unknown> = {
      access_token: at,
      expires_in: config.accessTokenTtlSec,
      refresh_expires_in: 1800,
      refresh_token: `refresh-${randomUUID()}`,
      token_type: 'Bearer',
    };
    if (scope.split(' ').includes('openid')) out.id_token = (await signAccessToken(c, user, scope, sid, 'id')).token;
    Object.assign(out, { 'not-before-policy': 0, session_state: sid, scope });
    return json(res, rec, 200, out, noStore);
  }

  // ── A: browser sign-in (authorization endpoint, login form, code grant) ──
  function redirectUriAllowed(c: DoubleClient, uri: string): boolean {
    return (c.redirectUris ?? []).some((p) => (p.endsWith('*') ? uri.startsWith(p.slice(0, -1)) : uri === p));
  }

  function errorPage(res: ServerResponse, rec: RequestRecord, status: number, text: string): void {
    send(res, rec, status, `<!DOCTYPE html><html><head><title>Sign in to ${config.realm}</title></head><body><div id="kc-error-message"><p class="instruction">${text}</p></div></body></html>`, { 'content-type': 'text/html;charset=utf-8' });
  }

  function backToClient(res: ServerResponse, rec: RequestRecord, redirectUri: string, params: Record<string, string | null>): void {
    const u = new URL(redirectUri);
    for (const [k, v] of Object.entries(params)) if (v !== null) u.searchParams.set(k, v);
    send(res, rec, 302, undefined, { location: u.href });
  }

  function loginForm(res: ServerResponse, rec: RequestRecord, sessionCode: string, clientId: string, error: string | null, username = ''): void {
    const action = `${realmUrl()}/login-actions/authenticate?session_code=${sessionCode}&execution=${randomUUID()}&client_id=${encodeURIComponent(clientId)}&tab_id=${randomUUID().slice(0, 11)}`;
    const esc = (x: string): string => x.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch] as string);
    send(
      res,
      rec,
      200,
      `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sign in to ${esc(config.realm)}</title></head><body>
<h1 id="kc-page-title">Sign in to your account</h1>
${error ? `<span id="input-error" aria-live="polite">${esc(error)}</span>` : ''}
<form id="kc-form-login" action="${esc(action)}" method="post">
<label for="username">Username or email</label><input id="username" name="username" value="${esc(username)}" type="text" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<input type="hidden" id="id-hidden-input" name="credentialId">
<input name="login" id="kc-login" type="submit" value="Sign In">
</form></body></html>`,
      { 'content-type': 'text/html;charset=utf-8', 'cache-control': 'no-store, must-revalidate, max-age=0' },
    );
  }

  function authorize(res: ServerResponse, rec: RequestRecord, q: URLSearchParams): void {
    const clientId = q.get('client_id');
    const c = clientId ? config.clients.find((x) => x.clientId === clientId) : undefined;
    if (!c) return errorPage(res, rec, 400, 'Client not found.');
    const redirectUri = q.get('redirect_uri');
    if (!redirectUri || !redirectUriAllowed(c, redirectUri)) return errorPage(res, rec, 400, 'Invalid parameter: redirect_uri');
    const state = q.get('state');
    const fail = (error: string, description: string): void => backToClient(res, rec, redirectUri, { error, error_description: description, state, iss: issuer() });
    if (q.get('response_type') !== 'code') return fail('unsupported_response_type', 'Client is not allowed to initiate browser login with given response_type. Implicit flow is disabled for the client.');
    if (c.standardFlowEnabled === false || c.bearerOnly) return fail('unauthorized_client', 'Client is not allowed to initiate browser login with given response_type. Standard flow is disabled for the client.');
    const challenge = q.get('code_challenge');
    const method = q.get('code_challenge_method') ?? (challenge ? 'plain' : null);
    if (method !== null && method !== 'S256' && method !== 'plain') return fail('invalid_request', 'Invalid parameter: code_challenge_method');
    if (challenge !== null && !/^[A-Za-z0-9._~-]{43,128}$/.test(challenge)) return fail('invalid_request', 'Invalid parameter: code_challenge');
    const sessionCode = randomUUID();
    loginSessions.set(sessionCode, { clientId: c.clientId, redirectUri, state, nonce: q.get('nonce'), scope: q.get('scope') ?? '', challenge, method: method as LoginSession['method'] });
    loginForm(res, rec, sessionCode, c.clientId, null);
  }

  function login(res: ServerResponse, rec: RequestRecord, q: URLSearchParams, body: string): void {
    const sessionCode = q.get('session_code') ?? '';
    const ls = loginSessions.get(sessionCode);
    if (!ls) return errorPage(res, rec, 400, 'Your login attempt timed out. Login will start from the beginning.');
    const form = new URLSearchParams(body);
    const username = (form.get('username') ?? '').trim().toLowerCase();
    const humans = [...users.values()].filter((u) => u.serviceAccountOf === undefined);
    const user = humans.find((u) => u.username === username || (username.includes('@') && u.email === username));
    if (user && !user.enabled) return loginForm(res, rec, sessionCode, ls.clientId, 'Account is disabled, contact your administrator.', username);
    if (!user || user.locked || user.password === undefined || user.password !== form.get('password')) {
      return loginForm(res, rec, sessionCode, ls.clientId, 'Invalid username or password.', username);
    }
    loginSessions.delete(sessionCode);
    const sid = randomUUID();
    const code = `${randomUUID()}.${sid}.${randomUUID()}`;
    codes.set(code, { ...ls, userId: user.id, sid, issuedAt: nowSec() });
    backToClient(res, rec, ls.redirectUri, { state: ls.state, session_state: sid, iss: issuer(), code });
  }

  async function codeGrant(res: ServerResponse, rec: RequestRecord, form: URLSearchParams, c: DoubleClient, noStore: Record<string, string>): Promise<void> {
    const code = form.get('code');
    if (!code) return oauthErr(res, rec, 400, 'invalid_request', 'Missing parameter: code');
    const entry = codes.get(code);
    codes.delete(code); // single use, even when the request fails
    if (!entry || nowSec() - entry.issuedAt > 60) return oauthErr(res, rec, 400, 'invalid_grant', 'Code not valid');
    if (entry.clientId !== c.clientId) return oauthErr(res, rec, 400, 'invalid_grant', 'Auth error');
    if (form.get('redirect_uri') !== entry.redirectUri) return oauthErr(res, rec, 400, 'invalid_grant', 'Incorrect redirect_uri');
    if (entry.challenge !== null) {
      const verifier = form.get('code_verifier');
      if (!verifier) return oauthErr(res, rec, 400, 'invalid_grant', 'PKCE code verifier not specified');
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) return oauthErr(res, rec, 400, 'invalid_grant', 'PKCE verification failed: Invalid code verifier');
      const computed = entry.method === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
      if (computed !== entry.challenge) return oauthErr(res, rec, 400, 'invalid_grant', 'PKCE verification failed: Code mismatch');
    }
    const user = users.get(entry.userId);
    if (!user || !user.enabled) return oauthErr(res, rec, 400, 'invalid_grant', 'User disabled');
    const requested = entry.scope.split(' ').filter((x) => x !== '');
    const scope = [...new Set([...(requested.includes('openid') ? ['openid'] : []), 'profile', 'email'])].join(' ');
    const { token: at } = await signAccessToken(c, user, scope, entry.sid);
    const out: Record<string, unknown> = { access_token: at, expires_in: config.accessTokenTtlSec, refresh_expires_in: 1800, refresh_token: `refresh-${randomUUID()}`, token_type: 'Bearer' };
    if (requested.includes('openid')) out.id_token = (await signAccessToken(c, user, scope, entry.sid, 'id', entry.nonce)).token;
    Object.assign(out, { 'not-before-policy': 0, session_state: entry.sid, scope });
    return json(res, rec, 200, out, noStore);
  }

  // ── I: introspection ─────────────────────────────────────────────────────
  async function introspect(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, body: string): Promise<void> {
    if (config.sslRequired) return oauthErr(res, rec, 403, 'invalid_request', 'HTTPS required');
    const form = new URLSearchParams(body);
    for (const k of new Set(form.keys())) if (form.getAll(k).length > 1) return oauthErr(res, rec, 400, 'invalid_request', 'duplicated parameter');
    const auth = authenticateClient(req, form);
    if (!auth.ok) return oauthErr(res, rec, 401, 'invalid_request', 'Authentication failed.');
    if (auth.client.publicClient) return oauthErr(res, rec, 403, 'invalid_request', 'Client not allowed.');
    const t = form.get('token');
    if (!t) return oauthErr(res, rec, 400, 'invalid_request', 'Token not provided.');
    const hint = form.get('token_type_hint');
    if (hint !== null && !['access_token', 'refresh_token', 'requesting_party_token'].includes(hint)) {
      return oauthErr(res, rec, 400, 'invalid_request', `Unsupported token type [${hint}].`);
    }
    const payload = await verify(t);
    const subject = payload ? users.get(String(payload.sub)) : undefined;
    if (!payload || !subject || !subject.enabled) return json(res, rec, 200, { active: false });
    return json(res, rec, 200, { ...payload, client_id: payload.azp, username: payload.preferred_username, token_type: 'Bearer', active: true });
  }

  // ── U: userinfo ──────────────────────────────────────────────────────────
  async function userinfo(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, body: string): Promise<void> {
    const challenge = (extra = ''): Record<string, string> => ({ 'www-authenticate': `Bearer realm="${config.realm}"${extra}` });
    const header = req.headers.authorization;
    let t: string | null = null;
    if (header && /^Bearer /i.test(header)) t = header.slice(7).trim();
    else if (req.method === 'POST') t = new URLSearchParams(body).get('access_token');
    if (!t) {
      if (config.legacyUserinfoErrors) return oauthErr(res, rec, 400, 'invalid_request', 'Token not provided');
      return send(res, rec, 401, undefined, challenge());
    }
    const payload = await verify(t);
    if (!payload) {
      if (config.legacyUserinfoErrors) return oauthErr(res, rec, 401, 'invalid_token', 'Token invalid');
      return send(res, rec, 401, undefined, challenge(', error="invalid_token", error_description="Token verification failed"'));
    }
    const scopes = String(payload.scope ?? '').split(' ');
    if (config.requireOpenidForUserinfo && !scopes.includes('openid')) {
      return send(res, rec, 403, undefined, challenge(', error="insufficient_scope", error_description="Missing openid scope"'));
    }
    const u = users.get(String(payload.sub));
    if (!u || !u.enabled) {
      return send(res, rec, 401, undefined, challenge(`, error="invalid_request", error_description="User session not found or doesn't have client attached on it"`));
    }
    const claims: Record<string, unknown> = { sub: u.id, email_verified: u.emailVerified, preferred_username: u.username };
    if (u.firstName || u.lastName) claims.name = [u.firstName, u.lastName].filter(Boolean).join(' ');
    if (u.firstName) claims.given_name = u.firstName;
    if (u.lastName) claims.family_name = u.lastName;
    if (u.email) claims.email = u.email;
    const visible = visibleAttributes(u);
    for (const a of config.userinfoClaimsFromAttributes) {
      const v = visible?.[a]?.[0];
      if (v !== undefined) claims[a] = v; // a single-valued User Attribute mapper emits a string
    }
    return json(res, rec, 200, claims);
  }

  // ── admin API ────────────────────────────────────────────────────────────
  function visibleAttributes(u: DoubleUser): Record<string, string[]> | undefined {
    if (!u.attributes) return undefined;
    const out: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(u.attributes)) {
      if (config.managedAttributes.includes(k) || config.unmanagedAttributePolicy !== 'DISABLED') out[k] = [...v];
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }

  function representation(u: DoubleUser, brief: boolean): Record<string, unknown> {
    const rep: Record<string, unknown> = { id: u.id, username: u.username };
    if (u.firstName !== undefined) rep.firstName = u.firstName;
    if (u.lastName !== undefined) rep.lastName = u.lastName;
    if (u.email !== undefined) rep.email = u.email;
    rep.emailVerified = u.emailVerified;
    rep.createdTimestamp = u.createdTimestamp;
    rep.enabled = u.enabled;
    if (!brief) {
      const attrs = visibleAttributes(u);
      if (attrs) rep.attributes = attrs;
      rep.totp = false;
      rep.disableableCredentialTypes = [];
      rep.requiredActions = [...(u.requiredActions ?? [])];
      rep.notBefore = 0;
      if (u.serviceAccountOf) rep.serviceAccountClientId = u.serviceAccountOf;
    }
    rep.access = { manageGroupMembership: true, view: true, mapRoles: true, impersonate: false, manage: true };
    return rep;
  }

  /** The admin caller's client, or a response already sent. */
  async function adminAuth(req: IncomingMessage, res: ServerResponse, rec: RequestRecord): Promise<DoubleClient | null> {
    const header = req.headers.authorization;
    const payload = header && /^Bearer /i.test(header) ? await verify(header.slice(7).trim()) : null;
    if (!payload) {
      json(res, rec, 401, { error: 'HTTP 401 Unauthorized' });
      return null;
    }
    const c = config.clients.find((x) => x.clientId === payload.azp);
    const sa = users.get(String(payload.sub));
    if (!c || !sa || sa.serviceAccountOf !== c.clientId || c.adminRoles.length === 0) {
      json(res, rec, 403, { error: config.legacy403Body ? 'HTTP 403 Forbidden' : 'unknown_error' });
      return null;
    }
    return c;
  }

  const forbidden = (res: ServerResponse, rec: RequestRecord): void => json(res, rec, 403, { error: config.legacy403Body ? 'HTTP 403 Forbidden' : 'unknown_error' });

  function matches(u: DoubleUser, q: URLSearchParams): boolean | 'excluded' {
    const exact = q.get('exact') === 'true';
    const field = (name: 'username' | 'email' | 'firstName' | 'lastName'): boolean => {
      const want = q.get(name);
      if (want === null) return true;
      const have = (u[name] ?? '').toLowerCase();
      return exact ? have === want.toLowerCase() : have.includes(want.toLowerCase());
    };
    const boolField = (name: 'enabled' | 'emailVerified'): boolean => {
      const want = q.get(name);
      return want === null || String(u[name]) === want;
    };
    if (!boolField('enabled') || !boolField('emailVerified')) return false;
    const search = q.get('search');
    if (search !== null) {
      if (u.serviceAccountOf) return false;
      const s = search.trim().toLowerCase();
      if (s.startsWith('id:')) return u.id === search.trim().slice(3);
      const fields = [u.username, u.email, u.firstName, u.lastName].map((x) => (x ?? '').toLowerCase());
      if (s === '*' || s === '') return true;
      if (/^".*"$/.test(s)) return fields.includes(s.slice(1, -1));
      if (s.startsWith('*') && s.endsWith('*')) return fields.some((f) => f.includes(s.slice(1, -1)));
      const prefix = s.endsWith('*') ? s.slice(0, -1) : s;
      return fields.some((f) => f.startsWith(prefix));
    }
    const qAttr = q.get('q');
    if (qAttr !== null) {
      for (const pair of qAttr.split(' ').filter((x) => x !== '')) {
        const i = pair.indexOf(':');
        const k = pair.slice(0, i);
        const v = pair.slice(i + 1);
        if (!(u.attributes?.[k] ?? []).includes(v)) return false;
      }
    }
    return field('username') && field('email') && field('firstName') && field('lastName');
  }

  function filtered(q: URLSearchParams, forCount: boolean): DoubleUser[] {
    const s = sorted();
    const searchId = q.get('search')?.trim();
    if (searchId?.toLowerCase().startsWith('id:')) {
      const u = users.get(searchId.slice(3));
      return u ? [u] : [];
    }
    const fieldFilters = ['username', 'email', 'firstName', 'lastName', 'q', 'emailVerified', 'idpAlias', 'idpUserId', 'exact'].some((k) => q.has(k));
    const unfiltered = !q.has('search') && !fieldFilters && !q.has('enabled');
    if (unfiltered) return forCount && config.countIncludesServiceAccounts ? s.all : s.humans;
    return s.all.filter((u) => matches(u, q) === true);
  }

  function intParam(q: URLSearchParams, name: string, dflt: number): number {
    const v = q.get(name);
    if (v === null || v === '') return dflt;
    const n = Number(v);
    return Number.isInteger(n) ? n : dflt;
  }

  async function listUsers(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, q: URLSearchParams): Promise<void> {
    const c = await adminAuth(req, res, rec);
    if (!c) return;
    if (!c.adminRoles.includes('view-users') && !c.adminRoles.includes('query-users')) return forbidden(res, rec);
    const first = Math.max(0, intParam(q, 'first', 0));
    const max = intParam(q, 'max', 100);
    const brief = q.get('briefRepresentation') === 'true';
    const page = filtered(q, false).slice(first, max < 0 ? undefined : first + max);
    // Fine-grained permissions: users the caller may not view vanish after paging.
    const canView = c.adminRoles.includes('view-users');
    const visible = page.filter((u) => canView && !hidden.has(u.id));
    json(res, rec, 200, visible.map((u) => representation(u, brief)));
  }

  async function countUsers(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, q: URLSearchParams): Promise<void> {
    const c = await adminAuth(req, res, rec);
    if (!c) return;
    if (!c.adminRoles.includes('view-users') && !c.adminRoles.includes('query-users')) return forbidden(res, rec);
    json(res, rec, 200, Math.max(0, filtered(q, true).length + countOffset));
  }

  async function oneUser(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, id: string): Promise<void> {
    const c = await adminAuth(req, res, rec);
    if (!c) return;
    // Without query rights a missing id is 403, "so nobody can phish ids".
    if (!c.adminRoles.includes('view-users')) return forbidden(res, rec);
    const u = users.get(id);
    if (!u) return json(res, rec, 404, { error: 'User not found' });
    const rep = representation(u, false);
    if (u.locked) rep.enabled = false;
    json(res, rec, 200, rep);
  }

  function discovery(res: ServerResponse, rec: RequestRecord): void {
    const r = realmUrl();
    const oidc = `${r}/protocol/openid-connect`;
    json(res, rec, 200, {
      issuer: issuer(),
      authorization_endpoint: `${config.issuerOverride ?? r}/protocol/openid-connect/auth`,
      token_endpoint: `${oidc}/token`,
      introspection_endpoint: `${oidc}/token/introspect`,
      userinfo_endpoint: `${oidc}/userinfo`,
      end_session_endpoint: `${oidc}/logout`,
      jwks_uri: `${oidc}/certs`,
      revocation_endpoint: `${oidc}/revoke`,
      grant_types_supported: ['authorization_code', 'client_credentials', 'implicit', 'password', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:openid:params:grant-type:ciba'],
      response_types_supported: ['code', 'none', 'id_token', 'token', 'id_token token', 'code id_token', 'code token', 'code id_token token'],
      subject_types_supported: ['public', 'pairwise'],
      id_token_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'HS256'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'tls_client_auth', 'client_secret_jwt'],
      introspection_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'tls_client_auth', 'client_secret_jwt'],
      scopes_supported: ['openid', 'profile', 'email', 'roles', 'web-origins', 'offline_access', 'mailcow_template'],
      claims_parameter_supported: true,
      code_challenge_methods_supported: ['plain', 'S256'],
      authorization_response_iss_parameter_supported: true,
    });
  }

  // ── routing ──────────────────────────────────────────────────────────────
  function route(method: string, path: string): { route: Route; id?: string } | { error: 'realm' | 'admin-realm' | 'unknown' | 'method' | 'other-realm-discovery' } {
    if (!path.startsWith(`${config.pathPrefix}/`)) return { error: 'unknown' };
    const p = path.slice(config.pathPrefix.length);
    let m = /^\/realms\/([^/]+)\/(.*)$/.exec(p);
    if (m) {
      const realmName = decodeURIComponent(m[1] as string);
      if (realmName !== config.realm) {
        if (config.otherRealms.includes(realmName) && m[2] === '.well-known/openid-configuration') return { error: 'other-realm-discovery' };
        return { error: 'realm' };
      }
      const rest = m[2] as string;
      const table: Record<string, [Route, string[]]> = {
        '.well-known/openid-configuration': ['discovery', ['GET']],
        'protocol/openid-connect/certs': ['certs', ['GET']],
        'protocol/openid-connect/token': ['token', ['POST']],
        'protocol/openid-connect/token/introspect': ['introspect', ['POST']],
        'protocol/openid-connect/userinfo': ['userinfo', ['GET', 'POST']],
        'protocol/openid-connect/auth': ['authorize', ['GET']],
        'login-actions/authenticate': ['login', ['POST']],
      };
      const hit = table[rest];
      if (!hit) return { error: 'unknown' };
      return hit[1].includes(method) ? { route: hit[0] } : { error: 'method' };
    }
    m = /^\/admin\/realms\/([^/]+)\/users(\/.*)?$/.exec(p);
    if (m) {
      if (decodeURIComponent(m[1] as string) !== config.realm) return { error: 'admin-realm' };
      if (method !== 'GET') return { error: 'method' };
      const sub = m[2] ?? '';
      if (sub === '' || sub === '/') return { route: 'users' };
      if (sub === '/count') return { route: 'count' };
      const id = /^\/([^/]+)$/.exec(sub)?.[1];
      return id ? { route: 'user', id: decodeURIComponent(id) } : { error: 'unknown' };
    }
    return { error: 'unknown' };
  }

  function takeFault(r: Route): Fault | null {
    const f = faults.find((x) => (x.route === r || x.route === '*') && x.remaining > 0);
    if (!f) return null;
    f.remaining--;
    return f.fault;
  }

  /** Applies a fault; true when the response is taken care of. */
  async function applyFault(f: Fault, req: IncomingMessage, res: ServerResponse, rec: RequestRecord): Promise<boolean> {
    switch (f.kind) {
      case 'delay':
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            timers.delete(t);
            resolve();
          }, f.ms);
          timers.add(t);
        });
        return res.destroyed;
      case 'hang':
        return true; // never answer; close() drops the socket
      case 'error500':
        json(res, rec, 500, SERVER_ERROR);
        return true;
      case 'proxy':
        send(res, rec, f.status, PROXY_HTML(f.status), { 'content-type': 'text/html' });
        return true;
      case 'reset':
        rec.status = null;
        req.socket.destroy();
        return true;
      case 'html200':
        send(res, rec, 200, '<!DOCTYPE html><html><head><title>Sign in</title></head><body>Login page</body></html>', { 'content-type': 'text/html;charset=UTF-8' });
        return true;
      case 'truncated': {
        const body = rec.route === 'token' ? '{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCIg' : '[{"id":"8b1c2e1a-5d0e-4a3c","username":"ali';
        send(res, rec, 200, body, { 'content-type': 'application/json' });
        return true;
      }
      case 'stall':
        rec.status = 200;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '4096' });
        res.write(rec.route === 'token' ? '{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCIg' : '[{"id":"8b1c2e1a-5d0e-4a3c","username":"ali');
        return true; // never ended; close() drops the socket
      case 'notArray':
        json(res, rec, 200, { users: [] });
        return true;
      case 'nonInteger':
        send(res, rec, 200, '12.5', { 'content-type': 'application/json' });
        return true;
      case 'status':
        if (f.body === undefined) send(res, rec, f.status, undefined);
        else if (typeof f.body === 'string') send(res, rec, f.status, f.body, { 'content-type': f.contentType ?? 'text/plain' });
        else json(res, rec, f.status, f.body);
        return true;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://double');
    const method = req.method ?? 'GET';
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const r = route(method, u.pathname);
    const rec: RequestRecord = { route: 'route' in r ? r.route : 'unknown', method, path: u.pathname, query: u.search, status: null };
    requests.push(rec);
    if (!('route' in r)) {
      if (r.error === 'realm') return json(res, rec, 404, { error: 'Realm does not exist' });
      if (r.error === 'other-realm-discovery') {
        const other = u.pathname.split('/realms/')[1]?.split('/')[0] ?? '';
        return json(res, rec, 200, { issuer: `${base}${config.pathPrefix}/realms/${other}`, token_endpoint: `${base}${config.pathPrefix}/realms/${other}/protocol/openid-connect/token` });
      }
      if (r.error === 'admin-realm') return json(res, rec, 404, { error: 'Realm not found.' });
      if (r.error === 'method') return json(res, rec, 405, { error: 'HTTP 405 Method Not Allowed' });
      if (!u.pathname.startsWith(`${config.pathPrefix}/`)) return send(res, rec, 404, '<html><body><h1>Resource not found</h1></body></html>', { 'content-type': 'text/html' });
      return json(res, rec, 404, { error: 'Unable to find matching target resource method', error_description: 'For more on this error consult the server log.' });
    }
    const fault = takeFault(r.route);
    if (fault && (await applyFault(fault, req, res, rec))) return;
    switch (r.route) {
      case 'discovery':
        discovery(res, rec);
        break;
      case 'certs':
        json(res, rec, 200, { keys: [key.jwk, ...keptKeys.map((k) => k.jwk)] });
        break;
      case 'token':
        await token(req, res, rec, body);
        break;
      case 'introspect':
        await introspect(req, res, rec, body);
        break;
      case 'userinfo':
        await userinfo(req, res, rec, body);
        break;
      case 'users':
        await listUsers(req, res, rec, u.searchParams);
        break;
      case 'count':
        await countUsers(req, res, rec, u.searchParams);
        break;
      case 'user':
        await oneUser(req, res, rec, r.id ?? '');
        break;
      case 'authorize':
        authorize(res, rec, u.searchParams);
        break;
      case 'login':
        login(res, rec, u.searchParams, body);
        break;
    }
    for (const fn of hooks.get(r.route) ?? []) fn(rec);
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...SERVER_ERROR, double: String(err) }));
      }
    });
  };
  const server: Server = config.tls ? https.createServer({ key: config.tls.key, cert: config.tls.cert }, listener) : http.createServer(listener);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `${config.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    get serverUrl() {
      return `${base}${config.pathPrefix}`;
    },
    realm: config.realm,
    get issuer() {
      return issuer();
    },
    config,
    requests,
    countRequests: (r) => requests.filter((x) => x.route === r).length,
    inject(r, fault, times = Number.POSITIVE_INFINITY) {
      faults.push({ route: r, fault, remaining: times });
    },
    clearFaults() {
      faults.length = 0;
    },
    after(r, fn) {
      hooks.set(r, [...(hooks.get(r) ?? []), fn]);
    },
    addUser,
    updateUser(idOrUsername, patch) {
      const u = mustUser(idOrUsername);
      Object.assign(u, patch);
      version++;
      return u;
    },
    deleteUser(idOrUsername) {
      users.delete(mustUser(idOrUsername).id);
      version++;
    },
    getUser: findUser,
    users: () => [...users.values()],
    disableUser(idOrUsername) {
      mustUser(idOrUsername).enabled = false;
      version++;
    },
    addRequiredAction(idOrUsername, action) {
      const u = mustUser(idOrUsername);
      u.requiredActions = [...(u.requiredActions ?? []), action];
    },
    hideFromListing(ids) {
      for (const id of ids) hidden.add(id);
    },
    setCountOffset(n) {
      countOffset = n;
    },
    client,
    rotateClientSecret(clientId, secret = `rotated-${randomUUID()}`) {
      client(clientId).secret = secret;
      return secret;
    },
    removeRole(clientId, role) {
      const c = client(clientId);
      c.adminRoles = c.adminRoles.filter((r) => r !== role);
    },
    addRole(clientId, role) {
      const c = client(clientId);
      if (!c.adminRoles.includes(role)) c.adminRoles.push(role);
    },
    expireAllTokens() {
      for (const jti of issued.keys()) deadTokens.add(jti);
    },
    revokeToken(jti) {
      deadTokens.add(jti);
    },
    async rotateSigningKey(o = {}) {
      keptKeys = o.keepOld ? [key, ...keptKeys] : [];
      key = await newKey();
    },
    issued: () => [...issued.values()],
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A self-signed certificate for 127.0.0.1 via openssl(1); null when openssl is missing. */
export async function selfSignedCert(): Promise<{ key: string; cert: string } | null> {
  const { execFile } = await import('node:child_process');
  const { mkdtemp, readFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'kc-double-tls-'));
  try {
    await new Promise<void>((resolve, reject) =>
      execFile(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    return { key: await readFile(join(dir, 'key.pem'), 'utf8'), cert: await readFile(join(dir, 'cert.pem'), 'utf8') };
  } catch {
    return null;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
