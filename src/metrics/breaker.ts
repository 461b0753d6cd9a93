/**
 * The state of each circuit breaker (issue 21), read at scrape time:
 * target = database | keycloak | generic-oidc | … .
 */
import { Counter, Gauge } from 'prom-client';
import type { BreakerSnapshot } from '../breaker/index.js';
import type { Metrics } from './index.js';

const STATE = { closed: 0, open: 1, half_open: 2 } as const;

export function registerBreakerMetrics(metrics: Pick<Metrics, 'registry'>, snapshots: () => BreakerSnapshot[]): void {
  const registers = [metrics.registry];
  const gauge = (name: string, help: string, pick: (s: BreakerSnapshot) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['target'],
      registers,
      collect(this: Gauge<'target'>) {
        this.reset();
        for (const s of snapshots()) this.set({ target: s.name }, pick(s));
      },
    });
  };
  const counter = (name: string, help: string, pick: (s: BreakerSnapshot) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['target'],
      registers,
      collect(this: Counter<'target'>) {
        this.reset();
        for (const s of snapshots()) this.inc({ target: s.name }, pick(s));
      },
    });
  };
  gauge('mailauth_dependency_up', '1 while the dependency is reachable (its circuit breaker closed), else 0', (s) => (s.up ? 1 : 0));
  gauge('mailauth_dependency_down_since_seconds', 'Unix time the current outage began; 0 while up', (s) => (s.downSince === null ? 0 : s.downSince / 1000));
  gauge('mailauth_breaker_state', 'Circuit breaker state: 0 closed, 1 open (calls refused), 2 half-open (probing)', (s) => STATE[s.state]);
  gauge('mailauth_breaker_backoff_seconds', 'The current back-off period; 0 while closed', (s) => s.backoffMs / 1000);
  gauge('mailauth_breaker_consecutive_failures', 'Connection failures/timeouts since the last success', (s) => s.consecutiveFailures);
  counter('mailauth_breaker_failures_total', 'Connection failures and timeouts seen by the breaker', (s) => s.failures);
  counter('mailauth_breaker_refused_total', 'Calls refused at once while the breaker was open', (s) => s.refused);
  counter('mailauth_breaker_openings_total', 'Times the breaker opened (a failed probe opens it again)', (s) => s.openings);
  counter('mailauth_breaker_probes_total', 'Probes run after a back-off period', (s) => s.probes);
  new Gauge({
    name: 'mailauth_dependency_last_error_timestamp_seconds',
    help: 'Unix time of the last failure, labelled with its code (only the last one per target)',
    labelNames: ['target', 'code'],
    registers,
    collect(this: Gauge<'target' | 'code'>) {
      this.reset();
      for (const s of snapshots()) if (s.lastError) this.set({ target: s.name, code: s.lastError.code }, s.lastError.at / 1000);
    },
  });
}
