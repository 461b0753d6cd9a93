/**
 * Security review, door 5: SQL injection. First a source audit: every SQL
 * text under src/ that is built with `${…}` or `+` is listed with the exact
 * expression it splices in, and each of those is a reviewed identifier from a
 * fixed list, a placeholder list or a clamped integer (a new one fails here
 * until it is reviewed). Then the doors themselves: hostile CLI arguments and
 * IdP-provided values (quotes, backticks, comment markers) are stored or
 * looked up literally, and nothing else in the database changes.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';
import { startDaemon } from '../../src/cli/serve.js';
import { insertAppPassword, writeIdpSettings } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { snapshot } from '../helpers/admin.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import { seedTemplates } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SQL = /\b(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP|WHERE|VALUES|LIMIT|OFFSET|ORDER BY|GET_LOCK|RELEASE_LOCK|IS_USED_LOCK)\b/;

/**
 * Reviewed splices: file → expressions. Each is either a constant column list, an identifier from a fixed
 * list (validated or literal), a list of `?` placeholders, or an integer clamped with Math.floor/min/max.
 */
const REVIEWED: Record<string, string[]> = {
  'src/cli/demo.ts': [
    'parsed.database', // parseDatabaseUrl allows [A-Za-z0-9_$-]{1,64} only, inside backticks
    'where', // error messages that suggest CREATE DATABASE, not SQL
    'code',
  ],
  // Fix hints (GRANT …, CREATE DATABASE …) in doctor output for the operator to read, never executed.
  'src/cli/doctor-checks.ts': ['c.database.user', 'c.database.database', 'config.database.database', 'config.database.user'],
  'src/db/idp-settings.ts': ["keys.map(() => '?').join(',')"],
  'src/db/advisory-lock.ts': ['name'], // an error message that mentions GET_LOCK, not SQL
  'src/db/app-passwords.ts': ['COLUMNS', "opts.activeOnly ? ' AND active = 1' : ''"],
  'src/db/credentials.ts': ['SELECT', "usernames.map(() => '?').join(', ')"],
  'src/db/mailbox-companions.ts': [
    'table', // 'quota2' | 'quota2replica' from a literal array
    'cols.map((c) => `\\`${c}\\``).join(\', \')', // user_acl columns: /^[a-z_]+$/ checked, from a fixed key list
    'c',
    "cols.map(() => '?').join(', ')",
    'cols.map((c) => `\\`${c}\\` = VALUES(\\`${c}\\`)`).join(\', \')',
  ],
  // ALTER TABLE … ADD COLUMN from the constant ADDED_COLUMNS list in schema.ts (mailcow's newer columns).
  'src/db/migrate.ts': ['a.table', 'a.column', 'a.definition', "afterOk ? ` AFTER \\`${a.after}\\`` : ''", 'a.after'],
  'src/db/mailboxes.ts': [
    'MAILBOX_COLUMNS',
    "where.join(' AND ')", // fixed 'm.col = ?' fragments
    'Math.max(0, Math.floor(f.limit))',
    'Math.max(0, Math.floor(f.offset))',
    "sets.join(', ')", // fixed 'col = ?' fragments
    'DOMAIN_COLUMNS',
    "entries.map(([k]) => `${k} = ?`).join(', ')", // keys checked against a fixed allow-list first
    'k',
    "notResourceSql('kind')", // a literal column name into a constant REGEXP condition
  ],
  'src/db/sasl-log.ts': ["entries.map(() => \"(?, ?, ?, ?, CONVERT_TZ(?, '+00:00', @@session.time_zone))\").join(', ')"],
  'src/db/sync-mailboxes.ts': [
    'SYNC_MARKER.by', // constant JSON path keys (an `as const` object)
    'SYNC_MARKER.at',
    'SYNC_MARKER.activeBefore',
    "notResourceSql('kind')", // a literal column name into a constant REGEXP condition
    'STATE_COLUMNS', "usernames.map(() => '?').join(',')", "domains.map(() => '?').join(',')", "after === null ? '' : ' AND username > ?'", 'n'],
  'src/db/sync-runs.ts': ['COLUMNS', "SUCCESSFUL_SYNC_STATUSES.map(() => '?').join(', ')", 'n'],
  'src/db/templates.ts': ['COLUMNS'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every `${expr}` spliced into a template whose text looks like SQL, and every SQL literal joined with `+` to a non-literal. */
function splices(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const literalText = (n: ts.Node): string | null => (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) ? n.text : null);
  const visit = (n: ts.Node): void => {
    if (ts.isTemplateExpression(n)) {
      const text = [n.head.text, ...n.templateSpans.map((s) => s.literal.text)].join(' ');
      if (SQL.test(text)) for (const span of n.templateSpans) out.push(span.expression.getText(sf));
    }
    if (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken) {
      const [l, r] = [n.left, n.right];
      const lt = literalText(l);
      const rt = literalText(r);
      if ((lt !== null && SQL.test(lt) && rt === null && !ts.isTemplateExpression(r) && !ts.isParenthesizedExpression(r)) || (rt !== null && SQL.test(rt) && lt === null && !ts.isTemplateExpression(l) && !ts.isBinaryExpression(l))) {
        out.push(`+ ${(lt === null ? l : r).getText(sf)}`);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

t.test('every expression spliced into SQL under src/ is a reviewed identifier, placeholder list or clamped integer', async (t) => {
  const found: Record<string, string[]> = {};
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const s = splices(file);
    if (s.length > 0) found[relative(ROOT, file)] = [...new Set(s)];
  }
  for (const [file, exprs] of Object.entries(found)) {
    const reviewed = new Set(REVIEWED[file] ?? []);
    for (const e of exprs) t.ok(reviewed.has(e), `${file}: \${${e}} is reviewed`);
  }
  // The audit sees what it should: a known splice and a known placeholder list.
  t.ok(found['src/db/credentials.ts']?.includes("usernames.map(() => '?').join(', ')"), 'control: the audit finds splices');

  // The one place the splice set comes from data (user_acl columns) is validated before use.
  const companions = readFileSync(join(ROOT, 'src/db/mailbox-companions.ts'), 'utf8');
  t.match(companions, /if \(!\/\^\[a-z_\]\+\$\/\.test\(c\)\) throw/, 'user_acl column names are checked against /^[a-z_]+$/');
  const mailboxes = readFileSync(join(ROOT, 'src/db/mailboxes.ts'), 'utf8');
  t.match(mailboxes, /if \(!allowed\.has\(k\)\) throw/, 'domain columns are checked against the allow-list');
  // Driver: no multiple statements, so even a mistake could not chain a second statement.
  t.match(readFileSync(join(ROOT, 'src/db/pool.ts'), 'utf8'), /multipleStatements: false/);
});

t.test('hostile CLI arguments are stored or looked up literally; nothing else changes', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const aliceHash = await hash('SSHA256', 'alice-pw');
  await seedMailbox(tdb, 'alice@example.org', aliceHash);
  const config = configFile(t, { database: { url: tdb.url }, auth: { bcrypt_cost: 4 } });
  const run = (argv: string[], stdin?: string) => cli(['--config', config, '--yes', ...argv], stdin === undefined ? {} : { stdin });
  const count = async (table: string): Promise<number> => Number((await tdb.sql<{ n: number }>(`SELECT COUNT(*) AS n FROM \`${table}\``))[0]?.n);

  // Valid RFC 5322 local parts that carry SQL metacharacters: created and found verbatim.
  for (const user of ["o'hara@example.org", "x'||'1'='1@example.org", 'a`b@example.org', "z'--@example.org", 'p%_q@example.org']) {
    const add = await run(['mailbox', 'add', user, '--password-stdin', '--name', "Robert'); DROP TABLE mailbox;-- `x`"], 'pw-123456\n');
    t.equal(add.code, 0, `add ${user}: ${add.stderr}`);
    const rows = await tdb.sql<{ username: string; name: string }>('SELECT username, name FROM mailbox WHERE username = ?', [user]);
    t.same(rows.map((r) => [r.username, r.name]), [[user, "Robert'); DROP TABLE mailbox;-- `x`"]], `${user}: stored literally`);
    const show = await run(['--json', 'mailbox', 'show', user]);
    t.match(show.json(), { username: user }, `${user}: shown`);
  }
  const before = await snapshot(tdb);
  // Look-ups and changes aimed at alice through metacharacters: none may touch her.
  const probes: string[][] = [
    ['mailbox', 'show', "alice@example.org' OR '1'='1"],
    ['mailbox', 'show', "x'||'1'='1@example.org'--"],
    ['mailbox', 'passwd', "nobody'or'1'='1@example.org", '--password-stdin'],
    ['mailbox', 'edit', "nobody'or'1'='1@example.org", '--name', 'owned'],
    ['mailbox', 'delete', "nobody'or'1'='1@example.org"],
    ['mailbox', 'list', '--domain', "example.org' OR '1'='1"],
    ['mailbox', 'set-authsource', "nobody'or'1'='1@example.org", 'keycloak'],
    ['app-password', 'list', "nobody'or'1'='1@example.org"],
    ['app-password', 'delete', 'alice@example.org', '1 OR 1=1'],
    ['domain', 'show', "example.org' OR '1'='1"],
    ['domain', 'delete', "x' OR '1'='1.org"],
    ['template', 'show', "Default' OR '1'='1"],
    ['template', 'delete', "x' OR '1'='1"],
  ];
  for (const argv of probes) {
    const r = await run(argv, 'owned-pw-123\n');
    t.not(r.code, 0, `${argv.join(' ')}: refused or not found (exit ${r.code})`);
  }
  t.same(await snapshot(tdb), before, 'no row changed by any probe');

  // Names that are accepted as data: stored and read back verbatim, in the tables they belong to.
  const evilTemplate = "Evil`; DROP TABLE mailbox; -- '\"";
  t.equal((await run(['template', 'add', evilTemplate, '--set', 'quota=0'])).code, 0, 'template with backticks and quotes');
  t.same((await tdb.sql<{ template: string }>('SELECT template FROM templates WHERE template = ?', [evilTemplate])).map((r) => r.template), [evilTemplate]);
  t.equal((await run(['template', 'show', evilTemplate])).code, 0, 'and found by its name');
  const app = await run(['app-password', 'add', "o'hara@example.org", '--name', "n'); DELETE FROM app_passwd;--"]);
  t.equal(app.code, 0, app.stderr);
  t.same((await tdb.sql<{ name: string }>('SELECT name FROM app_passwd')).map((r) => r.name), ["n'); DELETE FROM app_passwd;--"]);
  t.equal((await run(['idp', 'map', 'add', "staff'); DROP TABLE mailbox;--", evilTemplate])).code, 0, 'IdP mapping value with SQL');
  const map = await run(['--json', 'idp', 'map', 'list']);
  t.match(JSON.stringify(map.json()), "staff'); DROP TABLE mailbox;--");
  t.equal(await count('mailbox'), 6, 'the mailbox table is intact: alice and the five created above');
  t.same((await tdb.sql<{ password: string }>('SELECT password FROM mailbox WHERE username = ?', ['alice@example.org']))[0]?.password, aliceHash, "alice's hash is untouched");
});

t.test('IdP-provided values (emails with quotes, template values with backticks) reach the database only as data', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  await seedMailbox(tdb, 'alice@example.org', await hash('SSHA256', 'alice-pw'));
  const pw = await hash('SSHA256', 'idp-pw-123');
  const kc = await startKeycloakDouble({
    users: [
      { username: 'obrien', email: "o'brien@example.org", enabled: true, attributes: { mailcow_password: [pw], mailcow_template: ['staff'] } },
      { username: 'tick', email: 'tick`s@example.org', enabled: true, attributes: { mailcow_password: [pw], mailcow_template: ["staff' OR '1'='1"] } },
      { username: 'sneaky', email: "sneaky@example.org' OR '1'='1", enabled: true, attributes: { mailcow_password: [pw], mailcow_template: ['staff'] } },
    ],
  });
  t.teardown(() => kc.close());
  await writeIdpSettings(tdb.db, {
    authsource: 'keycloak', server_url: kc.serverUrl, realm: kc.realm, client_id: 'mailauth', client_secret: 'kc-secret',
    mailpassword_flow: '1', login_provisioning: '1', periodic_sync: '0', import_users: '0', sync_interval: '15', ignore_ssl_error: '0',
    mappers: JSON.stringify(['staff']), templates: JSON.stringify(['Staff']), default_template: '',
  });
  await insertAppPassword(tdb.db, { name: 'x', mailbox: 'alice@example.org', domain: 'example.org', password: pw, access: { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 } });
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' }, login_log: { enabled: false } });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const login = async (user: string): Promise<Record<string, unknown>> => {
    const res = await fetch(`${daemon.addresses[0]?.url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password: 'idp-pw-123', service: 'imap' }) });
    return (await res.json()) as Record<string, unknown>;
  };
  t.match(await login("o'brien@example.org"), { result: 'ok', user: "o'brien@example.org" }, 'provisioned with the quote in the address');
  t.same((await tdb.sql<{ username: string; authsource: string }>('SELECT username, authsource FROM mailbox WHERE username = ?', ["o'brien@example.org"])).map((r) => [r.username, r.authsource]), [["o'brien@example.org", 'keycloak']]);
  t.not((await login('tick`s@example.org')).result, 'ok', 'a template value with SQL is just an unmapped value');
  t.same(await tdb.sql('SELECT username FROM mailbox WHERE username = ?', ['tick`s@example.org']), [], 'nothing provisioned for it');
  t.not((await login("sneaky@example.org' OR '1'='1")).result, 'ok', 'an email with SQL is not a login name');
  t.same((await tdb.sql<{ username: string }>('SELECT username FROM mailbox ORDER BY username')).map((r) => r.username), ['alice@example.org', "o'brien@example.org"], 'exactly one mailbox added');
});
