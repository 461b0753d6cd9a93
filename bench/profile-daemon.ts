/**
 * `npm run bench:profile -- [seconds] [ssha|blf|app]`
 * Profiles the daemon under the daemon-alone load (V8 CPU profile written to
 * $PROFILE_DIR, default /tmp/mailauth-profile) and prints the top functions by
 * self time. A tool for finding what is slow, not a benchmark. NODE_EXTRA="--flag …"
 * passes node flags to the daemon (e.g. --heap-growing-percent=0 to compare).
 */
import { readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createFixture } from './lib/fixtures.js';
import { runLoad, warmUp } from './lib/load.js';
import { scrape, startDaemon } from './lib/processes.js';

const seconds = Number(process.argv[2] ?? 10);
const which = process.argv[3] ?? 'ssha';
const dir = process.env.PROFILE_DIR ?? '/tmp/mailauth-profile';
mkdirSync(dir, { recursive: true });
const log = (s: string) => process.stderr.write(`${s}\n`);
const f = await createFixture({ users: 200, log });
try {
  const users = which === 'app' ? f.app : which === 'blf' ? f.blf : f.ssha;
  const list = users.map((u, i) => JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: `198.51.100.${(i % 250) + 1}` }));
  const d = await startDaemon({ databaseUrl: f.url, config: { log: { level: process.env.LOG_LEVEL ?? 'info', format: 'json' } }, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...(process.env.NODE_EXTRA ? process.env.NODE_EXTRA.split(' ') : [])] });
  try {
    await warmUp(d.url, '/v1/passdb', list, 8, { status: 200, result: 'ok' });
    const cpu0 = d.cpuSeconds();
    const r = await runLoad({ url: d.url, path: '/v1/passdb', bodies: list, connections: 32, seconds, status: 200 });
    const m = await scrape(d.url);
    for (const [k, v] of m) if (/^mailauth_(db_queries_total|cache_(hits|misses)_total)/.test(k)) log(`  ${k} ${v}`);
    const cpuUs = ((d.cpuSeconds() - cpu0) * 1e6) / r.requests;
    log(`${cpuUs.toFixed(1)} µs daemon CPU per request`);
    log(`${Math.round(r.rps)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms`);
  } finally {
    await d.stop();
  }
} finally {
  await f.drop();
}
const file = readdirSync(dir).filter((n) => n.endsWith('.cpuprofile')).map((n) => join(dir, n)).sort().pop();
if (!file) throw new Error('no profile written');
interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const byFn = new Map<string, number>();
let total = 0;
for (const n of prof.nodes) {
  const t = self.get(n.id) ?? 0;
  total += t;
  const key = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  byFn.set(key, (byFn.get(key) ?? 0) + t);
}
const top = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 45));
for (const [k, t] of top) console.log(`${((t / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
console.log(`profile: ${file}`);
