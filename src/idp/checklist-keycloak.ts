/** The Keycloak checklist of `idp test` (docs reference §6.4). */
import { randomBytes } from 'node:crypto';
import { isMailauthError } from '../errors.js';
import { IDP_WORK_CAPS, isSchemeAllowed, listSchemes, schemeOf, workOverCaps } from '../passwords/index.js';
import { Checklist, PASSWORD_ATTRIBUTE, TEMPLATE_ATTRIBUTE, detailOf, mappingCheck, plural, reason, transportChecks } from './checklist-common.js';
import type { Check, IdpTestDeps, IdpTestOptions } from './checklist-common.js';
import { alternateServerUrl, attributeValue, createKeycloakClient } from './keycloak.js';
import type { KeycloakClient, KeycloakUser } from './keycloak.js';
import { templateFor } from './settings.js';
import type { KeycloakSettings } from './settings.js';

interface Scan {
  scanned: number;
  total: number;
  withAnyAttribute: number;
  withTemplate: number;
  templateValues: Map<string | null, number>;
  withPassword: number;
  schemes: Map<string, number>;
  /** Hashes over IDP_WORK_CAPS, by "parameter > cap" (e.g. "bcrypt cost > 13"). */
  overCaps: Map<string, number>;
}

async function scanUsers(kc: KeycloakClient, limit: number): Promise<Scan> {
  const s: Scan = { scanned: 0, total: 0, withAnyAttribute: 0, withTemplate: 0, templateValues: new Map(), withPassword: 0, schemes: new Map(), overCaps: new Map() };
  const pages = kc.listUsers({ pageSize: Math.min(100, limit) });
  try {
    for (;;) {
      const r = await pages.next();
      if (r.done) {
        s.total = r.value.countAfter;
        break;
      }
      for (const u of r.value) {
        if (s.scanned >= limit) break;
        s.scanned++;
        if (Object.keys(u.attributes).length > 0) s.withAnyAttribute++;
        const t = attributeValue(u, TEMPLATE_ATTRIBUTE);
        if (t !== null) s.withTemplate++;
        s.templateValues.set(t, (s.templateValues.get(t) ?? 0) + 1);
        const h = attributeValue(u, PASSWORD_ATTRIBUTE);
        if (h !== null) {
          s.withPassword++;
          const scheme = schemeOf(h) ?? '(unrecognized)';
          s.schemes.set(scheme, (s.schemes.get(scheme) ?? 0) + 1);
          const over = workOverCaps(h, IDP_WORK_CAPS);
          if (over) {
            const key = `${over.label} > ${over.cap}${over.unit}`;
            s.overCaps.set(key, (s.overCaps.get(key) ?? 0) + 1);
          }
        }
      }
      if (s.scanned >= limit) break;
    }
  } finally {
    await pages.return(undefined as never).catch(() => undefined);
  }
  return s;
}

const UNMANAGED_FIX = (realm: string): string =>
  `on Keycloak 24 and later, attributes the realm's user profile does not declare are hidden from the admin API: either declare ${TEMPLATE_ATTRIBUTE} and ${PASSWORD_ATTRIBUTE} under Realm settings → User profile → Create attribute (admin can view; users cannot edit), or set Realm settings → General → Unmanaged attributes to "Admin can view" (kcadm.sh update users/profile -r ${realm} -s unmanagedAttributePolicy=ADMIN_VIEW, sending the profile's attributes along)`;

function weakSchemes(): Set<string> {
  return new Set(listSchemes().filter((s) => s.weak).map((s) => s.name));
}

function schemeSummary(schemes: Map<string, number>): string {
  return [...schemes.entries()].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s}×${n}`).join(', ');
}

function clientFix(r: string | null, s: KeycloakSettings): string {
  const client = `Clients → ${s.clientId}`;
  switch (r) {
    case 'service_accounts_disabled':
      return `${client} → Settings → Capability config: turn on "Client authentication" and "Service accounts roles", then Save`;
    case 'public_client':
      return `${client} → Settings → Capability config: turn on "Client authentication" (a confidential client) and "Service accounts roles"; then copy the secret from the Credentials tab`;
    case 'bearer_only_client':
      return `${client}: the client is bearer-only; make it confidential with service accounts enabled`;
    case 'service_account_missing':
      return `${client} → Settings: turn "Service accounts roles" off and on again to recreate the service-account user`;
    case 'service_account_disabled':
      return `Users → service-account-${s.clientId} → enable the user`;
    case 'https_required':
      return 'use an https:// server URL (or, for test setups only, Realm settings → General → Require SSL: none)';
    case 'realm_disabled':
      return `Realm settings → ${s.realm} → turn "Enabled" on`;
    case 'direct_grants_disabled':
      return `${client} → Settings → Capability config: turn on "Direct access grants"`;
    default:
      return `check --client-id (the Client ID column under Clients) and copy the secret from ${client} → Credentials → Client secret; save it with \`mailauth idp set keycloak --client-secret-file FILE\``;
  }
}

