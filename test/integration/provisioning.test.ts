/** src/provisioning on the real MariaDB: the rows mailcow writes, every refusal writing nothing, limits under concurrency. */
import { createHash } from 'node:crypto';
import t from 'tap';
import { createDb, getTemplate, insertTemplate, writeIdpSettings } from '../../src/db/index.js';
import type { Queryable } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import {
  MIB,
  changeMailbox,
  createDomain,
  createTemplate,
  editDomain,
  editTemplate,
  isRefusal,
  phpJsonString,
  provisionMailbox,
  provisionSession,
  removeDomain,
  removeTemplate,
  setMailboxAuthsource,
  setMailboxPassword,
  templateAttributeHash,
} from '../../src/provisioning/index.js';
import type { ProvisionInput, ProvisionOptions, ProvisionResult } from '../../src/provisioning/index.js';
import { snapshot } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

let pwHash: string;
t.before(async () => {
  pwHash = await hash('SSHA256', 'secret-password');
});

const input = (over: Partial<ProvisionInput> = {}): ProvisionInput => ({
  username: 'alice@example.org',
  name: 'Alice',
  templateName: 'Default',
  passwordHash: pwHash,
  authsource: 'mailcow',
  ...over,
});

function provision(tdb: TestDatabase, over: Partial<ProvisionInput> = {}, opts: ProvisionOptions = { mode: 'create' }): Promise<ProvisionResult> {
  return tdb.db.transaction((tx) => provisionMailbox(tx, input(over), opts));
}

/** mysql2 hands JSON columns over parsed (MariaDB too); accept text as well. */
const json = (v: unknown): Record<string, unknown> => (typeof v === 'string' ? JSON.parse(v) : v) as Record<string, unknown>;

const rowsOf = async (tdb: TestDatabase, table: string, where: string, params: unknown[]) => tdb.sql(`SELECT * FROM \`${table}\` WHERE ${where}`, params);

t.test('create writes what mailcow writes', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { defquota: 2048 });
  const r = await provision(tdb, { username: ' Alice@Example.org ' });
  const template = await getTemplate(tdb.db, 'Default');
  t.ok(template?.attributesText, 'MariaDB hands over the JSON column text');
  const expectedHash = createHash('sha1').update(phpJsonString(template?.attributesText ?? ''), 'utf8').digest('hex');
  t.same(r, {
    action: 'created',
    username: 'alice@example.org',
    domain: 'example.org',
    name: 'Alice',
    template: 'Default',
    attributeHash: expectedHash,
    quotaBytes: 2048 * MIB,
    active: 1,
    authsource: 'mailcow',
  });
  const [m] = await rowsOf(tdb, 'mailbox', 'username = ?', ['alice@example.org']);
  t.match(m, { username: 'alice@example.org', password: pwHash, name: 'Alice', quota: 2048 * MIB, local_part: 'alice', domain: 'example.org', authsource: 'mailcow', active: 1, kind: '' });
  const attributes = json(m?.attributes) as Record<string, unknown>;
  t.same(Object.keys(attributes), [
    'force_pw_update', 'force_tfa', 'tls_enforce_in', 'tls_enforce_out', 'sogo_access', 'imap_access', 'pop3_access', 'smtp_access',
    'sieve_access', 'eas_access', 'dav_access', 'relayhost', 'passwd_update', 'mailbox_format', 'quarantine_notification',
    'quarantine_category', 'attribute_hash',
  ], "mailcow's keys in mailcow's order");
  t.match(attributes, {
    force_pw_update: '0', force_tfa: '0', tls_enforce_in: '0', tls_enforce_out: '0', sogo_access: '1', imap_access: '1', pop3_access: '1',
    smtp_access: '1', sieve_access: '1', eas_access: '1', dav_access: '1', relayhost: '0', mailbox_format: 'maildir:',
    quarantine_notification: 'hourly', quarantine_category: 'reject', attribute_hash: expectedHash,
  });
  t.match(attributes.passwd_update, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, "the database's NOW(), as mailcow stamps it");
  t.same(await rowsOf(tdb, 'quota2', 'username = ?', ['alice@example.org']), [{ username: 'alice@example.org', bytes: 0, messages: 0 }]);
  t.same(await rowsOf(tdb, 'quota2replica', 'username = ?', ['alice@example.org']), [{ username: 'alice@example.org', bytes: 0, messages: 0 }]);
  t.match(await rowsOf(tdb, 'alias', 'address = ?', ['alice@example.org']), [{ address: 'alice@example.org', goto: 'alice@example.org', domain: 'example.org', active: 1, internal: 0, sender_allowed: 1 }], "self-alias: internal 0, sender_allowed 1 (the columns' defaults, which mailcow leaves in place)");
  t.same(await rowsOf(tdb, 'user_acl', 'username = ?', ['alice@example.org']), [{
    username: 'alice@example.org', spam_alias: 1, tls_policy: 1, spam_score: 1, spam_policy: 1, delimiter_action: 1, syncjobs: 0, eas_reset: 1,
    sogo_profile_reset: 0, pushover: 1, quarantine: 1, quarantine_attachments: 1, quarantine_notification: 1, quarantine_category: 1, app_passwds: 1,
    pw_reset: 0,
  }], "pw_reset 0: mailcow's Default template has no acl_pw_reset, and mailcow writes a flag the template lacks as 0");
});

