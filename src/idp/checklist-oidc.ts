/** The generic-OIDC checklist of `idp test`. */
import { randomBytes } from 'node:crypto';
import { isMailauthError } from '../errors.js';
import { Checklist, TEMPLATE_ATTRIBUTE, detailOf, mappingCheck, reason, transportChecks } from './checklist-common.js';
import type { Check, IdpTestDeps, IdpTestOptions } from './checklist-common.js';
import { exchange } from './http.js';
import { createOidcClient, oidcOptionsOf } from './oidc.js';
import type { OidcClient } from './oidc.js';
import { templateFor } from './settings.js';
import type { GenericOidcSettings } from './settings.js';

export async function oidcChecklist(s: GenericOidcSettings, deps: IdpTestDeps, opts: IdpTestOptions): Promise<Check[]> {
  const list = new Checklist();
  const make = (ignoreSslError: boolean): OidcClient =>
    createOidcClient({
      ...oidcOptionsOf(s),
      timeoutMs: deps.idp.timeoutMs,
      ignoreSslError,
      ...(deps.dispatcher && !ignoreSslError ? { dispatcher: deps.dispatcher } : {}),
    });
  const client = make(s.ignoreSslError);
  const opened = [client];
  try {
    await oidcServerChecks(list, client, s, deps, opts, () => {
      const c = make(false);
      opened.push(c);
      return c;
    });
    await mappingCheck(list, s.mapping, deps, null, s.loginProvisioning);
    return list.checks;
  } finally {
    await Promise.all(opened.map((c) => c.close()));
  }
}

async function oidcServerChecks(
  list: Checklist,
  client: OidcClient,
  s: GenericOidcSettings,
  deps: IdpTestDeps,
  opts: IdpTestOptions,
  strictClient: () => OidcClient,
): Promise<void> {
  const firstUrl = new URL(s.issuer ?? s.tokenUrl);
  // The first request: discovery with an issuer, else the token request.
  let endpointsError: unknown = null;
  let discovered: Awaited<ReturnType<OidcClient['endpoints']>> | null = null;
  try {
    discovered = await client.endpoints();
  } catch (err) {
    endpointsError = err;
  }
  let ccResult: unknown = null;
  let ccError: unknown = null;
  if (endpointsError === null) {
    try {
      ccResult = await client.clientCredentials();
    } catch (err) {
      ccError = err;
    }
  }
  const first = endpointsError ?? (s.issuer ? null : ccError);
  let strict: unknown = null;
  if (s.ignoreSslError && firstUrl.protocol === 'https:') {
    const probe = strictClient();
    strict = await (s.issuer ? probe.endpoints() : probe.clientCredentials()).then(() => null, (err: unknown) => err);
  }
  if (!transportChecks(list, firstUrl, s.ignoreSslError, first, strict)) {
    for (const [id, t] of REMAINING_OIDC) list.skip(id, t, true, 'skipped: the server cannot be reached');
    return;
  }
  const discTitle = `Discovery document${s.issuer ? ` (${s.issuer})` : ''}`;
  if (!s.issuer) {
    list.skip('discovery', discTitle, true, 'no issuer configured: using the stored endpoint URLs');
  } else if (endpointsError !== null) {
    const notFound = isMailauthError(endpointsError, 'ERR_IDP_NOT_FOUND');
    const mismatch = reason(endpointsError) === 'issuer_mismatch';
    list.add({
      id: 'discovery',
      status: 'fail',
      required: true,
      title: discTitle,
      detail: detailOf(endpointsError),
      fix: notFound
        ? `check --issuer: ${s.issuer}/.well-known/openid-configuration must exist (for Keycloak: https://HOST/realms/REALM)`
        : mismatch
          ? 'use exactly the issuer the provider announces (its "issuer" field), or give the endpoint URLs explicitly without --issuer'
          : 'check --issuer',
    });
    for (const [id, t] of REMAINING_OIDC.slice(1)) list.skip(id, t, true, 'skipped: no discovery document');
    return;
  } else {
    const differs: string[] = [];
    if (discovered?.userinfoUrl === null) differs.push('it announces no userinfo_endpoint');
    list.add({ id: 'discovery', status: 'pass', required: true, title: discTitle, detail: `issuer ${discovered?.issuer ?? s.issuer}${differs.length ? `; ${differs.join('; ')}` : ''}` });
  }

  const tokenTitle = `Token endpoint accepts the client (client ${s.clientId})`;
  if (ccError === null && ccResult !== null) {
    list.add({ id: 'token-endpoint', status: 'pass', required: true, title: tokenTitle, detail: 'client credentials grant succeeded' });
  } else if (reason(ccError) === 'grant_not_allowed') {
    list.add({
      id: 'token-endpoint',
      status: 'warn',
      required: true,
      title: tokenTitle,
      detail: `${detailOf(ccError)}; the client secret could not be verified this way`,
      fix: 'allow the client_credentials grant for the client at the provider to let `idp test` verify the secret (mailauth itself does not need it)',
    });
  } else {
    const bad = reason(ccError) === 'bad_client_credentials';
    list.add({
      id: 'token-endpoint',
      status: 'fail',
      required: true,
      title: tokenTitle,
      detail: detailOf(ccError),
      fix: bad ? 'check --client-id and the client secret at the provider, and save it again with --client-secret-file' : 'check --token-url (or --issuer)',
    });
  }

  await userinfoEndpointCheck(list, discovered?.userinfoUrl ?? s.userinfoUrl, deps);

  if (deps.passwordGrant || (opts.user !== undefined && opts.password !== undefined)) {
    await oidcPasswordCheck(list, client, s, deps, opts);
  } else if (opts.user !== undefined) {
    list.skip('user', `User ${opts.user}`, true, 'a generic OIDC provider cannot be asked about a user without their password: add --password-stdin to test a login');
  }
}

