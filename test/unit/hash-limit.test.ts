import t from 'tap';
import { isSlowHash, limitSlowHashes } from '../../src/auth/hash-limit.js';
import type { VerifyResult } from '../../src/passwords/index.js';
import { hash } from '../../src/passwords/index.js';

t.test('which stored values count as slow', async (t) => {
  t.ok(isSlowHash(await hash('BLF-CRYPT', 'x', { bcryptCost: 4 })));
  t.ok(isSlowHash('{CRYPT}$2y$04$abcdefghijklmnopqrstuu5mYxPs7cI6tTqCPDvOPhyAcS.ZDUPvW'), 'bcrypt behind {CRYPT}');
  t.ok(isSlowHash(await hash('ARGON2ID', 'x')));
  t.notOk(isSlowHash(await hash('SSHA256', 'x')));
  t.notOk(isSlowHash(await hash('SHA512-CRYPT', 'x')), 'SHA-crypt runs on the event loop in slices, not on the pool');
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
  t.same(limiter.stats(), { running: 2, queued: 2 });
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
  t.same(limiter.stats(), { running: 0, queued: 0 });
});

t.test('a failing verification frees its slot', async (t) => {
  const bcrypt = await hash('BLF-CRYPT', 'x', { bcryptCost: 4 });
  const limiter = limitSlowHashes(async () => {
    throw new Error('boom');
  }, 1);
  await t.rejects(limiter.verify(bcrypt, 'a'));
  await t.rejects(limiter.verify(bcrypt, 'b'));
  t.same(limiter.stats(), { running: 0, queued: 0 });
});
