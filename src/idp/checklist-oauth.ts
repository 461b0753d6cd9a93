/**
 * `idp test` lines for OAuth bearer-token logins (issue 20), when oauth.enabled:
 * the JWKS that JWT access tokens are checked against, and (unless
 * oauth.introspection is off) the introspection endpoint with mailauth's
 * client, probed with a made-up token that must come back inactive.
 */
import { isMailauthError } from '../errors.js';
import { Checklist, detailOf, plural } from './checklist-common.js';
import type { Check, IdpTestDeps } from './checklist-common.js';
import { createTokenValidator, providerFromSettings } from './oauth-token.js';
import type { IdpSettings } from './settings.js';

export async function oauthChecklist(settings: IdpSettings, deps: IdpTestDeps): Promise<Check[]> {
  const list = new Checklist();
  const cfg = deps.oauth;
  if (!cfg?.enabled) return list.checks;
  const controller = new AbortController();
  const validator = createTokenValidator({
    config: cfg,
    provider: async () => providerFromSettings(settings, cfg),
    http: { ...deps.idp, dispatcher: deps.dispatcher },
    ...(deps.now ? { now: deps.now } : {}),
  });
  try {
    const jwksTitle = 'OAuth: signing keys (JWKS) for JWT access tokens';
    try {
      const k = await validator.fetchKeys(controller.signal);
      const ok = k.kids.length > 0;
      list.add({
        id: 'oauth-jwks',
        status: ok ? 'pass' : 'fail',
        required: cfg.introspection !== 'always',
        title: jwksTitle,
        detail: `${k.url}: ${plural(k.kids.length, 'key')} with a kid${ok ? ` (${k.kids.slice(0, 5).join(', ')})` : ''}`,
        ...(ok ? {} : { fix: 'the IdP publishes no usable keys; check oauth.jwks_url or the realm keys' }),
      });
    } catch (err) {
      list.add({
        id: 'oauth-jwks',
        status: 'fail',
        required: cfg.introspection !== 'always',
        title: jwksTitle,
        detail: detailOf(err),
        fix: isMailauthError(err, 'ERR_IDP_NOT_CONFIGURED') ? 'set oauth.issuer or oauth.jwks_url' : 'check that mailauth reaches the IdP (oauth.issuer, oauth.jwks_url)',
      });
    }
    const introTitle = 'OAuth: token introspection with mailauth\'s client';
    if (cfg.introspection === 'off') {
      list.skip('oauth-introspection', introTitle, false, 'oauth.introspection is off: only JWT access tokens are accepted');
    } else {
      try {
        const r = await validator.probeIntrospection(controller.signal);
        list.add({
          id: 'oauth-introspection',
          status: r.active ? 'warn' : 'pass',
          required: true,
          title: introTitle,
          detail: r.active ? `${r.url} called a made-up token active?!` : `${r.url} answers; a made-up token is inactive`,
        });
      } catch (err) {
        list.add({
          id: 'oauth-introspection',
          status: 'fail',
          required: true,
          title: introTitle,
          detail: detailOf(err),
          fix: isMailauthError(err, 'ERR_IDP_AUTH')
            ? 'the IdP refused the client: check its id and secret (mailauth idp, or oauth.introspection_client_id), and that it is confidential'
            : 'set oauth.introspection_url, or oauth.introspection: off if the IdP issues only JWT access tokens',
        });
      }
    }
  } finally {
    controller.abort();
    await validator.close();
  }
  return list.checks;
}
