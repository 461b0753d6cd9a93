/**
 * The LDAP checklist of `idp test` (issue 18): each host reachable and its
 * TLS (certificate trusted, name matching), the service bind, the base DN,
 * the filter finding users, the users having the username and template
 * attributes, the mapping's coverage, and with --user the user's entry (and,
 * with a password on stdin, a real bind). Each failure says its cause and
 * the fix. Reads only; no password or secret reaches a line.
 */
import type { Client } from 'ldapts';
import { NoSuchObjectError } from 'ldapts';
import { isMailauthError } from '../errors.js';
import { Checklist, detailOf, mappingCheck, plural, reason } from './checklist-common.js';
import type { Check, IdpTestDeps, IdpTestOptions } from './checklist-common.js';
import { createLdapDirectory, connectionOptionsOf, ldapFault, openConnection } from './ldap.js';
import type { LdapConnectionOptions, LdapDirectory, LdapEntry } from './ldap.js';
import { addressOf, disabledReason, lockedReason, loginFilter, templateValuesOf, userAttributes } from './ldap-entry.js';
import { isLoopbackHost, templateFor } from './settings.js';
import type { LdapSettings } from './settings.js';

const hostPort = (h: string, port: number): string => `${h.includes(':') ? `[${h}]` : h}:${port}`;

function tlsFix(code: string | null, host: string, s: LdapSettings): string {
  switch (code) {
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the certificate is not issued for ${host}: use the host name on the certificate in --host (mailauth idp set ldap --host NAME), or reissue it with ${host} as a subject alternative name`;
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'renew the directory server certificate (check the clocks too)';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'EPROTO':
      return s.useSsl
        ? `the port does not speak TLS from the first byte: for LDAPS use port 636 (--port 636), or use --no-ssl --starttls on ${s.port}`
        : 'the server did not upgrade the connection: check that StartTLS is enabled on the directory';
    default:
      return `trust the CA that issued the directory's certificate: mailauth idp set ldap --ca-file /path/to/ca.pem (or add it to the system store); --ignore-ssl-error turns checks off but is not recommended`;
  }
}

