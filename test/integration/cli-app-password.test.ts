/** `mailauth app-password …`: generated, shown once, stored only as a hash, never listed with it. */
import t from 'tap';
import { verify } from '../../src/passwords/index.js';
import { cliFor, snapshot } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';

t.test('add prints the password once and stores only its hash', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '{PLAIN}x');
  const cli = cliFor(t, tdb);

  const human = await cli(['app-password', 'add', 'Alice@example.org', '--name', 'Phone', '--protocols', 'imap,smtp']);
  t.equal(human.code, 0, human.stderr);
  const m = /^app password "Phone" for alice@example\.org \(id (\d+), protocols imap, smtp\):\n\n {4}(\S+)\n\nIt is shown only this once; mailauth stores only its hash\.\n$/.exec(human.stdout);
  t.ok(m, human.stdout);
  const [, id, password] = m ?? [];
  t.match(password, /^[A-Za-z2-9]{4}(-[A-Za-z2-9]{4}){5}$/);

  const json = await cli(['--json', 'app-password', 'add', 'alice@example.org', '--name', 'Calendar', '--protocols', 'dav']);
  t.equal(json.code, 0, json.stderr);
  const created = json.json() as { id: number; password: string; protocols: string[] };
  t.match(created, { action: 'created', username: 'alice@example.org', name: 'Calendar', protocols: ['dav'] });
  t.not(created.password, password, 'each one is new');

  const rows = await tdb.sql<Record<string, unknown>>('SELECT * FROM app_passwd ORDER BY id');
  t.equal(rows.length, 2);
  t.match(rows[0], { id: Number(id), name: 'Phone', mailbox: 'alice@example.org', domain: 'example.org', imap_access: 1, smtp_access: 1, pop3_access: 0, sieve_access: 0, eas_access: 0, dav_access: 0, active: 1 });
  t.match(rows[1], { name: 'Calendar', dav_access: 1, imap_access: 0 });
  t.match(String(rows[0]?.password), /^\{BLF-CRYPT\}/);
  t.notOk(JSON.stringify(rows).includes(String(password)), 'plaintext not stored');
  t.match(await verify(String(rows[0]?.password), String(password)), { outcome: 'match' });
  t.match(await verify(String(rows[1]?.password), created.password), { outcome: 'match' });

  const all = await cli(['--json', 'app-password', 'add', 'alice@example.org', '--name', 'Laptop']);
  t.match(all.json(), { protocols: ['imap', 'pop3', 'smtp', 'sieve', 'eas', 'dav'] }, 'every protocol by default');
});

t.test('list never shows hashes; delete; refusals change nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '{PLAIN}x');
  await seedMailbox(tdb, 'bob@example.org', '{PLAIN}x');
  await seedMailbox(tdb, 'room@example.org', '', { kind: 'Location' });
  const cli = cliFor(t, tdb);
  t.equal((await cli(['app-password', 'add', 'alice@example.org', '--name', 'Phone', '--protocols', 'imap'])).code, 0);
  const [{ password: storedHash } = { password: '' }] = await tdb.sql<{ password: string }>('SELECT password FROM app_passwd');
  const hashBody = storedHash.slice(20, 40);

  const human = await cli(['app-password', 'list', 'alice@example.org']);
  t.equal(human.code, 0);
  t.match(human.stdout, /^ID\s+NAME\s+PROTOCOLS\s+ACTIVE\s+CREATED\n1\s+Phone\s+imap\s+yes\s+\d{4}-/);
  const json = await cli(['--json', 'app-password', 'list', 'alice@example.org']);
  t.match(json.json(), [{ id: 1, name: 'Phone', mailbox: 'alice@example.org', active: 1, protocols: ['imap'] }]);
  for (const out of [human.stdout, json.stdout]) t.notOk(out.includes(hashBody) || out.includes('BLF-CRYPT'), 'no hash listed');
  t.equal((await cli(['app-password', 'list', 'bob@example.org'])).stdout, 'bob@example.org has no app passwords\n');

  const before = await snapshot(tdb);
  const cases: [string[], number, RegExp][] = [
    [['add', 'nobody@example.org', '--name', 'x'], 1, /mailbox nobody@example\.org does not exist/],
    [['add', 'room@example.org', '--name', 'x'], 1, /is a resource \(Location\)/],
    [['add', 'alice@example.org', '--name', 'x', '--protocols', 'imap,ftp'], 2, /unknown protocol ftp; known: imap, pop3, smtp, sieve, eas, dav/],
    [['add', 'alice@example.org'], 2, /required option '-n, --name <name>'/],
    [['add', 'alice@example.org', '--name', ' '], 2, /name must be 1-255 characters/],
    [['list', 'nobody@example.org'], 1, /does not exist/],
    [['delete', 'bob@example.org', '1'], 1, /bob@example\.org has no app password with id 1/],
    [['delete', 'alice@example.org', 'one'], 2, /id must be an integer/],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(['app-password', ...args]);
    t.equal(r.code, code, args.join(' '));
    t.match(r.stderr, message, args.join(' '));
  }
  t.same(await snapshot(tdb), before, 'no row changed');

  const del = await cli(['--json', 'app-password', 'delete', 'alice@example.org', '1']);
  t.equal(del.code, 0, del.stderr);
  t.same(del.json(), { action: 'deleted', id: 1, username: 'alice@example.org' });
  t.same(await tdb.sql('SELECT * FROM app_passwd'), []);
});

t.test('--help has examples', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const cli = cliFor(t, tdb);
  for (const sub of [[], ['add'], ['list'], ['delete']]) {
    const r = await cli(['app-password', ...sub, '--help']);
    t.equal(r.code, 0);
    t.match(r.stdout, /Example/, `app-password ${sub.join(' ')} --help`);
  }
});
