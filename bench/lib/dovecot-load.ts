/**
 * Load through Dovecot without IMAP in the way: Dovecot's auth-client protocol,
 * spoken on the instance's auth-client socket exactly as imap-login does
 * (VERSION/CPID handshake, then AUTH lines with the PLAIN mechanism, many in
 * flight per connection). Plus full IMAP LOGINs for the end-to-end figure.
 */
import { connect } from 'node:net';
import { openAuthClient } from './auth-client.js';
import type { AuthClient } from './auth-client.js';
import type { BenchUser } from './fixtures.js';
import { percentile } from './load.js';

export interface RateResult {
  count: number;
  failed: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
}

async function drive(inFlight: number, seconds: number, one: (i: number) => Promise<boolean>): Promise<RateResult> {
  const latencies: number[] = [];
  let failed = 0;
  let next = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        const ok = await one(next++);
        latencies.push(performance.now() - s);
        if (!ok) failed++;
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return { count: latencies.length, failed, seconds: wall, rps: latencies.length / wall, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/** PLAIN auths, `inFlight` at a time over `connections` auth-client connections, cycling through `users`. */
export async function authLoad(socket: string, users: BenchUser[], o: { inFlight: number; connections: number; seconds: number }): Promise<RateResult> {
  const conns = await Promise.all(Array.from({ length: o.connections }, () => openAuthClient(socket)));
  try {
    return await drive(o.inFlight, o.seconds, (i) => {
      const u = users[i % users.length] as BenchUser;
      return (conns[i % conns.length] as AuthClient).auth(u.user, u.password).then((a) => a.ok);
    });
  } finally {
    for (const c of conns) c.close();
  }
}

/** Every user once, `inFlight` at a time; the number that failed. */
export async function authOnce(socket: string, users: BenchUser[], inFlight: number): Promise<number> {
  const conn = await openAuthClient(socket);
  let i = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (i < users.length) {
        const u = users[i++] as BenchUser;
        if (!(await conn.auth(u.user, u.password)).ok) failed++;
      }
    }),
  );
  conn.close();
  return failed;
}

function imapLoginOnce(port: number, user: string, password: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.setEncoding('utf8');
    let buf = '';
    let sent = false;
    const finish = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(30_000, () => finish(false));
    sock.on('error', () => finish(false));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (!sent && buf.includes('\r\n')) {
        sent = true;
        buf = '';
        sock.write(`l LOGIN "${user}" "${password}"\r\n`);
        return;
      }
      const m = /^l (OK|NO|BAD)/m.exec(buf);
      if (m) {
        sock.write('o LOGOUT\r\n');
        finish(m[1] === 'OK');
      }
    });
  });
}

/** Full IMAP sessions: connect, greeting, LOGIN, LOGOUT; `inFlight` sessions at a time. */
export function imapLoad(port: number, users: BenchUser[], o: { inFlight: number; seconds: number }): Promise<RateResult> {
  return drive(o.inFlight, o.seconds, (i) => {
    const u = users[i % users.length] as BenchUser;
    return imapLoginOnce(port, u.user, u.password);
  });
}