function connectFix(err: unknown, host: string, s: LdapSettings): string {
  const code = isMailauthError(err) ? (err.details?.networkCode as string | undefined) : undefined;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the name ${host} does not resolve from this host; check --host and DNS`;
  if (code === 'ECONNREFUSED') return `nothing listens on ${hostPort(host, s.port)}: check --port (389 for ldap:// and StartTLS, 636 for LDAPS with --ssl) and that slapd/AD runs`;
  if (isMailauthError(err, 'ERR_IDP_TIMEOUT')) return `no answer within --connect-timeout (${s.connectTimeoutMs} ms): check the firewall between this host and ${host}, or raise --connect-timeout`;
  return 'check --host and --port, and that the directory server runs';
}

async function close(c: Client | null): Promise<void> {
  if (c) await c.unbind().catch(() => undefined);
}

/** Per host: reachable, then TLS. Returns the hosts that passed both. */
async function hostChecks(list: Checklist, s: LdapSettings, o: LdapConnectionOptions): Promise<string[]> {
  const good: string[] = [];
  const encrypted = s.useSsl || s.useTls;
  for (const host of s.hosts) {
    const title = `Host reachable (${hostPort(host, s.port)}${s.useSsl ? ', LDAPS' : s.useTls ? ', StartTLS' : ''})`;
    const tlsTitle = `TLS certificate valid (${host})`;
    let client: Client | null = null;
    let err: unknown = null;
    try {
      client = await openConnection(o, host);
    } catch (e) {
      err = e;
    }
    await close(client);
    const tlsErr = err !== null && reason(err) === 'tls' ? err : null;
    if (err !== null && tlsErr === null) {
      list.add({ id: `reachable:${host}`, status: 'fail', required: true, title, detail: detailOf(err), fix: connectFix(err, host, s) });
      list.skip(`tls:${host}`, tlsTitle, true, 'skipped: host not reachable');
      continue;
    }
    list.add({ id: `reachable:${host}`, status: 'pass', required: true, title });
    if (!encrypted) {
      const loop = isLoopbackHost(host);
      list.add({
        id: `tls:${host}`,
        status: loop ? 'skip' : 'warn',
        required: true,
        title: tlsTitle,
        detail: loop ? 'plain LDAP to a loopback address: no TLS needed' : `plain LDAP to ${host}: the service password and every user's password travel unencrypted`,
        ...(loop ? {} : { fix: 'use StartTLS (--starttls) or LDAPS (--ssl --port 636)' }),
      });
      good.push(host);
      continue;
    }
    if (tlsErr !== null) {
      const code = isMailauthError(tlsErr) ? ((tlsErr.details?.networkCode as string | undefined) ?? null) : null;
      list.add({ id: `tls:${host}`, status: 'fail', required: true, title: tlsTitle, detail: detailOf(tlsErr), fix: tlsFix(code, host, s) });
      continue;
    }
    if (s.ignoreSslError) {
      let strictErr: unknown = null;
      await openConnection({ ...o, ignoreSslError: false }, host).then(close, (e: unknown) => {
        strictErr = e;
      });
      const code = isMailauthError(strictErr) ? ((strictErr.details?.networkCode as string | undefined) ?? null) : null;
      list.add({
        id: `tls:${host}`,
        status: 'warn',
        required: true,
        title: tlsTitle,
        detail: strictErr ? `certificate checks are off (ignore_ssl_error); with checks on: ${detailOf(strictErr)}` : 'certificate checks are off (ignore_ssl_error), although the certificate verifies',
        fix: strictErr ? `${tlsFix(code, host, s)}; then turn ignore_ssl_error off (--no-ignore-ssl-error)` : 'turn ignore_ssl_error off: mailauth idp set ldap --no-ignore-ssl-error',
      });
    } else {
      list.add({ id: `tls:${host}`, status: 'pass', required: true, title: tlsTitle });
    }
    good.push(host);
  }
  return good;
}

interface Scan {
  scanned: number;
  withAddress: number;
  withUsernameField: number;
  withTemplate: number;
  disabled: number;
  templateValues: Map<string | null, number>;
  sample: LdapEntry | null;
}

async function scan(dir: LdapDirectory, s: LdapSettings, limit: number): Promise<Scan> {
  const sc: Scan = { scanned: 0, withAddress: 0, withUsernameField: 0, withTemplate: 0, disabled: 0, templateValues: new Map(), sample: null };
  const it = dir.pages(s.basedn, s.filter ?? '(objectClass=*)', { pageSize: Math.min(500, limit), attributes: userAttributes(s) });
  try {
    for await (const page of it) {
      for (const e of page) {
        if (sc.scanned >= limit) break;
        sc.scanned++;
        if ((e.attrs[s.usernameField.toLowerCase()] ?? []).length > 0) sc.withUsernameField++;
        if (addressOf(e, s) !== null) {
          sc.withAddress++;
          sc.sample ??= e;
        }
        if (disabledReason(e)) sc.disabled++;
        const v = templateValuesOf(e, s);
        if (v.length > 0) sc.withTemplate++;
        const mapped = v.find((x) => s.mapping.mappers.includes(x)) ?? v[0] ?? null;
        sc.templateValues.set(mapped, (sc.templateValues.get(mapped) ?? 0) + 1);
      }
      if (sc.scanned >= limit) break;
    }
  } finally {
    await it.return(undefined);
  }
  return sc;
}

export async function ldapChecklist(s: LdapSettings, deps: IdpTestDeps, opts: IdpTestOptions): Promise<Check[]> {
  const list = new Checklist();
  let o: LdapConnectionOptions;
  try {
    o = connectionOptionsOf(s);
  } catch (err) {
    list.add({ id: 'ca-file', status: 'fail', required: true, title: 'CA file readable', detail: detailOf(err), fix: 'give a readable PEM file with --ca-file, or drop it with `mailauth idp set ldap --ca-file ""`' });
    return list.checks;
  }
  const good = await hostChecks(list, s, o);
  const later: [string, string][] = [
    ['service-bind', `Service account bind (${s.binddn})`],
    ['base-dn', `Base DN exists (${s.basedn})`],
    ['filter', `Filter finds users (${s.filter ?? '(objectClass=*)'})`],
    ['username-field', `Users have the username field (${s.usernameField})`],
    ['template-attribute', `Users have the template attribute (${s.attributeField ?? 'attribute_field not set'})`],
  ];
  if (good.length === 0) {
    for (const [id, title] of later) list.skip(id, title, true, 'skipped: no host passed the checks above');
    await mappingCheck(list, s.mapping, deps, null, s.loginProvisioning || s.importUsers);
    if (opts.user !== undefined) list.skip('user', `User ${opts.user}`, true, 'skipped: no host passed the checks above');
    return list.checks;
  }
  const dir = createLdapDirectory({ ...o, hosts: good, bindDn: s.binddn, bindPassword: s.bindpass, poolSize: 1 });
  try {
    // Service bind: the first search opens a bound service connection.
    const [bindId, bindTitle] = later[0] as [string, string];
    let baseErr: unknown = null;
    try {
      await dir.search(s.basedn, '(objectClass=*)', { scope: 'base', attributes: ['1.1'] });
    } catch (err) {
      if (isMailauthError(err, 'ERR_IDP_AUTH')) {
        list.add({
          id: bindId,
          status: 'fail',
          required: true,
          title: bindTitle,
          detail: detailOf(err),
          fix: 'check --bind-dn (the full DN of the service account, e.g. cn=mailauth,ou=services,dc=example,dc=org; AD also takes svc@corp.example) and its password (--bind-password-file); is the account locked or expired?',
        });
        for (const [id, title] of later.slice(1)) list.skip(id, title, true, 'skipped: the service account cannot bind');
        await mappingCheck(list, s.mapping, deps, null, s.loginProvisioning || s.importUsers);
        if (opts.user !== undefined) list.skip('user', `User ${opts.user}`, true, 'skipped: the service account cannot bind');
        return list.checks;
      }
      baseErr = err;
    }
    list.add({ id: bindId, status: 'pass', required: true, title: bindTitle });
    const [baseId, baseTitle] = later[1] as [string, string];
    if (baseErr !== null) {
      const noSuch = baseErr instanceof NoSuchObjectError || (isMailauthError(baseErr) && baseErr.details?.ldapCode === 32);
      list.add({
        id: baseId,
        status: 'fail',
        required: true,
        title: baseTitle,
        detail: noSuch ? `the directory has no entry ${s.basedn} (LDAP result 32, no such object)` : detailOf(baseErr),
        fix: noSuch ? 'check --base-dn: the DN of the container users live in (e.g. ou=people,dc=example,dc=org; AD: OU=Staff,DC=corp,DC=example); ldapsearch -b "" -s base namingContexts shows the suffixes' : 'check that the service account may read the base DN',
      });
      for (const [id, title] of later.slice(2)) list.skip(id, title, true, 'skipped: the base DN cannot be read');
      await mappingCheck(list, s.mapping, deps, null, s.loginProvisioning || s.importUsers);
      if (opts.user !== undefined) list.skip('user', `User ${opts.user}`, true, 'skipped: the base DN cannot be read');
      return list.checks;
    }
    list.add({ id: baseId, status: 'pass', required: true, title: baseTitle });

    let sc: Scan | null = null;
    const [filterId, filterTitle] = later[2] as [string, string];
    try {
      sc = await scan(dir, s, opts.scanLimit ?? 1000);
    } catch (err) {
      list.add({ id: filterId, status: 'fail', required: true, title: filterTitle, detail: detailOf(ldapFault(err, good[0] ?? '', 'paged search at')), fix: 'check --filter and that the directory allows simple paged results for the service account' });
    }
    if (sc !== null) {
      if (sc.scanned === 0) {
        list.add({
          id: filterId,
          status: 'fail',
          required: true,
          title: filterTitle,
          detail: `no entry under ${s.basedn} matches the filter`,
          fix: `check --filter (OpenLDAP: (objectClass=inetOrgPerson); AD: (&(objectClass=user)(objectCategory=person))) and --base-dn; also that the service account may read the users`,
        });
      } else {
        list.add({ id: filterId, status: 'pass', required: true, title: filterTitle, detail: `${plural(sc.scanned, 'entry', 'entries')} scanned${sc.disabled ? `, ${sc.disabled} disabled` : ''}` });
      }
      const [uId, uTitle] = later[3] as [string, string];
      if (sc.scanned > 0 && sc.withAddress === 0) {
        list.add({
          id: uId,
          status: 'fail',
          required: true,
          title: uTitle,
          detail: `none of the ${plural(sc.scanned, 'scanned entry', 'scanned entries')} has an email address in ${s.usernameField} or mail, so no login can match and nothing can be imported`,
          fix: `set --username-field to the attribute holding the login address (OpenLDAP: mail; AD: userPrincipalName or mail)`,
        });
      } else if (sc.scanned > 0) {
        const missing = sc.scanned - sc.withAddress;
        list.add({
          id: uId,
          status: missing > 0 ? 'warn' : 'pass',
          required: true,
          title: uTitle,
          detail: `${sc.withAddress} of ${sc.scanned} have an address (${sc.withUsernameField} in ${s.usernameField})${sc.sample ? `; e.g. ${addressOf(sc.sample, s) ?? ''} (${sc.sample.dn})` : ''}`,
          ...(missing > 0 ? { fix: `${plural(missing, 'entry', 'entries')} without an address are skipped by sync and cannot log in; narrow --filter or fill in ${s.usernameField}` } : {}),
        });
      } else list.skip(uId, uTitle, true, 'skipped: no users found');
      const [tId, tTitle] = later[4] as [string, string];
      if (!s.attributeField) {
        list.add({
          id: tId,
          status: s.mapping.defaultTemplate ? 'pass' : 'warn',
          required: true,
          title: tTitle,
          detail: s.mapping.defaultTemplate ? `every user gets the default template ${s.mapping.defaultTemplate}` : 'no attribute_field and no default template: login provisioning and import skip every user',
          ...(s.mapping.defaultTemplate ? {} : { fix: 'set --attribute-field (e.g. employeeType or department) and map values with `mailauth idp map add VALUE TEMPLATE`, or `mailauth idp map default TEMPLATE`' }),
        });
      } else if (sc.scanned > 0 && sc.withTemplate === 0) {
        list.add({
          id: tId,
          status: 'warn',
          required: true,
          title: tTitle,
          detail: `none of the ${plural(sc.scanned, 'scanned entry', 'scanned entries')} has ${s.attributeField}${s.mapping.defaultTemplate ? `; all get the default template ${s.mapping.defaultTemplate}` : ''}`,
          fix: `check the spelling of --attribute-field (attribute names as the directory has them) and that the service account may read it`,
        });
      } else if (sc.scanned > 0) {
        list.add({ id: tId, status: 'pass', required: true, title: tTitle, detail: `${sc.withTemplate} of ${sc.scanned} have ${s.attributeField}` });
      } else list.skip(tId, tTitle, true, 'skipped: no users found');
    } else {
      for (const [id, title] of later.slice(3)) list.skip(id, title, true, 'skipped: the user search failed');
    }
    await mappingCheck(list, s.mapping, deps, sc?.templateValues ?? null, s.loginProvisioning || s.importUsers);
    if (opts.user !== undefined) await userCheck(list, dir, s, opts.user, opts.password);
    return list.checks;
  } finally {
    await dir.close();
  }
}

async function userCheck(list: Checklist, dir: LdapDirectory, s: LdapSettings, user: string, password: string | undefined): Promise<void> {
  const title = `User ${user}`;
  let found: LdapEntry[];
  try {
    found = await dir.search(s.basedn, loginFilter(s, user), { attributes: userAttributes(s), sizeLimit: 3 });
  } catch (err) {
    list.add({ id: 'user', status: 'fail', required: true, title, detail: detailOf(err), fix: 'see the checks above' });
    return;
  }
  if (found.length === 0) {
    list.add({ id: 'user', status: 'fail', required: true, title, detail: `no entry under ${s.basedn} matches ${loginFilter(s, user)}`, fix: `check the user's ${s.usernameField} (and mail), and that the entry matches --filter` });
    return;
  }
  if (found.length > 1) {
    list.add({ id: 'user', status: 'fail', required: true, title, detail: `${found.length} entries match (${found.map((e) => e.dn).join('; ')}); mailauth refuses ambiguous logins`, fix: `give each user a unique ${s.usernameField}, or narrow --filter` });
    return;
  }
  const e = found[0] as LdapEntry;
  const values = templateValuesOf(e, s);
  const choice = values.map((v) => templateFor(v, s)).find((c) => c?.via === 'mapping') ?? templateFor(null, s);
  const facts = [`${e.dn}`, `address ${addressOf(e, s) ?? 'none'}`, `${s.attributeField ?? 'template attribute'} ${values.length ? JSON.stringify(values) : 'none'}`, `template ${choice ? `${choice.template} (${choice.via})` : 'none: skipped'}`];
  const disabled = disabledReason(e);
  if (disabled) {
    list.add({ id: 'user', status: 'warn', required: true, title, detail: `${facts.join('; ')}; ${disabled}`, fix: 'enable the account in the directory if this user should log in' });
    return;
  }
  list.add({ id: 'user', status: 'pass', required: true, title, detail: facts.join('; ') });
  if (password === undefined) {
    list.skip('user-bind', `Bind as ${user}`, false, 'skipped: give the password on stdin with --password-stdin to test a real bind');
    return;
  }
  const bindTitle = `Bind as ${user}`;
  try {
    const r = await dir.bind(e.dn, password);
    if (r.ok) list.add({ id: 'user-bind', status: 'pass', required: true, title: bindTitle, detail: 'the directory accepted the password' });
    else {
      const locked = lockedReason(e, r.diagnostic);
      list.add({
        id: 'user-bind',
        status: 'fail',
        required: true,
        title: bindTitle,
        detail: locked ?? 'the directory refused the password (invalid credentials)',
        fix: locked ? 'unlock the account in the directory' : 'check the password; a refused bind counts towards the directory lockout policy',
      });
    }
  } catch (err) {
    list.add({ id: 'user-bind', status: 'fail', required: true, title: bindTitle, detail: detailOf(err), fix: 'see the checks above' });
  }
}