export async function keycloakChecklist(s: KeycloakSettings, deps: IdpTestDeps, opts: IdpTestOptions): Promise<Check[]> {
  const list = new Checklist();
  const base = { timeoutMs: deps.idp.timeoutMs, retries: deps.idp.retries, retryBackoffMs: deps.idp.retryBackoffMs, now: deps.now, sleep: deps.sleep };
  const opened: KeycloakClient[] = [];
  const make = (serverUrl: string, ignoreSslError: boolean, realm = s.realm): KeycloakClient => {
    const c = createKeycloakClient({
      ...base,
      serverUrl,
      realm,
      clientId: s.clientId,
      clientSecret: s.clientSecret,
      ignoreSslError,
      // An injected dispatcher verifies certificates; ignore_ssl_error on https needs the client's own agent.
      ...(deps.dispatcher && !(ignoreSslError && serverUrl.startsWith('https:')) ? { dispatcher: deps.dispatcher } : {}),
    });
    opened.push(c);
    return c;
  };
  try {
    const kc = make(s.serverUrl, s.ignoreSslError);
    const reached = await keycloakServerChecks(list, kc, s, deps, make);
    let scan: Scan | null = null;
    if (reached) scan = await keycloakUserChecks(list, kc, s, deps, opts);
    else for (const [id, t] of KC_USER_CHECKS) list.skip(id, t, true, 'skipped: see the failure above');
    await mappingCheck(list, s.mapping, deps, scan?.templateValues ?? null, s.loginProvisioning || s.importUsers);
    if (opts.user !== undefined) {
      if (reached) await userCheck(list, kc, s, deps, opts.user);
      else list.skip('user', `User ${opts.user}`, true, 'skipped: see the failure above');
    }
    return list.checks;
  } finally {
    await Promise.all(opened.map((c) => c.close()));
  }
}

const KC_USER_CHECKS: [string, string][] = [
  ['admin-api', 'Admin users API allowed (view-users)'],
  ['user-count', 'Users in the realm'],
  ['attributes', `${TEMPLATE_ATTRIBUTE} attribute visible`],
  ['mailcow-password', `${PASSWORD_ATTRIBUTE} present with an accepted scheme`],
];

