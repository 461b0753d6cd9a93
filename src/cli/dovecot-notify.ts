/**
 * The CLI end of "offboarding that takes effect at once" (issue 17): after a
 * command has committed a change to who may log in, tell every configured
 * Dovecot (src/dovecot/doveadm.ts). A Dovecot that cannot be told is a warning
 * on stderr, not a failure: the change stands, the notification is retried.
 */
import type { Config } from '../config/index.js';
import type { Queryable } from '../db/index.js';
import { dovecotPendingStore } from '../db/index.js';
import { createDovecotNotifier } from '../dovecot/index.js';
import type { DovecotChange, NotifyReport } from '../dovecot/index.js';
import type { CliApp } from './app.js';

export async function tellDovecot(app: CliApp, config: Config, db: Queryable, users: readonly string[], change: DovecotChange): Promise<NotifyReport> {
  const report: NotifyReport = { ok: true, skipped: !config.dovecot.notify, outcomes: [] };
  if (!config.dovecot.notify || users.length === 0) return report;
  // Logs at warn and above only: the command's own output says what happened.
  const logger = app.logger({ ...config, log: { ...config.log, level: config.log.level === 'info' ? 'error' : config.log.level } });
  const notifier = createDovecotNotifier({ config: config.dovecot, logger, store: dovecotPendingStore(db) });
  for (const user of users) {
    const r = await notifier.userChanged(user, change);
    report.outcomes.push(...r.outcomes);
    if (!r.ok) report.ok = false;
  }
  for (const o of report.outcomes) {
    if (!o.ok) {
      // The advice is a command to paste: quoted, after '--', and none where doveadm would read
      // another name (control characters) or a wildcard mask (kick with * or ?: see runDoveadm).
      const odd = /[\x00-\x1f\x7f]/.test(o.user);
      const who = odd ? JSON.stringify(o.user) : o.user;
      const advice = odd || (o.action === 'kick' && /[*?]/.test(o.user)) ? '' : `, or run: doveadm ${o.action === 'flush' ? 'auth cache flush' : 'kick'} -- '${o.user.replace(/'/g, "'\\''")}'`;
      app.io.stderr.write(`warning: Dovecot ${o.host} was not told to ${o.action === 'flush' ? 'forget' : 'disconnect'} ${who}: ${o.detail}\n  the change is made; mailauth retries (see mailauth doctor)${advice}\n`);
    }
  }
  return report;
}
