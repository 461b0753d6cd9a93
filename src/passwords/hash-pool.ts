/**
 * Worker threads for SHA-crypt (issue 16). bcrypt, argon2 and PBKDF2 already run on
 * libuv's pool through their native bindings; SHA-crypt is JavaScript (unix-crypt.ts)
 * and on the event loop a flood of distinct SHA-crypt guesses (64 clients, 5,000
 * rounds) brought the daemon to 67 answers a second and cached logins of others from
 * 5 ms to a median of 544 ms. Here each check runs on one of `size` workers.
 *
 * Why node:worker_threads and not a pool library (piscina): the deadline-aware queue in
 * src/auth/hash-limit.ts already decides what runs when, under auth.hash_concurrency,
 * and never hands this pool more jobs than it has workers; what is left is "post a job
 * to a free worker, resolve on its answer", which is a few lines. A library's own queue,
 * task cancellation and resizing would sit unused behind ours.
 *
 * The worker runs the very function the in-thread verifier runs (shaCryptCore), sent
 * as its source text: no second copy of the algorithm, and no module loader in the
 * worker, so it starts in milliseconds from the built package and from the test
 * sources alike.
 */
import { Worker } from 'node:worker_threads';
import { MailauthError } from '../errors.js';
import { shaCryptCore } from './unix-crypt.js';
import type { ShaCryptRunner } from './unix-crypt.js';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const shaCryptCore = (${shaCryptCore.toString()});
parentPort.on('message', (job) => {
  let answer;
  try {
    answer = { id: job.id, out: shaCryptCore(createHash, job.variant, job.password, job.salt, job.rounds) };
  } catch (err) {
    answer = { id: job.id, error: String((err && err.message) || err) };
  }
  parentPort.postMessage(answer);
});
`;

interface Job {
  id: number;
  variant: 'sha256' | 'sha512';
  password: Uint8Array;
  salt: Uint8Array;
  rounds: number;
  resolve(checksum: string): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
  /** Ends a worker that has not answered its job in time (see JOB_TIMEOUT_MS). */
  watchdog: NodeJS.Timeout | null;
}

/**
 * A check that has not come back after this long ends its worker (the job fails, the slot is
 * freed, a new worker starts on demand): the hash queue's slots must never leak, whatever
 * happens inside a worker. The largest SHA-crypt the hard cap allows (1,000,000 rounds:
 * ~2.4 s) is well below it.
 */
const JOB_TIMEOUT_MS = 15_000;

/**
 * A check the pool could not run is a fault of this process, not a property of the stored hash:
 * verify() passes it on (ERR_HASH_WORKER), and the login is internal_failure "internal error"
 * with the cause in the log, not "malformed hash".
 */
function workerFault(message: string): MailauthError {
  return new MailauthError('ERR_HASH_WORKER', message);
}

export interface HashPoolStats {
  /** Workers started (they start at the first SHA-crypt check and stay). */
  workers: number;
  busy: number;
  queued: number;
}

export interface HashPool {
  readonly size: number;
  /** Pass as verify()'s `shaCrypt` option. */
  shaCrypt: ShaCryptRunner;
  stats(): HashPoolStats;
  /** Ends the workers; checks still queued or running are rejected. */
  close(): Promise<void>;
}

export function createHashPool(size: number): HashPool {
  if (!Number.isInteger(size) || size < 1) throw new RangeError('hash pool size must be a positive integer');
  const slots: Slot[] = [];
  const waiting: Job[] = [];
  let nextId = 1;
  let closed = false;

  function spawn(): Slot {
    // eval'd CommonJS needs no loader. No resourceLimits: tight heaps made workers die under load.
    // execArgv []: a worker inherits the process's Node flags, and under `--input-type=module`
    // (node --eval, as the availability suite starts the daemon) the source ran as ESM, where
    // `require` does not exist: every worker died at its first job and every SHA-crypt login
    // was internal_failure. This was the "hash slot held after a SHA-crypt flood" of issue 16.
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    // Idle workers must not keep a process alive (CLI runs, tests).
    worker.unref();
    const slot: Slot = { worker, job: null, watchdog: null };
    worker.on('message', (m: { id: number; out?: string; error?: string }) => {
      const job = slot.job;
      if (job === null || job.id !== m.id) return;
      slot.job = null;
      if (slot.watchdog) clearTimeout(slot.watchdog);
      slot.watchdog = null;
      if (typeof m.out === 'string') job.resolve(m.out);
      else job.reject(workerFault(`SHA-crypt worker failed: ${m.error ?? 'unknown error'}`));
      pump();
    });
    const gone = (why: string): void => {
      const i = slots.indexOf(slot);
      if (i >= 0) slots.splice(i, 1);
      const job = slot.job;
      slot.job = null;
      if (slot.watchdog) clearTimeout(slot.watchdog);
      slot.watchdog = null;
      job?.reject(workerFault(`SHA-crypt worker ${why}`));
      if (!closed) pump();
    };
    worker.on('error', (err) => gone(`crashed: ${err.message}`));
    worker.on('exit', (code) => gone(`exited with code ${code}`));
    slots.push(slot);
    return slot;
  }

  function pump(): void {
    while (!closed && waiting.length > 0) {
      let slot = slots.find((s) => s.job === null);
      if (slot === undefined) {
        if (slots.length >= size) return;
        slot = spawn();
      }
      const job = waiting.shift() as Job;
      slot.job = job;
      const running = slot;
      slot.watchdog = setTimeout(() => void running.worker.terminate(), JOB_TIMEOUT_MS);
      slot.watchdog.unref();
      slot.worker.ref();
      slot.worker.postMessage({ id: job.id, variant: job.variant, password: job.password, salt: job.salt, rounds: job.rounds });
    }
    // Only workers with a job keep the process alive.
    for (const s of slots) if (s.job === null) s.worker.unref();
  }

  return {
    size,
    shaCrypt(variant, password, salt, rounds) {
      if (closed) return Promise.reject(workerFault('hash pool is closed'));
      return new Promise<string>((resolve, reject) => {
        waiting.push({ id: nextId++, variant, password: Uint8Array.from(password), salt: Uint8Array.from(salt), rounds, resolve, reject });
        pump();
      });
    },
    stats: () => ({ workers: slots.length, busy: slots.filter((s) => s.job !== null).length, queued: waiting.length }),
    async close() {
      closed = true;
      for (const job of waiting.splice(0)) job.reject(workerFault('hash pool is closed'));
      await Promise.all(slots.splice(0).map((s) => s.worker.terminate()));
    },
  };
}
