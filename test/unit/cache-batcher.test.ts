import t from 'tap';
import { createBatcher } from '../../src/cache/index.js';

/** A read that records its key lists and waits for release(). */
function gatedRead() {
  const calls: string[][] = [];
  const gates: Array<() => void> = [];
  const read = async (keys: string[]) => {
    calls.push(keys);
    await new Promise<void>((r) => gates.push(r));
    return new Map(keys.filter((k) => !k.startsWith('absent')).map((k) => [k, `v:${k}`]));
  };
  const releaseAll = () => gates.splice(0).forEach((g) => g());
  return { read, calls, releaseAll };
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('keys asked together share one read; duplicates are read once', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 100, maxInFlight: 1 });
  const ps = [b.load('a'), b.load('b'), b.load('a'), b.load('absent-c')];
  await tick();
  g.releaseAll();
  t.same(await Promise.all(ps), ['v:a', 'v:b', 'v:a', undefined]);
  t.same(g.calls, [['a', 'b', 'absent-c']]);
});

t.test('keys arriving while a read runs wait for the next read (never an older one)', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 100, maxInFlight: 1 });
  const first = b.load('a');
  await tick();
  t.same(g.calls, [['a']], 'an idle batcher reads at once');
  const later = [b.load('a'), b.load('b')];
  await tick();
  t.equal(g.calls.length, 1, 'nothing sent while the read runs');
  g.releaseAll();
  t.equal(await first, 'v:a');
  await tick();
  await tick();
  t.same(g.calls[1], ['a', 'b'], 'the late "a" gets a read of its own, sent after it asked');
  g.releaseAll();
  t.same(await Promise.all(later), ['v:a', 'v:b']);
  t.same(b.stats(), { reads: 2, keys: 3 });
});

t.test('bounded batch size and reads in flight', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 2, maxInFlight: 2 });
  const ps = ['a', 'b', 'c', 'd', 'e'].map((k) => b.load(k));
  await tick();
  t.same(g.calls, [['a', 'b'], ['c', 'd']]);
  g.releaseAll();
  await tick();
  await tick();
  t.same(g.calls[2], ['e']);
  g.releaseAll();
  t.same(await Promise.all(ps), ['v:a', 'v:b', 'v:c', 'v:d', 'v:e']);
});

t.test('a failed read rejects its keys only', async (t) => {
  let fail = true;
  const b = createBatcher(
    async (keys: string[]) => {
      if (fail) throw new Error('db down');
      return new Map(keys.map((k) => [k, k]));
    },
    { maxBatch: 10, maxInFlight: 1 },
  );
  await t.rejects(Promise.all([b.load('a'), b.load('b')]), /db down/);
  fail = false;
  t.equal(await b.load('a'), 'a', 'the next read works');
});

t.test('minBatch/maxWaitMs: a few keys wait for company, a full batch goes at once', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 100, maxInFlight: 2, minBatch: 3, maxWaitMs: 40 });
  const first = [b.load('a'), b.load('b')];
  await tick();
  await new Promise((r) => setTimeout(r, 10));
  t.same(g.calls, [], 'two keys wait (less than minBatch, maxWaitMs not over)');
  const third = b.load('c');
  await tick();
  await tick();
  t.same(g.calls, [['a', 'b', 'c']], 'the third key sends all three at once, before the wait is over');
  g.releaseAll();
  t.same(await Promise.all([...first, third]), ['v:a', 'v:b', 'v:c']);

  const started = performance.now();
  const lone = b.load('d');
  await tick();
  t.equal(g.calls.length, 1, 'a lone key is not sent at once');
  await new Promise((r) => setTimeout(r, 60));
  t.same(g.calls[1], ['d'], 'but after maxWaitMs');
  g.releaseAll();
  t.equal(await lone, 'v:d');
  // Timers count from the event loop's cached clock: allow it to lag.
  t.ok(performance.now() - started >= 30, 'not long before maxWaitMs');
});

t.test('with maxWaitMs, a key is still only answered by a read sent after it arrived', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 100, maxInFlight: 1, minBatch: 2, maxWaitMs: 20 });
  const a = b.load('a');
  const b1 = b.load('b');
  await tick();
  await tick();
  t.same(g.calls, [['a', 'b']]);
  const late = b.load('a'); // asked while the read of 'a' runs: must not share it
  g.releaseAll();
  t.same(await Promise.all([a, b1]), ['v:a', 'v:b']);
  await new Promise((r) => setTimeout(r, 40));
  t.same(g.calls[1], ['a'], 'the late key gets a read of its own, after the wait');
  g.releaseAll();
  t.equal(await late, 'v:a');
});

t.test('with maxWaitMs, keys that already waited through a busy read go at once, not after another wait', async (t) => {
  const g = gatedRead();
  const b = createBatcher(g.read, { maxBatch: 100, maxInFlight: 1, minBatch: 10, maxWaitMs: 30 });
  const a = b.load('a');
  await new Promise((r) => setTimeout(r, 45));
  t.same(g.calls, [['a']], 'the lone key went after maxWaitMs');
  const late = b.load('b'); // waits: the one read allowed is running
  await new Promise((r) => setTimeout(r, 45));
  t.equal(g.calls.length, 1, 'still one read in flight');
  g.releaseAll();
  t.equal(await a, 'v:a');
  await tick();
  await tick();
  t.same(g.calls[1], ['b'], 'b has waited longer than maxWaitMs: sent as soon as the read slot is free, without a second wait');
  g.releaseAll();
  t.equal(await late, 'v:b');
});
