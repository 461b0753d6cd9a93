/**
 * `mailauth sync` end to end: the CLI in-process, the Keycloak double over
 * real HTTP, a real MariaDB database per test. Pagination edge cases of the
 * docs reference §6.3, every plan action, the safety threshold, dry run, the
 * lock, the interval gate and IdP faults mid-run.
 */
import t from 'tap';
import { insertTemplate, tryAdvisoryLock, advisoryLockName, updateTemplate, writeIdpSettings, getTemplate } from '../../src/db/index.js';
import { templateAttributeHash } from '../../src/provisioning/index.js';
import { SYNC_LOCK_NAME } from '../../src/sync/index.js';
import type { SyncReport } from '../../src/sync/index.js';
import { cliFor, snapshot } from '../helpers/admin.js';
import { cli, configFile } from '../helpers/cli.js';
import { setKeycloakIdp } from '../helpers/idp-login.js';
import type { Cli } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { DoubleUserInput, KeycloakDouble } from '../helpers/keycloak-double.js';

const STAFF = { quota: 0, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '1', eas_access: '0', dav_access: '1', acl_app_passwds: '1' };

interface Env {
  tdb: TestDatabase;
  kc: KeycloakDouble;
  cli: Cli;
  /** `mailauth sync …args --json`, parsed. */
  sync: (...args: string[]) => Promise<{ code: number; report: SyncReport; stderr: string }>;
}

interface SetupOptions {
  users?: DoubleUserInput[];
  pageSize?: number;
  deprovision?: 'off' | 'deactivate';
  ratio?: number;
  idp?: Record<string, string>;
}

function person(local: string, over: Partial<DoubleUserInput> = {}): DoubleUserInput {
  return {
    username: local,
    email: `${local}@example.org`,
    firstName: local[0]?.toUpperCase() + local.slice(1),
    lastName: 'Example',
    enabled: true,
    attributes: { mailcow_template: ['staff'] },
    ...over,
  };
}

function people(n: number, prefix = 'user'): DoubleUserInput[] {
  return Array.from({ length: n }, (_, i) => person(`${prefix}${String(i).padStart(3, '0')}`));
}

async function setup(tt: { teardown(fn: () => unknown): void }, o: SetupOptions = {}): Promise<Env> {
  const tdb = await createTestDatabase(tt);
  const kc = await startKeycloakDouble({ users: o.users ?? [] });
  tt.teardown(() => kc.close());
  await seedDomain(tdb, 'example.org', { mailboxes: 1000, maxquota: 10240, quota: 1024000 });
  await insertTemplate(tdb.db, 'Staff', 'mailbox', STAFF);
  await setKeycloakIdp(tdb, kc, {
    mailpassword_flow: '0',
    mappers: ['staff'],
    templates: ['Staff'],
    default_template: 'Default',
    extra: { import_users: '1', periodic_sync: '1', ...o.idp },
  });
  const yaml =
    `sync:\n  deprovision: ${o.deprovision ?? 'off'}\n  max_deactivate_ratio: ${o.ratio ?? 0.1}\n  page_size: ${o.pageSize ?? 100}\n` +
    'idp:\n  retries: 0\n  timeout: 3s\n';
  const cli = cliFor(tt, tdb, yaml);
  const sync = async (...args: string[]) => {
    const r = await cli(['sync', '--json', ...args]);
    return { code: r.code, report: (r.stdout.trim() ? r.json() : {}) as SyncReport, stderr: r.stderr };
  };
  return { tdb, kc, cli, sync };
}

async function mailboxes(tdb: TestDatabase): Promise<Record<string, { active: number; name: string; authsource: string; attributes: Record<string, unknown> }>> {
  const rows = await tdb.sql<{ username: string; active: number; name: string; authsource: string; attributes: unknown }>(
    'SELECT username, active, name, authsource, attributes FROM mailbox ORDER BY username',
  );
  return Object.fromEntries(rows.map((r) => [r.username, { active: Number(r.active), name: r.name, authsource: r.authsource, attributes: (typeof r.attributes === 'string' ? JSON.parse(r.attributes) : r.attributes) as Record<string, unknown> }]));
}

async function usernames(tdb: TestDatabase): Promise<string[]> {
  return (await tdb.sql<{ username: string }>('SELECT username FROM mailbox ORDER BY username')).map((r) => r.username);
}

