/**
 * The identity-provider settings model over mailcow's `identity_provider`
 * key/value table: parse (table → typed settings, every problem reported with
 * its key), serialize (settings → mailcow's keys and value formats) and the
 * attribute → template mapping. Pure: no I/O; src/idp/store.ts reads and writes.
 */
import { isIP } from 'node:net';
import { FilterParser } from 'ldapts';

export const IDP_SOURCES = ['keycloak', 'generic-oidc', 'ldap'] as const;
export type IdpSource = (typeof IDP_SOURCES)[number];

/** mailcow's keys per source. `issuer` is mailauth's own addition (mailcow ignores unknown keys). */
export const SOURCE_KEYS: Readonly<Record<IdpSource, readonly string[]>> = {
  keycloak: [
    'server_url', 'realm', 'client_id', 'client_secret', 'redirect_url', 'version', 'mailpassword_flow',
    'periodic_sync', 'import_users', 'sync_interval', 'ignore_ssl_error', 'login_provisioning',
  ],
  'generic-oidc': [
    'issuer', 'authorize_url', 'token_url', 'userinfo_url', 'client_id', 'client_secret', 'redirect_url',
    'client_scopes', 'ignore_ssl_error', 'login_provisioning',
  ],
  ldap: [
    'host', 'port', 'basedn', 'binddn', 'bindpass', 'username_field', 'attribute_field', 'filter', 'use_ssl',
    'use_tls', 'periodic_sync', 'import_users', 'sync_interval', 'ignore_ssl_error', 'login_provisioning',
    // mailauth's own (mailcow ignores them): timeouts in ms, a CA file to trust, the preset the settings came from.
    'connect_timeout', 'op_timeout', 'ca_file', 'preset',
  ],
};
export const MAPPING_KEYS = ['mappers', 'templates', 'default_template'] as const;
/** Keys shared by every source; `access_token` is mailcow's cached admin token (never read by mailauth). */
export const SHARED_KEYS = [...MAPPING_KEYS, 'redirect_url_extra', 'access_token'] as const;
/** Keys whose values are secrets: masked in output, never logged. */
export const SECRET_KEYS = ['client_secret', 'bindpass', 'access_token'] as const;

export const DEFAULT_SYNC_INTERVAL_MIN = 15;
export const DEFAULT_OIDC_SCOPES = ['openid', 'profile', 'email', 'mailcow_template'];
export const DEFAULT_LDAP_PORT = 389;
export const DEFAULT_LDAPS_PORT = 636;
export const DEFAULT_LDAP_CONNECT_TIMEOUT_MS = 3_000;
export const DEFAULT_LDAP_OP_TIMEOUT_MS = 5_000;
export const LDAP_PRESETS = ['openldap', 'ad'] as const;
export type LdapPreset = (typeof LDAP_PRESETS)[number];

/**
 * What a preset fills in when the admin does not say otherwise (`idp set ldap --preset`).
 * Disabled and locked entries are recognised the same way whatever the preset
 * (src/idp/ldap.ts: pwdAccountLockedTime, userAccountControl, lockoutTime).
 */
export const LDAP_PRESET_DEFAULTS: Readonly<Record<LdapPreset, { usernameField: string; filter: string; what: string }>> = {
  openldap: { usernameField: 'mail', filter: '(objectClass=inetOrgPerson)', what: 'OpenLDAP: mail as user name, inetOrgPerson entries, ppolicy locks (pwdAccountLockedTime)' },
  ad: {
    usernameField: 'userPrincipalName',
    filter: '(&(objectClass=user)(objectCategory=person))',
    what: 'Active Directory: userPrincipalName (or mail) as user name, person users, disabled via userAccountControl, locked via lockoutTime',
  },
};
export const MAX_SYNC_INTERVAL_MIN = 10_080; // a week

export interface IdpMapping {
  /** IdP attribute values (`mailcow_template`); mappers[i] selects templates[i]. */
  mappers: string[];
  templates: string[];
  defaultTemplate: string | null;
}

interface IdpCommon {
  mapping: IdpMapping;
  loginProvisioning: boolean;
  ignoreSslError: boolean;
  /** Only mailcow's web UI uses these; kept so both can share the table. */
  redirectUrl: string | null;
  redirectUrlExtra: string[];
}

