/**
 * Part 3: the daemon's memory with 100,000 cached entries: 100,000 distinct
 * users (SSHA256) log in once each, as fast as 32 connections go, filling the
 * verify cache; the account cache holds what its TTL (10 s) and bounds allow.
 * Three runs: as the systemd unit runs it (bin/mailauth bounds V8's heap growth
 * to 25 %, the unit's NODE_OPTIONS bound the young generation); bin/mailauth
 * alone (V8's default young generation); and V8's own heap growth as well
 * (--heap-growing-percent=0), which lets the heap grow to several times its
 * live size during the burst.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Fixture } from './fixtures.js';
import { DOMAIN, insertMailboxes, ssha256 } from './fixtures.js';
import { runLoad } from './load.js';
import { ROOT, scrape, startDaemon } from './processes.js';
import { fmt, table } from './report.js';

/** The NODE_OPTIONS the shipped unit sets, so the first row measures what packagers run. */
function unitNodeOptions(): string {
  const unit = readFileSync(join(ROOT, 'systemd/mailauth.service'), 'utf8');
  const m = /^Environment=NODE_OPTIONS=(.+)$/m.exec(unit);
  if (!m?.[1]) throw new Error('systemd/mailauth.service sets no NODE_OPTIONS');
  return m[1].trim();
}

export async function memory(f: Fixture, o: { users: number; log: (s: string) => void; env?: Record<string, string> }): Promise<string> {
  o.log(`  adding ${fmt(o.users)} mailboxes…`);
  const users = Array.from({ length: o.users }, (_, i) => ({ user: `mem${i}@${DOMAIN}`, password: `bench-mem-password-${i}` }));
  await insertMailboxes(f.db, users.map((u) => ({ user: u.user, hash: ssha256(u.password) })));
  const bodies = users.map((u, i) => JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }));
  const rows: string[][] = [];
  const unitOptions = unitNodeOptions();
  const variants: Array<{ label: string; env?: Record<string, string>; nodeArgs?: string[] }> = [
    { label: `as systemd/mailauth.service runs it (NODE_OPTIONS=${unitOptions})`, env: { NODE_OPTIONS: unitOptions } },
    { label: "bin/mailauth without the unit's NODE_OPTIONS" },
    { label: 'and V8 heap growth too (--heap-growing-percent=0)', nodeArgs: ['--heap-growing-percent=0'] },
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
