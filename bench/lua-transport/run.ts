/**
 * Which transport should lua/mailauth.lua use? Measures, through a private
 * Dovecot (auth cache off, so every login runs the Lua passdb), against a
 * fixed-answer HTTP stub in its own process:
 *
 *   baseline        a Lua passdb that answers OK without any HTTP (Dovecot's own cost)
 *   builtin-tcp     the script's own HTTP/1.1 client on a luasocket TCP socket, kept alive
 *   builtin-unix    the same on a luasocket Unix socket
 *   luasocket-tcp   luasocket's socket.http over TCP, one connection per lookup
 *   luasocket-unix  socket.http over a Unix socket, one connection per lookup
 *   dovecot-http    dovecot.http, one client per Lua state, kept-alive connection
 *
 * Latency: sequential PLAIN logins (one in flight), median and p99 per round.
 * Throughput: CONCURRENCY logins in flight on auth_worker_max_count = WORKERS.
 * All instances run side by side and each round measures every transport in turn;
 * each figure is the median over ROUNDS rounds. Needs root and Dovecot (like the e2e tests).
 *
 *   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import bench/lua-transport/run.ts [rounds]
 *
 * Environment: ROUNDS (5), LATENCY_N (1000), THROUGHPUT_N (4000), CONCURRENCY (16), WORKERS (16).
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { dovecotMissing, startDovecot } from '../../test/helpers/dovecot.js';
import type { DovecotInstance, LuaSettings } from '../../test/helpers/dovecot.js';
import { openAuthClient } from '../lib/auth-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const num = (v: string | undefined, d: number) => (v && Number.isFinite(Number(v)) ? Number(v) : d);
const ROUNDS = num(process.argv[2] ?? process.env.ROUNDS, 5);
const LATENCY_N = num(process.env.LATENCY_N, 1000);
const THROUGHPUT_N = num(process.env.THROUGHPUT_N, 4000);
const CONCURRENCY = num(process.env.CONCURRENCY, 16);
const WORKERS = num(process.env.WORKERS, 16);

interface Variant {
  name: string;
  script?: string;
  lua: (stub: { url: string; socketPath: string }) => LuaSettings;
}

const VARIANTS: Variant[] = [
  { name: 'baseline (no HTTP)', script: join(here, 'noop.lua'), lua: (s) => ({ url: s.url }) },
  { name: 'builtin-tcp (keep-alive)', lua: (s) => ({ url: s.url, httpClient: 'builtin' }) },
  { name: 'builtin-unix (keep-alive)', lua: (s) => ({ url: `unix:${s.socketPath}`, httpClient: 'builtin' }) },
  { name: 'luasocket-tcp', lua: (s) => ({ url: s.url, httpClient: 'luasocket' }) },
  { name: 'luasocket-unix', lua: (s) => ({ url: `unix:${s.socketPath}`, httpClient: 'luasocket' }) },
  { name: 'dovecot-http', lua: (s) => ({ url: s.url, httpClient: 'dovecot' }) },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

async function startStub(socketPath: string): Promise<{ url: string; socketPath: string; stop(): void }> {
  const child = spawn(process.execPath, [...process.execArgv, join(here, 'stub-process.ts'), socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const first = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`stub exited ${code}`)));
  });
  const info = JSON.parse(first) as { url: string; socketPath: string };
  return { ...info, stop: () => child.kill('SIGTERM') };
}

async function measure(dv: DovecotInstance): Promise<{ p50: number; p99: number; rps: number }> {
  const socket = join(dv.dir, 'run/auth-client');
  const check = async (ok: boolean, line: string) => {
    if (!ok) throw new Error(`login failed during the benchmark: ${line}\n${dv.log().split('\n').slice(-10).join('\n')}`);
  };
  // Latency: one request at a time.
  const lat = await openAuthClient(socket);
  const times: number[] = [];
  for (let i = 0; i < LATENCY_N; i++) {
    const t0 = process.hrtime.bigint();
    const a = await lat.auth(`user${i % 50}@bench.test`, 'secret');
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await check(a.ok, a.line);
  }
  lat.close();
  // Throughput: CONCURRENCY in flight.
  const tp = await openAuthClient(socket);
  let issued = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < THROUGHPUT_N) {
        issued += 1;
        const a = await tp.auth(`user${issued % 50}@bench.test`, 'secret');
        await check(a.ok, a.line);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  tp.close();
  return { p50: median(times), p99: quantile(times, 0.99), rps: THROUGHPUT_N / secs };
}

async function main(): Promise<void> {
  const missing = dovecotMissing();
  if (missing) {
    process.stderr.write(`cannot run: ${missing}\n`);
    process.exit(2);
  }
  const teardowns: (() => unknown)[] = [];
  const t = { teardown: (fn: () => unknown) => teardowns.push(fn) };
  const stub = await startStub(join('/tmp', `mailauth-bench-${process.pid}.sock`));
  const rows: string[][] = [];
  try {
    // All instances up at once, then every round measures each transport in turn, so a
    // change in the machine's load during the run hits all of them alike.
    const instances: { v: Variant; dv: DovecotInstance; results: { p50: number; p99: number; rps: number }[] }[] = [];
    for (const v of VARIANTS) {
      const dv = await startDovecot(t, {
        lua: v.lua(stub),
        ...(v.script ? { script: v.script } : {}),
        userdb: 'static',
        workers: WORKERS,
      });
      // Warm-up: start the auth workers and load the script in each.
      const warm = await openAuthClient(join(dv.dir, 'run/auth-client'));
      await Promise.all(Array.from({ length: WORKERS * 4 }, () => warm.auth('warm@bench.test', 'secret')));
      warm.close();
      instances.push({ v, dv, results: [] });
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const inst of instances) inst.results.push(await measure(inst.dv));
      process.stderr.write(`round ${r + 1}/${ROUNDS} done\n`);
    }
    for (const { v, results } of instances) {
      rows.push([
        v.name,
        median(results.map((x) => x.p50)).toFixed(2),
        median(results.map((x) => x.p99)).toFixed(2),
        Math.round(median(results.map((x) => x.rps))).toString(),
      ]);
    }
  } finally {
    stub.stop();
    for (const fn of teardowns.reverse()) await fn();
  }
  const head = ['transport', 'latency p50 ms', 'latency p99 ms', `logins/s (c=${CONCURRENCY})`];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(
    [
      `Dovecot Lua passdb transports: medians of ${ROUNDS} interleaved rounds; ${LATENCY_N} sequential logins, then ${THROUGHPUT_N} at concurrency ${CONCURRENCY}; auth_worker_max_count=${WORKERS}; auth cache off; ${cpus().length} x ${cpu}; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
      '',
      line(head),
      line(widths.map((w) => '-'.repeat(w))),
      ...rows.map(line),
      '',
    ].join('\n'),
  );
}

await main();
