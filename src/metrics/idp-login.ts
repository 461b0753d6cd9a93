/**
 * Login-path IdP outcomes (issue 7): mailboxes provisioned at first login,
 * provisionings refused, templates re-applied, logins answered from a stale
 * IdP answer. The auth layer keeps plain counters; they are read at scrape time.
 */
import { Counter } from 'prom-client';
import type { Metrics } from './index.js';

export interface IdpLoginCounters {
  provisioned: number;
  provisionRefused: number;
  templateApplied: number;
  staleAnswers: number;
}

export function registerIdpLoginMetrics(metrics: Pick<Metrics, 'registry'>, read: () => IdpLoginCounters): void {
  new Counter({
    name: 'mailauth_idp_login_events_total',
    help: 'IdP logins by event: provisioned (mailbox created at first login), provision_refused (nothing written), template_applied (existing mailbox re-templated), stale_answer (IdP down, a cached answer within cache.idp_stale_for was used)',
    labelNames: ['event'],
    registers: [metrics.registry],
    collect(this: Counter<'event'>) {
      const c = read();
      this.reset();
      this.inc({ event: 'provisioned' }, c.provisioned);
      this.inc({ event: 'provision_refused' }, c.provisionRefused);
      this.inc({ event: 'template_applied' }, c.templateApplied);
      this.inc({ event: 'stale_answer' }, c.staleAnswers);
    },
  });
}
