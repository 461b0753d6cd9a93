/**
 * YAML + environment → one frozen, typed Config. The only reader of process.env
 * (callers pass it in) and of secret files.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import YAML from 'yaml';
import { MailauthError } from '../errors.js';
import { rootSpec } from './schema.js';
import type { AccessFlag } from './schema.js';

export { ACCESS_FLAGS, DEFAULT_SERVICES, DEFAULT_IDP_HASH_SCHEMES } from './schema.js';
export type { AccessFlag } from './schema.js';
export { parseDuration, formatDuration } from './duration.js';

export const DEFAULT_CONFIG_PATH = '/etc/mailauth/config.yaml';

export interface TcpListen { kind: 'tcp'; host: string; port: number; loopback: boolean }
export interface SocketListen { kind: 'unix'; path: string; mode: number }

export interface DatabaseConfig {
  url: string; // password removed
  host: string;
  port: number;
  socketPath: string | null;
  user: string;
  password: string | null;
  database: string;
  poolSize: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
}

export interface Config {
  file: string | null;
  listen: {
    listeners: (TcpListen | SocketListen)[];
    token: string | null;
    bodyLimit: number;
    requestTimeoutMs: number;
    headersTimeoutMs: number;
    keepAliveTimeoutMs: number;
    shutdownGraceMs: number;
    /** Issue 16: 0 = derived from the file-descriptor limit (server/connection-limits.ts). */
    maxConnections: number;
    maxConnectionsPerPeer: number;
    untrustedIdleTimeoutMs: number;
  };
  database: DatabaseConfig;
  cache: {
    verifyEntries: number;
    accountEntries: number;
    accountTtlMs: number;
    idpEntries: number;
    idpTtlMs: number;
    idpNegativeTtlMs: number;
    idpStaleForMs: number;
    maxBytes: number;
  };
  auth: {
    defaultScheme: string;
    bcryptCost: number;
    deadlineMs: number;
    services: Readonly<Record<string, AccessFlag>>;
    idpHashSchemes: readonly string[];
    oidcPasswordGrant: boolean;
    maxPasswordBytes: number;
    /** Slow hash verifications at once; 0 = one per CPU (resolved by the entry point). */
    hashConcurrency: number;
    /** App passwords verified per login at most (each may be a slow hash). */
    maxAppPasswords: number;
    /** Checks waiting for a hash slot at most; 0 = hashConcurrency × 64 (issue 16). */
    hashQueue: number;
    /** Work ceilings for stored hashes (issue 16); the shape of passwords' WorkCaps. */
    hashLimits: {
      bcryptCost: number;
      shaCryptRounds: number;
      pbkdf2Iterations: number;
      argon2MemoryKib: number;
      argon2TimeCost: number;
      argon2Parallelism: number;
    };
    bcryptLongPassword: 'refuse' | 'warn';
  };
  loginLog: { enabled: boolean; queueSize: number; batchSize: number; flushIntervalMs: number };
  idp: { timeoutMs: number; retries: number; retryBackoffMs: number; cooldownMs: number };
  sync: { deprovision: 'off' | 'deactivate'; maxDeactivateRatio: number; pageSize: number };
  oauth: OAuthConfig;
  /** Issue 21: circuit breakers, readiness and outage logging (src/breaker/). */
  outage: { failures: number; backoffMs: number; maxBackoffMs: number; jitter: number; readyTimeoutMs: number; logSummaryMs: number };
  metrics: { enabled: boolean; requireToken: boolean };
  /** Issue 17: brute-force throttling (src/policy/). */
  throttle: ThrottleConfig;
  /** Issue 17: the Dovecot hosts mailauth tells about changes (src/dovecot/). */
  dovecot: DovecotNotifyConfig;
  log: { level: string; format: 'auto' | 'json' | 'pretty' };
  /** The self-service portal (issue 19); null when portal.listen is null (the default). */
  portal: PortalConfig | null;
  /**
   * Where each secret came from: the configured file path (null when unset), or
   * 'env' when an environment variable replaced it. `mailauth doctor` checks
   * these files' permissions.
   */
  secretSources: { 'listen.token_file': SecretSource; 'database.password_file': SecretSource; 'oauth.introspection_secret_file'?: SecretSource };
}

