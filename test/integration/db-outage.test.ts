/**
 * Issue 21: the daemon while its database is down, against a private MariaDB
 * (test/helpers/private-mariadb.ts) the test pauses, stops, kills and restarts,
 * under a bounded passdb load (good passwords, wrong passwords, unknown users)
 * on the real `mailauth serve` in a process of its own (CPU time, log bytes and
 * TCP connects are the daemon's alone).
 *
 * Shown: /readyz answers 503 within outage.ready_timeout while the database is
 * paused and while it refuses connections; connection attempts during a refused
 * outage stay bounded by the back-off; CPU per failed login ≤ that of a good
 * one; log bytes per second during an outage within a small multiple of the
 * healthy rate; recovery within one back-off period after the database
 * returns; no wrong `ok` at any point; only internal_failure while it is down.
 * The last subtest is issue 16's fault-suite database case: killed mid-load and
 * restarted, recovered without restarting the daemon, no crash.
 */
import t from 'tap';
import type { Test } from 'tap';
import { hash } from '../../src/passwords/index.js';
import { seedDomain, seedMailbox } from '../helpers/db.js';
import { startDaemonProcess } from '../helpers/daemon-process.js';
import type { DaemonProcess } from '../helpers/daemon-process.js';
import { createLoadAgent, runLoad, timedGet } from '../helpers/passdb-load.js';
import type { Answer, LoadUser } from '../helpers/passdb-load.js';
import { requirePrivateMariadb, startPrivateMariadb } from '../helpers/private-mariadb.js';
import type { PrivateMariadb } from '../helpers/private-mariadb.js';

const READY_TIMEOUT_MS = 500;
const BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 2000;
const JITTER = 0.2;
const RATE = 150; // logins per second, all workers together
const WORKERS = 8;
/**
 * Scheduling slack: the suite runs two files at once on a shared 2-core machine, where a
 * starved event loop adds hundreds of ms to any answer. Still far from what it guards
 * against (readyz hung up to 43 s under load before issue 21; a login waited query_timeout).
 */
const SLACK_MS = 1000;

const OUTAGE = {
  failures: 3,
  backoff: `${BACKOFF_MS}ms`,
  max_backoff: `${MAX_BACKOFF_MS}ms`,
  jitter: JITTER,
  ready_timeout: `${READY_TIMEOUT_MS}ms`,
  log_summary: '1s',
};

interface World {
  m: PrivateMariadb;
  d: DaemonProcess;
  users: LoadUser[];
}

async function world(t: Test): Promise<World> {
  const m = await startPrivateMariadb(t);
  const tdb = await m.createDatabase(t);
  await seedDomain(tdb, 'example.org');
  const users: LoadUser[] = [];
  for (let i = 0; i < 20; i++) {
    const user = `user${i}@example.org`;
    const password = `pw-${i}-Secret`;
    // SSHA256: a cheap hash, so the CPU compared is the daemon's own work, not bcrypt's.
    await seedMailbox(tdb, user, await hash('SSHA256', password));
    users.push({ user, password });
  }
  const d = await startDaemonProcess(t, {
    config: {
      database: { url: tdb.url, pool_size: 4, connect_timeout: '1s', query_timeout: '1s' },
      auth: { deadline: '2s' },
      outage: OUTAGE,
      // The load sends many wrong passwords from one address; the throttle (issue 17) has its own tests.
      throttle: { enabled: false },
      login_log: { flush_interval: '200ms' },
      log: { level: 'info', format: 'json' },
    },
  });
  return { m, d, users };
}

interface Phase {
  answers: Answer[];
  cpu: number;
  logBytes: number;
  connects: number;
  seconds: number;
}

async function phase(w: World, epoch: number, ms: number, during?: (elapsed: () => number) => Promise<void>, until?: Promise<unknown>): Promise<Phase> {
  const agent = createLoadAgent(WORKERS);
  const cpu0 = w.d.cpuSeconds();
  const log0 = w.d.logBytes();
  const conn0 = await w.d.connects();
  const started = performance.now();
  const load = runLoad(agent, { url: w.d.url, users: w.users, rate: RATE, workers: WORKERS, ms, epoch, ...(until ? { until } : {}) });
  if (during) await during(() => performance.now() - started);
  const answers = await load;
  const seconds = (performance.now() - started) / 1000;
  const r = { answers, cpu: w.d.cpuSeconds() - cpu0, logBytes: w.d.logBytes() - log0, connects: (await w.d.connects()) - conn0, seconds };
  await agent.close();
  return r;
}

