/**
 * A minimal client of Dovecot's auth-client protocol (what imap-login speaks to
 * the auth process), so the benchmark measures authentication itself, without
 * the cost of spawning doveadm or of IMAP sessions. PLAIN only; many requests
 * may be in flight on one connection.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';

export interface AuthAnswer {
  ok: boolean;
  line: string;
}

export interface AuthClient {
  auth(user: string, password: string, service?: string, remoteIp?: string): Promise<AuthAnswer>;
  close(): void;
}

let nextPid = 4_000_000 + (process.pid % 100_000) * 10;

export function openAuthClient(socketPath: string): Promise<AuthClient> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect({ path: socketPath });
    sock.setEncoding('utf8');
    let buffer = '';
    let ready = false;
    let id = 0;
    const pending = new Map<string, (a: AuthAnswer) => void>();
    sock.on('error', (err) => {
      if (!ready) reject(err);
      for (const done of pending.values()) done({ ok: false, line: `socket error: ${err.message}` });
      pending.clear();
    });
    sock.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!ready) {
          if (line === 'DONE') {
            ready = true;
            resolve(client);
          }
          continue;
        }
        const [verb, reqId] = line.split('\t');
        const done = reqId === undefined ? undefined : pending.get(reqId);
        if (!done) continue;
        if (verb === 'OK' || verb === 'FAIL') {
          pending.delete(reqId ?? '');
          done({ ok: verb === 'OK', line });
        } else if (verb === 'CONT') {
          pending.delete(reqId ?? '');
          done({ ok: false, line: `unexpected ${line}` });
        }
      }
    });
    // The auth server refuses a second connection with the same client pid.
    sock.write(`VERSION\t1\t2\nCPID\t${nextPid++}\n`);
    const client: AuthClient = {
      auth(user, password, service = 'imap', remoteIp = '127.0.0.1') {
        id += 1;
        const key = String(id);
        const resp = Buffer.from(`\0${user}\0${password}`).toString('base64');
        return new Promise((done) => {
          pending.set(key, done);
          sock.write(`AUTH\t${key}\tPLAIN\tservice=${service}\trip=${remoteIp}\tlip=127.0.0.1\tno-penalty\tresp=${resp}\n`);
        });
      },
      close() {
        sock.destroy();
      },
    };
  });
}
