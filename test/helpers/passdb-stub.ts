/**
 * A stand-in for the mailauth daemon that answers what a test tells it to, on
 * loopback TCP (port 0) and optionally a Unix socket. For testing lua/mailauth.lua
 * itself (every result, every failure mode) and for the transport benchmark.
 */
import { chmodSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface StubAnswer {
  status?: number;
  /** An object is sent as JSON; a string is sent as it is. */
  body?: unknown;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Destroy the connection without answering. */
  hangUp?: boolean;
}

export type StubHandler = (req: StubRequest) => StubAnswer;

export interface PassdbStub {
  url: string;
  socketPath: string | null;
  requests: StubRequest[];
  /** Connections accepted so far (TCP and socket): shows whether a client keeps them alive. */
  connections(): number;
  setHandler(h: StubHandler): void;
  close(): Promise<void>;
}

export const okAnswer: StubHandler = () => ({ body: { result: 'ok' } });

function listen(server: Server, target: { port: number; host: string } | string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    if (typeof target === 'string') server.listen(target, () => resolve());
    else server.listen(target.port, target.host, () => resolve());
  });
}

export async function startPassdbStub(
  t: { teardown(fn: () => unknown): void } | null,
  opts: { handler?: StubHandler; socketPath?: string; record?: boolean; keepAliveTimeoutMs?: number } = {},
): Promise<PassdbStub> {
  let handler = opts.handler ?? okAnswer;
  const requests: StubRequest[] = [];
  const record = opts.record ?? true;
  const onRequest: Parameters<typeof createServer>[1] = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // keep the raw text; the handler decides
      }
      const request: StubRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
      if (record) requests.push(request);
      const answer = handler(request);
      const send = () => {
        if (answer.hangUp) {
          req.socket.destroy();
          return;
        }
        const payload = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
        res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
        res.end(payload);
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  };
  const servers: Server[] = [];
  let connections = 0;
  const make = (): Server => {
    const server = createServer(onRequest);
    if (opts.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = opts.keepAliveTimeoutMs;
    server.on('connection', () => {
      connections += 1;
    });
    return server;
  };
  const tcp = make();
  await listen(tcp, { port: 0, host: '127.0.0.1' });
  servers.push(tcp);
  let socketPath: string | null = null;
  if (opts.socketPath) {
    const unix = make();
    await listen(unix, opts.socketPath);
    // The auth-worker runs as root, but blocking=no would run the script as `dovecot`.
    chmodSync(opts.socketPath, 0o666);
    servers.push(unix);
    socketPath = opts.socketPath;
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((r) => {
            s.close(() => r());
            s.closeAllConnections();
          }),
      ),
    );
  };
  t?.teardown(close);
  const { port } = tcp.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    socketPath,
    requests,
    connections: () => connections,
    setHandler(h) {
      handler = h;
    },
    close,
  };
}
