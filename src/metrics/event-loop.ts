/**
 * Event-loop delay as a Prometheus histogram, fed from perf_hooks'
 * monitorEventLoopDelay. The native histogram records the interval between
 * its timer's runs, which includes the timer period itself; we subtract it so
 * the metric is the delay a request would see. Samples are drained into the
 * cumulative Prometheus histogram at every scrape and every few seconds, so
 * several scrapers can read it without resetting each other's view.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export const EVENT_LOOP_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface EventLoopMonitor {
  /** Move the samples gathered so far into the Prometheus histogram. */
  drain(): void;
  stop(): void;
}

export function monitorEventLoop(registry: Registry, opts: { resolutionMs?: number; drainEveryMs?: number } = {}): EventLoopMonitor {
  const resolutionMs = opts.resolutionMs ?? 10;
  const native: IntervalHistogram = monitorEventLoopDelay({ resolution: resolutionMs });
  native.enable();
  const periodNs = resolutionMs * 1e6;

  const drain = (): void => {
    const total = native.count;
    if (total === 0) return;
    // HDR percentiles come as steps (percentile → value); each step holds its share of the samples.
    let prevP = 0;
    let assigned = 0;
    for (const [p, ns] of native.percentiles) {
      const n = Math.round((total * (p - prevP)) / 100);
      prevP = p;
      const seconds = Math.max(0, ns - periodNs) / 1e9;
      for (let i = 0; i < n && assigned < total; i++, assigned++) histogram.observe(seconds);
    }
    native.reset();
  };

  const histogram: Histogram = new Histogram({
    name: 'mailauth_event_loop_delay_seconds',
    help: 'Event-loop delay (how late a timer ran), sampled every ' + resolutionMs + ' ms',
    buckets: EVENT_LOOP_BUCKETS,
    registers: [registry],
    collect: drain,
  });

  const timer = setInterval(drain, opts.drainEveryMs ?? 5_000);
  timer.unref();
  return {
    drain,
    stop() {
      clearInterval(timer);
      native.disable();
    },
  };
}
