/**
 * Throttle counters (issue 17), read from the throttle's plain stats at scrape time.
 */
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from './index.js';

export interface ThrottleCounters {
  entries: Record<'ip' | 'user' | 'ip_user' | 'familiar', number>;
  refused: Record<'ip' | 'user' | 'ip_user', number>;
  failures: number;
  counted: Record<'ip' | 'user' | 'ip_user', number>;
  blocks: Record<'ip' | 'user' | 'ip_user', number>;
  evictions: number;
}

const SCOPES = ['ip', 'user', 'ip_user'] as const;

export function registerThrottleMetrics(metrics: Pick<Metrics, 'registry'>, read: () => ThrottleCounters): void {
  const registers = [metrics.registry];
  new Counter({
    name: 'mailauth_throttle_refused_total',
    help: 'Login attempts refused by the throttle before any database or hash work, by the counter that refused them (ip, user, ip_user)',
    labelNames: ['scope'],
    registers,
    collect(this: Counter<'scope'>) {
      const s = read();
      this.reset();
      for (const scope of SCOPES) this.inc({ scope }, s.refused[scope]);
    },
  });
  new Counter({
    name: 'mailauth_throttle_failures_total',
    help: 'Failed logins reported to the throttle',
    registers,
    collect(this: Counter) {
      this.reset();
      this.inc(read().failures);
    },
  });
  new Counter({
    name: 'mailauth_throttle_counted_total',
    help: 'Failed logins counted per scope (a password the counter saw among its last eight is not counted again)',
    labelNames: ['scope'],
    registers,
    collect(this: Counter<'scope'>) {
      const s = read();
      this.reset();
      for (const scope of SCOPES) this.inc({ scope }, s.counted[scope]);
    },
  });
  new Counter({
    name: 'mailauth_throttle_blocks_total',
    help: 'Blocks started (a counter reached block_after), by scope',
    labelNames: ['scope'],
    registers,
    collect(this: Counter<'scope'>) {
      const s = read();
      this.reset();
      for (const scope of SCOPES) this.inc({ scope }, s.blocks[scope]);
    },
  });
  new Counter({
    name: 'mailauth_throttle_evictions_total',
    help: 'Counters pushed out by throttle.max_entries before they drained',
    registers,
    collect(this: Counter) {
      this.reset();
      this.inc(read().evictions);
    },
  });
  new Gauge({
    name: 'mailauth_throttle_entries',
    help: 'Counters held, by table (ip, user, ip_user; familiar = remembered successful address+mailbox pairs)',
    labelNames: ['table'],
    registers,
    collect(this: Gauge<'table'>) {
      const s = read();
      this.reset();
      for (const table of [...SCOPES, 'familiar'] as const) this.set({ table }, s.entries[table]);
    },
  });
}
