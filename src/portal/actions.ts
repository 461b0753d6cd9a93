/**
 * What a signed-in user may do, always to their own mailbox: the username
 * comes from the session, never from a form. Writes go through the same
 * provisioning functions as the CLI, each in one transaction, and every
 * change is reported to `changed` — the daemon's one hook that drops the
 * account cache entry and tells Dovecot (src/dovecot once issue 17 lands).
 */
import { ACCESS_FLAGS } from '../config/index.js';
import type { AccessFlag, PortalConfig } from '../config/index.js';
import type { Db } from '../db/index.js';
import { findAccount, lastLogins } from '../db/index.js';
import { hash } from '../passwords/index.js';
import { addAppPassword, generateAppPassword, inTransaction, isRefusal, listMailboxAppPasswords, removeAppPassword, setMailboxPassword } from '../provisioning/index.js';
import type { Refusal } from '../provisioning/index.js';

export type ChangeKind = 'app_password_created' | 'app_password_revoked' | 'password_changed';

/** Called after every committed change, before the user sees the result. */
export type ChangeHook = (username: string, kind: ChangeKind) => Promise<void>;

export interface AppPasswordView {
  id: number;
  name: string;
  protocols: AccessFlag[];
  created: string;
  lastUsed: string | null;
}

export interface LoginView {
  service: string;
  ip: string;
  time: string;
  appPassword: string | null;
}

export interface MailboxView {
  username: string;
  name: string;
  authsource: string;
  /** Protocols the mailbox itself may use (its <flag>_access attributes). */
  allowed: AccessFlag[];
  appPasswords: AppPasswordView[];
  logins: LoginView[];
}

export interface ActionsOptions {
  db: Db;
  hashing: { scheme: string; bcryptCost: number };
  maxAppPasswords: number;
  maxPasswordBytes: number;
  policy: PortalConfig['passwordPolicy'];
  recentLogins: number;
  changed: ChangeHook;
}

export type ActionRefusal = Refusal<string>;

function allowedFlags(attributes: Record<string, unknown>): AccessFlag[] {
  return ACCESS_FLAGS.filter((f) => {
    const v = attributes[`${f}_access`];
    return v === '1' || v === 1;
  });
}

/** The configured policy's complaints about a new password (empty: acceptable). */
export function policyProblems(pw: string, policy: PortalConfig['passwordPolicy'], maxBytes: number): string[] {
  const out: string[] = [];
  if ([...pw].length < policy.minLength) out.push(`at least ${policy.minLength} characters`);
  if (Buffer.byteLength(pw, 'utf8') > maxBytes) out.push(`at most ${maxBytes} bytes`);
  if (policy.lowerupper && !(/\p{Ll}/u.test(pw) && /\p{Lu}/u.test(pw))) out.push('both lower-case and upper-case letters');
  if (policy.numbers && !/\p{Nd}/u.test(pw)) out.push('a digit');
  if (policy.special && !/[^\p{L}\p{Nd}]/u.test(pw)) out.push('a character that is neither a letter nor a digit');
  if (/[\u0000-\u001f\u007f]/.test(pw)) out.push('no control characters');
  return out;
}

export interface Actions {
  /** The signed-in user's mailbox, app passwords and recent logins; null when the mailbox is gone. */
  view(username: string): Promise<MailboxView | null>;
  createAppPassword(username: string, name: string, protocols: readonly string[]): Promise<{ id: number; name: string; password: string; protocols: AccessFlag[] } | ActionRefusal>;
  revokeAppPassword(username: string, id: number): Promise<{ id: number } | ActionRefusal>;
  /** The caller has verified the current password; this checks the policy and stores the new one. */
  changePassword(username: string, newPassword: string): Promise<{ username: string } | ActionRefusal>;
}

