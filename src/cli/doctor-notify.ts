/**
 * `mailauth doctor`: Dovecot notifications that failed (issue 17). A change mailauth
 * made (password, app password, disable, …) that a Dovecot was not told about means
 * that Dovecot may still accept an old password from its auth cache.
 */
import type { Config } from '../config/index.js';
import type { Queryable } from '../db/index.js';
import { dovecotPendingStore } from '../db/index.js';
import type { Check } from './doctor-checks.js';

export async function dovecotNotifyChecks(config: Config, db: Queryable): Promise<Check[]> {
  if (!config.dovecot.notify) {
    return [{ id: 'dovecot-notify', status: 'warn', title: 'dovecot.notify is off: after a password change, app-password delete or disable, Dovecot keeps accepting the old password from its auth cache until auth_cache_ttl', fix: 'set dovecot.notify: true and list your Dovecot hosts under dovecot.hosts (docs/security.md "Offboarding")' }];
  }
  let pending;
  try {
    pending = await dovecotPendingStore(db).list();
  } catch (err) {
    return [{ id: 'dovecot-notify', status: 'fail', title: 'cannot read mailauth_dovecot_pending', detail: err instanceof Error ? err.message : String(err), fix: 'mailauth db migrate (creates the missing table)' }];
  }
  if (pending.length === 0) return [{ id: 'dovecot-notify', status: 'pass', title: `Dovecot notifications: none pending (${config.dovecot.hosts.map((h) => h.name).join(', ') || 'no hosts'})` }];
  const lines = pending.slice(0, 10).map((p) => `${p.host}: ${p.action === 'flush' ? 'auth cache flush' : 'kick'} ${p.user} — ${p.attempts} attempt(s) since ${p.firstFailed.toISOString()}: ${p.lastError}`);
  return [
    {
      id: 'dovecot-notify',
      status: 'warn',
      title: `${pending.length} Dovecot notification(s) pending: those users may still log in with an old password from Dovecot's auth cache`,
      detail: lines.join('\n    ') + (pending.length > 10 ? `\n    … and ${pending.length - 10} more` : ''),
      fix: 'make the host reachable (the running daemon retries every minute), or on that host run the doveadm command shown, then it clears',
    },
  ];
}