/** Issue 20: which bearer tokens an XOAUTH2/OAUTHBEARER login accepts (docs/oauth.md). */
export interface OAuthConfig {
  enabled: boolean;
  issuer: string | null;
  jwksUrl: string | null;
  introspectionUrl: string | null;
  introspection: 'off' | 'opaque' | 'always';
  introspectionClientId: string | null;
  introspectionSecret: string | null;
  audiences: readonly string[];
  clients: readonly string[];
  requiredScopes: readonly string[];
  algorithms: readonly string[];
  clockToleranceMs: number;
  emailClaim: string;
  requireEmailVerified: boolean;
  jwksCooldownMs: number;
  jwksMaxAgeMs: number;
  maxTokenBytes: number;
}

export interface ThrottleScopeConfig {
  /** Distinct failures that cost nothing. */
  free: number;
  /** Distinct failures (after decay) that start a block. */
  blockAfter: number;
  blockForMs: number;
  /** One counted failure is forgotten per this many milliseconds (a leaky bucket). */
  forgetOneEveryMs: number;
}

export interface ThrottleConfig {
  enabled: boolean;
  /** CIDRs exempt from the per-address counter (normalised, e.g. "127.0.0.0/8"). */
  trustedNetworks: readonly string[];
  ipv6Prefix: number;
  maxEntries: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  familiarForMs: number;
  ip: ThrottleScopeConfig;
  user: ThrottleScopeConfig;
  ipUser: ThrottleScopeConfig;
}

export type DoveadmHost =
  | { kind: 'command'; name: string; command: string; config: string | null }
  /** doveadm's HTTP API; X-Dovecot-API with apiKey, else Basic doveadm:password. */
  | { kind: 'http'; name: string; url: string; apiKey: string | null; password: string | null }
  /** doveadm's own protocol (the doveadm server's TCP listener), authenticated with doveadm_password. */
  | { kind: 'tcp'; name: string; host: string; port: number; password: string };

export interface DovecotNotifyConfig {
  notify: boolean;
  hosts: readonly DoveadmHost[];
  timeoutMs: number;
  retryForMs: number;
}

/** Issue 19: the self-service portal's settings, checked. */
export interface PortalConfig {
  listen: TcpListen;
  /** The public URL without a trailing slash (what the browser sees, e.g. through nginx). */
  publicUrl: string;
  /** The public URL's path without a trailing slash ('' at the root): every route lives below it. */
  basePath: string;
  /** Cookies get Secure when the public URL is https. */
  secure: boolean;
  /** Peers whose X-Forwarded-For / -Proto are believed (exact addresses). */
  trustedProxies: readonly string[];
  sessionTtlMs: number;
  reauthAfterMs: number;
  emailClaim: string;
  /** Refuse an IdP sign-in whose email_verified claim is not true. */
  requireVerifiedEmail: boolean;
  passwordSignIn: boolean;
  signInFailures: number;
  signInWindowMs: number;
  recentLogins: number;
  /** The host mail clients connect to, shown next to a new app password (default: the public URL's host). */
  mailHost: string;
  passwordPolicy: { minLength: number; lowerupper: boolean; numbers: boolean; special: boolean };
}

export type SecretSource = { kind: 'file'; path: string } | { kind: 'env'; name: string } | { kind: 'inline' } | null;

export type Env = Readonly<Record<string, string | undefined>>;

export interface LoadOptions {
  /** Explicit --config path; else MAILAUTH_CONFIG; else /etc/mailauth/config.yaml. */
  path?: string | undefined;
  env: Env;
  readFile?: (path: string) => string;
}

function configError(problems: string[], file: string | null): MailauthError {
  const where = file ? ` in ${file}` : '';
  return new MailauthError('ERR_CONFIG_INVALID', `invalid configuration${where}:\n  - ${problems.join('\n  - ')}`, {
    details: { problems, file },
  });
}