/** Poll /readyz every `everyMs` until `ms` has passed (from `elapsed`). */
async function pollReady(w: World, elapsed: () => number, fromMs: number, toMs: number, everyMs = 250) {
  const out: { status: number; ms: number; json: Record<string, unknown> | null }[] = [];
  while (elapsed() < fromMs) await new Promise((r) => setTimeout(r, 20));
  while (elapsed() < toMs) {
    out.push(await timedGet(w.d.url, '/readyz'));
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return out;
}

function noWrongOk(t: Test, answers: Answer[], what: string): void {
  const wrong = answers.filter((a) => a.result === 'ok' && a.ask !== 'good');
  t.equal(wrong.length, 0, `${what}: no ok for a wrong password or an unknown user (${answers.length} answers)`);
  const transport = answers.filter((a) => a.status !== 200);
  t.equal(transport.length, 0, `${what}: every request answered 200 (${transport.slice(0, 3).map((a) => a.result).join(', ')})`);
}

/** Waits until a good password gets ok; the time it took, ms. */
async function recovery(w: World, giveUpMs: number): Promise<number> {
  const started = performance.now();
  const u = w.users[0] as LoadUser;
  for (;;) {
    const res = await fetch(`${w.d.url}/v1/passdb`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: '192.0.2.9' }),
    });
    const body = (await res.json()) as { result: string };
    if (body.result === 'ok') return performance.now() - started;
    if (performance.now() - started > giveUpMs) return Infinity;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function backoffNow(w: World): Promise<number> {
  const text = await (await fetch(`${w.d.url}/metrics`)).text();
  const m = /^mailauth_breaker_backoff_seconds\{target="database"\} ([\d.e+-]+)$/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

const perLogin = (p: Phase): number => (p.cpu * 1e6) / Math.max(1, p.answers.length);

async function main(): Promise<void> {
  // ~30 s of load phases, plus a private MariaDB and a daemon run from the sources, which take up to
  // ~30 s to start on a busy 2-core machine: more than the 120 s default would leave on a bad day.
  t.setTimeout(240_000);
  // One private MariaDB and one daemon for the three scenarios, in order (each ends recovered).
  const setup = performance.now();
  const w = await world(t);
  t.comment(`private MariaDB + daemon up in ${((performance.now() - setup) / 1000).toFixed(1)} s`);
  const epoch = performance.now();
  await phase(w, epoch, 1500); // warm-up: JIT, pool, caches

  t.test('refused connections: readyz 503 in time, connects bounded by the back-off, cheap failures, quiet log, recovery in one period', async (t) => {
    const healthy = await phase(w, epoch, 3000);
    noWrongOk(t, healthy.answers, 'healthy');
    t.ok(healthy.answers.filter((a) => a.ask === 'good').every((a) => a.result === 'ok'), 'healthy: every good password ok');
    const readyUp = await timedGet(w.d.url, '/readyz');
    t.equal(readyUp.status, 200, 'ready while the database is up');

    await w.m.stop();
    const stoppedAt = performance.now() - epoch;
    let readies: Awaited<ReturnType<typeof pollReady>> = [];
    let windowConnects = 0;
    const outage = await phase(w, epoch, 5000, async (elapsed) => {
      // The first second opens the breaker; from then on, count the daemon's connection attempts.
      while (elapsed() < 1000) await new Promise((r) => setTimeout(r, 20));
      const c0 = await w.d.connects();
      readies = await pollReady(w, elapsed, 1000, 4800);
      windowConnects = (await w.d.connects()) - c0;
    });
    const after = outage.answers.filter((a) => a.sentAt > stoppedAt);
    noWrongOk(t, outage.answers, 'refused');
    t.same([...new Set(after.map((a) => a.result))], ['internal_failure'], 'refused: only internal_failure');
    const reasons = new Set(after.map((a) => a.reason));
    t.ok(reasons.has('database unavailable'), `reason "database unavailable" (${[...reasons].join(', ')})`);

    t.ok(readies.length >= 3, `readyz polled ${readies.length} times`);
    t.ok(readies.every((r) => r.status === 503), 'readyz 503 while connections are refused');
    const worstReady = Math.max(...readies.map((r) => r.ms));
    t.ok(worstReady <= READY_TIMEOUT_MS + SLACK_MS, `readyz within its timeout (worst ${worstReady.toFixed(0)} ms)`);
    const body = readies.at(-1)?.json as { reason?: string; database?: { up?: boolean; down_since?: string; last_error?: { code?: string } } } | undefined;
    t.equal(body?.reason, 'database unavailable');
    t.equal(body?.database?.up, false);
    t.ok(body?.database?.down_since, 'down since');
    t.equal(body?.database?.last_error?.code, 'ERR_DB_UNAVAILABLE', 'last error');

    // A probe per back-off period at most: the shortest period is backoff·(1-jitter).
    const windowSeconds = 3.8;
    const bound = Math.ceil((windowSeconds * 1000) / (BACKOFF_MS * (1 - JITTER))) + 1;
    t.ok(windowConnects <= bound, `connection attempts in ${windowSeconds} s of outage: ${windowConnects} (bound ${bound}; ${after.length} logins)`);

    const cpuGood = perLogin(healthy);
    const cpuFailed = perLogin(outage);
    t.comment(`CPU per login: healthy ${cpuGood.toFixed(0)} µs, refused ${cpuFailed.toFixed(0)} µs`);
    // Measured on a shared machine with 10 ms CPU ticks: a 25 % margin for noise. Before issue 21 a
    // failed login cost about ten times a good one (the reconnect storm); bench/outage.ts has medians.
    t.ok(cpuFailed <= cpuGood * 1.25, `CPU per failed login ≤ a good one (${cpuFailed.toFixed(0)} vs ${cpuGood.toFixed(0)} µs; 25 % noise margin)`);

    // Per login, so a starved healthy phase (slower answers, fewer logins a second) compares fairly.
    const healthyRate = healthy.logBytes / healthy.seconds;
    const outageRate = outage.logBytes / outage.seconds;
    const healthyPer = healthy.logBytes / Math.max(1, healthy.answers.length);
    const outagePer = outage.logBytes / Math.max(1, outage.answers.length);
    t.comment(`log: healthy ${healthyRate.toFixed(0)} B/s (${healthyPer.toFixed(0)} B/login), refused ${outageRate.toFixed(0)} B/s (${outagePer.toFixed(0)} B/login)`);
    t.ok(outagePer <= 2 * healthyPer, `log bytes per login during the outage ≤ 2× healthy (${(outagePer / healthyPer).toFixed(2)}×)`);
    const lines = w.d.lines();
    t.notOk(lines.some((l) => typeof l.err === 'object' || JSON.stringify(l).includes('"stack"')), 'no stack trace in the log at info');
    t.equal(lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('database down')).length, 1, 'one "database down" line');
    t.ok(lines.filter((l) => l.msg === 'database still down').length >= 2, 'summaries while down');

    const period = await backoffNow(w);
    t.ok(period > 0, `breaker open with a back-off of ${period} ms`);
    await w.m.start();
    const took = await recovery(w, 10_000);
    t.ok(took <= period * (1 + JITTER) + READY_TIMEOUT_MS + SLACK_MS, `recovered in ${took.toFixed(0)} ms (period ${period} ms)`);
    t.equal(lines.filter((l) => l.msg === 'database back').length + w.d.lines().filter((l) => l.msg === 'database back').length >= 1, true, '"database back" line');
    const ready = await timedGet(w.d.url, '/readyz');
    t.equal(ready.status, 200, 'ready again');
    const back = await phase(w, epoch, 1500);
    noWrongOk(t, back.answers, 'back');
    t.ok(back.answers.filter((a) => a.ask === 'good').every((a) => a.result === 'ok'), 'back: every good password ok');
  });

  t.test('paused database: readyz 503 within its timeout under load, only internal_failure, recovery after resume', async (t) => {
    w.m.pause();
    const pausedAt = performance.now() - epoch;
    let readies: Awaited<ReturnType<typeof pollReady>> = [];
    const paused = await phase(w, epoch, 5000, async (elapsed) => {
      readies = await pollReady(w, elapsed, 200, 4800);
    });
    noWrongOk(t, paused.answers, 'paused');
    const after = paused.answers.filter((a) => a.sentAt > pausedAt);
    t.same([...new Set(after.map((a) => a.result))], ['internal_failure'], 'paused: only internal_failure');
    t.ok(readies.length >= 3, `readyz polled ${readies.length} times`);
    t.ok(readies.every((r) => r.status === 503), `readyz 503 while paused (${readies.map((r) => r.status).join(' ')})`);
    const worst = Math.max(...readies.map((r) => r.ms));
    t.ok(worst <= READY_TIMEOUT_MS + SLACK_MS, `readyz within its timeout under load (worst ${worst.toFixed(0)} ms)`);
    // Logins sent while the breaker is open fail at once instead of waiting for query_timeout (1 s).
    const late = after.filter((a) => a.sentAt > pausedAt + 3000).map((a) => a.doneAt - a.sentAt).sort((a, b) => a - b);
    const median = late[Math.floor(late.length / 2)] ?? Infinity;
    t.ok(median < 400, `once the breaker is open, logins fail at once, not after query_timeout (1 s) (median ${median.toFixed(1)} ms, slowest ${late.at(-1)?.toFixed(0)} ms, of ${late.length})`);
    const period = await backoffNow(w);
    w.m.resume();
    const took = await recovery(w, 10_000);
    t.ok(took <= period * (1 + JITTER) + READY_TIMEOUT_MS + SLACK_MS, `recovered in ${took.toFixed(0)} ms after resume (period ${period} ms)`);
  });

  t.test('fault suite (issues 16, 21): database killed mid-load and restarted — only internal_failure while down, recovery without restarting the daemon, no ok for a wrong password, no crash', async (t) => {
    let killedAt = 0;
    let restartedAt = 0;
    let period = 0;
    let recoveredBy = 0;
    let finish = (): void => undefined;
    const done = new Promise<void>((r) => (finish = r));
    // Under load all along: killed after 1.5 s, started again after 4 s (crash recovery takes what it
    // takes on a busy machine), and the load goes on until 2 s past the recovery bound.
    const all = await phase(
      w,
      epoch,
      60_000,
      async (elapsed) => {
        while (elapsed() < 1500) await new Promise((r) => setTimeout(r, 20));
        await w.m.kill();
        killedAt = performance.now() - epoch;
        while (elapsed() < 4000) await new Promise((r) => setTimeout(r, 20));
        period = await backoffNow(w);
        await w.m.start();
        restartedAt = performance.now() - epoch;
        // Recovered within one back-off period of the database's return (plus the probe's own time).
        recoveredBy = restartedAt + period * (1 + JITTER) + READY_TIMEOUT_MS + SLACK_MS;
        await new Promise((r) => setTimeout(r, recoveredBy - restartedAt + 2000));
        finish();
      },
      done,
    );
    noWrongOk(t, all.answers, 'kill/restart');
    const down = all.answers.filter((a) => a.sentAt > killedAt && a.doneAt < restartedAt);
    t.ok(down.length > 100, `${down.length} answers while down`);
    t.same([...new Set(down.map((a) => a.result))], ['internal_failure'], 'only internal_failure while down');
    const end = all.answers.filter((a) => a.sentAt > recoveredBy);
    t.ok(end.length > 50, `${end.length} answers after ${(recoveredBy - restartedAt).toFixed(0)} ms back`);
    const expected = { good: 'ok', wrong: 'password_mismatch', unknown: 'user_unknown' } as const;
    const off = end.filter((a) => a.result !== expected[a.ask]);
    t.same(off.slice(0, 5).map((a) => `${a.ask}: ${a.result}`), [], 'every answer right again after the restart (good ok, wrong password_mismatch, unknown user_unknown)');
    t.ok(end.some((a) => a.ask === 'good') && end.some((a) => a.ask === 'wrong'), 'both good and wrong passwords asked after the restart');
    t.equal((await timedGet(w.d.url, '/healthz')).status, 200, 'the same daemon process still answers (no crash)');
    t.equal((await timedGet(w.d.url, '/readyz')).status, 200, 'ready again');
  });
}

if (requirePrivateMariadb(t)) await main();
