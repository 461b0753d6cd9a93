/**
 * Issue 16, "Show": the daemon under each attack the issue names, a bounded load on
 * loopback, with assertions on what everyone else sees:
 * - warm (cached) logins of other users keep their p99 under a bound set from a quiet
 *   run measured here first (a ratio plus a floor, so a loaded 2-core CI box passes and
 *   the seconds-long stalls of the issue do not);
 * - uncached correct logins that arrive once the attack's requests are answered get `ok`;
 * - GET /healthz answers all along;
 * - the daemon's CPU is back to idle within a second of the attack's end.
 * Each case failed on the code before issue 16 (the figures are in docs/security.md).
 * The config uses only keys older versions know, so the file can run against them.
 */
import t from 'tap';
import type { Test } from 'tap';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { client, cpuOver, get, healthProbe, percentile, sleep, startDaemon, warmLogins } from '../helpers/availability.js';
import type { Client, Daemon } from '../helpers/availability.js';
import net from 'node:net';

const DOMAIN = 'avail.example';
const pw = (name: string): string => `Right-${name}-7c1`;
const addr = (name: string): string => `${name}@${DOMAIN}`;

/** Generous on purpose: a shared 2-core box is noisy; the failures this catches are 10-100× worse. */
const RATIO = 10;
const FLOOR_MS = 150;
const HEALTH_MS = 1000;
const IDLE_CORES = 0.2;

async function seedUsers(tdb: TestDatabase, names: string[], scheme: 'BLF-CRYPT' | 'SHA512-CRYPT' | 'SSHA256', cost = 4): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const n of names) {
    await seedMailbox(tdb, addr(n), await hash(scheme, pw(n), { bcryptCost: cost }));
    out.push([addr(n), pw(n)]);
  }
  return out;
}

const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

interface Measured {
  p99: number;
  warmNotOk: string[];
  health: { worst: number; failures: number; count: number };
}

/** Runs `attack` while warm logins and /healthz are measured; resolves when the attack's requests are all answered. */
async function during(d: Daemon, warm: Client, warmUsers: Array<[string, string]>, attack: () => Promise<void>): Promise<Measured> {
  let over = false;
  const a = attack().finally(() => (over = true));
  const [w, health] = await Promise.all([warmLogins(warm, warmUsers, 4, () => over), healthProbe(d.url, 100, () => over), a]);
  return { p99: percentile(w.ms, 99), warmNotOk: w.notOk, health };
}

async function quietP99(warm: Client, warmUsers: Array<[string, string]>): Promise<number> {
  const started = performance.now();
  const w = await warmLogins(warm, warmUsers, 4, () => performance.now() - started > 2000);
  return percentile(w.ms, 99);
}

async function afterwards(t: Test, d: Daemon, fresh: Array<[string, string]>, label: string): Promise<void> {
  const c = client(d, 4);
  const answers = await Promise.all(fresh.map(([u, p]) => c.passdb(u, p).then((r) => (r.result === 'ok' ? 'ok' : r.body), (e: Error) => e.message)));
  c.close();
  t.same(answers, fresh.map(() => 'ok'), `${label}: uncached correct logins right after the attack get ok`);
  if (answers.some((a) => a !== 'ok')) t.comment(d.log().split('\n').filter((l) => /fsha|fbc|gbc|fresh/.test(l)).slice(-8).join('\n'));
  await sleep(1000);
  const cores = await cpuOver(d, 500);
  t.ok(cores < IDLE_CORES, `${label}: daemon CPU ${cores.toFixed(2)} cores one second after the attack (idle < ${IDLE_CORES})`);
}

function judge(t: Test, m: Measured, quiet: number, label: string): void {
  const bound = Math.max(quiet * RATIO, FLOOR_MS);
  t.ok(m.p99 <= bound, `${label}: warm logins of others p99 ${m.p99.toFixed(1)} ms (quiet ${quiet.toFixed(1)} ms, bound ${bound.toFixed(0)} ms)`);
  t.same(m.warmNotOk, [], `${label}: every warm login of others was ok`);
  t.equal(m.health.failures, 0, `${label}: /healthz answered all ${m.health.count} probes`);
  t.ok(m.health.worst < HEALTH_MS, `${label}: slowest /healthz ${m.health.worst.toFixed(0)} ms (< ${HEALTH_MS})`);
}

