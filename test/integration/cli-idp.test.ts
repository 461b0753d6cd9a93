/**
 * `mailauth idp …` in-process on a real MariaDB database, against the Keycloak
 * double and a real oidc-provider for the network parts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { hash } from '../../src/passwords/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { KeycloakDouble } from '../helpers/keycloak-double.js';
import { startOidcOp } from '../helpers/oidc-op.js';

const SECRET = 'kc-secret';

interface Env {
  tdb: TestDatabase;
  config: string;
  secretFile: string;
  run: (argv: string[], stdin?: string) => ReturnType<typeof cli>;
  rows: () => Promise<Record<string, string>>;
}

async function env(tt: Parameters<typeof createTestDatabase>[0]): Promise<Env> {
  const tdb = await createTestDatabase(tt);
  const config = configFile(tt, { database: { url: tdb.url }, idp: { timeout: '2s', retries: 0, retry_backoff: '10ms' } });
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-idp-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${SECRET}\n`);
  chmodSync(secretFile, 0o600);
  return {
    tdb,
    config,
    secretFile,
    run: (argv, stdin) => cli(['--config', config, ...argv], stdin === undefined ? {} : { stdin }),
    rows: async () => Object.fromEntries((await tdb.sql<{ key: string; value: string }>('SELECT `key`, `value` FROM identity_provider')).map((r) => [r.key, r.value])),
  };
}

async function double(tt: { teardown(fn: () => unknown): void }): Promise<KeycloakDouble> {
  const stored = await hash('BLF-CRYPT', 'alice-pw', { bcryptCost: 4 });
  const kc = await startKeycloakDouble({
    users: [{ username: 'alice', email: 'alice@example.org', attributes: { mailcow_template: ['staff'], mailcow_password: [stored] } }],
  });
  tt.teardown(() => kc.close());
  return kc;
}

const kcArgs = (e: Env, serverUrl: string): string[] => ['idp', 'set', 'keycloak', '--server-url', serverUrl, '--realm', 'mail', '--client-id', 'mailauth', '--client-secret-file', e.secretFile];

t.test('show with nothing configured', async (t) => {
  const e = await env(t);
  const r = await e.run(['idp', 'show']);
  t.equal(r.code, 0);
  t.match(r.stdout, /no identity provider configured/);
  t.match((await e.run(['--json', 'idp', 'show'])).json(), { configured: false });
});

t.test('set keycloak from a secret file; show masks the secret', async (t) => {
  const e = await env(t);
  const r = await e.run(kcArgs(e, 'https://kc.example.org/'));
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /saved keycloak settings/);
  const rows = await e.rows();
  t.match(rows, { authsource: 'keycloak', server_url: 'https://kc.example.org', realm: 'mail', client_id: 'mailauth', client_secret: SECRET, mailpassword_flow: '0', login_provisioning: '1', sync_interval: '15' });
  const show = await e.run(['idp', 'show']);
  t.equal(show.code, 0);
  t.notMatch(show.stdout, SECRET);
  t.match(show.stdout, /client secret:\s+\*{8}/);
  const json = await e.run(['--json', 'idp', 'show']);
  t.notMatch(json.stdout, SECRET);
  t.match(json.json(), { configured: true, valid: true, settings: { clientSecret: '********', serverUrl: 'https://kc.example.org' }, raw: { client_secret: '********' } });
});

t.test('the secret never comes from argv; stdin works', async (t) => {
  const e = await env(t);
  const bad = await e.run(['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org', '--realm', 'mail', '--client-id', 'x', '--client-secret', SECRET]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown option '--client-secret'/);
  t.same(await e.rows(), {});
  const ok = await e.run(['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org', '--realm', 'mail', '--client-id', 'x', '--client-secret-stdin'], `${SECRET}\nignored\n`);
  t.equal(ok.code, 0, ok.stderr);
  t.equal((await e.rows()).client_secret, SECRET);
  t.notMatch(ok.stdout + ok.stderr, SECRET);
});

t.test('invalid settings name the flag and change nothing', async (t) => {
  const e = await env(t);
  const cases: [string[], RegExp][] = [
    [['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org', '--client-id', 'x', '--client-secret-file', e.secretFile], /--realm: is required/],
    [['idp', 'set', 'keycloak', '--server-url', 'http://kc.example.org', '--realm', 'mail', '--client-id', 'x', '--client-secret-file', e.secretFile], /--server-url: plain http to kc\.example\.org/],
    [['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org/realms/mail', '--realm', 'mail', '--client-id', 'x', '--client-secret-file', e.secretFile], /without \/realms/],
    [['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org', '--realm', 'mail', '--client-id', 'x'], /--client-secret-file\/--client-secret-stdin: is required/],
    [['idp', 'set', 'keycloak', '--server-url', 'https://kc.example.org', '--realm', 'mail', '--client-id', 'x', '--client-secret-file', '/nonexistent'], /cannot read \/nonexistent/],
    [['idp', 'set', 'keycloak', '--sync-interval', '0'], /--sync-interval must be an integer between 1 and 10080/],
    [['idp', 'set', 'generic-oidc', '--token-url', 'https://id.example.org/token', '--userinfo-url', 'https://id.example.org/ui', '--client-id', 'x', '--client-secret-file', e.secretFile], /--authorize-url: is required/],
    [['idp', 'set', 'generic-oidc', '--issuer', 'https://id.example.org', '--token-url', 'https://id.example.org/t', '--userinfo-url', 'https://id.example.org/u', '--authorize-url', 'https://id.example.org/a', '--client-id', 'x', '--client-secret-file', e.secretFile, '--scopes', 'email profile'], /--scopes: must include "openid"/],
  ];
  for (const [argv, re] of cases) {
    const r = await e.run(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, re);
  }
  t.same(await e.rows(), {}, 'nothing written');
});

t.test('flags left out keep their stored values, the secret included', async (t) => {
  const e = await env(t);
  t.equal((await e.run(kcArgs(e, 'https://kc.example.org'))).code, 0);
  const r = await e.run(['idp', 'set', 'keycloak', '--periodic-sync', '--import-users', '--sync-interval', '30', '--no-login-provisioning']);
  t.equal(r.code, 0, r.stderr);
  t.match(await e.rows(), { client_secret: SECRET, server_url: 'https://kc.example.org', periodic_sync: '1', import_users: '1', sync_interval: '30', login_provisioning: '0' });
  t.equal((await e.run(['idp', 'set', 'keycloak', '--no-periodic-sync'])).code, 0);
  t.equal((await e.rows()).periodic_sync, '0');
});

t.test('switching the source is refused while mailboxes use the old one', async (t) => {
  const e = await env(t);
  t.equal((await e.run(kcArgs(e, 'https://kc.example.org'))).code, 0);
  await seedDomain(e.tdb, 'example.org');
  await seedMailbox(e.tdb, 'alice@example.org', '{PLAIN}x', { authsource: 'keycloak' });
  const before = await e.rows();
  const r = await e.run(['idp', 'set', 'generic-oidc', '--token-url', 'https://id.example.org/t', '--userinfo-url', 'https://id.example.org/u', '--authorize-url', 'https://id.example.org/a', '--client-id', 'x', '--client-secret-file', e.secretFile]);
  t.equal(r.code, 1);
  t.match(r.stderr, /1 mailbox uses authsource keycloak/);
  t.match(r.stderr, /mailauth mailbox list --authsource keycloak/);
  t.same(await e.rows(), before, 'nothing changed');
  await e.tdb.sql("UPDATE mailbox SET authsource = 'mailcow'");
  const ok = await e.run(['idp', 'set', 'generic-oidc', '--token-url', 'https://id.example.org/t', '--userinfo-url', 'https://id.example.org/u', '--authorize-url', 'https://id.example.org/a', '--client-id', 'x', '--client-secret-file', e.secretFile]);
  t.equal(ok.code, 0, ok.stderr);
  const rows = await e.rows();
  t.equal(rows.authsource, 'generic-oidc');
  t.notOk('server_url' in rows, 'keycloak-only keys removed');
  t.notOk('realm' in rows);
  t.equal(rows.client_scopes, 'openid profile email mailcow_template');
});

t.test('delete: confirmation, refusal while mailboxes use an IdP, then success', async (t) => {
  const e = await env(t);
  t.equal((await e.run(kcArgs(e, 'https://kc.example.org'))).code, 0);
  t.equal((await e.run(['idp', 'map', 'default', 'Default'])).code, 0);
  await seedDomain(e.tdb, 'example.org');
  await seedMailbox(e.tdb, 'a@example.org', '{PLAIN}x', { authsource: 'keycloak' });
  await seedMailbox(e.tdb, 'b@example.org', '{PLAIN}x', { authsource: 'keycloak' });
  await seedMailbox(e.tdb, 'c@example.org', '{PLAIN}x', { authsource: 'ldap' });
  await seedMailbox(e.tdb, 'd@example.org', '{PLAIN}x');
  const noYes = await e.run(['idp', 'delete']);
  t.equal(noYes.code, 2);
  t.match(noYes.stderr, /pass --yes/);
  const refused = await e.run(['--yes', 'idp', 'delete']);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /2 mailboxes use authsource keycloak \(list them with `mailauth mailbox list --authsource keycloak`\)/);
  t.match(refused.stderr, /1 mailbox uses authsource ldap/);
  t.equal((await e.rows()).authsource, 'keycloak');
  await e.tdb.sql("UPDATE mailbox SET authsource = 'mailcow'");
  const ok = await e.run(['--yes', 'idp', 'delete']);
  t.equal(ok.code, 0, ok.stderr);
  t.same(await e.rows(), {});
});

t.test('map add/list/remove/default; a missing template is refused', async (t) => {
  const e = await env(t);
  const missing = await e.run(['idp', 'map', 'add', 'staff', 'Staff']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /mailbox template "Staff" does not exist \(known: Default\)/);
  t.same(await e.rows(), {});
  await e.tdb.sql("INSERT INTO templates (template, type, attributes) VALUES ('Staff', 'mailbox', '{}')");
  t.equal((await e.run(['idp', 'map', 'add', 'staff', 'Staff'])).code, 0);
  t.equal((await e.run(['idp', 'map', 'add', 'guest', 'Default'])).code, 0);
  const re = await e.run(['idp', 'map', 'add', 'guest', 'Staff']);
  t.match(re.stdout, /mapped "guest" → Staff \(was Default\)/);
  t.match(await e.rows(), { mappers: '["staff","guest"]', templates: '["Staff","Staff"]' });
  const list = await e.run(['--json', 'idp', 'map', 'list']);
  t.match(list.json(), { mappings: [{ value: 'staff', template: 'Staff', templateExists: true }, { value: 'guest' }], default: null });
  t.equal((await e.run(['idp', 'map', 'remove', 'staff'])).code, 0);
  const gone = await e.run(['idp', 'map', 'remove', 'staff']);
  t.equal(gone.code, 1);
  t.match(gone.stderr, /"staff" is not mapped/);
  t.equal((await e.run(['idp', 'map', 'default', 'Nope'])).code, 1);
  t.equal((await e.run(['idp', 'map', 'default', 'Default'])).code, 0);
  t.equal((await e.rows()).default_template, 'Default');
  t.equal((await e.run(['idp', 'map', 'default'])).code, 2);
  t.equal((await e.run(['idp', 'map', 'default', 'Default', '--none'])).code, 2);
  t.equal((await e.run(['idp', 'map', 'default', '--none'])).code, 0);
  t.equal((await e.rows()).default_template, '');
  t.equal((await e.run(['idp', 'map', 'add', ' padded', 'Staff'])).code, 2);
  const human = await e.run(['idp', 'map', 'list']);
  t.match(human.stdout, /guest\s+Staff/);
  t.match(human.stdout, /default template: none/);
});

t.test('the mapping survives `idp set`', async (t) => {
  const e = await env(t);
  t.equal((await e.run(['idp', 'map', 'add', 'x', 'Default'])).code, 0);
  t.equal((await e.run(kcArgs(e, 'https://kc.example.org'))).code, 0);
  t.match(await e.rows(), { mappers: '["x"]', templates: '["Default"]', authsource: 'keycloak' });
});

t.test('set --test saves only when the test passes', async (t) => {
  const e = await env(t);
  const kc = await double(t);
  const wrong = join(mkdtempSync(join(tmpdir(), 'mailauth-idp-')), 'wrong');
  writeFileSync(wrong, 'not-the-secret\n');
  const bad = await e.run(['idp', 'set', 'keycloak', '--server-url', kc.serverUrl, '--realm', 'mail', '--client-id', 'mailauth', '--client-secret-file', wrong, '--test']);
  rmSync(wrong);
  t.equal(bad.code, 1);
  t.match(bad.stdout, /✗ Client credentials accepted \(client mailauth\)/);
  t.match(bad.stdout, /fix: check --client-id/);
  t.match(bad.stderr, /not saved/);
  t.same(await e.rows(), {}, 'nothing saved');
  const ok = await e.run([...kcArgs(e, kc.serverUrl), '--mailpassword-flow', '--test']);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /✓ Admin users API allowed/);
  t.match(ok.stdout, /saved keycloak settings/);
  t.equal((await e.rows()).mailpassword_flow, '1');
  const json = await e.run([...kcArgs(e, kc.serverUrl), '--test', '--json']);
  t.match(json.json(), { saved: true, checks: [{ id: 'reachable', status: 'pass' }] });
  t.notMatch(json.stdout, SECRET);
});

t.test('idp test: exit 0 when required checks pass, 1 when one fails; --user', async (t) => {
  const e = await env(t);
  const kc = await double(t);
  t.equal((await e.run([...kcArgs(e, kc.serverUrl), '--mailpassword-flow'])).code, 0);
  t.equal((await e.run(['idp', 'map', 'add', 'staff', 'Default'])).code, 0);
  const ok = await e.run(['idp', 'test', '--user', 'alice@example.org']);
  t.equal(ok.code, 0, ok.stdout);
  t.match(ok.stdout, /✓ User alice@example\.org/);
  t.match(ok.stdout, /template Default \(mapping\)/);
  t.match(ok.stdout, /password scheme BLF-CRYPT \(accepted\)/);
  t.notMatch(ok.stdout, /\$2y\$/, 'never the hash');
  t.match(ok.stdout, /^OK: /m);
  kc.removeRole('mailauth', 'view-users');
  kc.removeRole('mailauth', 'query-users');
  const fail = await e.run(['--json', 'idp', 'test']);
  t.equal(fail.code, 1);
  const body = fail.json<{ passed: boolean; checks: { id: string; status: string; fix?: string }[] }>();
  t.equal(body.passed, false);
  t.match(body.checks.find((c) => c.id === 'admin-api'), { status: 'fail', fix: /Service accounts roles → Assign role/ });
});

t.test('idp test without settings is a usage error', async (t) => {
  const e = await env(t);
  const r = await e.run(['idp', 'test']);
  t.equal(r.code, 2);
  t.match(r.stderr, /no identity provider is configured/);
});

t.test('show reports stored settings mailauth cannot use', async (t) => {
  const e = await env(t);
  await e.tdb.sql("INSERT INTO identity_provider (`key`, `value`) VALUES ('authsource', 'keycloak'), ('server_url', 'ftp://x'), ('client_secret', 'zzz-secret')");
  const r = await e.run(['idp', 'show']);
  t.equal(r.code, 0);
  t.match(r.stdout, /invalid/);
  t.match(r.stdout, /--server-url: must use https/);
  t.notMatch(r.stdout, 'zzz-secret');
  const test = await e.run(['idp', 'test']);
  t.equal(test.code, 2);
  t.match(test.stderr, /identity_provider\.realm: is required/);
});

t.test('set generic-oidc --issuer fills the endpoints from discovery', async (t) => {
  const e = await env(t);
  const op = await startOidcOp();
  t.teardown(() => op.close());
  const r = await e.run(['idp', 'set', 'generic-oidc', '--issuer', op.issuer, '--client-id', 'mailauth', '--client-secret-stdin', '--test'], 'op-secret\n');
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(await e.rows(), { authsource: 'generic-oidc', issuer: op.issuer, token_url: op.tokenUrl, userinfo_url: op.userinfoUrl, authorize_url: op.authorizeUrl, client_secret: 'op-secret' });
  const bad = await e.run(['idp', 'set', 'generic-oidc', '--issuer', `${op.url}/realms/nope`]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /discovery at .*\/realms\/nope\/\.well-known\/openid-configuration failed/);
  t.equal((await e.rows()).issuer, op.issuer, 'unchanged');
});
