import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import { cli, configFile } from '../helpers/cli.js';
import { ADDED_COLUMNS, migrate, schemaStatus, TABLE_NAMES, getTemplate } from '../../src/db/index.js';

/** mailcow's columns for the tables mailauth creates, read from init_db.inc.php at the commit the file names. */
const MAILCOW = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/mailcow-schema.json'), 'utf8')) as {
  commit: string;
  tables: Record<string, Record<string, string>>;
};

interface ColumnRow {
  t: string;
  c: string;
  type: string;
  nullable: string;
  dflt: string | null;
  extra: string;
}

/** A mailcow column definition in the terms information_schema reports (MariaDB: JSON is LONGTEXT). */
function expected(def: string): { type: string; nullable: boolean; dflt: string | null; autoIncrement: boolean } {
  const head = /^(ENUM\([^)]*\)|[A-Z]+(?:\(\d+\))?)/.exec(def)?.[1] ?? def;
  let type = head.toLowerCase().replace(/'\s*,\s*'/g, "','");
  if (type === 'json') type = 'longtext';
  if (type === 'int') type = 'int(11)';
  if (type === 'datetime(0)') type = 'datetime';
  const d = /DEFAULT\s+(\('[^']*'\)|'[^']*'|\S+)/.exec(def)?.[1] ?? null;
  return { type, nullable: !/NOT NULL/.test(def), dflt: d === null ? null : normDefault(d), autoIncrement: /AUTO_INCREMENT/.test(def) };
}

function normDefault(d: string): string | null {
  const v = d.replace(/^\((.*)\)$/, '$1').replace(/^'(.*)'$/, '$1');
  if (/^(now|current_timestamp)(\(\d*\))?$/i.test(v)) return 'current_timestamp';
  return v === 'NULL' ? null : v;
}

t.test('migrate on an empty database creates every table and the Default template', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const before = await schemaStatus(tdb.db);
  t.same(before.missing, [...TABLE_NAMES]);
  const r = await migrate(tdb.db);
  t.same(r.created, [...TABLE_NAMES]);
  t.same(r.existing, []);
  t.equal(r.seeded.length, 1);
  const def = await getTemplate(tdb.db, 'Default');
  t.equal(def?.attributes.imap_access, '1');
  t.same((await schemaStatus(tdb.db)).missing, []);
  const cols = await tdb.sql<{ COLUMN_NAME: string; COLUMN_DEFAULT: string | null }>(
    "SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'mailbox'",
    [tdb.name],
  );
  const byName = Object.fromEntries(cols.map((c) => [c.COLUMN_NAME, c.COLUMN_DEFAULT]));
  t.match(byName.authsource, /mailcow/, 'authsource defaults to mailcow');
  t.match(byName.active, /1/);
});

t.test('migrate twice changes nothing', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  await migrate(tdb.db);
  const second = await migrate(tdb.db);
  t.same(second.created, []);
  t.same(second.existing, [...TABLE_NAMES]);
  t.same(second.seeded, []);
  const n = await tdb.sql<{ n: number }>('SELECT COUNT(*) AS n FROM templates');
  t.equal(Number(n[0]?.n), 1, 'Default template seeded once');
});

t.test('existing tables with extra columns are left untouched', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  await tdb.db.exec('CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255), extra_col INT DEFAULT 7)');
  await tdb.db.exec("INSERT INTO mailbox (username, password) VALUES ('a@b.c', '{PLAIN}x')");
  await tdb.db.exec('CREATE TABLE templates (id INT AUTO_INCREMENT PRIMARY KEY, template VARCHAR(255), type VARCHAR(255), attributes JSON, mine TEXT)');
  const r = await migrate(tdb.db);
  t.ok(r.existing.includes('mailbox') && r.existing.includes('templates'));
  t.notOk(r.created.includes('mailbox'));
  t.same(r.seeded, [], 'no template seeded into an existing templates table');
  const cols = await tdb.sql<{ COLUMN_NAME: string }>(
    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'mailbox' ORDER BY ORDINAL_POSITION",
    [tdb.name],
  );
  t.same(cols.map((c) => c.COLUMN_NAME), ['username', 'password', 'extra_col']);
  const rows = await tdb.sql('SELECT * FROM mailbox');
  t.same(rows, [{ username: 'a@b.c', password: '{PLAIN}x', extra_col: 7 }]);
});

t.test('CLI: db status and db migrate', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const cfg = configFile(t, { database: { url: tdb.url } });
  const s1 = await cli(['--config', cfg, 'db', 'status']);
  t.equal(s1.code, 1, 'missing tables → exit 1');
  t.match(s1.stdout, /mailbox\s+MISSING/);
  t.match(s1.stdout, /run `mailauth db migrate`/);
  const m = await cli(['--config', cfg, '--json', 'db', 'migrate']);
  t.equal(m.code, 0, m.stderr);
  t.same(m.json<{ created: string[] }>().created, [...TABLE_NAMES]);
  const s2 = await cli(['--config', cfg, '--json', 'db', 'status']);
  t.equal(s2.code, 0);
  t.same(s2.json<{ missing: string[] }>().missing, []);
});

