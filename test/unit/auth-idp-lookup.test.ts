import t from 'tap';
import { createIdpLookup } from '../../src/auth/idp-lookup.js';
import type { IdpFetchResult } from '../../src/auth/idp-lookup.js';
import { createIdpCache } from '../../src/cache/index.js';
import { MailauthError } from '../../src/errors.js';

interface Answer {
  id: string;
}

function fakeClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

function setup(over: { cooldownMs?: number; budgetMs?: number } = {}) {
  const clock = fakeClock();
  const cache = createIdpCache<Answer>({ maxEntries: 100, maxBytes: 1 << 20, ttlMs: 60_000, negativeTtlMs: 10_000, staleForMs: 3_600_000, clock });
  let calls = 0;
  let mode: 'ok' | 'none' | 'down' | 'hang' = 'ok';
  const lookup = createIdpLookup<Answer>({
    cache,
    clock,
    budgetMs: over.budgetMs ?? 1000,
    cooldownMs: over.cooldownMs ?? 0,
    fetch: async (key, signal): Promise<IdpFetchResult<Answer>> => {
      calls++;
      await new Promise((r) => setImmediate(r));
      if (mode === 'down') throw new MailauthError('ERR_IDP_UNAVAILABLE', 'connection refused');
      if (mode === 'hang') {
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      return mode === 'none' ? { value: null, reason: 'no IdP user has this email' } : { value: { id: `id-${key}` } };
    },
  });
  return { clock, cache, lookup, calls: () => calls, set: (m: typeof mode) => void (mode = m) };
}

const live = () => new AbortController().signal;

t.test('asks once, then answers from the cache within the TTL', async (t) => {
  const s = setup();
  t.match(await s.lookup.lookup('a@x.test', live()), { value: { id: 'id-a@x.test' }, source: 'idp' });
  s.clock.advance(59_000);
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'cache', ageMs: 59_000 });
  t.equal(s.calls(), 1);
  s.clock.advance(1_000);
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'idp' });
  t.equal(s.calls(), 2);
});

t.test('concurrent misses share one IdP call', async (t) => {
  const s = setup();
  const all = await Promise.all(Array.from({ length: 10 }, () => s.lookup.lookup('a@x.test', live())));
  t.equal(s.calls(), 1);
  t.ok(all.every((r) => r.value?.id === 'id-a@x.test'));
});

t.test('negative answers are cached for the negative TTL, with a reason', async (t) => {
  const s = setup();
  s.set('none');
  t.match(await s.lookup.lookup('n@x.test', live()), { value: null, source: 'idp', reason: 'no IdP user has this email' });
  t.match(await s.lookup.lookup('n@x.test', live()), { value: null, source: 'cache', reason: /cached/ });
  s.clock.advance(10_000);
  await s.lookup.lookup('n@x.test', live());
  t.equal(s.calls(), 2);
});

t.test('IdP down: stale positive answer within idp_stale_for, else the fault; failures are never cached', async (t) => {
  const s = setup();
  await s.lookup.lookup('a@x.test', live());
  s.clock.advance(30 * 60_000);
  s.set('down');
  const r = await s.lookup.lookup('a@x.test', live());
  t.match(r, { value: { id: 'id-a@x.test' }, source: 'stale', ageMs: 30 * 60_000 });
  t.equal(r.fault?.code, 'ERR_IDP_UNAVAILABLE');
  await t.rejects(s.lookup.lookup('never@x.test', live()), { code: 'ERR_IDP_UNAVAILABLE' }, 'no stale entry: the fault');
  s.set('none');
  await s.lookup.lookup('never@x.test', live());
  s.clock.advance(20_000);
  s.set('down');
  await t.rejects(s.lookup.lookup('never@x.test', live()), { code: 'ERR_IDP_UNAVAILABLE' }, 'a negative answer is never served stale');
  s.clock.advance(31 * 60_000);
  await t.rejects(s.lookup.lookup('a@x.test', live()), { code: 'ERR_IDP_UNAVAILABLE' }, 'older than idp_stale_for: the fault');
  s.set('ok');
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'idp' }, 'back up: asked again (the failure was not cached)');
});

t.test('a slow IdP is cut at the budget; the stale answer is used', async (t) => {
  const s = setup({ budgetMs: 50 });
  await s.lookup.lookup('a@x.test', live());
  s.clock.advance(61_000);
  s.set('hang');
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'stale', fault: { code: 'ERR_IDP_TIMEOUT' } });
  await t.rejects(s.lookup.lookup('b@x.test', live()), { code: 'ERR_IDP_TIMEOUT' });
});

t.test("a caller's deadline ends its wait, not the shared call", async (t) => {
  const s = setup({ budgetMs: 200 });
  s.set('hang');
  const ac = new AbortController();
  const first = s.lookup.lookup('a@x.test', ac.signal);
  const second = s.lookup.lookup('a@x.test', live());
  ac.abort();
  await t.rejects(first, { code: 'ERR_DEADLINE' });
  await t.rejects(second, { code: 'ERR_IDP_TIMEOUT' }, 'the other caller waited for the budget');
  t.equal(s.calls(), 1);
});

t.test('cooldown: after a failure the IdP is not called again for idp.cooldown', async (t) => {
  const s = setup({ cooldownMs: 5_000 });
  await s.lookup.lookup('a@x.test', live());
  s.clock.advance(61_000);
  s.set('down');
  await s.lookup.lookup('a@x.test', live());
  t.equal(s.calls(), 2);
  s.set('ok');
  t.ok(s.lookup.coolingDown());
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'stale', fault: { details: { reason: 'cooldown' } } }, 'stale answer without a call');
  await t.rejects(s.lookup.lookup('b@x.test', live()), { code: 'ERR_IDP_UNAVAILABLE' }, 'fails fast without a call');
  t.equal(s.calls(), 2);
  s.clock.advance(5_000);
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'idp' });
  t.equal(s.calls(), 3);
});

t.test('fresh skips the cached answer; reset forgets everything', async (t) => {
  const s = setup();
  await s.lookup.lookup('a@x.test', live());
  t.match(await s.lookup.lookup('a@x.test', live(), { fresh: true }), { source: 'idp' });
  t.equal(s.calls(), 2);
  s.lookup.reset();
  t.equal(s.cache.stats().entries, 0);
  t.match(await s.lookup.lookup('a@x.test', live()), { source: 'idp' });
});

t.test('an answer fetched before reset() does not land in the cache', async (t) => {
  const s = setup();
  const p = s.lookup.lookup('a@x.test', live());
  s.lookup.reset();
  await p;
  t.equal(s.cache.stats().entries, 0);
});
