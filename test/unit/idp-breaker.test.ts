/**
 * Issue 21: the IdP lookups behind the shared circuit breaker (src/breaker/), as the
 * database is: the first period is idp.cooldown, it doubles per failed trial up to the
 * cap, a single trial call at a time, the first success closes it; one "down" line,
 * one "back" line.
 */
import t from 'tap';
import { createIdpLookup } from '../../src/auth/idp-lookup.js';
import { createBreaker, logOutages } from '../../src/breaker/index.js';
import { createIdpCache } from '../../src/cache/index.js';
import { MailauthError } from '../../src/errors.js';
import { captureLog } from '../helpers/log-capture.js';

t.test('IdP down: exponential back-off between trial calls, stale answers meanwhile, first success closes', async (t) => {
  let now = 1_000_000;
  const clock = { now: () => now };
  const { logger, lines } = captureLog('info');
  const breaker = createBreaker({ name: 'idp', code: 'ERR_IDP_UNAVAILABLE', reason: 'identity provider unavailable', failureThreshold: 1, backoffMs: 1000, maxBackoffMs: 4000, jitter: 0, clock });
  logOutages(breaker, logger, { summaryMs: 0, what: 'identity provider' });
  const cache = createIdpCache<{ id: string }>({ maxEntries: 100, maxBytes: 1 << 20, ttlMs: 1000, negativeTtlMs: 1000, staleForMs: 3_600_000, clock });
  let calls = 0;
  let down = false;
  const lookup = createIdpLookup<{ id: string }>({
    cache,
    clock,
    budgetMs: 1000,
    cooldownMs: 1000,
    breaker,
    fetch: async (key) => {
      calls++;
      if (down) throw new MailauthError('ERR_IDP_UNAVAILABLE', 'cannot reach the identity provider (ECONNREFUSED)', { details: { networkCode: 'ECONNREFUSED' } });
      return { value: { id: key } };
    },
  });
  const live = () => new AbortController().signal;
  await lookup.lookup('a@x.test', live());
  now += 2000; // past the TTL: the next lookup asks the IdP
  down = true;
  t.match(await lookup.lookup('a@x.test', live()), { source: 'stale' }, 'the failed call falls back to the stale answer');
  t.equal(calls, 2);
  const trials: number[] = [];
  // Ask every 100 ms for 12 s: the IdP sees one trial per period (1 s, 2 s, 4 s, 4 s …).
  for (let i = 0; i < 120; i++) {
    now += 100;
    const before = calls;
    const r = await lookup.lookup('a@x.test', live()).catch((e: unknown) => e);
    t.ok(r && typeof r === 'object', 'answered');
    if (calls > before) trials.push(now - 1_000_000 - 2000);
  }
  t.same(trials, [1000, 3000, 7000, 11_000], 'trials at 1, 3, 7, 11 s: the period doubles to the 4 s cap');
  down = false;
  now += 4000;
  t.match(await lookup.lookup('a@x.test', live()), { source: 'idp' }, 'the next trial succeeds');
  t.equal(breaker.snapshot().state, 'closed');
  t.equal(lines.filter((l) => String(l.msg).startsWith('identity provider down')).length, 1, 'one "down" line');
  t.equal(lines.filter((l) => l.msg === 'identity provider back').length, 1, 'one "back" line');
  t.equal(lines.find((l) => String(l.msg).startsWith('identity provider down'))?.cause, 'ERR_IDP_UNAVAILABLE/ECONNREFUSED');
});
