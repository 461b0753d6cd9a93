/**
 * The identity-provider password sources (STYLE 4) and login provisioning,
 * built once by the entry point over one shared IdpRuntime:
 *
 * - `keycloak`: the mailpassword flow when the IdP settings have it on (the
 *   hash in the user's mailcow_password attribute, idp-password.ts), with the
 *   template re-applied when it changed; with the flow off, app passwords
 *   only — or, when auth.oidc_password_grant is on, Keycloak's own password
 *   check through the password grant ("Direct access grants").
 * - `generic-oidc`: app passwords only; with auth.oidc_password_grant, the
 *   provider's password grant.
 * - `ldap`: a bind as the user's directory entry (ldap-source.ts).
 *
 * App passwords are tried by the decision before any source runs, and none
 * of the "app passwords only" answers calls the IdP, so a failed app-password
 * guess never reaches it.
 */
import type { Logger } from '../logging/index.js';
import { verifyByPasswordGrant, verifyKeycloakPassword } from './idp-password.js';
import { createIdpRuntime } from './idp-runtime.js';
import type { IdpCounters, IdpRuntime, IdpRuntimeOptions } from './idp-runtime.js';
import type { IdpSnapshot } from './idp-settings-source.js';
import { createLdapRuntime, ldapSource } from './ldap-source.js';
import type { LdapRuntime } from './ldap-source.js';
import { provisionUnknownMailbox, reapplyTemplate } from './login-provisioning.js';
import { mailcowSource } from './sources.js';
import type { Account, PasswordSource, SourceContext, SourceOutcome, UnknownMailboxHandler } from './types.js';

const mismatch = (reason: string): SourceOutcome => ({ result: 'password_mismatch', reason });

/** The snapshot's settings when they are usable, else the outcome that says why not. */
function configured(snap: IdpSnapshot, want: 'keycloak' | 'generic-oidc', account: Account, log: Logger): SourceOutcome | null {
  const username = account.mailbox.username;
  if (snap.invalid !== null) {
    log.error({ mailbox: username, problem: snap.invalid }, 'identity provider settings are invalid');
    return { result: 'internal_failure', reason: 'identity provider settings are invalid (see mailauth idp show)' };
  }
  const s = snap.settings;
  if (s === null || s.source !== want) {
    const reason = `the configured identity provider is ${s?.source ?? 'none'}, not ${want}; only app passwords work for this mailbox`;
    log.warn({ mailbox: username, authsource: want, idp: s?.source ?? null }, reason);
    return mismatch(reason);
  }
  return null;
}

export function keycloakSource(rt: IdpRuntime): PasswordSource {
  return {
    name: 'keycloak',
    async verify(account, password, ctx: SourceContext): Promise<SourceOutcome> {
      const snap = await rt.snapshot();
      const problem = configured(snap, 'keycloak', account, ctx.logger);
      if (problem) return problem;
      const s = snap.settings;
      if (s?.source !== 'keycloak') return mismatch('no keycloak identity provider');
      const username = account.mailbox.username;
      if (!s.mailpasswordFlow) {
        if (rt.config.auth.oidcPasswordGrant) return verifyByPasswordGrant(rt, s, username, password, ctx);
        return mismatch('the Keycloak mailpassword flow is off: this mailbox logs in with app passwords only');
      }
      const v = await verifyKeycloakPassword(rt, s, username, password, ctx);
      if (v.result !== 'ok') return { result: v.result, reason: v.reason };
      // Stale data is older than what the mailbox may already hold: never written back.
      if (s.loginProvisioning && v.source !== 'stale' && !ctx.signal.aborted) {
        await reapplyTemplate(rt, snap, s, account.mailbox, v.answer, ctx.logger);
      }
      return v.source === 'stale' ? { result: 'ok', reason: 'keycloak password (stale IdP answer: the IdP is unavailable)' } : { result: 'ok' };
    },
  };
}

export function genericOidcSource(rt: IdpRuntime): PasswordSource {
  return {
    name: 'generic-oidc',
    async verify(account, password, ctx: SourceContext): Promise<SourceOutcome> {
      if (!rt.config.auth.oidcPasswordGrant) {
        return mismatch('generic-oidc mailboxes log in with app passwords only (auth.oidc_password_grant is off)');
      }
      const snap = await rt.snapshot();
      const problem = configured(snap, 'generic-oidc', account, ctx.logger);
      if (problem) return problem;
      const s = snap.settings;
      if (s?.source !== 'generic-oidc') return mismatch('no generic-oidc identity provider');
      return verifyByPasswordGrant(rt, s, account.mailbox.username, password, ctx);
    },
  };
}

export interface IdpSources {
  /** authsource → source, covering every authsource (mailcow, keycloak, generic-oidc, ldap). */
  sources: Map<string, PasswordSource>;
  provisionUnknown: UnknownMailboxHandler;
  runtime: IdpRuntime;
  ldap: LdapRuntime;
  counters(): IdpCounters;
  close(): Promise<void>;
}

export function createIdpSources(opts: IdpRuntimeOptions): IdpSources {
  const rt = createIdpRuntime(opts);
  const ldap = createLdapRuntime(rt, { ...(opts.instrument ? { instrument: opts.instrument } : {}), ...(opts.secret ? { secret: opts.secret } : {}) });
  return {
    sources: new Map<string, PasswordSource>([
      ['mailcow', mailcowSource],
      ['keycloak', keycloakSource(rt)],
      ['generic-oidc', genericOidcSource(rt)],
      ['ldap', ldapSource(rt, ldap)],
    ]),
    provisionUnknown: (user, password, ctx) => provisionUnknownMailbox(rt, user, password, ctx, ldap),
    runtime: rt,
    ldap,
    counters: () => ({ ...rt.counters }),
    close: async () => {
      await Promise.allSettled([rt.close(), ldap.close()]);
    },
  };
}
