/**
 * A fixed-capacity LRU map from 128-bit digests to small integers, held in
 * typed arrays: 33-41 bytes an entry, none of it a JavaScript object, so a
 * full table costs the garbage collector nothing to trace. The verify cache
 * keeps 100,000 entries by default; as strings in a Map (lru-cache) the same
 * entries cost ~105 bytes each and 100,000 heap objects to trace.
 *
 * Keys are HMAC output, uniformly distributed, so their first word is used as
 * the hash directly. Open addressing with linear probing; an evicted key is
 * removed by backward shift, so the index never holds tombstones.
 */

/** A 128-bit key as four unsigned 32-bit words. */
export type Digest128 = readonly [number, number, number, number];

export interface DigestTable {
  readonly size: number;
  readonly capacity: number;
  /** The value, or -1 on a miss; a hit becomes the most recently used entry. */
  get(k: Digest128): number;
  /** Inserts or updates (0 ≤ value ≤ 255); returns true when the least recently used entry was evicted for it. */
  set(k: Digest128, value: number): boolean;
  clear(): void;
  /** Entries from most to least recently used. */
  entries(): Array<[Digest128, number]>;
}

const NONE = -1;

/** Bytes per entry: 16 key + 1 value + 8 LRU links + 2 index slots of 4 (load factor ≤ 0.5). */
export const DIGEST_ENTRY_BYTES = 16 + 1 + 8 + 8;

export function createDigestTable(capacity: number): DigestTable {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`digest table capacity must be a positive integer, got ${capacity}`);
  // Index slots hold slot + 1 (0 = empty); at most half of them are ever used.
  let indexSize = 2;
  while (indexSize < capacity * 2) indexSize *= 2;
  const mask = indexSize - 1;
  let keys: Uint32Array;
  let values: Uint8Array;
  let prev: Int32Array;
  let next: Int32Array;
  let index: Int32Array;
  let size = 0;
  let head = NONE; // most recently used
  let tail = NONE; // least recently used

  const allocate = (): void => {
    // Zero-filled allocations: pages are only backed by memory once written.
    keys = new Uint32Array(capacity * 4);
    values = new Uint8Array(capacity);
    prev = new Int32Array(capacity);
    next = new Int32Array(capacity);
    index = new Int32Array(indexSize);
    size = 0;
    head = NONE;
    tail = NONE;
  };
  allocate();

  const sameKey = (slot: number, k: Digest128): boolean => {
    const o = slot * 4;
    return keys[o] === k[0] && keys[o + 1] === k[1] && keys[o + 2] === k[2] && keys[o + 3] === k[3];
  };

  /** The index position holding k, or the empty position where it would go (as -(pos + 1)). */
  const find = (k: Digest128): number => {
    let i = k[0] & mask;
    for (;;) {
      const s = index[i] as number;
      if (s === 0) return -(i + 1);
      if (sameKey(s - 1, k)) return i;
      i = (i + 1) & mask;
    }
  };

  const unlink = (slot: number): void => {
    const p = prev[slot] as number;
    const n = next[slot] as number;
    if (p === NONE) head = n;
    else next[p] = n;
    if (n === NONE) tail = p;
    else prev[n] = p;
  };

  const pushFront = (slot: number): void => {
    prev[slot] = NONE;
    next[slot] = head;
    if (head !== NONE) prev[head] = slot;
    head = slot;
    if (tail === NONE) tail = slot;
  };

  /** Empties index position i, shifting later members of its probe run back so lookups still find them. */
  const removeAt = (i: number): void => {
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const s = index[j] as number;
      if (s === 0) break;
      const home = (keys[(s - 1) * 4] as number) & mask;
      // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
      const homeAfterHole = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!homeAfterHole) {
        index[hole] = s;
        hole = j;
      }
    }
    index[hole] = 0;
  };

  return {
    get size() {
      return size;
    },
    capacity,
    get(k) {
      const pos = find(k);
      if (pos < 0) return -1;
      const slot = (index[pos] as number) - 1;
      if (slot !== head) {
        unlink(slot);
        pushFront(slot);
      }
      return values[slot] as number;
    },
    set(k, value) {
      const pos = find(k);
      if (pos >= 0) {
        const slot = (index[pos] as number) - 1;
        values[slot] = value;
        if (slot !== head) {
          unlink(slot);
          pushFront(slot);
        }
        return false;
      }
      let slot: number;
      let evicted = false;
      if (size < capacity) {
        slot = size++;
      } else {
        slot = tail;
        unlink(slot);
        removeAt(find([keys[slot * 4] as number, keys[slot * 4 + 1] as number, keys[slot * 4 + 2] as number, keys[slot * 4 + 3] as number]));
        evicted = true;
      }
      const o = slot * 4;
      keys[o] = k[0];
      keys[o + 1] = k[1];
      keys[o + 2] = k[2];
      keys[o + 3] = k[3];
      values[slot] = value;
      pushFront(slot);
      // The eviction may have shifted the probe run the new key belongs to: look again.
      index[evicted ? -(find(k) + 1) : -(pos + 1)] = slot + 1;
      return evicted;
    },
    clear: allocate,
    entries() {
      const out: Array<[Digest128, number]> = [];
      for (let s = head; s !== NONE; s = next[s] as number) {
        const o = s * 4;
        out.push([[keys[o] as number, keys[o + 1] as number, keys[o + 2] as number, keys[o + 3] as number], values[s] as number]);
      }
      return out;
    },
  };
}