async function runRows(tdb: TestDatabase): Promise<{ status: string; dry_run: number; forced: number }[]> {
  return tdb.sql('SELECT status, dry_run, forced FROM mailauth_sync_run ORDER BY id');
}

// ── pagination edge cases (reference §6.3) ───────────────────────────────────

t.test('pagination: total 0 → nothing to do, exit 0', async (t) => {
  const e = await setup(t, { pageSize: 3 });
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.equal(report.status, 'ok');
  t.match(report.counts, { users: 0, pages: 0, create: 0 });
  t.same(await usernames(e.tdb), []);
});

t.test('pagination: exact multiple of max → one extra call past the end, every user once', async (t) => {
  const e = await setup(t, { users: people(6), pageSize: 3 });
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.match(report.counts, { users: 6, pages: 2, create: 6, errors: 0 });
  t.equal((await usernames(e.tdb)).length, 6);
  const firsts = e.kc.requests.filter((r) => r.route === 'users').map((r) => new URLSearchParams(r.query).get('first'));
  t.same(firsts, ['0', '3', '6'], 'the call with first past the end returns [] and ends the listing');
  t.equal(report.listing?.consistent, true);
});

t.test('pagination: max + 1 → a last page of one', async (t) => {
  const e = await setup(t, { users: people(4), pageSize: 3 });
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.match(report.counts, { users: 4, pages: 2, create: 4 });
  t.equal((await usernames(e.tdb)).length, 4);
});

t.test('pagination: a user added between pages shifts items; duplicates are dropped by id', async (t) => {
  const e = await setup(t, { users: people(6), pageSize: 3, deprovision: 'deactivate', ratio: 1 });
  let added = false;
  e.kc.after('users', () => {
    if (!added) {
      added = true;
      e.kc.addUser(person('aaa'));
    }
  });
  const { code, report } = await e.sync();
  t.equal(report.counts.create, 6, 'each of the six listed users created once');
  t.equal(report.counts.errors, 0, 'no duplicate-create error');
  t.equal(report.listing?.consistent, false, 'the count changed during the listing');
  t.equal(report.deprovision.skipped, 'listing_inconsistent');
  t.equal(code, 1, 'deprovisioning was asked for and could not run: exit 1');
  const second = await e.sync('--force');
  t.equal(second.code, 0);
  t.equal(second.report.counts.create, 1, 'the next run picks up the added user');
  t.ok((await usernames(e.tdb)).includes('aaa@example.org'));
});

t.test('pagination: a user deleted between pages hides another one; nobody is deactivated for it', async (t) => {
  const e = await setup(t, { users: people(6), pageSize: 3, deprovision: 'deactivate', ratio: 1 });
  t.equal((await e.sync()).code, 0, 'first run: all six');
  let deleted = false;
  e.kc.after('users', () => {
    if (!deleted) {
      deleted = true;
      e.kc.deleteUser('user000');
    }
  });
  const { code, report } = await e.sync('--force');
  t.equal(report.counts.users, 5, 'user003 slid into page 1 after it was read: the listing missed it');
  t.equal(report.listing?.consistent, false);
  t.equal(report.deprovision.skipped, 'listing_inconsistent');
  t.equal(report.counts.deactivate, 0);
  t.equal(code, 1);
  const mb = await mailboxes(e.tdb);
  t.equal(mb['user003@example.org']?.active, 1, 'the missed user keeps the mailbox');
  t.equal(mb['user000@example.org']?.active, 1, 'even the deleted one waits for a consistent listing');
  const third = await e.sync('--force');
  t.equal(third.code, 0);
  t.equal(third.report.counts.deactivate, 1);
  t.equal((await mailboxes(e.tdb))['user000@example.org']?.active, 0, 'deactivated once the listing is complete and consistent');
});

t.test('pagination: a short page that is not the end (fine-grained permissions) does not stop the listing', async (t) => {
  const e = await setup(t, { users: people(7), pageSize: 3, deprovision: 'deactivate', ratio: 1 });
  t.equal((await e.sync()).code, 0);
  e.kc.hideFromListing([e.kc.getUser('user001')?.id ?? '']);
  const { code, report } = await e.sync('--force');
  t.equal(report.counts.users, 6, 'pages after the short first page were read');
  t.ok(e.kc.requests.filter((r) => r.route === 'users').length >= 3 + 3);
  t.equal(report.deprovision.skipped, 'listing_inconsistent', 'count (7) and listing (6) disagree');
  t.equal((await mailboxes(e.tdb))['user001@example.org']?.active, 1, 'the hidden user is not taken for gone');
  t.equal(code, 1);
});

