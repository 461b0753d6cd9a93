/**
 * Issue 18: `mailauth idp test` for LDAP against real slapd instances: a good
 * setup passes, and each broken setting fails the right check with its cause
 * and fix — closed port, dead failover host, LDAPS and StartTLS with a
 * self-signed CA (refused unless trusted or ignore_ssl_error), a certificate
 * for another name, LDAPS to the plain port, the service password, the base
 * DN, the filter, the username and template attributes, the mapping, and the
 * --user lookup and bind. No secret reaches a check line.
 */
import t from 'tap';
import { checklistPassed, parseIdpSettings, runIdpTest } from '../../src/idp/index.js';
import type { Check, IdpTestDeps, IdpTestOptions, LdapSettings } from '../../src/idp/index.js';
import { freePort } from '../helpers/dovecot.js';
import { PEOPLE_FIXTURE, ldapRows } from '../helpers/ldap-world.js';
import { SERVICE_PASSWORD, requireSlapd, startSlapd } from '../helpers/slapd.js';
import type { SlapdInstance } from '../helpers/slapd.js';

const deps: IdpTestDeps = {
  templateNames: async () => ['Staff', 'Student', 'Default'],
  idp: { timeoutMs: 2000, retries: 0, retryBackoffMs: 0 },
  idpHashSchemes: ['SSHA256'],
  passwordGrant: false,
};

function settings(slapd: SlapdInstance, extra: Record<string, string> = {}, transport: 'plain' | 'ldaps' | 'starttls' = 'plain'): LdapSettings {
  const p = parseIdpSettings(ldapRows(slapd, { transport, extra }));
  if (!p.ok || p.settings?.source !== 'ldap') throw new Error(`bad settings: ${JSON.stringify(p)}`);
  return p.settings;
}

async function run(s: LdapSettings, o: IdpTestOptions = {}): Promise<{ checks: Check[]; by: (id: string) => Check; passed: boolean }> {
  const checks = await runIdpTest(s, deps, o);
  const text = JSON.stringify(checks);
  if (text.includes(SERVICE_PASSWORD) || text.includes('alice-pw')) throw new Error('a secret reached a check line');
  return {
    checks,
    passed: checklistPassed(checks),
    by: (id) => {
      const c = checks.find((x) => x.id === id);
      if (!c) throw new Error(`no check ${id} in ${checks.map((x) => x.id).join(', ')}`);
      return c;
    },
  };
}

