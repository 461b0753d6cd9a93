import t from 'tap';
import { createAccountCache, estimateBytes, splitBudget } from '../../src/cache/index.js';
import type { Loader } from '../../src/cache/index.js';
import { accountIsCurrent, compactAccount } from '../../src/auth/cached.js';
import type { Account } from '../../src/auth/index.js';
import type { CredentialState } from '../../src/db/index.js';

const signal = new AbortController().signal;

function fakeClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

interface Row {
  user: string;
  hash: string;
}

function counting(rows: Map<string, Row>): Loader<Row> & { calls: number } {
  const f = (async (key: string) => {
    f.calls++;
    return rows.get(key) ?? null;
  }) as unknown as Loader<Row> & { calls: number };
  f.calls = 0;
  return f;
}

t.test('hits within the TTL, reloads after it', async (t) => {
  const clock = fakeClock();
  const rows = new Map([['a@x.test', { user: 'a@x.test', hash: 'h1' }]]);
  const load = counting(rows);
  const cache = createAccountCache<Row>({ maxEntries: 10, maxBytes: 1 << 20, ttlMs: 10_000, clock });
  const get = cache.wrap(load);
  t.same(await get('a@x.test', signal), rows.get('a@x.test'));
  clock.advance(9_999);
  await get('a@x.test', signal);
  t.equal(load.calls, 1, 'served from the cache inside the TTL');
  clock.advance(1);
  await get('a@x.test', signal);
  t.equal(load.calls, 2, 'reloaded at the TTL');
  t.match(cache.stats(), { hits: 1, misses: 2, entries: 1 });
});

t.test('"no such user" and load errors are not cached', async (t) => {
  const clock = fakeClock();
  const load = counting(new Map());
  const cache = createAccountCache<Row>({ maxEntries: 10, maxBytes: 1 << 20, ttlMs: 10_000, clock });
  const get = cache.wrap(load);
  t.equal(await get('nobody@x.test', signal), null);
  t.equal(await get('nobody@x.test', signal), null);
  t.equal(load.calls, 2);
  let fail = true;
  const flaky = cache.wrap(async (key) => {
    if (fail) throw new Error('db down');
    return { user: key, hash: 'h' };
  });
  await t.rejects(flaky('b@x.test', signal), /db down/);
  fail = false;
  t.same(await flaky('b@x.test', signal), { user: 'b@x.test', hash: 'h' }, 'the next call tries again');
  t.equal(cache.stats().entries, 1);
});

t.test('concurrent misses for one user share one load (single-flight)', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const cache = createAccountCache<Row>({ maxEntries: 10, maxBytes: 1 << 20, ttlMs: 10_000, clock: fakeClock() });
  const get = cache.wrap(async (key) => {
    calls++;
    await gate;
    return { user: key, hash: 'h' };
  });
  const many = Promise.all([...Array.from({ length: 10 }, () => get('a@x.test', signal)), get('b@x.test', signal)]);
  release();
  const out = await many;
  t.equal(calls, 2, 'one load per user');
  t.ok(out.slice(0, 10).every((r) => r === out[0]), 'everyone gets the same row');
});

t.test('revalidation: a hit is confirmed; a change in the database reloads at once', async (t) => {
  const clock = fakeClock();
  const db = new Map([['a@x.test', { user: 'a@x.test', hash: 'h1' }]]);
  const load = counting(db);
  let probes = 0;
  const cache = createAccountCache<Row>({ maxEntries: 10, maxBytes: 1 << 20, ttlMs: 60_000, clock });
  const get = cache.wrap(load, {
    probe: async (key) => {
      probes++;
      const r = db.get(key);
      return r ? { hash: r.hash } : null;
    },
    isCurrent: (row, state) => row.hash === state.hash,
  });
  t.equal((await get('a@x.test', signal))?.hash, 'h1');
  t.equal((await get('a@x.test', signal))?.hash, 'h1');
  t.match({ loads: load.calls, probes }, { loads: 1, probes: 1 }, 'hit = one probe, no load');
  db.set('a@x.test', { user: 'a@x.test', hash: 'h2' }); // password changed in the database
  t.equal((await get('a@x.test', signal))?.hash, 'h2', 'the very next lookup sees the new hash');
  t.equal(load.calls, 2);
  t.equal(cache.stats().stale, 1);
  t.equal((await get('a@x.test', signal))?.hash, 'h2');
  t.equal(load.calls, 2, 'and caches it again');
  db.delete('a@x.test');
  t.equal(await get('a@x.test', signal), null, 'a deleted mailbox is gone at once');
  t.equal(cache.peek('a@x.test'), undefined);
});

