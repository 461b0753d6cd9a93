/**
 * Part 1: the daemon alone under autocannon (keep-alive, N in flight) on both
 * endpoints, next to a bare node:http server answering a fixed JSON body.
 */
import type { Fixture, BenchUser } from './fixtures.js';
import { runLoad, warmUp } from './load.js';
import type { LoadResult } from './load.js';
import { scrape, startBare, startDaemon } from './processes.js';
import type { Proc } from './processes.js';
import { fmt, median, table } from './report.js';

export interface AloneOptions {
  seconds: number;
  connections: number;
  repeat: number;
  endpoints: Array<'passdb' | 'mailcow'>;
  log: (s: string) => void;
  env?: Record<string, string>;
  /** Extra YAML for every daemon (e.g. log level). */
  config?: Record<string, unknown>;
  /** Only scenarios whose name contains one of these (all when empty). */
  only?: string[];
}

interface Scenario {
  name: string;
  users: (f: Fixture) => BenchUser[];
  password?: (u: BenchUser) => string;
  user?: (u: BenchUser) => string;
  cache: boolean;
  warm: boolean;
  result: string;
  heavy?: boolean;
}

export const SCENARIOS: Scenario[] = [
  { name: 'warm SSHA256', users: (f) => f.ssha, cache: true, warm: true, result: 'ok' },
  { name: 'warm BLF-CRYPT cost 10', users: (f) => f.blf, cache: true, warm: true, result: 'ok', heavy: true },
  { name: 'cold BLF-CRYPT (cache off)', users: (f) => f.blf, cache: false, warm: false, result: 'ok', heavy: true },
  { name: 'wrong password', users: (f) => f.ssha, password: (u) => `${u.password}-wrong`, cache: true, warm: true, result: 'password_mismatch' },
  { name: 'unknown user', users: (f) => f.ssha, user: (u) => `nobody-${u.user}`, cache: true, warm: true, result: 'user_unknown' },
  { name: 'app password (BLF-CRYPT)', users: (f) => f.app, cache: true, warm: true, result: 'ok', heavy: true },
];

export interface Measured extends LoadResult {
  cpuPct: number;
  /** The server's CPU (all threads, user + system) per answered request. */
  cpuUs: number;
  peakRssMb: number;
  elP99Ms: number;
  elMaxMs: number;
}

function bodies(s: Scenario, users: BenchUser[], endpoint: 'passdb' | 'mailcow'): string[] {
  return users.map((u, i) => {
    const user = s.user ? s.user(u) : u.user;
    const password = s.password ? s.password(u) : u.password;
    const ip = `198.51.${(i >> 8) & 255}.${(i & 255) || 1}`;
    return endpoint === 'passdb'
      ? JSON.stringify({ user, password, service: 'imap', remote_ip: ip })
      : JSON.stringify({ username: user, password, real_rip: ip, service: 'imap' });
  });
}

const PATH = { passdb: '/v1/passdb', mailcow: '/' } as const;

/**
 * Busy CPU per request in the calibration rows: what that much work on top of the bare answer
 * costs here, so a ratio goal translates into µs per login on this machine.
 */
const CALIBRATION_US = [15, 40, 60];

async function measure(proc: Proc, path: string, list: string[], o: AloneOptions, status: number, metrics: boolean): Promise<Measured> {
  if (metrics) await scrape(proc.url); // starts prom-client's event-loop window
  const cpu0 = proc.cpuSeconds();
  const t0 = performance.now();
  const r = await runLoad({ url: proc.url, path, bodies: list, connections: o.connections, seconds: o.seconds, status });
  const wall = (performance.now() - t0) / 1000;
  const cpu = proc.cpuSeconds() - cpu0;
  let elP99Ms = NaN;
  let elMaxMs = NaN;
  if (metrics) {
    const m = await scrape(proc.url);
    // prom-client samples every 10 ms and records the whole interval: subtract the period.
    elP99Ms = Math.max(0, ((m.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) - 0.01) * 1000);
    elMaxMs = Math.max(0, ((m.get('nodejs_eventloop_lag_max_seconds') ?? NaN) - 0.01) * 1000);
  }
  return { ...r, cpuPct: (cpu / wall) * 100, cpuUs: r.requests > 0 ? (cpu * 1e6) / r.requests : NaN, peakRssMb: proc.peakRss() / 1024 / 1024, elP99Ms, elMaxMs };
}

