import t from 'tap';
import { createVerifyCache, VERIFY_ENTRY_BYTES } from '../../src/cache/index.js';
import type { Verifier } from '../../src/cache/index.js';
import { hash, verify } from '../../src/passwords/index.js';
import type { VerifyResult } from '../../src/passwords/index.js';

/** A verifier that counts its calls and answers from a table. */
function fakeVerifier(answer: (stored: string, pw: string) => VerifyResult): Verifier & { calls: number } {
  const f = (async (stored: string, pw: string) => {
    f.calls++;
    return answer(stored, pw);
  }) as Verifier & { calls: number };
  f.calls = 0;
  return f;
}

const plain = fakeVerifier((stored, pw) => ({ outcome: stored === `{PLAIN}${pw}` ? 'match' : 'mismatch', scheme: 'PLAIN' }));

t.test('match and mismatch are both cached; a repeat costs no verification', async (t) => {
  const v = fakeVerifier((stored, pw) => ({ outcome: stored === `{PLAIN}${pw}` ? 'match' : 'mismatch', scheme: 'PLAIN' }));
  const cache = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
  const cached = cache.wrap(v);
  t.equal((await cached('{PLAIN}right', 'right')).outcome, 'match');
  t.equal((await cached('{PLAIN}right', 'right')).outcome, 'match');
  t.equal((await cached('{PLAIN}right', 'wrong')).outcome, 'mismatch');
  t.equal((await cached('{PLAIN}right', 'wrong')).outcome, 'mismatch');
  t.equal(v.calls, 2, 'one real verification per (hash, password)');
  t.match(cache.stats(), { hits: 2, misses: 2, entries: 2, bytes: 2 * VERIFY_ENTRY_BYTES });
  t.same(await cached('{PLAIN}right', 'right'), { outcome: 'match', scheme: 'PLAIN' }, 'a hit keeps the scheme');
});

t.test('a changed hash misses: an entry can never be stale', async (t) => {
  const v = fakeVerifier((stored, pw) => ({ outcome: stored === `{PLAIN}${pw}` ? 'match' : 'mismatch', scheme: 'PLAIN' }));
  const cached = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 }).wrap(v);
  t.equal((await cached('{PLAIN}old', 'old')).outcome, 'match');
  // The database now holds a new hash: the old password is checked against it, not remembered.
  t.equal((await cached('{PLAIN}new', 'old')).outcome, 'mismatch');
  t.equal((await cached('{PLAIN}new', 'new')).outcome, 'match');
  t.equal(v.calls, 3);
});

t.test('malformed and unsupported outcomes are never cached', async (t) => {
  for (const outcome of ['malformed', 'unsupported_scheme'] as const) {
    const v = fakeVerifier(() => ({ outcome, scheme: 'X', reason: 'r' }));
    const cache = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
    const cached = cache.wrap(v);
    await cached('{X}zzz', 'pw');
    await cached('{X}zzz', 'pw');
    t.equal(v.calls, 2, `${outcome}: verified every time`);
    t.equal(cache.stats().entries, 0);
  }
});

t.test('the cache holds neither the password nor the hash', async (t) => {
  const password = 'correct horse battery staple';
  const stored = await hash('SSHA256', password);
  const cache = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
  const cached = cache.wrap((s, p) => verify(s, p));
  t.equal((await cached(stored, password)).outcome, 'match');
  t.equal((await cached(stored, 'not it')).outcome, 'mismatch');
  const dump = cache.dump();
  t.equal(dump.length, 2);
  const pwHex = Buffer.from(password).toString('hex');
  const pwB64 = Buffer.from(password).toString('base64');
  for (const [key, value] of dump) {
    const text = `${key}|${Buffer.from(key, 'latin1').toString('hex')}|${JSON.stringify(value)}`;
    for (const secret of [password, 'not it', pwHex, pwB64, stored, stored.slice(9)]) {
      t.notOk(text.includes(secret), 'no secret in a stored key or value');
    }
    t.equal(key.length, 16, 'the key is a 16-byte digest');
    t.same(Object.keys(value).sort(), ['outcome', 'scheme'], 'the value is the outcome and scheme label only');
  }
});

t.test('keys depend on the per-process secret', async (t) => {
  const a = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20, secret: Buffer.alloc(32, 1) });
  const b = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20, secret: Buffer.alloc(32, 2) });
  const a2 = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20, secret: Buffer.alloc(32, 1) });
  for (const c of [a, b, a2]) c.remember('{PLAIN}x', 'x', { outcome: 'match', scheme: 'PLAIN' });
  const key = (c: typeof a) => c.dump()[0]?.[0];
  t.equal(key(a), key(a2), 'same secret, same key');
  t.not(key(a), key(b), 'another process (secret) gives another key');
  const fresh = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
  t.equal(fresh.lookup('{PLAIN}x', 'x'), undefined, 'a cache never serves a result it did not compute');
});