t.test('pagination: service-account users never become mailboxes', async (t) => {
  const e = await setup(t, { users: [...people(2), { username: 'service-account-other', email: 'svc@example.org', serviceAccountOf: 'other' }], pageSize: 2 });
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.equal(report.counts.create, 2);
  t.equal(report.counts.users, 2, 'hidden from the unfiltered listing');
  t.same(await usernames(e.tdb), ['user000@example.org', 'user001@example.org']);
});

t.test('pagination: /users/count counting service accounts or disagreeing → no deprovisioning', async (t) => {
  const e = await setup(t, { users: people(4), pageSize: 3, deprovision: 'deactivate', ratio: 1 });
  await seedMailbox(e.tdb, 'gone@example.org', '', { authsource: 'keycloak' });
  e.kc.config.countIncludesServiceAccounts = true;
  let r = await e.sync();
  t.equal(r.report.counts.create, 4, 'creates still happen');
  t.equal(r.report.deprovision.skipped, 'listing_inconsistent');
  t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 1);
  e.kc.config.countIncludesServiceAccounts = false;
  e.kc.setCountOffset(-1);
  r = await e.sync('--force');
  t.equal(r.report.deprovision.skipped, 'listing_inconsistent');
  t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 1);
  e.kc.setCountOffset(0);
  r = await e.sync('--force');
  t.equal(r.code, 0);
  t.equal(r.report.counts.deactivate, 1);
  t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 0);
});

// ── the actions ───────────────────────────────────────────────────────────────

t.test('create, skip with reasons, and the rows mailcow writes', async (t) => {
  const e = await setup(t, {
    users: [
      person('alice'),
      person('bob', { attributes: {} }),
      person('carol', { attributes: { mailcow_template: ['unmapped'] } }),
      { username: 'dave', firstName: 'Dave', enabled: true },
      person('eve', { email: 'eve@missing.org' }),
      person('frank'),
      person('gina', { enabled: false }),
    ],
  });
  await seedMailbox(e.tdb, 'frank@example.org', '{PLAIN}x', { authsource: 'mailcow', name: 'Frank Local' });
  const before = await e.tdb.sql('SELECT * FROM mailbox WHERE username = ?', ['frank@example.org']);
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.match(report.counts, { users: 7, create: 3, update: 0, skip: 4, errors: 0 });
  t.same(report.skipped, { no_email: 1, domain_missing: 1, other_authsource: 1, user_disabled: 1 });
  const mb = await mailboxes(e.tdb);
  t.same(Object.keys(mb), ['alice@example.org', 'bob@example.org', 'carol@example.org', 'frank@example.org']);
  const staff = await getTemplate(e.tdb.db, 'Staff');
  const dflt = await getTemplate(e.tdb.db, 'Default');
  t.equal(mb['alice@example.org']?.attributes.attribute_hash, templateAttributeHash(staff ?? { attributes: {} }), 'mapped template');
  t.equal(mb['alice@example.org']?.attributes.pop3_access, '0');
  t.equal(mb['bob@example.org']?.attributes.attribute_hash, templateAttributeHash(dflt ?? { attributes: {} }), 'no attribute → default template');
  t.equal(mb['carol@example.org']?.attributes.attribute_hash, templateAttributeHash(dflt ?? { attributes: {} }), 'unmapped value → default template');
  t.match(mb['alice@example.org'], { authsource: 'keycloak', name: 'Alice Example', active: 1 });
  t.same(await e.tdb.sql('SELECT * FROM mailbox WHERE username = ?', ['frank@example.org']), before, 'the mailcow mailbox is untouched');
  for (const table of ['alias', 'quota2', 'quota2replica', 'user_acl']) {
    const col = table === 'alias' ? 'address' : 'username';
    t.equal((await e.tdb.sql(`SELECT 1 FROM \`${table}\` WHERE ${col} = ?`, ['alice@example.org'])).length, 1, `${table} row written`);
  }
  const [row] = await runRows(e.tdb);
  t.match(row, { status: 'ok', dry_run: 0, forced: 0 });
});