export async function daemonAlone(f: Fixture, o: AloneOptions): Promise<{ text: string; rows: Record<string, Measured[]> }> {
  const rows: Record<string, Measured[]> = {};
  const scenarios = SCENARIOS.filter((s) => !o.only?.length || o.only.some((x) => s.name.includes(x)));
  const add = (k: string, m: Measured) => (rows[k] ??= []).push(m);
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const endpoint of o.endpoints) {
      // Calibration (first endpoint only; the bare server ignores the path): the same server
      // burning each of CALIBRATION_US of CPU per request shows what that much work costs here.
      for (const spin of endpoint === o.endpoints[0] ? [0, ...CALIBRATION_US] : [0]) {
        const bare = await startBare(spin);
        try {
          const list = bodies(SCENARIOS[0] as Scenario, f.ssha, endpoint);
          await warmUp(bare.url, PATH[endpoint], list.slice(0, 100), 8, { status: 200 });
          const m = await measure(bare, PATH[endpoint], list, o, 200, false);
          o.log(`  [${rep + 1}/${o.repeat}] ${endpoint} bare node:http${spin ? ` + ${spin} µs busy work` : ''}: ${fmt(m.rps)} req/s p99 ${fmt(m.p99, 2)} ms`);
          add(spin ? `calibration ${spin}|${endpoint}` : `bare|${endpoint}`, m);
        } finally {
          await bare.stop();
        }
      }
      for (const s of scenarios) {
        const cache = s.cache ? {} : { cache: { verify_entries: 0, account_entries: 0 } };
        const daemon = await startDaemon({ databaseUrl: f.url, config: { ...o.config, ...cache }, ...(o.env ? { env: o.env } : {}) });
        try {
          const list = bodies(s, s.users(f), endpoint);
          const status = endpoint === 'mailcow' ? (s.result === 'ok' ? 200 : 401) : 200;
          const expect = endpoint === 'passdb' ? { status, result: s.result } : { status };
          // Warm: every user once (fills the caches). Cold: a short check that answers are right.
          await warmUp(daemon.url, PATH[endpoint], s.warm ? list : list.slice(0, 16), s.heavy ? 8 : o.connections, expect);
          const m = await measure(daemon, PATH[endpoint], list, o, status, true);
          if (m.unexpected > 0 || m.errors > 0) o.log(`  ! ${m.unexpected} unexpected answers, ${m.errors} errors`);
          o.log(
            `  [${rep + 1}/${o.repeat}] ${endpoint} ${s.name}: ${fmt(m.rps)} req/s p50 ${fmt(m.p50, 2)} p99 ${fmt(m.p99, 2)} ms, CPU ${fmt(m.cpuPct)}% (${fmt(m.cpuUs)} µs/req), peak RSS ${fmt(m.peakRssMb)} MB, EL p99 ${fmt(m.elP99Ms, 1)} ms`,
          );
          add(`${s.name}|${endpoint}`, m);
        } finally {
          await daemon.stop();
        }
      }
    }
  }

  const out: string[][] = [];
  for (const endpoint of o.endpoints) {
    const bareRps = median((rows[`bare|${endpoint}`] ?? []).map((m) => m.rps));
    const line = (label: string, ms: Measured[], ratio: boolean, daemon: boolean): string[] => [
      label,
      endpoint === 'passdb' ? 'POST /v1/passdb' : 'POST /',
      fmt(median(ms.map((m) => m.rps))),
      ratio ? fmt(median(ms.map((m) => m.rps)) / bareRps, 2) : '',
      fmt(median(ms.map((m) => m.p50)), 2),
      fmt(median(ms.map((m) => m.p99)), 2),
      fmt(median(ms.map((m) => m.cpuPct))),
      fmt(median(ms.map((m) => m.cpuUs))),
      fmt(median(ms.map((m) => m.peakRssMb))),
      daemon ? fmt(median(ms.map((m) => m.elP99Ms)), 1) : '',
    ];
    out.push(line('bare node:http (fixed 200)', rows[`bare|${endpoint}`] ?? [], false, false));
    for (const spin of CALIBRATION_US) {
      const cal = rows[`calibration ${spin}|${endpoint}`];
      if (cal) out.push(line(`bare + ${spin} µs busy CPU per request`, cal, true, false));
    }
    for (const s of scenarios) out.push(line(s.name, rows[`${s.name}|${endpoint}`] ?? [], true, true));
  }
  const text = table(['daemon alone', 'endpoint', 'req/s', '× bare', 'p50 ms', 'p99 ms', 'CPU %', 'CPU µs / req', 'peak RSS MB', 'EL p99 ms'], out);
  return { text, rows };
}