t.test('hash ‖ 0x00 ‖ password is unambiguous: a stored value with NUL bypasses the cache', async (t) => {
  const v = fakeVerifier(() => ({ outcome: 'match', scheme: 'PLAIN' }));
  const cache = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
  const cached = cache.wrap(v);
  await cached('{PLAIN}a\u0000b', 'c');
  t.equal(cache.lookup('{PLAIN}a', 'b\u0000c'), undefined, 'no collision with the split elsewhere');
  await cached('{PLAIN}a\u0000b', 'c');
  t.equal(v.calls, 2);
  t.equal(cache.stats().entries, 0);
});

t.test('bounded by entries and by bytes, evictions counted', async (t) => {
  const byEntries = createVerifyCache({ maxEntries: 3, maxBytes: 1 << 20 });
  for (let i = 0; i < 10; i++) byEntries.remember(`{PLAIN}${i}`, `${i}`, { outcome: 'match', scheme: 'PLAIN' });
  // Issue 16: matches have half the capacity (rounded up), mismatches the other half.
  t.match(byEntries.stats(), { entries: 2, evictions: 8 });
  const byBytes = createVerifyCache({ maxEntries: 1000, maxBytes: VERIFY_ENTRY_BYTES * 4 });
  for (let i = 0; i < 10; i++) byBytes.remember(`{PLAIN}${i}`, `${i}`, { outcome: 'mismatch', scheme: 'PLAIN' });
  t.match(byBytes.stats(), { entries: 2, evictions: 8, bytes: VERIFY_ENTRY_BYTES * 2 });
  t.equal(byBytes.lookup('{PLAIN}9', '9')?.outcome, 'mismatch', 'the newest entries stay');
  t.equal(byBytes.lookup('{PLAIN}0', '0'), undefined, 'the oldest went first');
});

t.test('concurrent misses for one (hash, password) share one verification', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const v = fakeVerifier(() => ({ outcome: 'match', scheme: 'BLF-CRYPT' }));
  const slow: Verifier = async (s, p) => {
    await gate;
    return v(s, p);
  };
  const cached = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 }).wrap(slow);
  const all = Promise.all(Array.from({ length: 8 }, () => cached('{BLF-CRYPT}x', 'pw')));
  release();
  const results = await all;
  t.equal(v.calls, 1);
  t.ok(results.every((r) => r.outcome === 'match'));
  await cached('{BLF-CRYPT}x', 'other');
  t.equal(v.calls, 2, 'another password is its own flight');
});

t.test('switched off: the verifier is used as is', async (t) => {
  const cache = createVerifyCache({ maxEntries: 0, maxBytes: 1 << 20 });
  t.equal(cache.enabled, false);
  t.equal(cache.wrap(plain), plain);
  cache.remember('{PLAIN}x', 'x', { outcome: 'match', scheme: 'PLAIN' });
  t.equal(cache.lookup('{PLAIN}x', 'x'), undefined);
  t.match(cache.stats(), { entries: 0, hits: 0, misses: 0 });
});

t.test('issue 16: cheap wrong guesses cannot flush remembered successes', async (t) => {
  const cache = createVerifyCache({ maxEntries: 1000, maxBytes: 1 << 20 });
  for (let i = 0; i < 400; i++) cache.remember(`{PLAIN}user${i}`, `right${i}`, { outcome: 'match', scheme: 'PLAIN' });
  for (let i = 0; i < 100_000; i++) cache.remember('{PLAIN}user0', `guess${i}`, { outcome: 'mismatch', scheme: 'PLAIN' });
  for (let i = 0; i < 400; i++) t.equal(cache.lookup(`{PLAIN}user${i}`, `right${i}`)?.outcome, 'match', `user${i} still cached`, { diagnostic: false });
  t.equal(cache.stats().entries, 900, '400 matches + 500 mismatches');
  t.equal(cache.lookup('{PLAIN}user0', 'guess99999')?.outcome, 'mismatch', 'the newest mismatches are kept');
});

t.test('issue 16: a password given as bytes hits the entry of the text with those UTF-8 bytes', async (t) => {
  const cache = createVerifyCache({ maxEntries: 10, maxBytes: 1 << 20 });
  cache.remember('{PLAIN}x', 'Grüße', { outcome: 'match', scheme: 'PLAIN' });
  t.equal(cache.lookup('{PLAIN}x', Buffer.from('Grüße', 'utf8'))?.outcome, 'match');
  t.equal(cache.lookup('{PLAIN}x', Buffer.from('Grüße', 'latin1')), undefined, 'the Latin-1 bytes are another password');
});