t.test('no default template and an unmapped user → skipped, not created', async (t) => {
  const e = await setup(t, { users: [person('carol', { attributes: { mailcow_template: ['unmapped'] } })], idp: { default_template: '' } });
  const { code, report } = await e.sync();
  t.equal(code, 0);
  t.same(report.skipped, { no_template: 1 });
  t.same(await usernames(e.tdb), []);
});

t.test('unchanged users are skipped without a write; template and name changes update', async (t) => {
  const e = await setup(t, { users: [person('alice'), person('bob', { attributes: {} })] });
  t.equal((await e.sync()).code, 0);
  const snap = await snapshot(e.tdb);
  let r = await e.sync('--force');
  t.equal(r.code, 0);
  t.match(r.report.counts, { create: 0, update: 0, skip: 2 });
  t.same(r.report.skipped, { unchanged: 2 });
  t.same(await snapshot(e.tdb), snap, 'a re-sync of unchanged users writes nothing');

  const staff = await getTemplate(e.tdb.db, 'Staff');
  await updateTemplate(e.tdb.db, staff?.id ?? 0, { ...STAFF, pop3_access: '1' });
  e.kc.updateUser('bob', { lastName: 'Married' });
  r = await e.sync('--force');
  t.equal(r.code, 0);
  t.match(r.report.counts, { update: 2, skip: 0 });
  const mb = await mailboxes(e.tdb);
  t.equal(mb['alice@example.org']?.attributes.pop3_access, '1', 'template re-applied');
  t.equal(mb['bob@example.org']?.name, 'Bob Married', 'name changed');
});

t.test('periodic_sync off: existing mailboxes are left alone; import_users off: nothing created', async (t) => {
  const e = await setup(t, { users: [person('alice'), person('bob')], idp: { periodic_sync: '0' } });
  await seedMailbox(e.tdb, 'alice@example.org', '', { authsource: 'keycloak', name: 'Old Name' });
  let r = await e.sync();
  t.same(r.report.skipped, { periodic_sync_disabled: 1 });
  t.equal(r.report.counts.create, 1);
  t.equal((await mailboxes(e.tdb))['alice@example.org']?.name, 'Old Name');
  await writeIdpSettings(e.tdb.db, { periodic_sync: '1', import_users: '0' });
  e.kc.addUser(person('carol'));
  r = await e.sync('--force');
  t.same(r.report.skipped, { import_disabled: 1, unchanged: 1 });
  t.equal(r.report.counts.update, 1, 'alice: periodic_sync applies the template now');
  t.notOk((await usernames(e.tdb)).includes('carol@example.org'));
});

t.test('deprovisioning: disabled and gone users are deactivated with a marker, and reactivated when back', async (t) => {
  const e = await setup(t, { users: [person('alice'), person('bob'), person('carol'), person('dave')], deprovision: 'deactivate', ratio: 1 });
  t.equal((await e.sync()).code, 0);
  // An admin disabled dave's mailbox by hand; sync must never undo that.
  await e.tdb.sql("UPDATE mailbox SET active = 0 WHERE username = 'dave@example.org'");
  await e.tdb.sql("UPDATE mailbox SET active = 2 WHERE username = 'carol@example.org'");
  e.kc.deleteUser('alice');
  e.kc.disableUser('carol');
  e.kc.deleteUser('dave');
  let r = await e.sync('--force');
  t.equal(r.code, 0);
  t.equal(r.report.counts.deactivate, 2);
  let mb = await mailboxes(e.tdb);
  t.equal(mb['alice@example.org']?.active, 0);
  t.equal(mb['alice@example.org']?.attributes.mailauth_deactivated_by_sync, '1');
  t.match(mb['alice@example.org']?.attributes.mailauth_deactivated_at, /^\d{4}-\d\d-\d\dT/);
  t.equal(mb['carol@example.org']?.active, 0);
  t.equal(mb['carol@example.org']?.attributes.mailauth_active_before, '2');
  t.equal(mb['bob@example.org']?.active, 1);
  t.equal(mb['dave@example.org']?.active, 0);
  t.notOk('mailauth_deactivated_by_sync' in (mb['dave@example.org']?.attributes ?? {}), "an admin's deactivation is not marked");
  t.same((await e.tdb.sql<{ active: number }>("SELECT active FROM alias WHERE address = 'alice@example.org'")).map((x) => Number(x.active)), [0], 'self-alias follows');
  t.equal((await usernames(e.tdb)).length, 4, 'nothing is ever deleted');

  e.kc.addUser(person('alice'));
  e.kc.updateUser('carol', { enabled: true });
  e.kc.addUser(person('dave'));
  r = await e.sync('--force');
  t.equal(r.code, 0);
  t.equal(r.report.counts.reactivate, 2);
  mb = await mailboxes(e.tdb);
  t.equal(mb['alice@example.org']?.active, 1);
  t.notOk('mailauth_deactivated_by_sync' in (mb['alice@example.org']?.attributes ?? {}), 'marker removed');
  t.equal(mb['carol@example.org']?.active, 2, 'receive-only restored');
  t.equal(mb['dave@example.org']?.active, 0, "the admin's deactivation stands");
  t.same((await e.tdb.sql<{ active: number }>("SELECT active FROM alias WHERE address = 'alice@example.org'")).map((x) => Number(x.active)), [1]);
});

