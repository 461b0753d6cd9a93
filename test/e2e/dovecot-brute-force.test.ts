/**
 * Issue 17 end to end on Dovecot 2.3 and 2.4: the real daemon (startDaemon, with
 * its throttle) behind a private Dovecot (lua/mailauth.lua, auth cache on, TTL
 * one hour), on a real MariaDB test database.
 *
 * - 1,000 wrong IMAP guesses from one address are throttled (and cost no hash)
 *   while a valid login from another address gets in at once;
 * - spraying 500 mailboxes from one address is throttled;
 * - Dovecot's auth-policy client talks to POST /v1/policy: a blocked address is
 *   refused by Dovecot before any passdb lookup, a backing-off one is tarpitted;
 * - after `mailauth app-password delete` and `mailbox edit --active 0` the old
 *   password fails on the next IMAP login although Dovecot had it cached for an
 *   hour, and the disabled mailbox's open IMAP session is closed (doveadm kick) —
 *   through doveadm's protocol (tcp://), the HTTP API (2.3) and the local command,
 *   each on its own; 2.4's HTTP API kicks, and its flush is reported, never sent
 *   (it kills 2.4's doveadm-server: src/dovecot/doveadm.ts).
 *
 * The mass guesses go through Dovecot's auth-client socket (the protocol imap-login
 * speaks to Dovecot's auth process; an IMAP connection per guess would spend the
 * test's time forking imap-login processes), the rest through IMAP. Dovecot's own
 * anvil penalty is switched off (anvil-auth-penalty mode 0, and no-penalty on the
 * socket), so what slows the attacker here is mailauth alone.
 */
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { startDaemon } from '../../src/cli/serve.js';
import { insertAppPassword } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { cli, configFile } from '../helpers/cli.js';
import { createTestDatabase, seedDomain, seedMailbox, testConfig } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { DOVECOT_VERSIONS, freePort, randomClientIp, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import { docBlock } from '../helpers/doc-blocks.js';
import { openAuthClient } from '../../bench/lib/auth-client.js';
import { pool } from '../../bench/lib/pool.js';
import type { DovecotInstance, DovecotVersion } from '../helpers/dovecot.js';

const TOKEN = 'brute-force-e2e-token-0123456789';
const DOVEADM_KEY = 'doveadm-api-key-e2e-0123456789';
const DOVEADM_PASSWORD = 'doveadm-password-e2e-9876543210';
const OK = /^l OK .*Logged in/;
const REFUSED = /^l NO \[AUTHENTICATIONFAILED\]/;
const SPRAY_USERS = 500;
const GUESSES = 1000;
/** Guesses in flight at once on Dovecot's auth-client socket (what imap-login speaks to the auth process). */
const CONCURRENCY = 100;
const NO_ANVIL_PENALTY = 'service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n';

const PW = {
  alice: 'alice-Brute-1',
  bob: 'bob-Brute-2',
  frank: 'frank-Brute-3',
  frankApp: 'frank-app-password-XYZ',
  gina: 'gina-Brute-4',
  hank: 'hank-Brute-5',
} as const;

async function seed(tdb: TestDatabase): Promise<void> {
  await seedDomain(tdb, 'example.org', { mailboxes: 1000 });
  const cost = { bcryptCost: 4 };
  await seedMailbox(tdb, 'alice@example.org', await hash('BLF-CRYPT', PW.alice, cost));
  await seedMailbox(tdb, 'bob@example.org', await hash('BLF-CRYPT', PW.bob, cost));
  await seedMailbox(tdb, 'frank@example.org', await hash('BLF-CRYPT', PW.frank, cost));
  await seedMailbox(tdb, 'gina@example.org', await hash('BLF-CRYPT', PW.gina, cost));
  await seedMailbox(tdb, 'hank@example.org', await hash('BLF-CRYPT', PW.hank, cost));
  const spray = await hash('SSHA256', 'a-real-password');
  const values = Array.from({ length: SPRAY_USERS }, (_, i) => `s${i}@example.org`);
  for (let i = 0; i < values.length; i += 100) {
    await Promise.all(values.slice(i, i + 100).map((u) => seedMailbox(tdb, u, spray)));
  }
}

async function daemon(t: Test, tdb: TestDatabase, throttle: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mat-bf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o644 });
  const config = testConfig(tdb, { listen: { address: '127.0.0.1:0', token_file: tokenFile }, login_log: { enabled: false }, throttle });
  const d = await startDaemon(config, { db: tdb.db, logger: silentLogger() });
  t.teardown(() => d.stop());
  return { d, url: d.addresses[0]?.url ?? '', tokenFile };
}

