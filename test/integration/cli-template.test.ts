/** `mailauth template …`: every attribute validated, unknown keys named with the known ones, refusals change nothing. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { getTemplate, writeIdpSettings } from '../../src/db/index.js';
import { templateAttributeHash } from '../../src/provisioning/index.js';
import { cliFor, snapshot } from '../helpers/admin.js';
import { createTestDatabase } from '../helpers/db.js';

const MIB = 1024 * 1024;

t.test('list, show, add, edit, delete', async (t) => {
  const tdb = await createTestDatabase(t);
  const cli = cliFor(t, tdb);
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-tpl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const list = await cli(['template', 'list']);
  t.equal(list.code, 0);
  t.match(list.stdout, /^NAME\s+ID\s+QUOTA\s+ACTIVE\s+ATTRIBUTE HASH\s+MODIFIED\nDefault\s+1\s+domain default\s+1\s+[0-9a-f]{12}\s/);

  const add = await cli(['--json', 'template', 'add', 'Staff', '--set', `quota=${5120 * MIB}`, '--set', 'pop3_access=0', '--set', 'tags=staff, berlin', '--set', 'rl_value=100', '--set', 'rl_frame=h']);
  t.equal(add.code, 0, add.stderr);
  t.match(add.json(), { action: 'created', template: { name: 'Staff', attributes: { quota: 5120 * MIB, pop3_access: '0', tags: ['staff', 'berlin'], rl_value: '100', rl_frame: 'h', imap_access: '1', acl_app_passwds: '1' } } });
  const staff = await getTemplate(tdb.db, 'Staff');
  t.match(staff?.attributes, { quota: 5120 * MIB, pop3_access: '0' });

  const file = join(dir, 'students.json');
  writeFileSync(file, JSON.stringify({ template: 'ignored', attributes: { quota: 0, active: 1, sogo_access: 0, quarantine_notification: 'weekly' } }));
  const fromFile = await cli(['template', 'add', 'Students', '--from-json', file, '--set', 'eas_access=0']);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.match(fromFile.stdout, /created template Students\n/);
  t.match((await getTemplate(tdb.db, 'Students'))?.attributes, { quota: 0, active: 1, sogo_access: 0, quarantine_notification: 'weekly', eas_access: '0', imap_access: '1' });
  const fromStdin = await cli(['template', 'add', 'Guests', '--from-json', '-'], { stdin: '{"imap_access":"1","smtp_access":"0"}' });
  t.equal(fromStdin.code, 0, fromStdin.stderr);

  const show = await cli(['--json', 'template', 'show', 'Staff']);
  t.match(show.json(), { name: 'Staff', attributeHash: templateAttributeHash(staff as never), references: [] });
  const showHuman = await cli(['template', 'show', 'Default']);
  t.match(showHuman.stdout, /template:\s+Default\n/);
  t.match(showHuman.stdout, /\n {2}quota:\s+0 \(domain default\)\n/);

  const edit = await cli(['template', 'edit', 'Staff', '--set', 'quarantine_notification=daily', '--unset', 'rl_value']);
  t.equal(edit.code, 0, edit.stderr);
  t.match(edit.stdout, /updated template Staff/);
  const edited = await getTemplate(tdb.db, 'Staff');
  t.equal(edited?.attributes.quarantine_notification, 'daily');
  t.notOk(edited && 'rl_value' in edited.attributes);
  t.not(templateAttributeHash(edited as never), templateAttributeHash(staff as never), 'an edit changes the attribute hash');
  const same = await cli(['template', 'edit', 'Staff', '--set', 'quarantine_notification=daily']);
  t.match(same.stdout, /template Staff unchanged/);
  const replaced = await cli(['template', 'edit', 'Guests', '--from-json', '-'], { stdin: '{"imap_access":"0"}' });
  t.equal(replaced.code, 0, replaced.stderr);
  t.same((await getTemplate(tdb.db, 'Guests'))?.attributes, { imap_access: '0' }, '--from-json replaces on edit');

  const del = await cli(['template', 'delete', 'Guests']);
  t.equal(del.code, 0, del.stderr);
  t.equal(del.stdout, 'deleted template Guests\n');
  t.equal(await getTemplate(tdb.db, 'Guests'), null);
});

t.test('invalid attributes, unknown keys and protected templates change nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  const cli = cliFor(t, tdb);
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-tpl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal((await cli(['template', 'add', 'Staff'])).code, 0);
  await writeIdpSettings(tdb.db, { mappers: '["staff"]', templates: '["Staff"]', default_template: 'Default' });
  writeFileSync(join(dir, 'bad.json'), '{"quota": 1,');
  writeFileSync(join(dir, 'list.json'), '[1,2]');
  writeFileSync(join(dir, 'unknown.json'), '{"colour":"red","imap_access":"1"}');
  const before = await snapshot(tdb);
  const cases: [string[], number, RegExp][] = [
    [['add', 'X', '--set', 'imap_acess=1'], 2, /--set unknown attribute "imap_acess"; known attributes: quota, active, tags, .*acl_app_passwds/],
    [['add', 'X', '--set', 'imap_access=yes'], 2, /imap_access: must be "0" or "1", got "yes"/],
    [['add', 'X', '--set', 'quota=-5'], 2, /quota: must be a non-negative integer number of bytes/],
    [['add', 'X', '--set', 'quarantine_category=drop', '--set', 'rl_frame=y'], 2, /quarantine_category: must be one of add_header, reject, all, got "drop"; rl_frame: must be one of s, m, h, d, got "y"/],
    [['add', 'X', '--set', 'active'], 2, /"active" is not key=value/],
    [['add', 'X', '--from-json', join(dir, 'unknown.json')], 2, /unknown attribute "colour"; known attributes: /],
    [['add', 'X', '--from-json', join(dir, 'bad.json')], 2, /bad\.json is not valid JSON/],
    [['add', 'X', '--from-json', join(dir, 'list.json')], 2, /must hold one JSON object/],
    [['add', 'X', '--from-json', join(dir, 'missing.json')], 2, /cannot read .*missing\.json \(ENOENT\)/],
    [['add', 'Staff'], 1, /mailbox template "Staff" already exists/],
    [['add', ' X'], 2, /template name must be 1-255 characters/],
    [['edit', 'Staff', '--set', 'dav_access=2'], 2, /dav_access: must be "0" or "1", got "2"/],
    [['edit', 'Staff', '--unset', 'colour'], 2, /has no attribute "colour"/],
    [['edit', 'Staff'], 2, /nothing to change/],
    [['edit', 'Nope', '--set', 'imap_access=1'], 1, /mailbox template "Nope" does not exist/],
    [['show', 'Nope'], 1, /does not exist/],
    [['delete', 'Default'], 1, /the Default template cannot be deleted/],
    [['delete', 'Staff'], 1, /template "Staff" is used by identity provider mapping "staff" → Staff; change the mapping first/],
    [['delete', 'Nope'], 1, /does not exist/],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(['template', ...args]);
    t.equal(r.code, code, args.join(' '));
    t.match(r.stderr, message, args.join(' '));
  }
  const json = await cli(['--json', 'template', 'add', 'X', '--set', 'pop3_access=maybe']);
  t.match(json.json(), { error: /pop3_access/, data: { refused: 'invalid_attributes', problems: [/pop3_access/] } });
  t.same(await snapshot(tdb), before, 'no row changed');
});

t.test('--help has examples and the attribute list', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const cli = cliFor(t, tdb);
  for (const sub of [[], ['list'], ['show'], ['add'], ['edit'], ['delete']]) {
    const r = await cli(['template', ...sub, '--help']);
    t.equal(r.code, 0);
    t.match(r.stdout, /Example/, `template ${sub.join(' ')} --help`);
  }
  t.match((await cli(['template', 'add', '--help'])).stdout, /Known keys: quota, active, tags/);
});
