/**
 * Issue 16: `mailauth doctor` lists the stored hashes whose work is above
 * auth.hash_limits (mailbox passwords and app passwords), which the daemon
 * refuses to verify, against a real MariaDB database: human and --json output,
 * the batches it reads in, what is in use and what not, the fix, and that no
 * hash is ever printed. The daemon, asked about the same rows, agrees.
 */
import t from 'tap';
import { hashLimitChecks, scanHashLimits } from '../../src/cli/doctor-hashes.js';
import { startDaemon } from '../../src/cli/serve.js';
import { insertAppPassword } from '../../src/db/index.js';
import type { Queryable } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

interface Check {
  id: string;
  status: string;
  title: string;
  detail?: string;
  fix?: string;
  items?: { mailbox: string; appPassword?: number; scheme: string; unused: string | null; over: { limit: string; what: string; value: number; max: number; unit: string; raisable: boolean }[] }[];
}

const NO_ACCESS_CHANGE = { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 };

/** Stored values: real hashes with their work fields raised (doctor and the daemon only read the fields). */
async function values(): Promise<Record<string, string>> {
  const bcrypt = await hash('BLF-CRYPT', 'pw-bcrypt', { bcryptCost: 4 });
  const sha = await hash('SHA512-CRYPT', 'pw-sha');
  return {
    bcryptOk: bcrypt,
    bcrypt14: bcrypt.replace('$04$', '$14$'),
    bcrypt19: bcrypt.replace('$04$', '$19$'),
    sha200k: sha.replace('$6$', '$6$rounds=200000$'),
    argon: '{ARGON2ID}$argon2id$v=19$m=524288,t=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g',
    pbkdf2: '{PBKDF2}$1$c2FsdHNhbHQ$2000000$0123456789abcdef0123456789abcdef01234567',
    ssha: await hash('SSHA256', 'pw-ssha'),
  };
}

async function world(t: { teardown(fn: () => unknown): void }): Promise<{ tdb: TestDatabase; v: Record<string, string>; appIds: Record<string, number> }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const v = await values();
  await seedMailbox(tdb, 'fine@example.org', v.bcryptOk as string);
  await seedMailbox(tdb, 'cheap@example.org', v.ssha as string);
  await seedMailbox(tdb, 'bcrypt@example.org', v.bcrypt14 as string);
  await seedMailbox(tdb, 'huge@example.org', v.bcrypt19 as string);
  await seedMailbox(tdb, 'sha@example.org', v.sha200k as string);
  await seedMailbox(tdb, 'argon@example.org', v.argon as string);
  await seedMailbox(tdb, 'pbkdf2@example.org', v.pbkdf2 as string);
  await seedMailbox(tdb, 'gone@example.org', v.bcrypt14 as string, { active: 0 });
  await seedMailbox(tdb, 'kc@example.org', v.sha200k as string, { authsource: 'keycloak' });
  await seedMailbox(tdb, 'idp@example.org', '', { authsource: 'keycloak' });
  const appIds: Record<string, number> = {};
  const app = async (key: string, mailbox: string, password: string, active = 1): Promise<void> => {
    appIds[key] = await insertAppPassword(tdb.db, { name: key, mailbox, domain: 'example.org', password, access: NO_ACCESS_CHANGE, active });
  };
  await app('phone', 'fine@example.org', v.argon as string);
  await app('old', 'fine@example.org', v.bcrypt14 as string, 0);
  await app('ok', 'fine@example.org', v.ssha as string);
  return { tdb, v, appIds };
}

