/**
 * `node --import ./bench/register.mjs bench/throttle.ts [--logins N]`
 *
 * Throttling's cost per login (issue 17), side by side in one run: the same
 * stand-in decision (answers at once, so nothing but the seam is measured) called
 * bare and through src/policy's throttled() with the default limits, over 10,000
 * mailboxes from 10,000 addresses (tables warm and populated). Rows: the warm
 * success path (check + success bookkeeping), a wrong password (check +
 * fingerprint HMAC + three counters), and a refused guess (the check alone).
 * A benchmark, not a test: it prints a table and asserts nothing. Compare with a
 * warm login's ~111 µs of daemon CPU (docs/performance.md); `npm run bench:throttle`
 * measures the same in the full daemon, throttle on against off (bench/throttle-daemon.ts).
 */
import { buildConfig } from '../src/config/index.js';
import { createThrottle, throttled } from '../src/policy/index.js';
import type { Authenticator, PassdbRequest, PassdbResult } from '../src/auth/index.js';

const argv = process.argv.slice(2);
const i = argv.indexOf('--logins');
const LOGINS = i >= 0 ? Number(argv[i + 1]) : 1_000_000;
const USERS = 10_000;

const config = buildConfig({}, { env: {} }).throttle;
const ok: PassdbResult = { result: 'ok', user: 'x' };
const bad: PassdbResult = { result: 'password_mismatch' };
const stub = (answer: PassdbResult): Authenticator => ({ passdb: async () => answer, userdb: async () => ({ result: 'user_unknown' }) });
const reqs: PassdbRequest[] = Array.from({ length: USERS }, (_, n) => ({
  user: `user${n}@example.org`,
  password: `password-${n}`,
  service: 'imap',
  remoteIp: `198.51.${(n >> 8) & 255}.${n & 255}`,
}));

async function time(label: string, auth: Authenticator, n: number, req: (k: number) => PassdbRequest): Promise<number> {
  for (let k = 0; k < 20_000; k++) await auth.passdb(req(k)); // warm-up: JIT and tables
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < n; k++) await auth.passdb(req(k));
  const ns = Number(process.hrtime.bigint() - t0) / n;
  process.stderr.write(`${label}: ${ns.toFixed(0)} ns per login\n`);
  return ns;
}

const rows: [string, number, number][] = [];
for (const [name, answer] of [['warm login (success)', ok], ['wrong password', bad]] as const) {
  const bare = await time(`${name}, bare`, stub(answer), LOGINS, (k) => reqs[k % USERS] as PassdbRequest);
  // Distinct passwords per failure so every one is counted (the worst case for the failure path).
  const throttle = createThrottle({ config });
  const seam = throttled(stub(answer), throttle);
  const withThrottle = await time(`${name}, throttled`, seam, answer === ok ? LOGINS : USERS * 4, (k) => {
    const r = reqs[k % USERS] as PassdbRequest;
    return answer === ok ? r : { ...r, password: `${r.password}-${k}` };
  });
  rows.push([name, bare, withThrottle]);
}
// A refused guess: one address blocked, the check alone answers.
{
  const throttle = createThrottle({ config });
  const seam = throttled(stub(bad), throttle);
  for (let k = 0; k < 200; k++) await seam.passdb({ user: 'victim@example.org', password: `g${k}`, service: 'imap', remoteIp: '203.0.113.9' });
  const refused = await time('refused guess, throttled', seam, LOGINS, (k) => ({ user: 'victim@example.org', password: `g${k}`, service: 'imap', remoteIp: '203.0.113.9' }));
  const bare = await time('refused guess, bare', stub(bad), LOGINS, () => reqs[0] as PassdbRequest);
  rows.push(['refused guess (blocked address)', bare, refused]);
}

const us = (ns: number) => (ns / 1000).toFixed(2);
let text = '| throttle (default limits, 10,000 mailboxes × addresses) | bare µs / login | throttled µs / login | cost of the throttle µs | share of a warm login (111 µs) |\n| --- | ---: | ---: | ---: | ---: |\n';
for (const [name, bare, thr] of rows) text += `| ${name} | ${us(bare)} | ${us(thr)} | ${us(thr - bare)} | ${(((thr - bare) / 1000 / 111) * 100).toFixed(1)} % |\n`;
process.stdout.write(`Node ${process.version}, ${LOGINS} logins per row (failure row: ${USERS * 4})\n${text}`);