t.test('template values, quota and active come from the template; IdP mailboxes get no password and no forced change', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await insertTemplate(tdb.db, 'Staff', 'mailbox', {
    quota: 512 * MIB + 123, active: '2', force_pw_update: '1', force_tfa: '1', pop3_access: 0, tls_enforce_in: '1',
    quarantine_notification: 'daily', quarantine_category: 'all', acl_spam_alias: '0', acl_syncjobs: 1, acl_pw_reset: '1',
  });
  const r = await provision(tdb, { username: 'kc@example.org', name: '', templateName: 'Staff', passwordHash: '', authsource: 'keycloak' });
  t.match(r, { action: 'created', name: 'kc', quotaBytes: 512 * MIB, active: 2, authsource: 'keycloak' }, 'quota rounded down to whole MiB; empty name → local part');
  const [m] = await rowsOf(tdb, 'mailbox', 'username = ?', ['kc@example.org']);
  t.equal(m?.password, '');
  t.equal(m?.active, 2);
  t.match(json(m?.attributes), { force_pw_update: '0', force_tfa: '1', pop3_access: '0', imap_access: '1', tls_enforce_in: '1', quarantine_notification: 'daily', quarantine_category: 'all' });
  t.match(await rowsOf(tdb, 'alias', 'address = ?', ['kc@example.org']), [{ active: 2 }], 'alias mirrors active');
  t.match(await rowsOf(tdb, 'user_acl', 'username = ?', ['kc@example.org']), [{ spam_alias: 0, syncjobs: 1, tls_policy: 0, pw_reset: 1 }], 'acl_* absent from the template → 0, as mailcow does; acl_pw_reset → pw_reset');

  const o = await provision(tdb, { username: 'oidc@example.org', templateName: 'Staff', passwordHash: '', authsource: 'generic-oidc', quotaBytes: 100 * MIB, active: 1 });
  t.match(o, { action: 'created', quotaBytes: 100 * MIB, active: 1 });
  const [mo] = await rowsOf(tdb, 'mailbox', 'username = ?', ['oidc@example.org']);
  t.match(json(mo?.attributes), { force_pw_update: '0', force_tfa: '0' });
});

