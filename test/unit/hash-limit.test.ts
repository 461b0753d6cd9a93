import t from 'tap';
import { deadlineRunner } from '../../src/auth/deadline.js';
import { isSlowHash, limitSlowHashes } from '../../src/auth/hash-limit.js';
import { isMailauthError } from '../../src/errors.js';
import type { VerifyResult } from '../../src/passwords/index.js';
import { hash } from '../../src/passwords/index.js';

t.test('which stored values count as slow', async (t) => {
  t.ok(isSlowHash(await hash('BLF-CRYPT', 'x', { bcryptCost: 4 })));
  t.ok(isSlowHash('{CRYPT}$2y$04$abcdefghijklmnopqrstuu5mYxPs7cI6tTqCPDvOPhyAcS.ZDUPvW'), 'bcrypt behind {CRYPT}');
  t.ok(isSlowHash(await hash('ARGON2ID', 'x')));
  t.notOk(isSlowHash(await hash('SSHA256', 'x')));
  t.ok(isSlowHash(await hash('SHA512-CRYPT', 'x')), 'SHA-crypt queues too (issue 16: it runs on the hash pool)');
  t.ok(isSlowHash('{PBKDF2}$1$saltsalt$5000$' + 'ab'.repeat(20)));
  t.notOk(isSlowHash('{NOPE}zzz'));
});

t.test('at most N slow verifications at once, in arrival order; fast ones never wait', async (t) => {
  let active = 0;
  let peak = 0;
  const order: string[] = [];
  const gates: Array<() => void> = [];
  const inner = async (stored: string, pw: string): Promise<VerifyResult> => {
    active++;
    peak = Math.max(peak, active);
    order.push(pw);
    if (stored.startsWith('{BLF-CRYPT}')) await new Promise<void>((r) => gates.push(r));
    active--;
    return { outcome: 'match', scheme: 'X' };
  };
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 4 });
  const fast = await hash('SSHA256', 'x');
  const limiter = limitSlowHashes(inner, 2);
  const slow = ['a', 'b', 'c', 'd'].map((pw) => limiter.verify(bcrypt, pw));
  await new Promise((r) => setImmediate(r));
  t.match(limiter.stats(), { running: 2, queued: 2 });
  t.equal((await limiter.verify(fast, 'f')).outcome, 'match', 'a fast hash does not queue behind them');
  let done = false;
  void Promise.all(slow).then(() => (done = true));
  while (!done) {
    t.ok(limiter.stats().running <= 2, 'never more than 2 running');
    gates.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  t.equal(peak, 3, 'two slow + the fast one');
  t.same(order.filter((p) => p !== 'f'), ['a', 'b', 'c', 'd'], 'arrival order');
  t.match(limiter.stats(), { running: 0, queued: 0 });
});

t.test('a failing verification frees its slot', async (t) => {
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 4 });
  const limiter = limitSlowHashes(async () => {
    throw new Error('boom');
  }, 1);
  await t.rejects(limiter.verify(bcrypt, 'a'));
  await t.rejects(limiter.verify(bcrypt, 'b'));
  t.match(limiter.stats(), { running: 0, queued: 0 });
});

// Issue 16: the queue knows each request's deadline, has a bound, and refuses costs above the ceiling.
const gated = (): { inner: (s: string, p: string | Uint8Array) => Promise<VerifyResult>; open(): void; calls: string[] } => {
  const gates: Array<() => void> = [];
  const calls: string[] = [];
  return {
    calls,
    inner: async (_s, pw) => {
      calls.push(String(pw));
      await new Promise<void>((r) => gates.push(r));
      return { outcome: 'mismatch', scheme: 'BLF-CRYPT' };
    },
    open: () => {
      for (const g of gates.splice(0)) g();
    },
  };
};
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('issue 16: a check whose request was answered is dropped unrun', async (t) => {
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 4 });
  const g = gated();
  const limiter = limitSlowHashes(g.inner, { concurrency: 1 });
  const first = limiter.verify(bcrypt, 'first');
  const answered = new AbortController();
  const second = limiter.verify(bcrypt, 'second', answered.signal);
  await tick();
  answered.abort();
  g.open();
  await first;
  await t.rejects(second, { code: 'ERR_DEADLINE' });
  t.same(g.calls, ['first'], 'the second check never ran');
  t.match(limiter.stats(), { running: 0, queued: 0, dropped: 1 });
});

t.test('issue 16: a check that cannot finish before its deadline fails at once', async (t) => {
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 12 }); // ~4096 units: estimate ~240 ms each
  const g = gated();
  const limiter = limitSlowHashes(g.inner, { concurrency: 1 });
  const runner = deadlineRunner(300, 'expired');
  const results: unknown[] = [];
  const ps = [0, 1, 2, 3].map((i) =>
    runner.run((signal) => limiter.verify(bcrypt, `g${i}`, signal).then((r) => r.outcome), (err) => (isMailauthError(err) ? err.code : String(err))).then((r) => results.push(r)),
  );
  await tick();
  await tick();
  t.ok(results.filter((r) => r === 'ERR_OVERLOADED').length >= 2, `refused at once: ${JSON.stringify(results)}`);
  g.open();
  await tick();
  g.open();
  await Promise.all(ps);
  t.ok(limiter.stats().refused >= 2);
});

t.test('issue 16: the queue has a bound', async (t) => {
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 4 });
  const g = gated();
  const limiter = limitSlowHashes(g.inner, { concurrency: 1, maxQueue: 2 });
  const ps = ['a', 'b', 'c'].map((pw) => limiter.verify(bcrypt, pw));
  await tick();
  await t.rejects(limiter.verify(bcrypt, 'd'), { code: 'ERR_OVERLOADED' });
  t.match(limiter.stats(), { running: 1, queued: 2, refused: 1 });
  while (limiter.stats().running > 0) {
    g.open();
    await tick();
  }
  await Promise.all(ps);
});

t.test('issue 16: work above the ceiling is refused as unverifiable without hashing', async (t) => {
  const g = gated();
  const caps = { bcryptCost: 10, shaCryptRounds: 10_000, pbkdf2Iterations: 100_000, argon2MemoryKib: 65_536, argon2TimeCost: 3, argon2Parallelism: 1 };
  const limiter = limitSlowHashes(g.inner, { concurrency: 1, caps });
  const cases = [
    '{BLF-CRYPT}$2y$18$abcdefghijklmnopqrstuu5mYxPs7cI6tTqCPDvOPhyAcS.ZDUPvW',
    `{SHA512-CRYPT}$6$rounds=999999$saltsalt$${'x'.repeat(86)}`,
    `{PBKDF2}$1$saltsalt$5000000$${'ab'.repeat(20)}`,
  ];
  for (const stored of cases) {
    const r = await limiter.verify(stored, 'guess');
    t.equal(r.outcome, 'malformed', stored.slice(0, 20));
    t.match(r.reason, /above auth\.hash_limits/);
  }
  t.same(g.calls, [], 'nothing was hashed');
  t.equal(limiter.stats().overCeiling, 3);
});
