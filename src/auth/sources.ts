/**
 * Password sources, one per mailbox `authsource` (STYLE 4). `mailcow` verifies
 * the hash in the mailbox row; the identity-provider sources are placeholders
 * until their issues land: they refuse the mailbox's own password with a logged
 * reason, while app passwords keep working for those mailboxes.
 */
import { AUTH_SOURCES } from '../db/index.js';
import { MailauthError } from '../errors.js';
import type { Account, PasswordSource, SourceContext, SourceOutcome } from './types.js';

export const mailcowSource: PasswordSource = {
  name: 'mailcow',
  async verify(account: Account, password: string, ctx: SourceContext): Promise<SourceOutcome> {
    const stored = account.mailbox.password;
    // An IdP user switched back to mailcow without a password, or a mailbox created for SSO only.
    if (stored === '') return { result: 'password_mismatch', reason: 'mailbox has no password set' };
    const r = await ctx.verifyHash(stored, ctx.passwordBytes ?? password, ctx.signal);
    switch (r.outcome) {
      case 'match':
        return { result: 'ok' };
      case 'mismatch':
        return { result: 'password_mismatch', reason: 'password mismatch' };
      case 'malformed':
      case 'unsupported_scheme':
        ctx.logger.error({ mailbox: account.mailbox.username, scheme: r.scheme, problem: r.reason }, 'mailbox password hash cannot be verified');
        return { result: 'internal_failure', reason: `mailbox password hash cannot be verified: ${r.reason ?? r.outcome}` };
    }
  },
};

/** A source whose backend is not built or configured yet: the own password is refused, visibly. */
export function notConfiguredSource(name: string): PasswordSource {
  return {
    name,
    async verify(account, _password, ctx) {
      const reason = `authsource ${name} is not configured in this mailauth; only app passwords work for this mailbox`;
      ctx.logger.warn({ mailbox: account.mailbox.username, authsource: name }, reason);
      return { result: 'password_mismatch', reason };
    },
  };
}

export function defaultSources(): Map<string, PasswordSource> {
  return new Map<string, PasswordSource>([
    ['mailcow', mailcowSource],
    ['keycloak', notConfiguredSource('keycloak')],
    ['generic-oidc', notConfiguredSource('generic-oidc')],
    ['ldap', notConfiguredSource('ldap')],
  ]);
}

/** Startup check: every authsource the schema allows has a source, so only a corrupt row can miss. */
export function checkSources(sources: ReadonlyMap<string, PasswordSource>): void {
  const missing = AUTH_SOURCES.filter((s) => !sources.has(s));
  if (missing.length > 0) {
    throw new MailauthError('ERR_CONFIG_INVALID', `no password source registered for authsource ${missing.join(', ')}`);
  }
}
