/**
 * One outbound HTTP exchange for the hand-written IdP clients: a per-request
 * timeout, a body size limit, bounded retries with exponential back-off on 5xx
 * and network errors only, and undici/Node errors translated to coded
 * MailauthErrors at this edge. Details are safe to log: route, path without
 * query, status, error codes; never headers, bodies, tokens or secrets.
 */
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import { MailauthError } from '../errors.js';

/**
 * undici, loaded at the first IdP call: a daemon or command without an identity
 * provider never needs it (~4 MB of heap). A synchronous require (undici is
 * CommonJS), so clients can still be built synchronously.
 */
const requireHere = createRequire(import.meta.url);
export const undici = (): typeof import('undici') => requireHere('undici') as typeof import('undici');

export interface HttpOptions {
  timeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  dispatcher?: Dispatcher | undefined;
  sleep?: ((ms: number) => Promise<void>) | undefined;
  now?: (() => number) | undefined;
  maxBodyBytes?: number | undefined;
  onCall?: ((e: CallEvent) => void) | undefined;
}

/** For metrics and debug logs (issue 7 wires these into /metrics). */
export interface CallEvent {
  route: string;
  attempt: number;
  status: number | null;
  ms: number;
  error?: string;
}

export interface HttpRequest {
  route: string;
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** The caller's deadline, combined with the per-request timeout. */
  signal?: AbortSignal | undefined;
}

export interface HttpResponse {
  status: number;
  contentType: string;
  wwwAuthenticate: string | null;
  text: string;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

export function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return '?';
  }
}

function errCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return '';
}

/** A transport failure as a coded error; `retryable` marks what a second attempt may fix. */
function transportError(err: unknown, req: HttpRequest, timedOut: boolean, callerAborted: boolean): { error: MailauthError; retryable: boolean } {
  const path = pathOf(req.url);
  const host = (() => {
    try {
      return new URL(req.url).host;
    } catch {
      return '?';
    }
  })();
  if (timedOut || callerAborted) {
    return {
      error: new MailauthError('ERR_IDP_TIMEOUT', `identity provider did not answer ${req.route} within the time limit`, {
        cause: err,
        details: { route: req.route, path, host, reason: callerAborted ? 'deadline' : 'timeout' },
      }),
      retryable: false,
    };
  }
  const code = errCode(err);
  if (TLS_CODES.has(code)) {
    return {
      error: new MailauthError('ERR_IDP_UNAVAILABLE', `TLS failure talking to ${host}: ${code}`, {
        cause: err,
        details: { route: req.route, path, host, reason: 'tls', networkCode: code },
      }),
      retryable: false,
    };
  }
  return {
    error: new MailauthError('ERR_IDP_UNAVAILABLE', `cannot reach the identity provider at ${host} (${code || (err as Error)?.name || 'network error'})`, {
      cause: err,
      details: { route: req.route, path, host, reason: 'network', networkCode: code || null },
    }),
    retryable: true,
  };
}

async function readBody(body: Dispatcher.ResponseData['body'], limit: number, req: HttpRequest): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      body.destroy();
      throw new MailauthError('ERR_IDP_BAD_RESPONSE', `identity provider answer to ${req.route} is larger than ${limit} bytes`, {
        details: { route: req.route, path: pathOf(req.url), reason: 'too_large' },
      });
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function header(h: Record<string, string | string[] | undefined>, name: string): string | null {
  const v = h[name];
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(', ') : v;
}

type Attempt = { ok: true; res: HttpResponse } | { ok: false; error: MailauthError; retryable: boolean };

