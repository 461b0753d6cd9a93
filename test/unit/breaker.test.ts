/** The circuit breaker and its outage log (src/breaker/), driven through injected time: issue 21. */
import t from 'tap';
import { backoffFor, createBreaker, logOutages } from '../../src/breaker/index.js';
import type { BreakerEvent, BreakerTimers } from '../../src/breaker/index.js';
import { MailauthError, isMailauthError } from '../../src/errors.js';
import { captureLog } from '../helpers/log-capture.js';

const refused = new MailauthError('ERR_DB_UNAVAILABLE', 'database unavailable during select mailbox (ECONNREFUSED)', { details: { dbCode: 'ECONNREFUSED' } });

function fakeTime() {
  let now = 1_000_000;
  const pending = new Map<number, { at: number; fn: () => void; every?: number }>();
  let id = 0;
  const timers: BreakerTimers & { every(fn: () => void, ms: number): unknown } = {
    set(fn, ms) {
      pending.set(++id, { at: now + ms, fn });
      return id;
    },
    every(fn, ms) {
      pending.set(++id, { at: now + ms, fn, every: ms });
      return id;
    },
    clear(h) {
      pending.delete(h as number);
    },
  };
  return {
    clock: { now: () => now },
    timers,
    pending: () => pending.size,
    /** Move time on, firing timers due on the way (in order). */
    async advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...pending.entries()].filter(([, p]) => p.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [k, p] = due;
        now = p.at;
        if (p.every) p.at += p.every;
        else pending.delete(k);
        p.fn();
        await new Promise((r) => setImmediate(r));
      }
      now = end;
    },
  };
}

const settings = { failureThreshold: 3, backoffMs: 100, maxBackoffMs: 1000, jitter: 0 };

t.test('back-off: exponential, capped, jitter within ±fraction', async (t) => {
  t.same([1, 2, 3, 4, 5, 6].map((n) => backoffFor(n, settings, () => 0.5)), [100, 200, 400, 800, 1000, 1000]);
  const j = { ...settings, jitter: 0.2 };
  t.equal(backoffFor(1, j, () => 0), 80, 'low end');
  t.equal(backoffFor(1, j, () => 0.999999), 120, 'high end');
  t.equal(backoffFor(40, j, () => 1), 1200, 'cap plus jitter');
});

t.test('opens after N consecutive failures; a success in between resets the count', async (t) => {
  const time = fakeTime();
  const b = createBreaker({ name: 'database', code: 'ERR_DB_UNAVAILABLE', reason: 'database unavailable', ...settings, clock: time.clock, timers: time.timers });
  b.failure(refused);
  b.failure(refused);
  b.success();
  b.failure(refused);
  b.failure(refused);
  t.ok(b.allow(), 'still closed after 2 consecutive');
  b.failure(refused);
  t.notOk(b.allow(), 'open after the 3rd');
  const err = (() => {
    try {
      b.check();
    } catch (e) {
      return e;
    }
    return null;
  })();
  t.ok(isMailauthError(err, 'ERR_DB_UNAVAILABLE'), 'refused with the coded error');
  t.equal((err as MailauthError).details?.reason, 'circuit_open');
  const s = b.snapshot();
  t.equal(s.state, 'open');
  t.equal(s.up, false);
  t.equal(s.downSince, 1_000_000);
  t.equal(s.lastError?.code, 'ERR_DB_UNAVAILABLE/ECONNREFUSED');
  t.equal(s.nextProbeAt, 1_000_100);
  t.equal(s.refused, 2);
});

t.test('background probe: refused until the period ends, probe failures double the period, first success closes', async (t) => {
  const time = fakeTime();
  let probes = 0;
  let healthy = false;
  const events: BreakerEvent[] = [];
  const b = createBreaker({
    name: 'database',
    code: 'ERR_DB_UNAVAILABLE',
    reason: 'database unavailable',
    ...settings,
    failureThreshold: 1,
    clock: time.clock,
    timers: time.timers,
    probe: async () => {
      probes += 1;
      if (!healthy) throw refused;
    },
  });
  b.onEvent((e) => events.push(e));
  b.failure(refused);
  t.equal(events.length, 1);
  await time.advance(99);
  t.equal(probes, 0, 'no probe before the period ends');
  t.notOk(b.allow(), 'calls refused');
  await time.advance(1);
  t.equal(probes, 1, 'probe at 100 ms');
  t.equal(b.snapshot().backoffMs, 200, 'failed probe: next period 200');
  await time.advance(200);
  t.equal(probes, 2);
  await time.advance(400);
  t.equal(probes, 3);
  await time.advance(800);
  t.equal(probes, 4);
  await time.advance(1000);
  t.equal(probes, 5, 'capped at 1000');
  t.notOk(b.allow(), 'calls still refused: no call is used as a probe');
  healthy = true;
  await time.advance(1000);
  t.equal(probes, 6);
  t.ok(b.allow(), 'closed on the first successful probe');
  const close = events.at(-1);
  t.equal(close?.type, 'close');
  t.equal(close?.type === 'close' ? close.downForMs : 0, 100 + 200 + 400 + 800 + 1000 + 1000);
  t.equal(events.filter((e) => e.type === 'open' && e.first).length, 1, 'one outage');
  t.equal(time.pending(), 0, 'no timer left behind');
  // A new outage starts again from the first period.
  b.failure(refused);
  t.equal(b.snapshot().backoffMs, 100);
  b.close();
  t.equal(time.pending(), 0, 'close() stops the probe timer');
});