t.test('deprovision off (the default): gone users keep their mailboxes', async (t) => {
  const e = await setup(t, { users: [person('alice')] });
  await seedMailbox(e.tdb, 'gone@example.org', '', { authsource: 'keycloak' });
  const r = await e.sync();
  t.equal(r.code, 0);
  t.equal(r.report.deprovision.skipped, 'off');
  t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 1);
});

t.test('per-user refusals (domain mailbox limit) finish the run with exit 1', async (t) => {
  const e = await setup(t, { users: people(3) });
  await e.tdb.sql("UPDATE domain SET mailboxes = 2 WHERE domain = 'example.org'");
  const { code, report } = await e.sync();
  t.equal(code, 1);
  t.equal(report.status, 'partial');
  t.match(report.counts, { create: 2, errors: 1 });
  t.match(report.errors, [{ email: 'user002@example.org', action: 'create', code: 'mailbox_count_exceeded' }]);
  t.equal((await usernames(e.tdb)).length, 2);
});

// ── safety threshold ──────────────────────────────────────────────────────────

t.test('safety threshold: too many deactivations abort with exit 4 unless --force', async (t) => {
  const e = await setup(t, { users: people(10), deprovision: 'deactivate', ratio: 0.1 });
  t.equal((await e.sync()).code, 0);
  await e.tdb.sql('UPDATE mailauth_sync_run SET started = UTC_TIMESTAMP(3) - INTERVAL 1 HOUR');
  e.kc.deleteUser('user000');
  e.kc.deleteUser('user001');
  const snap = await snapshot(e.tdb);
  let r = await e.sync();
  t.equal(r.code, 4);
  t.equal(r.report.status, 'aborted');
  t.match(r.report.deprovision.safety, { ok: false, reason: 'ratio' });
  t.match(r.stderr, /deprovisioning refused: 2 of the 10 keycloak mailboxes active when the run started \(20 %\) would be deactivated/);
  t.same(await snapshot(e.tdb), snap, 'nothing deactivated');
  t.match(await runRows(e.tdb), [{ status: 'ok' }, { status: 'aborted' }]);
  t.equal((await e.sync()).code, 4, 'an aborted run does not start the interval: the next one checks again');

  e.kc.addUser(person('user001'));
  r = await e.sync();
  t.equal(r.code, 0, '1 of 10 is exactly the ratio, not more');
  t.equal(r.report.counts.deactivate, 1);

  await e.tdb.sql('UPDATE mailauth_sync_run SET started = UTC_TIMESTAMP(3) - INTERVAL 1 HOUR');
  e.kc.deleteUser('user002');
  e.kc.deleteUser('user003');
  t.equal((await e.sync()).code, 4);
  r = await e.sync('--force');
  t.equal(r.code, 0, '--force goes past the threshold');
  t.equal(r.report.counts.deactivate, 2);
  t.match(r.report.deprovision.safety, { ok: true, forcedPast: 'ratio' });
  const mb = await mailboxes(e.tdb);
  t.same(['user000', 'user001', 'user002', 'user003'].map((u) => mb[`${u}@example.org`]?.active), [0, 1, 0, 0]);
});