async function main(): Promise<void> {
  const slapd = await startSlapd(t, { people: PEOPLE_FIXTURE });
  const host = slapd.host;

  t.test('a good setup passes; --user with and without a password', async (t) => {
    const r = await run(settings(slapd), { user: 'alice@example.org', password: 'alice-pw' });
    t.ok(r.passed, JSON.stringify(r.checks, null, 1));
    t.same(
      r.checks.map((c) => [c.id, c.status]),
      [
        [`reachable:${host}`, 'pass'],
        [`tls:${host}`, 'skip'],
        ['service-bind', 'pass'],
        ['base-dn', 'pass'],
        ['filter', 'pass'],
        ['username-field', 'pass'],
        ['template-attribute', 'pass'],
        ['mapping', 'warn'],
        ['user', 'pass'],
        ['user-bind', 'pass'],
      ],
    );
    t.match(r.by('user').detail, /uid=alice,ou=people.*address alice@example.org.*employeeType \["staff"\].*template Staff \(mapping\)/);
    t.match(r.by('mapping').detail, /scanned user.*would be skipped|"staff" → Staff/);
    const wrong = await run(settings(slapd), { user: 'alice@example.org', password: 'nope' });
    t.match(wrong.by('user-bind'), { status: 'fail', detail: /refused the password/ });
    const none = await run(settings(slapd), { user: 'ghost@example.org' });
    t.match(none.by('user'), { status: 'fail', fix: /mail/ });
    t.match((await run(settings(slapd), { user: 'twin@example.org' })).by('user'), { status: 'fail', detail: /2 entries match/ });
    t.match((await run(settings(slapd), { user: 'disabled@example.org' })).by('user'), { status: 'warn', detail: /disabled/ });
    t.match((await run(settings(slapd), { user: 'alice@example.org' })).by('user-bind'), { status: 'skip', detail: /--password-stdin/ });
  });

  t.test('host and port', async (t) => {
    const closed = await run(settings(slapd, { port: String(await freePort()) }));
    t.notOk(closed.passed);
    t.match(closed.by(`reachable:${host}`), { status: 'fail', detail: /ECONNREFUSED/, fix: /nothing listens on .*--port/ });
    t.equal(closed.by('service-bind').status, 'skip');
    const failover = await run(settings(slapd, { host: `127.0.0.2,${host}` }));
    t.match(failover.by('reachable:127.0.0.2'), { status: 'fail' });
    t.match(failover.by(`reachable:${host}`), { status: 'pass' });
    t.equal(failover.by('service-bind').status, 'pass', 'the checks go on with the host that works');
  });

  t.test('TLS: a self-signed CA is refused unless trusted or ignore_ssl_error', async (t) => {
    for (const transport of ['ldaps', 'starttls'] as const) {
      const untrusted = await run(settings(slapd, {}, transport));
      t.notOk(untrusted.passed, `${transport}: untrusted`);
      t.match(untrusted.by(`tls:${host}`), { status: 'fail', detail: /TLS failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/, fix: /--ca-file/ });
      const trusted = await run(settings(slapd, { ca_file: slapd.ca.caFile }, transport));
      t.ok(trusted.passed, `${transport}: trusted through ca_file`);
      t.equal(trusted.by(`tls:${host}`).status, 'pass');
      const ignored = await run(settings(slapd, { ignore_ssl_error: '1' }, transport));
      t.ok(ignored.passed, `${transport}: ignore_ssl_error passes`);
      t.match(ignored.by(`tls:${host}`), { status: 'warn', detail: /checks are off.*with checks on: .*TLS failed/, fix: /--no-ignore-ssl-error/ });
    }
    const missingCa = await run(settings(slapd, { ca_file: '/nonexistent/ca.pem' }, 'ldaps'));
    t.match(missingCa.by('ca-file'), { status: 'fail', detail: /cannot read \/nonexistent\/ca.pem \(ENOENT\)/ });
  });

  t.test('TLS: a certificate for another name, and LDAPS to the plain port', async (t) => {
    const other = await startSlapd(t, { people: PEOPLE_FIXTURE, certNames: ['ldap.test'] });
    const r = await run(settings(other, { ca_file: other.ca.caFile }, 'ldaps'));
    t.notOk(r.passed);
    t.match(r.by(`tls:${host}`), { status: 'fail', detail: /ERR_TLS_CERT_ALTNAME_INVALID/, fix: /not issued for 127.0.0.1/ });
    const plainPort = await run(settings(slapd, { use_ssl: '1', port: String(slapd.port), ca_file: slapd.ca.caFile }));
    t.notOk(plainPort.passed, 'LDAPS to the plain LDAP port fails');
    const c = plainPort.checks.find((x) => x.status === 'fail');
    t.ok(c?.fix, `with a fix: ${c?.fix}`);
  });

  t.test('service account, base DN, filter, attributes, mapping', async (t) => {
    const badPw = await run(settings(slapd, { bindpass: 'wrong-secret' }));
    t.match(badPw.by('service-bind'), { status: 'fail', detail: /refused the service account/, fix: /--bind-dn/ });
    t.equal(badPw.by('base-dn').status, 'skip');

    const badBase = await run(settings(slapd, { basedn: 'ou=nobody,dc=example,dc=org' }));
    t.match(badBase.by('base-dn'), { status: 'fail', detail: /no entry ou=nobody.*no such object/, fix: /--base-dn/ });

    const noMatch = await run(settings(slapd, { filter: '(objectClass=posixAccount)' }));
    t.match(noMatch.by('filter'), { status: 'fail', detail: /no entry under .* matches the filter/, fix: /--filter/ });

    const noAddress = await run(settings(slapd, { basedn: 'ou=services,dc=example,dc=org', filter: '(objectClass=*)' }));
    t.match(noAddress.by('username-field'), { status: 'fail', detail: /has an email address/, fix: /--username-field/ });

    const noAttr = await run(settings(slapd, { attribute_field: 'departmentNumber' }));
    t.match(noAttr.by('template-attribute'), { status: 'warn', fix: /--attribute-field/ });

    const missingTemplate = await run(settings(slapd, { mappers: JSON.stringify(['staff']), templates: JSON.stringify(['Faculty']) }));
    t.match(missingTemplate.by('mapping'), { status: 'fail', detail: /"Faculty"/ });
    t.notOk(missingTemplate.passed);
  });
}

if (requireSlapd(t)) await main();
