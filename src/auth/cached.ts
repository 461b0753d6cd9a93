/**
 * The caches in front of the two seams of the decision (STYLE 5): account
 * loading and hash verification. Built by the entry point and handed to
 * createAuthenticator as `loadAccount` / `verifyHash`.
 *
 * Freshness: a cached account is confirmed on every hit by a narrow query
 * (findCredentials) for what must change on the very next login — the mailbox
 * hash, app-password hashes and access flags, active flags, authsource. Only
 * the remaining fields (mailbox attributes such as imap_access, name, quota,
 * kind) may lag by up to cache.account_ttl. The verify cache needs no such
 * care: its key includes the stored hash, so a changed hash simply misses.
 */
import { createAccountCache, createBatcher, createVerifyCache, splitBudget } from '../cache/index.js';
import type { AccountCache, CacheStats, Clock, VerifyCache } from '../cache/index.js';
import type { Config } from '../config/index.js';
import { findCredentialsMany } from '../db/index.js';
import type { CredentialState, Queryable } from '../db/index.js';
import { LOGIN_ATTRIBUTES, dbAccountLoader } from './account.js';
import type { Account, AccountLoader, HashVerifier } from './types.js';

export interface AuthCaches {
  account: AccountCache<Account>;
  verify: VerifyCache;
}

export function createAuthCaches(cfg: Config['cache'], opts: { clock?: Clock; secret?: Buffer } = {}): AuthCaches {
  const budget = splitBudget(cfg.maxBytes, { verify: cfg.verifyEntries, account: cfg.accountEntries, idp: cfg.idpEntries });
  return {
    account: createAccountCache<Account>({
      maxEntries: cfg.accountEntries,
      maxBytes: budget.account,
      ttlMs: cfg.accountTtlMs,
      ...(opts.clock ? { clock: opts.clock } : {}),
    }),
    verify: createVerifyCache({ maxEntries: cfg.verifyEntries, maxBytes: budget.verify, ...(opts.secret ? { secret: opts.secret } : {}) }),
  };
}

const sameAccess = (a: Record<string, number>, b: Record<string, number>): boolean =>
  a.imap === b.imap && a.pop3 === b.pop3 && a.smtp === b.smtp && a.sieve === b.sieve && a.eas === b.eas && a.dav === b.dav;

/** Whether a cached account agrees with the credential fields just read from the database. */
export function accountIsCurrent(account: Account, s: CredentialState): boolean {
  const m = account.mailbox;
  if (m.password !== s.password || m.active !== s.active || m.domainActive !== s.domainActive || m.authsource !== s.authsource) return false;
  const apps = account.appPasswords;
  if (apps.length !== s.appPasswords.length) return false;
  for (let i = 0; i < apps.length; i++) {
    const a = apps[i];
    const b = s.appPasswords[i];
    if (!a || !b || a.id !== b.id || a.password !== b.password || a.active !== 1 || !sameAccess(a.access, b.access)) return false;
  }
  return true;
}

/**
 * One shared copy per key: the known value, or `value` (remembered while the table is under
 * SHARED_MAX and the key under `maxKey` characters). Bounded, so a database with very many
 * domains or templates stops sharing new ones instead of growing the table.
 */
const SHARED_MAX = 4096;
function intern<V>(table: Map<string, V>, key: string, value: V, maxKey: number): V {
  const known = table.get(key);
  if (known !== undefined) return known;
  if (table.size < SHARED_MAX && key.length <= maxKey) table.set(key, value);
  return value;
}

// Strings that repeat across mailboxes (domain, authsource, kind, description) come from the
// driver as a fresh copy per row; cached accounts share one copy each.
const sharedStrings = new Map<string, string>();
const share = (s: string): string => intern(sharedStrings, s, s, 255);

// Mailboxes made from one template have equal login attributes: one frozen object each.
const sharedAttributes = new Map<string, Readonly<Record<string, unknown>>>();
function loginAttributes(all: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const k of LOGIN_ATTRIBUTES) if (Object.hasOwn(all, k)) kept[k] = all[k];
  const key = JSON.stringify(kept);
  return intern(sharedAttributes, key, Object.freeze(kept), 1024);
}

/**
 * A freshly loaded account made cheaper to keep: the mailbox's username becomes the lookup
 * key's own string when the two are equal, repeated row values are shared, and of the
 * attributes (mailcow keeps ~20 per mailbox) only LOGIN_ATTRIBUTES stay, shared between
 * mailboxes that have the same. With 100,000 distinct logins that held ~30,000 accounts
 * (10 s TTL) at ~1,050 bytes each; now ~600 (issue 4). The account is the loader's own new
 * object, changed in place.
 */
export function compactAccount(account: Account, username: string): Account {
  const m = account.mailbox;
  if (m.username === username) m.username = username;
  m.domain = share(m.domain);
  m.authsource = share(m.authsource);
  m.kind = share(m.kind);
  m.description = share(m.description);
  m.attributes = loginAttributes(m.attributes);
  return account;
}

export interface ProbeOptions {
  /** Most users per confirming query (default 100). */
  maxBatch?: number;
  /** Most confirming queries running at once (default 2). */
  maxInFlight?: number;
  /**
   * Logins that send a confirming query at once; fewer wait up to maxWaitMs for company
   * (defaults 16 and 2 ms). Through Dovecot, logins arrive one by one from its auth workers:
   * sent at once, nearly every login cost a statement of its own (~90 µs of our CPU and ~65 µs
   * of MariaDB's). Waiting cut MariaDB's share to about a third and raised SSHA256 logins
   * through Dovecot from ~3,800/s to ~6,000/s on the 2-core VM; 2 ms beat 1 ms in paired runs
   * (issue 4). At 32 in flight against the daemon alone 16 are waiting at once: no delay.
   */
  minBatch?: number;
  maxWaitMs?: number;
}

/**
 * The database loader behind the account cache, every hit confirmed by
 * findCredentialsMany. Confirmations of concurrent logins are coalesced into
 * one statement (each sent after its logins arrived, so none is answered from
 * an older read): under load the database sees a fraction of a query per login.
 */
export function cachedAccountLoader(
  cache: AccountCache<Account>,
  db: Queryable,
  load: AccountLoader = dbAccountLoader(db),
  probe: ProbeOptions = {},
): AccountLoader {
  const batcher = createBatcher<string, CredentialState>((users) => findCredentialsMany(db, users), {
    maxBatch: probe.maxBatch ?? 100,
    maxInFlight: probe.maxInFlight ?? 2,
    minBatch: probe.minBatch ?? 16,
    maxWaitMs: probe.maxWaitMs ?? 2,
  });
  const loadCompact: AccountLoader = async (username, signal) => {
    const account = await load(username, signal);
    return account === null ? null : compactAccount(account, username);
  };
  return cache.wrap(loadCompact, {
    probe: async (username) => (await batcher.load(username.toLowerCase())) ?? null,
    isCurrent: accountIsCurrent,
  });
}

export function cachedVerifier(cache: VerifyCache, verify: HashVerifier): HashVerifier {
  return cache.wrap(verify);
}

export type { CacheStats };