/** Reachability, TLS, discovery (with the /auth hint), client credentials. True when a token was obtained. */
async function keycloakServerChecks(
  list: Checklist,
  kc: KeycloakClient,
  s: KeycloakSettings,
  deps: IdpTestDeps,
  make: (serverUrl: string, ignoreSslError: boolean, realm?: string) => KeycloakClient,
): Promise<boolean> {
  // One request tells reachability, TLS and discovery apart.
  let discoveryError: unknown = null;
  let issuer: string | null = null;
  try {
    issuer = (await kc.discovery()).issuer;
  } catch (err) {
    discoveryError = err;
  }
  let strict: unknown = null;
  if (s.ignoreSslError && s.serverUrl.startsWith('https:')) strict = await make(s.serverUrl, false).discovery().then(() => null, (err: unknown) => err);
  const discTitle = `Realm discovery document (realm ${s.realm})`;
  const ccTitle = `Client credentials accepted (client ${s.clientId})`;
  if (!transportChecks(list, new URL(s.serverUrl), s.ignoreSslError, discoveryError, strict)) {
    list.skip('discovery', discTitle, true, 'skipped: the server cannot be reached');
    list.skip('client-credentials', ccTitle, true, 'skipped: the server cannot be reached');
    return false;
  }
  if (discoveryError !== null) {
    if (isMailauthError(discoveryError, 'ERR_IDP_NOT_FOUND')) {
      const alt = alternateServerUrl(s.serverUrl);
      const altOk = await make(alt, s.ignoreSslError).discovery().then(() => true, () => false);
      if (altOk) {
        const adding = alt.endsWith('/auth');
        list.add({
          id: 'discovery',
          status: 'fail',
          required: true,
          title: discTitle,
          detail: `${kc.urls.discovery} answered 404, but ${alt}/realms/${s.realm}/… answers: ${adding ? 'this Keycloak serves under /auth (Keycloak ≤ 16, or started with --http-relative-path=/auth)' : 'Keycloak 17 and later serve without the /auth prefix'}`,
          fix: `mailauth idp set keycloak --server-url ${alt}`,
        });
      } else {
        const master = await make(s.serverUrl, s.ignoreSslError, 'master').discovery().then(() => true, () => false);
        list.add({
          id: 'discovery',
          status: 'fail',
          required: true,
          title: discTitle,
          detail: master
            ? `Keycloak answers at ${s.serverUrl}, but realm ${JSON.stringify(s.realm)} does not exist there`
            : `${kc.urls.discovery} answered 404 (with and without /auth): not a Keycloak server, or the realm does not exist`,
          fix: master
            ? 'check --realm: realm names are case-sensitive (the realm list is in the admin console, top left)'
            : 'check --server-url (the base URL of Keycloak, e.g. https://kc.example.org) and --realm',
        });
      }
    } else {
      list.add({ id: 'discovery', status: 'fail', required: true, title: discTitle, detail: detailOf(discoveryError), fix: 'check --server-url: is it Keycloak, and not a proxy error page?' });
    }
    list.skip('client-credentials', ccTitle, true, 'skipped: no realm discovery document');
    return false;
  }
  const expectedIssuer = kc.urls.realmBase;
  list.add({
    id: 'discovery',
    status: 'pass',
    required: true,
    title: discTitle,
    detail:
      issuer === expectedIssuer
        ? `issuer ${issuer}`
        : `issuer ${issuer} differs from ${expectedIssuer} (Keycloak's frontend hostname differs from the URL mailauth uses); fine for mailauth, which derives every endpoint from --server-url`,
  });
  let ok = true;
  try {
    await kc.serviceToken();
    list.add({ id: 'client-credentials', status: 'pass', required: true, title: ccTitle, detail: 'got a service-account token' });
  } catch (err) {
    list.add({ id: 'client-credentials', status: 'fail', required: true, title: ccTitle, detail: detailOf(err), fix: clientFix(reason(err), s) });
    ok = false;
  }
  if (deps.passwordGrant) await directGrantCheck(list, kc, s);
  return ok;
}

/** Admin API, user count, and one scan for attribute visibility and password schemes. */
async function keycloakUserChecks(list: Checklist, kc: KeycloakClient, s: KeycloakSettings, deps: IdpTestDeps, opts: IdpTestOptions): Promise<Scan | null> {
  const adminTitle = 'Admin users API allowed (view-users)';
  let total: number;
  try {
    total = await kc.countUsers();
    list.add({ id: 'admin-api', status: 'pass', required: true, title: adminTitle });
  } catch (err) {
    const forbidden = isMailauthError(err, 'ERR_IDP_FORBIDDEN');
    list.add({
      id: 'admin-api',
      status: 'fail',
      required: true,
      title: adminTitle,
      detail: forbidden ? `Keycloak answered 403: the service account of client ${s.clientId} lacks the view-users role` : detailOf(err),
      fix: forbidden
        ? `Clients → ${s.clientId} → Service accounts roles → Assign role → Filter by clients → realm-management view-users → Assign`
        : 'see the detail above',
    });
    for (const [id, t] of KC_USER_CHECKS.slice(1)) list.skip(id, t, true, 'skipped: the admin users API is not usable');
    return null;
  }
  list.add({
    id: 'user-count',
    status: total === 0 ? 'warn' : 'pass',
    required: true,
    title: 'Users in the realm',
    detail: total === 0 ? `realm ${s.realm} has no users: import and sync have nothing to do` : `${plural(total, 'user')} in realm ${s.realm}`,
  });
  let scan: Scan;
  try {
    scan = await scanUsers(kc, opts.scanLimit ?? 1000);
  } catch (err) {
    list.add({ id: 'attributes', status: 'fail', required: true, title: `${TEMPLATE_ATTRIBUTE} attribute visible`, detail: `listing users failed: ${detailOf(err)}` });
    list.skip('mailcow-password', `${PASSWORD_ATTRIBUTE} present with an accepted scheme`, true, 'skipped: users could not be listed');
    return null;
  }
  attributesCheck(list, scan, s);
  passwordCheck(list, scan, s, deps);
  return scan;
}

