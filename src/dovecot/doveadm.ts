/**
 * Offboarding that takes effect at once (issue 17). Dovecot's auth cache keeps
 * accepting a password for auth_cache_ttl after mailauth stopped accepting it,
 * and open IMAP sessions outlive a disabled mailbox. So every change mailauth
 * makes to who may log in ends in `userChanged(user, change)`, which asks every
 * configured Dovecot to forget the user (`doveadm auth cache flush USER`) and,
 * when the mailbox may no longer log in at all, to end its sessions
 * (`doveadm kick USER`) — through doveadm's HTTP API or the local command.
 *
 * The change itself is already committed when this runs and never fails
 * because of it: an unreachable Dovecot is reported to the caller, logged,
 * written to the pending list (retried by the daemon and by the next change,
 * shown by `mailauth doctor`) until it succeeds or `dovecot.retry_for` passes.
 */
import { execFile } from 'node:child_process';
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
}

/** One doveadm command on one host. Never throws: the outcome says what happened. */
export async function runDoveadm(host: DoveadmHost, action: DoveadmAction, user: string, opts: DoveadmClientOptions): Promise<DoveadmOutcome> {
  const base = { host: host.name, action, user };
  if (host.kind === 'command') {
    const args = action === 'flush' ? ['auth', 'cache', 'flush', user] : ['kick', user];
    const [file, argv] = doveadmArgv(host, args);
    const r = await (opts.exec ?? systemExec)(file, argv, { timeoutMs: opts.timeoutMs });
    if (r.code === 0) return { ...base, ok: true, detail: oneLine(r.stdout || r.stderr) || 'done' };
    if (action === 'kick' && NOTHING_TO_KICK.has(r.code)) return { ...base, ok: true, detail: 'no open sessions' };
    return { ...base, ok: false, detail: `doveadm ${args.slice(0, -1).join(' ')} exited ${r.code}: ${oneLine(r.stderr || r.stdout)}` };
  }
  // doveadm's HTTP API: a JSON array of [command, parameters, tag]; commands and parameters camel-cased.
  const command = action === 'flush' ? ['authCacheFlush', { user: [user] }, 'flush'] : ['kick', { mask: [user] }, 'kick'];
  let res: Response;
  try {
    res = await (opts.fetch ?? fetch)(host.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `X-Dovecot-API ${Buffer.from(host.apiKey).toString('base64')}` },
      body: JSON.stringify([command]),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string }; message?: string };
    return { ...base, ok: false, detail: e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : `cannot reach ${host.url}: ${e.cause?.code ?? e.message ?? 'error'}` };
  }
  const text = await res.text().catch(() => '');
  if (res.status === 401 || res.status === 403) return { ...base, ok: false, detail: `doveadm HTTP API refused the API key (${res.status}); check doveadm_api_key` };
  if (res.status !== 200) return { ...base, ok: false, detail: `doveadm HTTP API answered ${res.status}: ${oneLine(text)}` };
  let answer: unknown;
  try {
    answer = JSON.parse(text);
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
  return { ...base, ok: false, detail: `doveadm HTTP API answered an unexpected shape: ${oneLine(text)}` };
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

export function createDovecotNotifier(opts: DovecotNotifierOptions): DovecotNotifier {
  const { config, logger } = opts;
  const now = opts.now ?? (() => new Date());
  const client: DoveadmClientOptions = { timeoutMs: config.timeoutMs };
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

  async function send(host: DoveadmHost, action: DoveadmAction, user: string): Promise<DoveadmOutcome> {
    const o = await runDoveadm(host, action, user, client);
    if (o.ok) logger.info({ host: o.host, user, action, detail: o.detail }, 'Dovecot told');
    else logger.warn({ host: o.host, user, action, problem: o.detail }, 'Dovecot could not be told; will retry');
    await record(o);
    return o;
  }

  async function retryPending(): Promise<NotifyReport> {
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
      outcomes.push(await send(host, p.action, p.user));
    }
    return { ok: outcomes.every((o) => o.ok), skipped: false, outcomes };
  }

  return {
    async userChanged(user, change) {
      if (!config.notify) return { ok: true, skipped: true, outcomes: [] };
      await retryPending();
      const actions: DoveadmAction[] = KICKING_CHANGES.has(change) ? ['flush', 'kick'] : ['flush'];
      const outcomes = await Promise.all(config.hosts.map(async (h) => {
        const out: DoveadmOutcome[] = [];
        for (const a of actions) out.push(await send(h, a, user));
        return out;
      }));
      const flat = outcomes.flat();
      return { ok: flat.every((o) => o.ok), skipped: false, outcomes: flat };
    },
    retryPending,
    async pending() {
      return opts.store ? opts.store.list() : [];
    },
  };
}
