/**
 * The `ldap` password source and LDAP login provisioning (issue 18).
 *
 * A login: find the entry with the service account (the username field, or
 * mail, equals the login — escaped, RFC 4515), refuse a disabled entry
 * without binding, then bind as the entry with the typed password on a
 * pooled bind connection. App passwords were tried by the decision before
 * this runs, so a failed app-password guess never reaches the directory
 * (a lockout policy counts every refused bind).
 *
 * Results: bind ok → ok; refused and the entry locked (ppolicy
 * pwdAccountLockedTime, AD lockoutTime / "data 775") → user_disabled;
 * refused otherwise → password_mismatch; no entry or several →
 * password_mismatch with the reason; directory unreachable, slow or
 * refusing the service account → internal_failure, within auth.deadline
 * (the request's signal ends every wait).
 *
 * The bind cache — how a changed password is noticed:
 * a successful bind is remembered under HMAC(process secret, entry DN ‖
 * change stamp ‖ password), the same idea as the verify cache's
 * HMAC(stored hash ‖ password): the entry is read on every login (that read
 * also sees disabled and locked entries at once), and its change stamp
 * (pwdChangedTime on OpenLDAP with ppolicy, pwdLastSet on AD, else
 * modifyTimestamp/whenChanged) changes with the password, so the next login
 * after a change in the directory misses and binds again. Successes are kept
 * for cache.idp_ttl. Refusals are kept for cache.idp_negative_ttl under
 * HMAC(DN ‖ password) without the stamp, because a refused bind itself
 * changes modifyTimestamp under ppolicy: a client retrying an old password
 * costs the directory one bind per interval, not one per retry, which a
 * lockout policy would otherwise count until the user is locked out. A
 * directory that shows no stamp at all falls back to the TTL alone. While
 * the directory is unreachable, the last entry (cache.idp_stale_for) and a
 * remembered successful bind let a user in who logged in recently;
 * nothing else does.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createIdpCache } from '../cache/index.js';
import type { IdpCache } from '../cache/index.js';
import { isMailauthError } from '../errors.js';
import {
  addressOf,
  changeStamp,
  connectionOptionsOf,
  createLdapDirectory,
  disabledReason,
  displayNameOf,
  lockedReason,
  loginFilter,
  templateValuesOf,
  userAttributes,
} from '../idp/index.js';
import type { LdapDirectory, LdapEntry, LdapSettings } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import { createIdpLookup } from './idp-lookup.js';
import { applyTemplateDecision } from './template-at-login.js';
import type { IdpLookup, LookupResult } from './idp-lookup.js';
import type { IdpInstrument, IdpRuntime } from './idp-runtime.js';
import type { IdpSnapshot } from './idp-settings-source.js';
import { templateDecision } from './idp-user.js';
import { createAtLogin, provisioningGate, unknownMailbox } from './provision-at-login.js';
import type { PasswordSource, SourceContext, SourceOutcome, UnknownMailboxContext, UnknownMailboxOutcome } from './types.js';

/** What the entry cache keeps of a directory entry: the entry itself (no password is ever in it). */
interface EntryAnswer {
  entry: LdapEntry;
}

interface BindAccepted {
  accepted: true;
}

export interface LdapRuntime {
  /** The directory for these settings (rebuilt when the connection settings change). */
  directory(s: LdapSettings): LdapDirectory;
  /** The entry of a login: asked every time, the last answer served stale while the directory fails. */
  findEntry(s: LdapSettings, login: string, signal: AbortSignal): Promise<LookupResult<EntryAnswer>>;
  /** Verify `password` against the entry: bind cache ▸ bind. */
  verify(s: LdapSettings, entry: LdapEntry, password: string, signal: AbortSignal, stale: boolean): Promise<BindVerdict>;
  readonly counters: { binds: number; bindCacheHits: number };
  readonly caches: { entry: IdpCache<EntryAnswer>; bind: IdpCache<BindAccepted> };
  close(): Promise<void>;
}

