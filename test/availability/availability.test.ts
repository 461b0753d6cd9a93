/**
 * Issue 16, the availability suite: the daemon as a real process under a bounded hostile
 * load on loopback, and what *other* users see meanwhile. Each case asserts, against a
 * quiet run measured in the same case:
 * - warm (cached) logins of other users keep their p99 under WARM_FACTOR × the quiet p99
 *   (at least WARM_FLOOR_MS) and are all `ok`;
 * - `/healthz` answers every probe, within HEALTH_FACTOR × its slowest quiet answer (at least
 *   HEALTH_FLOOR_MS);
 * - correct logins of users not yet cached, sent once the attack's requests are answered, get `ok`;
 * - the daemon's CPU is idle one second after the attack.
 * Every case failed on the code before issue 16. The throttle (issue 17) is off here: it is
 * the hash and connection layers that must hold, against an attacker with many addresses.
 * docs/security.md "Availability under hostile load" lists the cases; bench/availability.ts
 * prints the same figures as a table, before and after.
 */
import t from 'tap';
import type { Test } from 'tap';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { ATTACKS, get, seedAttackWorld, startDaemon } from '../helpers/availability.js';
import type { AttackReport, Daemon } from '../helpers/availability.js';

const WARM_FACTOR = 10;
// 250 ms: the rest of the suite runs beside this file in CI (two jobs on two cores) and its bursts
// reach ~150 ms on the warm logins of a quiet daemon; the attacks before issue 16 went far past it.
const WARM_FLOOR_MS = 250;
const HEALTH_FACTOR = 20;
const HEALTH_FLOOR_MS = 1000;
const IDLE_CORES = 0.2;

t.setTimeout(600_000);

async function judge(t: Test, d: Daemon, r: AttackReport): Promise<void> {
  const warmBound = Math.max(WARM_FACTOR * r.quiet.warmP99, WARM_FLOOR_MS);
  t.ok(r.during.warmP99 <= warmBound, `warm logins of others during the attack: p99 ${r.during.warmP99.toFixed(1)} ms ≤ ${warmBound.toFixed(0)} ms (quiet ${r.quiet.warmP99.toFixed(1)} ms, ${r.during.warmCount} logins)`);
  t.same(r.during.warmNotOk, [], 'every warm login of others was ok');
  t.ok(r.during.warmCount >= 20, `warm logins kept flowing (${r.during.warmCount})`);
  const healthBound = Math.max(HEALTH_FACTOR * r.quiet.healthWorst, HEALTH_FLOOR_MS);
  t.equal(r.during.healthFailures, 0, `/healthz answered every probe (${r.during.healthCount})`);
  t.ok(r.during.healthWorst <= healthBound, `/healthz worst ${r.during.healthWorst.toFixed(0)} ms ≤ ${healthBound.toFixed(0)} ms`);
  t.same(r.after.freshNotOk, [], `correct uncached logins after the attack: ${r.after.freshCount} ok`);
  t.ok(r.after.cpuCores <= IDLE_CORES, `daemon CPU one second after the attack: ${r.after.cpuCores.toFixed(2)} cores ≤ ${IDLE_CORES}`);
  t.equal(d.exited(), null, 'the daemon is still running');
}

t.test('availability under hostile load', async (t) => {
  const tdb: TestDatabase = await createTestDatabase(t);
  const world = await seedAttackWorld(tdb, { seedDomain, seedMailbox } as never);

  await t.test('hash attacks against one daemon', async (t) => {
    const d = await startDaemon(t, tdb.url, { config: { throttle: { enabled: false } } });

    await t.test('SHA-crypt guess flood', async (t) => {
      const r = await ATTACKS.shaCryptFlood(d, world);
      t.comment(JSON.stringify(r));
      t.ok(r.attack.answered > 0, `${r.attack.answered} guesses answered, none ok`);
      t.equal(r.attack.ok, 0, 'no guess was ok');
      await judge(t, d, r);
    });

    await t.test('bcrypt guess flood', async (t) => {
      const r = await ATTACKS.bcryptFlood(d, world);
      t.comment(JSON.stringify(r));
      t.equal(r.attack.ok, 0, 'no guess was ok');
      await judge(t, d, r);
    });

    await t.test('stored hashes above the cost ceilings', async (t) => {
      const r = await ATTACKS.costCeiling(d, world);
      t.comment(JSON.stringify(r));
      t.equal(r.attack.ok, 0, 'no guess was ok');
      t.ok(r.attack.worstMs < 1000, `the guesses were refused at once (worst ${r.attack.worstMs.toFixed(0)} ms)`);
      const lines = d.log().split('\n').filter((l) => l.includes('cannot be verified') && l.includes('above auth.hash_limits'));
      for (const u of world.overCeiling) t.ok(lines.some((l) => l.includes(`"mailbox":"${u}"`)), `an error line names ${u} and the ceiling`);
      await judge(t, d, r);
    });
  });

  await t.test('cheap-guess cache flush', async (t) => {
    // 6,000 distinct guesses against a 2,000-entry verify cache: three times its size, as
    // ~100,000 guesses against the default 100,000 entries, in a few seconds.
    const d = await startDaemon(t, tdb.url, { config: { throttle: { enabled: false }, cache: { verify_entries: 2000 } } });
    const r = await ATTACKS.cacheFlush(d, world, 6000);
    t.comment(JSON.stringify(r));
    t.equal(r.attack.ok, 0, 'no guess was ok');
    t.equal(r.after.bcryptMisses, 0, 'after the flood the warm users were all still cached (no verify-cache miss)');
    await judge(t, d, r);
  });

  await t.test('idle-connection exhaustion', async (t) => {
    // 400 idle keep-alive sockets against a daemon whose fd limit is 256.
    const d = await startDaemon(t, tdb.url, { config: { throttle: { enabled: false } }, nofile: 256 });
    const r = await ATTACKS.idleSockets(d, world, 400);
    t.comment(JSON.stringify(r));
    t.match(d.log(), /connection limit/i, 'the limit was logged');
    await judge(t, d, r);
    const h = await get(d.url, '/healthz', 5000);
    t.equal(h.status, 200, '/healthz still answers after the sockets are gone');
  });
});
