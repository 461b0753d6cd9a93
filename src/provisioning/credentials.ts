/**
 * A mailbox's password and authsource, and its removal. Switching the
 * authsource never touches the stored hash, so switching back to `mailcow`
 * brings the old password back.
 */
import { MailauthError } from '../errors.js';
import { AUTH_SOURCES, deleteMailbox, getMailboxForUpdate, stampPasswordUpdate, updateMailbox } from '../db/index.js';
import type { AuthSource, Queryable } from '../db/index.js';
import { normalizeAddress } from './address.js';
import { refuse } from './refusal.js';
import type { Refusal } from './refusal.js';

export type MailboxRefusal = Refusal<'invalid_address' | 'mailbox_missing'>;

async function lockMailbox(tx: Queryable, username: string) {
  const addr = normalizeAddress(username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  const mailbox = await getMailboxForUpdate(tx, addr.username);
  if (!mailbox) return refuse('mailbox_missing', `mailbox ${addr.username} does not exist`, { username: addr.username });
  return mailbox;
}

/** Store a new `{SCHEME}hash` and stamp passwd_update, whatever the mailbox's authsource. */
export async function setMailboxPassword(
  tx: Queryable,
  username: string,
  passwordHash: string,
): Promise<{ username: string; authsource: string } | MailboxRefusal> {
  if (!/^\{[A-Za-z0-9.-]+\}./.test(passwordHash)) throw new MailauthError('ERR_INVALID_INPUT', 'the password hash must be a {SCHEME}hash string');
  const mailbox = await lockMailbox(tx, username);
  if ('refused' in mailbox) return mailbox;
  await updateMailbox(tx, mailbox.username, { password: passwordHash });
  await stampPasswordUpdate(tx, mailbox.username);
  return { username: mailbox.username, authsource: mailbox.authsource };
}

export async function setMailboxAuthsource(
  tx: Queryable,
  username: string,
  authsource: AuthSource,
): Promise<{ username: string; previous: string; authsource: AuthSource; changed: boolean; hasPassword: boolean } | MailboxRefusal> {
  if (!(AUTH_SOURCES as readonly string[]).includes(authsource)) {
    throw new MailauthError('ERR_INVALID_INPUT', `unknown authsource "${String(authsource)}" (expected ${AUTH_SOURCES.join(', ')})`);
  }
  const mailbox = await lockMailbox(tx, username);
  if ('refused' in mailbox) return mailbox;
  const changed = mailbox.authsource !== authsource;
  if (changed) await updateMailbox(tx, mailbox.username, { authsource });
  return { username: mailbox.username, previous: mailbox.authsource, authsource, changed, hasPassword: mailbox.password !== '' };
}

/** Deletes the mailbox with its quota rows, self-alias, login log, app passwords and ACL (the last two by cascade). */
export async function removeMailbox(tx: Queryable, username: string): Promise<{ username: string } | MailboxRefusal> {
  const mailbox = await lockMailbox(tx, username);
  if ('refused' in mailbox) return mailbox;
  await deleteMailbox(tx, mailbox.username);
  return { username: mailbox.username };
}