async function once(req: HttpRequest, opts: HttpOptions): Promise<Attempt> {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = req.signal ? AbortSignal.any([timeout, req.signal]) : timeout;
  try {
    const res = await undici().request(req.url, {
      method: req.method,
      headers: { accept: 'application/json', ...req.headers },
      body: req.body,
      signal,
      // undici 7's request() never follows redirects: a 3xx from an IdP endpoint is reported as it is.
      dispatcher: opts.dispatcher,
    });
    const text = await readBody(res.body, opts.maxBodyBytes ?? 16 * 1024 * 1024, req);
    const contentType = (header(res.headers, 'content-type') ?? '').toLowerCase();
    return { ok: true, res: { status: res.statusCode, contentType, wwwAuthenticate: header(res.headers, 'www-authenticate'), text } };
  } catch (err) {
    if (err instanceof MailauthError) return { ok: false, error: err, retryable: false };
    return { ok: false, ...transportError(err, req, timeout.aborted, req.signal?.aborted === true && !timeout.aborted) };
  }
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends `req`, retrying 5xx answers and retryable network errors up to
 * `retries` times with back-off retryBackoffMs·2^n. Timeouts are not retried:
 * the caller's deadline matters more than a second chance.
 */
export async function exchange(req: HttpRequest, opts: HttpOptions): Promise<HttpResponse> {
  const sleep = opts.sleep ?? defaultSleep;
  const now = opts.now ?? Date.now;
  let last: MailauthError | null = null;
  let lastStatus: number | null = null;
  for (let attempt = 0; attempt <= opts.retries; attempt++) {
    if (attempt > 0) await sleep(opts.retryBackoffMs * 2 ** (attempt - 1));
    const started = now();
    const a = await once(req, opts);
    if (a.ok) {
      opts.onCall?.({ route: req.route, attempt, status: a.res.status, ms: now() - started });
      if (a.res.status < 500) return a.res;
      lastStatus = a.res.status;
      last = null;
    } else {
      opts.onCall?.({ route: req.route, attempt, status: null, ms: now() - started, error: a.error.code });
      if (!a.retryable) throw a.error;
      last = a.error;
      lastStatus = null;
    }
  }
  if (last) {
    throw new MailauthError('ERR_IDP_UNAVAILABLE', `${last.message} (after ${opts.retries + 1} attempt(s))`, {
      cause: last.cause ?? last,
      details: { ...last.details, attempts: opts.retries + 1 },
    });
  }
  throw new MailauthError(
    'ERR_IDP_UNAVAILABLE',
    `identity provider answered ${req.route} with HTTP ${lastStatus} (after ${opts.retries + 1} attempt(s))`,
    { details: { route: req.route, path: pathOf(req.url), status: lastStatus, reason: 'server_error', attempts: opts.retries + 1 } },
  );
}

/** JSON body of a response, or ERR_IDP_BAD_RESPONSE (HTML from a proxy, truncated JSON …). */
export function jsonBody(res: HttpResponse, route: string, url: string): unknown {
  if (!res.contentType.includes('json')) {
    throw new MailauthError(
      'ERR_IDP_BAD_RESPONSE',
      `identity provider answered ${route} with ${res.contentType.split(';')[0] || 'no content type'} instead of JSON (HTTP ${res.status}; a proxy error page?)`,
      { details: { route, path: pathOf(url), status: res.status, contentType: res.contentType.split(';')[0] ?? '', reason: 'not_json' } },
    );
  }
  try {
    return JSON.parse(res.text) as unknown;
  } catch (err) {
    throw new MailauthError('ERR_IDP_BAD_RESPONSE', `identity provider answered ${route} with invalid JSON (HTTP ${res.status}; truncated?)`, {
      cause: err,
      details: { route, path: pathOf(url), status: res.status, reason: 'invalid_json' },
    });
  }
}

export interface OAuthErrorBody {
  error: string;
  description: string | null;
}

/** `{"error","error_description"}` when the body is such JSON; texts are cut to keep logs bounded. */
export function oauthError(res: HttpResponse): OAuthErrorBody | null {
  if (!res.contentType.includes('json')) return null;
  try {
    const b = JSON.parse(res.text) as { error?: unknown; error_description?: unknown };
    if (typeof b?.error !== 'string') return null;
    return { error: b.error.slice(0, 200), description: typeof b.error_description === 'string' ? b.error_description.slice(0, 300) : null };
  } catch {
    return null;
  }
}

/** Parses `Bearer realm="x", error="insufficient_scope", error_description="…"`. */
export function parseChallenge(h: string | null): { scheme: string; params: Record<string, string> } | null {
  if (!h) return null;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(h);
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of (m[2] ?? '').matchAll(/([A-Za-z_]+)="((?:[^"\\]|\\.)*)"/g)) params[p[1] as string] = (p[2] as string).replace(/\\(.)/g, '$1');
  return { scheme: m[1] as string, params };
}
