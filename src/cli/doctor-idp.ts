/**
 * The identity-provider part of `mailauth doctor`: the settings in the
 * database parse, and the server is reachable and accepts the credentials —
 * the connectivity lines of `mailauth idp test`, which remains the tool for
 * attributes, hash schemes and mapping coverage.
 */
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import { isMailauthError } from '../errors.js';
import { loadIdpSettings, runIdpTest, templateNames } from '../idp/index.js';
import type { IdpSettings } from '../idp/index.js';
import type { Check } from './doctor-checks.js';

/** `idp test` lines about reaching the server and being let in; the rest is `idp test`'s job. */
const CONNECTIVITY = new Set(['reachable', 'tls', 'discovery', 'client-credentials', 'admin-api', 'token-endpoint', 'userinfo-endpoint', 'direct-grants', 'service-bind', 'base-dn']);

function where(s: IdpSettings): string {
  switch (s.source) {
    case 'keycloak':
      return `keycloak ${s.serverUrl} realm ${s.realm}`;
    case 'generic-oidc':
      return `generic-oidc ${s.issuer ?? s.tokenUrl}`;
    case 'ldap':
      return `ldap ${s.hosts.join(',')} port ${s.port}`;
  }
}

export async function idpChecks(config: Config, db: Db, opts: { timeoutMs: number }): Promise<Check[]> {
  let settings: IdpSettings | null;
  try {
    settings = await loadIdpSettings(db);
  } catch (err) {
    if (isMailauthError(err, 'ERR_CONFIG_INVALID')) {
      return [{ id: 'idp', status: 'fail', title: 'identity provider: the settings in the identity_provider table are not valid', detail: err.message, fix: 'mailauth idp show, then mailauth idp set … (or mailauth idp delete)' }];
    }
    throw err;
  }
  if (settings === null) return [{ id: 'idp', status: 'skip', title: 'identity provider: none configured (mailcow passwords only)' }];

  const label = where(settings);
  let checks;
  try {
    checks = await runIdpTest(
      settings,
      {
        templateNames: () => templateNames(db),
        idp: { ...config.idp, timeoutMs: Math.min(config.idp.timeoutMs, opts.timeoutMs) },
        idpHashSchemes: config.auth.idpHashSchemes,
        passwordGrant: config.auth.oidcPasswordGrant,
      },
      { scanLimit: 20 },
    );
  } catch (err) {
    return [{ id: 'idp', status: 'fail', title: `identity provider (${label}): the check itself failed`, detail: err instanceof Error ? err.message : String(err), fix: 'mailauth idp test shows the full checklist' }];
  }
  const out: Check[] = checks
    // LDAP checks each host on its own: reachable:HOST, tls:HOST.
    .filter((c) => CONNECTIVITY.has(c.id.split(':')[0] ?? c.id) || c.id === 'source')
    .map((c) => ({
      id: `idp:${c.id}`,
      status: c.status,
      title: `identity provider: ${c.title}`,
      ...(c.detail === undefined ? {} : { detail: c.detail }),
      ...(c.fix === undefined ? {} : { fix: c.fix }),
    }));
  const failed = out.some((c) => c.status === 'fail');
  out.unshift({
    id: 'idp',
    status: failed ? 'fail' : 'pass',
    title: `identity provider: ${label}`,
    detail: 'attributes, hash schemes and template mapping: mailauth idp test',
    ...(failed ? { fix: 'see the identity-provider lines below; mailauth idp test has the whole checklist' } : {}),
  });
  return out;
}
