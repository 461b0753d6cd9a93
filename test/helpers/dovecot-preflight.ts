/**
 * CI pre-flight (`.ci/run` runs it before `npm test`): have a valid Debian 13
 * root (cached, or built now), then start and stop one private instance of
 * each Dovecot version with a login through lua/mailauth.lua against a stub.
 * Prints how long the root took (cached or cold) and exits 1 when either
 * Dovecot cannot be started, so CI fails loudly instead of skipping.
 *
 *   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import test/helpers/dovecot-preflight.ts
 */
import { ensureDebian13Root } from './debian13-root.js';
import { DOVECOT_VERSIONS, dovecotMissing, startDovecot } from './dovecot.js';
import { startPassdbStub } from './passdb-stub.js';

async function main(): Promise<number> {
  let failed = 0;
  const t0 = Date.now();
  try {
    const res = ensureDebian13Root();
    process.stdout.write(`[preflight] Debian 13 root ${res.root}: ${res.how} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  } catch (err) {
    process.stdout.write(`[preflight] Debian 13 root: FAILED after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${(err as Error).message}\n`);
    failed++;
  }
  const teardowns: (() => unknown)[] = [];
  const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };
  try {
    const stub = await startPassdbStub(t, { handler: () => ({ body: { result: 'ok' } }) });
    for (const version of DOVECOT_VERSIONS) {
      const started = Date.now();
      const why = dovecotMissing(version);
      if (why) {
        process.stdout.write(`[preflight] Dovecot ${version}: cannot run: ${why}\n`);
        failed++;
        continue;
      }
      try {
        const dv = await startDovecot(t, { version, lua: { url: stub.url }, userdb: 'static' });
        const line = await dv.imapLogin('preflight@example.org', 'pw');
        if (!/^l OK/.test(line)) throw new Error(`IMAP LOGIN through mailauth.lua answered ${line}\n${dv.log()}`);
        const banner = /Dovecot v(\S+)/.exec(dv.log())?.[1] ?? '?';
        await dv.stop();
        process.stdout.write(`[preflight] Dovecot ${version} (${banner}): started, logged in, stopped in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      } catch (err) {
        process.stdout.write(`[preflight] Dovecot ${version}: FAILED: ${(err as Error).message}\n`);
        failed++;
      }
    }
  } finally {
    for (const fn of teardowns.reverse()) await fn();
  }
  return failed === 0 ? 0 : 1;
}

process.exit(await main());