async function directGrantCheck(list: Checklist, kc: KeycloakClient, s: KeycloakSettings): Promise<void> {
  const title = 'Direct access grants (password grant) enabled';
  // With the mailpassword flow on, keycloak mailboxes never use the password grant.
  const required = !s.mailpasswordFlow;
  try {
    // A made-up user: "Invalid user credentials" proves the grant is allowed without touching a real account.
    await kc.passwordGrant(`mailauth-probe-${randomBytes(6).toString('hex')}`, randomBytes(18).toString('base64url'));
    list.add({ id: 'direct-grants', status: 'pass', required, title, detail: 'a probe with a made-up user was refused as an unknown user, so the grant is allowed' });
  } catch (err) {
    list.add({
      id: 'direct-grants',
      status: 'fail',
      required,
      title,
      detail: `${detailOf(err)} (auth.oidc_password_grant uses it${required ? ' for every keycloak mailbox, since the mailpassword flow is off' : ' only while the mailpassword flow is off'})`,
      fix: clientFix(reason(err) ?? 'direct_grants_disabled', s),
    });
  }
}

function attributesCheck(list: Checklist, scan: Scan, s: KeycloakSettings): void {
  const title = `${TEMPLATE_ATTRIBUTE} attribute visible`;
  const of = `${scan.scanned}${scan.total > scan.scanned ? ` scanned of ${scan.total}` : ''} users`;
  if (scan.scanned === 0) {
    list.add({ id: 'attributes', status: 'skip', required: false, title, detail: 'no users to look at' });
  } else if (scan.withTemplate > 0) {
    list.add({ id: 'attributes', status: 'pass', required: false, title, detail: `set on ${scan.withTemplate} of ${of}` });
  } else if (scan.withAnyAttribute === 0) {
    list.add({
      id: 'attributes',
      status: 'warn',
      required: false,
      title,
      detail: `none of ${of} shows any attribute through the admin API${s.mapping.defaultTemplate ? ` (every user gets the default template ${s.mapping.defaultTemplate})` : ''}`,
      fix: UNMANAGED_FIX(s.realm),
    });
  } else {
    list.add({
      id: 'attributes',
      status: 'warn',
      required: false,
      title,
      detail: `users have attributes, but none of ${of} has ${TEMPLATE_ATTRIBUTE}`,
      fix: `set ${TEMPLATE_ATTRIBUTE} on the users (Users → user → Attributes), e.g. from LDAP with a user-attribute mapper; until then the default template applies`,
    });
  }
}

function passwordCheck(list: Checklist, scan: Scan, s: KeycloakSettings, deps: IdpTestDeps): void {
  const title = `${PASSWORD_ATTRIBUTE} present with an accepted scheme`;
  if (!s.mailpasswordFlow) {
    list.skip('mailcow-password', title, true, 'the mailpassword flow is off (keycloak mailboxes log in with app passwords only)');
    return;
  }
  if (scan.scanned === 0) {
    list.skip('mailcow-password', title, true, 'no users to look at');
    return;
  }
  if (scan.withPassword === 0) {
    list.add({
      id: 'mailcow-password',
      status: 'fail',
      required: true,
      title,
      detail: `the mailpassword flow is on, but none of ${scan.scanned} users scanned has a visible ${PASSWORD_ATTRIBUTE}: nobody can log in with it`,
      fix: `store a hash made with \`mailauth pw -s BLF-CRYPT\` in each user's ${PASSWORD_ATTRIBUTE} attribute; if they have one, ${UNMANAGED_FIX(s.realm)}`,
    });
    return;
  }
  const weak = weakSchemes();
  const refused = new Map([...scan.schemes].filter(([scheme]) => scheme === '(unrecognized)' || !isSchemeAllowed(scheme, deps.idpHashSchemes)));
  const weakAllowed = new Map([...scan.schemes].filter(([scheme]) => !refused.has(scheme) && weak.has(scheme)));
  const summary = `${scan.withPassword} of ${scan.scanned} users scanned have one; schemes: ${schemeSummary(scan.schemes)}`;
  if (refused.size > 0) {
    const n = [...refused.values()].reduce((a, b) => a + b, 0);
    list.add({
      id: 'mailcow-password',
      status: 'warn',
      required: true,
      title,
      detail: `${plural(n, 'user')} cannot log in: ${schemeSummary(refused)} ${n === 1 ? 'is' : 'are'} not in auth.idp_hash_schemes (${deps.idpHashSchemes.join(', ')}). ${summary}`,
      fix: 'rehash those passwords with `mailauth pw -s BLF-CRYPT` and store the result; plaintext and unsalted schemes are refused on purpose',
    });
  } else if (scan.overCaps.size > 0) {
    const n = [...scan.overCaps.values()].reduce((a, b) => a + b, 0);
    list.add({
      id: 'mailcow-password',
      status: 'warn',
      required: true,
      title,
      detail: `${plural(n, 'user')} cannot log in: their hash asks for more work than mailauth accepts from an identity provider (${[...scan.overCaps].map(([k, v]) => `${k}: ${v}`).join(', ')}). ${summary}`,
      fix: 'rehash those passwords with `mailauth pw -s BLF-CRYPT` (cost 10) and store the result',
    });
  } else if (weakAllowed.size > 0) {
    list.add({
      id: 'mailcow-password',
      status: 'warn',
      required: true,
      title,
      detail: `weak (plaintext or unsalted) schemes are accepted by auth.idp_hash_schemes: ${schemeSummary(weakAllowed)}. ${summary}`,
      fix: 'rehash with `mailauth pw -s BLF-CRYPT` and remove the weak schemes from auth.idp_hash_schemes',
    });
  } else {
    list.add({ id: 'mailcow-password', status: 'pass', required: true, title, detail: summary });
  }
}

