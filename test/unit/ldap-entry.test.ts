/**
 * Issue 18, the pure LDAP rules: filter escaping (RFC 4515), the login
 * filter, addresses, disabled/locked, the change stamp the bind cache keys
 * on, the sync user, and the LDAP settings keys mailauth adds.
 */
import t from 'tap';
import { FilterParser } from 'ldapts';
import {
  addressOf,
  changeStamp,
  disabledReason,
  displayNameOf,
  equalityFilter,
  lockedReason,
  loginFilter,
  parseIdpSettings,
  serializeIdpSettings,
  templateValuesOf,
} from '../../src/idp/index.js';
import type { LdapEntry, LdapSettings } from '../../src/idp/index.js';
import { ldapSyncUser } from '../../src/sync/index.js';

const entry = (attrs: Record<string, string[]>, dn = 'uid=a,ou=people,dc=example,dc=org'): LdapEntry => ({
  dn,
  attrs: Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k.toLowerCase(), v])),
});

const RAW = { authsource: 'ldap', host: 'ldap.example.org', basedn: 'ou=people,dc=example,dc=org', binddn: 'cn=svc,dc=example,dc=org', bindpass: 'secret' };

function ldap(extra: Record<string, string> = {}): LdapSettings {
  const p = parseIdpSettings({ ...RAW, ...extra });
  if (!p.ok || p.settings?.source !== 'ldap') throw new Error(JSON.stringify(p));
  return p.settings;
}

t.test('equalityFilter escapes every filter metacharacter', async (t) => {
  const cases: [string, string][] = [
    ['alice@example.org', '(mail=alice@example.org)'],
    ['*', '(mail=\\2a)'],
    ['a*b', '(mail=a\\2ab)'],
    ['x)(mail=*', '(mail=x\\29\\28mail=\\2a)'],
    ['\\2a', '(mail=\\5c2a)'],
    ['nul\u0000', '(mail=nul\\00)'],
    ['(|(uid=*))', '(mail=\\28|\\28uid=\\2a\\29\\29)'],
  ];
  for (const [value, want] of cases) {
    const f = equalityFilter('mail', value);
    t.equal(f, want, JSON.stringify(value));
    // And it parses back to one equality match on the literal value.
    const parsed = FilterParser.parseString(f) as unknown as { attribute: string; value: string };
    t.equal(parsed.attribute, 'mail');
    t.equal(String(parsed.value), value, `${JSON.stringify(value)} round-trips as a literal`);
  }
  t.throws(() => equalityFilter('mail)(x', 'a'), { code: 'ERR_INVALID_INPUT' }, 'attribute names are checked too');
});

t.test('loginFilter: the configured filter AND the escaped match; mail also matches for other username fields', async (t) => {
  t.equal(loginFilter({ usernameField: 'mail', filter: '(objectClass=inetOrgPerson)' }, 'a*@x.org'), '(&(objectClass=inetOrgPerson)(mail=a\\2a@x.org))');
  t.equal(loginFilter({ usernameField: 'mail', filter: null }, 'a@x.org'), '(mail=a@x.org)');
  t.equal(
    loginFilter({ usernameField: 'sAMAccountName', filter: '(objectClass=user)' }, 'alice'),
    '(&(objectClass=user)(|(sAMAccountName=alice)(mail=alice)))',
  );
});

t.test('addresses, names, template values', async (t) => {
  const s = { usernameField: 'mail', attributeField: 'employeeType' };
  t.equal(addressOf(entry({ mail: ['Alice@Example.org'] }), s), 'alice@example.org');
  t.equal(addressOf(entry({ mail: [] }), s), null);
  t.equal(addressOf(entry({ userPrincipalName: ['alice'], mail: ['alice@corp.example'] }), { usernameField: 'userPrincipalName' }), 'alice@corp.example', 'a UPN that is not an address falls back to mail');
  t.equal(addressOf(entry({ userPrincipalName: ['a@corp.example'], mail: ['b@corp.example'] }), { usernameField: 'userPrincipalName' }), 'a@corp.example');
  t.equal(displayNameOf(entry({ displayName: ['Dr. A'], givenName: ['A'], sn: ['B'] })), 'Dr. A');
  t.equal(displayNameOf(entry({ givenName: ['Alice'], sn: ['Liddell'], cn: ['alice'] })), 'Alice Liddell');
  t.equal(displayNameOf(entry({ cn: ['alice l'] })), 'alice l');
  t.same(templateValuesOf(entry({ employeeType: ['', 'staff', 'x'] }), s), ['staff', 'x']);
  t.same(templateValuesOf(entry({ employeeType: ['staff'] }), { attributeField: null }), []);
});