t.test('the scan: every over-limit hash with its parameters, in use or why not, whatever the batch size', async (t) => {
  const { tdb, appIds } = await world(t);
  const config = testConfig(tdb);
  const scan = await scanHashLimits(tdb.db, config.auth.hashLimits);
  t.equal(scan.mailboxes, 9, 'nine mailboxes with a hash (the IdP one has none)');
  t.equal(scan.appPasswords, 3);
  const by = Object.fromEntries(scan.findings.map((f) => [`${f.mailbox}${f.appPassword === undefined ? '' : `#${f.appPassword}`}`, f]));
  t.same(Object.keys(by).sort(), ['argon@example.org', 'bcrypt@example.org', `fine@example.org#${appIds.old}`, `fine@example.org#${appIds.phone}`, 'gone@example.org', 'huge@example.org', 'kc@example.org', 'pbkdf2@example.org', 'sha@example.org'].sort());
  t.same(by['bcrypt@example.org'], { mailbox: 'bcrypt@example.org', scheme: 'BLF-CRYPT', unused: null, over: [{ limit: 'bcrypt_cost', what: 'bcrypt cost', value: 14, max: 13, unit: '', raisable: true }] });
  t.match(by['huge@example.org'], { unused: null, over: [{ limit: 'bcrypt_cost', value: 19, raisable: false }] }, 'cost 19: no limit can allow it');
  t.match(by['sha@example.org'], { scheme: 'SHA512-CRYPT', over: [{ limit: 'sha_crypt_rounds', value: 200_000, max: 100_000 }] });
  t.match(by['pbkdf2@example.org'], { scheme: 'PBKDF2', over: [{ limit: 'pbkdf2_iterations', value: 2_000_000, max: 1_000_000 }] });
  t.match(
    by['argon@example.org'],
    { scheme: 'ARGON2ID', over: [{ limit: 'argon2_memory_kib', value: 524_288, unit: ' KiB' }, { limit: 'argon2_time_cost', value: 8, max: 4 }] },
    'argon2: memory and time both listed',
  );
  t.match(by[`fine@example.org#${appIds.phone}`], { appPassword: appIds.phone, unused: null }, 'an active app password is in use');
  t.match(by[`fine@example.org#${appIds.old}`], { unused: 'app password inactive' });
  t.match(by['gone@example.org'], { unused: 'mailbox inactive' });
  t.match(by['kc@example.org'], { unused: /authsource keycloak/ });
  t.equal(scan.inUse, 6);

  // Bounded batches: the same findings two rows at a time, in ceil((rows + 1) / 2) queries per table.
  let queries = 0;
  const counting: Queryable = { ...tdb.db, rows: (sql, params) => (queries++, tdb.db.rows(sql, params)) };
  const small = await scanHashLimits(counting, config.auth.hashLimits, 2);
  t.same(small.findings, scan.findings, 'batch 2: the same findings');
  t.equal(queries, 5 + 2, `${queries} queries of at most two rows (mailbox 9 rows, app_passwd 3)`);

  // Raised limits: those findings go.
  const raised = testConfig(tdb, { auth: { hash_limits: { bcrypt_cost: 14, sha_crypt_rounds: 200_000 } } });
  const after = await scanHashLimits(tdb.db, raised.auth.hashLimits);
  t.notOk(after.findings.some((f) => f.mailbox === 'bcrypt@example.org' || f.mailbox === 'sha@example.org'), 'bcrypt 14 and 200,000 rounds now allowed');
  t.ok(after.findings.some((f) => f.mailbox === 'huge@example.org'), 'cost 19 still listed');
});

t.test('doctor --json and human output: the check, its fix, no hash printed; the daemon agrees', async (t) => {
  const { tdb, v, appIds } = await world(t);
  const cfg = configFile(t, { database: { url: tdb.url } });
  const json = await cli(['--config', cfg, '--json', 'doctor', '--no-dovecot', '--no-idp', '--timeout', '2000']);
  const report = json.json<{ ok: boolean; checks: Check[] }>();
  const c = report.checks.find((x) => x.id === 'hash-limits');
  t.match(c, { status: 'fail', title: /9 above auth\.hash_limits; 6 of them in use/ }, 'fails: logins that always fail');
  t.equal(report.ok, false);
  t.equal(c?.items?.length, 9, 'every finding in items');
  t.match(c?.items?.find((i) => i.appPassword === appIds.phone), { mailbox: 'fine@example.org', scheme: 'ARGON2ID', unused: null });
  t.match(c?.fix, /mailauth mailbox passwd USER/);
  t.match(c?.fix, /mailauth app-password delete USER ID, then mailauth app-password add USER/);
  t.match(c?.fix, /knowingly, raise .*auth\.hash_limits\.bcrypt_cost: 14,/, 'raise bcrypt_cost to the highest cost found that a limit may allow (14, not 19)');
  t.match(c?.fix, /auth\.hash_limits\.sha_crypt_rounds: 200000/);
  t.match(c?.fix, /auth\.hash_limits\.argon2_memory_kib: 524288, auth\.hash_limits\.argon2_time_cost: 8/);

  const human = await cli(['--config', cfg, 'doctor', '--no-dovecot', '--no-idp', '--timeout', '2000']);
  t.equal(human.code, 1, 'exit 1');
  t.match(human.stdout, /✗ stored hashes: 9 above auth\.hash_limits/);
  t.match(human.stdout, 'bcrypt@example.org: {BLF-CRYPT} bcrypt cost 14 > auth.hash_limits.bcrypt_cost 13');
  t.match(human.stdout, 'huge@example.org: {BLF-CRYPT} bcrypt cost 19 > auth.hash_limits.bcrypt_cost 13 (above what any limit allows)');
  t.match(human.stdout, `fine@example.org app password ${appIds.phone}: {ARGON2ID} argon2 memory 524288 KiB > auth.hash_limits.argon2_memory_kib 262144 KiB, argon2 time cost 8 > auth.hash_limits.argon2_time_cost 4`);
  t.match(human.stdout, 'gone@example.org: {BLF-CRYPT} bcrypt cost 14 > auth.hash_limits.bcrypt_cost 13 — not used at login now: mailbox inactive');
  t.match(human.stdout, '9 mailbox and 3 app-password hash(es) read');
  for (const [name, value] of Object.entries(v)) {
    // The part after the parameters (salt and digest) is what must never be printed.
    const secretPart = value.slice(-20);
    t.notOk(human.stdout.includes(secretPart) || json.stdout.includes(secretPart), `no part of the ${name} hash in either output`);
  }

  // The daemon refuses exactly the hashes in use that doctor lists; a hash under the limits logs in.
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' }, login_log: { enabled: false }, throttle: { enabled: false } });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url as string;
  const ask = async (user: string, password: string): Promise<string> => {
    const res = await fetch(`${url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password, service: 'imap', remote_ip: '192.0.2.5' }) });
    return ((await res.json()) as { result: string }).result;
  };
  t.equal(await ask('fine@example.org', 'pw-bcrypt'), 'ok', 'under the limits: ok');
  for (const user of ['bcrypt', 'huge', 'sha', 'argon', 'pbkdf2']) t.equal(await ask(`${user}@example.org`, 'pw-bcrypt'), 'internal_failure', `${user}: listed by doctor, refused by the daemon`);
});

t.test('pass with none; warn when only unused hashes are above', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  const config = testConfig(tdb);
  t.same(await hashLimitChecks(config, tdb.db), [{ id: 'hash-limits', status: 'pass', title: 'stored hashes: none above auth.hash_limits (0 mailbox and 0 app-password hash(es) read)' }], 'empty tables: pass');
  const v = await values();
  await seedMailbox(tdb, 'fine@example.org', v.bcryptOk as string);
  t.match(await hashLimitChecks(config, tdb.db), [{ status: 'pass', title: /none above .*1 mailbox and 0 app-password/ }]);
  await seedMailbox(tdb, 'receive@example.org', v.argon as string, { active: 2 });
  const [w] = await hashLimitChecks(config, tdb.db);
  t.match(w, { id: 'hash-limits', status: 'warn', title: 'stored hashes: 1 above auth.hash_limits, none used at login now', detail: /receive@example\.org: \{ARGON2ID\} .* not used at login now: mailbox active = 2/ });
});
