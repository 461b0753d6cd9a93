/**
 * Offboarding that takes effect at once (issue 17). Dovecot's auth cache keeps
 * accepting a password for auth_cache_ttl after mailauth stopped accepting it,
 * and open IMAP sessions outlive a disabled mailbox. So every change mailauth
 * makes to who may log in ends in `userChanged(user, change)`, which asks every
 * configured Dovecot to forget the user (`doveadm auth cache flush USER`) and,
 * when the mailbox may no longer log in at all, to end its sessions
 * (`doveadm kick USER`) — through doveadm's HTTP API, doveadm's own TCP protocol
 * or the local command.
 *
 * The change itself is already committed when this runs and never fails
 * because of it: an unreachable Dovecot is reported to the caller, logged,
 * written to the pending list (retried by the daemon every minute and after
 * the next change, shown by `mailauth doctor`) until it succeeds or
 * `dovecot.retry_for` passes.
 *
 * A Dovecot that cannot be reached costs one `dovecot.timeout`, not one per
 * notification: after a transport failure the host is left alone for
 * DOWN_MEMO_MS (what is for it goes straight to the pending list), and the
 * pending list is retried after the change's own notifications, only against
 * hosts not known to be down. Before, every change first retried the whole
 * list one by one: a portal answer or a sync run waited pending × hosts ×
 * timeout while a Dovecot was down.
 */
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import type { DoveadmHost, DovecotNotifyConfig } from '../config/index.js';
import type { Logger } from '../logging/index.js';

/** What changed; disable, delete and deactivate also end open sessions. */
export type DovecotChange = 'password' | 'app_password' | 'authsource' | 'access' | 'disable' | 'delete' | 'deactivate';
export const KICKING_CHANGES: ReadonlySet<DovecotChange> = new Set(['disable', 'delete', 'deactivate']);

export type DoveadmAction = 'flush' | 'kick';

export interface DoveadmOutcome {
  host: string;
  action: DoveadmAction;
  user: string;
  ok: boolean;
  /** What doveadm said (kicked sessions, entries flushed) or why it failed; never a secret. */
  detail: string;
  /** The host could not be reached or did not answer in time (not: it refused the command). */
  unreachable?: boolean;
}

export interface NotifyReport {
  /** False when some host could not be told (the change itself stands). */
  ok: boolean;
  /** dovecot.notify is off: nothing was sent. */
  skipped: boolean;
  outcomes: DoveadmOutcome[];
}

export interface PendingNotification {
  host: string;
  user: string;
  action: DoveadmAction;
  attempts: number;
  firstFailed: Date;
  lastError: string;
}

/** Where failed notifications wait for a retry (the database table mailauth_dovecot_pending). */
export interface PendingStore {
  /** Add or update (host, user, action): attempts + 1, the last error. */
  failed(entry: { host: string; user: string; action: DoveadmAction; error: string }, now: Date): Promise<void>;
  succeeded(entry: { host: string; user: string; action: DoveadmAction }): Promise<void>;
  list(): Promise<PendingNotification[]>;
  /** Drop entries that failed first before `cutoff`; returns them. */
  expire(cutoff: Date): Promise<PendingNotification[]>;
}

export type ExecFn = (file: string, args: string[], opts: { timeoutMs: number }) => Promise<{ code: number; stdout: string; stderr: string }>;

export const systemExec: ExecFn = (file, args, opts) =>
  new Promise((resolve) => {
    execFile(file, args, { timeout: opts.timeoutMs, encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; killed?: boolean }) | null;
      const code = e === null ? 0 : typeof e.code === 'number' ? e.code : -1;
      resolve({ code, stdout, stderr: e !== null && code === -1 ? `${stderr}${e.killed ? `timed out after ${opts.timeoutMs} ms` : String(e.code ?? e.message)}` : stderr });
    });
  });

/**
 * `doveadm kick` with no session to end: 2.3 exits DOVEADM_EX_NOTFOUND (EX_NOHOST, 68; read in
 * doveadm-kick.c), EX_NOUSER (67) is taken the same way; 2.4 exits 0. Nothing to do, not a failure.
 */
