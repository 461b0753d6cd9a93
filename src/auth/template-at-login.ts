/** Re-applying a mapped template after a successful IdP login, shared by the Keycloak and LDAP sources. */
import { logFault } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { provisionMailbox } from '../provisioning/index.js';
import type { IdpRuntime } from './idp-runtime.js';
import type { IdpSnapshot } from './idp-settings-source.js';
import type { templateDecision } from './idp-user.js';

/**
 * Carry out a template decision made at login (Keycloak's mailpassword flow, an LDAP bind): shared
 * so that both sources refuse, count, log and forget the cached account the same way.
 */
export async function applyTemplateDecision(
  rt: IdpRuntime,
  snap: IdpSnapshot,
  mailbox: { username: string },
  d: ReturnType<typeof templateDecision>,
  authsource: 'keycloak' | 'ldap',
  log: Logger,
): Promise<void> {
  if (!d.apply) {
    if (d.reason !== 'unchanged') log.debug({ mailbox: mailbox.username }, `template not re-applied: ${d.reason}`);
    return;
  }
  const template = snap.templates.get(d.template);
  if (template === undefined) return;
  try {
    const r = await rt.db.transaction((tx) =>
      provisionMailbox(tx, { username: mailbox.username, name: d.name, template: template.input, passwordHash: '', authsource }, { mode: 'update' }),
    );
    if ('refused' in r) {
      log.warn({ mailbox: mailbox.username, template: d.template, refused: r.refused }, `template not re-applied at login: ${r.message}`);
      return;
    }
    if (r.action === 'updated') {
      rt.counters.templateApplied++;
      log.info({ mailbox: mailbox.username, template: r.template, why: d.why }, 'template re-applied at login');
    }
    // 'unchanged': the cached account was older than the row; either way the cached copy goes.
    rt.mailboxChanged(mailbox.username);
  } catch (err) {
    logFault(log, 'warn', { mailbox: mailbox.username, template: d.template }, 'template not re-applied at login (database error); the login goes on', err);
  }
}
