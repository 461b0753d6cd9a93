/** `mailauth idp set|show|delete|test|map …`: the identity provider in mailcow's identity_provider table. */
import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import {
  DEFAULT_OIDC_SCOPES,
  DEFAULT_LDAPS_PORT,
  LDAP_PRESETS,
  LDAP_PRESET_DEFAULTS,
  checklistPassed,
  deleteIdpSettings,
  discoverOidc,
  formatProblems,
  loadIdpSettings,
  mappingValueProblem,
  maskRaw,
  maskSettings,
  parseIdpSettings,
  readIdpState,
  readMapping,
  runIdpTest,
  saveIdpSettings,
  templateNames,
  updateMapping,
  withMapping,
  withoutMapping,
} from '../idp/index.js';
import type { Check, IdpSettings, IdpSource, IdpTestDeps, LdapPreset, SettingsProblem } from '../idp/index.js';
import { MailauthError } from '../errors.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT, intOption } from './app.js';
import { confirm, usage } from './admin.js';
import { readStdin } from './io.js';
import { formatDuration, parseDuration } from '../config/duration.js';
import { checkLine, keyValues, table } from './render.js';

/** mailcow key → the flag that sets it, for error messages. */
const FLAG_OF: Record<string, string> = {
  server_url: '--server-url',
  realm: '--realm',
  client_id: '--client-id',
  client_secret: '--client-secret-file/--client-secret-stdin',
  sync_interval: '--sync-interval',
  version: '--keycloak-version',
  redirect_url: '--redirect-url',
  issuer: '--issuer',
  authorize_url: '--authorize-url',
  token_url: '--token-url',
  userinfo_url: '--userinfo-url',
  client_scopes: '--scopes',
  ignore_ssl_error: '--ignore-ssl-error',
  mailpassword_flow: '--mailpassword-flow',
  periodic_sync: '--periodic-sync',
  import_users: '--import-users',
  login_provisioning: '--login-provisioning',
  host: '--host',
  port: '--port',
  basedn: '--base-dn',
  binddn: '--bind-dn',
  bindpass: '--bind-password-file/--bind-password-stdin',
  username_field: '--username-field',
  attribute_field: '--attribute-field',
  filter: '--filter',
  use_ssl: '--ssl',
  use_tls: '--starttls',
  connect_timeout: '--connect-timeout',
  op_timeout: '--op-timeout',
  ca_file: '--ca-file',
  preset: '--preset',
};
const flagLabel = (key: string): string => FLAG_OF[key] ?? `identity_provider.${key}`;

interface SetCommon {
  clientId?: string;
  clientSecretFile?: string;
  clientSecretStdin?: boolean;
  loginProvisioning?: boolean;
  ignoreSslError?: boolean;
  redirectUrl?: string;
  test?: boolean;
}

interface SetKeycloak extends SetCommon {
  serverUrl?: string;
  realm?: string;
  mailpasswordFlow?: boolean;
  periodicSync?: boolean;
  importUsers?: boolean;
  syncInterval?: number;
  keycloakVersion?: string;
}

interface SetOidc extends SetCommon {
  issuer?: string;
  authorizeUrl?: string;
  tokenUrl?: string;
  userinfoUrl?: string;
  scopes?: string;
}

interface SetLdap {
  preset?: string;
  host?: string;
  port?: number;
  ssl?: boolean;
  starttls?: boolean;
  baseDn?: string;
  bindDn?: string;
  bindPasswordFile?: string;
  bindPasswordStdin?: boolean;
  usernameField?: string;
  attributeField?: string;
  filter?: string;
  caFile?: string;
  connectTimeout?: string;
  opTimeout?: string;
  periodicSync?: boolean;
  importUsers?: boolean;
  syncInterval?: number;
  loginProvisioning?: boolean;
  ignoreSslError?: boolean;
  test?: boolean;
}

const flag = (b: boolean): string => (b ? '1' : '0');

