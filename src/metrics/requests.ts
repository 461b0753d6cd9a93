/**
 * The two per-request metrics, kept in plain arrays and maps. prom-client's
 * Counter.inc/Histogram.observe with labels cost ~10 µs per request in the
 * daemon (label validation and hashing, measured in issue 4) — a tenth of a
 * cached login — so the hot path only bumps numbers here, and the registry
 * reads them at scrape time through two metric objects in prom-client's shape.
 */
import type { Metric, Registry } from 'prom-client';

interface Series {
  labels: Record<string, string>;
  n: number;
}

interface Hist {
  endpoint: string;
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export interface RequestMetrics {
  record(endpoint: string, result: string, seconds: number): void;
}

export function registerRequestMetrics(registry: Registry, buckets: readonly number[]): RequestMetrics {
  const series = new Map<string, Series>();
  const hists = new Map<string, Hist>();

  const counter = {
    name: 'mailauth_requests_total',
    help: 'HTTP requests by endpoint and result',
    type: 'counter',
    aggregator: 'sum',
    get: async () => ({
      name: counter.name,
      help: counter.help,
      type: counter.type,
      aggregator: counter.aggregator,
      values: [...series.values()].map((s) => ({ labels: s.labels, value: s.n })),
    }),
    reset: () => series.clear(),
  };
  const histogram = {
    name: 'mailauth_request_duration_seconds',
    help: 'Time from request start to the answer being written',
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
      for (const h of hists.values()) {
        let acc = 0;
        for (let i = 0; i < buckets.length; i++) {
          acc += h.counts[i] ?? 0;
          values.push({ labels: { le: buckets[i] as number, endpoint: h.endpoint }, value: acc, metricName: `${histogram.name}_bucket` });
        }
        values.push({ labels: { le: '+Inf', endpoint: h.endpoint }, value: h.count, metricName: `${histogram.name}_bucket` });
        values.push({ labels: { endpoint: h.endpoint }, value: h.sum, metricName: `${histogram.name}_sum` });
        values.push({ labels: { endpoint: h.endpoint }, value: h.count, metricName: `${histogram.name}_count` });
      }
      return { name: histogram.name, help: histogram.help, type: histogram.type, aggregator: histogram.aggregator, values };
    },
    reset: () => hists.clear(),
  };
  // prom-client's Registry accepts any object of this shape (it is how its own metrics look).
  registry.registerMetric(counter as unknown as Metric);
  registry.registerMetric(histogram as unknown as Metric);

  return {
    record(endpoint, result, seconds) {
      const key = `${endpoint}\u0000${result}`;
      const s = series.get(key);
      if (s) s.n++;
      else series.set(key, { labels: { endpoint, result }, n: 1 });
      let h = hists.get(endpoint);
      if (!h) hists.set(endpoint, (h = { endpoint, counts: new Float64Array(buckets.length + 1), sum: 0, count: 0 }));
      let i = 0;
      while (i < buckets.length && seconds > (buckets[i] as number)) i++;
      h.counts[i] = (h.counts[i] ?? 0) + 1;
      h.sum += seconds;
      h.count++;
    },
  };
}
