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