t.test('every refusal writes nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { mailboxes: 3, defquota: 100, maxquota: 1000, quota: 1500 });
  await seedDomain(tdb, 'off.example', { active: 0 });
  await seedDomain(tdb, 'full.example', { mailboxes: 1 });
  await seedMailbox(tdb, 'taken@example.org', pwHash, { quota: 1000 * MIB });
  await seedMailbox(tdb, 'one@full.example', pwHash);
  await tdb.db.exec("INSERT INTO alias (address, goto, domain) VALUES ('sales@example.org', 'taken@example.org', 'example.org')");
  await insertTemplate(tdb.db, 'Broken', 'mailbox', { quota: 'lots' });
  const before = await snapshot(tdb);
  const cases: [string, Partial<ProvisionInput>, ProvisionOptions | undefined, string, RegExp][] = [
    ['bad address', { username: 'not-an-address' }, undefined, 'invalid_address', /not an email address/],
    ['missing domain', { username: 'a@nowhere.example' }, undefined, 'domain_missing', /domain nowhere.example does not exist/],
    ['inactive domain', { username: 'a@off.example' }, undefined, 'domain_inactive', /domain off.example is not active/],
    ['duplicate mailbox', { username: 'Taken@example.org' }, undefined, 'mailbox_exists', /mailbox taken@example.org already exists/],
    ['address is an alias', { username: 'sales@example.org' }, undefined, 'alias_exists', /already an alias/],
    ['unknown template', { templateName: 'Nope' }, undefined, 'template_missing', /template "Nope" does not exist/],
    ['invalid template', { templateName: 'Broken' }, undefined, 'template_invalid', /quota: must be a non-negative integer/],
    ['quota over max per mailbox', { quotaBytes: 1001 * MIB }, undefined, 'quota_exceeds_max', /exceeds the maximum per mailbox of domain example.org \(1000 MiB\)/],
    ['quota over domain total', { quotaBytes: 501 * MIB }, undefined, 'domain_quota_exceeded', /500 MiB of 1500 MiB left/],
    ['mailbox count', { username: 'two@full.example' }, undefined, 'mailbox_count_exceeded', /already has 1 of at most 1 mailboxes/],
    ['no password for mailcow', { passwordHash: '' }, undefined, 'password_required', /needs a password/],
    ['update of a missing mailbox', {}, { mode: 'update' }, 'mailbox_missing', /does not exist/],
    ['bad name', { name: 'x\u0007' }, undefined, 'invalid_name', /control characters/],
    ['bad quota', { quotaBytes: 1000 }, undefined, 'invalid_quota', /whole number of MiB/],
  ];
  for (const [what, over, opts, reason, message] of cases) {
    const r = await provision(tdb, over, opts ?? { mode: 'create' });
    t.match(r, { refused: reason, message }, what);
    t.ok(isRefusal(r), `${what}: isRefusal`);
  }
  t.same(await snapshot(tdb), before, 'no row changed');
  t.rejects(provision(tdb, { authsource: 'keycloak' }), { code: 'ERR_INVALID_INPUT' }, 'a hash for an IdP mailbox is a caller bug');
  t.rejects(provision(tdb, { authsource: 'nis' as never }), { code: 'ERR_INVALID_INPUT' });
});

t.test('limits are counted from the latest rows, and 0 quota (unlimited) passes as in mailcow', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { mailboxes: 2, defquota: 100, maxquota: 100, quota: 150 });
  t.match(await provision(tdb, { username: 'a@example.org' }), { action: 'created', quotaBytes: 100 * MIB });
  t.match(await provision(tdb, { username: 'b@example.org' }), { refused: 'domain_quota_exceeded' });
  t.match(await provision(tdb, { username: 'b@example.org', quotaBytes: 50 * MIB }), { action: 'created' });
  t.match(await provision(tdb, { username: 'c@example.org', quotaBytes: 0 }), { refused: 'mailbox_count_exceeded' });
});

t.test('resources, in any letter case, are not mailboxes: not updated, not counted against the domain', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { mailboxes: 2 });
  await seedMailbox(tdb, 'room@example.org', '', { kind: 'Location' });
  await seedMailbox(tdb, 'beamer@example.org', '', { kind: 'THING' });
  const before = await snapshot(tdb);
  t.match(await provision(tdb, { username: 'room@example.org' }, { mode: 'upsert' }), { refused: 'not_a_mailbox', message: /is a resource \(Location\)/ });
  t.same(await snapshot(tdb), before, 'nothing written');
  t.match(await provision(tdb, { username: 'a@example.org' }), { action: 'created' });
  t.match(await provision(tdb, { username: 'b@example.org' }), { action: 'created' }, 'two resources do not use up the limit of two mailboxes');
  t.match(await provision(tdb, { username: 'c@example.org' }), { refused: 'mailbox_count_exceeded' });
});

