/**
 * A bounded passdb load for the outage tests and bench (issue 21): `workers`
 * keep-alive clients at a paced total `rate` for `ms`, each answer recorded with
 * what was asked (good password, wrong password, unknown user) so a test can
 * check that no wrong password or unknown user ever got `ok`.
 */
import { Agent, request } from 'undici';
import { jsonOrNull } from './json-body.js';

export type Ask = 'good' | 'wrong' | 'unknown';

export interface Answer {
  ask: Ask;
  user: string;
  /** ms since the load's epoch when sent and answered. */
  sentAt: number;
  doneAt: number;
  status: number;
  result: string;
  reason?: string;
}

export interface LoadUser {
  user: string;
  password: string;
}

export interface LoadOptions {
  url: string;
  users: readonly LoadUser[];
  /** Requests per second, all workers together. */
  rate: number;
  workers: number;
  ms: number;
  /** Share of wrong passwords and unknown users (the rest are good). */
  wrongShare?: number;
  unknownShare?: number;
  /** performance.now() origin of sentAt/doneAt. */
  epoch: number;
  /** Stop early when this resolves. */
  until?: Promise<unknown>;
  /** remote_ip sent; default 127.0.0.1 (a trusted network of the throttle, issue 17, so a load heavy in wrong passwords is not blocked). */
  remoteIp?: string;
}

export function createLoadAgent(workers: number): Agent {
  return new Agent({ connections: workers, pipelining: 1, keepAliveTimeout: 30_000 });
}

export async function runLoad(agent: Agent, o: LoadOptions): Promise<Answer[]> {
  const answers: Answer[] = [];
  const end = performance.now() + o.ms;
  let stop = false;
  void o.until?.then(() => (stop = true));
  const interval = (1000 * o.workers) / o.rate;
  let n = 0;
  const worker = async (w: number): Promise<void> => {
    let next = performance.now() + (interval * w) / o.workers;
    while (!stop && performance.now() < end) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next += interval;
      if (stop || performance.now() >= end) break;
      const i = n++;
      const u = o.users[i % o.users.length] as LoadUser;
      const pick = (i * 7919) % 100;
      const wrongAt = Math.round((o.wrongShare ?? 0.3) * 100);
      const unknownAt = wrongAt + Math.round((o.unknownShare ?? 0.1) * 100);
      const ask: Ask = pick < wrongAt ? 'wrong' : pick < unknownAt ? 'unknown' : 'good';
      const user = ask === 'unknown' ? `nobody${i}@example.org` : u.user;
      const password = ask === 'good' ? u.password : `${u.password}-wrong`;
      const sentAt = performance.now() - o.epoch;
      try {
        const res = await request(`${o.url}/v1/passdb`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user, password, service: 'imap', remote_ip: o.remoteIp ?? '127.0.0.1' }),
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        });
        const body = (await res.body.json()) as { result?: string; reason?: string };
        answers.push({ ask, user, sentAt, doneAt: performance.now() - o.epoch, status: res.statusCode, result: body.result ?? `http_${res.statusCode}`, ...(body.reason ? { reason: body.reason } : {}) });
      } catch (err) {
        answers.push({ ask, user, sentAt, doneAt: performance.now() - o.epoch, status: 0, result: `transport_${(err as { code?: string }).code ?? 'error'}` });
      }
    }
  };
  await Promise.all(Array.from({ length: o.workers }, (_, w) => worker(w)));
  return answers;
}

/** GET a path, with its latency in ms. */
export async function timedGet(url: string, path: string, timeoutMs = 30_000): Promise<{ status: number; ms: number; json: Record<string, unknown> | null }> {
  const started = performance.now();
  try {
    const res = await request(`${url}${path}`, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    return { status: res.statusCode, ms: performance.now() - started, json: jsonOrNull(text) };
  } catch {
    return { status: 0, ms: performance.now() - started, json: null };
  }
}
