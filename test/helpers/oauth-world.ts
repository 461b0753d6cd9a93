/**
 * For the OAuth token-login tests (issue 20): Keycloak-sourced mailboxes, the
 * Keycloak double with a mail client whose tokens carry the `mail` scope and
 * the `mail-server` audience, and the daemon with OAuth on behind a listen
 * token file (2.4's oauth2 settings send it as the Basic-auth password of
 * introspection_url). The IMAP and SMTP e2e tests share it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, seedDomain, seedMailbox } from './db.js';
import type { TestDatabase } from './db.js';
import { docBlock } from './doc-blocks.js';
import { seedTemplates, setKeycloakIdp, startIdpDaemon } from './idp-login.js';
import type { IdpDaemon } from './idp-login.js';
import { startKeycloakDouble } from './keycloak-double.js';
import type { DoubleClient, KeycloakDouble } from './keycloak-double.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** mailauth's own client (admin API) and the public mail client whose tokens are meant for the mail server. */
export const MAIL_CLIENTS: DoubleClient[] = [
  { clientId: 'mailauth', secret: 'kc-secret', serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] },
  // The mail client: public, with the optional "mail" scope and an Audience mapper for the mail server.
  { clientId: 'thunderbird', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [], optionalScopes: ['mail'], audience: ['mail-server'] },
];

/** The daemon's `oauth` section that accepts the mail client's tokens. */
export const MAIL_OAUTH = { enabled: true, audiences: ['mail-server'], clients: ['thunderbird'], required_scopes: ['mail'] };

/** An access token from the double's token endpoint (password grant `pw-<user>`, as a test stand-in for the code flow). */
export async function accessToken(kc: KeycloakDouble, user: string, o: { client?: string; scope?: string } = {}): Promise<string> {
  const res = await fetch(`${kc.serverUrl}/realms/${kc.realm}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', client_id: o.client ?? 'thunderbird', username: user, password: `pw-${user}`, scope: o.scope ?? 'openid mail' }).toString(),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`token: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** docs/oauth.md's Dovecot 2.4 oauth2 block, pointed at this daemon with this listen token. */
export function dovecot24OAuth2(listenToken: string, daemonUrl: string): string {
  const port = new URL(daemonUrl).port;
  return docBlock('dovecot24-oauth2').replace('MAILAUTH_LISTEN_TOKEN', listenToken).replace('127.0.0.1:9082', `127.0.0.1:${port}`);
}

export interface OAuthWorldOptions {
  /** One Keycloak user (password `pw-<name>`) and one keycloak-sourced mailbox `<name>@example.org` each. */
  users: string[];
  /** Mailbox attributes by user name (a protocol switched off, say). */
  attributes?: Record<string, Record<string, string>>;
  /** More daemon configuration (log level…). */
  daemon?: Record<string, unknown>;
}

export interface OAuthWorld {
  tdb: TestDatabase;
  kc: KeycloakDouble;
  d: IdpDaemon;
  listenToken: string;
  tokenFile: string;
}

export async function startOAuthWorld(t: Teardown, o: OAuthWorldOptions): Promise<OAuthWorld> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  for (const u of o.users) await seedMailbox(tdb, `${u}@example.org`, '', { authsource: 'keycloak', attributes: o.attributes?.[u] });
  const kc = await startKeycloakDouble({
    users: o.users.map((u) => ({ username: u, email: `${u}@example.org`, enabled: true, emailVerified: true, password: `pw-${u}` })),
    clients: structuredClone(MAIL_CLIENTS),
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '0' });
  const dir = mkdtempSync(join(tmpdir(), 'oauth-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const listenToken = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${listenToken}\n`, { mode: 0o644 });
  const d = await startIdpDaemon(t, tdb, { ...o.daemon, listen: { token_file: tokenFile }, oauth: MAIL_OAUTH });
  return { tdb, kc, d, listenToken, tokenFile };
}
