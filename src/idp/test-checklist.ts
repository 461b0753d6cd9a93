/**
 * `mailauth idp test`: a checklist that says what is wrong with an IdP setup
 * and how to fix it (docs reference §6.4). Each check runs against the real
 * server; a failed prerequisite skips the checks that depend on it. Nothing
 * here writes anywhere, and no secret or hash reaches a detail line.
 */
import type { Check, IdpTestDeps, IdpTestOptions } from './checklist-common.js';
import { keycloakChecklist } from './checklist-keycloak.js';
import { ldapChecklist } from './checklist-ldap.js';
import { oidcChecklist } from './checklist-oidc.js';
import { oauthChecklist } from './checklist-oauth.js';
import type { IdpSettings } from './settings.js';

export { checklistPassed, TEMPLATE_ATTRIBUTE, PASSWORD_ATTRIBUTE } from './checklist-common.js';
export type { Check, CheckStatus, IdpTestDeps, IdpTestOptions } from './checklist-common.js';

export async function runIdpTest(settings: IdpSettings, deps: IdpTestDeps, opts: IdpTestOptions = {}): Promise<Check[]> {
  switch (settings.source) {
    case 'keycloak':
      return [...(await keycloakChecklist(settings, deps, opts)), ...(await oauthChecklist(settings, deps))];
    case 'generic-oidc':
      return [...(await oidcChecklist(settings, deps, opts)), ...(await oauthChecklist(settings, deps))];
    case 'ldap':
      return ldapChecklist(settings, deps, opts);
  }
}