t.test('bounded by entries and by bytes, evictions counted', async (t) => {
  const clock = fakeClock();
  const byEntries = createAccountCache<Row>({ maxEntries: 2, maxBytes: 1 << 20, ttlMs: 10_000, clock });
  const get = byEntries.wrap(async (k) => ({ user: k, hash: 'h' }));
  for (const u of ['a', 'b', 'c', 'd']) await get(u, signal);
  t.match(byEntries.stats(), { entries: 2, evictions: 2 });
  const byBytes = createAccountCache<Row>({ maxEntries: 100, maxBytes: 1000, ttlMs: 10_000, clock, sizeOf: () => 300 });
  const get2 = byBytes.wrap(async (k) => ({ user: k, hash: 'h' }));
  for (const u of ['a', 'b', 'c', 'd']) await get2(u, signal);
  t.ok(byBytes.stats().bytes <= 1000, 'never above the byte bound');
  t.equal(byBytes.stats().entries, 2);
  t.equal(byBytes.stats().evictions, 2);
});

t.test('switched off by entries 0 or ttl 0', async (t) => {
  const load: Loader<Row> = async (k) => ({ user: k, hash: 'h' });
  for (const o of [{ maxEntries: 0, ttlMs: 10 }, { maxEntries: 10, ttlMs: 0 }]) {
    const c = createAccountCache<Row>({ ...o, maxBytes: 1 << 20 });
    t.equal(c.enabled, false);
    t.equal(c.wrap(load), load);
  }
});

t.test('estimateBytes and the shared byte budget', async (t) => {
  t.ok(estimateBytes({ a: 'x'.repeat(1000) }) > 1000);
  t.ok(estimateBytes({ a: '€'.repeat(100) }) >= 200, 'two-byte strings count double');
  t.ok(estimateBytes([1, 2, 3]) > estimateBytes([]));
  t.same(splitBudget(400, { verify: 1, account: 1, idp: 1 }), { verify: 100, account: 200, idp: 100 });
  t.same(splitBudget(400, { verify: 1, account: 1, idp: 0 }), { verify: 133, account: 266, idp: 0 }, 'an idle cache gives its share away');
  t.same(splitBudget(400, { verify: 0, account: 0, idp: 0 }), { verify: 0, account: 0, idp: 0 });
});

function account(over: Partial<Account['mailbox']> = {}, apps: Account['appPasswords'] = []): Account {
  return {
    mailbox: {
      username: 'a@x.test', password: '{SSHA256}h1', name: 'A', description: '', quota: 0, localPart: 'a', domain: 'x.test',
      attributes: { imap_access: '1' }, kind: '', authsource: 'mailcow', active: 1, created: '', modified: null, domainActive: 1,
      ...over,
    },
    appPasswords: apps,
  };
}
const access = { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 };
const app = { id: 7, name: 'phone', mailbox: 'a@x.test', domain: 'x.test', password: '{SSHA256}app', active: 1, access, created: '' };
const state = (over: Partial<CredentialState> = {}): CredentialState => ({
  password: '{SSHA256}h1', active: 1, domainActive: 1, authsource: 'mailcow',
  appPasswords: [{ id: 7, password: '{SSHA256}app', access }], ...over,
});

t.test('compactAccount keeps every value a login reads (it shares equal strings)', async (t) => {
  // Fresh string copies, as the driver hands them out per row.
  const copy = (x: string): string => [...x].join('');
  const a = account({}, [app]);
  const b = account({ username: copy(a.mailbox.username), domain: copy(a.mailbox.domain), authsource: copy(a.mailbox.authsource) }, [app]);
  const before = structuredClone(b);
  t.equal(compactAccount(b, copy(b.mailbox.username)), b, 'changed in place');
  t.same(b, before);
  const other = account({ username: 'someone@else.test', domain: 'else.test' }, []);
  compactAccount(other, 'Someone@Else.test');
  t.equal(other.mailbox.attributes, b.mailbox.attributes, 'equal login attributes are one shared object');
  t.equal(other.mailbox.username, 'someone@else.test', 'the stored spelling stays when the login spelled it otherwise');
  t.equal(other.mailbox.domain, 'else.test');
});