const NOTHING_TO_KICK = new Set([67, 68]);

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 300);
}

/** The command line of a local doveadm host: `doveadm` may carry a prefix such as "chroot /srv/root doveadm" (split on spaces, no shell). */
export function doveadmArgv(host: Extract<DoveadmHost, { kind: 'command' }>, args: string[]): [string, string[]] {
  const [file = 'doveadm', ...prefix] = host.command.trim().split(/\s+/);
  return [file, [...prefix, ...(host.config ? ['-c', host.config] : []), ...args]];
}

export interface DoveadmClientOptions {
  timeoutMs: number;
  exec?: ExecFn;
  fetch?: typeof fetch;
  /**
   * What each HTTP API host was found to be (see httpApiKind), kept for
   * HTTP_API_KIND_TTL_MS so a Dovecot upgraded in place is noticed. The notifier
   * keeps one; without it every flush asks again.
   */
  httpApiKinds?: Map<string, { kind: HttpApiKind; at: number }>;
  now?: () => number;
}

/**
 * Dovecot 2.4's doveadm HTTP API cannot run `authCacheFlush` (measured on 2.4.1, read in the
 * 2.4.1–2.4.4 and main sources): before every command its HTTP handler logs the `user`
 * parameter through doveadm_cmd_param_str(), which since 2.4 asserts that the parameter is a
 * string — authCacheFlush's `user` is an array, so doveadm-server panics (a child killed with
 * signal 6 in Dovecot's log) and the HTTP connection closes with no answer; without `user`,
 * 2.4's server-side flush stops with "Fatal: Missing user parameter". 2.3 returns false on the
 * mismatch and works. `kick` (parameter `mask`) works on both. So a flush is never sent to a
 * 2.4 HTTP API (each try would kill a doveadm-server process): the outcome says to use
 * doveadm's TCP protocol (tcp://, below) or the local command for that host.
 */
export type HttpApiKind = 'flush-ok' | 'flush-crashes';
export const HTTP_API_KIND_TTL_MS = 10 * 60_000;

/**
 * 2.4's command list is recognised by its settings filters: `fsGet` takes `filterName` where
 * 2.3 took `fsDriver`/`fsArgs` (the listing GET /doveadm/v1 answers, compared on 2.3.19.1 and 2.4.1).
 */
export function httpApiKind(listing: unknown): HttpApiKind | null {
  if (!Array.isArray(listing)) return null;
  const fsGet = listing.find((c: { command?: unknown }) => c?.command === 'fsGet') as { parameters?: { name?: unknown }[] } | undefined;
  const names = Array.isArray(fsGet?.parameters) ? fsGet.parameters.map((p) => p?.name) : [];
  if (names.includes('filterName')) return 'flush-crashes';
  if (listing.some((c: { command?: unknown }) => c?.command === 'authCacheFlush')) return 'flush-ok';
  return null;
}

/** `doveadm kick` with nothing to kick over doveadm's protocol: 2.3 answers -NOTFOUND (2.4 +). */
const NOTHING_TO_KICK_CODES = new Set(['NOTFOUND', 'NOUSER']);

/** Dovecot's tab escaping (lib/strescape.c, str_tabescape / str_tabunescape). */
function tabEscape(s: string): string {
  return s.replace(/[\x01\t\r\n]/g, (c) => `\x01${c === '\x01' ? '1' : c === '\t' ? 't' : c === '\r' ? 'r' : 'n'}`);
}
function tabUnescape(s: string): string {
  return s.replace(/\x01([1trn0])/g, (_, c: string) => (c === '1' ? '\x01' : c === 't' ? '\t' : c === 'r' ? '\r' : c === 'n' ? '\n' : '\0'));
}

/** An answer of doveadm's protocol longer than this is not read further (a flush or kick answers a few bytes). */
const MAX_ANSWER_CHARS = 1 << 20;

type ProtocolAnswer = { ok: true; values: string[] } | { ok: false; code: string; values: string[] } | { failed: string };

