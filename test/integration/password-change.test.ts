/**
 * Issue 4: with every cache on, a password changed in the database takes effect
 * on the very next login — unlike Dovecot's auth cache, which keeps accepting the
 * old password until its TTL. Same for app passwords and disabling a mailbox.
 */
import t from 'tap';
import type { Test } from 'tap';
import { startDaemon } from '../../src/cli/serve.js';
import type { Daemon } from '../../src/cli/serve.js';
import { insertAppPassword } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

const USER = 'alice@example.org';
const OLD = 'old-password-1';
const NEW = 'new-password-2';
const access = { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 };

async function start(t: Test, scheme: 'SSHA256' | 'BLF-CRYPT'): Promise<{ tdb: TestDatabase; daemon: Daemon; url: string }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, USER, await hash(scheme, OLD, { bcryptCost: 4 }));
  // Long TTLs: if anything answered from a stale entry, these tests would see it.
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0' }, cache: { account_ttl: '1h' }, login_log: { enabled: false } });
  const daemon = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => daemon.stop());
  const url = daemon.addresses[0]?.url ?? '';
  return { tdb, daemon, url };
}

async function login(url: string, password: string, service = 'imap'): Promise<string> {
  const res = await fetch(`${url}/v1/passdb`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: USER, password, service, remote_ip: '198.51.100.7' }),
  });
  return ((await res.json()) as { result: string }).result;
}

for (const scheme of ['SSHA256', 'BLF-CRYPT'] as const) {
  t.test(`${scheme}: a changed mailbox password is seen by the very next login`, async (t) => {
    const { tdb, daemon, url } = await start(t, scheme);
    t.equal(await login(url, OLD), 'ok');
    t.equal(await login(url, OLD), 'ok');
    t.equal(await login(url, NEW), 'password_mismatch');
    const { account, verify } = daemon.caches;
    t.ok(account.stats().hits >= 2, 'the account came from the cache');
    t.ok(verify.stats().hits >= 1, 'the verification came from the cache');

    await tdb.db.exec('UPDATE mailbox SET password = ? WHERE username = ?', [await hash(scheme, NEW, { bcryptCost: 4 }), USER]);
    t.equal(await login(url, OLD), 'password_mismatch', 'the old password fails at once');
    t.equal(await login(url, NEW), 'ok', 'the new one works at once');
    t.equal(await login(url, NEW), 'ok');
    t.ok(account.stats().stale >= 1, 'the cached account was found changed and reloaded');

    // And back: a password that was just refused (a cached mismatch) works once it becomes the password.
    await tdb.db.exec('UPDATE mailbox SET password = ? WHERE username = ?', [await hash(scheme, OLD, { bcryptCost: 4 }), USER]);
    t.equal(await login(url, NEW), 'password_mismatch');
    t.equal(await login(url, OLD), 'ok');
  });
}

t.test('app passwords: a deleted or restricted one stops working on the next login', async (t) => {
  const { tdb, url } = await start(t, 'SSHA256');
  const APP = 'app-password-xyz';
  const id = await insertAppPassword(tdb.db, { name: 'phone', mailbox: USER, domain: 'example.org', password: await hash('SSHA256', APP), access });
  t.equal(await login(url, APP), 'ok');
  t.equal(await login(url, APP), 'ok');
  await tdb.db.exec('UPDATE app_passwd SET imap_access = 0 WHERE id = ?', [id]);
  t.equal(await login(url, APP), 'password_mismatch', 'imap no longer allowed for it');
  t.equal(await login(url, APP, 'smtp'), 'ok', 'smtp still is');
  await tdb.db.exec('DELETE FROM app_passwd WHERE id = ?', [id]);
  t.equal(await login(url, APP, 'smtp'), 'password_mismatch', 'deleted: refused at once');
  t.equal(await login(url, OLD), 'ok', 'the mailbox password is unaffected');
});

t.test('disabling a mailbox or its domain takes effect on the next login', async (t) => {
  const { tdb, url } = await start(t, 'SSHA256');
  t.equal(await login(url, OLD), 'ok');
  await tdb.db.exec('UPDATE mailbox SET active = 0 WHERE username = ?', [USER]);
  t.equal(await login(url, OLD), 'user_disabled');
  await tdb.db.exec('UPDATE mailbox SET active = 1 WHERE username = ?', [USER]);
  t.equal(await login(url, OLD), 'ok');
  await tdb.db.exec("UPDATE domain SET active = 0 WHERE domain = 'example.org'");
  t.equal(await login(url, OLD), 'user_disabled');
  await tdb.db.exec("UPDATE domain SET active = 1 WHERE domain = 'example.org'");
  await tdb.db.exec('DELETE FROM mailbox WHERE username = ?', [USER]);
  t.equal(await login(url, OLD), 'user_unknown', 'a deleted mailbox is unknown at once');
  t.equal(await login(url, OLD), 'user_unknown');
  await seedMailbox(tdb, USER, await hash('SSHA256', NEW));
  t.equal(await login(url, NEW), 'ok', 'a mailbox created after a user_unknown answer works at once');
});

t.test('the caches hold no plaintext password', async (t) => {
  const { tdb, daemon, url } = await start(t, 'SSHA256');
  const APP = 'another-app-secret';
  await insertAppPassword(tdb.db, { name: 'laptop', mailbox: USER, domain: 'example.org', password: await hash('SSHA256', APP), access });
  for (const pw of [OLD, APP, 'a-wrong-guess']) await login(url, pw);
  const dumped = JSON.stringify({ verify: daemon.caches.verify.dump(), account: daemon.caches.account.dump() });
  t.ok(daemon.caches.verify.dump().length >= 3);
  t.ok(daemon.caches.account.dump().length === 1);
  for (const pw of [OLD, APP, 'a-wrong-guess']) {
    t.notOk(dumped.includes(pw), 'no password in the caches');
    t.notOk(dumped.includes(Buffer.from(pw).toString('base64')), 'not even encoded');
  }
});
