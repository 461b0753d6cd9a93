import t from 'tap';
import { deadlineRunner } from '../../src/auth/deadline.js';

const EXPIRED: { result: string } = { result: 'expired' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('an answer before the deadline is returned as is; the signal stays quiet', async (t) => {
  const d = deadlineRunner(200, EXPIRED);
  let seen: AbortSignal | undefined;
  const r = await d.run(async (signal) => {
    seen = signal;
    await sleep(5);
    return { result: 'ok' };
  }, () => ({ result: 'threw' }));
  t.same(r, { result: 'ok' });
  t.equal(seen?.aborted, false);
});

t.test('work that outlives the deadline gets the expiry answer, and its signal is aborted', async (t) => {
  const d = deadlineRunner(30, EXPIRED);
  let seen: AbortSignal | undefined;
  let late = false;
  const started = performance.now();
  const r = await d.run(async (signal) => {
    seen = signal;
    await sleep(300);
    late = true;
    return { result: 'ok' };
  }, () => ({ result: 'threw' }));
  t.same(r, EXPIRED);
  t.equal(seen?.aborted, true, 'the work is told to stop');
  t.equal(late, false, 'answered before the work finished');
  // Timers count from the event loop's cached clock: allow it to lag.
  t.ok(performance.now() - started >= 20, 'not long before the deadline');
});

t.test('a rejection and a synchronous throw both become onThrow(err)', async (t) => {
  const d = deadlineRunner(1000, EXPIRED);
  const boom = new Error('boom');
  t.same(await d.run(async () => Promise.reject(boom), (err) => ({ result: err === boom ? 'caught' : 'other' })), { result: 'caught' });
  const sync = (() => {
    throw boom;
  }) as unknown as (s: AbortSignal) => Promise<{ result: string }>;
  t.same(await d.run(sync, (err) => ({ result: err === boom ? 'caught' : 'other' })), { result: 'caught' });
});

t.test('requests sharing a slot expire together; a later slot keeps its own time', async (t) => {
  const d = deadlineRunner(40, EXPIRED);
  const never = () => new Promise<{ result: string }>(() => undefined);
  const a = d.run(never, () => EXPIRED);
  const b = d.run(never, () => EXPIRED);
  await sleep(25);
  let cDone = false;
  const c = d.run(never, () => EXPIRED).then((r) => {
    cDone = true;
    return r;
  });
  t.same(await Promise.all([a, b]), [EXPIRED, EXPIRED]);
  t.equal(cDone, false, 'a request started 25 ms later is still running when the first slot expires');
  t.same(await c, EXPIRED);
});

t.test('a fresh request never joins a slot that has already expired', async (t) => {
  const d = deadlineRunner(20, EXPIRED);
  await d.run(async () => ({ result: 'ok' }), () => EXPIRED);
  await sleep(40);
  t.same(await d.run(async (signal) => ({ result: signal.aborted ? 'aborted' : 'ok' }), () => EXPIRED), { result: 'ok' });
});

t.test('a slot whose requests have all finished is dropped with its timer', async (t) => {
  const d = deadlineRunner(30, EXPIRED);
  let first: AbortSignal | undefined;
  await d.run(async (signal) => ((first = signal), { result: 'ok' }), () => EXPIRED);
  await sleep(3);
  let second: AbortSignal | undefined;
  const slow = d.run(async (signal) => {
    second = signal;
    await sleep(80);
    return { result: 'ok' };
  }, () => EXPIRED);
  await sleep(60);
  t.equal(first?.aborted, false, 'the finished slot never fires');
  t.equal(second?.aborted, true, 'the slot with a request still running does');
  t.same(await slow, EXPIRED);
});