t.test('CLI: unreachable database is a clear error, exit 1', async (t) => {
  const cfg = configFile(t, { database: { url: 'mysql://root@127.0.0.1:1/none', connect_timeout: '1s' } });
  const r = await cli(['--config', cfg, 'db', 'status']);
  t.equal(r.code, 1);
  t.match(r.stderr, /database unavailable during SELECT .*ECONNREFUSED/);
  t.match(r.stderr, /check database\.url/);
});

t.test('CLI: an invalid config exits 2 and names the key', async (t) => {
  const cfg = configFile(t, { database: { pool_size: 'ten' } });
  const r = await cli(['--config', cfg, 'config', 'check']);
  t.equal(r.code, 2);
  t.match(r.stderr, /database\.pool_size: must be an integer between 1 and 100, got "ten"/);
  const missing = await cli(['config', 'check'], { env: { MAILAUTH_CONFIG: '/nonexistent.yaml' } });
  t.equal(missing.code, 2);
  t.match(missing.stderr, /\/nonexistent\.yaml does not exist/);
});

t.test('CLI: config check masks secrets', async (t) => {
  const cfg = configFile(t, { database: { url: 'mysql://u:supersecretpw@127.0.0.1/db' } });
  const r = await cli(['--config', cfg, '--json', 'config', 'check']);
  t.equal(r.code, 0, r.stderr);
  t.notMatch(r.stdout, /supersecretpw/);
  t.match(r.json<{ database: { password: string } }>().database.password, '********');
});

t.test(`the migrated schema has every column of mailcow's tables (init_db.inc.php at ${MAILCOW.commit.slice(0, 8)}), with mailcow's types and defaults`, async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  await migrate(tdb.db);
  const rows = await tdb.sql<ColumnRow>(
    'SELECT TABLE_NAME AS t, COLUMN_NAME AS c, COLUMN_TYPE AS type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS dflt, EXTRA AS extra FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?',
    [tdb.name],
  );
  const have = new Map(rows.map((r) => [`${r.t}.${r.c}`, r]));
  t.same(Object.keys(MAILCOW.tables).sort(), TABLE_NAMES.filter((n) => !n.startsWith('mailauth_')).sort(), "the fixture covers every mailcow table mailauth creates");
  let n = 0;
  for (const [table, cols] of Object.entries(MAILCOW.tables)) {
    for (const [col, def] of Object.entries(cols)) {
      n += 1;
      const r = have.get(`${table}.${col}`);
      const want = expected(def);
      if (!r) {
        t.fail(`${table}.${col} missing (mailcow: ${def})`);
        continue;
      }
      const got = { type: r.type.replace(/'\s*,\s*'/g, "','"), nullable: r.nullable === 'YES', dflt: r.dflt === null ? null : normDefault(r.dflt), autoIncrement: /auto_increment/i.test(r.extra) };
      t.same(got, want, `${table}.${col}: ${def}`);
    }
  }
  t.ok(n > 90, `${n} columns compared`);
});

t.test("migrate adds mailcow's newer columns to tables an older mailauth created, and nothing else", async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  await migrate(tdb.db);
  await tdb.db.exec("INSERT INTO domain (domain) VALUES ('example.org')");
  await tdb.db.exec("INSERT INTO mailbox (username, password, local_part, domain) VALUES ('a@example.org', '{PLAIN}x', 'a', 'example.org')");
  await tdb.db.exec("INSERT INTO alias (address, goto, domain) VALUES ('a@example.org', 'a@example.org', 'example.org')");
  await tdb.db.exec("INSERT INTO user_acl (username) VALUES ('a@example.org')");
  for (const a of ADDED_COLUMNS) await tdb.db.exec(`ALTER TABLE \`${a.table}\` DROP COLUMN \`${a.column}\``);
  const before = await schemaStatus(tdb.db);
  t.same(before.missing, []);
  t.same(before.missingColumns, ['alias.internal', 'alias.sender_allowed', 'user_acl.pw_reset']);
  const status = await cli(['--config', configFile(t, { database: { url: tdb.url } }), 'db', 'status']);
  t.equal(status.code, 1, 'db status: a missing column is exit 1');
  t.match(status.stdout, /column\(s\) missing: alias\.internal, alias\.sender_allowed, user_acl\.pw_reset/);

  const r = await migrate(tdb.db);
  t.same(r.created, []);
  t.same(r.added, ['alias.internal', 'alias.sender_allowed', 'user_acl.pw_reset']);
  t.same((await schemaStatus(tdb.db)).missingColumns, []);
  const cols = await tdb.sql<{ c: string }>("SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'alias' ORDER BY ORDINAL_POSITION", [tdb.name]);
  t.same(cols.map((c) => c.c).slice(-4), ['sogo_visible', 'internal', 'sender_allowed', 'active'], "in mailcow's column order");
  t.same(await tdb.sql('SELECT internal, sender_allowed FROM alias'), [{ internal: 0, sender_allowed: 1 }], "existing rows get mailcow's defaults");
  t.same(await tdb.sql('SELECT pw_reset FROM user_acl'), [{ pw_reset: 1 }]);
  t.same((await migrate(tdb.db)).added, [], 'a second run adds nothing');
});