const REMAINING_OIDC: [string, string][] = [
  ['discovery', 'Discovery document'],
  ['token-endpoint', 'Token endpoint accepts the client'],
  ['userinfo-endpoint', 'Userinfo endpoint'],
];

async function userinfoEndpointCheck(list: Checklist, url: string | null, deps: IdpTestDeps): Promise<void> {
  const title = 'Userinfo endpoint';
  if (!url) {
    list.add({ id: 'userinfo-endpoint', status: 'fail', required: true, title, detail: 'no userinfo endpoint is configured or announced', fix: 'give --userinfo-url (the provider\'s userinfo endpoint)' });
    return;
  }
  try {
    // Without a token a working endpoint answers 401 (or 400); 404 means a wrong URL.
    const res = await exchange({ route: 'userinfo', method: 'GET', url }, { ...deps.idp, retries: 0, dispatcher: deps.dispatcher });
    if (res.status === 401 || res.status === 400 || res.status === 403 || res.status === 200) {
      list.add({ id: 'userinfo-endpoint', status: 'pass', required: true, title, detail: `${url} answers (HTTP ${res.status} without a token)` });
    } else {
      list.add({ id: 'userinfo-endpoint', status: 'fail', required: true, title, detail: `${url} answered HTTP ${res.status} instead of asking for a token`, fix: 'check --userinfo-url' });
    }
  } catch (err) {
    list.add({ id: 'userinfo-endpoint', status: 'fail', required: true, title, detail: detailOf(err), fix: 'check --userinfo-url' });
  }
}

async function oidcPasswordCheck(list: Checklist, client: OidcClient, s: GenericOidcSettings, deps: IdpTestDeps, opts: IdpTestOptions): Promise<void> {
  const title = 'Password grant allowed';
  const required = deps.passwordGrant;
  if (opts.user === undefined || opts.password === undefined) {
    try {
      const r = await client.passwordGrant(`mailauth-probe-${randomBytes(6).toString('hex')}`, randomBytes(18).toString('base64url'));
      list.add({ id: 'password-grant', status: r.ok ? 'warn' : 'pass', required, title, detail: r.ok ? 'a made-up user was accepted?!' : 'a probe with a made-up user was refused as bad credentials, so the grant is allowed' });
    } catch (err) {
      list.add({ id: 'password-grant', status: 'fail', required, title, detail: detailOf(err), fix: 'allow the password grant for the client at the provider (Keycloak: Direct access grants), or turn auth.oidc_password_grant off' });
    }
    return;
  }
  const userTitle = `User ${opts.user}`;
  try {
    const r = await client.passwordGrant(opts.user, opts.password);
    list.add({ id: 'password-grant', status: 'pass', required, title });
    if (!r.ok) {
      list.add({ id: 'user', status: 'fail', required: true, title: userTitle, detail: `the provider refused the password (${r.error}${r.description ? `: ${r.description}` : ''})` });
      return;
    }
    const claims = await client.userinfo(r.accessToken);
    const email = typeof claims.email === 'string' ? claims.email : null;
    const value = typeof claims[TEMPLATE_ATTRIBUTE] === 'string' ? (claims[TEMPLATE_ATTRIBUTE] as string) : null;
    const choice = templateFor(value, s);
    const problems: string[] = [];
    if (email === null) problems.push('userinfo has no email claim (add the "email" scope)');
    else if (opts.user.includes('@') && email.toLowerCase() !== opts.user.toLowerCase()) problems.push(`userinfo says email ${email}`);
    list.add({
      id: 'user',
      status: problems.length > 0 ? 'warn' : choice === null && s.loginProvisioning ? 'warn' : 'pass',
      required: true,
      title: userTitle,
      detail: [...problems, `sub ${String(claims.sub)}, ${TEMPLATE_ATTRIBUTE} ${value === null ? '(no claim)' : JSON.stringify(value)} → ${choice ? `template ${choice.template} (${choice.via})` : 'no template'}`].join('; '),
      ...(value === null ? { fix: `add a "User Attribute" mapper for ${TEMPLATE_ATTRIBUTE} with "Add to userinfo" on, in a scope listed in --scopes` } : {}),
    });
  } catch (err) {
    const grantRefused = isMailauthError(err, 'ERR_IDP_AUTH') && reason(err) === 'grant_not_allowed';
    list.add({
      id: grantRefused ? 'password-grant' : 'user',
      status: 'fail',
      required: true,
      title: grantRefused ? title : userTitle,
      detail: detailOf(err),
      ...(grantRefused ? { fix: 'allow the password grant for the client at the provider (Keycloak: Direct access grants)' } : {}),
    });
  }
}