t.test('safety threshold: new users of the same run do not dilute the ratio (a wrong realm)', async (t) => {
  const e = await setup(t, { users: people(20, 'new'), deprovision: 'deactivate', ratio: 0.5 });
  for (const u of ['old1', 'old2']) await seedMailbox(e.tdb, `${u}@example.org`, '', { authsource: 'keycloak' });
  const dry = await e.sync('--dry-run');
  t.equal(dry.code, 4, 'the dry run predicts the refusal');
  t.match(dry.report.deprovision, { planned: 2, syncedActive: 2 });
  const r = await e.sync();
  t.equal(r.code, 4);
  t.equal(r.report.counts.create, 20, 'the creates of the run stay applied');
  t.match(r.report.deprovision, { planned: 2, syncedActive: 2, safety: { ok: false, reason: 'ratio' } });
  const mb = await mailboxes(e.tdb);
  t.same([mb['old1@example.org']?.active, mb['old2@example.org']?.active], [1, 1]);
});

t.test('safety threshold: the IdP listing no users while keycloak mailboxes exist aborts', async (t) => {
  const e = await setup(t, { users: people(3), deprovision: 'deactivate', ratio: 1 });
  t.equal((await e.sync()).code, 0);
  for (const u of e.kc.users().filter((u) => !u.serviceAccountOf)) e.kc.deleteUser(u.id);
  let r = await e.sync('--dry-run');
  t.equal(r.code, 4, 'a dry run says what the real run would do');
  t.match(r.report.deprovision.safety, { ok: false, reason: 'zero_users' });
  t.same((await mailboxes(e.tdb))['user000@example.org']?.active, 1);
  r = await e.sync('--force');
  t.equal(r.code, 0);
  t.equal(r.report.counts.deactivate, 3);
});

// ── dry run ───────────────────────────────────────────────────────────────────

t.test('dry run writes nothing and reports the plan', async (t) => {
  const e = await setup(t, { users: [person('alice'), person('bob'), person('carol')], deprovision: 'deactivate', ratio: 1 });
  await seedMailbox(e.tdb, 'bob@example.org', '', { authsource: 'keycloak', name: 'Old' });
  await seedMailbox(e.tdb, 'gone@example.org', '', { authsource: 'keycloak' });
  const snap = await snapshot(e.tdb);
  const { code, report } = await e.sync('--dry-run');
  t.equal(code, 0);
  t.equal(report.dryRun, true);
  t.match(report.counts, { create: 2, update: 1, deactivate: 1 });
  t.same(await snapshot(e.tdb), snap, 'every admin table identical');
  t.match(await runRows(e.tdb), [{ status: 'ok', dry_run: 1 }], 'the dry run is recorded as such');
  const human = await e.cli(['sync', '--dry-run']);
  t.match(human.stdout, /dry run: nothing written/);
  t.match(human.stdout, /would create\s+2/);
  t.same(await snapshot(e.tdb), snap);
  const real = await e.sync();
  t.equal(real.code, 0, 'dry runs do not count for the interval gate');
  t.match(real.report.counts, { create: 2, update: 1, deactivate: 1 });
});

// ── lock and interval ────────────────────────────────────────────────────────

t.test('a run while another holds the lock exits 3 at once', async (t) => {
  const e = await setup(t, { users: people(2) });
  const lock = await tryAdvisoryLock(e.tdb.dbConfig, advisoryLockName(SYNC_LOCK_NAME, e.tdb.name));
  t.ok(lock, 'test holds the lock');
  const r = await e.cli(['sync']);
  t.equal(r.code, 3);
  t.match(r.stderr, /another sync run holds the lock/);
  t.same(await usernames(e.tdb), []);
  t.same(await runRows(e.tdb), [], 'a run that never started is not recorded');
  await lock?.release();
  t.equal((await e.cli(['sync'])).code, 0, 'runs once the lock is free');
});

t.test('two concurrent runs: one works, the other exits 3', async (t) => {
  const e = await setup(t, { users: people(4), pageSize: 2 });
  e.kc.inject('users', { kind: 'delay', ms: 300 });
  const [a, b] = await Promise.all([e.cli(['sync']), e.cli(['sync'])]);
  t.same([a.code, b.code].sort(), [0, 3]);
  t.equal((await usernames(e.tdb)).length, 4);
  t.match(await runRows(e.tdb), [{ status: 'ok' }]);
});

