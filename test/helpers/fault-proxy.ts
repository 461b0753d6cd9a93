/**
 * A reverse proxy on 127.0.0.1:0 in front of a real server (the oidc-provider
 * of test/helpers/oidc-op.ts), passing every request through unchanged until a
 * test injects a fault for a path: HTTP 500, a hang (accepted, never
 * answered), a stall (headers and half a body, then silence), malformed JSON,
 * an HTML page with 200, a truncated body, a reset. The Keycloak double has
 * the same faults built in (test/helpers/keycloak-double.ts); a real provider
 * needs them from outside. `close()` drops every open connection, hung ones
 * included.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** Carried by the faulty bodies as a token would be: a test can check it never reaches a log. */
export const FAULT_BODY_SECRET = `body-secret-${randomBytes(9).toString('base64url')}`;

export type ProxyFault = 'error500' | 'hang' | 'stall' | 'malformed' | 'html200' | 'truncated' | 'reset';

export interface FaultProxy {
  /** http://127.0.0.1:PORT — the target's URLs with this origin go through the proxy. */
  url: string;
  /** `path` matches when the request path ends with it ('' matches every request). */
  inject(path: string, fault: ProxyFault): void;
  clearFaults(): void;
  /** Requests seen per path ending, faulted or not. */
  count(path: string): number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const to = new URL(target);
  const faults: { path: string; fault: ProxyFault }[] = [];
  const seen: string[] = [];
  const sockets = new Set<Socket>();

  function fault(req: IncomingMessage, res: ServerResponse, f: ProxyFault): void {
    switch (f) {
      case 'error500':
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'server_error', error_description: 'oops! something went wrong' }));
        return;
      case 'hang':
        return;
      case 'stall':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '4096' });
        res.write(`{"active":true,"access_token":"${FAULT_BODY_SECRET}","ema`);
        return;
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"active": true, "access_token": "${FAULT_BODY_SECRET}", "email": alice@example.org, }`);
        return;
      case 'html200':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>');
        return;
      case 'truncated':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"active":true,"access_token":"${FAULT_BODY_SECRET}","ema`);
        return;
      case 'reset':
        req.socket.destroy();
        return;
    }
  }

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
    seen.push(path);
    const f = faults.find((x) => path.endsWith(x.path));
    if (f) {
      // Read the request first, as a server would; the fault is the answer.
      req.resume();
      req.on('end', () => fault(req, res, f.fault));
      return;
    }
    const up = http.request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed = false;
  return {
    url,
    inject(path, f) {
      faults.push({ path, fault: f });
    },
    clearFaults() {
      faults.length = 0;
    },
    count: (path) => seen.filter((p) => p.endsWith(path)).length,
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        closed = true;
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
