/**
 * Issue 16: SHA-crypt on worker threads. The pool runs the same function as the
 * in-thread verifier, so every doveadm/libxcrypt SHA-crypt vector must verify
 * through it; and while it hashes, the event loop stays free.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createHashPool, verify } from '../../src/passwords/index.js';

interface Vector { scheme: string; stored: string; password: string }
const vectors = (JSON.parse(readFileSync(new URL('../fixtures/passwords/vectors.json', import.meta.url), 'utf8')) as { vectors: Vector[] }).vectors;
const shaCrypt = vectors.filter((v) => v.scheme === 'SHA512-CRYPT' || v.scheme === 'SHA256-CRYPT');

t.test('every SHA-crypt vector verifies through the pool, and a wrong password does not', async (t) => {
  t.ok(shaCrypt.length >= 4, `${shaCrypt.length} vectors`);
  const pool = createHashPool(2);
  t.teardown(() => pool.close());
  for (const v of shaCrypt) {
    t.equal((await verify(v.stored, v.password, { shaCrypt: pool.shaCrypt })).outcome, 'match', v.stored.slice(0, 24));
    t.equal((await verify(v.stored, `${v.password}x`, { shaCrypt: pool.shaCrypt })).outcome, 'mismatch');
  }
  t.ok(pool.stats().workers <= 2);
});

t.test('the event loop keeps turning while the pool hashes 200,000 rounds', async (t) => {
  const pool = createHashPool(1);
  t.teardown(() => pool.close());
  // Warm the worker first: its start is not what is measured.
  await pool.shaCrypt('sha512', Buffer.from('x'), Buffer.from('salt'), 1000);
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const started = performance.now();
  await pool.shaCrypt('sha512', Buffer.from('password'), Buffer.from('saltsalt'), 200_000);
  const took = performance.now() - started;
  clearInterval(timer);
  t.ok(took > 50, `the hash took ${took.toFixed(0)} ms`);
  // In-thread, the same call blocks the loop for all of `took`.
  t.ok(maxGap < Math.max(100, took / 2), `longest loop gap ${maxGap.toFixed(0)} ms during a ${took.toFixed(0)} ms hash`);
  t.ok(ticks > 3, `${ticks} timer ticks`);
});

t.test('close rejects what is still waiting; a closed pool refuses', async (t) => {
  const pool = createHashPool(1);
  const a = t.rejects(pool.shaCrypt('sha256', Buffer.from('a'), Buffer.from('s'), 300_000), 'running');
  const b = t.rejects(pool.shaCrypt('sha256', Buffer.from('b'), Buffer.from('s'), 1000), 'waiting');
  await pool.close();
  await a;
  await b;
  await t.rejects(pool.shaCrypt('sha256', Buffer.from('c'), Buffer.from('s'), 1000));
});

t.test('the pool works whatever Node flags the process was started with', async (t) => {
  // The daemon started by `node --input-type=module --eval …` handed that flag to its workers,
  // which then ran the CommonJS worker source as ESM and died at every job (issue 16).
  const { execFileSync } = await import('node:child_process');
  const url = new URL('../../src/passwords/index.ts', import.meta.url).href;
  const script = `const { createHashPool } = await import(${JSON.stringify(url)});
const pool = createHashPool(1);
const out = await pool.shaCrypt('sha512', Buffer.from('password'), Buffer.from('saltsalt'), 1000);
await pool.close();
process.stdout.write(out);`;
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const out = execFileSync(process.execPath, [...loader, '--input-type=module', '--eval', script], { env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, encoding: 'utf8' });
  t.match(out, /^[./0-9A-Za-z]{86}$/, 'a SHA512-crypt checksum came back');
});

t.test('a check the pool cannot run is a fault (ERR_HASH_WORKER), not a malformed hash', async (t) => {
  const pool = createHashPool(1);
  await pool.close();
  const stored = shaCrypt.find((v) => v.scheme === 'SHA512-CRYPT')?.stored as string;
  await t.rejects(verify(stored, 'x', { shaCrypt: pool.shaCrypt }), { code: 'ERR_HASH_WORKER' });
});