export function createActions(opts: ActionsOptions): Actions {
  const { db } = opts;
  return {
    async view(username) {
      const account = await findAccount(db, username);
      if (!account) return null;
      const [apps, logins] = await Promise.all([listMailboxAppPasswords(db, account.username), lastLogins(db, account.username)]);
      if (isRefusal(apps)) return null;
      const lastUse = new Map<number, string>();
      for (const l of logins) {
        if (l.appPassword !== 0 && !lastUse.has(l.appPassword)) lastUse.set(l.appPassword, l.datetime); // newest first
      }
      const names = new Map(apps.map((a) => [a.id, a.name]));
      return {
        username: account.username,
        name: account.name,
        authsource: account.authsource,
        allowed: allowedFlags(account.attributes),
        appPasswords: apps.map((a) => ({
          id: a.id,
          name: a.name,
          protocols: ACCESS_FLAGS.filter((f) => a.access[f] === 1),
          created: a.created,
          lastUsed: lastUse.get(a.id) ?? null,
        })),
        logins: logins.slice(0, opts.recentLogins).map((l) => ({
          service: l.service,
          ip: l.realRip,
          time: l.datetime,
          appPassword: l.appPassword === 0 ? null : (names.get(l.appPassword) ?? `#${l.appPassword} (revoked)`),
        })),
      };
    },

    async createAppPassword(username, name, protocols) {
      const account = await findAccount(db, username);
      if (!account) return { refused: 'mailbox_missing', message: 'your mailbox no longer exists' };
      const allowed = allowedFlags(account.attributes);
      const wanted = [...new Set(protocols)];
      const unknown = wanted.filter((p) => !(allowed as string[]).includes(p));
      if (unknown.length > 0) return { refused: 'invalid_protocols', message: `your mailbox may not use ${unknown.join(', ')}` };
      if (wanted.length === 0) return { refused: 'invalid_protocols', message: 'choose at least one protocol' };
      const trimmed = name.trim();
      if (trimmed === '' || trimmed.length > 255 || /[\u0000-\u001f\u007f]/.test(trimmed)) {
        return { refused: 'invalid_name', message: 'the name must be 1-255 characters without control characters' };
      }
      const password = generateAppPassword();
      const passwordHash = await hash(opts.hashing.scheme, password, { bcryptCost: opts.hashing.bcryptCost });
      const access = Object.fromEntries(ACCESS_FLAGS.map((f) => [f, wanted.includes(f) ? 1 : 0])) as Record<AccessFlag, 0 | 1>;
      const r = await inTransaction(db, async (tx) => {
        const existing = await listMailboxAppPasswords(tx, account.username);
        if (!isRefusal(existing) && existing.filter((a) => a.active === 1).length >= opts.maxAppPasswords) {
          return { refused: 'too_many', message: `you already have ${opts.maxAppPasswords} app passwords; revoke one you no longer use first` };
        }
        return addAppPassword(tx, { username: account.username, name: trimmed, passwordHash, access });
      });
      if ('refused' in r) return r as ActionRefusal;
      await opts.changed(account.username, 'app_password_created');
      return { id: r.id, name: r.name, password, protocols: ACCESS_FLAGS.filter((f) => access[f] === 1) };
    },

    async revokeAppPassword(username, id) {
      // removeAppPassword deletes only WHERE id = ? AND mailbox = ?: another mailbox's id is simply "missing".
      const r = await inTransaction(db, (tx) => removeAppPassword(tx, username, id));
      if (isRefusal(r)) return { refused: r.refused, message: 'no such app password' };
      await opts.changed(username, 'app_password_revoked');
      return { id: r.id };
    },

    async changePassword(username, newPassword) {
      const problems = policyProblems(newPassword, opts.policy, opts.maxPasswordBytes);
      if (problems.length > 0) return { refused: 'password_policy', message: `the new password needs ${problems.join(', ')}` };
      const passwordHash = await hash(opts.hashing.scheme, newPassword, { bcryptCost: opts.hashing.bcryptCost });
      const r = await inTransaction(db, async (tx) => {
        const account = await findAccount(tx, username);
        if (!account) return { refused: 'mailbox_missing', message: 'your mailbox no longer exists' };
        if (account.authsource !== 'mailcow') return { refused: 'not_local', message: 'this mailbox signs in with the identity provider; change the password there' };
        return setMailboxPassword(tx, username, passwordHash);
      });
      if ('refused' in r) return r as ActionRefusal;
      await opts.changed(r.username, 'password_changed');
      return { username: r.username };
    },
  };
}