t.test('compactAccount keeps only the login attributes, frozen and shared', async (t) => {
  const full = {
    imap_access: '1', pop3_access: 0, smtp_access: '1', sieve_access: '0', eas_access: '1', dav_access: '1', attribute_hash: 'abc',
    tls_enforce_in: '0', quarantine_notification: 'hourly', relayhost: '0', mailbox_format: 'maildir:', passwd_update: '2024-01-01',
  };
  const a = compactAccount(account({ attributes: { ...full } }), 'a@x.test');
  t.same(a.mailbox.attributes, { imap_access: '1', pop3_access: 0, smtp_access: '1', sieve_access: '0', eas_access: '1', dav_access: '1', attribute_hash: 'abc' });
  t.ok(Object.isFrozen(a.mailbox.attributes), 'a shared object cannot be changed through one account');
  const b = compactAccount(account({ attributes: { ...full, relayhost: '5' } }), 'a@x.test');
  t.equal(b.mailbox.attributes, a.mailbox.attributes, 'differences outside the login attributes do not matter');
  const c = compactAccount(account({ attributes: { ...full, imap_access: '0' } }), 'a@x.test');
  t.not(c.mailbox.attributes, a.mailbox.attributes);
  t.equal(c.mailbox.attributes.imap_access, '0');
  const d = compactAccount(account({ attributes: {} }), 'a@x.test');
  t.same(d.mailbox.attributes, {}, 'absent keys stay absent (a missing flag refuses, as in mailcow)');
});

t.test('accountIsCurrent: every credential field counts', async (t) => {
  const a = account({}, [app]);
  t.ok(accountIsCurrent(a, state()));
  const changed: Array<[string, CredentialState]> = [
    ['mailbox hash', state({ password: '{SSHA256}h2' })],
    ['mailbox active', state({ active: 0 })],
    ['domain active', state({ domainActive: 0 })],
    ['authsource', state({ authsource: 'keycloak' })],
    ['app password removed', state({ appPasswords: [] })],
    ['app password added', state({ appPasswords: [{ id: 7, password: '{SSHA256}app', access }, { id: 8, password: 'x', access }] })],
    ['app password hash', state({ appPasswords: [{ id: 7, password: '{SSHA256}other', access }] })],
    ['app password access', state({ appPasswords: [{ id: 7, password: '{SSHA256}app', access: { ...access, imap: 0 } }] })],
    ['app password replaced', state({ appPasswords: [{ id: 9, password: '{SSHA256}app', access }] })],
  ];
  for (const [what, s] of changed) t.notOk(accountIsCurrent(a, s), `${what} changed → reload`);
});

t.test('with revalidation, "no such user" is cached and confirmed like any entry', async (t) => {
  const clock = fakeClock();
  const db = new Map<string, Row>();
  const load = counting(db);
  const cache = createAccountCache<Row>({ maxEntries: 10, maxBytes: 1 << 20, ttlMs: 60_000, clock });
  const get = cache.wrap(load, {
    probe: async (key) => {
      const r = db.get(key);
      return r ? { hash: r.hash } : null;
    },
    isCurrent: (row, state) => row.hash === state.hash,
  });
  t.equal(await get('new@x.test', signal), null);
  t.equal(await get('new@x.test', signal), null);
  t.equal(load.calls, 1, 'the second miss was answered by the probe alone');
  db.set('new@x.test', { user: 'new@x.test', hash: 'h' });
  t.same(await get('new@x.test', signal), { user: 'new@x.test', hash: 'h' }, 'created: found on the very next lookup');
  t.equal(cache.dump().length, 1, 'dump lists only real rows');
});

t.test('expired entries are swept every quarter TTL, not only when touched', async (t) => {
  const clock = fakeClock();
  const cache = createAccountCache<Row>({ maxEntries: 100, maxBytes: 1 << 20, ttlMs: 1000, clock });
  const get = cache.wrap(async (k) => ({ user: k, hash: 'h' }));
  for (const u of ['a', 'b', 'c']) await get(u, signal);
  t.equal(cache.stats().entries, 3);
  clock.advance(1000);
  await get('c2', signal);
  t.equal(cache.stats().entries, 1, 'a, b and c expired and went with the next insert');
  // d arrives just after that sweep and expires at +2001. With inserts every 100 ms it must
  // be gone a quarter TTL later (a sweep once per TTL would keep it until +3000).
  clock.advance(1);
  await get('d', signal);
  const kept: boolean[] = [];
  for (let i = 1; i <= 13; i++) {
    clock.advance(i === 1 ? 99 : 100); // inserts at +1100, +1200, … +2300
    await get(`e${i}`, signal);
    kept.push(cache.dump().some(([k]) => k === 'd'));
  }
  t.equal(kept[8], true, 'still held before it expired (+1900)');
  t.equal(kept[12], false, 'swept at most a quarter TTL after expiry (+2300)');
});