export interface KeycloakSettings extends IdpCommon {
  source: 'keycloak';
  /** Base URL without a trailing slash; may end in /auth (Keycloak ≤ 16 or --http-relative-path=/auth). */
  serverUrl: string;
  realm: string;
  clientId: string;
  clientSecret: string;
  /** mailcow's UI needs it for its login flow; mailauth always sends scope=openid and ignores it. */
  version: string | null;
  mailpasswordFlow: boolean;
  periodicSync: boolean;
  importUsers: boolean;
  syncIntervalMin: number;
}

export interface GenericOidcSettings extends IdpCommon {
  source: 'generic-oidc';
  issuer: string | null;
  authorizeUrl: string | null;
  tokenUrl: string;
  userinfoUrl: string;
  clientId: string;
  clientSecret: string;
  clientScopes: string[];
}

export interface LdapSettings extends IdpCommon {
  source: 'ldap';
  hosts: string[];
  port: number;
  basedn: string;
  binddn: string;
  bindpass: string;
  usernameField: string;
  attributeField: string | null;
  filter: string | null;
  useSsl: boolean;
  useTls: boolean;
  periodicSync: boolean;
  importUsers: boolean;
  syncIntervalMin: number;
  connectTimeoutMs: number;
  opTimeoutMs: number;
  /** A PEM file with the CA(s) to trust for LDAPS/StartTLS besides the system store. */
  caFile: string | null;
  preset: LdapPreset | null;
}

export type IdpSettings = KeycloakSettings | GenericOidcSettings | LdapSettings;

export interface SettingsProblem {
  /** The mailcow key the problem is about (the CLI turns it into its flag name). */
  key: string;
  message: string;
}

export type ParseResult =
  | { ok: true; settings: IdpSettings | null }
  | { ok: false; source: string | null; problems: SettingsProblem[] };

export interface TemplateChoice {
  template: string;
  via: 'mapping' | 'default';
}

/**
 * The template for a user whose `mailcow_template` attribute is `value`
 * (mailcow's rule): an exact match in `mappers`, else `default_template`, else
 * null (the user is skipped).
 */
export function templateFor(value: string | null | undefined, settings: { mapping: IdpMapping }): TemplateChoice | null {
  const m = settings.mapping;
  if (value !== undefined && value !== null && value !== '') {
    const i = m.mappers.indexOf(value);
    const template = i >= 0 ? m.templates[i] : undefined;
    if (template !== undefined) return { template, via: 'mapping' };
  }
  return m.defaultTemplate ? { template: m.defaultTemplate, via: 'default' } : null;
}

export function isIdpSource(v: string): v is IdpSource {
  return (IDP_SOURCES as readonly string[]).includes(v);
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * The transport rule, shared by the Keycloak and the OIDC client: https
 * always; plain http only to a loopback host, or when the admin turned off
 * TLS checks with ignore_ssl_error (then `idp test` warns that the client
 * secret travels unencrypted).
 */
export function transportAllowed(url: URL, ignoreSslError: boolean): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && (ignoreSslError || isLoopbackHost(url.hostname));
}

// ── value readers: each pushes a problem and returns a fallback ───────────────

class Reader {
  readonly problems: SettingsProblem[] = [];
  constructor(private readonly raw: Readonly<Record<string, string>>) {}

  private value(key: string): string {
    return (this.raw[key] ?? '').trim();
  }

  problem(key: string, message: string): void {
    this.problems.push({ key, message });
  }

  text(key: string, opts: { required: boolean; max?: number; pattern?: RegExp; what?: string }): string | null {
    const v = this.value(key);
    if (v === '') {
      if (opts.required) this.problem(key, 'is required');
      return null;
    }
    if (/[\u0000-\u001f\u007f]/.test(v)) {
      this.problem(key, 'must not contain control characters');
      return null;
    }
    if (v.length > (opts.max ?? 255)) {
      this.problem(key, `must be at most ${opts.max ?? 255} characters, got ${v.length}`);
      return null;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.problem(key, `must be ${opts.what ?? `a value matching ${opts.pattern}`}, got ${JSON.stringify(v)}`);
      return null;
    }
    return v;
  }