async function userCheck(list: Checklist, kc: KeycloakClient, s: KeycloakSettings, deps: IdpTestDeps, email: string): Promise<void> {
  const title = `User ${email}`;
  let found: KeycloakUser[];
  try {
    found = (await kc.findUsersByEmail(email, { exact: true })).filter((u) => (u.email ?? '').toLowerCase() === email.toLowerCase());
  } catch (err) {
    list.add({ id: 'user', status: 'fail', required: true, title, detail: `lookup failed: ${detailOf(err)}` });
    return;
  }
  if (found.length === 0) {
    list.add({ id: 'user', status: 'fail', required: true, title, detail: `no user in realm ${s.realm} has this email`, fix: "check the user's Email field in Keycloak (Users → user → Details)" });
    return;
  }
  if (found.length > 1) {
    list.add({
      id: 'user',
      status: 'fail',
      required: true,
      title,
      detail: `${found.length} users share this email (${found.map((u) => u.username).join(', ')}); mailauth refuses logins that are ambiguous`,
      fix: 'give each Keycloak user a distinct email (Realm settings → Login → Duplicate emails: off)',
    });
    return;
  }
  const u = found[0] as KeycloakUser;
  const value = attributeValue(u, TEMPLATE_ATTRIBUTE);
  const choice = templateFor(value, s);
  const parts = [
    `username ${u.username}`,
    u.enabled ? 'enabled' : 'DISABLED',
    `${TEMPLATE_ATTRIBUTE} ${value === null ? '(none)' : JSON.stringify(value)} → ${choice ? `template ${choice.template} (${choice.via})` : 'no template (skipped by provisioning)'}`,
  ];
  if (u.requiredActions.length > 0) parts.push(`required actions: ${u.requiredActions.join(', ')}`);
  const problems: string[] = [];
  const fixes: string[] = [];
  if (!u.enabled) {
    problems.push('the user is disabled in Keycloak');
    fixes.push('Users → user → Details → Enabled');
  }
  if (s.mailpasswordFlow) {
    const hash = attributeValue(u, PASSWORD_ATTRIBUTE);
    if (hash === null) {
      parts.push(`no ${PASSWORD_ATTRIBUTE}`);
      problems.push(`no visible ${PASSWORD_ATTRIBUTE}: this user cannot log in with the mailpassword flow`);
      fixes.push(`store a hash from \`mailauth pw -s BLF-CRYPT\` in ${PASSWORD_ATTRIBUTE}`);
    } else {
      const scheme = schemeOf(hash);
      const ok = scheme !== null && isSchemeAllowed(scheme, deps.idpHashSchemes);
      parts.push(`password scheme ${scheme ?? '(unrecognized)'} (${ok ? 'accepted' : 'refused'})`);
      if (!ok) {
        problems.push(`the hash scheme ${scheme ?? '(unrecognized)'} is not accepted by auth.idp_hash_schemes`);
        fixes.push('rehash with `mailauth pw -s BLF-CRYPT`');
      }
    }
  }
  const status = problems.length > 0 ? 'fail' : choice === null && s.loginProvisioning ? 'warn' : 'pass';
  list.add({
    id: 'user',
    status,
    required: true,
    title,
    detail: [...problems, parts.join(', ')].join('; '),
    ...(fixes.length > 0 ? { fix: fixes.join('; ') } : status === 'warn' ? { fix: 'map the value with `mailauth idp map add VALUE TEMPLATE` or set a default template' } : {}),
  });
}
