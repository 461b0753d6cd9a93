/**
 * `POST /v1/oauth2/introspect`: RFC 7662 token introspection for Dovecot 2.4's
 * `oauth2` passdb (issue 20), which sends XOAUTH2/OAUTHBEARER tokens there and
 * nowhere else. Dovecot's `introspection_mode = post` sends
 * `token=<token>` as a form; with `send_auth_headers = yes` it adds the
 * protocol (X-Dovecot-Auth-Protocol in 2.4.1) and the client address
 * (X-Dovecot-Auth-Remote), which the mailbox's service rule needs.
 *
 * Caller check: the passdb's. With a listen token configured, the caller sends
 * it as X-Mailauth-Token or as the password of HTTP Basic auth (Dovecot puts
 * `user:password@` of introspection_url there; it cannot add other headers).
 *
 * Answers: `{"active":true,"username":<mailbox>}` after the same decision as
 * an OAUTHBEARER login of the token's user; `{"active":false}` for every
 * refusal (RFC 7662 says nothing more, and the reason is in mailauth's log);
 * 503 when it cannot be decided (IdP or database down), which Dovecot turns
 * into a temporary failure instead of a wrong password.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Authenticator } from '../auth/index.js';
import { HttpError, readBody } from './body.js';
import type { Route } from './routes.js';

export const INTROSPECT_PATH = '/v1/oauth2/introspect';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function callerAllowed(req: IncomingMessage, expected: Buffer | null): boolean {
  if (expected === null) return true;
  const header = req.headers['x-mailauth-token'];
  if (typeof header === 'string') return timingSafeEqual(digest(header), expected);
  const auth = req.headers.authorization;
  const m = typeof auth === 'string' ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth) : null;
  if (!m) return false;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  let password = decoded.slice(colon + 1);
  try {
    password = decodeURIComponent(password);
  } catch {
    // not percent-encoded: compared as sent
  }
  return timingSafeEqual(digest(password), expected);
}

/** "203.0.113.5:4711", "[2001:db8::1]:4711" or a bare address → the address. */
export function remoteAddress(h: string | string[] | undefined): string {
  if (typeof h !== 'string') return '';
  const v = h.trim();
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(v);
  if (v6) return v6[1] as string;
  const v4 = /^([0-9.]+)(?::\d+)?$/.exec(v);
  if (v4) return v4[1] as string;
  return v.slice(0, 64);
}

export function introspectionRoute(deps: { authenticator: Authenticator; token: string | null; bodyLimit: number }): Route {
  const expected = deps.token === null ? null : digest(deps.token);
  return {
    method: 'POST',
    path: INTROSPECT_PATH,
    // Checked here: the route also takes the token as a Basic-auth password.
    auth: false,
    async handle({ req }) {
      if (!callerAllowed(req, expected)) throw new HttpError(401, 'unauthorized', 'missing or wrong X-Mailauth-Token header or Basic-auth password');
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/x-www-form-urlencoded') {
        throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/x-www-form-urlencoded (RFC 7662)');
      }
      const form = new URLSearchParams((await readBody(req, deps.bodyLimit)).toString('utf8'));
      const tokens = form.getAll('token');
      if (tokens.length !== 1 || tokens[0] === '') throw new HttpError(400, 'invalid_request', 'exactly one token parameter is required');
      // Dovecot 2.4.1 names it X-Dovecot-Auth-Protocol (older sources: X-Dovecot-Auth-Service).
      const service = req.headers['x-dovecot-auth-protocol'] ?? req.headers['x-dovecot-auth-service'];
      if (typeof service !== 'string' || service === '') {
        throw new HttpError(400, 'invalid_request', 'X-Dovecot-Auth-Protocol header missing: set send_auth_headers = yes in the oauth2 settings');
      }
      if (!deps.authenticator.introspect) throw new HttpError(404, 'not_found', 'OAuth logins are off');
      const r = await deps.authenticator.introspect({ token: tokens[0] as string, service, remoteIp: remoteAddress(req.headers['x-dovecot-auth-remote']) });
      if (r.result === 'internal_failure') return { status: 503, json: { error: 'temporarily_unavailable', error_description: 'cannot decide now; try again' }, result: r.result };
      if (r.result === 'ok' && r.user !== undefined) return { status: 200, json: { active: true, username: r.user, token_type: 'Bearer' }, result: r.result };
      return { status: 200, json: { active: false }, result: r.result };
    },
  };
}