t.test('a call failing while the probe runs does not leave the breaker stuck; a stale probe failure does not reopen it', async (t) => {
  const time = fakeTime();
  let settle: { ok: () => void; fail: (e: unknown) => void } | null = null;
  const b = createBreaker({
    name: 'database',
    code: 'ERR_DB_UNAVAILABLE',
    reason: 'database unavailable',
    ...settings,
    failureThreshold: 2,
    clock: time.clock,
    timers: time.timers,
    probe: () => new Promise<void>((ok, fail) => (settle = { ok, fail })),
  });
  b.failure(refused);
  b.failure(refused);
  await time.advance(100);
  t.equal(b.snapshot().state, 'half_open', 'probe running');
  b.failure(refused); // a call that was in flight since before the breaker opened
  t.equal(b.snapshot().state, 'half_open', 'the probe still decides');
  settle!.fail(refused);
  await new Promise((r) => setImmediate(r));
  t.equal(b.snapshot().state, 'open', 'failed probe: open again');
  t.equal(time.pending(), 1, 'with the next probe scheduled');
  await time.advance(200);
  t.equal(b.snapshot().state, 'half_open');
  b.success(); // an in-flight call succeeded: closed
  t.equal(b.snapshot().state, 'closed');
  settle!.fail(refused);
  await new Promise((r) => setImmediate(r));
  t.equal(b.snapshot().state, 'closed', 'the late probe failure counts as one ordinary failure (threshold 2)');
  t.equal(b.snapshot().consecutiveFailures, 1);
});

t.test('without a probe: one caller is let through after the period (half-open)', async (t) => {
  const time = fakeTime();
  const b = createBreaker({ name: 'keycloak', code: 'ERR_IDP_UNAVAILABLE', reason: 'identity provider unavailable', ...settings, failureThreshold: 1, clock: time.clock, timers: time.timers });
  b.failure(refused);
  t.notOk(b.allow());
  await time.advance(100);
  t.ok(b.allow(), 'the first caller after the period is the probe');
  t.notOk(b.allow(), 'the others are refused while it runs');
  b.failure(refused);
  t.equal(b.snapshot().state, 'open', 'failed trial: open again');
  t.equal(b.snapshot().backoffMs, 200);
  await time.advance(200);
  t.ok(b.allow());
  await time.advance(250);
  t.ok(b.allow(), 'a trial that never reported lets another one try after a period');
  b.success();
  t.equal(b.snapshot().state, 'closed');
  t.ok(b.allow());
});

t.test('outage log: one line down (with the cause), a summary per interval with counts, one line back (with the duration)', async (t) => {
  const time = fakeTime();
  const { logger, lines } = captureLog('info');
  let healthy = false;
  const b = createBreaker({
    name: 'database',
    code: 'ERR_DB_UNAVAILABLE',
    reason: 'database unavailable',
    ...settings,
    clock: time.clock,
    timers: time.timers,
    probe: async () => {
      if (!healthy) throw refused;
    },
  });
  logOutages(b, logger, { summaryMs: 1000, what: 'database', timers: time.timers, clock: time.clock });
  for (let i = 0; i < 3; i++) b.failure(refused);
  for (let i = 0; i < 50; i++) b.allow();
  await time.advance(2500);
  healthy = true;
  await time.advance(1000);
  await new Promise((r) => setImmediate(r));
  const msgs = lines.map((l) => l.msg as string);
  t.equal(msgs.filter((m) => m.startsWith('database down')).length, 1, 'one "down" line');
  const down = lines.find((l) => (l.msg as string).startsWith('database down'));
  t.equal(down?.cause, 'ERR_DB_UNAVAILABLE/ECONNREFUSED', 'with the cause');
  t.equal(down?.level, 50, 'at error level');
  const summaries = lines.filter((l) => l.msg === 'database still down');
  t.ok(summaries.length >= 2 && summaries.length <= 3, `a summary per second (${summaries.length})`);
  t.equal(summaries[0]?.refused, 50, 'refused calls counted');
  t.ok((summaries[0]?.failures as number) >= 1, 'failed probes counted');
  const back = lines.filter((l) => l.msg === 'database back');
  t.equal(back.length, 1, 'one "back" line');
  t.ok((back[0]?.downForMs as number) >= 2500, 'with the duration');
  t.notOk(JSON.stringify(lines).includes('"stack"'), 'no stack trace');
  const before = lines.length;
  await time.advance(5000);
  t.equal(lines.length, before, 'no summaries once back');
});