t.test('disabled (refused before a bind) and locked (believed after a refused bind)', async (t) => {
  t.match(disabledReason(entry({ pwdAccountLockedTime: ['000001010000Z'] })), /disabled/);
  t.equal(disabledReason(entry({ pwdAccountLockedTime: ['20260101000000Z'] })), null, 'a lockout may expire: not disabled');
  t.match(disabledReason(entry({ userAccountControl: ['514'] })), /ACCOUNTDISABLE/);
  t.equal(disabledReason(entry({ userAccountControl: ['512'] })), null);
  t.equal(disabledReason(entry({})), null);
  t.match(lockedReason(entry({ pwdAccountLockedTime: ['20260101000000Z'] })), /locked/);
  t.match(lockedReason(entry({ lockoutTime: ['133000000000000000'] })), /lockoutTime/);
  t.equal(lockedReason(entry({ lockoutTime: ['0'] })), null);
  t.match(lockedReason(entry({}), '80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563'), /data 775/);
  t.match(lockedReason(entry({}), 'AcceptSecurityContext error, data 533, v4563'), /disabled/);
  t.equal(lockedReason(entry({}), 'AcceptSecurityContext error, data 52e, v4563'), null, 'AD wrong password is no lock');
});

t.test('changeStamp follows the password where the directory says so', async (t) => {
  const a = changeStamp(entry({ pwdChangedTime: ['20261204100000Z'], modifyTimestamp: ['20261204100000Z'] }));
  const b = changeStamp(entry({ pwdChangedTime: ['20261204100000Z'], modifyTimestamp: ['20261204110000Z'] }));
  t.equal(a, b, 'with pwdChangedTime, other edits (ppolicy failure counters) do not change it');
  t.not(changeStamp(entry({ pwdChangedTime: ['20261204120000Z'] })), a, 'a password change does');
  t.not(changeStamp(entry({ pwdLastSet: ['1'] })), changeStamp(entry({ pwdLastSet: ['2'] })), 'AD pwdLastSet');
  t.not(changeStamp(entry({ modifyTimestamp: ['1'] })), changeStamp(entry({ modifyTimestamp: ['2'] })), 'fallback modifyTimestamp');
});

t.test('ldapSyncUser', async (t) => {
  const s = ldap({ attribute_field: 'employeeType' });
  t.same(ldapSyncUser(entry({ mail: ['A@example.org'], givenName: ['A'], sn: ['B'], employeeType: ['staff'] }), s), {
    id: 'uid=a,ou=people,dc=example,dc=org',
    email: 'a@example.org',
    enabled: true,
    name: 'A B',
    templateValues: ['staff'],
    serviceAccount: false,
  });
  t.equal(ldapSyncUser(entry({ mail: ['a@example.org'], pwdAccountLockedTime: ['000001010000Z'] }), s).enabled, false);
  t.equal(ldapSyncUser(entry({ mail: ['a@example.org'], pwdAccountLockedTime: ['20260101000000Z'] }), s).enabled, true, 'a lockout does not deactivate');
  t.equal(ldapSyncUser(entry({}, 'cn=svc, dc=example,dc=org'), s).serviceAccount, true, 'the service account is not a person');
});

t.test('settings: filter, timeouts, CA file, preset', async (t) => {
  const s = ldap({ filter: 'objectClass=person', connect_timeout: '2000', op_timeout: '7000', ca_file: '/etc/ssl/ca.pem', preset: 'ad' });
  t.match(s, { filter: '(objectClass=person)', connectTimeoutMs: 2000, opTimeoutMs: 7000, caFile: '/etc/ssl/ca.pem', preset: 'ad' });
  t.match(serializeIdpSettings(s), { filter: '(objectClass=person)', connect_timeout: '2000', op_timeout: '7000', ca_file: '/etc/ssl/ca.pem', preset: 'ad' });
  t.match(ldap(), { connectTimeoutMs: 3000, opTimeoutMs: 5000, caFile: null, preset: null });
  t.notOk('connect_timeout' in serializeIdpSettings(ldap()), 'defaults are not written');
  const bad: [Record<string, string>, string, RegExp][] = [
    [{ filter: '(&(objectClass=person)' }, 'filter', /unbalanced parentheses/],
    [{ filter: '(objectClass=person))' }, 'filter', /unbalanced parentheses/],
    [{ filter: '(=x)' }, 'filter', /not a valid LDAP filter/],
    [{ connect_timeout: '5' }, 'connect_timeout', /between 100 and 120000/],
    [{ op_timeout: 'soon' }, 'op_timeout', /integer/],
    [{ ca_file: 'relative.pem' }, 'ca_file', /absolute path/],
    [{ preset: 'novell' }, 'preset', /openldap or ad/],
  ];
  for (const [extra, key, msg] of bad) {
    const p = parseIdpSettings({ ...RAW, ...extra });
    t.notOk(p.ok, JSON.stringify(extra));
    if (!p.ok) t.match(p.problems, [{ key, message: msg }]);
  }
});