/**
 * One command over doveadm's own protocol (the doveadm server's inet_listener; what `doveadm -S`
 * and director/dsync speak; no npm client exists, and the exchange is four lines):
 *   C: VERSION\tdoveadm-server\t1\t0      (minor 0: no multiplexed output)
 *   S: -                                   (authenticate; "+" on a pre-authenticated socket)
 *   C: PLAIN\tbase64(\0doveadm\0PASSWORD)
 *   S: +                                   ("-" and close: wrong doveadm_password)
 *   C: FLAGS\tUSER\tCOMMAND\tARG…          (tab-escaped; FLAGS and USER empty here)
 *   S: VALUE\t…\n+\n  or  \n-CODE\n        (CODE: NOTFOUND, NOUSER, TEMPFAIL, …)
 * Read in src/doveadm/client-connection-tcp.c (2.3.19, 2.4.1) and run against both.
 */
function doveadmProtocol(host: Extract<DoveadmHost, { kind: 'tcp' }>, command: string[], timeoutMs: number): Promise<ProtocolAnswer> {
  return new Promise((resolve) => {
    const sock = connect({ host: host.host, port: host.port });
    let state: 'greeting' | 'auth' | 'command' = 'greeting';
    let buf = '';
    let done = false;
    const finish = (a: ProtocolAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(a);
    };
    const timer = setTimeout(() => finish({ failed: `no answer within ${timeoutMs} ms` }), timeoutMs);
    const sendCommand = (): void => {
      state = 'command';
      sock.write(`${['', '', ...command].map(tabEscape).join('\t')}\n`);
    };
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('VERSION\tdoveadm-server\t1\t0\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      // Our answers are a line or two; a server that streams without end is given up at once,
      // not buffered (and rescanned) until the timeout.
      if (buf.length > MAX_ANSWER_CHARS) return finish({ failed: `the doveadm server's answer is larger than ${MAX_ANSWER_CHARS} characters; given up` });
      for (;;) {
        if (state === 'command') {
          // The answer ends with "+" or "-CODE" on a line of its own; values are tab-escaped, so no
          // earlier line can look like that.
          const end = /(?:^|\n)([+-])([A-Z_]*)(?: [^\n]*)?\n$/.exec(buf);
          if (!end) return;
          const values = buf.slice(0, end.index).split('\t').filter((v) => v !== '').map(tabUnescape);
          finish(end[1] === '+' ? { ok: true, values } : { ok: false, code: end[2] ?? '', values });
          return;
        }
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (state === 'greeting') {
          if (line === '+') sendCommand();
          else if (line === '-') {
            state = 'auth';
            sock.write(`PLAIN\t${Buffer.from(`\0doveadm\0${host.password}`).toString('base64')}\n`);
          } else return finish({ failed: `unexpected greeting from the doveadm server: ${oneLine(line)}` });
        } else if (state === 'auth') {
          if (line === '+') sendCommand();
          else return finish({ failed: 'the doveadm server refused the password; check doveadm_password' });
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish({ failed: `cannot reach ${host.host}:${host.port}: ${e.code ?? e.message}` }));
    sock.on('close', () => finish({ failed: state === 'auth' ? 'the doveadm server refused the password; check doveadm_password' : `the doveadm server at ${host.host}:${host.port} closed the connection` }));
  });
}

function httpAuthorization(host: Extract<DoveadmHost, { kind: 'http' }>): string {
  return host.apiKey !== null ? `X-Dovecot-API ${Buffer.from(host.apiKey).toString('base64')}` : `Basic ${Buffer.from(`doveadm:${host.password ?? ''}`).toString('base64')}`;
}

type HttpResult = { status: number; text: string } | { failed: string };

async function httpCall(host: Extract<DoveadmHost, { kind: 'http' }>, init: { method: 'GET' | 'POST'; body?: string }, opts: DoveadmClientOptions): Promise<HttpResult> {
  try {
    const res = await (opts.fetch ?? fetch)(host.url, {
      method: init.method,
      headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), authorization: httpAuthorization(host) },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    return { status: res.status, text: await res.text().catch(() => '') };
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string }; message?: string };
    return { failed: e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : `cannot reach ${host.url}: ${e.cause?.code ?? e.message ?? 'error'}` };
  }
}

