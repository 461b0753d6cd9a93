/**
 * Whether the configured IdP can be synced at all. Pure: the CLI reads the
 * settings and turns a refusal into its message and exit code.
 */
import type { IdpSettings, KeycloakSettings, LdapSettings } from '../idp/index.js';

/** Base name of the advisory lock; the database name is appended (lock names are server-wide). */
export const SYNC_LOCK_NAME = 'mailauth-sync';

export type SyncPrecondition =
  | { ok: true; settings: KeycloakSettings | LdapSettings }
  /**
   * not_configured / unsupported_source: a configuration error (exit 2).
   * disabled: periodic_sync and import_users are both off; the operator
   * switched sync off (possibly in mailcow's UI), so cron should stay quiet (exit 0).
   */
  | { ok: false; status: 'not_configured' | 'unsupported_source' | 'disabled'; message: string };

export function syncPreconditions(settings: IdpSettings | null): SyncPrecondition {
  if (settings === null) {
    return {
      ok: false,
      status: 'not_configured',
      message: 'no identity provider is configured; set one up with `mailauth idp set keycloak --server-url URL --realm R --client-id ID --client-secret-file F --import-users`',
    };
  }
  if (settings.source === 'generic-oidc') {
    return {
      ok: false,
      status: 'unsupported_source',
      message: 'the identity provider is generic-oidc, which has no API to list users, so there is nothing to sync; its users get mailboxes by login provisioning or `mailauth mailbox add`',
    };
  }
  if (!settings.periodicSync && !settings.importUsers) {
    return {
      ok: false,
      status: 'disabled',
      message: `sync is switched off: periodic_sync and import_users are both 0 (turn them on with \`mailauth idp set ${settings.source} … --periodic-sync --import-users\`)`,
    };
  }
  return { ok: true, settings };
}
