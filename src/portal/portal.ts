/**
 * The self-service portal: its own node:http listener (never the Dovecot-facing
 * one), server-side sessions, CSRF tokens on every form, strict security
 * headers, and the pages of views.ts. Sign-in: the IdP's authorization-code
 * flow (signin.ts) for IdP mailboxes, the mailbox password (the same decision
 * as a login, service `portal`, throttled) for local ones.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { Authenticator, Clock } from '../auth/index.js';
import { disabledReason, systemClock } from '../auth/index.js';
import type { AccessFlag, PortalConfig } from '../config/index.js';
import type { Db } from '../db/index.js';
import { isMailauthError } from '../errors.js';
import { findAccount, isResourceKind } from '../db/index.js';
import type { Logger } from '../logging/index.js';
import { bindListener } from '../server/index.js';
import type { ListenAddress } from '../server/index.js';
import type { Actions } from './actions.js';
import { PORTAL_CSS, PORTAL_JS } from './assets.js';
import type { SessionStore, PortalSession } from './session.js';
import { createSessionStore, randomToken, tokensEqual } from './session.js';
import type { SignInLimiter } from './limiter.js';
import { createSignInLimiter } from './limiter.js';
import type { SignInClient } from './signin.js';
import * as v from './views.js';

/** Mailbox authsources that sign in at the IdP; the others (mailcow, ldap) with the mailbox password. */
const IDP_AUTHSOURCES = new Set(['keycloak', 'generic-oidc']);
const FORM_LIMIT = 8192;
/**
 * A re-authentication asks the IdP for prompt=login&max_age=0, and its ID token's auth_time
 * must then be at most this old (plus openid-client's 30 s clock tolerance): time to type the
 * password, and room for the two hosts' clocks to differ.
 */
const REAUTH_MAX_AGE_S = 120;

export interface PortalOptions {
  config: PortalConfig;
  db: Db;
  logger: Logger;
  /** Decides password sign-ins: an authenticator whose auth.services maps `portal`. */
  authenticator: Authenticator;
  actions: Actions;
  signIn: SignInClient;
  clock?: Clock;
  /** Key for the pre-sign-in CSRF tokens; random per process by default. */
  secret?: Buffer;
}

export interface Portal {
  listen(): Promise<ListenAddress>;
  /** Handles one request (tests may call it through their own server). */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  sessions: SessionStore;
  close(): Promise<void>;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The route below the base path, e.g. "/app-passwords/new". */
  path: string;
  ip: string;
  cookies: Map<string, string>;
  sessionId: string | undefined;
  session: PortalSession | null;
}

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly text: string,
  ) {
    super(text);
  }
}

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    if (!out.has(k)) out.set(k, part.slice(i + 1).trim());
  }
  return out;
}

