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
