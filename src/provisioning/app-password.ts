/**
 * App passwords: generated here (never chosen by a person), shown once, stored
 * only as a hash, each limited to the protocols it was made for.
 */
import { randomBytes } from 'node:crypto';
import { ACCESS_FLAGS } from '../config/index.js';
import type { AccessFlag } from '../config/index.js';
import { MailauthError } from '../errors.js';
import { isResourceKind, deleteAppPassword, getMailbox, getMailboxForUpdate, insertAppPassword, listAppPasswords } from '../db/index.js';
import type { AppPasswordRow, Queryable } from '../db/index.js';
import { normalizeAddress } from './address.js';
import { refuse } from './refusal.js';
import type { Refusal } from './refusal.js';

/** No 0/O, 1/l/I: the password is read off a screen and typed into a phone. */
export const APP_PASSWORD_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789';
export const APP_PASSWORD_LENGTH = 24; // 24 × log2(56) ≈ 139 bits

/** A random app password, in groups of four joined by '-' (the dashes are part of it). */
export function generateAppPassword(random: (n: number) => Buffer = randomBytes): string {
  const alphabet = APP_PASSWORD_ALPHABET;
  // Rejection sampling keeps every character equally likely.
  const limit = 256 - (256 % alphabet.length);
  const chars: string[] = [];
  while (chars.length < APP_PASSWORD_LENGTH) {
    for (const b of random(APP_PASSWORD_LENGTH * 2)) {
      if (b < limit) chars.push(alphabet[b % alphabet.length] as string);
      if (chars.length === APP_PASSWORD_LENGTH) break;
    }
  }
  const groups: string[] = [];
  for (let i = 0; i < chars.length; i += 4) groups.push(chars.slice(i, i + 4).join(''));
  return groups.join('-');
}

/** "imap,smtp" → access flags; every protocol when `text` is undefined. */
export function parseProtocols(text: string | undefined): Record<AccessFlag, 0 | 1> | { problem: string } {
  const all = Object.fromEntries(ACCESS_FLAGS.map((f) => [f, 1])) as Record<AccessFlag, 0 | 1>;
  if (text === undefined) return all;
  const wanted = text.split(',').map((p) => p.trim().toLowerCase().replace(/_access$/, '')).filter((p) => p !== '');
  if (wanted.length === 0) return { problem: `--protocols needs at least one of ${ACCESS_FLAGS.join(', ')}` };
  const unknown = wanted.filter((p) => !(ACCESS_FLAGS as readonly string[]).includes(p));
  if (unknown.length > 0) return { problem: `unknown protocol${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${ACCESS_FLAGS.join(', ')}` };
  return Object.fromEntries(ACCESS_FLAGS.map((f) => [f, wanted.includes(f) ? 1 : 0])) as Record<AccessFlag, 0 | 1>;
}

export type AppPasswordRefusal = Refusal<'invalid_address' | 'invalid_name' | 'mailbox_missing' | 'not_a_mailbox' | 'app_password_missing'>;

export async function addAppPassword(
  tx: Queryable,
  input: { username: string; name: string; passwordHash: string; access: Record<AccessFlag, 0 | 1> },
): Promise<{ id: number; username: string; name: string } | AppPasswordRefusal> {
  if (!/^\{[A-Za-z0-9.-]+\}./.test(input.passwordHash)) throw new MailauthError('ERR_INVALID_INPUT', 'the password hash must be a {SCHEME}hash string');
  const addr = normalizeAddress(input.username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  const name = input.name.trim();
  if (name === '' || name.length > 255 || /[\u0000-\u001f\u007f]/.test(name)) {
    return refuse('invalid_name', 'the app password name must be 1-255 characters without control characters');
  }
  const mailbox = await getMailboxForUpdate(tx, addr.username);
  if (!mailbox) return refuse('mailbox_missing', `mailbox ${addr.username} does not exist`, { username: addr.username });
  if (isResourceKind(mailbox.kind)) {
    return refuse('not_a_mailbox', `${addr.username} is a resource (${mailbox.kind}), not a login mailbox`);
  }
  const id = await insertAppPassword(tx, { name, mailbox: mailbox.username, domain: mailbox.domain, password: input.passwordHash, access: input.access });
  return { id, username: mailbox.username, name };
}

/** App passwords of a mailbox without their hashes. */
export type AppPasswordInfo = Omit<AppPasswordRow, 'password'>;

export async function listMailboxAppPasswords(q: Queryable, username: string): Promise<AppPasswordInfo[] | AppPasswordRefusal> {
  const addr = normalizeAddress(username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  const rows = await listAppPasswords(q, addr.username);
  if (rows.length === 0) {
    if (!(await getMailbox(q, addr.username))) return refuse('mailbox_missing', `mailbox ${addr.username} does not exist`, { username: addr.username });
  }
  return rows.map(({ password: _password, ...rest }) => rest);
}

export async function removeAppPassword(tx: Queryable, username: string, id: number): Promise<{ id: number; username: string } | AppPasswordRefusal> {
  const addr = normalizeAddress(username);
  if ('problem' in addr) return refuse('invalid_address', addr.problem);
  if (!(await deleteAppPassword(tx, addr.username, id))) {
    return refuse('app_password_missing', `mailbox ${addr.username} has no app password with id ${id} (see mailauth app-password list ${addr.username})`);
  }
  return { id, username: addr.username };
}