function httpRefusal(host: Extract<DoveadmHost, { kind: 'http' }>, status: number): string {
  return `doveadm HTTP API refused the ${host.apiKey !== null ? 'API key' : 'password'} (${status}); check ${host.apiKey !== null ? 'doveadm_api_key' : 'doveadm_password'}`;
}

/** What the HTTP API host is (cached); a string when it cannot be told. */
async function probeHttpApi(host: Extract<DoveadmHost, { kind: 'http' }>, opts: DoveadmClientOptions): Promise<HttpApiKind | string> {
  const now = (opts.now ?? Date.now)();
  const known = opts.httpApiKinds?.get(host.url);
  if (known && now - known.at < HTTP_API_KIND_TTL_MS) return known.kind;
  const r = await httpCall(host, { method: 'GET' }, opts);
  if ('failed' in r) return r.failed;
  if (r.status === 401 || r.status === 403) return httpRefusal(host, r.status);
  if (r.status !== 200) return `doveadm HTTP API answered ${r.status} to GET: ${oneLine(r.text)}`;
  let kind: HttpApiKind | null = null;
  try {
    kind = httpApiKind(JSON.parse(r.text));
  } catch {
    kind = null;
  }
  if (kind === null) return 'doveadm HTTP API: its command list has no authCacheFlush';
  opts.httpApiKinds?.set(host.url, { kind, at: now });
  return kind;
}

/**
 * Why `user` cannot be handed to doveadm as it is, or null. Dovecot reads its arguments as C
 * strings, so a NUL ends the name early ("bob@example.org\0x" would flush or kick bob), and
 * `doveadm kick` takes its argument as a wildcard mask (doveadm-who.c, wildcard_match_icase;
 * 2.3 and 2.4, no escape exists): "*@example.org" — a valid RFC 5322 local part — would end
 * every session of the domain. A flush compares names exactly (auth-cache.c), so `*` and `?`
 * are fine there. Such a kick is reported as failed, with what to do.
 */
function userRefusal(action: DoveadmAction, user: string): string | null {
  if (/[\x00-\x1f\x7f]/.test(user)) return 'the user name has a control character; not sent to doveadm (Dovecot would read another name)';
  if (action === 'kick' && /[*?]/.test(user)) {
    return "the user name has * or ?, which doveadm kick matches as wildcards (it would end other users' sessions too); not sent: end this user's sessions by hand";
  }
  return null;
}