t.test('a provisioning session keeps the limits exact across many creates in one transaction', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'count.example', { mailboxes: 3, defquota: 10, maxquota: 10, quota: 1000 });
  await seedDomain(tdb, 'quota.example', { mailboxes: 100, defquota: 10, maxquota: 100, quota: 60 });
  await seedMailbox(tdb, 'old@count.example', pwHash, { quota: 10 * MIB });
  const results = await tdb.db.transaction(async (tx) => {
    const session = provisionSession();
    const out: ProvisionResult[] = [];
    const create = async (username: string, quotaBytes?: number) =>
      out.push(await provisionMailbox(tx, input({ username, ...(quotaBytes === undefined ? {} : { quotaBytes }) }), { mode: 'create', session }));
    for (let i = 0; i < 4; i++) await create(`u${i}@count.example`);
    for (let i = 0; i < 4; i++) await create(`q${i}@quota.example`);
    // 40 of 60 MiB used; an update raising q0 to 20 MiB must be seen by the next create.
    out.push(await provisionMailbox(tx, input({ username: 'q0@quota.example', quotaBytes: 20 * MIB }), { mode: 'update', force: true, session }));
    await create('q8@quota.example', 15 * MIB);
    await create('q9@quota.example', 10 * MIB);
    await create('q10@quota.example', 1 * MIB);
    return out;
  });
  t.same(
    results.map((r) => ('refused' in r ? r.refused : r.action)),
    ['created', 'created', 'mailbox_count_exceeded', 'mailbox_count_exceeded', 'created', 'created', 'created', 'created', 'updated', 'domain_quota_exceeded', 'created', 'domain_quota_exceeded'],
  );
  t.match(results[2], { message: /already has 3 of at most 3 mailboxes/ }, 'the mailbox seeded before the transaction counts');
  t.match(results[9], { message: /10 MiB of 60 MiB left/ }, 'the raised quota of the update counts');
  t.match(results[11], { message: /0 MiB of 60 MiB left/ });
  const [usage] = await tdb.sql("SELECT COUNT(*) AS n, SUM(quota) AS q FROM mailbox WHERE domain = 'quota.example'");
  t.same([Number(usage?.n), Number(usage?.q)], [5, 60 * MIB], 'the rows agree with what the session counted');
});

t.test('concurrent provisioning cannot overrun the mailbox count or the total quota', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'count.example', { mailboxes: 3, defquota: 10, maxquota: 10, quota: 1000 });
  await seedDomain(tdb, 'quota.example', { mailboxes: 100, defquota: 10, maxquota: 10, quota: 40 });
  // A pool of its own, wide enough that every transaction really runs at once.
  const db = createDb({ ...tdb.dbConfig, poolSize: 12 });
  t.teardown(() => db.close());
  const run = (domain: string) =>
    Promise.all(
      Array.from({ length: 10 }, (_, i) => db.transaction((tx: Queryable) => provisionMailbox(tx, input({ username: `u${i}@${domain}` }), { mode: 'create' }))),
    );
  const count = await run('count.example');
  t.equal(count.filter((r) => 'action' in r).length, 3);
  t.equal(count.filter((r) => isRefusal(r) && r.refused === 'mailbox_count_exceeded').length, 7);
  const quota = await run('quota.example');
  t.equal(quota.filter((r) => 'action' in r).length, 4);
  t.equal(quota.filter((r) => isRefusal(r) && r.refused === 'domain_quota_exceeded').length, 6);
  t.same(await tdb.sql("SELECT COUNT(*) AS n FROM mailbox WHERE domain = 'count.example'"), [{ n: 3 }]);
  t.same(await tdb.sql("SELECT COUNT(*) AS n FROM alias WHERE domain = 'quota.example'"), [{ n: 4 }]);
});

