/**
 * Issue 16: a fuzz suite. Request bodies, stored hash strings and user names from
 * fast-check: never a crash, never a 5xx, never `ok` without the right password.
 * Fixed seed (reproducible in CI); MAILAUTH_FUZZ_RUNS raises the number of runs and
 * MAILAUTH_FUZZ_SEED picks another seed.
 */
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Test } from 'tap';
import { verify } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { startMailauth } from '../helpers/mailauth-daemon.js';
import { hash } from '../../src/passwords/index.js';

const SEED = Number(process.env.MAILAUTH_FUZZ_SEED ?? 160416);
const RUNS = Number(process.env.MAILAUTH_FUZZ_RUNS ?? 150);
const opts = { seed: SEED, numRuns: RUNS };

/** fast-check's verdict as tap assertions: every run happened, none found a counterexample. */
function judged<T>(t: Test, d: fc.RunDetails<T>, runs: number, what: string): void {
  t.equal(d.numRuns, runs, `${runs} ${what}, seed ${SEED}`);
  t.notOk(d.failed, d.failed ? `counterexample (seed ${SEED}, path ${d.counterexamplePath}): ${fc.stringify(d.counterexample)}${d.errorInstance ? ` — ${String(d.errorInstance)}` : ''}` : `no counterexample in ${what}`);
}

const schemes = ['BLF-CRYPT', 'CRYPT', 'SHA512-CRYPT', 'SHA256-CRYPT', 'MD5-CRYPT', 'SSHA256', 'SSHA512', 'PLAIN', 'ARGON2ID', 'PBKDF2', 'PBKDF2-SHA512', 'NOSUCH', 'SHA', 'PLAIN-MD5', 'CLEAR', 'DES-CRYPT', 'PLAIN-TRUNC'];
const cryptish = fc.oneof(
  fc.string(),
  fc.stringMatching(/^\$[0-9a-z]{1,8}\$[^\n]{0,40}$/),
  fc.tuple(fc.constantFrom('$5$', '$6$'), fc.integer({ min: 0, max: 2_000_000 }), fc.stringMatching(/^[./0-9A-Za-z]{0,20}$/), fc.stringMatching(/^[./0-9A-Za-z]{0,90}$/)).map(([id, r, salt, sum]) => `${id}rounds=${r}$${salt}$${sum}`),
  fc.tuple(fc.constantFrom('$2a$', '$2y$', '$2b$', '$2x$'), fc.integer({ min: 0, max: 40 }), fc.stringMatching(/^[./0-9A-Za-z]{0,60}$/)).map(([v, c, rest]) => `${v}${String(c).padStart(2, '0')}$${rest}`),
);
const stored = fc.oneof(fc.string(), fc.tuple(fc.constantFrom(...schemes), fc.constantFrom('', '.b64', '.hex', '.HEX'), cryptish).map(([s, e, p]) => `{${s}${e}}${p}`));

t.test('stored hash strings: verify never throws and never matches a wrong password', async (t) => {
  const runs = Math.min(RUNS, 400);
  const d = await fc.check(
    fc.asyncProperty(stored, fc.string({ maxLength: 40 }), async (h, pw) => {
      const r = await verify(h, pw);
      if (!['match', 'mismatch', 'malformed', 'unsupported_scheme'].includes(r.outcome)) return false;
      // A random stored value "matching" is only possible for plaintext-like schemes holding exactly pw.
      if (r.outcome === 'match') return ['PLAIN', 'CLEAR', 'CLEARTEXT', 'PLAIN-TRUNC'].includes(r.scheme) || h.includes(pw);
      return true;
    }),
    { ...opts, numRuns: runs },
  );
  judged(t, d, runs, 'stored hashes');
});

t.test('over HTTP: bodies and user names never crash, never 5xx, never ok without the right password', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'fuzz.example');
  const RIGHT = 'Right-Password-16';
  await seedMailbox(tdb, 'victim@fuzz.example', await hash('SSHA256', RIGHT));
  const m = await startMailauth(t, tdb);
  const token = readFileSync(m.tokenFile as string, 'utf8').trim();
  const post = async (body: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${m.url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mailauth-token': token }, body });
    return { status: res.status, text: await res.text() };
  };
  const anyJson = fc.jsonValue({ maxDepth: 3 });
  const body = fc.oneof(
    fc.string().map((s) => s),
    anyJson.map((v) => JSON.stringify(v)),
    fc.record({
      user: fc.oneof(fc.constant('victim@fuzz.example'), fc.constant('VICTIM@fuzz.example'), fc.string(), fc.emailAddress()),
      password: fc.oneof(fc.string(), fc.constant(''), fc.constant(`${RIGHT} `), fc.constant(RIGHT.toLowerCase())),
      service: fc.oneof(fc.constant('imap'), fc.string()),
      remote_ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()),
      password_b64: fc.option(fc.oneof(fc.base64String(), fc.string()), { nil: undefined }),
      mech: fc.option(fc.constantFrom('PLAIN', 'LOGIN', 'XOAUTH2', 'OAUTHBEARER'), { nil: undefined }),
    }).map((o) => JSON.stringify(o)),
  );
  const d = await fc.check(
    fc.asyncProperty(body, async (b) => {
      const r = await post(b);
      if (r.status >= 500) return false;
      let parsed: unknown;
      try {
        parsed = JSON.parse(r.text);
      } catch {
        return false; // every answer is JSON
      }
      const result = (parsed as { result?: string }).result;
      if (result === 'ok') {
        // Only the right password (as text, or as its exact bytes) may pass.
        const o = JSON.parse(b) as { password?: unknown; password_b64?: unknown };
        const bytes = typeof o.password_b64 === 'string' ? Buffer.from(o.password_b64, 'base64').toString('utf8') : o.password;
        return bytes === RIGHT;
      }
      return true;
    }),
    opts,
  );
  judged(t, d, RUNS, 'request bodies');
  t.equal((await fetch(`${m.url}/healthz`)).status, 200, 'still alive');
});