/** One doveadm command on one host. Never throws: the outcome says what happened. */
export async function runDoveadm(host: DoveadmHost, action: DoveadmAction, user: string, opts: DoveadmClientOptions): Promise<DoveadmOutcome> {
  const base = { host: host.name, action, user };
  const refused = userRefusal(action, user);
  if (refused !== null) return { ...base, ok: false, detail: refused };
  // '--' ends doveadm's options (getopt_long, local command and protocol alike): a user name
  // such as "-a@example.org" is otherwise read as -a SOCKET_PATH and the user is never named.
  if (host.kind === 'command') {
    const name = action === 'flush' ? ['auth', 'cache', 'flush'] : ['kick'];
    const [file, argv] = doveadmArgv(host, [...name, '--', user]);
    const r = await (opts.exec ?? systemExec)(file, argv, { timeoutMs: opts.timeoutMs });
    if (r.code === 0) return { ...base, ok: true, detail: oneLine(r.stdout || r.stderr) || 'done' };
    if (action === 'kick' && NOTHING_TO_KICK.has(r.code)) return { ...base, ok: true, detail: 'no open sessions' };
    return { ...base, ok: false, detail: `doveadm ${name.join(' ')} exited ${r.code}: ${oneLine(r.stderr || r.stdout)}` };
  }
  if (host.kind === 'tcp') {
    const name = action === 'flush' ? 'auth cache flush' : 'kick';
    const a = await doveadmProtocol(host, [name, '--', user], opts.timeoutMs);
    if ('failed' in a) return { ...base, ok: false, detail: a.failed, unreachable: true };
    if (a.ok) return { ...base, ok: true, detail: action === 'flush' ? `${a.values[0] ?? '?'} cache entries flushed` : oneLine(a.values.join(' ')) || 'done' };
    if (action === 'kick' && NOTHING_TO_KICK_CODES.has(a.code)) return { ...base, ok: true, detail: 'no open sessions' };
    return { ...base, ok: false, detail: `doveadm ${name} failed on the doveadm server: ${a.code || 'error'} ${oneLine(a.values.join(' '))}`.trim() };
  }
  if (action === 'flush') {
    const kind = await probeHttpApi(host, opts);
    if (kind === 'flush-crashes') {
      return { ...base, ok: false, detail: "Dovecot 2.4's doveadm HTTP API cannot flush the auth cache (its doveadm-server dies on authCacheFlush; kick works); give this host url: tcp://HOST:PORT of doveadm's protocol with password_file, or the local doveadm" };
    }
    if (kind !== 'flush-ok') return { ...base, ok: false, detail: kind };
  }
  // doveadm's HTTP API: a JSON array of [command, parameters, tag]; commands and parameters camel-cased.
  const command = action === 'flush' ? ['authCacheFlush', { user: [user] }, 'flush'] : ['kick', { mask: [user] }, 'kick'];
  const r = await httpCall(host, { method: 'POST', body: JSON.stringify([command]) }, opts);
  if ('failed' in r) return { ...base, ok: false, detail: r.failed, unreachable: true };
  if (r.status === 401 || r.status === 403) return { ...base, ok: false, detail: httpRefusal(host, r.status) };
  if (r.status !== 200) return { ...base, ok: false, detail: `doveadm HTTP API answered ${r.status}: ${oneLine(r.text)}` };
  let answer: unknown;
  try {
    answer = JSON.parse(r.text);
  } catch {
    return { ...base, ok: false, detail: 'doveadm HTTP API answered no JSON' };
  }
  const first = Array.isArray(answer) && Array.isArray(answer[0]) ? (answer[0] as unknown[]) : null;
  if (first?.[0] === 'doveadmResponse') return { ...base, ok: true, detail: oneLine(JSON.stringify(first[1] ?? [])) };
  if (first?.[0] === 'error') {
    const e = first[1] as { type?: string; exitCode?: number } | undefined;
    if (action === 'kick' && e?.exitCode !== undefined && NOTHING_TO_KICK.has(e.exitCode)) return { ...base, ok: true, detail: 'no open sessions' };
    return { ...base, ok: false, detail: `doveadm HTTP API error: ${oneLine(JSON.stringify(e ?? {}))}` };
  }
  return { ...base, ok: false, detail: `doveadm HTTP API answered an unexpected shape: ${oneLine(r.text)}` };
}

export interface DovecotNotifier {
  /**
   * THE place every change mailauth makes to who may log in goes through, after it
   * is committed: `mailbox passwd` ('password'), `app-password delete` ('app_password'),
   * `mailbox set-authsource` ('authsource'), `mailbox edit --active 0|2` ('disable'),
   * `mailbox delete` ('delete'), `sync` deactivation ('deactivate'); the portal too.
   * Flushes the user from every Dovecot's auth cache; kicks their sessions for
   * disable/delete/deactivate. Never throws; retries what failed before, first.
   */
  userChanged(user: string, change: DovecotChange): Promise<NotifyReport>;
  /** Send what is pending (the daemon calls this periodically). */
  retryPending(): Promise<NotifyReport>;
  pending(): Promise<PendingNotification[]>;
}

export interface DovecotNotifierOptions {
  config: DovecotNotifyConfig;
  logger: Logger;
  /** Absent: nothing is remembered for a retry (a CLI without database, tests). */
  store?: PendingStore;
  exec?: ExecFn;
  fetch?: typeof fetch;
  now?: () => Date;
}

const keyOf = (host: string, action: DoveadmAction, user: string): string => JSON.stringify([host, action, user]);

/** How long a host that did not answer is left alone (its notifications go to the pending list). */
const DOWN_MEMO_MS = 30_000;