t.test('update re-applies the template only when its hash or the name changed', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { defquota: 100 });
  await insertTemplate(tdb.db, 'Staff', 'mailbox', { quota: 0, pop3_access: '1', acl_syncjobs: '0' });
  t.match(await provision(tdb, { templateName: 'Staff' }), { action: 'created' });
  await tdb.db.exec("UPDATE mailbox SET active = 2, attributes = JSON_SET(attributes, '$.recovery_email', 'x@y.example') WHERE username = 'alice@example.org'");
  const stable = await snapshot(tdb);
  t.match(await provision(tdb, { templateName: 'Staff' }, { mode: 'update' }), { action: 'unchanged' });
  t.match(await provision(tdb, { templateName: 'Staff', name: '' }, { mode: 'upsert' }), { action: 'unchanged' }, "'' keeps the name");
  t.same(await snapshot(tdb), stable, 'unchanged writes nothing');

  const [before] = await rowsOf(tdb, 'mailbox', 'username = ?', ['alice@example.org']);
  const beforeAttrs = json(before?.attributes) as Record<string, unknown>;
  const edited = await tdb.db.transaction((tx) => editTemplate(tx, 'Staff', { set: { pop3_access: '0', acl_syncjobs: '1', quota: 200 * MIB } }));
  t.notOk(isRefusal(edited));
  const staff = await getTemplate(tdb.db, 'Staff');
  const r = await provision(tdb, { templateName: 'Staff', passwordHash: '', authsource: 'keycloak' }, { mode: 'upsert' });
  t.match(r, { action: 'updated', quotaBytes: 200 * MIB, attributeHash: templateAttributeHash(staff as never), active: 2, authsource: 'mailcow' });
  const [after] = await rowsOf(tdb, 'mailbox', 'username = ?', ['alice@example.org']);
  const attrs = json(after?.attributes) as Record<string, unknown>;
  t.equal(attrs.pop3_access, '0');
  t.equal(attrs.attribute_hash, templateAttributeHash(staff as never));
  t.equal(attrs.passwd_update, beforeAttrs.passwd_update, 'passwd_update kept');
  t.equal(attrs.recovery_email, 'x@y.example', 'keys the template does not own are kept');
  t.equal(after?.password, pwHash, 'password kept');
  t.equal(after?.active, 2, 'active kept');
  t.equal(after?.authsource, 'mailcow', 'authsource kept');
  t.match(await rowsOf(tdb, 'user_acl', 'username = ?', ['alice@example.org']), [{ syncjobs: 1 }]);

  t.match(await provision(tdb, { templateName: 'Staff', name: 'Alice L.' }, { mode: 'update' }), { action: 'updated', name: 'Alice L.' }, 'a new name alone updates');
  t.match(await provision(tdb, { templateName: 'Staff', name: 'Alice L.' }, { mode: 'update' }), { action: 'unchanged' });
  t.match(await provision(tdb, { templateName: 'Staff', name: 'Alice L.' }, { mode: 'update', force: true }), { action: 'updated' }, 'force');
  t.match(await provision(tdb, { templateName: 'Default', name: 'Alice L.' }, { mode: 'update' }), { action: 'updated', template: 'Default', quotaBytes: 100 * MIB }, 'another template');
});

t.test('update refuses a quota increase over the limits and writes nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { defquota: 100, maxquota: 300, quota: 400 });
  await seedMailbox(tdb, 'other@example.org', pwHash, { quota: 200 * MIB });
  t.match(await provision(tdb, {}), { action: 'created', quotaBytes: 100 * MIB });
  const before = await snapshot(tdb);
  t.match(await provision(tdb, { quotaBytes: 301 * MIB }, { mode: 'update' }), { refused: 'quota_exceeds_max' });
  t.match(await provision(tdb, { quotaBytes: 250 * MIB }, { mode: 'update' }), { refused: 'domain_quota_exceeded', message: /200 MiB of 400 MiB left/ });
  t.same(await snapshot(tdb), before);
  t.match(await provision(tdb, { quotaBytes: 200 * MIB }, { mode: 'update' }), { action: 'updated', quotaBytes: 200 * MIB });
  await tdb.db.exec("UPDATE domain SET quota = 100 WHERE domain = 'example.org'");
  t.match(await provision(tdb, { quotaBytes: 50 * MIB }, { mode: 'update' }), { action: 'updated', quotaBytes: 50 * MIB }, 'shrinking is allowed in an over-full domain');
});