export type BindVerdict =
  | { result: 'ok'; cached: boolean }
  | { result: 'password_mismatch'; reason: string }
  | { result: 'user_disabled'; reason: string }
  | { result: 'internal_failure'; reason: string };

function fingerprint(s: LdapSettings): string {
  return JSON.stringify([s.hosts, s.port, s.useSsl, s.useTls, s.ignoreSslError, s.caFile, s.binddn, s.bindpass, s.connectTimeoutMs, s.opTimeoutMs]);
}

function faultReason(err: unknown): string {
  if (isMailauthError(err, 'ERR_DEADLINE')) return 'deadline exceeded while asking the directory';
  if (isMailauthError(err, 'ERR_IDP_AUTH')) return 'the directory refused the service account (see mailauth idp test)';
  if (isMailauthError(err)) return `directory unavailable (${err.code})`;
  return 'directory unavailable';
}

export function createLdapRuntime(rt: IdpRuntime, opts: { secret?: Buffer; poolSize?: number; instrument?: IdpInstrument } = {}): LdapRuntime {
  const { cache: cc, idp: ic, auth } = rt.config;
  const instrument: IdpInstrument = opts.instrument ?? ((_idp, _op, call) => call());
  const secret = opts.secret ?? randomBytes(32);
  const cacheOpts = { ttlMs: cc.idpTtlMs, negativeTtlMs: cc.idpNegativeTtlMs, staleForMs: cc.idpStaleForMs, clock: rt.clock };
  const entryCache = createIdpCache<EntryAnswer>({ ...cacheOpts, maxEntries: cc.idpEntries, maxBytes: Math.floor(cc.maxBytes / 16) });
  const bindCache = createIdpCache<BindAccepted>({ ...cacheOpts, maxEntries: cc.idpEntries, maxBytes: Math.floor(cc.maxBytes / 32) });
  const budgetMs = Math.max(100, Math.floor(auth.deadlineMs * 0.75));
  const counters = { binds: 0, bindCacheHits: 0 };
  let current: { fp: string; dir: LdapDirectory } | null = null;
  const retired: Promise<void>[] = [];

  const lookup: IdpLookup<EntryAnswer> = createIdpLookup<EntryAnswer>({
    cache: entryCache,
    cachedNegativeReason: 'no directory entry (cached answer)',
    budgetMs,
    cooldownMs: ic.cooldownMs,
    clock: rt.clock,
  });

  function directory(s: LdapSettings): LdapDirectory {
    const fp = fingerprint(s);
    if (current?.fp === fp) return current.dir;
    if (current) {
      retired.push(current.dir.close());
      rt.logger.info({ hosts: s.hosts }, 'LDAP connection settings changed; LDAP caches cleared');
      lookup.reset();
      bindCache.clear();
    }
    const dir = createLdapDirectory({ ...connectionOptionsOf(s), bindDn: s.binddn, bindPassword: s.bindpass, poolSize: opts.poolSize ?? 4 });
    current = { fp, dir };
    return dir;
  }

  /** Successes key on the change stamp; refusals do not (a refused bind itself changes modifyTimestamp under ppolicy). */
  function bindKey(entry: LdapEntry, password: string, stamp: string): string {
    return createHmac('sha256', secret).update(entry.dn.toLowerCase()).update('\u0000').update(stamp).update('\u0000').update(password).digest('base64url');
  }

  return {
    directory,
    counters,
    caches: { entry: entryCache, bind: bindCache },
    async findEntry(s, login, signal) {
      const dir = directory(s);
      const key = login.trim().toLowerCase();
      return lookup.lookup(key, signal, {
        fresh: true,
        fetch: async (_k, sig) => {
          const found = await instrument('ldap', 'user_lookup', () =>
            dir.search(s.basedn, loginFilter(s, key), { attributes: userAttributes(s), sizeLimit: 3, signal: sig }),
          );
          if (found.length === 0) return { value: null, reason: 'no directory entry matches this login' };
          if (found.length > 1) return { value: null, reason: `${found.length} directory entries match this login; refusing an ambiguous login` };
          return { value: { entry: found[0] as LdapEntry } };
        },
      });
    },
    async verify(s, entry, password, signal, stale) {
      const key = bindKey(entry, password, changeStamp(entry));
      const refusedKey = bindKey(entry, password, 'refused');
      const hit = bindCache.get(key);
      if (hit?.value) {
        counters.bindCacheHits++;
        return { result: 'ok', cached: true };
      }
      if (!stale && bindCache.get(refusedKey) !== undefined) {
        counters.bindCacheHits++;
        return { result: 'password_mismatch', reason: 'the directory refused this password (cached answer)' };
      }
      if (stale) {
        const old = bindCache.getStale(key);
        if (old?.value) return { result: 'ok', cached: true };
        return { result: 'internal_failure', reason: 'the directory is unavailable and this password was not accepted recently' };
      }
      let r;
      try {
        counters.binds++;
        r = await instrument('ldap', 'bind', () => directory(s).bind(entry.dn, password, signal));
      } catch (err) {
        rt.logger.warn({ err, dn: entry.dn }, 'LDAP user bind failed');
        return { result: 'internal_failure', reason: faultReason(err) };
      }
      if (r.ok) {
        bindCache.set(key, { accepted: true });
        return { result: 'ok', cached: false };
      }
      const locked = lockedReason(entry, r.diagnostic);
      if (locked) return { result: 'user_disabled', reason: locked };
      bindCache.set(refusedKey, null);
      return { result: 'password_mismatch', reason: 'the directory refused the password' };
    },
    async close() {
      await Promise.allSettled([...retired, current?.dir.close()]);
    },
  };
}

