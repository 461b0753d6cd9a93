import t from 'tap';
import { createDigestTable } from '../../src/cache/digest-table.js';
import type { Digest128 } from '../../src/cache/digest-table.js';

const key = (a: number, b = 0): Digest128 => [a >>> 0, b >>> 0, 7, 9];
const str = (k: Digest128): string => k.join(',');

/** The same semantics as a Map kept in recency order: the reference the table must agree with. */
function referenceLru(capacity: number) {
  const m = new Map<string, number>();
  return {
    get(k: Digest128): number {
      const v = m.get(str(k));
      if (v === undefined) return -1;
      m.delete(str(k));
      m.set(str(k), v);
      return v;
    },
    set(k: Digest128, v: number): boolean {
      const had = m.delete(str(k));
      m.set(str(k), v);
      if (!had && m.size > capacity) {
        m.delete(m.keys().next().value as string);
        return true;
      }
      return false;
    },
    order: (): string[] => [...m.keys()].reverse(),
  };
}

t.test('get, set, update, LRU order', async (t) => {
  const d = createDigestTable(3);
  t.equal(d.get(key(1)), -1);
  t.equal(d.set(key(1), 10), false);
  t.equal(d.set(key(2), 20), false);
  t.equal(d.set(key(3), 30), false);
  t.equal(d.get(key(1)), 10, 'a hit makes 1 the newest');
  t.equal(d.set(key(4), 40), true, 'full: the least recently used (2) goes');
  t.equal(d.get(key(2)), -1);
  t.same([d.get(key(1)), d.get(key(3)), d.get(key(4))], [10, 30, 40]);
  t.equal(d.set(key(3), 31), false, 'an update evicts nothing');
  t.equal(d.get(key(3)), 31);
  t.equal(d.size, 3);
  t.same(d.entries().map(([k, v]) => [k[0], v]), [[3, 31], [4, 40], [1, 10]], 'entries newest first');
});

t.test('keys differing only in later words are distinct', async (t) => {
  const d = createDigestTable(4);
  d.set([5, 1, 2, 3], 1);
  d.set([5, 1, 2, 4], 2);
  d.set([5, 9, 2, 3], 3);
  t.same([d.get([5, 1, 2, 3]), d.get([5, 1, 2, 4]), d.get([5, 9, 2, 3]), d.get([5, 1, 9, 3])], [1, 2, 3, -1]);
  t.same([d.get([0xffffffff, 0, 0, 0])], [-1], 'high words stay unsigned');
  d.set([0xffffffff, 0xfffffffe, 0, 1], 4);
  t.equal(d.get([0xffffffff, 0xfffffffe, 0, 1]), 4);
});

t.test('an eviction keeps probe runs that wrap around the end of the index reachable', async (t) => {
  // Capacity 4: an index of 8 slots. A sits in its home slot 6; B and C both belong in
  // slot 7, so C wraps to slot 0. Evicting A must leave C where a lookup from 7 finds it.
  const d = createDigestTable(4);
  const [a, b, c, x, y] = [key(6), key(7, 1), key(7, 2), key(3), key(2)];
  d.set(a, 1);
  d.set(b, 2);
  d.set(c, 3);
  d.set(x, 4);
  t.equal(d.set(y, 5), true, 'A, the least recently used, is evicted');
  t.same([d.get(a), d.get(b), d.get(c), d.get(x), d.get(y)], [-1, 2, 3, 4, 5]);
});

t.test('agrees with a reference LRU through colliding probe runs and evictions', async (t) => {
  // Few distinct low bits: every key lands in a handful of buckets, so eviction has to
  // shift long probe runs, including ones that wrap around the end of the index.
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (const capacity of [1, 2, 5, 16, 100]) {
    const d = createDigestTable(capacity);
    const ref = referenceLru(capacity);
    let mismatches = 0;
    for (let i = 0; i < 20_000; i++) {
      const low = rand(4) === 0 ? 0xfffffff0 + rand(16) : rand(8);
      const k = key(low, rand(capacity * 3));
      if (rand(3) === 0) {
        if (d.get(k) !== ref.get(k)) mismatches++;
      } else {
        const v = rand(256);
        if (d.set(k, v) !== ref.set(k, v)) mismatches++;
      }
    }
    t.equal(mismatches, 0, `capacity ${capacity}: same answers and evictions`);
    t.same(d.entries().map(([k]) => str(k)), ref.order(), `capacity ${capacity}: same recency order`);
    t.equal(d.size, Math.min(capacity, ref.order().length));
  }
});

t.test('clear empties the table', async (t) => {
  const d = createDigestTable(2);
  d.set(key(1), 1);
  d.set(key(2), 2);
  d.clear();
  t.equal(d.size, 0);
  t.equal(d.get(key(1)), -1);
  t.same(d.entries(), []);
  d.set(key(3), 3);
  t.same(d.entries(), [[key(3), 3]]);
});

t.test('capacity must be a positive integer', async (t) => {
  t.throws(() => createDigestTable(0), RangeError);
  t.throws(() => createDigestTable(1.5), RangeError);
});