t.test('changeMailbox: name, quota within limits, active mirrored on the self-alias', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { defquota: 100, maxquota: 300, quota: 400 });
  await provision(tdb, {});
  const change = (c: Parameters<typeof changeMailbox>[2], user = 'alice@example.org') => tdb.db.transaction((tx) => changeMailbox(tx, user, c));
  const before = await snapshot(tdb);
  t.match(await change({ quotaBytes: 301 * MIB }), { refused: 'quota_exceeds_max' });
  t.match(await change({}, 'nobody@example.org'), { refused: 'mailbox_missing' });
  t.match(await change({ name: '' }), { refused: 'invalid_name' });
  t.same(await snapshot(tdb), before);
  t.match(await change({ name: 'A', quotaBytes: 300 * MIB, active: 0 }), { changed: ['name', 'active', 'quota'] });
  t.match(await rowsOf(tdb, 'alias', 'address = ?', ['alice@example.org']), [{ active: 0 }]);
  t.match(await change({ name: 'A' }), { changed: [] });
});

t.test('password and authsource: switching away and back keeps the hash', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await provision(tdb, {});
  const tx = <T>(fn: (q: Queryable) => Promise<T>) => tdb.db.transaction(fn);
  t.match(await tx((q) => setMailboxAuthsource(q, 'alice@example.org', 'keycloak')), { previous: 'mailcow', authsource: 'keycloak', changed: true, hasPassword: true });
  t.match(await tx((q) => setMailboxAuthsource(q, 'alice@example.org', 'keycloak')), { changed: false });
  t.match(await tx((q) => setMailboxAuthsource(q, 'alice@example.org', 'mailcow')), { previous: 'keycloak', changed: true });
  t.same(await tdb.sql('SELECT password FROM mailbox WHERE username = ?', ['alice@example.org']), [{ password: pwHash }]);
  t.match(await tx((q) => setMailboxAuthsource(q, 'nobody@example.org', 'mailcow')), { refused: 'mailbox_missing' });
  const newHash = await hash('SSHA512', 'another');
  t.match(await tx((q) => setMailboxPassword(q, 'alice@example.org', newHash)), { username: 'alice@example.org', authsource: 'mailcow' });
  t.same(await tdb.sql('SELECT password FROM mailbox WHERE username = ?', ['alice@example.org']), [{ password: newHash }]);
  await t.rejects(tx((q) => setMailboxPassword(q, 'alice@example.org', 'plain')), { code: 'ERR_INVALID_INPUT' });
});

