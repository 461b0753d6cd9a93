/** The outage: section (issue 21): defaults, conversions, and bad values refused with the key named. */
import t from 'tap';
import { buildConfig } from '../../src/config/index.js';
import { MailauthError } from '../../src/errors.js';

const base = { database: { url: 'mysql://mailauth@127.0.0.1:3306/mailcow' } };

t.test('defaults', async (t) => {
  const c = buildConfig(base, { env: {} });
  t.same(c.outage, { failures: 3, backoffMs: 500, maxBackoffMs: 2000, jitter: 0.2, readyTimeoutMs: 1000, logSummaryMs: 30_000 });
});

t.test('values and units', async (t) => {
  const c = buildConfig({ ...base, outage: { failures: 5, backoff: '1s', max_backoff: '1m', jitter: 0, ready_timeout: '250ms', log_summary: '0s' } }, { env: {} });
  t.same(c.outage, { failures: 5, backoffMs: 1000, maxBackoffMs: 60_000, jitter: 0, readyTimeoutMs: 250, logSummaryMs: 0 });
  const capped = buildConfig({ ...base, outage: { backoff: '10s', max_backoff: '1s' } }, { env: {} });
  t.equal(capped.outage.maxBackoffMs, 10_000, 'a cap below the first period is raised to it');
});

for (const [key, value] of [
  ['failures', 0],
  ['jitter', 1.5],
  ['backoff', '5ms'],
  ['ready_timeout', '2h'],
  ['nonsense', 1],
] as const) {
  t.test(`outage.${key}: ${value} is refused`, async (t) => {
    let err: unknown = null;
    try {
      buildConfig({ ...base, outage: { [key]: value } }, { env: {} });
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof MailauthError, 'refused');
    t.equal((err as MailauthError).code, 'ERR_CONFIG_INVALID');
    t.match((err as MailauthError).message, `outage.${key}`, 'names the key');
  });
}
