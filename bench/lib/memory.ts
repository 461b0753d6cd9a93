/**
 * Part 3: the daemon's memory with 100,000 cached entries: 100,000 distinct
 * users (SSHA256) log in once each, as fast as 32 connections go, filling the
 * verify cache; the account cache holds what its TTL (10 s) and bounds allow.
 * Three runs: as shipped (bin/mailauth bounds V8's heap growth to 25 %); with
 * a smaller young generation, which an operator can add through NODE_OPTIONS;
 * and with V8's own heap growth (--heap-growing-percent=0), which lets the heap
 * grow to several times its live size during the burst.
 */
import type { Fixture } from './fixtures.js';
import { DOMAIN, insertMailboxes, ssha256 } from './fixtures.js';
import { runLoad } from './load.js';
import { scrape, startDaemon } from './processes.js';
import { fmt, table } from './report.js';

export async function memory(f: Fixture, o: { users: number; log: (s: string) => void; env?: Record<string, string> }): Promise<string> {
  o.log(`  adding ${fmt(o.users)} mailboxes…`);
  const users = Array.from({ length: o.users }, (_, i) => ({ user: `mem${i}@${DOMAIN}`, password: `bench-mem-password-${i}` }));
  await insertMailboxes(f.db, users.map((u) => ({ user: u.user, hash: ssha256(u.password) })));
  const bodies = users.map((u, i) => JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }));
  const rows: string[][] = [];
  const variants: Array<{ label: string; env?: Record<string, string>; nodeArgs?: string[] }> = [
    { label: 'as shipped' },
    { label: 'NODE_OPTIONS=--max-semi-space-size=4', env: { NODE_OPTIONS: '--max-semi-space-size=4' } },
    { label: 'V8 heap growth (--heap-growing-percent=0)', nodeArgs: ['--heap-growing-percent=0'] },
  ];
  for (const { label, env, nodeArgs } of variants) {
    const daemon = await startDaemon({ databaseUrl: f.url, env: { ...o.env, ...env }, ...(nodeArgs ? { nodeArgs } : {}) });
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const idle = { rss: daemon.rss(), m: await scrape(daemon.url) };
      const r = await runLoad({ url: daemon.url, path: '/v1/passdb', bodies, connections: 32, seconds: 600, amount: bodies.length });
      o.log(`  ${label}: ${fmt(r.requests)} logins in ${fmt(r.seconds, 1)} s`);
      const full = { rss: daemon.rss(), m: await scrape(daemon.url) };
      // A quiet period longer than cache.account_ttl with a trickle of repeat logins (the
      // account cache drops expired entries on inserts; V8 shrinks its heap when idle).
      for (let i = 0; i < 150; i++) {
        const res = await fetch(`${daemon.url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[i] as string });
        await res.arrayBuffer();
        await new Promise((done) => setTimeout(done, 100));
      }
      const settled = { rss: daemon.rss(), m: await scrape(daemon.url) };
      const row = (what: string, x: { rss: number; m: Map<string, number> }, peak = ''): string[] => [
        `${label}: ${what}`,
        fmt(x.m.get('mailauth_cache_entries{cache="verify"}') ?? 0),
        fmt(x.m.get('mailauth_cache_entries{cache="account"}') ?? 0),
        fmt(((x.m.get('mailauth_cache_bytes{cache="verify"}') ?? 0) + (x.m.get('mailauth_cache_bytes{cache="account"}') ?? 0)) / 1048576, 1),
        fmt((x.m.get('nodejs_heap_size_used_bytes') ?? 0) / 1048576),
        fmt(x.rss / 1048576),
        peak,
      ];
      rows.push(row('idle', idle));
      rows.push(row(`right after ${fmt(o.users)} distinct logins (${fmt(r.seconds)} s)`, full));
      rows.push(row('15 s later (account TTL passed)', settled, fmt(daemon.peakRss() / 1048576)));
    } finally {
      await daemon.stop();
    }
  }
  return table(['memory (100,000 distinct logins)', 'verify entries', 'account entries', 'cache MB (est.)', 'heap used MB', 'RSS MB', 'peak RSS MB'], rows);
}
