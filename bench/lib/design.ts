/**
 * Part 4 (the design choice behind "a changed password counts on the very next
 * login"): the decision alone, in this process, over the real database, 32
 * logins in flight, for four ways of loading the account:
 *   no account cache          every login loads mailbox + app passwords (2 queries)
 *   cache, confirmed, batched what ships: every hit confirmed by findCredentialsMany, shared by concurrent logins
 *   cache, confirmed, 1 by 1  every hit confirmed by its own findCredentials query
 *   cache, TTL only (unsafe)  no confirmation: an old password keeps working for account_ttl
 * CPU time per login (this process) and logins/s.
 */
import { cachedAccountLoader, cachedVerifier, createAuthCaches, createAuthenticator, defaultVerifyHash, dbAccountLoader, accountIsCurrent } from '../../src/auth/index.js';
import type { AccountLoader, Authenticator } from '../../src/auth/index.js';
import { buildConfig } from '../../src/config/index.js';
import { createDb, findCredentials } from '../../src/db/index.js';
import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import type { Fixture } from './fixtures.js';
import { fmt, median, table } from './report.js';

type Variant = 'none' | 'batched' | 'single' | 'ttl';

function build(db: Db, url: string, v: Variant): Authenticator {
  const config = buildConfig({ database: { url }, cache: v === 'none' ? { account_entries: 0 } : {} }, { env: {} });
  const caches = createAuthCaches(config.cache);
  let loadAccount: AccountLoader;
  if (v === 'none') loadAccount = dbAccountLoader(db);
  else if (v === 'batched') loadAccount = cachedAccountLoader(caches.account, db);
  else if (v === 'single') loadAccount = caches.account.wrap(dbAccountLoader(db), { probe: (u) => findCredentials(db, u), isCurrent: accountIsCurrent });
  else loadAccount = caches.account.wrap(dbAccountLoader(db));
  return createAuthenticator({ db, logger: silentLogger(), config: config.auth, loadAccount, verifyHash: cachedVerifier(caches.verify, defaultVerifyHash) });
}

async function measure(a: Authenticator, f: Fixture, seconds: number): Promise<{ rps: number; cpuUs: number }> {
  const reqs = f.ssha.map((u, i) => ({ user: u.user, password: u.password, service: 'imap', remoteIp: `198.51.100.${(i % 250) + 1}` }));
  for (const r of reqs) await a.passdb(r);
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < end) {
        const r = await a.passdb(reqs[n++ % reqs.length] as (typeof reqs)[number]);
        if (r.result !== 'ok') throw new Error(`unexpected ${r.result}`);
      }
    }),
  );
  const c = process.cpuUsage(c0);
  return { rps: n / ((performance.now() - t0) / 1000), cpuUs: (c.user + c.system) / n };
}

export async function design(f: Fixture, o: { seconds: number; repeat: number; log: (s: string) => void }): Promise<string> {
  const variants: Array<[Variant, string]> = [
    ['none', 'no account cache (2 queries per login)'],
    ['batched', 'account cache, every hit confirmed, batched (shipped)'],
    ['single', 'account cache, every hit confirmed, one query each'],
    ['ttl', 'account cache, TTL only (unsafe: old password works until TTL)'],
  ];
  const res = new Map<Variant, Array<{ rps: number; cpuUs: number }>>();
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const [v, label] of variants) {
      const db = createDb({ ...f.dbConfig, poolSize: 10 });
      try {
        const r = await measure(build(db, f.url, v), f, o.seconds);
        (res.get(v) ?? res.set(v, []).get(v))?.push(r);
        o.log(`  [${rep + 1}/${o.repeat}] ${label}: ${fmt(r.rps)} logins/s, ${fmt(r.cpuUs)} µs CPU per login`);
      } finally {
        await db.close();
      }
    }
  }
  return table(
    ['account loading (decision alone, 32 in flight)', 'logins/s', 'µs CPU / login'],
    variants.map(([v, label]) => [label, fmt(median((res.get(v) ?? []).map((r) => r.rps))), fmt(median((res.get(v) ?? []).map((r) => r.cpuUs)))]),
  );
}
