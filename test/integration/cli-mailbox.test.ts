/** `mailauth mailbox …` in-process on the real MariaDB: every subcommand, every refusal, no secret in any output. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { runCli } from '../../src/cli/main.js';
import { verify } from '../../src/passwords/index.js';
import { cliFor, snapshot } from '../helpers/admin.js';
import type { Cli } from '../helpers/admin.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

const MIB = 1024 * 1024;
const PW = 'Tr0ub4dor&3-horse';

async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ tdb: TestDatabase; cli: Cli }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org', { mailboxes: 10, defquota: 1024, maxquota: 4096, quota: 8192 });
  return { tdb, cli: cliFor(t, tdb) };
}

async function storedHash(tdb: TestDatabase, user: string): Promise<string> {
  const [row] = await tdb.sql<{ password: string }>('SELECT password FROM mailbox WHERE username = ?', [user]);
  return String(row?.password);
}

t.test('add: password from stdin, from a pipe, from -p; hashed with the configured scheme', async (t) => {
  const { tdb, cli } = await setup(t);
  const a = await cli(['mailbox', 'add', 'Alice@Example.org', '--name', 'Alice Liddell', '--password-stdin'], { stdin: `${PW}\nignored second line\n` });
  t.equal(a.code, 0, a.stderr);
  t.match(a.stdout, /^created mailbox alice@example\.org\nname:\s+Alice Liddell\ntemplate:\s+Default\nquota:\s+1024 MiB\nauthsource:\s+mailcow\nactive:\s+yes\n$/);
  const hashA = await storedHash(tdb, 'alice@example.org');
  t.match(hashA, /^\{BLF-CRYPT\}\$2y\$04\$/, 'auth.default_scheme with auth.bcrypt_cost');
  t.match(await verify(hashA, PW), { outcome: 'match' });

  const b = await cli(['--json', 'mailbox', 'add', 'bob@example.org', '--quota', '2048'], { stdin: `${PW}\n` });
  t.equal(b.code, 0, b.stderr);
  t.match(b.json(), { action: 'created', username: 'bob@example.org', quotaBytes: 2048 * MIB, template: 'Default', authsource: 'mailcow' });
  t.match(await verify(await storedHash(tdb, 'bob@example.org'), PW), { outcome: 'match' }, 'a pipe without the flag works too');

  const c = await cli(['mailbox', 'add', 'carol@example.org', '-p', PW]);
  t.equal(c.code, 0, c.stderr);
  t.match(await verify(await storedHash(tdb, 'carol@example.org'), PW), { outcome: 'match' });

  for (const out of [a, b, c]) {
    t.notOk(out.stdout.includes(PW) || out.stderr.includes(PW), 'the password is in no output');
    t.notOk(out.stdout.includes('$2y$'), 'nor its hash');
  }
  t.same(await tdb.sql('SELECT address, goto FROM alias ORDER BY address'), [
    { address: 'alice@example.org', goto: 'alice@example.org' },
    { address: 'bob@example.org', goto: 'bob@example.org' },
    { address: 'carol@example.org', goto: 'carol@example.org' },
  ]);
});

t.test('add: the prompt does not echo and asks twice', async (t) => {
  const { tdb, cli } = await setup(t);
  // A fake terminal: raw mode on, keystrokes arrive as two lines.
  const run = async (first: string, second: string) => {
    let stdout = '';
    let stderr = '';
    const stdin = Readable.from([Buffer.from(`${first}\r`), Buffer.from(`${second}\r`)]) as Readable & { isTTY?: boolean; setRawMode?: (b: boolean) => unknown };
    stdin.isTTY = true;
    const modes: boolean[] = [];
    stdin.setRawMode = (b: boolean) => modes.push(b);
    const dir = mkdtempSync(join(tmpdir(), 'mailauth-cli-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, `database:\n  url: ${JSON.stringify(tdb.url)}\nauth:\n  bcrypt_cost: 4\nlog:\n  level: silent\n`);
    const code = await runCli(['--config', file, 'mailbox', 'add', 'dora@example.org'], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      stdin,
      env: {},
      stdoutIsTTY: false,
    });
    return { code, stdout, stderr, modes };
  };
  const mismatch = await run(PW, `${PW}x`);
  t.equal(mismatch.code, 1);
  t.match(mismatch.stderr, /New password: \nRetype: \nmailauth: the two entries differ/);
  t.same(await tdb.sql("SELECT * FROM mailbox WHERE username = 'dora@example.org'"), []);
  const ok = await run(PW, PW);
  t.equal(ok.code, 0, ok.stderr);
  t.same(ok.modes, [true, false, true, false], 'raw (no-echo) mode on for each entry, then off');
  t.notOk(ok.stderr.includes(PW) || ok.stdout.includes(PW), 'nothing echoed');
  t.match(await verify(await storedHash(tdb, 'dora@example.org'), PW), { outcome: 'match' });
});

t.test('add: IdP mailboxes have no password', async (t) => {
  const { tdb, cli } = await setup(t);
  const r = await cli(['--json', 'mailbox', 'add', 'kc@example.org', '--authsource', 'keycloak']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json(), { action: 'created', authsource: 'keycloak' });
  t.equal(await storedHash(tdb, 'kc@example.org'), '');
  const before = await snapshot(tdb);
  const withPw = await cli(['mailbox', 'add', 'kc2@example.org', '--authsource', 'keycloak', '-p', 'x']);
  t.equal(withPw.code, 2);
  t.match(withPw.stderr, /has no local password; drop -p/);
  t.equal((await cli(['mailbox', 'add', 'kc3@example.org', '--authsource', 'nis'])).code, 2);
  t.same(await snapshot(tdb), before);
});

t.test('add: every refusal exits non-zero and changes no row', async (t) => {
  const { tdb, cli } = await setup(t);
  await seedDomain(tdb, 'off.example', { active: 0 });
  await seedDomain(tdb, 'full.example', { mailboxes: 1 });
  await seedMailbox(tdb, 'taken@example.org', '{PLAIN}x', { quota: 4096 * MIB });
  await seedMailbox(tdb, 'one@full.example', '{PLAIN}x');
  await seedMailbox(tdb, 'big@example.org', '{PLAIN}x', { quota: 1024 * MIB });
  const before = await snapshot(tdb);
  const cases: [string[], number, string | null, RegExp][] = [
    [['nobody@missing.example'], 1, 'domain_missing', /domain missing\.example does not exist/],
    [['x@off.example'], 1, 'domain_inactive', /domain off\.example is not active/],
    [['taken@example.org'], 1, 'mailbox_exists', /already exists/],
    [['new@example.org', '--template', 'Nope'], 1, 'template_missing', /template "Nope" does not exist/],
    [['new@example.org', '--quota', '5000'], 1, 'quota_exceeds_max', /exceeds the maximum per mailbox of domain example\.org \(4096 MiB\)/],
    [['new@example.org', '--quota', '4096'], 1, 'domain_quota_exceeded', /3072 MiB of 8192 MiB left/],
    [['two@full.example'], 1, 'mailbox_count_exceeded', /already has 1 of at most 1 mailboxes/],
    [['not-an-address'], 2, null, /not an email address/],
    [['new@example.org', '--quota', '-1'], 2, null, /--quota must be an integer/],
  ];
  for (const [args, code, refused, message] of cases) {
    const r = await cli(['--json', 'mailbox', 'add', ...args, '--password-stdin'], { stdin: `${PW}\n` });
    t.equal(r.code, code, args.join(' '));
    t.match(r.stderr, message, args.join(' '));
    if (refused) t.match(r.json(), { error: message, data: { refused } }, `${args.join(' ')}: JSON`);
  }
  const empty = await cli(['mailbox', 'add', 'new@example.org', '--password-stdin'], { stdin: '\n' });
  t.equal(empty.code, 2);
  t.match(empty.stderr, /empty password/);
  const both = await cli(['mailbox', 'add', 'new@example.org', '--password-stdin', '-p', 'x'], { stdin: 'y\n' });
  t.equal(both.code, 2);
  t.same(await snapshot(tdb), before, 'no row changed');
});

t.test('list filters by domain, authsource and state; show never prints the hash', async (t) => {
  const { tdb, cli } = await setup(t);
  await seedDomain(tdb, 'other.example');
  await seedMailbox(tdb, 'a@example.org', '{SSHA256}abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ', { name: 'A' });
  await seedMailbox(tdb, 'b@example.org', '', { authsource: 'keycloak', active: 0 });
  await seedMailbox(tdb, 'c@other.example', '', { authsource: 'generic-oidc', active: 2 });
  await seedMailbox(tdb, 'room@example.org', '', { kind: 'location' });
  await seedMailbox(tdb, 'hall@example.org', '', { kind: 'Location' });
  const names = async (...args: string[]) => ((await cli(['--json', 'mailbox', 'list', ...args])).json() as { username: string }[]).map((m) => m.username);
  t.same(await names(), ['a@example.org', 'b@example.org', 'c@other.example'], 'resources excluded');
  t.same(await names('--domain', 'Example.ORG'), ['a@example.org', 'b@example.org']);
  t.same(await names('--authsource', 'keycloak'), ['b@example.org']);
  t.same(await names('--active'), ['a@example.org']);
  t.same(await names('--inactive'), ['b@example.org']);
  t.same(await names('--receive-only'), ['c@other.example']);
  t.same(await names('--domain', 'other.example', '--authsource', 'keycloak'), []);
  t.equal((await cli(['mailbox', 'list', '--active', '--inactive'])).code, 2);
  const human = await cli(['mailbox', 'list']);
  t.match(human.stdout, /^USERNAME\s+NAME\s+AUTHSOURCE\s+ACTIVE\s+QUOTA\s+PASSWORD\n/);
  t.match(human.stdout, /a@example\.org\s+A\s+mailcow\s+yes\s+unlimited\s+SSHA256/);
  t.match(human.stdout, /b@example\.org\s+b\s+keycloak\s+no\s+unlimited\s+none/);
  t.match(human.stdout, /c@other\.example\s+c\s+generic-oidc\s+receive only/);

  for (const json of [false, true]) {
    const show = await cli([...(json ? ['--json'] : []), 'mailbox', 'show', 'a@example.org']);
    t.equal(show.code, 0);
    t.notOk(show.stdout.includes('abcdefghijklmnop'), 'no hash in show output');
    if (json) t.match(show.json(), { username: 'a@example.org', passwordScheme: 'SSHA256', appPasswords: 0, attributes: { imap_access: '1' } });
    else t.match(show.stdout, /password:\s+\{SSHA256\} hash/);
  }
  const missing = await cli(['mailbox', 'show', 'zed@example.org']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /mailbox zed@example\.org does not exist/);
});

t.test('edit: name, quota, active, template re-apply; refusals change nothing', async (t) => {
  const { tdb, cli } = await setup(t);
  t.equal((await cli(['mailbox', 'add', 'alice@example.org', '-p', PW])).code, 0);
  const e = await cli(['mailbox', 'edit', 'alice@example.org', '--name', 'Alice', '--quota', '2048', '--active', '2']);
  t.equal(e.code, 0, e.stderr);
  t.match(e.stdout, /updated mailbox alice@example\.org \(name, active, quota\)/);
  t.match(await tdb.sql("SELECT name, quota, active FROM mailbox WHERE username = 'alice@example.org'"), [{ name: 'Alice', quota: 2048 * MIB, active: 2 }]);
  t.match(await tdb.sql("SELECT active FROM alias WHERE address = 'alice@example.org'"), [{ active: 2 }]);

  const before = await snapshot(tdb);
  const refusals: [string[], number, RegExp][] = [
    [['--quota', '4097'], 1, /exceeds the maximum per mailbox/],
    [['--active', '3'], 2, /--active must be one of 0, 1, 2/],
    [['--template', 'Nope'], 1, /template "Nope" does not exist/],
    [[], 2, /nothing to change/],
    [['--force-template'], 2, /--force-template needs --template/],
  ];
  for (const [args, code, message] of refusals) {
    const r = await cli(['mailbox', 'edit', 'alice@example.org', ...args]);
    t.equal(r.code, code, args.join(' '));
    t.match(r.stderr, message);
  }
  t.equal((await cli(['mailbox', 'edit', 'nobody@example.org', '--name', 'x'])).code, 1);
  t.same(await snapshot(tdb), before, 'no row changed');

  const same = await cli(['--json', 'mailbox', 'edit', 'alice@example.org', '--template', 'Default', '--name', 'Alice', '--quota', '2048']);
  t.equal(same.code, 0, same.stderr);
  t.match(same.json(), { action: 'unchanged', changed: [] }, 'same template, same name: nothing written');
  t.equal((await cli(['template', 'edit', 'Default', '--set', 'pop3_access=0'])).code, 0);
  const applied = await cli(['--json', 'mailbox', 'edit', 'alice@example.org', '--template', 'Default', '--active', '1']);
  t.equal(applied.code, 0, applied.stderr);
  t.match(applied.json(), { action: 'updated', changed: ['template', 'active'], mailbox: { active: 1, attributes: { pop3_access: '0' }, quotaBytes: 1024 * MIB } });
  const over = await cli(['mailbox', 'edit', 'alice@example.org', '--template', 'Default', '--force-template', '--quota', '9000']);
  t.equal(over.code, 1);
});

t.test('passwd and set-authsource: the hash survives a round trip through keycloak', async (t) => {
  const { tdb, cli } = await setup(t);
  t.equal((await cli(['mailbox', 'add', 'alice@example.org', '-p', PW])).code, 0);
  const original = await storedHash(tdb, 'alice@example.org');

  const kc = await cli(['mailbox', 'set-authsource', 'alice@example.org', 'keycloak']);
  t.equal(kc.code, 0, kc.stderr);
  t.equal(kc.stdout, 'authsource of alice@example.org: mailcow → keycloak\n');
  t.equal(await storedHash(tdb, 'alice@example.org'), original, 'hash kept while on keycloak');
  const back = await cli(['--json', 'mailbox', 'set-authsource', 'alice@example.org', 'mailcow']);
  t.equal(back.code, 0, back.stderr);
  t.match(back.json(), { action: 'updated', previous: 'keycloak', authsource: 'mailcow', hasPassword: true });
  t.equal(await storedHash(tdb, 'alice@example.org'), original, 'switching back reuses the old password hash');
  t.match(await verify(original, PW), { outcome: 'match' });
  const again = await cli(['mailbox', 'set-authsource', 'alice@example.org', 'mailcow']);
  t.match(again.stdout, /already mailcow/);
  t.equal((await cli(['mailbox', 'set-authsource', 'alice@example.org', 'nis'])).code, 2);
  t.equal((await cli(['mailbox', 'set-authsource', 'nobody@example.org', 'mailcow'])).code, 1);

  const [{ attributes: before } = { attributes: null }] = await tdb.sql<{ attributes: unknown }>("SELECT attributes FROM mailbox WHERE username = 'alice@example.org'");
  const pw = await cli(['mailbox', 'passwd', 'alice@example.org', '--password-stdin'], { stdin: 'n3w-Passw0rd!\n' });
  t.equal(pw.code, 0, pw.stderr);
  t.equal(pw.stdout, 'password of alice@example.org set ({BLF-CRYPT})\n');
  const changed = await storedHash(tdb, 'alice@example.org');
  t.not(changed, original);
  t.match(await verify(changed, 'n3w-Passw0rd!'), { outcome: 'match' });
  const [{ attributes: after } = { attributes: null }] = await tdb.sql<{ attributes: unknown }>("SELECT attributes FROM mailbox WHERE username = 'alice@example.org'");
  t.match(after, { passwd_update: /^\d{4}-/ });
  t.ok(before, 'attributes present');

  await seedMailbox(tdb, 'kc@example.org', '', { authsource: 'keycloak' });
  const idp = await cli(['mailbox', 'passwd', 'kc@example.org', '-p', 'fallback-pw']);
  t.equal(idp.code, 0, idp.stderr);
  t.match(idp.stderr, /authenticates with keycloak; this password applies after set-authsource kc@example\.org mailcow/);
  const warn = await cli(['mailbox', 'set-authsource', 'kc@example.org', 'mailcow']);
  t.notOk(/no local password/.test(warn.stderr));
  await seedMailbox(tdb, 'bare@example.org', '', { authsource: 'keycloak' });
  t.match((await cli(['mailbox', 'set-authsource', 'bare@example.org', 'mailcow'])).stderr, /has no local password; set one with mailauth mailbox passwd/);

  const before2 = await snapshot(tdb);
  t.equal((await cli(['mailbox', 'passwd', 'nobody@example.org', '-p', 'x'])).code, 1);
  t.equal((await cli(['mailbox', 'passwd', 'alice@example.org', '--password-stdin'], { stdin: '' })).code, 2);
  // Issue 16: BLF-CRYPT would ignore everything past byte 72; refused (auth.bcrypt_long_password: refuse).
  const long = await cli(['mailbox', 'passwd', 'alice@example.org', '--password-stdin'], { stdin: `${'L'.repeat(80)}\n` });
  t.equal(long.code, 2, 'a 80-byte password for BLF-CRYPT is refused');
  t.match(long.stderr, /first 72 bytes/);
  t.same(await snapshot(tdb), before2);
});

t.test('delete needs confirmation and removes the mailbox rows', async (t) => {
  const { tdb, cli } = await setup(t);
  t.equal((await cli(['mailbox', 'add', 'alice@example.org', '-p', PW])).code, 0);
  t.equal((await cli(['app-password', 'add', 'alice@example.org', '--name', 'Phone'])).code, 0);
  const before = await snapshot(tdb);
  const refused = await cli(['mailbox', 'delete', 'alice@example.org']);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /Delete mailbox alice@example\.org and its app passwords\? — refusing without confirmation; pass --yes/);
  t.same(await snapshot(tdb), before);
  const del = await cli(['--yes', 'mailbox', 'delete', 'alice@example.org']);
  t.equal(del.code, 0, del.stderr);
  t.equal(del.stdout, 'deleted mailbox alice@example.org\n');
  for (const table of ['mailbox', 'alias', 'quota2', 'quota2replica', 'user_acl', 'app_passwd']) {
    t.same(await tdb.sql(`SELECT * FROM \`${table}\``), [], `${table} empty`);
  }
  t.equal((await cli(['--yes', 'mailbox', 'delete', 'alice@example.org'])).code, 1);
});

t.test('--help has examples', async (t) => {
  const tdb = await createTestDatabase(t, { migrate: false });
  const cli = cliFor(t, tdb);
  for (const sub of [[], ['add'], ['list'], ['show'], ['edit'], ['delete'], ['passwd'], ['set-authsource']]) {
    const r = await cli(['mailbox', ...sub, '--help']);
    t.equal(r.code, 0);
    t.match(r.stdout, /Example/, `mailbox ${sub.join(' ')} --help`);
  }
});