  /** A secret: never echoed in a message. */
  secret(key: string): string {
    const v = this.raw[key] ?? '';
    if (v === '') this.problem(key, 'is required');
    else if (/[\u0000-\u001f\u007f]/.test(v)) this.problem(key, 'must not contain control characters (a stray newline from the secret file?)');
    else if (v.length > 4096) this.problem(key, 'is longer than 4096 characters');
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.value(key).toLowerCase();
    if (v === '') return dflt;
    if (v === '1' || v === 'true') return true;
    if (v === '0' || v === 'false') return false;
    this.problem(key, `must be 0 or 1, got ${JSON.stringify(this.value(key))}`);
    return dflt;
  }

  int(key: string, dflt: number, min: number, max: number, unit = ''): number {
    const v = this.value(key);
    if (v === '') return dflt;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      this.problem(key, `must be an integer between ${min} and ${max}${unit}, got ${JSON.stringify(v)}`);
      return dflt;
    }
    return n;
  }

  url(key: string, opts: { required: boolean; ignoreSslError: boolean }): string | null {
    const v = this.value(key);
    if (v === '') {
      if (opts.required) this.problem(key, 'is required');
      return null;
    }
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      this.problem(key, `must be an absolute http(s) URL, got ${JSON.stringify(v)}`);
      return null;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') {
      this.problem(key, `must use https:// (or http:// to a loopback host), got ${JSON.stringify(u.protocol)}`);
      return null;
    }
    if (u.username || u.password) {
      this.problem(key, 'must not contain a user name or password');
      return null;
    }
    if (u.search || u.hash) {
      this.problem(key, 'must not contain a query string or fragment');
      return null;
    }
    if (!transportAllowed(u, opts.ignoreSslError)) {
      this.problem(
        key,
        `plain http to ${u.hostname} would send the client secret unencrypted; use https://, or set ignore_ssl_error (--ignore-ssl-error) if you accept that`,
      );
      return null;
    }
    return v.replace(/\/+$/, '');
  }

  jsonStrings(key: string): string[] {
    const v = this.value(key);
    if (v === '') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      this.problem(key, 'must be a JSON array of strings, got invalid JSON');
      return [];
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) {
      this.problem(key, 'must be a JSON array of strings');
      return [];
    }
    return parsed as string[];
  }
}

