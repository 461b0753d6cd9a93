/** The routes of DESIGN.md "Protocols": thin adapters from JSON bodies to the authenticator. */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { publicReason } from '../auth/index.js';
import type { Authenticator, PassdbRequest } from '../auth/index.js';
import type { Db } from '../db/index.js';
import type { Logger } from '../logging/index.js';
import { HttpError, checkContentType, parseJson, readBody } from './body.js';
import { mailcowBody, passdbBody, userdbBody } from './body-schema.js';
import type { Validator } from './body-schema.js';

export type Reply = ({ json: unknown } | { text: string; contentType: string }) & {
  status: number;
  /** Decision result, for logs and metrics. */
  result?: string;
  allow?: string;
  /** Ask the client to close the connection (e.g. after refusing an oversized body). */
  close?: boolean;
};

export interface RouteContext {
  req: IncomingMessage;
  log: Logger;
}

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** Requires the shared token when one is configured. */
  auth: boolean;
  handle(ctx: RouteContext): Promise<Reply>;
}

async function jsonBody<T>(req: IncomingMessage, limit: number, validate: Validator<T>, requireType = true): Promise<T> {
  checkContentType(req, requireType);
  const body = parseJson(await readBody(req, limit));
  const v = validate(body);
  if (!v.ok) throw new HttpError(400, 'bad_request', v.message);
  return v.value;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** password_b64: strict standard base64 (Node's decoder skips what it does not know). */
function passwordBytes(b64: string): Buffer {
  if (!BASE64.test(b64)) throw new HttpError(400, 'bad_request', 'password_b64: not base64');
  return Buffer.from(b64, 'base64');
}

/**
 * The client address as Dovecot sent it, if it parses as an IP address; else '' and a log line
 * (issue 16: it went into sasl_log unvalidated). Dovecot sends none for `doveadm auth test`.
 */
function clientIp(ip: string | undefined, log: Logger): string {
  if (ip === undefined || ip === '') return '';
  if (isIP(ip) !== 0) return ip;
  log.warn({ remoteIp: JSON.stringify(ip.slice(0, 64)) }, 'remote_ip is not an IP address; stored empty');
  return '';
}

/** The answer with its reason made safe for the caller (issue 16); the log keeps the detail. */
function forCaller<R extends { result: string; reason?: string }>(r: R): R {
  if (r.reason === undefined) return r;
  const reason = publicReason(r.result, r.reason);
  return reason === r.reason ? r : { ...r, reason };
}

export function coreRoutes(deps: { authenticator: Authenticator; db: Pick<Db, 'ping'>; bodyLimit: number }): Route[] {
  const { authenticator, db, bodyLimit } = deps;
  return [
    {
      method: 'POST',
      path: '/v1/passdb',
      auth: true,
      async handle({ req, log }) {
        const b = await jsonBody(req, bodyLimit, passdbBody);
        const request: PassdbRequest = { user: b.user, password: b.password, service: b.service, remoteIp: clientIp(b.remote_ip, log) };
        if (b.password_b64 !== undefined) request.passwordBytes = passwordBytes(b.password_b64);
        if (b.local_ip !== undefined) request.localIp = b.local_ip;
        if (b.mech !== undefined) request.mech = b.mech;
        if (b.secured !== undefined) request.secured = b.secured;
        if (b.session !== undefined) request.session = b.session;
        const r = await authenticator.passdb(request);
        return { status: 200, json: forCaller(r), result: r.result };
      },
    },
    {
      // mailcow's endpoint: 200 {"success":true} / 401 {"success":false}. Where mailcow's PHP answers
      // 500 (its database or Redis is down), so does this: internal_failure is not a wrong password.
      method: 'POST',
      path: '/',
      auth: true,
      async handle({ req, log }) {
        const b = await jsonBody(req, bodyLimit, mailcowBody, false);
        const r = await authenticator.passdb({ user: b.username, password: b.password, service: b.service, remoteIp: clientIp(b.real_rip, log) });
        const status = r.result === 'ok' ? 200 : r.result === 'internal_failure' ? 500 : 401;
        return { status, json: { success: r.result === 'ok' }, result: r.result };
      },
    },
    {
      method: 'POST',
      path: '/v1/userdb',
      auth: true,
      async handle({ req }) {
        const b = await jsonBody(req, bodyLimit, userdbBody);
        const r = await authenticator.userdb(b.service === undefined ? { user: b.user } : { user: b.user, service: b.service });
        return { status: 200, json: forCaller(r), result: r.result };
      },
    },
    {
      method: 'GET',
      path: '/healthz',
      auth: false,
      async handle() {
        return { status: 200, json: { status: 'ok' } };
      },
    },
    {
      method: 'GET',
      path: '/readyz',
      auth: false,
      async handle({ log }) {
        try {
          await db.ping();
          return { status: 200, json: { status: 'ready' } };
        } catch (err) {
          log.warn({ err }, 'readiness check failed');
          const code = (err as { code?: string }).code;
          return { status: 503, json: { status: 'unavailable', reason: code === 'ERR_DB_TIMEOUT' ? 'database timeout' : 'database unavailable' } };
        }
      },
    },
  ];
}
