/**
 * The directory the LDAP tests share (issue 18): people with each template
 * value, one without, a disabled and a locked one (ppolicy), an AD-style
 * disabled one (userAccountControl), two entries sharing one address, and
 * the identity_provider rows pointing at a private slapd.
 */
import { writeIdpSettings } from '../../src/db/index.js';
import type { TestDatabase } from './db.js';
import { PEOPLE, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, bulkPeople } from './slapd.js';
import type { LdapPerson, SlapdInstance } from './slapd.js';

export const DOMAIN = 'example.org';

export const PEOPLE_FIXTURE: readonly LdapPerson[] = [
  { uid: 'alice', mail: 'alice@example.org', password: 'alice-pw', givenName: 'Alice', sn: 'Liddell', attrs: { employeeType: 'staff' } },
  { uid: 'bob', mail: 'bob@example.org', password: 'bob-pw', givenName: 'Bob', sn: 'Builder', attrs: { employeeType: 'student' } },
  { uid: 'carol', mail: 'carol@example.org', password: 'carol-pw', givenName: 'Carol', sn: 'Nobody' },
  { uid: 'dave', mail: 'dave@example.org', password: 'dave-pw', givenName: 'Dave', sn: 'New', attrs: { employeeType: 'staff' } },
  { uid: 'erin', mail: 'erin@example.org', password: 'erin-pw', givenName: 'Erin', sn: 'Unmapped', attrs: { employeeType: 'contractor' } },
  { uid: 'disabled', mail: 'disabled@example.org', password: 'disabled-pw', attrs: { employeeType: 'staff', pwdAccountLockedTime: '000001010000Z' } },
  { uid: 'locked', mail: 'locked@example.org', password: 'locked-pw', attrs: { employeeType: 'staff', pwdAccountLockedTime: '20260101000000Z' } },
  { uid: 'adoff', mail: 'adoff@example.org', password: 'adoff-pw', attrs: { employeeType: 'staff', userAccountControl: '514' } },
  { uid: 'twin1', mail: 'twin@example.org', password: 'twin-pw' },
  { uid: 'twin2', mail: 'twin@example.org', password: 'twin-pw' },
  { uid: 'sam', mail: 'sam.smith@example.org', password: 'sam-pw', givenName: 'Sam', sn: 'Smith', attrs: { employeeType: 'staff' } },
];

export function peopleWithBulk(n: number): LdapPerson[] {
  return [...PEOPLE_FIXTURE, ...bulkPeople(n, DOMAIN, (i) => ({ attrs: { employeeType: i % 2 === 0 ? 'staff' : 'student' } }))];
}

export interface LdapRows {
  /** use_ssl / use_tls and the port follow from it. */
  transport?: 'plain' | 'ldaps' | 'starttls';
  host?: string;
  extra?: Record<string, string>;
}

/** identity_provider rows for a private slapd, mailcow's key/value format. */
export function ldapRows(slapd: SlapdInstance, o: LdapRows = {}): Record<string, string> {
  const transport = o.transport ?? 'plain';
  return {
    authsource: 'ldap',
    host: o.host ?? slapd.host,
    port: String(transport === 'ldaps' ? slapd.ldapsPort : slapd.port),
    use_ssl: transport === 'ldaps' ? '1' : '0',
    use_tls: transport === 'starttls' ? '1' : '0',
    basedn: PEOPLE,
    binddn: SERVICE_DN,
    bindpass: SERVICE_PASSWORD,
    username_field: 'mail',
    attribute_field: 'employeeType',
    filter: '(objectClass=inetOrgPerson)',
    login_provisioning: '1',
    periodic_sync: '1',
    import_users: '1',
    sync_interval: '15',
    ignore_ssl_error: '0',
    mappers: JSON.stringify(['staff', 'student']),
    templates: JSON.stringify(['Staff', 'Student']),
    default_template: '',
    connect_timeout: '1000',
    op_timeout: '1500',
    ...o.extra,
  };
}

export async function setLdapIdp(tdb: TestDatabase, slapd: SlapdInstance, o: LdapRows = {}): Promise<void> {
  await writeIdpSettings(tdb.db, ldapRows(slapd, o));
}

export { SUFFIX };