const REALM = /^[^/\\\s?#%]+$/;
const LDAP_ATTR = /^[A-Za-z][A-Za-z0-9-]*$/;

export function parseMapping(raw: Readonly<Record<string, string>>): { mapping: IdpMapping; problems: SettingsProblem[] } {
  const r = new Reader(raw);
  const mapping = readMapping(r);
  return { mapping, problems: r.problems };
}

function readMapping(r: Reader): IdpMapping {
  const before = r.problems.length;
  const mappers = r.jsonStrings('mappers');
  const templates = r.jsonStrings('templates');
  const defaultTemplate = r.text('default_template', { required: false });
  // An unreadable array is reported once; comparing its length would only add noise.
  if (r.problems.length > before) return { mappers: [], templates: [], defaultTemplate };
  if (mappers.length !== templates.length) {
    r.problem('templates', `must have as many entries as mappers (${mappers.length}), got ${templates.length}`);
    return { mappers: [], templates: [], defaultTemplate };
  }
  const seen = new Set<string>();
  mappers.forEach((m, i) => {
    if (m.trim() === '') r.problem('mappers', `entry ${i + 1} is empty`);
    else if (seen.has(m)) r.problem('mappers', `${JSON.stringify(m)} is listed twice`);
    seen.add(m);
    if ((templates[i] ?? '').trim() === '') r.problem('templates', `entry ${i + 1} (for ${JSON.stringify(m)}) is empty`);
  });
  return { mappers, templates, defaultTemplate };
}

function readCommon(r: Reader): Omit<IdpCommon, 'ignoreSslError'> {
  return {
    mapping: readMapping(r),
    loginProvisioning: r.bool('login_provisioning', true),
    redirectUrl: r.url('redirect_url', { required: false, ignoreSslError: true }),
    redirectUrlExtra: r.jsonStrings('redirect_url_extra'),
  };
}

function readKeycloak(r: Reader): KeycloakSettings {
  const ignoreSslError = r.bool('ignore_ssl_error', false);
  const serverUrl = r.url('server_url', { required: true, ignoreSslError }) ?? '';
  if (/\/(realms|admin)(\/|$)/.test(serverUrl)) {
    r.problem(
      'server_url',
      `must be the server's base URL without /realms/… or /admin/… (e.g. https://kc.example.org, or https://kc.example.org/auth for Keycloak ≤ 16), got ${JSON.stringify(serverUrl)}`,
    );
  }
  return {
    source: 'keycloak',
    ...readCommon(r),
    ignoreSslError,
    serverUrl,
    realm: r.text('realm', { required: true, pattern: REALM, what: 'a realm name without "/", spaces, "?", "#" or "%"' }) ?? '',
    clientId: r.text('client_id', { required: true }) ?? '',
    clientSecret: r.secret('client_secret'),
    version: r.text('version', { required: false, pattern: /^\d+(\.\d+){0,3}$/, what: 'a Keycloak version such as "26.0.5"' }),
    mailpasswordFlow: r.bool('mailpassword_flow', false),
    periodicSync: r.bool('periodic_sync', false),
    importUsers: r.bool('import_users', false),
    syncIntervalMin: r.int('sync_interval', DEFAULT_SYNC_INTERVAL_MIN, 1, MAX_SYNC_INTERVAL_MIN, ' (minutes)'),
  };
}

function readOidc(r: Reader): GenericOidcSettings {
  const ignoreSslError = r.bool('ignore_ssl_error', false);
  const issuer = r.url('issuer', { required: false, ignoreSslError });
  const scopesText = r.text('client_scopes', { required: false, max: 1024, pattern: /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, what: 'space-separated scope names' });
  const clientScopes = scopesText === null ? [...DEFAULT_OIDC_SCOPES] : scopesText.split(' ');
  if (!clientScopes.includes('openid')) {
    r.problem('client_scopes', 'must include "openid" (the userinfo endpoint refuses tokens without it)');
  }
  return {
    source: 'generic-oidc',
    ...readCommon(r),
    ignoreSslError,
    issuer,
    // Without an issuer to discover them from, mailcow's three endpoint URLs are required.
    authorizeUrl: r.url('authorize_url', { required: issuer === null, ignoreSslError }),
    tokenUrl: r.url('token_url', { required: true, ignoreSslError }) ?? '',
    userinfoUrl: r.url('userinfo_url', { required: true, ignoreSslError }) ?? '',
    clientId: r.text('client_id', { required: true }) ?? '',
    clientSecret: r.secret('client_secret'),
    clientScopes,
  };
}

function readLdap(r: Reader): LdapSettings {
  const ignoreSslError = r.bool('ignore_ssl_error', false);
  const hostText = r.text('host', { required: true, max: 1024 });
  const hosts = (hostText ?? '').split(',').map((h) => h.trim()).filter((h) => h !== '');
  for (const h of hosts) {
    if (!/^[A-Za-z0-9.:[\]-]+$/.test(h)) r.problem('host', `${JSON.stringify(h)} is not a host name or address`);
  }
  const useSsl = r.bool('use_ssl', false);
  const useTls = r.bool('use_tls', false);
  if (useSsl && useTls) r.problem('use_tls', 'cannot be combined with use_ssl (LDAPS already encrypts; STARTTLS is for plain LDAP)');
  return {
    source: 'ldap',
    ...readCommon(r),
    ignoreSslError,
    hosts,
    port: r.int('port', DEFAULT_LDAP_PORT, 1, 65535),
    basedn: r.text('basedn', { required: true, max: 1024 }) ?? '',
    binddn: r.text('binddn', { required: true, max: 1024 }) ?? '',
    bindpass: r.secret('bindpass'),
    usernameField: r.text('username_field', { required: false, pattern: LDAP_ATTR, what: 'an LDAP attribute name' }) ?? 'mail',
    attributeField: r.text('attribute_field', { required: false, pattern: LDAP_ATTR, what: 'an LDAP attribute name' }),
    filter: ldapFilter(r),
    useSsl,
    useTls,
    periodicSync: r.bool('periodic_sync', false),
    importUsers: r.bool('import_users', false),
    syncIntervalMin: r.int('sync_interval', DEFAULT_SYNC_INTERVAL_MIN, 1, MAX_SYNC_INTERVAL_MIN, ' (minutes)'),
    connectTimeoutMs: r.int('connect_timeout', DEFAULT_LDAP_CONNECT_TIMEOUT_MS, 100, 120_000, ' (milliseconds)'),
    opTimeoutMs: r.int('op_timeout', DEFAULT_LDAP_OP_TIMEOUT_MS, 100, 600_000, ' (milliseconds)'),
    caFile: r.text('ca_file', { required: false, max: 4096, pattern: /^\//, what: 'an absolute path to a PEM file' }),
    preset: r.text('preset', { required: false, pattern: /^(openldap|ad)$/, what: 'openldap or ad' }) as LdapPreset | null,
  };
}

/**
 * The admin's filter, wrapped in parentheses when mailcow's UI stored it
 * without, and parsed with ldapts's RFC 4515 parser so a typo is reported
 * here, with its key, and not as a failure at every login.
 */
function ldapFilter(r: Reader): string | null {
  const raw = r.text('filter', { required: false, max: 1024 });
  if (raw === null) return null;
  const f = raw.startsWith('(') ? raw : `(${raw})`;
  // ldapts's parser forgives a missing ")" after a set; values escape parentheses (\28, \29), so count them.
  let depth = 0;
  for (const ch of f) {
    depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
    if (depth < 0) break;
  }
  if (depth !== 0) {
    r.problem('filter', `is not a valid LDAP filter (RFC 4515): unbalanced parentheses in ${JSON.stringify(raw)}`);
    return null;
  }
  try {
    FilterParser.parseString(f);
  } catch (err) {
    r.problem('filter', `is not a valid LDAP filter (RFC 4515): ${(err as Error).message}`);
    return null;
  }
  return f;
}

/** Table rows → typed settings; `settings: null` when no IdP is configured. */
export function parseIdpSettings(raw: Readonly<Record<string, string>>): ParseResult {
  const source = (raw.authsource ?? '').trim();
  if (source === '') return { ok: true, settings: null };
  if (!isIdpSource(source)) {
    return { ok: false, source, problems: [{ key: 'authsource', message: `must be one of ${IDP_SOURCES.join(', ')}, got ${JSON.stringify(source)}` }] };
  }
  const r = new Reader(raw);
  const settings = source === 'keycloak' ? readKeycloak(r) : source === 'generic-oidc' ? readOidc(r) : readLdap(r);
  if (r.problems.length > 0) return { ok: false, source, problems: r.problems };
  return { ok: true, settings };
}

// ── mapping edits (pure; the store checks that templates exist) ─────────────

export function mappingValueProblem(value: string): string | null {
  if (value.trim() === '' || value !== value.trim()) return 'must be non-empty without leading or trailing spaces';
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'must not contain control characters';
  if (value.length > 255) return 'must be at most 255 characters';
  return null;
}

/** Maps `value` to `template`, replacing an existing mapping of the same value. */
export function withMapping(m: IdpMapping, value: string, template: string): { mapping: IdpMapping; replaced: string | null } {
  const i = m.mappers.indexOf(value);
  if (i < 0) return { mapping: { ...m, mappers: [...m.mappers, value], templates: [...m.templates, template] }, replaced: null };
  const templates = [...m.templates];
  const replaced = templates[i] ?? null;
  templates[i] = template;
  return { mapping: { ...m, templates }, replaced };
}

/** Null when `value` is not mapped. */
export function withoutMapping(m: IdpMapping, value: string): IdpMapping | null {
  const i = m.mappers.indexOf(value);
  if (i < 0) return null;
  return { ...m, mappers: m.mappers.filter((_, j) => j !== i), templates: m.templates.filter((_, j) => j !== i) };
}

export function mappingTemplates(m: IdpMapping): string[] {
  return [...new Set([...m.templates, ...(m.defaultTemplate ? [m.defaultTemplate] : [])])];
}

export function formatProblems(problems: readonly SettingsProblem[], keyLabel: (key: string) => string = (k) => k): string {
  return problems.map((p) => `${keyLabel(p.key)}: ${p.message}`).join('; ');
}

// ── serialize ──────────────────────────────────────────────────────────────

const flag = (b: boolean): string => (b ? '1' : '0');

export function serializeMapping(m: IdpMapping): Record<string, string> {
  return {
    mappers: JSON.stringify(m.mappers),
    templates: JSON.stringify(m.templates),
    default_template: m.defaultTemplate ?? '',
  };
}

/** Settings → the table's keys in mailcow's value formats (0/1 flags, JSON arrays). Absent optional keys are omitted. */
export function serializeIdpSettings(s: IdpSettings): Record<string, string> {
  const out: Record<string, string> = {
    authsource: s.source,
    ...serializeMapping(s.mapping),
    login_provisioning: flag(s.loginProvisioning),
    ignore_ssl_error: flag(s.ignoreSslError),
  };
  if (s.redirectUrl) out.redirect_url = s.redirectUrl;
  if (s.redirectUrlExtra.length > 0) out.redirect_url_extra = JSON.stringify(s.redirectUrlExtra);
  switch (s.source) {
    case 'keycloak':
      Object.assign(out, {
        server_url: s.serverUrl,
        realm: s.realm,
        client_id: s.clientId,
        client_secret: s.clientSecret,
        mailpassword_flow: flag(s.mailpasswordFlow),
        periodic_sync: flag(s.periodicSync),
        import_users: flag(s.importUsers),
        sync_interval: String(s.syncIntervalMin),
      });
      if (s.version) out.version = s.version;
      break;
    case 'generic-oidc':
      Object.assign(out, {
        token_url: s.tokenUrl,
        userinfo_url: s.userinfoUrl,
        client_id: s.clientId,
        client_secret: s.clientSecret,
        client_scopes: s.clientScopes.join(' '),
      });
      if (s.issuer) out.issuer = s.issuer;
      if (s.authorizeUrl) out.authorize_url = s.authorizeUrl;
      break;
    case 'ldap':
      Object.assign(out, {
        host: s.hosts.join(','),
        port: String(s.port),
        basedn: s.basedn,
        binddn: s.binddn,
        bindpass: s.bindpass,
        username_field: s.usernameField,
        use_ssl: flag(s.useSsl),
        use_tls: flag(s.useTls),
        periodic_sync: flag(s.periodicSync),
        import_users: flag(s.importUsers),
        sync_interval: String(s.syncIntervalMin),
      });
      if (s.attributeField) out.attribute_field = s.attributeField;
      if (s.filter) out.filter = s.filter;
      if (s.connectTimeoutMs !== DEFAULT_LDAP_CONNECT_TIMEOUT_MS) out.connect_timeout = String(s.connectTimeoutMs);
      if (s.opTimeoutMs !== DEFAULT_LDAP_OP_TIMEOUT_MS) out.op_timeout = String(s.opTimeoutMs);
      if (s.caFile) out.ca_file = s.caFile;
      if (s.preset) out.preset = s.preset;
      break;
  }
  return out;
}

/** Every key mailauth manages; saving deletes those the new settings do not set (stale keys of another source). */
export function managedKeys(): string[] {
  return [...new Set(['authsource', ...SHARED_KEYS, ...Object.values(SOURCE_KEYS).flat()])];
}

export const MASK = '********';

/** For `idp show`: the table's keys with secrets masked. */
export function maskRaw(raw: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) out[k] = (SECRET_KEYS as readonly string[]).includes(k) && v !== '' ? MASK : v;
  return out;
}

/** Typed settings with secrets masked, for JSON output. */
export function maskSettings(s: IdpSettings): IdpSettings {
  switch (s.source) {
    case 'keycloak':
    case 'generic-oidc':
      return { ...s, clientSecret: MASK };
    case 'ldap':
      return { ...s, bindpass: MASK };
  }
}
