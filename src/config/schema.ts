/** The config file's shape and every default, in one place. */
import { bool, duration, field, int, list, num, nullable, oneOf, record, section, str } from './fields.js';

export const ACCESS_FLAGS = ['imap', 'pop3', 'smtp', 'sieve', 'eas', 'dav'] as const;
export type AccessFlag = (typeof ACCESS_FLAGS)[number];

export const DEFAULT_SERVICES: Record<string, AccessFlag> = {
  imap: 'imap',
  pop3: 'pop3',
  smtp: 'smtp',
  submission: 'smtp',
  sieve: 'sieve',
  managesieve: 'sieve',
  eas: 'eas',
  dav: 'dav',
};

export const DEFAULT_IDP_HASH_SCHEMES = [
  'BLF-CRYPT',
  'ARGON2I',
  'ARGON2ID',
  'SHA512-CRYPT',
  'SHA256-CRYPT',
  'SSHA256',
  'SSHA512',
  'PBKDF2*',
];

const HASHABLE = ['BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'SSHA256', 'SSHA512'] as const;
const secretPath = nullable(str({ nonEmpty: true, what: 'a file path' }));

/** One counter scope of `throttle`: distinct failures free of delay, then back-off, then a block. */
function throttleScope(d: { free: number; blockAfter: number; blockFor: number; forget: number }) {
  return section({
    free: field(int(0, 1_000_000), d.free),
    block_after: field(int(1, 1_000_000), d.blockAfter),
    block_for: field(duration(0, 7 * 86_400_000), d.blockFor),
    forget_one_every: field(duration(1_000, 86_400_000), d.forget),
  });
}

export interface DoveadmHostYaml {
  name: string | null;
  /** The local doveadm binary (run as `doveadm [-c config] …`); null with url. */
  doveadm: string | null;
  config: string | null;
  /**
   * doveadm's HTTP API (http://10.0.0.5:8080/doveadm/v1) or doveadm's own TCP
   * protocol (tcp://10.0.0.5:2425), the one that works for auth cache flush on 2.4.
   */
  url: string | null;
  /** Dovecot's doveadm_api_key (HTTP API only). */
  api_key_file: string | null;
  /** Dovecot's doveadm_password (HTTP API as Basic doveadm:PASSWORD, or the TCP protocol). */
  password_file: string | null;
}

const doveadmHost = section({
  name: field(nullable(str({ nonEmpty: true })), null as string | null),
  doveadm: field(nullable(str({ nonEmpty: true, what: 'a command name or path' })), null as string | null),
  config: field(nullable(str({ nonEmpty: true, what: 'a file path' })), null as string | null),
  url: field(nullable(str({ pattern: /^(https?|tcp):\/\/[^\s]+$/, what: 'an http(s):// URL of doveadm\'s HTTP API or tcp://HOST:PORT of doveadm\'s protocol' })), null as string | null),
  api_key_file: field(nullable(str({ nonEmpty: true, what: 'a file path' })), null as string | null),
  password_file: field(nullable(str({ nonEmpty: true, what: 'a file path' })), null as string | null),
});

export const rootSpec = section({
  listen: field(
    section({
      address: field(str({ nonEmpty: true, what: 'host:port, [ipv6]:port or unix:/path' }), '127.0.0.1:9082' as string),
      socket: field(secretPath, null as string | null),
      socket_mode: field(str({ pattern: /^0?[0-7]{3}$/, what: 'an octal file mode such as "0660"' }), '0660'),
      token_file: field(secretPath, null as string | null),
      body_limit: field(int(256, 1_048_576), 16_384),
      request_timeout: field(duration(100, 600_000), 10_000),
      headers_timeout: field(duration(100, 600_000), 5_000),
      keep_alive_timeout: field(duration(100, 600_000), 65_000),
      shutdown_grace: field(duration(0, 60_000), 500),
      // Issue 16 (docs/security.md "Connections"): 0 = from the file-descriptor limit.
      max_connections: field(int(0, 1_000_000), 0),
      max_connections_per_peer: field(int(0, 1_000_000), 0),
      // A connection that never sent a valid token is closed after this long idle.
      untrusted_idle_timeout: field(duration(100, 600_000), 2_000),
    }),
    undefined as never,
  ),
  database: field(
    section({
      url: field(str({ pattern: /^mysql:\/\//, what: 'a mysql:// URL' }), 'mysql://mailauth@127.0.0.1:3306/mailcow'),
      password_file: field(secretPath, null as string | null),
      pool_size: field(int(1, 100), 10),
      connect_timeout: field(duration(100, 60_000), 3_000),
      query_timeout: field(duration(50, 60_000), 2_000),
    }),
    undefined as never,
  ),
  cache: field(
    section({
      verify_entries: field(int(0, 10_000_000), 100_000),
      account_entries: field(int(0, 10_000_000), 50_000),
      account_ttl: field(duration(0, 3_600_000), 10_000),
      idp_entries: field(int(0, 10_000_000), 50_000),
      idp_ttl: field(duration(0, 86_400_000), 60_000),
      idp_negative_ttl: field(duration(0, 3_600_000), 10_000),
      idp_stale_for: field(duration(0, 7 * 86_400_000), 3_600_000),
      max_bytes: field(int(1_048_576, 8 * 1024 ** 3), 128 * 1024 * 1024),
    }),
    undefined as never,
  ),
  auth: field(
    section({
      default_scheme: field(oneOf(HASHABLE), 'BLF-CRYPT' as (typeof HASHABLE)[number]),
      bcrypt_cost: field(int(4, 18), 10),
      deadline: field(duration(100, 60_000), 5_000),
      services: field(record(/^[a-z][a-z0-9_-]{0,31}$/, oneOf(ACCESS_FLAGS)), DEFAULT_SERVICES),
      idp_hash_schemes: field(list(str({ pattern: /^[A-Za-z0-9-]+\*?$/, what: 'a scheme name such as "SSHA256" or "PBKDF2*"' }), { min: 1 }), DEFAULT_IDP_HASH_SCHEMES),
      oidc_password_grant: field(bool, false),
      max_password_bytes: field(int(16, 4096), 1024),
      max_app_passwords: field(int(1, 1000), 16),
      // Slow hash verifications (bcrypt, argon2, PBKDF2) at once; 0 = one per CPU.
      hash_concurrency: field(int(0, 256), 0),
      // Issue 16 (docs/security.md "Hash work"): checks waiting for a slot at most; 0 = hash_concurrency × 64.
      hash_queue: field(int(0, 100_000), 0),
      // Issue 16: stored hashes asking for more work than this are not verified (internal_failure,
      // logged with the mailbox, listed by `mailauth doctor`). Defaults: the IdP caps of limits.ts.
      hash_limits: field(
        section({
          bcrypt_cost: field(int(4, 18), 13),
          sha_crypt_rounds: field(int(1000, 1_000_000), 100_000),
          pbkdf2_iterations: field(int(1, 10_000_000), 1_000_000),
          argon2_memory_kib: field(int(8, 1_048_576), 262_144),
          argon2_time_cost: field(int(1, 32), 4),
          argon2_parallelism: field(int(1, 16), 4),
        }),
        undefined as never,
      ),
      // Issue 16: `mailauth pw` / `mailbox passwd` with BLF-CRYPT and a password over bcrypt's 72 bytes.
      bcrypt_long_password: field(oneOf(['refuse', 'warn'] as const), 'refuse' as 'refuse' | 'warn'),
    }),
    undefined as never,
  ),
  login_log: field(
    section({
      enabled: field(bool, true),
      queue_size: field(int(1, 1_000_000), 10_000),
      batch_size: field(int(1, 10_000), 500),
      flush_interval: field(duration(10, 600_000), 1_000),
    }),
    undefined as never,
  ),
  idp: field(
    section({
      timeout: field(duration(100, 120_000), 5_000),
      retries: field(int(0, 10), 2),
      retry_backoff: field(duration(0, 60_000), 200),
      cooldown: field(duration(0, 600_000), 5_000),
    }),
    undefined as never,
  ),
  // Issue 20: OAuth 2.0 bearer tokens (XOAUTH2/OAUTHBEARER) from mail clients. The IdP itself is the one in
  // the database (mailauth idp); these keys say which of its tokens a mail login accepts (docs/oauth.md).
  oauth: field(
    section({
      enabled: field(bool, false),
      // null: the issuer of the IdP in the database (Keycloak: server_url/realms/realm; generic-oidc: issuer).
      issuer: field(nullable(str({ pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' })), null as string | null),
      // null: jwks_uri / introspection_endpoint from the issuer's discovery document.
      jwks_url: field(nullable(str({ pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' })), null as string | null),
      introspection_url: field(nullable(str({ pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' })), null as string | null),
      // off: JWTs only; opaque: JWTs locally, other tokens through RFC 7662 introspection; always: every token.
      introspection: field(oneOf(['off', 'opaque', 'always'] as const), 'opaque' as 'off' | 'opaque' | 'always'),
      // null: the IdP's client_id / client_secret from the database.
      introspection_client_id: field(nullable(str({ nonEmpty: true })), null as string | null),
      introspection_secret_file: field(secretPath, null as string | null),
      audiences: field(list(str({ nonEmpty: true })), [] as string[]),
      clients: field(list(str({ nonEmpty: true })), [] as string[]),
      required_scopes: field(list(str({ pattern: /^[\x21\x23-\x5b\x5d-\x7e]+$/, what: 'a scope token' })), [] as string[]),
      algorithms: field(list(oneOf(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const), { min: 1 }), ['RS256'] as string[]),
      clock_tolerance: field(duration(0, 300_000), 30_000),
      email_claim: field(str({ pattern: /^[A-Za-z0-9_.:-]{1,64}$/, what: 'a claim name' }), 'email'),
      require_email_verified: field(bool, true),
      // An unknown kid refetches the JWKS at most this often.
      jwks_cooldown: field(duration(0, 3_600_000), 30_000),
      jwks_max_age: field(duration(1_000, 86_400_000), 600_000),
      max_token_bytes: field(int(256, 65_536), 8_192),
    }),
    undefined as never,
  ),
  // Issue 21: how the daemon behaves while the database or an IdP is down (docs/operations.md).
  outage: field(
    section({
      // Consecutive connection failures/timeouts that open the circuit breaker.
      failures: field(int(1, 1000), 3),
      // First back-off period; doubles per failed probe up to max_backoff; ± jitter (a fraction).
      backoff: field(duration(10, 600_000), 500),
      max_backoff: field(duration(10, 3_600_000), 2_000),
      jitter: field(num(0, 1), 0.2),
      // /readyz answers within this, whatever the pool is doing.
      ready_timeout: field(duration(50, 60_000), 1_000),
      // While a dependency is down, one summary line this often (0: none).
      log_summary: field(duration(0, 3_600_000), 30_000),
    }),
    undefined as never,
  ),
  sync: field(
    section({
      deprovision: field(oneOf(['off', 'deactivate'] as const), 'off' as 'off' | 'deactivate'),
      max_deactivate_ratio: field(num(0, 1), 0.1),
      page_size: field(int(1, 1000), 100),
    }),
    undefined as never,
  ),
  metrics: field(
    section({
      // GET /metrics; off removes the route.
      enabled: field(bool, true),
      // When a listen token is configured, /metrics wants it too (X-Mailauth-Token or Authorization: Bearer).
      require_token: field(bool, true),
    }),
    undefined as never,
  ),
  // Issue 17: brute-force throttling (src/policy/). Counters of distinct wrong passwords per client
  // address (IPv6 by ipv6_prefix), per mailbox and per (address, mailbox); see docs/security.md.
  throttle: field(
    section({
      enabled: field(bool, true),
      trusted_networks: field(list(str({ pattern: /^[0-9A-Fa-f:.]+(\/\d{1,3})?$/, what: 'an address or CIDR such as "10.0.0.0/8" or "2001:db8::/32"' })), ['127.0.0.0/8', '::1/128'] as string[]),
      ipv6_prefix: field(int(32, 128), 64),
      max_entries: field(int(100, 10_000_000), 100_000),
      backoff_base: field(duration(10, 600_000), 1_000),
      backoff_max: field(duration(10, 3_600_000), 60_000),
      familiar_for: field(duration(0, 365 * 86_400_000), 30 * 86_400_000),
      ip: field(throttleScope({ free: 20, blockAfter: 100, blockFor: 900_000, forget: 60_000 }), undefined as never),
      user: field(throttleScope({ free: 10, blockAfter: 50, blockFor: 900_000, forget: 300_000 }), undefined as never),
      ip_user: field(throttleScope({ free: 5, blockAfter: 30, blockFor: 900_000, forget: 600_000 }), undefined as never),
    }),
    undefined as never,
  ),
  // Issue 17: tell Dovecot at once when mailauth changes who may log in (src/dovecot/doveadm.ts).
  dovecot: field(
    section({
      notify: field(bool, true),
      hosts: field(list(doveadmHost), [{ doveadm: 'doveadm', config: null, url: null, api_key_file: null, password_file: null, name: null }] as DoveadmHostYaml[]),
      timeout: field(duration(100, 60_000), 5_000),
      retry_for: field(duration(0, 7 * 86_400_000), 86_400_000),
    }),
    undefined as never,
  ),
  // Issue 19: the self-service portal (src/portal/), on a listener of its own; off while listen is null.
  portal: field(
    section({
      listen: field(nullable(str({ nonEmpty: true, what: 'host:port or [ipv6]:port' })), null as string | null),
      public_url: field(nullable(str({ pattern: /^https?:\/\/[^\s?#]+$/, what: 'an http(s) URL without query or fragment, e.g. https://mail.example.org/account' })), null as string | null),
      trusted_proxies: field(list(str({ nonEmpty: true, what: 'an IP address' })), [] as string[]),
      session_ttl: field(duration(60_000, 86_400_000), 30 * 60_000),
      reauth_after: field(duration(0, 86_400_000), 5 * 60_000),
      email_claim: field(str({ pattern: /^[A-Za-z0-9_.:-]{1,64}$/, what: 'a claim name such as "email"' }), 'email'),
      require_verified_email: field(bool, true),
      password_sign_in: field(bool, true),
      sign_in_failures: field(int(1, 1000), 5),
      sign_in_window: field(duration(1_000, 86_400_000), 15 * 60_000),
      recent_logins: field(int(1, 500), 20),
      mail_host: field(nullable(str({ pattern: /^[A-Za-z0-9.-]{1,253}$/, what: 'a host name such as "mail.example.org"' })), null as string | null),
      password_policy: field(
        section({
          min_length: field(int(1, 256), 10),
          lowerupper: field(bool, true),
          numbers: field(bool, true),
          special: field(bool, false),
        }),
        undefined as never,
      ),
    }),
    undefined as never,
  ),
  log: field(
    section({
      level: field(oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const), 'info' as string),
      format: field(oneOf(['auto', 'json', 'pretty'] as const), 'auto' as 'auto' | 'json' | 'pretty'),
    }),
    undefined as never,
  ),
});
