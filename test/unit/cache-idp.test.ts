import t from 'tap';
import { createIdpCache } from '../../src/cache/index.js';

interface Answer {
  attributeHash: string;
  template: string;
}

function fakeClock(start = 5_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const opts = { maxEntries: 100, maxBytes: 1 << 20, ttlMs: 60_000, negativeTtlMs: 10_000, staleForMs: 3_600_000 };
const answer: Answer = { attributeHash: 'abc', template: 'Default' };

t.test('a positive answer is fresh for the TTL', async (t) => {
  const clock = fakeClock();
  const c = createIdpCache<Answer>({ ...opts, clock });
  t.equal(c.get('u@x.test'), undefined, 'empty: miss');
  c.set('u@x.test', answer);
  clock.advance(59_999);
  t.same(c.get('u@x.test'), { value: answer, ageMs: 59_999 });
  clock.advance(1);
  t.equal(c.get('u@x.test'), undefined, 'expired: miss (ask the IdP)');
  t.match(c.stats(), { hits: 1, misses: 2, entries: 1 }, 'kept for stale-if-error');
});

t.test('a negative answer is fresh for the negative TTL and never served stale', async (t) => {
  const clock = fakeClock();
  const c = createIdpCache<Answer>({ ...opts, clock });
  c.set('ghost@x.test', null);
  t.same(c.get('ghost@x.test'), { value: null, ageMs: 0 });
  clock.advance(10_000);
  t.equal(c.get('ghost@x.test'), undefined);
  t.equal(c.getStale('ghost@x.test'), undefined, 'an outage never turns into "no such user"');
  t.equal(c.stats().entries, 0, 'a dead negative entry is dropped');
});

t.test('stale-if-error is bounded by staleFor', async (t) => {
  const clock = fakeClock();
  const c = createIdpCache<Answer>({ ...opts, clock });
  c.set('u@x.test', answer);
  clock.advance(30 * 60_000);
  t.equal(c.get('u@x.test'), undefined, 'not fresh');
  t.same(c.getStale('u@x.test'), { value: answer, ageMs: 30 * 60_000 }, 'but usable while the IdP fails');
  clock.advance(30 * 60_000);
  t.ok(c.getStale('u@x.test'), 'exactly staleFor old: still usable');
  clock.advance(1);
  t.equal(c.getStale('u@x.test'), undefined, 'older: not any more');
  t.equal(c.stats().stale, 2);
  t.equal(c.get('u@x.test'), undefined);
  t.equal(c.stats().entries, 0, 'dropped once past every use');
});

t.test('markStale ends freshness but keeps the fallback', async (t) => {
  const clock = fakeClock();
  const c = createIdpCache<Answer>({ ...opts, clock });
  c.set('u@x.test', answer);
  c.markStale('u@x.test');
  t.equal(c.get('u@x.test'), undefined, 'the next login asks the IdP');
  t.same(c.getStale('u@x.test')?.value, answer, 'and falls back to it if the IdP fails');
  c.set('u@x.test', { ...answer, template: 'Staff' });
  t.equal(c.get('u@x.test')?.value?.template, 'Staff', 'a new answer replaces it');
  c.markStale('nobody@x.test'); // no entry: nothing happens
  c.set('ghost@x.test', null);
  c.markStale('ghost@x.test');
  t.equal(c.stats().entries, 1, 'a stale negative entry is of no use and is dropped');
});

t.test('bounded by entries and bytes', async (t) => {
  const clock = fakeClock();
  const c = createIdpCache<Answer>({ ...opts, maxEntries: 3, clock });
  for (let i = 0; i < 5; i++) c.set(`u${i}@x.test`, answer);
  t.match(c.stats(), { entries: 3, evictions: 2 });
  const b = createIdpCache<Answer>({ ...opts, maxBytes: 1000, clock, sizeOf: () => 300 });
  for (let i = 0; i < 5; i++) b.set(`u${i}@x.test`, answer);
  t.ok(b.stats().bytes <= 1000);
  t.equal(b.stats().entries, 2);
});

t.test('switched off', async (t) => {
  const c = createIdpCache<Answer>({ ...opts, maxEntries: 0 });
  t.equal(c.enabled, false);
  c.set('u@x.test', answer);
  t.equal(c.get('u@x.test'), undefined);
  t.equal(c.getStale('u@x.test'), undefined);
});