t.test('domains: create, edit never below usage, delete refused while not empty', async (t) => {
  const tdb = await createTestDatabase(t);
  const tx = <T>(fn: (q: Queryable) => Promise<T>) => tdb.db.transaction(fn);
  t.match(await tx((q) => createDomain(q, { domain: 'Example.ORG' })), { domain: { domain: 'example.org', mailboxes: 10, defquota: 3072, maxquota: 10240, quota: 10240, active: 1 } });
  t.match(await tx((q) => createDomain(q, { domain: 'small.example', quota: 1000 })), { domain: { quota: 1000, maxquota: 1000, defquota: 1000 } }, 'defaults fit under a small quota');
  t.match(await tx((q) => createDomain(q, { domain: 'example.org' })), { refused: 'domain_exists' });
  t.match(await tx((q) => createDomain(q, { domain: 'x.example', defquota: 5000, maxquota: 4000 })), { refused: 'invalid_limits' });
  t.match(await tx((q) => createDomain(q, { domain: 'nodot' })), { refused: 'invalid_domain' });
  await provision(tdb, { quotaBytes: 3000 * MIB });
  await provision(tdb, { username: 'bob@example.org', quotaBytes: 1000 * MIB });
  const before = await snapshot(tdb);
  t.match(await tx((q) => editDomain(q, 'example.org', { mailboxes: 1 })), { refused: 'limits_below_usage', message: /max mailboxes 1 < 2 existing mailboxes/ });
  t.match(await tx((q) => editDomain(q, 'example.org', { quota: 3500 })), { refused: 'invalid_limits' }, 'maxquota above quota');
  t.match(await tx((q) => editDomain(q, 'example.org', { quota: 3500, maxquota: 3500 })), { refused: 'limits_below_usage', message: /domain quota 3500 MiB < 4000 MiB/ });
  t.match(await tx((q) => editDomain(q, 'example.org', { maxquota: 2000, defquota: 1000 })), { refused: 'limits_below_usage', message: /largest mailbox quota \(3000 MiB\)/ });
  t.match(await tx((q) => removeDomain(q, 'example.org')), { refused: 'domain_not_empty', message: /still has 2 mailboxes/, details: { mailboxes: 2 } });
  t.match(await tx((q) => editDomain(q, 'missing.example', { active: 0 })), { refused: 'domain_missing' });
  t.same(await snapshot(tdb), before);
  t.match(await tx((q) => editDomain(q, 'example.org', { active: 0, description: 'paused' })), { changed: ['description', 'active'], domain: { active: 0, description: 'paused' } });
  t.match(await tx((q) => removeDomain(q, 'example.org', { force: true })), { domain: 'example.org', deletedMailboxes: ['alice@example.org', 'bob@example.org'], deletedAliases: 2 });
  for (const table of ['mailbox', 'alias', 'quota2', 'quota2replica', 'user_acl']) {
    t.same(await tdb.sql(`SELECT * FROM \`${table}\``), [], `${table} emptied`);
  }
});

t.test('templates: validation, Default and mapped templates protected', async (t) => {
  const tdb = await createTestDatabase(t);
  const tx = <T>(fn: (q: Queryable) => Promise<T>) => tdb.db.transaction(fn);
  t.match(await tx((q) => createTemplate(q, 'Staff', { quota: 1024 * MIB })), { template: { name: 'Staff', attributes: { quota: 1024 * MIB, imap_access: '1', acl_app_passwds: '1' } } });
  const before = await snapshot(tdb);
  t.match(await tx((q) => createTemplate(q, 'Staff', {})), { refused: 'template_exists' });
  t.match(await tx((q) => createTemplate(q, 'Bad', { imap_acess: '1' })), { refused: 'invalid_attributes', message: /unknown attribute "imap_acess"; known attributes: / });
  t.match(await tx((q) => createTemplate(q, ' ', {})), { refused: 'invalid_name' });
  t.match(await tx((q) => editTemplate(q, 'Staff', { set: { quarantine_category: 'drop' } })), { refused: 'invalid_attributes' });
  t.match(await tx((q) => editTemplate(q, 'Staff', { unset: ['nothing'] })), { refused: 'invalid_attributes' });
  t.match(await tx((q) => editTemplate(q, 'Nope', { set: {} })), { refused: 'template_missing' });
  t.match(await tx((q) => removeTemplate(q, 'Default')), { refused: 'template_protected' });
  await writeIdpSettings(tdb.db, { mappers: '["staff"]', templates: '["Staff"]', default_template: 'Default' });
  const withIdp = await snapshot(tdb);
  t.match(await tx((q) => removeTemplate(q, 'Staff')), { refused: 'template_in_use', message: /mapping "staff" → Staff/ });
  t.same(await snapshot(tdb), withIdp);
  t.same(before.templates, withIdp.templates);
  t.match(await tx((q) => editTemplate(q, 'Staff', { unset: ['quota'] })), { changed: true });
  await writeIdpSettings(tdb.db, { mappers: '[]', templates: '[]' });
  t.match(await tx((q) => removeTemplate(q, 'Staff')), { name: 'Staff' });
});
