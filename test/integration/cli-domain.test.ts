/** `mailauth domain …` in-process on the real MariaDB: happy paths, refusals that change nothing, exit codes. */
import t from 'tap';
import { cliFor, snapshot } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';

t.test('add, list, show, edit', async (t) => {
  const tdb = await createTestDatabase(t);
  const cli = cliFor(t, tdb);

  const add = await cli(['domain', 'add', 'Example.ORG', '--max-mailboxes', '50', '--quota', '51200', '--description', 'main']);
  t.equal(add.code, 0, add.stderr);
  t.match(add.stdout, /created domain example\.org\n/);
  t.match(add.stdout, /mailboxes:\s+0 of 50/);
  t.same(await tdb.sql('SELECT domain, description, mailboxes, defquota, maxquota, quota, active FROM domain'), [
    { domain: 'example.org', description: 'main', mailboxes: 50, defquota: 3072, maxquota: 10240, quota: 51200, active: 1 },
  ]);

  const off = await cli(['--json', 'domain', 'add', 'off.example', '--inactive', '--max-quota', '2048', '--default-quota', '1024']);
  t.equal(off.code, 0, off.stderr);
  t.match(off.json(), { action: 'created', domain: { domain: 'off.example', active: 0, maxQuotaMiB: 2048, defaultQuotaMiB: 1024, quotaMiB: 10240, mailboxes: 0 } });

  await seedMailbox(tdb, 'a@example.org', '{PLAIN}x', { quota: 1024 * 1024 * 1024 });
  const list = await cli(['domain', 'list']);
  t.equal(list.code, 0);
  t.match(list.stdout, /^DOMAIN\s+ACTIVE\s+MAILBOXES\s+QUOTA MIB/);
  t.match(list.stdout, /example\.org\s+yes\s+1\/50\s+1024\/51200\s+10240\s+3072\s+main/);
  t.match(list.stdout, /off\.example\s+no\s+0\/10/);
  const listJson = await cli(['domain', 'list', '--json']);
  t.match(listJson.json(), [{ domain: 'example.org', mailboxes: 1, assignedQuotaMiB: 1024 }, { domain: 'off.example' }]);

  const show = await cli(['domain', 'show', 'example.org', '--json']);
  t.match(show.json(), { domain: 'example.org', maxMailboxes: 50, mailboxes: 1, quotaMiB: 51200 });
  const missing = await cli(['domain', 'show', 'nowhere.example', '--json']);
  t.equal(missing.code, 1);
  t.match(missing.json(), { error: 'domain nowhere.example does not exist', data: { refused: 'domain_missing' } });

  const edit = await cli(['domain', 'edit', 'example.org', '--max-quota', '20480', '--active', '0']);
  t.equal(edit.code, 0, edit.stderr);
  t.match(edit.stdout, /updated domain example\.org \(maxquota, active\)/);
  const same = await cli(['domain', 'edit', 'example.org', '--active', '0']);
  t.match(same.stdout, /domain example\.org unchanged/);
  t.equal((await cli(['domain', 'edit', 'example.org'])).code, 2, 'nothing to change is a usage error');
  t.equal((await cli(['domain', 'edit', 'example.org', '--active', 'yes'])).code, 2);
  t.equal((await cli(['domain', 'add', 'x.example', '--max-mailboxes', 'ten'])).code, 2);
});

