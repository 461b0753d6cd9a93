/**
 * One call to an identity provider, counted and timed. Issue 7's clients wrap
 * each outbound call: `await timeIdpCall(metrics, 'keycloak', 'user_lookup', () => …)`.
 */
import { isMailauthError } from '../errors.js';
import type { Metrics } from './index.js';

type IdpMetrics = Pick<Metrics, 'idpCalls' | 'idpCallDuration' | 'idpErrors'>;

export async function timeIdpCall<T>(m: IdpMetrics, idp: string, operation: string, call: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - start) / 1e9;
  try {
    const v = await call();
    m.idpCalls.inc({ idp, operation, outcome: 'ok' });
    m.idpCallDuration.observe({ idp, operation }, seconds());
    return v;
  } catch (err) {
    m.idpCalls.inc({ idp, operation, outcome: 'error' });
    m.idpCallDuration.observe({ idp, operation }, seconds());
    m.idpErrors.inc({ idp, operation, code: isMailauthError(err) ? err.code : 'unknown' });
    throw err;
  }
}