t.test('availability under hostile load (issue 16)', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, DOMAIN, { mailboxes: 10_000 });
  const warmUsers = await seedUsers(tdb, range('warm', 8), 'BLF-CRYPT', 4);
  const shaUsers = await seedUsers(tdb, range('sha', 50), 'SHA512-CRYPT');
  const bcUsers = await seedUsers(tdb, range('bc', 20), 'BLF-CRYPT', 10);
  const freshSha = await seedUsers(tdb, range('fsha', 4), 'SHA512-CRYPT');
  const freshBc = await seedUsers(tdb, range('fbc', 4), 'BLF-CRYPT', 10);
  const freshBc2 = await seedUsers(tdb, range('gbc', 4), 'BLF-CRYPT', 10);
  const duringBc = await seedUsers(tdb, range('dbc', 3), 'BLF-CRYPT', 10);
  // Cost 18 as found in the attack: never hashed here, a real one takes ~20 s to make.
  await seedMailbox(tdb, addr('costly'), '{BLF-CRYPT}$2y$18$abcdefghijklmnopqrstuu5mYxPs7cI6tTqCPDvOPhyAcS.ZDUPvW');

  const d = await startDaemon(t, tdb.url);
  const warm = client(d, 4);
  t.teardown(() => warm.close());
  for (const [u, p] of warmUsers) t.equal((await warm.passdb(u, p)).result, 'ok', `warm-up ${u}`, { diagnostic: false });
  const quiet = await quietP99(warm, warmUsers);
  t.comment(`quiet run: warm logins p99 ${quiet.toFixed(1)} ms`);

  let seq = 0;
  const guess = (): string => `wrong-guess-${++seq}-${Math.random().toString(36).slice(2)}`;

  await t.test('SHA-crypt guess flood: 64 clients, distinct wrong guesses, 4 s', async (t) => {
    const attacker = client(d, 64);
    const m = await during(d, warm, warmUsers, async () => {
      const end = performance.now() + 4000;
      await Promise.all(
        Array.from({ length: 64 }, async (_, i) => {
          while (performance.now() < end) {
            const [u] = shaUsers[(i + seq) % shaUsers.length] as [string, string];
            await attacker.passdb(u, guess(), '203.0.113.9').catch(() => undefined);
          }
        }),
      );
    });
    attacker.close();
    judge(t, m, quiet, 'SHA-crypt flood');
    await afterwards(t, d, freshSha, 'SHA-crypt flood');
  });

  await t.test('bcrypt guess flood: 450 parallel distinct wrong guesses', async (t) => {
    const attacker = client(d, 450);
    const m = await during(d, warm, warmUsers, async () => {
      await Promise.all(Array.from({ length: 450 }, (_, i) => attacker.passdb((bcUsers[i % bcUsers.length] as [string, string])[0], guess(), '203.0.113.9').catch(() => undefined)));
    });
    attacker.close();
    judge(t, m, quiet, 'bcrypt flood');
    await afterwards(t, d, freshBc, 'bcrypt flood');
  });

  await t.test('a stored cost-18 bcrypt hash and two wrong guesses', async (t) => {
    const attacker = client(d, 2);
    const others = client(d, 3);
    let othersAnswers: string[] = [];
    const m = await during(d, warm, warmUsers, async () => {
      const guesses = [attacker.passdb(addr('costly'), guess(), '203.0.113.9'), attacker.passdb(addr('costly'), guess(), '203.0.113.9')];
      await sleep(200);
      // Uncached correct logins of other users while the costly hash is being asked for.
      othersAnswers = await Promise.all(duringBc.map(([u, p]) => others.passdb(u, p).then((r) => r.result, (e: Error) => e.message)));
      const answered = await Promise.all(guesses.map((g) => g.then((r) => r.result, (e: Error) => e.message)));
      t.same(answered, ['internal_failure', 'internal_failure'], 'the costly hash is unverifiable, not a wrong password');
    });
    attacker.close();
    others.close();
    t.same(othersAnswers, duringBc.map(() => 'ok'), 'uncached correct logins of others during the attack get ok');
    judge(t, m, quiet, 'cost-18 hash');
    await afterwards(t, d, freshBc2, 'cost-18 hash');
    t.match(d.log(), /costly@avail\.example[^\n]*(cannot be verified|hash_limits)|(cannot be verified|hash_limits)[^\n]*costly@avail\.example/, 'a log line names the mailbox');
  });
});

