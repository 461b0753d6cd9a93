/**
 * `npm run bench:outage [-- --before DIR] [--rate N] [--seconds N] [--repeat N]`
 *
 * The daemon while its database is down (issue 21), measured, not asserted: a
 * private MariaDB (test/helpers/private-mariadb.ts), `mailauth serve` in a
 * process of its own (bin/mailauth of a built tree), a paced passdb load
 * (good and wrong passwords, unknown users). Per tree:
 *   healthy      CPU µs per login, log bytes per second and per login
 *   refused      (database stopped) the same, plus TCP connection attempts per
 *                second and /readyz latency
 *   recovery     ms from the database's return to the first `ok`
 *   paused       (SIGSTOP) /readyz latency and status under load
 * With --before DIR (another checkout, built: `npm run build` there), both trees
 * side by side; with --repeat N, medians of N runs per tree (trees alternate, so
 * a busy machine weighs on both alike). Prints a table; asserts nothing.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { hash } from '../src/passwords/index.js';
import { seedDomain, seedMailbox } from '../test/helpers/db.js';
import { REPO, startDaemonProcess } from '../test/helpers/daemon-process.js';
import type { DaemonProcess } from '../test/helpers/daemon-process.js';
import { createLoadAgent, runLoad, timedGet } from '../test/helpers/passdb-load.js';
import type { Answer, LoadUser } from '../test/helpers/passdb-load.js';
import { privateMariadbMissing, startPrivateMariadb } from '../test/helpers/private-mariadb.js';
import { Teardowns } from './lib/teardowns.js';
import type { PrivateMariadb } from '../test/helpers/private-mariadb.js';

const argv = process.argv.slice(2);
const value = (name: string, d: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : d;
};
const RATE = Number(value('rate', '200'));
const SECONDS = Number(value('seconds', '6'));
const WORKERS = 16;
const before = value('before', '');
const REPEAT = Number(value('repeat', '1'));
const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface Figures {
  healthyCpuUs: number;
  healthyLogBps: number;
  healthyLogPerLogin: number;
  healthyRate: number;
  refusedCpuUs: number;
  refusedLogBps: number;
  refusedLogPerLogin: number;
  refusedRate: number;
  refusedConnectsPerS: number;
  refusedConnectsPerLogin: number;
  refusedReadyMs: number[];
  refusedReadyStatus: number[];
  recoveryMs: number;
  pausedReadyMs: number[];
  pausedReadyStatus: number[];
  pausedLoginMedianMs: number;
  wrongOk: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor(s.length / 2)] as number) : NaN;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function measured(d: DaemonProcess, users: LoadUser[], ms: number, during?: () => Promise<void>) {
  const agent = createLoadAgent(WORKERS);
  const cpu0 = d.cpuSeconds();
  const log0 = d.logBytes();
  const c0 = await d.connects();
  const t0 = performance.now();
  const load = runLoad(agent, { url: d.url, users, rate: RATE, workers: WORKERS, ms, epoch: t0 });
  if (during) await during();
  const answers: Answer[] = await load;
  const seconds = (performance.now() - t0) / 1000;
  const r = { answers, seconds, cpu: d.cpuSeconds() - cpu0, logBytes: d.logBytes() - log0, connects: (await d.connects()) - c0 };
  await agent.close();
  return r;
}

async function pollReady(d: DaemonProcess, ms: number): Promise<{ ms: number[]; status: number[] }> {
  const out = { ms: [] as number[], status: [] as number[] };
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const r = await timedGet(d.url, '/readyz', 60_000);
    out.ms.push(r.ms);
    out.status.push(r.status);
    await sleep(500);
  }
  return out;
}

async function firstOk(d: DaemonProcess, u: LoadUser, giveUpMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < giveUpMs) {
    try {
      const res = await fetch(`${d.url}/v1/passdb`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: '127.0.0.1' }),
      });
      if (((await res.json()) as { result: string }).result === 'ok') return performance.now() - t0;
    } catch {
      /* keep asking */
    }
    await sleep(10);
  }
  return Infinity;
}

