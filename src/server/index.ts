/**
 * The HTTP face of mailauth on node:http: routes, body limits, caller check,
 * health. No auth rules live here; every answer is JSON, every protocol error
 * a 4xx with a JSON body, and nothing a caller sends can crash the process or
 * see a stack trace.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { Socket } from 'node:net';
import type { Authenticator } from '../auth/index.js';
import type { Config } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { Logger } from '../logging/index.js';
import { HttpError } from './body.js';
import { bindListener } from './listeners.js';
import type { ListenAddress } from './listeners.js';
import { createConnectionLimiter, fileDescriptorLimit, resolveConnectionLimits } from './connection-limits.js';
import type { ConnectionStats } from './connection-limits.js';
import { coreRoutes } from './routes.js';
import type { Reply, Route } from './routes.js';

export { HttpError, readBody, parseJson, checkContentType } from './body.js';
export { compileBody, passdbBody, mailcowBody, userdbBody } from './body-schema.js';
export type { Validator } from './body-schema.js';
export { bindListener, clearStaleSocket } from './listeners.js';
export type { ListenAddress } from './listeners.js';
export type { Reply, Route, RouteContext } from './routes.js';
export { metricsRoute, recordResponse, endpointLabel } from './metrics-route.js';
export { introspectionRoute, INTROSPECT_PATH } from './oauth-route.js';
export { policyRoutes, POLICY_PATH, THROTTLE_ADMIN_PATH, THROTTLE_CLEAR_PATH } from './policy-routes.js';
export { healthRoutes, dependencyState } from './health-routes.js';
export type { HealthSources } from './health-routes.js';
export { createConnectionLimiter, fileDescriptorLimit, resolveConnectionLimits } from './connection-limits.js';
export type { ConnectionStats, ConnectionLimiter } from './connection-limits.js';

export const TOKEN_HEADER = 'x-mailauth-token';

export interface ResponseInfo {
  method: string;
  /** The matched route path, or null for 404s (so metrics labels stay bounded). */
  route: string | null;
  status: number;
  durationMs: number;
  /** The decision result for passdb/userdb routes. */
  result?: string;
}

export interface ServerOptions {
  config: Pick<Config, 'listen'>;
  authenticator: Authenticator;
  db: Pick<Db, 'ping'>;
  logger: Logger;
  /** More routes (e.g. GET /metrics); a path here replaces a core route of the same method and path. */
  routes?: readonly Route[];
  /** Called once per answered request (metrics). Must not throw. */
  onResponse?: (info: ResponseInfo) => void;
}