t.test('cheap-guess cache flush (issue 16)', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, DOMAIN, { mailboxes: 10_000 });
  // The warm users here are bcrypt cost 11: a flushed entry costs a real bcrypt run again.
  const cachedUsers = await seedUsers(tdb, range('cached', 16), 'BLF-CRYPT', 11);
  const cheap = await seedUsers(tdb, ['cheap'], 'SSHA256');
  const fresh = await seedUsers(tdb, range('fresh', 2), 'BLF-CRYPT', 4);
  const d = await startDaemon(t, tdb.url, { config: { cache: { verify_entries: 2000 } } });
  const c = client(d, 4);
  t.teardown(() => c.close());
  for (const [u, p] of cachedUsers) t.equal((await c.passdb(u, p)).result, 'ok', `warm-up ${u}`, { diagnostic: false });
  // Quiet: the cached users all at once, as they come back after a pause.
  const allAtOnce = async (): Promise<{ p99: number; notOk: string[] }> => {
    const rs = await Promise.all(cachedUsers.map(([u, p]) => c.passdb(u, p)));
    return { p99: percentile(rs.map((r) => r.ms), 99), notOk: rs.filter((r) => r.result !== 'ok').map((r) => r.result) };
  };
  await allAtOnce();
  const quiet = (await allAtOnce()).p99;
  t.comment(`quiet: ${cachedUsers.length} cached users at once, p99 ${quiet.toFixed(1)} ms`);

  const attacker = client(d, 16);
  let over = false;
  const healthP = healthProbe(d.url, 100, () => over);
  let sent = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (sent < 3000) {
        sent++;
        await attacker.passdb((cheap[0] as [string, string])[0], `cheap-guess-${sent}-${Math.random()}`, '203.0.113.9').catch(() => undefined);
      }
    }),
  );
  over = true;
  attacker.close();
  const health = await healthP;
  const after = await allAtOnce();
  const bound = Math.max(quiet * RATIO, FLOOR_MS);
  t.ok(after.p99 <= bound, `cached users after 3,000 cheap guesses: p99 ${after.p99.toFixed(1)} ms (quiet ${quiet.toFixed(1)}, bound ${bound.toFixed(0)})`);
  t.same(after.notOk, [], 'and all ok');
  t.equal(health.failures, 0, `/healthz answered all ${health.count} probes`);
  await afterwards(t, d, fresh, 'cache flush');
});

t.test('idle-connection exhaustion (issue 16)', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, DOMAIN, { mailboxes: 10_000 });
  const warmUsers = await seedUsers(tdb, range('warm', 4), 'BLF-CRYPT', 4);
  const fresh = await seedUsers(tdb, range('fresh', 3), 'BLF-CRYPT', 4);
  const d = await startDaemon(t, tdb.url, { nofile: 256 });
  const warm = client(d, 4);
  t.teardown(() => warm.close());
  for (const [u, p] of warmUsers) t.equal((await warm.passdb(u, p)).result, 'ok', `warm-up ${u}`, { diagnostic: false });
  const quiet = await quietP99(warm, warmUsers);
  t.comment(`quiet run: warm logins p99 ${quiet.toFixed(1)} ms`);

  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  const newcomers: string[] = [];
  const m = await during(d, warm, warmUsers, async () => {
    // 400 keep-alive connections that asked /healthz (no token needed) and then sit idle.
    for (let i = 0; i < 400; i++) {
      const s = net.connect(d.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      sockets.push(s);
      if (i % 50 === 49) await sleep(20);
    }
    await sleep(1500);
    // New clients while they sit there.
    for (const [u, p] of fresh.slice(0, 2)) {
      const c = client(d, 1);
      newcomers.push(await c.passdb(u, p).then((r) => r.result, (e: Error) => e.message));
      c.close();
    }
    const h = await get(d.url, '/healthz', 3000).then((r) => String(r.status), (e: Error) => e.message);
    newcomers.push(h);
    await sleep(1000);
    for (const s of sockets.splice(0)) s.destroy();
  });
  t.same(newcomers, ['ok', 'ok', '200'], 'new clients are served while 400 idle connections are held');
  judge(t, m, quiet, 'idle connections');
  t.match(d.log(), /connection limit/, 'a log line says a connection limit was reached');
  const metrics = await get(d.url, '/metrics');
  t.equal(metrics.status, 401, '/metrics wants the token');
  await afterwards(t, d, fresh.slice(2), 'idle connections');
});