t.test('interval gate: too early exits 3 quietly; --verbose says why; failed and dry runs do not count', async (t) => {
  const e = await setup(t, { users: people(1) });
  t.equal((await e.cli(['sync'])).code, 0);
  let r = await e.cli(['sync']);
  t.equal(r.code, 3);
  t.equal(r.stdout, '');
  t.equal(r.stderr, '', 'quiet for cron');
  r = await e.cli(['sync', '--verbose']);
  t.equal(r.code, 3);
  t.match(r.stderr, /sync_interval is 15 min, next run in 1[45] min/);
  t.equal((await e.cli(['sync', '--force'])).code, 0, '--force runs anyway');
  await e.tdb.sql("UPDATE mailauth_sync_run SET started = UTC_TIMESTAMP(3) - INTERVAL 16 MINUTE");
  t.equal((await e.cli(['sync'])).code, 0, 'after sync_interval minutes it runs');
  await e.tdb.sql("UPDATE mailauth_sync_run SET started = UTC_TIMESTAMP(3) - INTERVAL 16 MINUTE");
  await e.tdb.sql("INSERT INTO mailauth_sync_run (started, finished, status) VALUES (UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'failed')");
  await e.tdb.sql("INSERT INTO mailauth_sync_run (started, finished, status, dry_run) VALUES (UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'ok', 1)");
  t.equal((await e.cli(['sync'])).code, 0, 'a recent failed or dry run does not delay the next one');
  await writeIdpSettings(e.tdb.db, { sync_interval: '1' });
  await e.tdb.sql("UPDATE mailauth_sync_run SET started = UTC_TIMESTAMP(3) - INTERVAL 61 SECOND");
  t.equal((await e.cli(['sync'])).code, 0, 'sync_interval comes from the IdP settings');
});

t.test('a run row left "running" by a dead process is marked interrupted by the next run', async (t) => {
  const e = await setup(t, { users: people(1) });
  await e.tdb.sql("INSERT INTO mailauth_sync_run (started, status) VALUES (UTC_TIMESTAMP(3) - INTERVAL 1 HOUR, 'running')");
  t.equal((await e.cli(['sync'])).code, 0);
  t.match(await runRows(e.tdb), [{ status: 'interrupted' }, { status: 'ok' }]);
});

// ── IdP faults ───────────────────────────────────────────────────────────────

for (const fault of [{ kind: 'error500' }, { kind: 'proxy', status: 502 }, { kind: 'reset' }] as const) {
  t.test(`IdP fault (${fault.kind}) after page 2: pages 1-2 stay applied, exit 1, no deactivation; the next run completes`, async (t) => {
    const e = await setup(t, { users: people(7), pageSize: 2, deprovision: 'deactivate', ratio: 1 });
    await seedMailbox(e.tdb, 'gone@example.org', '', { authsource: 'keycloak' });
    let pages = 0;
    e.kc.after('users', () => {
      if (++pages === 2) e.kc.inject('users', fault);
    });
    const r = await e.cli(['sync', '--json']);
    t.equal(r.code, 1);
    const report = r.json() as SyncReport;
    t.equal(report.status, 'failed');
    t.match(report.failure, { code: /^ERR_IDP_/, phase: 'users' });
    t.equal(report.deprovision.skipped, 'listing_incomplete');
    t.match(r.stderr, /2 page\(s\) \(4 users\) were applied and stay applied/);
    t.same(await usernames(e.tdb), ['gone@example.org', 'user000@example.org', 'user001@example.org', 'user002@example.org', 'user003@example.org']);
    t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 1, 'no deactivation in a failed run');
    t.match(await runRows(e.tdb), [{ status: 'failed' }]);

    e.kc.clearFaults();
    const next = await e.sync();
    t.equal(next.code, 0, 'a failed run does not hold back the next one');
    t.match(next.report.counts, { create: 3, skip: 4, deactivate: 1 });
    t.equal((await usernames(e.tdb)).length, 8);
    t.equal((await mailboxes(e.tdb))['gone@example.org']?.active, 0);
  });
}

t.test('IdP unreachable from the start: exit 1, nothing written, reported', async (t) => {
  const e = await setup(t, { users: people(2) });
  e.kc.removeRole('mailauth', 'view-users');
  e.kc.removeRole('mailauth', 'query-users');
  const r = await e.sync();
  t.equal(r.code, 1);
  t.match(r.report.failure, { code: 'ERR_IDP_FORBIDDEN' });
  t.match(r.stderr, /view-users/);
  t.same(await usernames(e.tdb), []);
});