/** An IMAP session that stays logged in; `closed` settles when the server ends it. */
function openImap(port: number, user: string, password: string): Promise<{ closed: Promise<string>; end(): void }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.setEncoding('utf8');
    let buf = '';
    let loggedIn = false;
    let closedResolve: (s: string) => void = () => undefined;
    const closed = new Promise<string>((r) => (closedResolve = r));
    sock.on('data', (c: string) => {
      buf += c;
      if (!loggedIn && /^\* OK/m.test(buf) && !buf.includes('l LOGIN')) {
        buf += 'l LOGIN';
        sock.write(`i ID ("x-originating-ip" "${randomClientIp()}")\r\nl LOGIN "${user}" "${password}"\r\n`);
      }
      if (!loggedIn && /^l OK/m.test(buf)) {
        loggedIn = true;
        resolve({ closed, end: () => sock.destroy() });
      } else if (!loggedIn && /^l NO/m.test(buf)) reject(new Error(`login refused: ${buf}`));
    });
    sock.on('close', () => closedResolve(buf));
    sock.on('error', (e) => (loggedIn ? undefined : reject(e)));
  });
}

async function scenario(t: Test, tdb: TestDatabase, version: DovecotVersion): Promise<void> {
  const { d, url, tokenFile } = await daemon(t, tdb);
  const doveadmPort = await freePort();
  const doveadmTcpPort = await freePort();
  const dv: DovecotInstance = await startDovecot(t, {
    version,
    lua: { url, tokenFile: '' },
    cacheSize: '1M',
    cacheTtl: '1 hour',
    cacheNegativeTtl: '1 hour',
    workers: 8,
    authSocket: true,
    // doveadm's HTTP API and protocol listeners as docs/dovecot.md gives them (on loopback: the instance has listen = 127.0.0.1).
    extraConfig:
      NO_ANVIL_PENALTY +
      docBlock('dovecot-doveadm-remote')
        .replace('DOVEADM_API_KEY', DOVEADM_KEY)
        .replace('DOVEADM_PASSWORD', DOVEADM_PASSWORD)
        .replace('port = 8080', `port = ${doveadmPort}`)
        .replace('port = 2425', `port = ${doveadmTcpPort}`),
  });
  const auth = await openAuthClient(dv.authSocketPath ?? '');
  t.teardown(() => auth.close());
  // The Lua settings want the token file where Dovecot can read it (inside the 2.4 root).
  writeFileSync(dv.luaConfigPath, `url = ${url}\ntoken_file = ${dv.importFile(tokenFile, 'token')}\n`);

  await t.test('1,000 wrong guesses from one address: throttled, no hash for the refused ones; another address gets in at once', async (t) => {
    const attacker = randomClientIp();
    // Alice's phone has logged in before: her address is familiar.
    const aliceHome = randomClientIp();
    t.match(await dv.imapLogin('alice@example.org', PW.alice, { remoteIp: aliceHome }), OK);
    await dv.flushCache();
    const verifyBefore = d.caches.verify.stats();
    const stats0 = d.throttle.stats();
    let legit = 0;
    let legitAnswer = '';
    const attack = pool(GUESSES, CONCURRENCY, async (i) => {
      if (i === GUESSES / 2) {
        // Halfway through the attack, bob logs in from his own address.
        // Timed on Dovecot's auth socket (an IMAP connection adds an imap-login fork, which on a
        // loaded 2-core CI machine says more about the machine than about the throttle).
        const bobAuth = await openAuthClient(dv.authSocketPath ?? '');
        const started = Date.now();
        const a = await bobAuth.auth('bob@example.org', PW.bob, 'imap', randomClientIp());
        legit = Date.now() - started;
        bobAuth.close();
        legitAnswer = a.ok ? 'l OK Logged in (auth socket)' : a.line;
      }
      return auth.auth('alice@example.org', `guess-${i}`, 'imap', attacker);
    });
    const answers = await attack;
    t.equal(answers.filter((a) => !a.ok && /^FAIL\t/.test(a.line)).length, GUESSES, 'every guess refused');
    const s = d.throttle.stats();
    const decided = s.failures - stats0.failures;
    const refused = s.refused.ip_user + s.refused.ip + s.refused.user - (stats0.refused.ip_user + stats0.refused.ip + stats0.refused.user);
    t.ok(decided <= 5 + 1 + CONCURRENCY, `at most free + 1 + one wave in flight were decided (${decided})`);
    // Every guess that reached mailauth was either decided or refused (2.4 answers a few guesses itself,
    // e.g. from its negative cache, so the sum may be a little short of 1,000; never more).
    t.ok(decided + refused <= GUESSES && decided + refused >= GUESSES - 50, `the other ${refused} were refused by the throttle (${decided} + ${refused} reached mailauth)`);
    const v = d.caches.verify.stats();
    t.equal(v.hits + v.misses - (verifyBefore.hits + verifyBefore.misses), decided + 1, 'hash work only for the decided guesses (+ bob): a refused guess costs none');
    t.match(legitAnswer, OK, 'bob got in during the attack');
    // Refused guesses are answered in microseconds and hold no auth worker, so bob does not queue behind
    // them; the bound leaves room for a loaded 2-core CI machine forking imap-login.
    t.ok(legit < 2000, `at once (${legit} ms)`);
    t.match(await dv.imapLogin('bob@example.org', PW.bob, { remoteIp: randomClientIp() }), OK, 'and over IMAP');
    t.match(await dv.imapLogin('alice@example.org', PW.alice, { remoteIp: attacker }), REFUSED, "alice's right password from the attacker's address is refused unverified");
    t.match(await dv.imapLogin('alice@example.org', PW.alice, { remoteIp: aliceHome }), OK, 'alice from her usual address gets in at once (familiar: the mailbox counter does not apply)');
  });

  await t.test(`spraying ${SPRAY_USERS} mailboxes from one address is throttled`, async (t) => {
    const sprayer = randomClientIp();
    const before = d.throttle.stats();
    const answers = await pool(SPRAY_USERS, CONCURRENCY, (i) => auth.auth(`s${i}@example.org`, 'Winter2026!', 'imap', sprayer));
    t.equal(answers.filter((a) => !a.ok).length, SPRAY_USERS);
    const s = d.throttle.stats();
    const decided = s.failures - before.failures;
    t.ok(decided <= 20 + 1 + CONCURRENCY, `at most ip.free + 1 + one wave decided (${decided}); ${SPRAY_USERS - decided} refused unverified`);
    t.ok(s.refused.ip - before.refused.ip >= SPRAY_USERS - decided, 'by the address counter');
    t.match(await dv.imapLogin('s499@example.org', 'a-real-password', { remoteIp: sprayer }), REFUSED, 'even a right password from the sprayer');
    t.match(await dv.imapLogin('s499@example.org', 'a-real-password', { remoteIp: randomClientIp() }), OK, 'from elsewhere it works');
  });

  await t.test('offboarding: app-password delete and mailbox disable take effect at once, with a one-hour auth cache', async (t) => {
    const [file, args] = dv.command('doveadm', []);
    const keyDir = mkdtempSync(join(tmpdir(), 'mat-bf-key-'));
    t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
    writeFileSync(join(keyDir, 'doveadm.key'), DOVEADM_KEY, { mode: 0o600 });
    writeFileSync(join(keyDir, 'doveadm.pass'), DOVEADM_PASSWORD, { mode: 0o600 });
    // Each route on its own, so a login refused afterwards is that route's doing.
    const command = { name: `dovecot-${version}`, doveadm: [file, ...args].join(' '), config: dv.inside(dv.configPath) };
    const httpApi = { name: `http-${version}`, url: `http://127.0.0.1:${doveadmPort}/doveadm/v1`, api_key_file: join(keyDir, 'doveadm.key') };
    const httpBasic = { name: `http-basic-${version}`, url: `http://127.0.0.1:${doveadmPort}/doveadm/v1`, password_file: join(keyDir, 'doveadm.pass') };
    const tcp = { name: `tcp-${version}`, url: `tcp://127.0.0.1:${doveadmTcpPort}`, password_file: join(keyDir, 'doveadm.pass') };
    const via = (...hosts: object[]) => configFile(t, { database: { url: tdb.url }, dovecot: { notify: true, hosts } });
    const appId = await insertAppPassword(tdb.db, {
      name: 'phone',
      mailbox: 'frank@example.org',
      domain: 'example.org',
      password: await hash('BLF-CRYPT', PW.frankApp, { bcryptCost: 4 }),
      access: { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 },
    });
    const ip = randomClientIp();
    t.match(await dv.imapLogin('frank@example.org', PW.frankApp, { remoteIp: ip }), OK, 'the app password works (and is now in Dovecot\'s cache)');
    // Control: a change behind mailauth's back is not seen through Dovecot's cache for an hour.
    await tdb.db.exec('UPDATE app_passwd SET active = 0 WHERE id = ?', [appId]);
    t.match(await dv.imapLogin('frank@example.org', PW.frankApp, { remoteIp: ip }), OK, 'control: deactivated in SQL only, Dovecot still accepts it from its cache');
    await tdb.db.exec('UPDATE app_passwd SET active = 1 WHERE id = ?', [appId]);

    const del = await cli(['--config', via(tcp), 'app-password', 'delete', 'frank@example.org', String(appId)]);
    t.equal(del.code, 0, del.stderr);
    t.equal(del.stderr, '', "no warning: Dovecot was told through doveadm's protocol (tcp://)");
    t.match(await dv.imapLogin('frank@example.org', PW.frankApp, { remoteIp: ip }), REFUSED, 'after app-password delete the old password fails on the next login');
    t.match(await dv.imapLogin('frank@example.org', PW.frank, { remoteIp: ip }), OK, "frank's own password still works");

    // Disable with an open session: 2.3 through the HTTP API alone, 2.4 through tcp:// alone (2.4's HTTP API cannot flush, below).
    const route = version === '2.3' ? httpApi : tcp;
    const session = await openImap(dv.imapPort, 'gina@example.org', PW.gina);
    t.match(await dv.imapLogin('gina@example.org', PW.gina, { remoteIp: ip }), OK, 'gina is logged in (and cached)');
    const off = await cli(['--config', via(route), 'mailbox', 'edit', 'gina@example.org', '--active', '0']);
    t.equal(off.code, 0, off.stderr);
    t.equal(off.stderr, '', `no warning: told through ${route.name}`);
    const closedBy = await Promise.race([session.closed, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
    session.end();
    t.not(closedBy, 'still open', 'her open IMAP session was closed');
    t.match(closedBy, /BYE/, 'with a BYE from Dovecot');
    t.match(await dv.imapLogin('gina@example.org', PW.gina, { remoteIp: ip }), REFUSED, 'and her cached password fails on the next login');

    // The local command alone: hank's open session is closed ("receive only" may not log in).
    const hankSession = await openImap(dv.imapPort, 'hank@example.org', PW.hank);
    const recv = await cli(['--config', via(command), 'mailbox', 'edit', 'hank@example.org', '--active', '2']);
    t.equal(recv.code, 0, recv.stderr);
    t.equal(recv.stderr, '', 'no warning: told through the local doveadm');
    const hankClosed = await Promise.race([hankSession.closed, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
    hankSession.end();
    t.match(hankClosed, /BYE/, 'the local doveadm kicked his session');
    const idle = await cli(['--config', via(command, tcp), 'mailbox', 'edit', 'hank@example.org', '--active', '0']);
    t.equal(idle.code, 0, idle.stderr);
    t.equal(idle.stderr, '', 'kicking a user with no open session is not a failure (2.3 doveadm exits 68, -NOTFOUND over tcp://)');
    await tdb.db.exec("UPDATE mailbox SET active = 1 WHERE username = 'hank@example.org'");

    if (version === '2.3') {
      const basic = await cli(['--config', via(httpBasic), 'mailbox', 'passwd', 'hank@example.org', '--password-stdin'], { stdin: `${PW.hank}\n` });
      t.equal(basic.code, 0);
      t.equal(basic.stderr, '', 'the HTTP API with doveadm_password (Basic) works too');
      const wrongKey = configFile(t, { database: { url: tdb.url }, dovecot: { notify: true, hosts: [{ name: 'wrong-key', url: `http://127.0.0.1:${doveadmPort}/doveadm/v1`, api_key_file: join(keyDir, 'wrong.key') }] } });
      writeFileSync(join(keyDir, 'wrong.key'), 'not-the-key-0123456789');
      const refused = await cli(['--config', wrongKey, 'mailbox', 'passwd', 'hank@example.org', '--password-stdin'], { stdin: `${PW.hank}\n` });
      t.equal(refused.code, 0);
      t.match(refused.stderr, /Dovecot wrong-key was not told .*refused the API key/, 'a wrong API key is reported');
      t.notMatch(refused.stderr, /not-the-key|DOVEADM|doveadm-api-key-e2e/, 'and the key is not');
    } else {
      // 2.4's HTTP API: the kick goes through; the flush is not sent (it would kill doveadm-server) but reported.
      const bobSession = await openImap(dv.imapPort, 'bob@example.org', PW.bob);
      const http24 = await cli(['--config', via(httpApi), 'mailbox', 'edit', 'bob@example.org', '--active', '0']);
      t.equal(http24.code, 0, 'the change itself is made');
      t.match(http24.stderr, /Dovecot http-2\.4 was not told to forget bob@example\.org: Dovecot 2\.4's doveadm HTTP API cannot flush the auth cache .*tcp:\/\//, 'the flush is reported as not possible, with the fix');
      t.notMatch(http24.stderr, /not told to disconnect/, 'the kick was not a failure');
      const bobClosed = await Promise.race([bobSession.closed, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
      bobSession.end();
      t.match(bobClosed, /BYE/, "the HTTP API's kick closed his session");
      t.notMatch(dv.log(), /Panic|killed with signal|Missing user parameter/, "no doveadm-server died in Dovecot's log");
      const pendingHttp = await tdb.sql<{ host: string; action: string }>('SELECT host, action FROM mailauth_dovecot_pending');
      t.same(pendingHttp, [{ host: 'http-2.4', action: 'flush' }], 'the flush waits as pending (doctor shows it)');
      await tdb.db.exec("UPDATE mailbox SET active = 1 WHERE username = 'bob@example.org'");
      await dv.flushCache();
    }
    const wrongPassword = configFile(t, { database: { url: tdb.url }, dovecot: { notify: true, hosts: [{ name: 'wrong-password', url: `tcp://127.0.0.1:${doveadmTcpPort}`, password_file: join(keyDir, 'wrong.pass') }] } });
    writeFileSync(join(keyDir, 'wrong.pass'), 'not-the-password-0123');
    const refusedTcp = await cli(['--config', wrongPassword, 'mailbox', 'passwd', 'hank@example.org', '--password-stdin'], { stdin: `${PW.hank}\n` });
    t.equal(refusedTcp.code, 0);
    t.match(refusedTcp.stderr, /Dovecot wrong-password was not told .*refused the password; check doveadm_password/, 'a wrong doveadm password is reported');
    t.notMatch(refusedTcp.stderr, /not-the-password|doveadm-password-e2e/, 'and the password is not');
    await tdb.db.exec('DELETE FROM mailauth_dovecot_pending');

    // An unreachable Dovecot: the change is made, a warning, a pending retry that doctor can show.
    const broken = configFile(t, { database: { url: tdb.url }, dovecot: { notify: true, hosts: [{ name: 'gone', doveadm: '/nonexistent/doveadm' }] } });
    const pw = await cli(['--config', broken, 'mailbox', 'passwd', 'hank@example.org', '--password-stdin'], { stdin: 'a-new-Password-9\n' });
    t.equal(pw.code, 0, 'the password change itself succeeds');
    t.match(pw.stderr, /warning: Dovecot gone was not told to forget hank@example\.org/);
    const pending = await tdb.sql<{ host: string; username: string; action: string }>('SELECT host, username, action FROM mailauth_dovecot_pending');
    t.same(pending, [{ host: 'gone', username: 'hank@example.org', action: 'flush' }], 'kept for a retry');
    const doctor = await cli(['--config', broken, '--json', 'doctor', '--no-dovecot', '--no-idp', '--service-user', 'root']);
    const check = doctor.json<{ checks: { id: string; status: string; title: string; detail?: string }[] }>().checks.find((c) => c.id === 'dovecot-notify');
    t.match(check, { status: 'warn', title: /1 Dovecot notification\(s\) pending/, detail: /gone: auth cache flush hank@example\.org/ }, 'mailauth doctor shows it');

    // The next version's run starts from the same rows.
    await tdb.db.exec('DELETE FROM mailauth_dovecot_pending');
    await tdb.db.exec("UPDATE mailbox SET active = 1 WHERE username = 'gina@example.org'");
    await tdb.db.exec('UPDATE mailbox SET password = ? WHERE username = ?', [await hash('BLF-CRYPT', PW.hank, { bcryptCost: 4 }), 'hank@example.org']);
  });
}

async function policyScenario(t: Test, tdb: TestDatabase, version: DovecotVersion): Promise<void> {
  // A short back-off so the tarpit is measurable, a low block so the refusal comes quickly.
  const { d, url, tokenFile } = await daemon(t, tdb, {
    backoff_base: '2s',
    backoff_max: '2s',
    ip: { free: 3, block_after: 6, block_for: '5m', forget_one_every: '1h' },
    ip_user: { free: 50, block_after: 100 },
  });
  const dv = await startDovecot(t, {
    version,
    lua: { url, tokenFile: '' },
    // The blocks docs/dovecot.md documents, with this daemon's address and token.
    extraConfig:
      NO_ANVIL_PENALTY +
      docBlock('dovecot-policy').replace('http://127.0.0.1:9082', url).replace('MAILAUTH_LISTEN_TOKEN', TOKEN) +
      docBlock(version === '2.3' ? 'dovecot23-policy-attributes' : 'dovecot24-policy-attributes'),
  });
  writeFileSync(dv.luaConfigPath, `url = ${url}\ntoken_file = ${dv.importFile(tokenFile, 'token')}\n`);
  const metric = async (re: RegExp): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`, { headers: { 'x-mailauth-token': TOKEN } })).text();
    return Number(re.exec(text)?.[1] ?? 0);
  };
  const ip = randomClientIp();
  for (let i = 0; i < 3; i++) t.match(await dv.imapLogin(`s${i}@example.org`, 'Spring2026!', { remoteIp: ip }), REFUSED);
  t.ok((await metric(/^mailauth_requests_total\{endpoint="policy",result="allowed"\} (\d+)$/m)) >= 3, 'Dovecot asked the policy endpoint');
  t.equal(await metric(/^mailauth_throttle_counted_total\{scope="ip"\} (\d+)$/m), 3, "each failure counted once (the report of a session the passdb counted is skipped)");
  // The 4th failure starts a 2 s back-off: the next attempt is tarpitted by Dovecot, not refused.
  t.match(await dv.imapLogin('s3@example.org', 'Spring2026!', { remoteIp: ip }), REFUSED);
  const started = Date.now();
  t.match(await dv.imapLogin('s4@example.org', 'a-real-password', { remoteIp: ip }), OK, 'a right password after the tarpit gets in');
  const waited = Date.now() - started;
  t.ok(waited >= 1500, `Dovecot held the login for the tarpit (${waited} ms)`);
  t.ok((await metric(/^mailauth_requests_total\{endpoint="policy",result="tarpit"\} (\d+)$/m)) >= 1, 'the policy answered a tarpit');
  for (let i = 5; i < 7; i++) {
    await new Promise((r) => setTimeout(r, 2100));
    await dv.imapLogin(`s${i}@example.org`, 'Spring2026!', { remoteIp: ip });
  }
  const passdbBefore = await metric(/^mailauth_requests_total\{endpoint="passdb",result="password_mismatch"\} (\d+)$/m);
  t.match(await dv.imapLogin('s9@example.org', 'a-real-password', { remoteIp: ip }), /^l NO \[ALERT\] Too many failed logins, try again later\./, 'blocked: refused, with the policy\'s message');
  t.equal(await metric(/^mailauth_requests_total\{endpoint="passdb",result="password_mismatch"\} (\d+)$/m), passdbBefore, 'by Dovecot, without a passdb lookup');
  t.ok((await metric(/^mailauth_requests_total\{endpoint="policy",result="refused"\} (\d+)$/m)) >= 1, 'the policy answered a refusal');
  t.match(await dv.waitForLog(/policy server refusal/i), /policy server refusal/i, "Dovecot's log says why");
  t.ok(d.throttle.stats().blocks.ip >= 1);
}

// Two Dovecot versions × (1,000 + 500 IMAP logins, offboarding, policy): about a minute each here.
t.setTimeout(10 * 60_000);
const tdb = await createTestDatabase(t);
await seed(tdb);
for (const version of DOVECOT_VERSIONS) {
  await t.test(`Dovecot ${version}`, async (t) => {
    if (!requireDovecot(t, version)) return;
    await t.test('throttling and offboarding', (t) => scenario(t, tdb, version));
    await t.test('auth-policy endpoint', (t) => policyScenario(t, tdb, version));
  });
}