/** The entry of a login and its state, or the outcome that ends the login. */
async function entryFor(
  ldap: LdapRuntime,
  s: LdapSettings,
  login: string,
  ctx: { logger: Logger; signal: AbortSignal },
): Promise<{ entry: LdapEntry; stale: boolean } | { outcome: 'no_entry' | 'internal_failure' | 'user_disabled'; reason: string }> {
  let r: LookupResult<EntryAnswer>;
  try {
    r = await ldap.findEntry(s, login, ctx.signal);
  } catch (err) {
    ctx.logger.warn({ err, mailbox: login }, 'LDAP entry lookup failed and no recent answer is cached');
    return { outcome: 'internal_failure', reason: faultReason(err) };
  }
  if (r.source === 'stale') {
    ctx.logger.warn({ ageMs: r.ageMs, code: r.fault?.code, cause: r.fault?.message }, `directory failed; using its entry from ${Math.round(r.ageMs / 1000)} s ago (cache.idp_stale_for)`);
  }
  if (r.value === null) return { outcome: 'no_entry', reason: r.reason ?? 'no directory entry matches this login' };
  const entry = r.value.entry;
  const disabled = disabledReason(entry);
  if (disabled) return { outcome: 'user_disabled', reason: disabled };
  return { entry, stale: r.source === 'stale' };
}