// ── preconditions and status ────────────────────────────────────────────────

t.test('preconditions: no IdP → exit 2; generic-oidc → exit 2; sync switched off → exit 0 quietly', async (t) => {
  const e = await setup(t);
  await e.tdb.sql("UPDATE identity_provider SET value = '0' WHERE `key` IN ('periodic_sync', 'import_users')");
  let r = await e.cli(['sync']);
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  r = await e.cli(['sync', '--verbose']);
  t.match(r.stderr, /sync is switched off/);
  await e.tdb.sql('DELETE FROM identity_provider');
  r = await e.cli(['sync']);
  t.equal(r.code, 2);
  t.match(r.stderr, /no identity provider is configured/);
  await writeIdpSettings(e.tdb.db, {
    authsource: 'generic-oidc',
    token_url: 'https://op.example.org/token',
    userinfo_url: 'https://op.example.org/userinfo',
    authorize_url: 'https://op.example.org/auth',
    client_id: 'x',
    client_secret: 'y',
  });
  r = await e.cli(['sync']);
  t.equal(r.code, 2);
  t.match(r.stderr, /generic-oidc, which has no API to list users/);
});

t.test('sync status lists the last runs', async (t) => {
  const e = await setup(t, { users: people(2) });
  t.equal((await e.cli(['sync'])).code, 0);
  t.equal((await e.cli(['sync', '--dry-run'])).code, 0);
  const j = await e.cli(['sync', 'status', '--json']);
  t.equal(j.code, 0);
  const body = j.json() as { runs: { status: string; dryRun: boolean; counts: Record<string, unknown> }[]; lastSuccessful: { id: number } | null };
  t.equal(body.runs.length, 2);
  t.match(body.runs[0], { status: 'ok', dryRun: true });
  t.match(body.runs[1], { status: 'ok', dryRun: false, counts: { create: 2 } });
  t.ok(body.lastSuccessful);
  const h = await e.cli(['sync', 'status', '--limit', '1']);
  t.match(h.stdout, /STATUS/);
  t.match(h.stdout, /dry-run/);
  t.match(h.stdout, /last successful run: #1/);
});

// ── output ──────────────────────────────────────────────────────────────────

function rawCli(argv: string[], config: string, stderrIsTTY: boolean) {
  return cli(['--config', config, ...argv], { stderrIsTTY });
}

t.test('not on a terminal: one JSON log line per change on stderr, no secret anywhere', async (t) => {
  const e = await setup(t, { users: [person('alice'), person('bob'), { username: 'nomail', enabled: true }], pageSize: 2 });
  const config = configFile(t, { database: { url: e.tdb.url }, log: { level: 'info', format: 'json' }, idp: { retries: 0 } });
  const r = await rawCli(['sync'], config, false);
  t.equal(r.code, 0);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const changes = lines.filter((l) => l.action === 'create');
  t.same(changes.map((l) => l.email).sort(), ['alice@example.org', 'bob@example.org']);
  t.match(changes[0], { level: 30, reason: 'new_user', outcome: 'applied', template: 'Staff', msg: /new mailbox/ });
  t.notOk(lines.some((l) => l.reason === 'no_email'), 'skips are debug lines, not shown at info');
  t.match(r.stdout, /sync run #1: ok/);

  e.kc.inject('users', { kind: 'error500' });
  const failed = await rawCli(['sync', '--force'], config, false);
  t.equal(failed.code, 1);
  t.match(failed.stderr, /ERR_IDP_UNAVAILABLE|HTTP 500/);
  for (const text of [r.stderr, r.stdout, failed.stderr, failed.stdout]) {
    t.notMatch(text, 'kc-secret', 'no client secret');
    t.notMatch(text, /eyJ[A-Za-z0-9_-]{10,}/, 'no token');
  }
});

t.test('on a terminal: a progress line on stderr instead of log lines', async (t) => {
  const e = await setup(t, { users: people(3) });
  const config = configFile(t, { database: { url: e.tdb.url }, log: { level: 'info', format: 'json' } });
  const r = await rawCli(['sync'], config, true);
  t.equal(r.code, 0);
  t.match(r.stderr, /\r\x1b\[Ksync: users 3 \(1 pages\) · create 3 · update 0/);
  t.notMatch(r.stderr, /"action":"create"/);
  t.match(r.stdout, /CREATE\s+|create\s+3/);
});
