/**
 * For the IdP login tests (issue 7): the daemon (startDaemon → createServer)
 * on 127.0.0.1:0 against a test database, with its log lines captured, plus
 * the identity_provider rows for a Keycloak double or an OIDC provider.
 */
import { startDaemon } from '../../src/cli/serve.js';
import type { Daemon } from '../../src/cli/serve.js';
import { writeIdpSettings } from '../../src/db/index.js';
import { createTemplate } from '../../src/provisioning/index.js';
import type { KeycloakDouble } from './keycloak-double.js';
import type { OidcOp } from './oidc-op.js';
import { testConfig } from './db.js';
import type { TestDatabase } from './db.js';
import { captureLog } from './log-capture.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface PassdbAnswer {
  result: string;
  user?: string;
  reason?: string;
}

export interface IdpDaemon {
  daemon: Daemon;
  url: string;
  /** Every log line so far, parsed. */
  logs: Record<string, unknown>[];
  /** Raw log text, for "no secret in the log" checks. */
  logText(): string;
  passdb(user: string, password: string, service?: string): Promise<PassdbAnswer>;
  /** The last decision line logged for this user: the full reason (callers over HTTP get a generic one, issue 16). */
  decision(user: string): Record<string, unknown> | undefined;
  metrics(): Promise<string>;
  /** Forget cached IdP answers and settings, so the next login asks the IdP and re-reads the table. */
  forgetIdp(): void;
}

export async function startIdpDaemon(t: Teardown, tdb: TestDatabase, yaml: Record<string, unknown> = {}): Promise<IdpDaemon> {
  const over = yaml as { listen?: object; log?: object };
  const config = testConfig(tdb, {
    ...yaml,
    listen: { address: '127.0.0.1:0', ...over.listen },
    // Off unless asked for: the shutdown flush would race the test database's teardown.
    login_log: { enabled: false, ...(yaml as { login_log?: object }).login_log },
    // Off unless asked for: these scenarios send many wrong passwords and tokens from one address to
    // test IdP decisions; the throttle in front (issue 17) has its own tests.
    throttle: { enabled: false, ...(yaml as { throttle?: object }).throttle },
    log: { level: 'debug', format: 'json', ...over.log },
  });
  const { logger, lines: logs, text } = captureLog(config.log.level);
  const daemon = await startDaemon(config, { db: tdb.db, logger });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url;
  if (!url) throw new Error('daemon has no address');
  return {
    daemon,
    url,
    logs,
    logText: text,
    decision: (user) => logs.filter((l) => l.msg === 'passdb decision' && l.user === user).at(-1),
    async passdb(user, password, service = 'imap') {
      const res = await fetch(`${url}/v1/passdb`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user, password, service, remote_ip: '192.0.2.10' }),
      });
      if (res.status !== 200) throw new Error(`passdb answered HTTP ${res.status}: ${await res.text()}`);
      return (await res.json()) as PassdbAnswer;
    },
    async metrics() {
      return (await fetch(`${url}/metrics`)).text();
    },
    forgetIdp() {
      daemon.idp.runtime.caches.user.clear();
      daemon.idp.runtime.caches.grant.clear();
      daemon.idp.runtime.invalidateSettings();
      daemon.caches.account.clear();
    },
  };
}

export interface KeycloakRows {
  mailpassword_flow?: '0' | '1';
  login_provisioning?: '0' | '1';
  mappers?: string[];
  templates?: string[];
  default_template?: string;
  /** Any other identity_provider rows (sync switches…); these win over the ones above. */
  extra?: Record<string, string>;
}

/** identity_provider rows for the double, in mailcow's key/value format. */
export async function setKeycloakIdp(tdb: TestDatabase, kc: KeycloakDouble, rows: KeycloakRows = {}): Promise<void> {
  await writeIdpSettings(tdb.db, {
    authsource: 'keycloak',
    server_url: kc.serverUrl,
    realm: kc.realm,
    client_id: 'mailauth',
    client_secret: 'kc-secret',
    mailpassword_flow: rows.mailpassword_flow ?? '1',
    login_provisioning: rows.login_provisioning ?? '1',
    periodic_sync: '0',
    import_users: '0',
    sync_interval: '15',
    ignore_ssl_error: '0',
    mappers: JSON.stringify(rows.mappers ?? ['staff', 'student']),
    templates: JSON.stringify(rows.templates ?? ['Staff', 'Student']),
    default_template: rows.default_template ?? '',
    ...rows.extra,
  });
}

/** identity_provider rows for a generic-oidc provider (test/helpers/oidc-op.ts) with its default `mailauth` client. */
export async function setOidcIdp(tdb: TestDatabase, op: OidcOp, rows: { login_provisioning: '0' | '1' }): Promise<void> {
  await writeIdpSettings(tdb.db, {
    authsource: 'generic-oidc',
    issuer: op.issuer,
    token_url: op.tokenUrl,
    userinfo_url: op.userinfoUrl,
    authorize_url: op.authorizeUrl,
    client_id: 'mailauth',
    client_secret: 'op-secret',
    client_scopes: 'openid profile email',
    login_provisioning: rows.login_provisioning,
    ignore_ssl_error: '0',
  });
}

/** The mailbox templates the tests map to (quotas in bytes, as mailcow stores them). */
export async function seedTemplates(tdb: TestDatabase): Promise<void> {
  await tdb.db.transaction(async (tx) => {
    for (const [name, attrs] of [
      ['Staff', { quota: 2048 * 1024 * 1024, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '1', acl_spam_alias: '1' }],
      ['Student', { quota: 512 * 1024 * 1024, imap_access: '1', pop3_access: '1', smtp_access: '1', sieve_access: '0', acl_spam_alias: '0' }],
    ] as const) {
      const r = await createTemplate(tx, name, attrs);
      if ('refused' in r) throw new Error(r.message);
    }
  });
}