function stripMapped(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * The client's address: the peer, or — when the peer is a configured proxy — the
 * right-most X-Forwarded-For entry that is not itself a configured proxy.
 */
export function clientAddress(peer: string, forwardedFor: string | string[] | undefined, trusted: readonly string[]): string {
  const p = stripMapped(peer);
  if (!trusted.includes(p) || forwardedFor === undefined) return p;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((s) => stripMapped(s.trim()))
    .filter((s) => s !== '');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (isIP(hop) === 0) return p; // garbage: do not believe any of it
    if (!trusted.includes(hop)) return hop;
  }
  return p;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new HttpProblem(415, 'Forms only.');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > FORM_LIMIT) throw new HttpProblem(413, 'The form is too large.');
    chunks.push(c as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function protocolsText(flags: readonly AccessFlag[]): string[] {
  return [...flags];
}

export function createPortal(opts: PortalOptions): Portal {
  const cfg = opts.config;
  const clock = opts.clock ?? systemClock;
  const log = opts.logger;
  const base = cfg.basePath;
  const secret = opts.secret ?? randomBytes(32);
  const publicOrigin = new URL(cfg.publicUrl).origin;
  const redirectUri = `${cfg.publicUrl}/callback`;
  const sessions = createSessionStore({ ttlMs: cfg.sessionTtlMs, clock });
  const limiter: SignInLimiter = createSignInLimiter({ failures: cfg.signInFailures, windowMs: cfg.signInWindowMs, clock });
  // __Host- cookies: Secure, Path=/, no Domain — the browser refuses them from anyone else.
  const prefix = cfg.secure ? '__Host-' : '';
  const SESSION = `${prefix}mailauth_portal`;
  const PENDING = `${prefix}mailauth_signin`;
  const PRE = `${prefix}mailauth_pre`;

  const policyText = (() => {
    const p = cfg.passwordPolicy;
    const parts = [`at least ${p.minLength} characters`];
    if (p.lowerupper) parts.push('lower-case and upper-case letters');
    if (p.numbers) parts.push('a digit');
    if (p.special) parts.push('a character that is neither a letter nor a digit');
    return `Use ${parts.join(', ')}.`;
  })();

  function cookie(name: string, value: string, maxAgeSec: number): string {
    return `${name}=${value}; Path=/; HttpOnly; SameSite=Lax${cfg.secure ? '; Secure' : ''}; Max-Age=${maxAgeSec}`;
  }

  function addCookie(res: ServerResponse, c: string): void {
    const prev = res.getHeader('set-cookie');
    res.setHeader('set-cookie', [...(Array.isArray(prev) ? prev : prev === undefined ? [] : [String(prev)]), c]);
  }

  function securityHeaders(res: ServerResponse): void {
    res.setHeader(
      'content-security-policy',
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    res.setHeader('referrer-policy', 'no-referrer');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-resource-policy', 'same-origin');
    res.setHeader('permissions-policy', 'camera=(), microphone=(), geolocation=()');
    if (cfg.secure) res.setHeader('strict-transport-security', 'max-age=31536000');
  }

  function sendPage(c: Ctx, status: number, title: string, body: ReturnType<typeof v.html>): void {
    const text = v.page({ base, user: c.session ? { username: c.session.username, csrf: c.session.csrf } : null }, title, body);
    c.res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    c.res.end(text);
  }

  function redirect(c: Ctx, path: string): void {
    c.res.writeHead(303, { location: path.startsWith('http') ? path : `${base}${path}`, 'cache-control': 'no-store', 'content-length': 0 });
    c.res.end();
  }

  function message(c: Ctx, status: number, title: string, text: string, kind: 'error' | 'notice' = 'error'): void {
    sendPage(c, status, title, v.messageView({ base, text, kind }));
  }

  /** The pre-sign-in CSRF token: HMAC of a random cookie (double submit, nothing stored). */
  function preToken(c: Ctx): string {
    let pre = c.cookies.get(PRE);
    if (!pre || !/^[A-Za-z0-9_-]{20,64}$/.test(pre)) {
      pre = randomToken(18);
      c.cookies.set(PRE, pre);
      addCookie(c.res, cookie(PRE, pre, 3600));
    }
    return createHmac('sha256', secret).update(pre).digest('base64url');
  }

  function checkPreToken(c: Ctx, form: URLSearchParams): boolean {
    const pre = c.cookies.get(PRE);
    const sent = form.get('csrf') ?? '';
    return !!pre && tokensEqual(createHmac('sha256', secret).update(pre).digest('base64url'), sent);
  }

  /** Every POST: same origin (when the browser says) and the session's CSRF token. */
  function checkCsrf(c: Ctx, form: URLSearchParams): PortalSession {
    const s = c.session;
    if (!s) throw new HttpProblem(401, 'Your session has ended. Please sign in again.');
    if (!tokensEqual(s.csrf, form.get('csrf') ?? '')) {
      log.warn({ user: s.username, ip: c.ip, path: c.path }, 'portal: CSRF token missing or wrong; refused');
      throw new HttpProblem(403, 'This form has expired or did not come from this page. Please go back, reload and try again.');
    }
    return s;
  }

  /**
   * A POST that names another origin is refused before anything else. "null" is what browsers send
   * for our own forms under Referrer-Policy: no-referrer, so it proves nothing either way: the
   * CSRF token decides then.
   */
  function checkOrigin(c: Ctx): void {
    const origin = c.req.headers.origin;
    if (origin !== undefined && origin !== 'null' && origin !== publicOrigin) {
      log.warn({ ip: c.ip, origin: origin.slice(0, 200), path: c.path }, 'portal: cross-origin form post refused');
      throw new HttpProblem(403, 'Cross-site requests are not accepted.');
    }
  }

  function needsReauth(s: PortalSession): boolean {
    return clock.now() - s.authAt > cfg.reauthAfterMs;
  }

  function startSession(c: Ctx, username: string, method: 'idp' | 'password'): void {
    sessions.destroy(c.sessionId); // never reuse an id across a sign-in
    const { id } = sessions.create({ username, method });
    addCookie(c.res, cookie(SESSION, id, Math.ceil(cfg.sessionTtlMs / 1000)));
    log.info({ user: username, ip: c.ip, method }, 'portal: signed in');
  }

  async function signInPage(c: Ctx, status: number, error: string | null, username?: string): Promise<void> {
    let idp: string | null = null;
    try {
      idp = (await opts.signIn.available())?.source ?? null;
    } catch (err) {
      log.error({ err }, 'portal: cannot read the identity provider settings');
    }
    sendPage(c, status, 'Sign in', v.signInView({ base, csrf: preToken(c), idp, password: cfg.passwordSignIn, error, ...(username === undefined ? {} : { username }) }));
  }

  async function beginIdp(c: Ctx, reauthOf: string | null, returnTo: string): Promise<void> {
    let start;
    try {
      start = await opts.signIn.begin(redirectUri, { forceLogin: reauthOf !== null });
    } catch (err) {
      log.error({ err }, 'portal: cannot start the sign-in with the identity provider');
      return message(c, 502, 'Sign-in unavailable', 'The identity provider cannot be reached right now. Please try again later.');
    }
    const id = sessions.beginSignIn({ state: start.state, nonce: start.nonce, verifier: start.verifier, reauthOf, returnTo });
    addCookie(c.res, cookie(PENDING, id, 600));
    c.res.writeHead(303, { location: start.url, 'cache-control': 'no-store', 'content-length': 0 });
    c.res.end();
  }

  async function callback(c: Ctx): Promise<void> {
    const pending = sessions.takeSignIn(c.cookies.get(PENDING));
    addCookie(c.res, cookie(PENDING, '', 0));
    const q = c.url.searchParams;
    if (!pending) {
      log.warn({ ip: c.ip }, 'portal: sign-in callback without a pending sign-in (expired, reused or from another browser)');
      return message(c, 400, 'Sign-in failed', 'This sign-in has expired or was started elsewhere. Please start again.');
    }
    if (q.get('state') !== pending.state) {
      log.warn({ ip: c.ip }, 'portal: sign-in callback with a wrong state; refused');
      return message(c, 400, 'Sign-in failed', 'The answer from the identity provider does not belong to this sign-in. Please start again.');
    }
    if (q.has('error')) {
      log.info({ ip: c.ip, error: q.get('error')?.slice(0, 64) }, 'portal: the identity provider refused the sign-in');
      return message(c, 403, 'Sign-in failed', 'The identity provider did not sign you in.');
    }
    let who;
    try {
      // A re-authentication's auth_time must be no older than this flow (a few seconds of slack for
      // the clocks), and never older than REAUTH_MAX_AGE_S: a sign-in at the IdP from before the
      // person was sent there does not count.
      const sinceStartS = Math.ceil(Math.max(0, clock.now() - pending.createdAt) / 1000) + 5;
      const maxAgeS = Math.min(REAUTH_MAX_AGE_S, sinceStartS);
      who = await opts.signIn.finish(c.url, pending.reauthOf === null ? pending : { ...pending, maxAgeS }, redirectUri);
    } catch (err) {
      if (isMailauthError(err, 'ERR_IDP_FORBIDDEN') && err.details?.reason === 'stale_auth_time') {
        log.warn({ ip: c.ip }, 'portal: re-authentication answered from an older IdP session (auth_time too old); refused');
        return message(c, 403, 'Sign-in failed', 'The identity provider did not ask for your password again. Please sign out of the identity provider and try again.');
      }
      log.warn({ err, ip: c.ip }, 'portal: the sign-in did not verify');
      return message(c, 502, 'Sign-in failed', 'The sign-in could not be completed with the identity provider. Please start again.');
    }
    if (who.email === null) {
      log.warn({ ip: c.ip, subject: who.subject, claim: cfg.emailClaim }, 'portal: the ID token has no email claim');
      return message(c, 403, 'Sign-in failed', 'Your identity provider account has no email address.');
    }
    if (cfg.requireVerifiedEmail && !who.emailVerified) {
      log.warn({ ip: c.ip, email: who.email }, 'portal: email not verified at the identity provider; refused');
      return message(c, 403, 'Sign-in failed', 'Your email address is not verified at the identity provider.');
    }
    const email = who.email.trim().toLowerCase();
    const account = await findAccount(opts.db, email);
    if (!account || isResourceKind(account.kind) || !IDP_AUTHSOURCES.has(account.authsource)) {
      log.warn({ ip: c.ip, email, authsource: account?.authsource ?? null }, 'portal: no IdP mailbox for this email; refused');
      return message(c, 403, 'Sign-in failed', `There is no mailbox for ${email} that signs in with the identity provider.`);
    }
    const disabled = disabledReason({ mailbox: account, appPasswords: [] });
    if (disabled) {
      log.warn({ ip: c.ip, user: account.username, reason: disabled }, 'portal: mailbox disabled; refused');
      return message(c, 403, 'Sign-in failed', 'This mailbox is disabled.');
    }
    if (pending.reauthOf !== null) {
      const s = sessions.get(pending.reauthOf);
      if (!s || s.username !== account.username) {
        log.warn({ ip: c.ip, user: account.username }, 'portal: re-authentication as another user; refused');
        return message(c, 403, 'Sign-in failed', 'You signed in as someone else. Please sign in again.');
      }
      sessions.reauthenticated(pending.reauthOf);
      log.info({ user: account.username, ip: c.ip }, 'portal: re-authenticated');
      return redirect(c, pending.returnTo);
    }
    startSession(c, account.username, 'idp');
    return redirect(c, pending.returnTo);
  }

  /** The mailbox password, decided like a login (service `portal`, app passwords not accepted), throttled. */
  async function checkPassword(c: Ctx, user: string, password: string): Promise<{ ok: true; username: string } | { ok: false; status: number; text: string }> {
    if (!limiter.allowed(c.ip, user)) {
      log.warn({ ip: c.ip, user: user.slice(0, 255) }, 'portal: too many failed sign-ins; refused without checking');
      return { ok: false, status: 429, text: 'Too many failed attempts. Please wait a while and try again.' };
    }
    const r = await opts.authenticator.passdb({ user, password, service: 'portal', remoteIp: c.ip, noAppPasswords: true });
    if (r.result === 'ok' && r.user) {
      const account = await findAccount(opts.db, r.user);
      if (account && IDP_AUTHSOURCES.has(account.authsource)) {
        return { ok: false, status: 403, text: 'This mailbox signs in with the identity provider.' };
      }
      limiter.succeeded(c.ip, user);
      return { ok: true, username: r.user };
    }
    if (r.result === 'internal_failure') return { ok: false, status: 503, text: 'Sign-in is not possible right now. Please try again later.' };
    limiter.failed(c.ip, user);
    return { ok: false, status: 403, text: r.result === 'user_disabled' ? 'This mailbox may not sign in.' : 'Wrong email address or password.' };
  }

  async function home(c: Ctx, s: PortalSession): Promise<void> {
    const view = await opts.actions.view(s.username);
    if (!view) {
      sessions.destroy(c.sessionId);
      return message(c, 403, 'Signed out', 'Your mailbox no longer exists.');
    }
    const flash = s.flash;
    s.flash = null;
    sendPage(c, 200, 'Your mail account', v.homeView({ base, view, flash }));
  }

  async function route(c: Ctx): Promise<void> {
    const { path } = c;
    const method = c.req.method ?? 'GET';
    if (method === 'GET' && path === '/static/portal.css') return asset(c, PORTAL_CSS, 'text/css; charset=utf-8');
    if (method === 'GET' && path === '/static/portal.js') return asset(c, PORTAL_JS, 'text/javascript; charset=utf-8');
    if (method !== 'GET' && method !== 'POST') throw new HttpProblem(405, 'Method not allowed.');
    if (method === 'POST') checkOrigin(c);

    // Signed out.
    if (path === '/callback' && method === 'GET') return callback(c);
    if (path === '/signin/idp' && method === 'GET') return beginIdp(c, null, '/');
    if (path === '/signin/password' && method === 'POST') {
      const form = await readForm(c.req);
      if (!checkPreToken(c, form)) throw new HttpProblem(403, 'This form has expired. Please reload the page and try again.');
      if (!cfg.passwordSignIn) throw new HttpProblem(404, 'Not found.');
      const user = (form.get('username') ?? '').trim();
      const r = await checkPassword(c, user, form.get('password') ?? '');
      if (!r.ok) return signInPage(c, r.status, r.text, user);
      startSession(c, r.username, 'password');
      return redirect(c, '/');
    }
    const s = c.session;
    if (!s) {
      if (path === '/' && method === 'GET') return signInPage(c, 200, null);
      if (method === 'GET') return redirect(c, '/');
      throw new HttpProblem(401, 'Your session has ended. Please sign in again.');
    }

    // Signed in.
    if (method === 'GET') {
      if (path === '/') return home(c, s);
      if (path === '/app-passwords/new') {
        if (needsReauth(s)) return redirect(c, '/reauth');
        const view = await opts.actions.view(s.username);
        if (!view) throw new HttpProblem(403, 'Your mailbox no longer exists.');
        return sendPage(c, 200, 'New app password', v.newAppPasswordView({ base, csrf: s.csrf, allowed: view.allowed, chosen: null, name: '', error: null }));
      }
      if (path === '/app-passwords/created') {
        const shown = s.reveal;
        s.reveal = null; // shown once
        if (!shown) return redirect(c, '/');
        return sendPage(c, 200, 'App password created', v.createdView({ base, ...shown, protocols: shown.protocols as AccessFlag[], username: s.username, mailHost: cfg.mailHost }));
      }
      const m = /^\/app-passwords\/(\d{1,10})\/revoke$/.exec(path);
      if (m) {
        const view = await opts.actions.view(s.username);
        const app = view?.appPasswords.find((a) => a.id === Number(m[1]));
        if (!app) return message(c, 404, 'Not found', 'You have no such app password.');
        return sendPage(c, 200, 'Revoke app password', v.revokeView({ base, csrf: s.csrf, app }));
      }
      if (path === '/password') {
        const view = await opts.actions.view(s.username);
        if (s.method !== 'password' || view?.authsource !== 'mailcow') return message(c, 404, 'Not available', 'Your password is not managed here.');
        return sendPage(c, 200, 'Change password', v.passwordView({ base, csrf: s.csrf, error: null, policy: policyText }));
      }
      if (path === '/reauth') return sendPage(c, 200, 'Confirm it is you', v.reauthView({ base, csrf: s.csrf, method: s.method, error: null }));
      if (path === '/reauth/idp') {
        if (s.method !== 'idp' || !c.sessionId) return redirect(c, '/reauth');
        return beginIdp(c, c.sessionId, '/app-passwords/new');
      }
      return message(c, 404, 'Not found', 'There is no such page.');
    }

    const form = await readForm(c.req);
    checkCsrf(c, form);
    if (path === '/signout') {
      sessions.destroy(c.sessionId);
      addCookie(c.res, cookie(SESSION, '', 0));
      log.info({ user: s.username, ip: c.ip }, 'portal: signed out');
      c.session = null;
      return message(c, 200, 'Signed out', 'You are signed out.', 'notice');
    }
    if (path === '/app-passwords') {
      if (needsReauth(s)) return redirect(c, '/reauth');
      const name = form.get('name') ?? '';
      const protocols = form.getAll('protocols');
      const r = await opts.actions.createAppPassword(s.username, name, protocols);
      if ('refused' in r) {
        const view = await opts.actions.view(s.username);
        return sendPage(c, 400, 'New app password', v.newAppPasswordView({ base, csrf: s.csrf, allowed: view?.allowed ?? [], chosen: protocols, name, error: r.message }));
      }
      log.info({ user: s.username, ip: c.ip, appPassword: r.id, name: r.name, protocols: r.protocols }, 'portal: app password created');
      s.reveal = { id: r.id, name: r.name, password: r.password, protocols: protocolsText(r.protocols) };
      return redirect(c, '/app-passwords/created');
    }
    const m = /^\/app-passwords\/(\d{1,10})\/revoke$/.exec(path);
    if (m) {
      const id = Number(m[1]);
      const r = await opts.actions.revokeAppPassword(s.username, id);
      if ('refused' in r) {
        log.warn({ user: s.username, ip: c.ip, appPassword: id }, 'portal: revoke of an app password the user does not have; refused');
        return message(c, 404, 'Not found', 'You have no such app password.');
      }
      log.info({ user: s.username, ip: c.ip, appPassword: id }, 'portal: app password revoked');
      s.flash = 'App password revoked. Mail programs using it can no longer log in.';
      return redirect(c, '/');
    }
    if (path === '/password') {
      if (s.method !== 'password') throw new HttpProblem(404, 'Your password is managed by the identity provider.');
      const current = form.get('current') ?? '';
      const next = form.get('new') ?? '';
      const again = () => (error: string, status = 400) => sendPage(c, status, 'Change password', v.passwordView({ base, csrf: s.csrf, error, policy: policyText }));
      if (next !== (form.get('confirm') ?? '')) return again()('The two new passwords differ.');
      const check = await checkPassword(c, s.username, current);
      if (!check.ok) return again()(check.status === 403 ? 'The current password is wrong.' : check.text, check.status);
      const r = await opts.actions.changePassword(s.username, next);
      if ('refused' in r) return again()(r.message);
      const ended = sessions.destroyUser(s.username, c.sessionId);
      log.info({ user: s.username, ip: c.ip, otherSessionsEnded: ended }, 'portal: mailbox password changed');
      sessions.reauthenticated(c.sessionId as string);
      s.flash = 'Password changed. Use the new one in mail programs that do not use an app password.';
      return redirect(c, '/');
    }
    if (path === '/reauth') {
      if (s.method !== 'password') throw new HttpProblem(400, 'Sign in again with the identity provider.');
      const check = await checkPassword(c, s.username, form.get('password') ?? '');
      if (!check.ok) return sendPage(c, check.status, 'Confirm it is you', v.reauthView({ base, csrf: s.csrf, method: s.method, error: check.status === 403 ? 'Wrong password.' : check.text }));
      sessions.reauthenticated(c.sessionId as string);
      log.info({ user: s.username, ip: c.ip }, 'portal: re-authenticated');
      return redirect(c, '/app-passwords/new');
    }
    throw new HttpProblem(404, 'Not found.');
  }

  function asset(c: Ctx, body: string, type: string): void {
    c.res.writeHead(200, { 'content-type': type, 'cache-control': 'public, max-age=3600', 'content-length': Buffer.byteLength(body) });
    c.res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    securityHeaders(res);
    const url = new URL(req.url ?? '/', 'http://portal.invalid');
    const ip = clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'], cfg.trustedProxies);
    const cookies = parseCookies(req.headers.cookie);
    const sessionId = cookies.get(SESSION);
    const c: Ctx = { req, res, url, path: '', ip, cookies, sessionId, session: sessions.get(sessionId) };
    try {
      if (base !== '' && url.pathname === base) return redirect(c, '/');
      if (!url.pathname.startsWith(`${base}/`)) throw new HttpProblem(404, 'Not found.');
      c.path = url.pathname.slice(base.length);
      if (sessionId && !c.session) addCookie(res, cookie(SESSION, '', 0)); // expired or signed out
      await route(c);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpProblem) return message(c, err.status, err.status === 404 ? 'Not found' : 'Request refused', err.text);
      log.error({ err, path: c.path }, 'portal: request failed');
      return message(c, 500, 'Something went wrong', 'Something went wrong on our side. Please try again later.');
    }
  }

  const server = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    void handle(req, res);
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  return {
    listen: () => bindListener(server, cfg.listen),
    handle,
    sessions,
    async close() {
      await new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 500).unref();
      });
      await opts.signIn.close();
    },
  };
}
