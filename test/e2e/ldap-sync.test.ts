/**
 * Issue 18: `mailauth idp set ldap` / `idp show` and `mailauth sync` from a
 * real OpenLDAP (private slapd) into a real MariaDB, through the CLI
 * in-process: 1,000+ users read with simple paged results, import, template
 * update, deactivation behind the safety threshold, reactivation, and
 * `sync status`.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { advisoryLockName, insertTemplate, tryAdvisoryLock } from '../../src/db/index.js';
import { connectionOptionsOf, createLdapDirectory, loadIdpSettings } from '../../src/idp/index.js';
import type { LdapSettings } from '../../src/idp/index.js';
import { createLogger } from '../../src/logging/index.js';
import { SYNC_LOCK_NAME, ldapUserPages, runSync } from '../../src/sync/index.js';
import type { SyncReport, UserPages } from '../../src/sync/index.js';
import { cliFor } from '../helpers/admin.js';
import type { Cli } from '../helpers/admin.js';
import { createTestDatabase, seedDomain } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { peopleWithBulk, setLdapIdp } from '../helpers/ldap-world.js';
import { PEOPLE, SERVICE_DN, SERVICE_PASSWORD, requireSlapd, startSlapd } from '../helpers/slapd.js';
import type { SlapdInstance } from '../helpers/slapd.js';

const STAFF = { quota: 0, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '1', eas_access: '0', dav_access: '1' };
const STUDENT = { quota: 0, imap_access: '1', pop3_access: '1', smtp_access: '1', sieve_access: '0', eas_access: '0', dav_access: '0' };

interface Env {
  tdb: TestDatabase;
  cli: Cli;
  sync: (...args: string[]) => Promise<{ code: number; report: SyncReport; stderr: string }>;
}

async function setup(tt: { teardown(fn: () => unknown): void }, slapd: SlapdInstance, o: { deprovision?: 'off' | 'deactivate'; ratio?: number; pageSize?: number } = {}): Promise<Env> {
  const tdb = await createTestDatabase(tt);
  await seedDomain(tdb, 'example.org', { mailboxes: 5000, maxquota: 10240, quota: 10240000 });
  await insertTemplate(tdb.db, 'Staff', 'mailbox', STAFF);
  await insertTemplate(tdb.db, 'Student', 'mailbox', STUDENT);
  await setLdapIdp(tdb, slapd);
  // dovecot.notify off: a deactivation must not reach the host's Dovecot.
  const cli = cliFor(tt, tdb, `sync:\n  deprovision: ${o.deprovision ?? 'off'}\n  max_deactivate_ratio: ${o.ratio ?? 0.1}\n  page_size: ${o.pageSize ?? 250}\ndovecot:\n  notify: false\n`);
  const sync = async (...args: string[]) => {
    const r = await cli(['sync', '--json', ...args]);
    return { code: r.code, report: (r.stdout.trim() ? r.json() : {}) as SyncReport, stderr: r.stderr };
  };
  return { tdb, cli, sync };
}

async function main(): Promise<void> {
  // A 1,200-user import and a slapd per scenario: more than tap's default two minutes on a busy CI machine.
  t.setTimeout(360_000);
  const BULK = 1200;
  const slapd = await startSlapd(t, { people: peopleWithBulk(BULK) });

  t.test('idp set ldap: presets, secrets from a file or stdin, masked in idp show, bad input changes nothing', async (t) => {
    const tdb = await createTestDatabase(t);
    const cli = cliFor(t, tdb, 'dovecot:\n  notify: false\n');
    const dir = mkdtempSync(join(tmpdir(), 'mailauth-ldap-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const pwFile = join(dir, 'bind.secret');
    writeFileSync(pwFile, `${SERVICE_PASSWORD}\n`);
    chmodSync(pwFile, 0o600);
    const base = ['idp', 'set', 'ldap', '--host', `${slapd.host}`, '--port', String(slapd.port), '--base-dn', PEOPLE, '--bind-dn', SERVICE_DN];

    const noPw = await cli([...base, '--preset', 'openldap']);
    t.equal(noPw.code, 2, 'no bind password: refused');
    t.match(noPw.stderr, /--bind-password-file\/--bind-password-stdin: is required/);
    t.same(await tdb.sql('SELECT * FROM identity_provider'), [], 'nothing written');

    t.equal((await cli([...base, '--preset', 'nonsense', '--bind-password-file', pwFile])).code, 2);
    const badFilter = await cli([...base, '--filter', '(&(objectClass=person)', '--bind-password-file', pwFile]);
    t.equal(badFilter.code, 2);
    t.match(badFilter.stderr, /--filter: is not a valid LDAP filter/);
    t.match((await cli([...base, '--connect-timeout', '10', '--bind-password-file', pwFile])).stderr, /--connect-timeout: expected a duration/);

    const ok = await cli([...base, '--preset', 'openldap', '--bind-password-file', pwFile, '--attribute-field', 'employeeType', '--connect-timeout', '2s', '--test', '--json']);
    t.equal(ok.code, 0, ok.stderr + ok.stdout);
    const rows = Object.fromEntries((await tdb.sql<{ key: string; value: string }>('SELECT `key`, value FROM identity_provider')).map((r) => [r.key, r.value]));
    t.match(rows, { authsource: 'ldap', username_field: 'mail', filter: '(objectClass=inetOrgPerson)', bindpass: SERVICE_PASSWORD, connect_timeout: '2000', preset: 'openldap', attribute_field: 'employeeType' });

    const show = await cli(['idp', 'show']);
    t.notMatch(show.stdout, new RegExp(SERVICE_PASSWORD), 'idp show masks the bind password');
    t.match(show.stdout, /bind password:?\s+\*{8}/);
    t.notMatch((await cli(['idp', 'show', '--json'])).stdout, new RegExp(SERVICE_PASSWORD), 'also in JSON');

    const ad = await cli(['idp', 'set', 'ldap', '--preset', 'ad', '--ssl', '--bind-password-stdin'], { stdin: 'new-secret\n' });
    t.equal(ad.code, 0, ad.stderr);
    const after = Object.fromEntries((await tdb.sql<{ key: string; value: string }>('SELECT `key`, value FROM identity_provider')).map((r) => [r.key, r.value]));
    t.match(after, { username_field: 'userPrincipalName', filter: '(&(objectClass=user)(objectCategory=person))', use_ssl: '1', bindpass: 'new-secret', host: slapd.host }, 'other keys kept');
    t.equal(after.port, String(slapd.port), 'a stored port is kept with --ssl');
  });

  t.test('sync: paged import of 1,200+ users, then template update and sync status', async (t) => {
    const e = await setup(t, slapd, { pageSize: 250 });
    const dry = await e.sync('--dry-run');
    t.equal(dry.code, 0, dry.stderr);
    t.ok(dry.report.counts.pages >= 5, `read in ${dry.report.counts.pages} pages`);
    t.same(await e.tdb.sql('SELECT username FROM mailbox'), [], 'dry run writes nothing');

    const first = await e.sync();
    t.equal(first.code, 0, first.stderr);
    const c = first.report.counts;
    // alice, bob, dave, sam, locked (a lockout is temporary, not disabled) + the bulk have mapped values;
    // carol (no value), erin (unmapped) and twin2's (unmapped) skipped; disabled and adoff are disabled; twin duplicated.
    t.equal(c.create, BULK + 5, 'every mapped, enabled user with a unique address');
    t.match(first.report.skipped, { no_template: 3, user_disabled: 2, duplicate_email: 1 });
    const [row] = await e.tdb.sql<{ n: number }>("SELECT COUNT(*) AS n FROM mailbox WHERE authsource = 'ldap'");
    t.equal(Number(row?.n), BULK + 5);
    const [alice] = await e.tdb.sql<{ name: string; pop: string }>("SELECT name, JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.pop3_access')) AS pop FROM mailbox WHERE username = 'alice@example.org'");
    t.same(alice, { name: 'Alice Liddell', pop: '0' }, 'Staff template, name from givenName + sn');

    // bob becomes staff in the directory: the next run re-applies the template.
    await slapd.modify(`dn: uid=bob,${PEOPLE}\nchangetype: modify\nreplace: employeeType\nemployeeType: staff\n`);
    t.teardown(() => slapd.modify(`dn: uid=bob,${PEOPLE}\nchangetype: modify\nreplace: employeeType\nemployeeType: student\n`));
    const second = await e.sync('--force');
    t.equal(second.code, 0, second.stderr);
    t.match(second.report.counts, { create: 0, update: 1 });
    const [bob] = await e.tdb.sql<{ pop: string }>("SELECT JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.pop3_access')) AS pop FROM mailbox WHERE username = 'bob@example.org'");
    t.equal(bob?.pop, '0', 'now Staff');

    const status = await e.cli(['sync', 'status', '--json']);
    const st = status.json() as { runs: { status: string; counts: Record<string, number> }[] };
    t.equal(st.runs.length, 3);
    t.match(st.runs[1], { status: 'ok', counts: { create: BULK + 5 } });
  });

  t.test('sync: deactivation of gone and disabled users behind the safety threshold, reactivation', async (t) => {
    const e = await setup(t, slapd, { deprovision: 'deactivate', ratio: 0.1 });
    t.equal((await e.sync()).code, 0);
    // Disable alice (administrative lock) and point the filter at a subset: ~half of the users "gone".
    await slapd.modify(`dn: uid=alice,${PEOPLE}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n`);
    t.teardown(() => slapd.modify(`dn: uid=alice,${PEOPLE}\nchangetype: modify\ndelete: pwdAccountLockedTime\n`));
    await e.tdb.db.exec("UPDATE identity_provider SET value = '(&(objectClass=inetOrgPerson)(!(uid=user0*)))' WHERE `key` = 'filter'");
    const aborted = await e.sync('--dry-run');
    t.equal(aborted.code, 4, 'more than 10 % would go: aborted');
    t.match(aborted.report.deprovision, { safety: { ok: false, reason: 'ratio' } });
    const [active] = await e.tdb.sql<{ n: number }>("SELECT COUNT(*) AS n FROM mailbox WHERE active = 0");
    t.equal(Number(active?.n), 0, 'nothing deactivated');

    // Back to the full filter: only alice (disabled) goes, well under the threshold.
    await e.tdb.db.exec("UPDATE identity_provider SET value = '(objectClass=inetOrgPerson)' WHERE `key` = 'filter'");
    const run = await e.sync('--force');
    t.equal(run.code, 0, run.stderr);
    t.match(run.report.counts, { deactivate: 1 });
    const [a] = await e.tdb.sql<{ active: number }>("SELECT active FROM mailbox WHERE username = 'alice@example.org'");
    t.equal(Number(a?.active), 0, 'alice deactivated, not deleted');

    await slapd.modify(`dn: uid=alice,${PEOPLE}\nchangetype: modify\ndelete: pwdAccountLockedTime\n`);
    const back = await e.sync('--force');
    t.match(back.report.counts, { reactivate: 1, deactivate: 0 });
    const [a2] = await e.tdb.sql<{ active: number }>("SELECT active FROM mailbox WHERE username = 'alice@example.org'");
    t.equal(Number(a2?.active), 1, 'reactivated when enabled again');
    await slapd.modify(`dn: uid=alice,${PEOPLE}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n`);

    // A directory that lists nobody (wrong base DN that exists but is empty) never deactivates everyone.
    await e.tdb.db.exec("UPDATE identity_provider SET value = 'ou=services,dc=example,dc=org' WHERE `key` = 'basedn'");
    await e.tdb.db.exec("UPDATE identity_provider SET value = '(objectClass=inetOrgPerson)' WHERE `key` = 'filter'");
    const none = await e.sync('--dry-run');
    t.equal(none.code, 4);
    t.match(none.report.deprovision, { safety: { ok: false, reason: 'zero_users' } });
  });

  t.test('sync: the directory down, or hanging mid-listing, deactivates nobody', async (t) => {
    const own = await startSlapd(t, { people: peopleWithBulk(300) });
    const e = await setup(t, own, { deprovision: 'deactivate', ratio: 1, pageSize: 50 });
    t.equal((await e.sync()).code, 0);

    // Hanging after the first page (SIGSTOP): the next page times out (op_timeout), the run stops.
    const s = await loadIdpSettings(e.tdb.db);
    if (s?.source !== 'ldap') throw new Error('expected ldap');
    const dir = createLdapDirectory({ ...connectionOptionsOf(s), bindDn: s.binddn, bindPassword: s.bindpass, poolSize: 1 });
    t.teardown(() => dir.close());
    async function* hangingAfterFirstPage(): UserPages {
      const it = ldapUserPages(dir, s as LdapSettings, 50);
      let first = true;
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
        yield r.value;
        if (first) own.pause();
        first = false;
      }
    }
    const t0 = Date.now();
    let report: SyncReport;
    try {
      report = await runSync(
        {
          db: e.tdb.db,
          lock: () => tryAdvisoryLock(e.tdb.dbConfig, advisoryLockName(SYNC_LOCK_NAME, e.tdb.dbConfig.database)),
          users: hangingAfterFirstPage,
          logger: createLogger({ level: 'silent', format: 'json' }),
          host: 'test',
        },
        { dryRun: false, force: true, deprovision: 'deactivate', maxDeactivateRatio: 1, pageSize: 50, intervalMin: 15, settings: { importUsers: true, periodicSync: true, mapping: s.mapping, authsource: 'ldap' } },
      );
    } finally {
      own.resume();
    }
    t.match(report, { status: 'failed', listingComplete: false, deprovision: { skipped: 'listing_incomplete' }, failure: { code: 'ERR_IDP_TIMEOUT' } });
    // 311 entries in pages of 50: the run stopped before the end (ldapts may have had the second page already).
    t.ok(report.counts.pages >= 1 && report.counts.pages < 7, `stopped after ${report.counts.pages} of 7 pages`);
    t.ok(Date.now() - t0 < 10_000, 'stopped by the operation timeout');

    // Stopped before the run: the listing fails at once.
    await own.stop();
    const r = await e.sync('--force');
    t.equal(r.code, 1);
    t.match(r.report, { status: 'failed', listingComplete: false, deprovision: { skipped: 'listing_incomplete' } });
    const [n] = await e.tdb.sql<{ n: number }>('SELECT COUNT(*) AS n FROM mailbox WHERE active = 0');
    t.equal(Number(n?.n), 0, 'nobody deactivated');
    t.notMatch(r.stderr + JSON.stringify(r.report), new RegExp(SERVICE_PASSWORD), 'no secret in the output');
  });
}

if (requireSlapd(t)) await main();
