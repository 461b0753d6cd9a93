/**
 * Decisions under a deadline, with the timing shared by the requests that start
 * in the same millisecond: one AbortController and one timer per slot instead of
 * per request. At 15,000 cached logins/s an AbortController, a setTimeout/clearTimeout
 * pair and a Promise.race per request cost ~5 µs of a ~60 µs login (issue 4).
 * A request's deadline is thus `ms` to `ms` + 1 after its start.
 *
 * No Promise.race against a long-lived timeout promise either: every race would keep
 * a reaction (and the settled request) attached to it until the slot expires. A
 * request registers its own settle function with the slot and removes it when done.
 */

import { setMaxListeners } from 'node:events';

interface Slot<R> {
  /** performance.now() millisecond the slot belongs to. */
  ms: number;
  controller: AbortController;
  pending: Set<(r: R) => void>;
  timer: NodeJS.Timeout | null;
}

export interface DeadlineRunner<R> {
  /**
   * `fn`'s answer, or `expired` when the deadline passes first (the signal is then
   * aborted); a throw becomes `onThrow(err)`.
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T>, onThrow: (err: unknown) => R): Promise<T | R>;
}

/**
 * When a signal handed out by a deadline runner aborts, in performance.now() milliseconds:
 * the hash queue (hash-limit.ts) refuses at once a check that could not finish before it.
 */
const deadlines = new WeakMap<AbortSignal, number>();

export function deadlineOf(signal: AbortSignal | undefined): number | undefined {
  return signal === undefined ? undefined : deadlines.get(signal);
}

export function deadlineRunner<R>(ms: number, expired: R): DeadlineRunner<R> {
  let current: Slot<R> | null = null;

  // A slot whose requests have all finished is dropped with its timer, so at most the current
  // slot and those with requests still running are kept (not one per millisecond of the last
  // `ms`: at 5 s and 1,000 slots a second that was 5,000 timers firing into empty slots).
  function release(s: Slot<R>): void {
    if (s.pending.size > 0 || s === current || s.timer === null) return;
    clearTimeout(s.timer);
    s.timer = null;
  }

  function slot(): Slot<R> {
    const now = Math.floor(performance.now());
    if (current !== null && current.ms === now) return current;
    const previous = current;
    const s: Slot<R> = { ms: now, controller: new AbortController(), pending: new Set(), timer: null };
    deadlines.set(s.controller.signal, now + ms + 1);
    // Every request of the slot may listen on the shared signal (IdP and LDAP waits): no leak warning at 11.
    setMaxListeners(0, s.controller.signal);
    s.timer = setTimeout(() => {
      s.timer = null;
      if (current === s) current = null;
      s.controller.abort();
      for (const settle of s.pending) settle(expired);
      s.pending.clear();
    }, ms + 1);
    // unref: a slot that outlived its requests must not hold the process open.
    s.timer.unref();
    current = s;
    if (previous !== null) release(previous);
    return s;
  }

  return {
    run<T>(fn: (signal: AbortSignal) => Promise<T>, onThrow: (err: unknown) => R): Promise<T | R> {
      const s = slot();
      return new Promise<T | R>((resolve) => {
        let done = false;
        const settle = (r: T | R): void => {
          if (done) return;
          done = true;
          s.pending.delete(settle);
          release(s);
          resolve(r);
        };
        s.pending.add(settle);
        let work: Promise<T>;
        try {
          work = fn(s.controller.signal);
        } catch (err) {
          work = Promise.reject(err);
        }
        work.then(settle, (err: unknown) => settle(onThrow(err)));
      });
    },
  };
}
