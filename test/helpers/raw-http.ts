/**
 * Raw bytes over a TCP socket, for the HTTP-boundary security tests: what a
 * hostile client sends is not what an HTTP library would let us send.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';

export interface RawAnswer {
  /** Everything the server sent before closing (or before the wait ended). */
  text: string;
  /** Status codes of the responses found in `text`, in order. */
  statuses: number[];
  /** Whether the server closed the connection (rather than the wait running out). */
  closed: boolean;
}

/**
 * Connects to `url` (http://host:port), lets `drive` write whatever it likes,
 * and collects the answer until the server closes or `waitMs` passes.
 */
export function raw(url: string, drive: string | Buffer | ((s: Socket) => void | Promise<void>), waitMs = 3000): Promise<RawAnswer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    let text = '';
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      s.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, statuses, closed });
    };
    const timer = setTimeout(finish, waitMs);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the server has answered is still an answer.
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') reject(err);
    });
    s.on('connect', () => {
      if (typeof drive === 'function') void Promise.resolve(drive(s)).catch(() => undefined);
      else s.write(drive);
    });
  });
}

/** A request head plus body with CRLF line ends. */
export function http11(method: string, path: string, headers: readonly string[], body = ''): string {
  return `${method} ${path} HTTP/1.1\r\n${['Host: 127.0.0.1', ...headers].join('\r\n')}\r\n\r\n${body}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