async function runTree(label: string, root: string): Promise<Figures> {
  log(`\n[${label}] ${root}`);
  const td = new Teardowns();
  try {
    const m: PrivateMariadb = await startPrivateMariadb(td);
    const tdb = await m.createDatabase(td);
    await seedDomain(tdb, 'example.org');
    const users: LoadUser[] = [];
    for (let i = 0; i < 50; i++) {
      const user = `user${i}@example.org`;
      const password = `pw-${i}-Secret`;
      await seedMailbox(tdb, user, await hash('SSHA256', password));
      users.push({ user, password });
    }
    // Defaults everywhere (pool 10, timeouts, outage knobs where the tree has them): keys both trees know.
    const d = await startDaemonProcess(td, { root, dist: true, config: { database: { url: tdb.url }, log: { level: 'info', format: 'json' } } });
    let wrongOk = 0;
    const countWrong = (a: Answer[]): void => void (wrongOk += a.filter((x) => x.result === 'ok' && x.ask !== 'good').length);

    log('  warm-up');
    countWrong((await measured(d, users, 2000)).answers);
    log('  healthy');
    const healthy = await measured(d, users, SECONDS * 1000);
    countWrong(healthy.answers);

    log('  refused (database stopped)');
    await m.stop();
    // Let the first failures happen (a breaker opens), then measure a steady outage.
    countWrong((await measured(d, users, 2000)).answers);
    let refusedReady = { ms: [] as number[], status: [] as number[] };
    const refused = await measured(d, users, SECONDS * 1000, async () => {
      refusedReady = await pollReady(d, SECONDS * 1000 - 500);
    });
    countWrong(refused.answers);

    log('  recovery');
    await m.start();
    const recoveryMs = await firstOk(d, users[0] as LoadUser, 120_000);
    countWrong((await measured(d, users, 2000)).answers);

    log('  paused (SIGSTOP)');
    m.pause();
    let pausedReady = { ms: [] as number[], status: [] as number[] };
    const paused = await measured(d, users, SECONDS * 1000, async () => {
      await sleep(1000);
      pausedReady = await pollReady(d, SECONDS * 1000 - 1500);
    });
    countWrong(paused.answers);
    m.resume();
    await firstOk(d, users[0] as LoadUser, 120_000);

    const per = (p: { cpu: number; answers: Answer[] }): number => (p.cpu * 1e6) / Math.max(1, p.answers.length);
    return {
      healthyCpuUs: per(healthy),
      healthyLogBps: healthy.logBytes / healthy.seconds,
      healthyLogPerLogin: healthy.logBytes / Math.max(1, healthy.answers.length),
      healthyRate: healthy.answers.length / healthy.seconds,
      refusedCpuUs: per(refused),
      refusedLogBps: refused.logBytes / refused.seconds,
      refusedLogPerLogin: refused.logBytes / Math.max(1, refused.answers.length),
      refusedRate: refused.answers.length / refused.seconds,
      refusedConnectsPerS: refused.connects / refused.seconds,
      refusedConnectsPerLogin: refused.connects / Math.max(1, refused.answers.length),
      refusedReadyMs: refusedReady.ms,
      refusedReadyStatus: refusedReady.status,
      recoveryMs,
      pausedReadyMs: pausedReady.ms,
      pausedReadyStatus: pausedReady.status,
      pausedLoginMedianMs: median(paused.answers.filter((a) => a.sentAt > 3000).map((a) => a.doneAt - a.sentAt)),
      wrongOk,
    };
  } finally {
    await td.run();
  }
}