/** A secret from a file (warned when world-readable) or the first line of stdin; never from argv. */
async function readSecret(app: CliApp, file: string | undefined, stdin: boolean | undefined, names: { file: string; stdin: string; what: string }): Promise<string | undefined> {
  if (file !== undefined && stdin) throw usage(`use either ${names.file} or ${names.stdin}, not both`);
  let secret: string | undefined;
  if (file !== undefined) {
    try {
      secret = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
      if (((await stat(file)).mode & 0o004) !== 0) app.io.stderr.write(`mailauth: warning: ${file} is world-readable; chmod 600 it\n`);
    } catch (err) {
      throw usage(`${names.file}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  } else if (stdin) {
    secret = (await readStdin(app.io)).split(/\r?\n/)[0] ?? '';
  }
  if (secret !== undefined && secret === '') throw usage(`the ${names.what} is empty`);
  return secret;
}

/** "3s", "500ms" → milliseconds as the table stores them. */
function durationFlag(name: string, v: string | undefined, min: number, max: number): string | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === null || ms < min || ms > max) throw usage(`${name}: expected a duration between ${formatDuration(min)} and ${formatDuration(max)} such as "3s" or "500ms", got ${JSON.stringify(v)}`);
  return String(ms);
}

/** The client secret from a file or stdin; never from argv. */
async function readClientSecret(app: CliApp, o: SetCommon): Promise<string | undefined> {
  if (o.clientSecretFile !== undefined && o.clientSecretStdin) throw usage('use either --client-secret-file or --client-secret-stdin, not both');
  let secret: string | undefined;
  if (o.clientSecretFile !== undefined) {
    try {
      secret = (await readFile(o.clientSecretFile, 'utf8')).replace(/\r?\n$/, '');
      if (((await stat(o.clientSecretFile)).mode & 0o004) !== 0) {
        app.io.stderr.write(`mailauth: warning: ${o.clientSecretFile} is world-readable; chmod 600 it\n`);
      }
    } catch (err) {
      throw usage(`--client-secret-file: cannot read ${o.clientSecretFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  } else if (o.clientSecretStdin) {
    secret = (await readStdin(app.io)).split(/\r?\n/)[0] ?? '';
  }
  if (secret !== undefined && secret === '') throw usage('the client secret is empty');
  return secret;
}

function setIf(raw: Record<string, string>, key: string, v: string | boolean | number | undefined): void {
  if (v === undefined) return;
  raw[key] = typeof v === 'boolean' ? flag(v) : String(v);
}

function problemsFailure(problems: readonly SettingsProblem[]): CliFailure {
  return new CliFailure(`invalid settings: ${formatProblems(problems, flagLabel)}`, EXIT.USAGE, { problems });
}

function testDeps(config: Config, db: Db): IdpTestDeps {
  return {
    templateNames: () => templateNames(db),
    idp: config.idp,
    idpHashSchemes: config.auth.idpHashSchemes,
    passwordGrant: config.auth.oidcPasswordGrant,
    oauth: config.oauth,
  };
}

function renderChecks(checks: readonly Check[]): string {
  const counts = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) counts[c.status]++;
  const passed = checklistPassed(checks);
  return (
    checks.map((c) => checkLine(c.status, c.title, c.detail, c.fix)).join('') +
    `\n${passed ? 'OK' : 'FAILED'}: ${counts.pass} passed, ${counts.warn} warning(s), ${counts.fail} failed, ${counts.skip} skipped\n`
  );
}

/** Validate, optionally test, then save. Shared by both `set` subcommands. */
async function applySettings(app: CliApp, cmd: Command, config: Config, db: Db, raw: Record<string, string>, test: boolean): Promise<number> {
  const parsed = parseIdpSettings(raw);
  if (!parsed.ok) throw problemsFailure(parsed.problems);
  const settings = parsed.settings as IdpSettings;
  let checks: Check[] | null = null;
  if (test) {
    checks = await runIdpTest(settings, testDeps(config, db));
    if (!checklistPassed(checks)) {
      if (!app.globals(cmd).json) app.io.stdout.write(renderChecks(checks));
      throw new CliFailure('not saved: the test failed (fix the ✗ lines above, or save without --test)', EXIT.FAILED, { saved: false, checks });
    }
  }
  const result = await saveIdpSettings(db, settings);
  app.print(cmd, { saved: true, source: settings.source, previousSource: result.previousSource, settings: maskSettings(settings), checks }, () =>
    (checks ? renderChecks(checks) + '\n' : '') + `saved ${settings.source} settings${result.previousSource && result.previousSource !== settings.source ? ` (replacing ${result.previousSource})` : ''}\n`,
  );
  return EXIT.OK;
}

/** The stored keys to start from: the current ones when the source stays, else none. */
async function baseRaw(db: Db, source: IdpSource): Promise<Record<string, string>> {
  const { raw } = await readIdpState(db);
  return (raw.authsource ?? '').trim() === source ? { ...raw } : {};
}

function describe(s: IdpSettings): [string, unknown][] {
  const m = maskSettings(s);
  const common: [string, unknown][] = [
    ['login provisioning', m.loginProvisioning ? 'on' : 'off'],
    ['ignore ssl errors', m.ignoreSslError ? 'YES (certificate checks off)' : 'no'],
  ];
  switch (m.source) {
    case 'keycloak':
      return [
        ['source', 'keycloak'],
        ['server url', m.serverUrl],
        ['realm', m.realm],
        ['client id', m.clientId],
        ['client secret', m.clientSecret],
        ['mailpassword flow', m.mailpasswordFlow ? 'on' : 'off'],
        ['periodic sync', m.periodicSync ? 'on' : 'off'],
        ['import users', m.importUsers ? 'on' : 'off'],
        ['sync interval', `${m.syncIntervalMin} min`],
        ...common,
        ...(m.version ? ([['keycloak version', m.version]] as [string, unknown][]) : []),
        ...(m.redirectUrl ? ([['redirect url', m.redirectUrl]] as [string, unknown][]) : []),
      ];
    case 'generic-oidc':
      return [
        ['source', 'generic-oidc'],
        ['issuer', m.issuer ?? '(none: explicit URLs)'],
        ['authorize url', m.authorizeUrl ?? ''],
        ['token url', m.tokenUrl],
        ['userinfo url', m.userinfoUrl],
        ['client id', m.clientId],
        ['client secret', m.clientSecret],
        ['scopes', m.clientScopes.join(' ')],
        ...common,
        ...(m.redirectUrl ? ([['redirect url', m.redirectUrl]] as [string, unknown][]) : []),
      ];
    case 'ldap':
      return [
        ['source', 'ldap'],
        ['hosts', m.hosts.join(', ')],
        ['port', m.port],
        ['base dn', m.basedn],
        ['bind dn', m.binddn],
        ['bind password', m.bindpass],
        ['username field', m.usernameField],
        ['attribute field', m.attributeField ?? ''],
        ['filter', m.filter ?? ''],
        ['transport', m.useSsl ? 'LDAPS' : m.useTls ? 'StartTLS' : 'plain LDAP (no encryption)'],
        ['ca file', m.caFile ?? '(system trust store)'],
        ['timeouts', `connect ${m.connectTimeoutMs} ms, operation ${m.opTimeoutMs} ms`],
        ['preset', m.preset ?? '-'],
        ['periodic sync', m.periodicSync ? 'on' : 'off'],
        ['import users', m.importUsers ? 'on' : 'off'],
        ['sync interval', `${m.syncIntervalMin} min`],
        ...common,
      ];
  }
}

function mappingText(s: { mappers: string[]; templates: string[]; defaultTemplate: string | null }, known: readonly string[] | null): string {
  const rows = s.mappers.map((v, i) => {
    const t = s.templates[i] ?? '';
    return [v, t, known && !known.includes(t) ? 'MISSING TEMPLATE' : ''];
  });
  return (
    (rows.length > 0 ? table(['mailcow_template value', 'template', ''], rows) : 'no attribute mappings\n') +
    `default template: ${s.defaultTemplate ?? 'none (unmapped users are skipped)'}${s.defaultTemplate && known && !known.includes(s.defaultTemplate) ? ' (MISSING TEMPLATE)' : ''}\n`
  );
}

const SET_HELP_COMMON = `
The client secret is read from a file (--client-secret-file, chmod 600) or from the
first line of standard input (--client-secret-stdin); it never goes on the command
line. When the source stays the same, flags you leave out keep their stored values
(the secret too). Switching to another source is refused while mailboxes still use
the old one (see \`mailauth mailbox list --authsource SOURCE\`).
With --test the settings are tested first (like \`mailauth idp test\`) and saved only
when every required check passes.`;

export function registerIdp(program: Command, app: CliApp): void {
  const idp = program
    .command('idp')
    .description('identity provider: Keycloak, generic OIDC or LDAP settings, attribute → template mapping, test')
    .addHelpText(
      'after',
      `
Examples:
  mailauth idp set keycloak --server-url https://kc.example.org --realm mail \\
      --client-id mailauth --client-secret-file /etc/mailauth/kc.secret --mailpassword-flow --test
  mailauth idp test --user alice@example.org
  mailauth idp map add staff Staff
  mailauth idp show --json

See docs/keycloak.md for a worked Keycloak setup, docs/ldap.md for LDAP and Active Directory.`,
    );

  const set = idp
    .command('set')
    .description('configure the identity provider (one at a time)')
    .addHelpText(
      'after',
      `
Examples:
  mailauth idp set keycloak --server-url https://kc.example.org --realm mail \\
      --client-id mailauth --client-secret-file /etc/mailauth/kc.secret --test
  mailauth idp set generic-oidc --issuer https://id.example.org --client-id mail \\
      --client-secret-stdin < secret.txt`,
    );

  set
    .command('keycloak')
    .description('use Keycloak: service-account client for the admin API, optional mailpassword flow, sync and import')
    .option('--server-url <url>', 'Keycloak base URL, e.g. https://kc.example.org (add /auth for Keycloak ≤ 16)')
    .option('--realm <realm>', 'realm name (case-sensitive)')
    .option('--client-id <id>', 'confidential client with "Service accounts roles" and realm-management view-users')
    .option('--client-secret-file <file>', 'read the client secret from this file')
    .option('--client-secret-stdin', 'read the client secret from the first line of standard input')
    .option('--mailpassword-flow', 'verify mailbox passwords against the users\' mailcow_password attribute')
    .option('--no-mailpassword-flow', 'keycloak mailboxes log in with app passwords only')
    .option('--periodic-sync', 're-apply mapped templates to keycloak mailboxes on `mailauth sync`')
    .option('--no-periodic-sync')
    .option('--import-users', 'create mailboxes for realm users on `mailauth sync`')
    .option('--no-import-users')
    .option('--sync-interval <minutes>', 'minimum minutes between sync runs (default 15)', intOption('--sync-interval', 1, 10_080))
    .option('--login-provisioning', 'create a missing mailbox on its first successful login (default on)')
    .option('--no-login-provisioning')
    .option('--ignore-ssl-error', 'do not verify the TLS certificate (and allow plain http to non-loopback hosts); not recommended')
    .option('--no-ignore-ssl-error')
    .option('--redirect-url <url>', "mailcow web UI's redirect URL (only mailcow's UI uses it)")
    .option('--keycloak-version <version>', "Keycloak version (only mailcow's UI uses it)")
    .option('--test', 'run the idp test first and save only when it passes')
    .addHelpText(
      'after',
      `${SET_HELP_COMMON}

Examples:
  mailauth idp set keycloak --server-url https://kc.example.org --realm mail \\
      --client-id mailauth --client-secret-file /etc/mailauth/kc.secret --test
  echo "$SECRET" | mailauth idp set keycloak --client-secret-stdin     rotate the secret only
  mailauth idp set keycloak --periodic-sync --import-users --sync-interval 30`,
    )
    .action(
      app.action(async (o: SetKeycloak, cmd: Command) => {
        const config = app.config(cmd);
        const secret = await readClientSecret(app, o);
        const db = app.db(config);
        const raw = await baseRaw(db, 'keycloak');
        raw.authsource = 'keycloak';
        setIf(raw, 'server_url', o.serverUrl);
        setIf(raw, 'realm', o.realm);
        setIf(raw, 'client_id', o.clientId);
        setIf(raw, 'client_secret', secret);
        setIf(raw, 'mailpassword_flow', o.mailpasswordFlow);
        setIf(raw, 'periodic_sync', o.periodicSync);
        setIf(raw, 'import_users', o.importUsers);
        setIf(raw, 'sync_interval', o.syncInterval);
        setIf(raw, 'login_provisioning', o.loginProvisioning);
        setIf(raw, 'ignore_ssl_error', o.ignoreSslError);
        setIf(raw, 'redirect_url', o.redirectUrl);
        setIf(raw, 'version', o.keycloakVersion);
        return applySettings(app, cmd, config, db, raw, o.test === true);
      }),
    );

  set
    .command('generic-oidc')
    .description('use a generic OpenID Connect provider (its mailboxes log in with app passwords)')
    .option('--issuer <url>', 'issuer URL; discovery fills the endpoint URLs you do not give')
    .option('--authorize-url <url>', 'authorization endpoint (mailcow UI login)')
    .option('--token-url <url>', 'token endpoint')
    .option('--userinfo-url <url>', 'userinfo endpoint')
    .option('--client-id <id>', 'client id')
    .option('--client-secret-file <file>', 'read the client secret from this file')
    .option('--client-secret-stdin', 'read the client secret from the first line of standard input')
    .option('--scopes <scopes>', `space-separated scopes (default "${DEFAULT_OIDC_SCOPES.join(' ')}"; must include openid)`)
    .option('--login-provisioning', 'create a missing mailbox on first login (default on)')
    .option('--no-login-provisioning')
    .option('--ignore-ssl-error', 'do not verify TLS certificates (and allow plain http to non-loopback hosts); not recommended')
    .option('--no-ignore-ssl-error')
    .option('--redirect-url <url>', "mailcow web UI's redirect URL (only mailcow's UI uses it)")
    .option('--test', 'run the idp test first and save only when it passes')
    .addHelpText(
      'after',
      `${SET_HELP_COMMON}

Examples:
  mailauth idp set generic-oidc --issuer https://id.example.org --client-id mail \\
      --client-secret-file /etc/mailauth/oidc.secret --test
  mailauth idp set generic-oidc --authorize-url https://id.example.org/auth \\
      --token-url https://id.example.org/token --userinfo-url https://id.example.org/userinfo \\
      --client-id mail --client-secret-stdin < secret.txt`,
    )
    .action(
      app.action(async (o: SetOidc, cmd: Command) => {
        const config = app.config(cmd);
        const secret = await readClientSecret(app, o);
        const db = app.db(config);
        const raw = await baseRaw(db, 'generic-oidc');
        raw.authsource = 'generic-oidc';
        if (o.issuer !== undefined) {
          // A new issuer: its discovery replaces the endpoint URLs not given explicitly.
          for (const k of ['authorize_url', 'token_url', 'userinfo_url']) delete raw[k];
          raw.issuer = o.issuer.replace(/\/+$/, '');
        }
        setIf(raw, 'authorize_url', o.authorizeUrl);
        setIf(raw, 'token_url', o.tokenUrl);
        setIf(raw, 'userinfo_url', o.userinfoUrl);
        setIf(raw, 'client_id', o.clientId);
        setIf(raw, 'client_secret', secret);
        if (o.scopes !== undefined) raw.client_scopes = o.scopes.trim().replace(/\s+/g, ' ');
        setIf(raw, 'login_provisioning', o.loginProvisioning);
        setIf(raw, 'ignore_ssl_error', o.ignoreSslError);
        setIf(raw, 'redirect_url', o.redirectUrl);
        const issuer = (raw.issuer ?? '').trim();
        if (issuer !== '' && (!raw.token_url || !raw.userinfo_url || !raw.authorize_url)) {
          // Validate the issuer URL (and the transport rule) before any network call.
          const pre = parseIdpSettings({ ...raw, token_url: raw.token_url || issuer, userinfo_url: raw.userinfo_url || issuer });
          if (!pre.ok) throw problemsFailure(pre.problems);
          let found;
          try {
            found = await discoverOidc(issuer, { timeoutMs: config.idp.timeoutMs, ignoreSslError: raw.ignore_ssl_error === '1' });
          } catch (err) {
            throw new CliFailure(
              `discovery at ${issuer}/.well-known/openid-configuration failed: ${err instanceof Error ? err.message : String(err)}; check --issuer, or give --token-url, --userinfo-url and --authorize-url explicitly`,
              EXIT.FAILED,
              { code: err instanceof MailauthError ? err.code : null },
            );
          }
          if (!raw.token_url) raw.token_url = found.tokenUrl;
          if (!raw.userinfo_url && found.userinfoUrl) raw.userinfo_url = found.userinfoUrl;
          if (!raw.authorize_url && found.authorizeUrl) raw.authorize_url = found.authorizeUrl;
        }
        return applySettings(app, cmd, config, db, raw, o.test === true);
      }),
    );

  set
    .command('ldap')
    .description('use an LDAP directory or Active Directory: bind as the user at login, sync and import users')
    .option('--preset <name>', `fill in the defaults of a directory type: ${LDAP_PRESETS.join(' | ')} (flags you give win)`)
    .option('--host <hosts>', 'host name(s) or address(es), comma-separated; tried in order (failover)')
    .option('--port <port>', 'port (default 389, or 636 with --ssl)', intOption('--port', 1, 65535))
    .option('--ssl', 'LDAPS: TLS from the first byte (port 636)')
    .option('--no-ssl')
    .option('--starttls', 'StartTLS on the plain LDAP port')
    .option('--no-starttls')
    .option('--base-dn <dn>', 'where users live, e.g. ou=people,dc=example,dc=org')
    .option('--bind-dn <dn>', 'service account that searches the directory (read access to users)')
    .option('--bind-password-file <file>', 'read the service account password from this file')
    .option('--bind-password-stdin', 'read the service account password from the first line of standard input')
    .option('--username-field <attr>', 'attribute a login name is matched against (default mail; AD: userPrincipalName)')
    .option('--attribute-field <attr>', 'attribute whose value picks the mailbox template through `idp map` (e.g. employeeType, department)')
    .option('--filter <filter>', 'LDAP filter users must match, e.g. "(objectClass=inetOrgPerson)"')
    .option('--ca-file <pem>', 'trust this CA (PEM) for LDAPS/StartTLS besides the system store')
    .option('--connect-timeout <duration>', 'per host, e.g. 3s (default 3s)')
    .option('--op-timeout <duration>', 'per search or bind, e.g. 5s (default 5s; a login still ends at auth.deadline)')
    .option('--periodic-sync', 're-apply mapped templates to ldap mailboxes on `mailauth sync`')
    .option('--no-periodic-sync')
    .option('--import-users', 'create mailboxes for directory users on `mailauth sync`')
    .option('--no-import-users')
    .option('--sync-interval <minutes>', 'minimum minutes between sync runs (default 15)', intOption('--sync-interval', 1, 10_080))
    .option('--login-provisioning', 'create a missing mailbox on its first successful login (default on)')
    .option('--no-login-provisioning')
    .option('--ignore-ssl-error', 'do not verify the directory certificate; not recommended')
    .option('--no-ignore-ssl-error')
    .option('--test', 'run the idp test first and save only when it passes')
    .addHelpText(
      'after',
      `
The service account password is read from a file (--bind-password-file, chmod 600) or
the first line of standard input (--bind-password-stdin); it never goes on the command
line. When the source stays the same, flags you leave out keep their stored values.
Presets:
  openldap  ${LDAP_PRESET_DEFAULTS.openldap.what}
  ad        ${LDAP_PRESET_DEFAULTS.ad.what}
With --test the settings are tested first (like \`mailauth idp test\`) and saved only
when every required check passes. See docs/ldap.md.

Examples:
  mailauth idp set ldap --preset openldap --host ldap1.example.org,ldap2.example.org --starttls \\
      --base-dn ou=people,dc=example,dc=org --bind-dn cn=mailauth,ou=services,dc=example,dc=org \\
      --bind-password-file /etc/mailauth/ldap.secret --attribute-field employeeType --test
  mailauth idp set ldap --preset ad --host dc1.corp.example --ssl --ca-file /etc/ssl/corp-ca.pem \\
      --base-dn "OU=Staff,DC=corp,DC=example" --bind-dn "CN=svc-mail,OU=Service,DC=corp,DC=example" \\
      --bind-password-stdin < secret.txt
  mailauth idp set ldap --import-users --periodic-sync      switch sync on, keep the rest`,
    )
    .action(
      app.action(async (o: SetLdap, cmd: Command) => {
        const config = app.config(cmd);
        if (o.preset !== undefined && !(LDAP_PRESETS as readonly string[]).includes(o.preset)) throw usage(`--preset: expected ${LDAP_PRESETS.join(' or ')}, got ${JSON.stringify(o.preset)}`);
        const connectTimeout = durationFlag('--connect-timeout', o.connectTimeout, 100, 120_000);
        const opTimeout = durationFlag('--op-timeout', o.opTimeout, 100, 600_000);
        const secret = await readSecret(app, o.bindPasswordFile, o.bindPasswordStdin, { file: '--bind-password-file', stdin: '--bind-password-stdin', what: 'bind password' });
        const db = app.db(config);
        const raw = await baseRaw(db, 'ldap');
        raw.authsource = 'ldap';
        if (o.preset !== undefined) {
          const p = LDAP_PRESET_DEFAULTS[o.preset as LdapPreset];
          raw.preset = o.preset;
          raw.username_field = p.usernameField;
          raw.filter = p.filter;
        }
        setIf(raw, 'host', o.host?.split(',').map((h) => h.trim()).filter((h) => h !== '').join(','));
        setIf(raw, 'use_ssl', o.ssl);
        setIf(raw, 'use_tls', o.starttls);
        // LDAPS without a port: 636, unless a port was stored or given.
        if (o.port !== undefined) raw.port = String(o.port);
        else if (o.ssl === true && (raw.port ?? '') === '') raw.port = String(DEFAULT_LDAPS_PORT);
        setIf(raw, 'basedn', o.baseDn);
        setIf(raw, 'binddn', o.bindDn);
        setIf(raw, 'bindpass', secret);
        setIf(raw, 'username_field', o.usernameField);
        setIf(raw, 'attribute_field', o.attributeField);
        setIf(raw, 'filter', o.filter);
        setIf(raw, 'ca_file', o.caFile);
        setIf(raw, 'connect_timeout', connectTimeout);
        setIf(raw, 'op_timeout', opTimeout);
        setIf(raw, 'periodic_sync', o.periodicSync);
        setIf(raw, 'import_users', o.importUsers);
        setIf(raw, 'sync_interval', o.syncInterval);
        setIf(raw, 'login_provisioning', o.loginProvisioning);
        setIf(raw, 'ignore_ssl_error', o.ignoreSslError);
        return applySettings(app, cmd, config, db, raw, o.test === true);
      }),
    );

  idp
    .command('show')
    .description('show the identity provider settings (secrets masked) and the template mapping')
    .addHelpText('after', '\nExamples:\n  mailauth idp show\n  mailauth idp show --json')
    .action(
      app.action(async (_o: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const { raw, parsed } = await readIdpState(db);
        const known = await templateNames(db);
        const mapping = parsed.ok && parsed.settings ? parsed.settings.mapping : null;
        const data = {
          configured: (raw.authsource ?? '').trim() !== '',
          source: (raw.authsource ?? '').trim() || null,
          valid: parsed.ok,
          problems: parsed.ok ? [] : parsed.problems,
          settings: parsed.ok && parsed.settings ? maskSettings(parsed.settings) : null,
          raw: maskRaw(raw),
        };
        app.print(cmd, data, () => {
          if (!data.configured) return 'no identity provider configured (mailcow passwords only); set one with `mailauth idp set keycloak …`\n';
          if (!parsed.ok) {
            return (
              `the stored ${data.source} settings are invalid:\n${parsed.problems.map((p) => `  - ${flagLabel(p.key)}: ${p.message}\n`).join('')}\nstored keys (secrets masked):\n` +
              keyValues(Object.entries(data.raw).sort())
            );
          }
          return keyValues(describe(parsed.settings as IdpSettings)) + '\n' + (mapping ? mappingText(mapping, known) : '');
        });
      }),
    );

  idp
    .command('delete')
    .description('remove the identity provider settings (refused while any mailbox uses an IdP)')
    .addHelpText(
      'after',
      `
Refused while any mailbox has an authsource other than mailcow; move those first with
\`mailauth mailbox set-authsource USER mailcow\` (their stored password comes back).

Examples:
  mailauth idp delete --yes`,
    )
    .action(
      app.action(async (_o: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const { raw } = await readIdpState(db);
        if (Object.keys(raw).length === 0) throw new CliFailure('no identity provider is configured', EXIT.FAILED);
        await confirm(app, cmd, `Delete the ${raw.authsource || 'identity provider'} settings and the template mapping?`);
        const r = await deleteIdpSettings(db);
        app.print(cmd, { deleted: true, source: r.source, keys: r.deletedKeys }, () => `deleted the ${r.source ?? 'identity provider'} settings (${r.deletedKeys} keys)\n`);
      }),
    );

  idp
    .command('test')
    .description('check the stored IdP settings end to end: a checklist with the cause and fix of each problem')
    .option('--user <email>', "look this user up and report their template and password scheme (never the hash)")
    .option('--password-stdin', 'generic OIDC / LDAP: read the --user password from stdin and test a login (password grant / bind)')
    .option('--scan <n>', 'users to read for the attribute and mapping checks (default 1000)', intOption('--scan', 1, 1_000_000))
    .addHelpText(
      'after',
      `
Exit 0 when every required check passes (warnings allowed), 1 otherwise.

Examples:
  mailauth idp test
  mailauth idp test --user alice@example.org --json`,
    )
    .action(
      app.action(async (o: { user?: string; passwordStdin?: boolean; scan?: number }, cmd: Command) => {
        const config = app.config(cmd);
        if (o.passwordStdin && o.user === undefined) throw usage('--password-stdin needs --user');
        const password = o.passwordStdin ? ((await readStdin(app.io)).split(/\r?\n/)[0] ?? '') : undefined;
        const db = app.db(config);
        const settings = await loadIdpSettings(db);
        if (!settings) throw new CliFailure('no identity provider is configured; set one with `mailauth idp set keycloak …`, `mailauth idp set generic-oidc …` or `mailauth idp set ldap …`', EXIT.USAGE);
        const checks = await runIdpTest(settings, testDeps(config, db), {
          ...(o.user === undefined ? {} : { user: o.user.trim() }),
          ...(password === undefined ? {} : { password }),
          ...(o.scan === undefined ? {} : { scanLimit: o.scan }),
        });
        const passed = checklistPassed(checks);
        app.print(cmd, { source: settings.source, passed, checks }, () => renderChecks(checks));
        return passed ? EXIT.OK : EXIT.FAILED;
      }),
    );

  const map = idp
    .command('map')
    .description('map mailcow_template attribute values to mailbox templates')
    .addHelpText(
      'after',
      `
A user's mailcow_template value picks the mailbox template for provisioning and sync;
values without a mapping get the default template, or are skipped when there is none.

Examples:
  mailauth idp map add staff Staff
  mailauth idp map default Default
  mailauth idp map list`,
    );

  map
    .command('list')
    .description('list the mappings and the default template')
    .addHelpText('after', '\nExamples:\n  mailauth idp map list\n  mailauth idp map list --json')
    .action(
      app.action(async (_o: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const m = await readMapping(db);
        const known = await templateNames(db);
        app.print(
          cmd,
          {
            mappings: m.mappers.map((v, i) => ({ value: v, template: m.templates[i], templateExists: known.includes(m.templates[i] ?? '') })),
            default: m.defaultTemplate,
            defaultExists: m.defaultTemplate === null ? null : known.includes(m.defaultTemplate),
          },
          () => mappingText(m, known),
        );
      }),
    );

  map
    .command('add <value> <template>')
    .description('map a mailcow_template value to a mailbox template (replaces an existing mapping of the value)')
    .addHelpText('after', '\nExamples:\n  mailauth idp map add staff Staff\n  mailauth idp map add "external partner" Guests')
    .action(
      app.action(async (value: string, template: string, _o: unknown, cmd: Command) => {
        const problem = mappingValueProblem(value);
        if (problem) throw usage(`value ${JSON.stringify(value)} ${problem}`);
        if (template.trim() === '') throw usage('the template name is empty');
        const config = app.config(cmd);
        const db = app.db(config);
        const r = await updateMapping(db, (m) => {
          const w = withMapping(m, value, template);
          return { mapping: w.mapping, result: w.replaced };
        });
        app.print(cmd, { value, template, replaced: r.result }, () => `mapped ${JSON.stringify(value)} → ${template}${r.result !== null && r.result !== template ? ` (was ${r.result})` : ''}\n`);
      }),
    );

  map
    .command('remove <value>')
    .description('remove the mapping of a value')
    .addHelpText('after', '\nExamples:\n  mailauth idp map remove staff')
    .action(
      app.action(async (value: string, _o: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        await updateMapping(db, (m) => {
          const next = withoutMapping(m, value);
          if (next === null) {
            throw new MailauthError('ERR_NOT_FOUND', `${JSON.stringify(value)} is not mapped (see \`mailauth idp map list\`)`);
          }
          return { mapping: next, result: null };
        });
        app.print(cmd, { removed: value }, () => `removed the mapping of ${JSON.stringify(value)}\n`);
      }),
    );

  map
    .command('default [template]')
    .description('set the template for users whose value is not mapped, or --none to skip them')
    .option('--none', 'no default: unmapped users are skipped by provisioning and sync')
    .addHelpText('after', '\nExamples:\n  mailauth idp map default Default\n  mailauth idp map default --none')
    .action(
      app.action(async (template: string | undefined, o: { none?: boolean }, cmd: Command) => {
        if ((template === undefined) === !o.none) throw usage('give either a TEMPLATE or --none');
        if (template !== undefined && template.trim() === '') throw usage('the template name is empty');
        const config = app.config(cmd);
        const db = app.db(config);
        const value = template ?? null;
        await updateMapping(db, (m) => ({ mapping: { ...m, defaultTemplate: value }, result: null }));
        app.print(cmd, { default: value }, () => (value ? `default template: ${value}\n` : 'no default template: unmapped users are skipped\n'));
      }),
    );
}