export function ldapSource(rt: IdpRuntime, ldap: LdapRuntime): PasswordSource {
  return {
    name: 'ldap',
    async verify(account, password, ctx: SourceContext): Promise<SourceOutcome> {
      const snap = await rt.snapshot();
      const username = account.mailbox.username;
      if (snap.invalid !== null) {
        ctx.logger.error({ mailbox: username, problem: snap.invalid }, 'identity provider settings are invalid');
        return { result: 'internal_failure', reason: 'identity provider settings are invalid (see mailauth idp show)' };
      }
      const s = snap.settings;
      if (s === null || s.source !== 'ldap') {
        const reason = `the configured identity provider is ${s?.source ?? 'none'}, not ldap; only app passwords work for this mailbox`;
        ctx.logger.warn({ mailbox: username, authsource: 'ldap', idp: s?.source ?? null }, reason);
        return { result: 'password_mismatch', reason };
      }
      const found = await entryFor(ldap, s, username, ctx);
      if ('outcome' in found) {
        if (found.outcome === 'no_entry') return { result: 'password_mismatch', reason: found.reason };
        return { result: found.outcome, reason: found.reason };
      }
      const v = await ldap.verify(s, found.entry, password, ctx.signal, found.stale);
      if (v.result !== 'ok') return { result: v.result, reason: v.reason };
      if (s.loginProvisioning && !found.stale && !ctx.signal.aborted) {
        await reapplyLdapTemplate(rt, snap, s, account.mailbox, found.entry, ctx.logger);
      }
      return { result: 'ok', reason: found.stale ? 'ldap bind (remembered; the directory is unavailable)' : v.cached ? 'ldap bind (remembered)' : 'ldap bind' };
    },
  };
}

/**
 * A login without a mailbox, with an LDAP IdP and login_provisioning on:
 * the entry is found and the password bound first; only then is the mailbox
 * created from the mapped template (attribute_field → idp map). The same
 * outcomes and reasons as Keycloak's provisioning (login-provisioning.ts).
 */
export async function provisionLdapMailbox(
  rt: IdpRuntime,
  ldap: LdapRuntime,
  snap: IdpSnapshot,
  s: LdapSettings,
  login: string,
  password: string,
  ctx: UnknownMailboxContext,
): Promise<UnknownMailboxOutcome> {
  const addr = await provisioningGate(rt.db, s, login, ctx.signal);
  if ('outcome' in addr) return addr.outcome;

  const found = await entryFor(ldap, s, addr.username, ctx);
  if ('outcome' in found) {
    if (found.outcome === 'no_entry') return unknownMailbox(`no such mailbox (${found.reason})`);
    if (found.outcome === 'user_disabled') return { result: 'password_mismatch', reason: `not provisioned: ${found.reason}` };
    return { result: 'internal_failure', reason: found.reason };
  }
  if (found.stale) return { result: 'internal_failure', reason: 'directory unavailable; a stale answer does not create mailboxes' };
  const entry = found.entry;
  // The entry must own this address (it may have matched by another attribute).
  if (addressOf(entry, s) !== addr.username) {
    return unknownMailbox(`no such mailbox (the directory entry's address is ${addressOf(entry, s) ?? 'missing'}, not this login)`);
  }
  const v = await ldap.verify(s, entry, password, ctx.signal, false);
  if (v.result === 'internal_failure') return v;
  if (v.result === 'password_mismatch' || v.result === 'user_disabled') return { result: 'password_mismatch', reason: v.reason };

  return createAtLogin(
    rt,
    snap,
    s,
    {
      username: addr.username,
      name: displayNameOf(entry),
      templateValues: templateValuesOf(entry, s),
      authsource: 'ldap',
      attribute: `${s.attributeField}`,
      noAttribute: `the entry has no ${s.attributeField ?? 'template attribute (attribute_field is not set)'}`,
      who: { dn: entry.dn },
    },
    ctx.signal,
    ctx.logger,
  );
}

/** After a successful bind: re-apply the mapped template when it or the name changed (never fails the login). */
async function reapplyLdapTemplate(
  rt: IdpRuntime,
  snap: IdpSnapshot,
  s: LdapSettings,
  mailbox: { username: string; name: string; attributes: Record<string, unknown> },
  entry: LdapEntry,
  log: Logger,
): Promise<void> {
  const d = templateDecision(mailbox, { templateValues: templateValuesOf(entry, s), name: displayNameOf(entry) }, s, snap.templateHashes);
  await applyTemplateDecision(rt, snap, mailbox, d, 'ldap', log);
}