function table(cols: [string, Figures][]): string {
  const f0 = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : '∞');
  const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '∞');
  const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '∞');
  const statuses = (s: number[]): string => [...new Set(s)].join('/') || '-';
  const rows: [string, (f: Figures) => string][] = [
    ['healthy: logins/s answered', (f) => f0(f.healthyRate)],
    ['healthy: daemon CPU µs per login', (f) => f0(f.healthyCpuUs)],
    ['healthy: log bytes/s', (f) => f0(f.healthyLogBps)],
    ['healthy: log bytes per login', (f) => f0(f.healthyLogPerLogin)],
    ['refused: logins/s answered', (f) => f0(f.refusedRate)],
    ['refused: daemon CPU µs per failed login', (f) => f0(f.refusedCpuUs)],
    ['refused: CPU per failed / per good login', (f) => `${f2(f.refusedCpuUs / f.healthyCpuUs)}×`],
    ['refused: connection attempts/s', (f) => f1(f.refusedConnectsPerS)],
    ['refused: connection attempts per login', (f) => f2(f.refusedConnectsPerLogin)],
    ['refused: log bytes/s', (f) => f0(f.refusedLogBps)],
    ['refused: log bytes/s vs healthy', (f) => `${f2(f.refusedLogBps / f.healthyLogBps)}×`],
    ['refused: log bytes per login', (f) => f0(f.refusedLogPerLogin)],
    ['refused: /readyz ms (median / max)', (f) => `${f0(median(f.refusedReadyMs))} / ${f0(Math.max(...f.refusedReadyMs))}`],
    ['refused: /readyz status', (f) => statuses(f.refusedReadyStatus)],
    ['recovery: ms from restart to first ok', (f) => f0(f.recoveryMs)],
    ['paused: /readyz ms (median / max)', (f) => `${f0(median(f.pausedReadyMs))} / ${f0(Math.max(...f.pausedReadyMs))}`],
    ['paused: /readyz status', (f) => statuses(f.pausedReadyStatus)],
    ['paused: login answer ms (median, after 3 s)', (f) => f0(f.pausedLoginMedianMs)],
    ['wrong ok (any phase)', (f) => String(f.wrongOk)],
  ];
  const head = ['', ...cols.map(([n]) => n)];
  const body = rows.map(([name, fn]) => [name, ...cols.map(([, f]) => fn(f))]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((r) => (r[i] as string).length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |`;
  return [line(head), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

const missing = privateMariadbMissing();
if (missing) {
  log(`bench:outage needs a MariaDB server binary: ${missing}`);
  process.exit(1);
}
const trees: [string, string][] = [];
if (before) {
  const root = resolve(before);
  if (!existsSync(resolve(root, 'dist/cli/main.js'))) {
    log(`${root} has no dist/: run npm run build there first`);
    process.exit(1);
  }
  trees.push(['before', root]);
}
trees.push([before ? 'after' : 'this tree', REPO]);
log(`load: ${RATE} logins/s paced over ${WORKERS} keep-alive clients (60 % good, 30 % wrong password, 10 % unknown user); ${SECONDS} s per phase`);
const runs = new Map<string, Figures[]>(trees.map(([label]) => [label, []]));
for (let i = 0; i < REPEAT; i++) for (const [label, root] of trees) runs.get(label)?.push(await runTree(`${label} #${i + 1}`, root));

/** Field by field: the median of numbers; lists (readyz samples) pooled. */
function medianFigures(fs: Figures[]): Figures {
  const first = fs[0] as Figures;
  const out = { ...first } as Record<string, unknown>;
  for (const k of Object.keys(first) as (keyof Figures)[]) {
    const vs = fs.map((f) => f[k]);
    out[k] = Array.isArray(first[k]) ? (vs as number[][]).flat() : median(vs as number[]);
  }
  out.wrongOk = fs.reduce((n, f) => n + f.wrongOk, 0);
  return out as unknown as Figures;
}
const results: [string, Figures][] = trees.map(([label]) => [label, medianFigures(runs.get(label) ?? [])]);
const what = REPEAT > 1 ? `medians of ${REPEAT} runs` : 'one run';
process.stdout.write(`\nDatabase outage (issue 21): ${RATE} logins/s, ${SECONDS} s phases, private MariaDB, daemon with default settings; ${what}\n${table(results)}\n`);