t.test('refusals exit 1 (or 2 for bad input) and change nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  const cli = cliFor(t, tdb);
  await seedDomain(tdb, 'example.org', { mailboxes: 5, quota: 10240, maxquota: 4096, defquota: 1024 });
  await seedMailbox(tdb, 'a@example.org', '{PLAIN}x', { quota: 4096 * 1024 * 1024 });
  await seedMailbox(tdb, 'b@example.org', '{PLAIN}x', { quota: 1024 * 1024 * 1024 });
  const before = await snapshot(tdb);
  const cases: [string[], number, string | null, RegExp][] = [
    [['domain', 'add', 'example.org'], 1, 'domain_exists', /domain example\.org already exists/],
    [['domain', 'add', 'nodot'], 2, null, /not a fully qualified domain name/],
    [['domain', 'add', 'x.example', '--default-quota', '5000', '--max-quota', '4000'], 2, 'invalid_limits', /default quota \(5000 MiB\) must not exceed/],
    [['domain', 'edit', 'example.org', '--max-mailboxes', '1'], 1, 'limits_below_usage', /max mailboxes 1 < 2 existing mailboxes/],
    [['domain', 'edit', 'example.org', '--max-quota', '2048'], 1, 'limits_below_usage', /largest mailbox quota \(4096 MiB\)/],
    [['domain', 'edit', 'missing.example', '--active', '1'], 1, 'domain_missing', /does not exist/],
    [['domain', 'delete', 'example.org'], 1, 'domain_not_empty', /still has 2 mailboxes.*--force/],
    [['domain', 'delete', 'example.org', '--force'], 2, null, /Delete domain example\.org with its 2 mailboxes and 0 aliases\? — refusing without confirmation; pass --yes/],
  ];
  for (const [argv, code, refused, message] of cases) {
    const r = await cli(['--json', ...argv]);
    t.equal(r.code, code, argv.join(' '));
    t.match(r.stderr, message, argv.join(' '));
    if (refused) t.match(r.json(), { data: { refused } }, argv.join(' '));
  }
  t.same(await snapshot(tdb), before, 'no row changed');
});

t.test('delete: empty domain, --force with --yes, interactive confirmation', async (t) => {
  const tdb = await createTestDatabase(t);
  const cli = cliFor(t, tdb);
  await seedDomain(tdb, 'empty.example');
  await seedDomain(tdb, 'example.org');
  await seedDomain(tdb, 'other.example');
  for (const u of ['a@example.org', 'b@example.org', 'keep@other.example']) {
    const r = await cli(['mailbox', 'add', u, '--password-stdin'], { stdin: 'pw-123456\n' });
    t.equal(r.code, 0, r.stderr);
  }
  const empty = await cli(['domain', 'delete', 'empty.example']);
  t.equal(empty.code, 0, empty.stderr);
  t.equal(empty.stdout, 'deleted domain empty.example\n');

  const before = await snapshot(tdb);
  const no = await cli(['domain', 'delete', 'example.org', '--force'], { stdin: 'n\n', tty: true });
  t.equal(no.code, 1);
  t.match(no.stderr, /Delete domain example\.org with its 2 mailboxes and 2 aliases\? \[y\/N\] /);
  t.match(no.stderr, /cancelled/);
  t.same(await snapshot(tdb), before, 'answering no changes nothing');

  const yes = await cli(['domain', 'delete', 'example.org', '--force'], { stdin: 'y\n', tty: true });
  t.equal(yes.code, 0, yes.stderr);
  t.equal(yes.stdout, 'deleted domain example.org with 2 mailboxes and 2 aliases\n');
  const json = await cli(['--json', '--yes', 'domain', 'delete', 'other.example', '--force']);
  t.equal(json.code, 0, json.stderr);
  t.same(json.json(), { action: 'deleted', domain: 'other.example', deletedMailboxes: ['keep@other.example'], deletedAliases: 1 });
  for (const table of ['domain', 'mailbox', 'alias', 'quota2', 'quota2replica', 'user_acl']) {
    t.same(await tdb.sql(`SELECT * FROM \`${table}\``), [], `${table} empty`);
  }
});

t.test('--help has examples', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const cli = cliFor(t, tdb);
  for (const sub of [[], ['add'], ['list'], ['show'], ['edit'], ['delete']]) {
    const r = await cli(['domain', ...sub, '--help']);
    t.equal(r.code, 0);
    t.match(r.stdout, /Example/, `domain ${sub.join(' ')} --help`);
  }
});
