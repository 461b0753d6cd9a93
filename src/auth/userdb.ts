/**
 * userdb lookups (LMTP delivery, post-login, doveadm). Follows mailcow's userdb
 * query: a mailbox with active 1 or 2 (receive-only still receives mail) exists;
 * resource mailboxes receive mail too; the quota comes from the row. Home and
 * mail location stay in the Dovecot config (mail_home, mail_location).
 */
import type { Logger } from '../logging/index.js';
import { userNameProblem } from './validate.js';
import type { AccountLoader, UserdbRequest, UserdbResult } from './types.js';

export interface UserdbDeps {
  loadAccount: AccountLoader;
}

export async function decideUserdb(req: UserdbRequest, deps: UserdbDeps, _log: Logger, signal: AbortSignal): Promise<UserdbResult> {
  const bad = userNameProblem(req.user);
  if (bad) return { result: 'user_unknown', reason: bad };
  const account = await deps.loadAccount(req.user, signal);
  if (account === null) return { result: 'user_unknown', reason: 'no such mailbox' };
  const { active, username, quota } = account.mailbox;
  if (active !== 1 && active !== 2) return { result: 'user_unknown', reason: `mailbox is disabled (active=${active})` };
  const bytes = Number.isSafeInteger(quota) && quota > 0 ? quota : 0;
  // Dovecot reads bytes=0 as "no limit", as mailcow's own userdb query produces for quota 0.
  return { result: 'ok', user: username, fields: { quota_rule: `*:bytes=${bytes}` } };
}