export interface MailauthServer {
  listen(): Promise<ListenAddress[]>;
  /** Stop accepting, let in-flight requests finish (bounded by listen.request_timeout), then resolve. */
  close(): Promise<void>;
  /** Requests being handled right now. */
  inFlight(): number;
  /** Open connections and limit hits (issue 16). */
  connections(): ConnectionStats;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function createServer(opts: ServerOptions): MailauthServer {
  const { listen: lc } = opts.config;
  const log = opts.logger.child({ component: 'server' });
  const expectedToken = lc.token === null ? null : digest(lc.token);
  const table = new Map<string, Map<string, Route>>();
  for (const r of [...coreRoutes({ authenticator: opts.authenticator, db: opts.db, bodyLimit: lc.bodyLimit }), ...(opts.routes ?? [])]) {
    let byMethod = table.get(r.path);
    if (!byMethod) table.set(r.path, (byMethod = new Map()));
    byMethod.set(r.method, r);
  }

  const servers: http.Server[] = [];
  // Issue 16: connection limits on every listener (one budget for all of them).
  const limits = resolveConnectionLimits(lc.maxConnections ?? 0, lc.maxConnectionsPerPeer ?? 0, fileDescriptorLimit());
  const connections = createConnectionLimiter({ ...limits, untrustedIdleMs: lc.untrustedIdleTimeoutMs ?? 2000, logger: log });
  let closing = false;
  let graceOver = false;
  let active = 0;
  const idleWaiters: (() => void)[] = [];

  function tokenOk(req: IncomingMessage): boolean {
    if (expectedToken === null) return true;
    const got = req.headers[TOKEN_HEADER];
    if (typeof got !== 'string') return false;
    return timingSafeEqual(digest(got), expectedToken);
  }

  function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    const body = 'text' in reply ? reply.text : JSON.stringify(reply.json);
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'text' in reply ? reply.contentType : 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    };
    if (reply.status === 405 && reply.allow) headers.allow = reply.allow;
    if (closing || reply.close) headers.connection = 'close';
    res.writeHead(reply.status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  function errorReply(path: string, err: HttpError): Reply {
    const close = err.status === 413;
    if (path === '/') {
      // mailcow's endpoint knows 200/401/400/500 and the body {"success":false}. Its Lua script reads
      // 401 as a wrong password, so a refused caller (no or wrong token) is 500, "could not decide".
      const status = err.status >= 500 || err.status === 401 ? 500 : 400;
      return { status, json: { success: false }, close };
    }
    return { status: err.status, json: { error: err.code, message: err.message }, close };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const byMethod = table.get(path);
    const route = byMethod?.get(method) ?? (method === 'HEAD' ? byMethod?.get('GET') : undefined);
    let reply: Reply;
    let result: string | undefined;
    try {
      if (!byMethod) throw new HttpError(404, 'not_found', `no route ${path}`);
      if (!route) {
        const allow = [...byMethod.keys()].join(', ');
        reply = { ...errorReply(path, new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${path}; use ${allow}`)), allow };
      } else if (route.auth && !tokenOk(req)) {
        throw new HttpError(401, 'unauthorized', `missing or wrong ${TOKEN_HEADER} header`);
      } else if (req.httpVersion === '1.1' && req.headers.host === undefined) {
        // Node's own answer to this is a bare 400 (requireHostHeader); ours is JSON (issue 16).
        throw new HttpError(400, 'bad_request', 'HTTP/1.1 requests need a Host header');
      } else {
        if (route.auth) connections.trust(req.socket);
        const r = await route.handle({ req, log });
        reply = r;
        result = r.result;
      }
    } catch (err) {
      if (err instanceof HttpError) {
        reply = errorReply(path, err);
        log.info({ method, path: byMethod ? path : undefined, status: err.status, error: err.code }, 'request refused');
      } else {
        log.error({ err, method, path }, 'request handler failed');
        reply = errorReply(path, new HttpError(500, 'internal', 'internal error'));
      }
    }
    if (!res.headersSent && !res.destroyed) send(req, res, reply);
    try {
      opts.onResponse?.({
        method,
        route: byMethod ? path : null,
        status: reply.status,
        durationMs: performance.now() - started,
        ...(result === undefined ? {} : { result }),
      });
    } catch (err) {
      log.error({ err }, 'onResponse hook failed');
    }
  }

  function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const [status, code, text] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'Request Header Fields Too Large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'request_timeout', 'Request Timeout']
          : [400, 'bad_request', 'Bad Request'];
    const body = JSON.stringify({ error: code, message: text });
    socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }

  function makeServer(): http.Server {
    // Node refuses headersTimeout > requestTimeout; the shorter one wins anyway.
    const requestTimeout = lc.requestTimeoutMs;
    const headersTimeout = Math.min(lc.headersTimeoutMs, lc.requestTimeoutMs);
    const server = http.createServer(
      {
        requestTimeout,
        headersTimeout,
        keepAliveTimeout: lc.keepAliveTimeoutMs,
        // The default 30 s check interval would make short timeouts meaningless.
        connectionsCheckingInterval: Math.min(1000, headersTimeout),
        // Checked in handle(), so that the answer is JSON like every other (issue 16).
        requireHostHeader: false,
      },
      (req, res) => {
        active += 1;
        const socket = req.socket;
        connections.requestStarted(socket);
        res.once('close', () => {
          connections.requestDone(socket);
          if (closing && graceOver) server.closeIdleConnections();
        });
        // Counted until the handler settles, not until the socket closes: a client that hangs up
        // must not let close() resolve while its login is still being decided (and recorded).
        handle(req, res)
          .catch((err: unknown) => {
            log.error({ err }, 'request failed');
            if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json', connection: 'close' }).end('{"error":"internal"}');
            else res.destroy();
          })
          .finally(() => {
            active -= 1;
            if (active === 0) for (const fn of idleWaiters.splice(0)) fn();
          });
      },
    );
    server.keepAliveTimeout = lc.keepAliveTimeoutMs;
    server.on('clientError', onClientError);
    // An Expect other than 100-continue: Node's own 417 has no body; ours is JSON (issue 16).
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      send(req, res, { status: 417, json: { error: 'expectation_failed', message: 'only Expect: 100-continue is supported' }, close: true });
    });
    connections.attach(server);
    return server;
  }

  return {
    async listen() {
      const addresses: ListenAddress[] = [];
      try {
        for (const l of lc.listeners) {
          const server = makeServer();
          servers.push(server);
          addresses.push(await bindListener(server, l));
          server.on('error', (err) => log.error({ err }, 'listener error'));
        }
      } catch (err) {
        await this.close();
        throw err;
      }
      return addresses;
    },

    async close() {
      closing = true;
      connections.close();
      const all = servers.splice(0);
      await Promise.all(
        all.map(
          (server) =>
            new Promise<void>((resolve) => {
              if (!server.listening) {
                resolve();
                return;
              }
              // Requests still running get their answer; after request_timeout the rest are cut.
              const hard = setTimeout(() => server.closeAllConnections(), lc.requestTimeoutMs);
              hard.unref();
              // net.Server's close only stops accepting. http.Server's close would also drop
              // connections that were accepted but whose request is not parsed yet (Node
              // counts them idle): those get a grace period to send it and be answered.
              net.Server.prototype.close.call(server, () => {
                clearTimeout(hard);
                clearTimeout(grace);
                resolve();
              });
              const grace = setTimeout(() => {
                graceOver = true;
                server.closeIdleConnections();
              }, lc.shutdownGraceMs);
              grace.unref();
            }),
        ),
      );
      if (active > 0) {
        // Handlers whose client already hung up; bounded like the connections above.
        await new Promise<void>((resolve) => {
          const hard = setTimeout(resolve, lc.requestTimeoutMs);
          hard.unref();
          idleWaiters.push(() => {
            clearTimeout(hard);
            resolve();
          });
        });
      }
    },

    inFlight() {
      return active;
    },

    connections() {
      return connections.stats();
    },
  };
}