export function createDovecotNotifier(opts: DovecotNotifierOptions): DovecotNotifier {
  const { config, logger } = opts;
  const now = opts.now ?? (() => new Date());
  const client: DoveadmClientOptions = { timeoutMs: config.timeoutMs, httpApiKinds: new Map(), now: () => now().getTime() };
  if (opts.exec) client.exec = opts.exec;
  if (opts.fetch) client.fetch = opts.fetch;
  const hosts = new Map(config.hosts.map((h) => [h.name, h]));

  async function record(o: DoveadmOutcome): Promise<void> {
    if (!opts.store) return;
    try {
      if (o.ok) await opts.store.succeeded(o);
      else await opts.store.failed({ host: o.host, user: o.user, action: o.action, error: o.detail }, now());
    } catch (err) {
      logger.error({ err, host: o.host, user: o.user, action: o.action }, 'cannot record a Dovecot notification for retry');
    }
  }

  /** Hosts that just failed to answer, left alone until `until` (Date ms). */
  const down = new Map<string, { until: number; detail: string }>();

  async function send(host: DoveadmHost, action: DoveadmAction, user: string): Promise<DoveadmOutcome> {
    const memo = down.get(host.name);
    let o: DoveadmOutcome;
    if (memo && now().getTime() < memo.until) {
      o = { host: host.name, action, user, ok: false, detail: `not tried: the host did not answer moments ago (${memo.detail})`, unreachable: true };
    } else {
      o = await runDoveadm(host, action, user, client);
      if (o.unreachable) down.set(host.name, { until: now().getTime() + DOWN_MEMO_MS, detail: o.detail });
      else down.delete(host.name);
    }
    if (o.ok) logger.info({ host: o.host, user, action, detail: o.detail }, 'Dovecot told');
    else logger.warn({ host: o.host, user, action, problem: o.detail }, 'Dovecot could not be told; will retry');
    await record(o);
    return o;
  }

  /** `sent`: host+action+user keys this change has just sent, not sent twice. */
  async function retryPending(sent: ReadonlySet<string> = new Set()): Promise<NotifyReport> {
    if (!config.notify || !opts.store) return { ok: true, skipped: !config.notify, outcomes: [] };
    let list: PendingNotification[];
    try {
      const expired = await opts.store.expire(new Date(now().getTime() - config.retryForMs));
      for (const e of expired) logger.error({ host: e.host, user: e.user, action: e.action, attempts: e.attempts, problem: e.lastError }, 'gave up telling Dovecot (dovecot.retry_for passed)');
      list = await opts.store.list();
    } catch (err) {
      logger.error({ err }, 'cannot read pending Dovecot notifications');
      return { ok: false, skipped: false, outcomes: [] };
    }
    const outcomes: DoveadmOutcome[] = [];
    for (const p of list) {
      const host = hosts.get(p.host);
      if (!host) {
        // The host left the config: nothing to retry against.
        await opts.store.succeeded(p).catch(() => undefined);
        continue;
      }
      // A host that just failed to answer keeps its entries for a later round, untouched.
      const memo = down.get(host.name);
      if ((memo && now().getTime() < memo.until) || sent.has(keyOf(p.host, p.action, p.user))) continue;
      // Refused for its user name (a wildcard kick, a control character): a retry would be refused
      // again. It stays listed (doctor shows it) until retry_for, without a warning every minute.
      if (userRefusal(p.action, p.user) !== null) continue;
      outcomes.push(await send(host, p.action, p.user));
    }
    return { ok: outcomes.every((o) => o.ok), skipped: false, outcomes };
  }

  return {
    async userChanged(user, change) {
      if (!config.notify) return { ok: true, skipped: true, outcomes: [] };
      const actions: DoveadmAction[] = KICKING_CHANGES.has(change) ? ['flush', 'kick'] : ['flush'];
      const outcomes = await Promise.all(config.hosts.map(async (h) => {
        const out: DoveadmOutcome[] = [];
        for (const a of actions) out.push(await send(h, a, user));
        return out;
      }));
      const flat = outcomes.flat();
      // Then what is still pending, against the hosts that answered.
      await retryPending(new Set(flat.map((o) => keyOf(o.host, o.action, o.user))));
      return { ok: flat.every((o) => o.ok), skipped: false, outcomes: flat };
    },
    retryPending: () => retryPending(),
    async pending() {
      return opts.store ? opts.store.list() : [];
    },
  };
}
