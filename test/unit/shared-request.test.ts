/**
 * src/idp/shared-request.ts: one outbound request shared by callers with their own deadlines,
 * given up once every caller has (issue 16's IdP fault suite found the hung shared requests).
 */
import t from 'tap';
import { createSharedRequest } from '../../src/idp/shared-request.js';

const late = (): Error => Object.assign(new Error('late'), { code: 'LATE' });

/** A request the test answers (or never answers) by hand; records the signal it was given. */
function manual<T>() {
  const started: { signal: AbortSignal; resolve(v: T): void; reject(e: unknown): void }[] = [];
  const start = (signal: AbortSignal): Promise<T> => new Promise<T>((resolve, reject) => started.push({ signal, resolve, reject }));
  return { started, start };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

t.test('concurrent callers share one request', async (t) => {
  const m = manual<number>();
  const s = createSharedRequest(m.start, late);
  const a = s.join(AbortSignal.timeout(5000));
  const b = s.join(AbortSignal.timeout(5000));
  await Promise.resolve();
  t.equal(m.started.length, 1, 'one request');
  m.started[0]?.resolve(7);
  t.same(await Promise.all([a, b]), [7, 7]);
  t.equal(s.running, false, 'forgotten once answered');
  const c = s.join();
  await Promise.resolve();
  t.equal(m.started.length, 2, 'the next caller starts a new one');
  m.started[1]?.resolve(8);
  t.equal(await c, 8);
});

t.test('every caller gave up: the request is aborted and forgotten; the next caller asks again', async (t) => {
  const m = manual<number>();
  const s = createSharedRequest(m.start, late);
  const c1 = new AbortController();
  const c2 = new AbortController();
  const a = s.join(c1.signal);
  const b = s.join(c2.signal);
  await Promise.resolve();
  c1.abort();
  t.match(await rejection(a), { code: 'LATE' }, 'the first caller gets the late error');
  t.equal(m.started[0]?.signal.aborted, false, 'another caller still waits: the request goes on');
  c2.abort();
  t.match(await rejection(b), { code: 'LATE' });
  t.equal(m.started[0]?.signal.aborted, true, 'the last one gave up: the request is aborted');
  t.equal(s.running, false);
  m.started[0]?.reject(new Error('aborted')); // nobody listens any more: no unhandled rejection
  const c = s.join(AbortSignal.timeout(5000));
  await Promise.resolve();
  t.equal(m.started.length, 2, 'a new request');
  m.started[1]?.resolve(9);
  t.equal(await c, 9);
});

t.test('a caller without a deadline keeps the request', async (t) => {
  const m = manual<number>();
  const s = createSharedRequest(m.start, late);
  const patient = s.join();
  const ctl = new AbortController();
  const hasty = s.join(ctl.signal);
  await Promise.resolve();
  ctl.abort();
  t.match(await rejection(hasty), { code: 'LATE' });
  t.equal(m.started[0]?.signal.aborted, false, 'not aborted while a patient caller waits');
  m.started[0]?.resolve(3);
  t.equal(await patient, 3);
});

t.test('an already aborted signal is refused without starting anything; failures reach every caller', async (t) => {
  const m = manual<number>();
  const s = createSharedRequest(m.start, late);
  t.match(await rejection(s.join(AbortSignal.abort())), { code: 'LATE' });
  t.equal(m.started.length, 0);
  const a = s.join(AbortSignal.timeout(5000));
  const b = s.join();
  await Promise.resolve();
  m.started[0]?.reject(new Error('boom'));
  t.match(await rejection(a), { message: 'boom' });
  t.match(await rejection(b), { message: 'boom' });
  t.equal(s.running, false, 'a failed request is forgotten');
});
