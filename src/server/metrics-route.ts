/**
 * GET /metrics and the per-response hook that feeds the request metrics.
 * The route checks its own token so it can also accept `Authorization: Bearer`
 * (what Prometheus sends from `authorization.credentials_file`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metrics } from '../metrics/index.js';
import { HttpError } from './body.js';
import type { Route } from './routes.js';

const TOKEN_HEADER = 'x-mailauth-token';

const ENDPOINTS: Readonly<Record<string, string>> = {
  '/v1/passdb': 'passdb',
  '/': 'mailcow',
  '/v1/userdb': 'userdb',
  '/healthz': 'healthz',
  '/readyz': 'readyz',
  '/metrics': 'metrics',
  '/v1/policy': 'policy',
  '/v1/admin/throttle': 'admin',
  '/v1/admin/throttle/clear': 'admin',
};

/** Bounded label values: known routes by name, anything else "other", unrouted "not_found". */
export function endpointLabel(route: string | null): string {
  if (route === null) return 'not_found';
  return ENDPOINTS[route] ?? 'other';
}

export interface ResponseFacts {
  route: string | null;
  status: number;
  durationMs: number;
  result?: string;
}

/** The onResponse hook of createServer: one request counted and timed. */
export function recordResponse(metrics: Pick<Metrics, 'recordRequest'>): (info: ResponseFacts) => void {
  return (info) => {
    // Decisions are labelled by their result; protocol errors by their HTTP status.
    const result = info.result ?? (info.status >= 400 ? `http_${info.status}` : 'ok');
    metrics.recordRequest(endpointLabel(info.route), result, info.durationMs / 1000);
  };
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export function metricsRoute(metrics: Pick<Metrics, 'render' | 'contentType'>, opts: { token: string | null }): Route {
  const expected = opts.token === null ? null : digest(opts.token);
  const presented = (h: Record<string, string | string[] | undefined>): string | null => {
    const direct = h[TOKEN_HEADER];
    if (typeof direct === 'string') return direct;
    const auth = h.authorization;
    if (typeof auth === 'string' && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '');
    return null;
  };
  return {
    method: 'GET',
    path: '/metrics',
    // The token is checked here, to accept the Bearer form as well.
    auth: false,
    async handle({ req }) {
      if (expected !== null) {
        const got = presented(req.headers);
        if (got === null || !timingSafeEqual(digest(got), expected)) {
          throw new HttpError(401, 'unauthorized', `missing or wrong ${TOKEN_HEADER} or Authorization: Bearer header`);
        }
      }
      return { status: 200, text: await metrics.render(), contentType: metrics.contentType };
    },
  };
}
