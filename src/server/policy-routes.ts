/**
 * Issue 17 routes: Dovecot's auth-policy endpoint and the admin view of the
 * throttle (`mailauth block list|clear`). Both sit behind the listener's caller
 * check (X-Mailauth-Token when a token is configured): the policy route gets it
 * from Dovecot's auth_policy_server_api_header, the CLI from listen.token_file.
 */
import { answerPolicy, parsePolicyRequest } from '../policy/index.js';
import type { SessionMemory, Throttle } from '../policy/index.js';
import { HttpError, checkContentType, parseJson, readBody } from './body.js';
import type { Route } from './routes.js';

export const POLICY_PATH = '/v1/policy';
export const THROTTLE_ADMIN_PATH = '/v1/admin/throttle';
export const THROTTLE_CLEAR_PATH = '/v1/admin/throttle/clear';

function query(url: string | undefined): URLSearchParams {
  const u = url ?? '';
  const q = u.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : u.slice(q + 1));
}

function filterOf(src: { ip?: unknown; user?: unknown }): { ip?: string; user?: string } {
  const f: { ip?: string; user?: string } = {};
  for (const k of ['ip', 'user'] as const) {
    const v = src[k];
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== 'string' || v.length > 255) throw new HttpError(400, 'bad_request', `${k}: must be a string of at most 255 characters`);
    f[k] = v;
  }
  return f;
}

export function policyRoutes(deps: { throttle: Throttle; sessions?: SessionMemory; bodyLimit: number }): Route[] {
  const { throttle, sessions, bodyLimit } = deps;
  return [
    {
      method: 'POST',
      path: POLICY_PATH,
      auth: true,
      async handle({ req }) {
        checkContentType(req, false);
        const body = parseJson(await readBody(req, bodyLimit));
        const parsed = parsePolicyRequest(query(req.url).get('command'), body);
        if ('problem' in parsed) throw new HttpError(400, 'bad_request', parsed.problem);
        const answer = answerPolicy(throttle, sessions, parsed);
        const result = parsed.command === 'report' ? 'report' : answer.status < 0 ? 'refused' : answer.status > 0 ? 'tarpit' : 'allowed';
        return { status: 200, json: answer, result };
      },
    },
    {
      method: 'GET',
      path: THROTTLE_ADMIN_PATH,
      auth: true,
      async handle({ req }) {
        const q = query(req.url);
        const f = filterOf({ ip: q.get('ip'), user: q.get('user') });
        return { status: 200, json: { enabled: throttle.enabled, entries: throttle.list({ ...f, all: q.get('all') === '1' }), stats: throttle.stats() } };
      },
    },
    {
      method: 'POST',
      path: THROTTLE_CLEAR_PATH,
      auth: true,
      async handle({ req, log }) {
        checkContentType(req, false);
        const raw = await readBody(req, bodyLimit);
        const body = raw.length === 0 ? {} : parseJson(raw);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'bad_request', 'the body must be a JSON object');
        const f = filterOf(body as { ip?: unknown; user?: unknown });
        const cleared = throttle.clear(f);
        log.warn({ ...f, cleared }, 'throttle counters cleared by an admin');
        return { status: 200, json: { cleared } };
      },
    },
  ];
}
