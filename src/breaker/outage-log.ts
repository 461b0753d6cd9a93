/**
 * Outage logging for one breaker (issue 21): one line when the dependency goes
 * down (with the cause), a summary every `summaryMs` while it stays down
 * (failures and refused calls since the last line), one line when it is back
 * (with the duration). Per-request faults of an outage then need no line of
 * their own beyond the decision line (stack traces go to debug), so the log
 * grows at about the healthy rate during an outage instead of by kilobytes per
 * failed login.
 */
import type { Logger } from '../logging/index.js';
import type { Breaker, BreakerTimers } from './breaker.js';

export interface OutageLogOptions {
  /** The summary interval while down (0: no summaries). */
  summaryMs: number;
  /** What the lines call it: "database", "identity provider keycloak". */
  what: string;
  timers?: Pick<BreakerTimers, 'clear'> & { every(fn: () => void, ms: number): unknown };
  clock?: { now(): number };
}

const realTimers = {
  every(fn: () => void, ms: number) {
    const h = setInterval(fn, ms);
    h.unref();
    return h;
  },
  clear(h: unknown) {
    clearInterval(h as NodeJS.Timeout);
  },
};

export function logOutages(breaker: Breaker, logger: Logger, opts: OutageLogOptions): { stop(): void } {
  const timers = opts.timers ?? realTimers;
  const clock = opts.clock ?? Date;
  let interval: unknown = null;
  let last = { failures: 0, refused: 0 };

  const stopSummary = (): void => {
    if (interval !== null) timers.clear(interval);
    interval = null;
  };

  breaker.onEvent((e) => {
    if (e.type === 'open') {
      if (!e.first) return;
      const s = breaker.snapshot();
      last = { failures: s.failures, refused: s.refused };
      logger.error(
        { target: e.name, cause: e.error.code, error: e.error.message, failures: e.failures, backoffMs: e.backoffMs },
        `${opts.what} down: refusing calls for a back-off period, probing in the background`,
      );
      if (opts.summaryMs > 0 && interval === null) {
        interval = timers.every(() => {
          const n = breaker.snapshot();
          if (n.up) return;
          logger.warn(
            {
              target: n.name,
              downForMs: n.downSince === null ? 0 : clock.now() - n.downSince,
              failures: n.failures - last.failures,
              refused: n.refused - last.refused,
              cause: n.lastError?.code,
              error: n.lastError?.message,
              backoffMs: n.backoffMs,
            },
            `${opts.what} still down`,
          );
          last = { failures: n.failures, refused: n.refused };
        }, opts.summaryMs);
      }
      return;
    }
    stopSummary();
    logger.info({ target: e.name, downForMs: e.downForMs, failures: e.failures, refused: e.refused }, `${opts.what} back`);
  });
  return { stop: stopSummary };
}