/** Resolve the config path the way every command does. */
export function configPath(explicit: string | undefined, env: Env): { path: string; explicit: boolean } {
  if (explicit) return { path: explicit, explicit: true };
  if (env.MAILAUTH_CONFIG) return { path: env.MAILAUTH_CONFIG, explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
}

export function loadConfig(opts: LoadOptions): Config {
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const { path } = configPath(opts.path, opts.env);
  let text: string;
  try {
    text = read(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint =
      code === 'ENOENT'
        ? `config file ${path} does not exist: copy config.example.yaml there, or pass --config FILE / set MAILAUTH_CONFIG`
        : `cannot read config file ${path}: ${code ?? String(err)}`;
    throw configError([hint], path);
  }
  let doc: unknown;
  try {
    const parsed = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
    if (parsed.errors.length > 0) throw configError(parsed.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`), path);
    doc = parsed.toJS();
  } catch (err) {
    if (err instanceof MailauthError) throw err;
    throw configError([`YAML: ${(err as Error).message}`], path);
  }
  return buildConfig(doc ?? {}, { env: opts.env, file: path, readFile: read });
}

/** Validate an already-parsed tree (tests, the demo). */
export function buildConfig(
  raw: unknown,
  opts: { env: Env; file?: string | null; readFile?: (path: string) => string },
): Config {
  const file = opts.file ?? null;
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const problems: string[] = [];
  const v = rootSpec(raw, '', problems);
  if (!v || problems.length > 0) throw configError(problems, file);

  const readSecret = (key: string, p: string | null): string | null => {
    if (p === null) return null;
    try {
      const s = read(p).replace(/\r?\n$/, '');
      if (s === '') problems.push(`${key}: file ${p} is empty`);
      return s;
    } catch (err) {
      problems.push(`${key}: cannot read ${p} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return null;
    }
  };

  // listen
  const listeners: (TcpListen | SocketListen)[] = [];
  const mode = parseInt(v.listen.socket_mode, 8);
  const addr = parseListen(v.listen.address, mode);
  if (typeof addr === 'string') problems.push(`listen.address: ${addr}, got ${JSON.stringify(v.listen.address)}`);
  else listeners.push(addr);
  if (v.listen.socket) {
    if (!v.listen.socket.startsWith('/')) problems.push(`listen.socket: must be an absolute path, got ${JSON.stringify(v.listen.socket)}`);
    else listeners.push({ kind: 'unix', path: v.listen.socket, mode });
  }
  const token = readToken(opts.env.MAILAUTH_TOKEN ?? readSecret('listen.token_file', v.listen.token_file), opts.env.MAILAUTH_TOKEN !== undefined ? 'MAILAUTH_TOKEN' : 'listen.token_file', problems);
  if (token !== null && token.length < 16) problems.push('listen.token_file: the token must be at least 16 characters long');
  const exposed = listeners.some((l) => l.kind === 'tcp' && !l.loopback);
  if (exposed && token === null) {
    problems.push('listen.token_file: required when listen.address is not a loopback address (or set MAILAUTH_TOKEN)');
  }

  // database
  const url = opts.env.MAILAUTH_DATABASE_URL ?? v.database.url;
  const db = parseDatabaseUrl(url);
  let database: DatabaseConfig | null = null;
  if (typeof db === 'string') problems.push(`database.url: ${db}`);
  else {
    const password = opts.env.MAILAUTH_DATABASE_PASSWORD ?? readSecret('database.password_file', v.database.password_file) ?? db.password;
    database = {
      ...db,
      password,
      poolSize: v.database.pool_size,
      connectTimeoutMs: v.database.connect_timeout,
      queryTimeoutMs: v.database.query_timeout,
    };
  }
  if (v.database.query_timeout >= v.auth.deadline) {
    problems.push(`database.query_timeout: must be shorter than auth.deadline (${v.auth.deadline}ms) so a slow query ends before the request does`);
  }

  // oauth: a token any client of the IdP got would otherwise open every mailbox its email names.
  const introspectionSecret = opts.env.MAILAUTH_OAUTH_INTROSPECTION_SECRET ?? readSecret('oauth.introspection_secret_file', v.oauth.introspection_secret_file);
  if (v.oauth.enabled && v.oauth.audiences.length === 0 && v.oauth.clients.length === 0) {
    problems.push('oauth.audiences / oauth.clients: name at least one accepted audience or client (azp) when oauth.enabled is true');
  }
  if (v.oauth.introspection_client_id !== null && introspectionSecret === null) {
    problems.push('oauth.introspection_secret_file: required with oauth.introspection_client_id (or set MAILAUTH_OAUTH_INTROSPECTION_SECRET)');
  }
  // throttle (issue 17)
  const trustedNetworks: string[] = [];
  v.throttle.trusted_networks.forEach((text, i) => {
    const n = parseCidr(text);
    if (typeof n === 'string') problems.push(`throttle.trusted_networks[${i}]: ${n}, got ${JSON.stringify(text)}`);
    else trustedNetworks.push(`${n.address}/${n.prefix}`);
  });
  const scope = (name: string, sc: typeof v.throttle.ip): ThrottleScopeConfig => {
    if (sc.block_after <= sc.free) problems.push(`throttle.${name}.block_after: must be larger than throttle.${name}.free (${sc.free}), got ${sc.block_after}`);
    return { free: sc.free, blockAfter: sc.block_after, blockForMs: sc.block_for, forgetOneEveryMs: sc.forget_one_every };
  };
  const throttle: ThrottleConfig = {
    enabled: v.throttle.enabled,
    trustedNetworks,
    ipv6Prefix: v.throttle.ipv6_prefix,
    maxEntries: v.throttle.max_entries,
    backoffBaseMs: v.throttle.backoff_base,
    backoffMaxMs: v.throttle.backoff_max,
    familiarForMs: v.throttle.familiar_for,
    ip: scope('ip', v.throttle.ip),
    user: scope('user', v.throttle.user),
    ipUser: scope('ip_user', v.throttle.ip_user),
  };
  if (v.throttle.backoff_max < v.throttle.backoff_base) problems.push('throttle.backoff_max: must not be shorter than throttle.backoff_base');

  // dovecot (issue 17)
  const doveadmHosts: DoveadmHost[] = [];
  const hostNames = new Set<string>();
  v.dovecot.hosts.forEach((h, i) => {
    const where = `dovecot.hosts[${i}]`;
    if ((h.doveadm === null) === (h.url === null)) {
      problems.push(`${where}: give exactly one of doveadm (the local command) or url (doveadm's HTTP API, or tcp://HOST:PORT of doveadm's protocol)`);
      return;
    }
    let host: DoveadmHost | null = null;
    if (h.url !== null) {
      if (h.config !== null) problems.push(`${where}.config: only for the local doveadm command`);
      const password = readSecret(`${where}.password_file`, h.password_file);
      let u: URL;
      try {
        u = new URL(h.url);
      } catch {
        problems.push(`${where}.url: not a valid URL: ${JSON.stringify(h.url)}`);
        return;
      }
      if (u.protocol === 'tcp:') {
        if (h.api_key_file !== null) problems.push(`${where}.api_key_file: only with an http(s):// url (doveadm's protocol takes doveadm_password: password_file)`);
        const port = Number(u.port);
        if (u.hostname === '' || !Number.isInteger(port) || port < 1 || u.pathname !== '' || u.search !== '') problems.push(`${where}.url: tcp://HOST:PORT of the doveadm server's inet_listener, got ${JSON.stringify(h.url)}`);
        else if (password === null && h.password_file === null) problems.push(`${where}.password_file: required with a tcp:// url (Dovecot's doveadm_password)`);
        else if (password !== null) host = { kind: 'tcp', name: h.name ?? u.host, host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, password };
      } else {
        const apiKey = opts.env.MAILAUTH_DOVEADM_API_KEY ?? readSecret(`${where}.api_key_file`, h.api_key_file);
        if (apiKey === null && password === null) {
          if (h.api_key_file === null && h.password_file === null) problems.push(`${where}.api_key_file: required with url (Dovecot's doveadm_api_key), or password_file (doveadm_password)`);
        } else host = { kind: 'http', name: h.name ?? u.host, url: h.url, apiKey, password };
      }
    } else {
      if (h.api_key_file !== null) problems.push(`${where}.api_key_file: only with url`);
      if (h.password_file !== null) problems.push(`${where}.password_file: only with url`);
      host = { kind: 'command', name: h.name ?? (h.config ? `${h.doveadm} -c ${h.config}` : 'local'), command: h.doveadm as string, config: h.config };
    }
    if (host === null) return;
    if (hostNames.has(host.name)) problems.push(`${where}.name: ${JSON.stringify(host.name)} is used twice; give each host its own name`);
    hostNames.add(host.name);
    doveadmHosts.push(host);
  });

  const level = opts.env.MAILAUTH_LOG_LEVEL ?? v.log.level;
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) {
    problems.push(`MAILAUTH_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got ${JSON.stringify(level)}`);
  }
  const portal = buildPortal(v.portal, listeners, problems);
  if (problems.length > 0 || database === null) throw configError(problems, file);

  const config: Config = {
    file,
    listen: {
      listeners,
      token,
      bodyLimit: v.listen.body_limit,
      requestTimeoutMs: v.listen.request_timeout,
      headersTimeoutMs: v.listen.headers_timeout,
      keepAliveTimeoutMs: v.listen.keep_alive_timeout,
      shutdownGraceMs: v.listen.shutdown_grace,
      maxConnections: v.listen.max_connections,
      maxConnectionsPerPeer: v.listen.max_connections_per_peer,
      untrustedIdleTimeoutMs: v.listen.untrusted_idle_timeout,
    },
    database,
    cache: {
      verifyEntries: v.cache.verify_entries,
      accountEntries: v.cache.account_entries,
      accountTtlMs: v.cache.account_ttl,
      idpEntries: v.cache.idp_entries,
      idpTtlMs: v.cache.idp_ttl,
      idpNegativeTtlMs: v.cache.idp_negative_ttl,
      idpStaleForMs: v.cache.idp_stale_for,
      maxBytes: v.cache.max_bytes,
    },
    auth: {
      defaultScheme: v.auth.default_scheme,
      bcryptCost: v.auth.bcrypt_cost,
      deadlineMs: v.auth.deadline,
      services: v.auth.services,
      idpHashSchemes: v.auth.idp_hash_schemes.map((s) => s.toUpperCase()),
      oidcPasswordGrant: v.auth.oidc_password_grant,
      maxPasswordBytes: v.auth.max_password_bytes,
      maxAppPasswords: v.auth.max_app_passwords,
      hashConcurrency: v.auth.hash_concurrency,
      hashQueue: v.auth.hash_queue,
      hashLimits: {
        bcryptCost: v.auth.hash_limits.bcrypt_cost,
        shaCryptRounds: v.auth.hash_limits.sha_crypt_rounds,
        pbkdf2Iterations: v.auth.hash_limits.pbkdf2_iterations,
        argon2MemoryKib: v.auth.hash_limits.argon2_memory_kib,
        argon2TimeCost: v.auth.hash_limits.argon2_time_cost,
        argon2Parallelism: v.auth.hash_limits.argon2_parallelism,
      },
      bcryptLongPassword: v.auth.bcrypt_long_password,
    },
    loginLog: {
      enabled: v.login_log.enabled,
      queueSize: v.login_log.queue_size,
      batchSize: v.login_log.batch_size,
      flushIntervalMs: v.login_log.flush_interval,
    },
    idp: { timeoutMs: v.idp.timeout, retries: v.idp.retries, retryBackoffMs: v.idp.retry_backoff, cooldownMs: v.idp.cooldown },
    sync: { deprovision: v.sync.deprovision, maxDeactivateRatio: v.sync.max_deactivate_ratio, pageSize: v.sync.page_size },
    oauth: {
      enabled: v.oauth.enabled,
      issuer: v.oauth.issuer === null ? null : v.oauth.issuer.replace(/\/+$/, ''),
      jwksUrl: v.oauth.jwks_url,
      introspectionUrl: v.oauth.introspection_url,
      introspection: v.oauth.introspection,
      introspectionClientId: v.oauth.introspection_client_id,
      introspectionSecret,
      audiences: v.oauth.audiences,
      clients: v.oauth.clients,
      requiredScopes: v.oauth.required_scopes,
      algorithms: v.oauth.algorithms,
      clockToleranceMs: v.oauth.clock_tolerance,
      emailClaim: v.oauth.email_claim,
      requireEmailVerified: v.oauth.require_email_verified,
      jwksCooldownMs: v.oauth.jwks_cooldown,
      jwksMaxAgeMs: v.oauth.jwks_max_age,
      maxTokenBytes: v.oauth.max_token_bytes,
    },
    outage: {
      failures: v.outage.failures,
      backoffMs: v.outage.backoff,
      maxBackoffMs: Math.max(v.outage.max_backoff, v.outage.backoff),
      jitter: v.outage.jitter,
      readyTimeoutMs: v.outage.ready_timeout,
      logSummaryMs: v.outage.log_summary,
    },
    metrics: { enabled: v.metrics.enabled, requireToken: v.metrics.require_token },
    throttle,
    dovecot: { notify: v.dovecot.notify, hosts: doveadmHosts, timeoutMs: v.dovecot.timeout, retryForMs: v.dovecot.retry_for },
    log: { level, format: v.log.format },
    portal,
    secretSources: {
      'listen.token_file': opts.env.MAILAUTH_TOKEN !== undefined ? { kind: 'env', name: 'MAILAUTH_TOKEN' } : v.listen.token_file === null ? null : { kind: 'file', path: v.listen.token_file },
      'database.password_file':
        opts.env.MAILAUTH_DATABASE_PASSWORD !== undefined
          ? { kind: 'env', name: 'MAILAUTH_DATABASE_PASSWORD' }
          : v.database.password_file !== null
            ? { kind: 'file', path: v.database.password_file }
            : database.password === null
              ? null
              : opts.env.MAILAUTH_DATABASE_URL !== undefined
                ? { kind: 'env', name: 'MAILAUTH_DATABASE_URL' }
                : { kind: 'inline' },
      // Only when set, so doctor checks the file's permissions like the others.
      ...(opts.env.MAILAUTH_OAUTH_INTROSPECTION_SECRET !== undefined
        ? { 'oauth.introspection_secret_file': { kind: 'env', name: 'MAILAUTH_OAUTH_INTROSPECTION_SECRET' } as const }
        : v.oauth.introspection_secret_file !== null
          ? { 'oauth.introspection_secret_file': { kind: 'file', path: v.oauth.introspection_secret_file } as const }
          : {}),
    },
  };
  return deepFreeze(config);
}

type PortalSection = NonNullable<ReturnType<typeof rootSpec>>['portal'];

/** portal.*: off unless listen is set; then public_url is required and the listener must differ from Dovecot's. */
function buildPortal(p: PortalSection, daemon: readonly (TcpListen | SocketListen)[], problems: string[]): PortalConfig | null {
  const before = problems.length;
  for (const [i, a] of p.trusted_proxies.entries()) {
    if (isIP(a) === 0) problems.push(`portal.trusted_proxies[${i}]: must be an IP address, got ${JSON.stringify(a)}`);
  }
  if (p.listen === null) {
    if (p.public_url !== null) problems.push('portal.public_url: set, but portal.listen is null (the portal is off); set portal.listen too');
    return null;
  }
  const l = parseListen(p.listen, 0);
  let listen: TcpListen | null = null;
  if (typeof l === 'string') problems.push(`portal.listen: ${l}, got ${JSON.stringify(p.listen)}`);
  else if (l.kind !== 'tcp') problems.push('portal.listen: must be host:port (the portal is for browsers, through a reverse proxy)');
  else if (l.port !== 0 && daemon.some((d) => d.kind === 'tcp' && d.port === l.port && (d.host === l.host || d.host === '0.0.0.0' || l.host === '0.0.0.0' || d.host === '::' || l.host === '::'))) {
    problems.push(`portal.listen: must not be the Dovecot-facing listener (listen.address); pick another port than ${l.port}`);
  } else listen = l;
  let url: URL | null = null;
  if (p.public_url === null) problems.push('portal.public_url: required when portal.listen is set (the address browsers use, e.g. https://mail.example.org/account)');
  else {
    try {
      url = new URL(p.public_url);
      if (url.username || url.password) {
        problems.push('portal.public_url: must not contain a user name or password');
        url = null;
      }
    } catch {
      problems.push(`portal.public_url: not a valid URL, got ${JSON.stringify(p.public_url)}`);
    }
  }
  if (problems.length > before || listen === null || url === null) return null;
  const basePath = url.pathname.replace(/\/+$/, '');
  const pp = p.password_policy;
  return {
    listen,
    publicUrl: `${url.origin}${basePath}`,
    basePath,
    secure: url.protocol === 'https:',
    trustedProxies: p.trusted_proxies,
    sessionTtlMs: p.session_ttl,
    reauthAfterMs: p.reauth_after,
    emailClaim: p.email_claim,
    requireVerifiedEmail: p.require_verified_email,
    passwordSignIn: p.password_sign_in,
    signInFailures: p.sign_in_failures,
    signInWindowMs: p.sign_in_window,
    recentLogins: p.recent_logins,
    mailHost: p.mail_host ?? url.hostname,
    passwordPolicy: { minLength: pp.min_length, lowerupper: pp.lowerupper, numbers: pp.numbers, special: pp.special },
  };
}

/**
 * The shared token as every reader takes it (issue 16): surrounding whitespace is dropped, as
 * the Lua script (lua/mailauth.lua) does; whitespace or control characters inside are refused.
 * A token file with a trailing space used to pass `config check` while the daemon kept the
 * space and the Lua script did not: every login failed. `mailauth doctor` reads it through here.
 */
export function readToken(raw: string | null, key: string, problems: string[]): string | null {
  if (raw === null) return null;
  const token = raw.trim();
  if (token === '' && raw !== '') problems.push(`${key}: the token is only whitespace`);
  if (/[\s\u0000-\u001f\u007f]/.test(token)) problems.push(`${key}: the token holds whitespace or control characters inside; use one line such as the output of openssl rand -hex 32`);
  return token;
}

function parseListen(address: string, mode: number): TcpListen | SocketListen | string {
  if (address.startsWith('unix:')) {
    const path = address.slice(5);
    if (!path.startsWith('/')) return 'a unix socket needs an absolute path (unix:/run/mailauth/mailauth.sock)';
    return { kind: 'unix', path, mode };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address);
  if (!m) return 'must be host:port, [ipv6]:port or unix:/path';
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (port > 65535) return 'port must be between 0 and 65535';
  if (m[1] !== undefined && isIP(host) !== 6) return 'not a valid IPv6 address';
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  return { kind: 'tcp', host, port, loopback };
}

export function parseDatabaseUrl(text: string): Omit<DatabaseConfig, 'poolSize' | 'connectTimeoutMs' | 'queryTimeoutMs'> | string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'not a valid URL (expected mysql://USER@HOST:PORT/DATABASE)';
  }
  if (u.protocol !== 'mysql:') return `unsupported protocol ${JSON.stringify(u.protocol)} (expected mysql://)`;
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$-]{1,64}$/.test(database)) return 'the path must name the database (mysql://USER@HOST/DATABASE)';
  const user = decodeURIComponent(u.username);
  if (!user) return 'the URL must name a user (mysql://USER@HOST/DATABASE)';
  for (const key of u.searchParams.keys()) {
    if (key !== 'socket') return `unknown URL parameter ${JSON.stringify(key)} (known: socket)`;
  }
  const socketPath = u.searchParams.get('socket');
  const safe = new URL(u.href);
  safe.password = '';
  return {
    url: safe.href,
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    socketPath,
    user,
    password: u.password ? decodeURIComponent(u.password) : null,
    database,
  };
}

/** The effective config for `config check`: secrets masked. */
export function describeConfig(config: Config): unknown {
  return {
    ...config,
    listen: { ...config.listen, token: config.listen.token ? '********' : null },
    database: { ...config.database, password: config.database.password ? '********' : null },
    oauth: { ...config.oauth, introspectionSecret: config.oauth.introspectionSecret ? '********' : null },
    dovecot: { ...config.dovecot, hosts: config.dovecot.hosts.map((h) => (h.kind === 'http' ? { ...h, apiKey: h.apiKey === null ? null : '********', password: h.password === null ? null : '********' } : h.kind === 'tcp' ? { ...h, password: '********' } : h)) },
  };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128) → normalised parts, or the problem. */
export function parseCidr(text: string): { address: string; prefix: number; family: 4 | 6 } | string {
  const [address = '', prefixText, extra] = text.trim().split('/');
  if (extra !== undefined) return 'not an address or CIDR';
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) return `the prefix must be between 0 and ${max}`;
  return { address: address.toLowerCase(), prefix, family: family as 4 | 6 };
}
