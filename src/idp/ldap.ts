/**
 * The LDAP client (ldapts 8): a pool of connections bound as the service
 * account for searches, a pool of connections for user binds (a bind changes
 * a connection's identity, so those are checked out one login at a time),
 * failover across the configured hosts, reconnects, LDAPS and StartTLS with
 * the system trust store plus an optional CA file (or no checks with
 * ignore_ssl_error), and timeouts on connecting and on every operation.
 *
 * - Connections are made lazily and replaced when they fail: a broken or
 *   timed-out connection is dropped (its socket destroyed), the next use
 *   connects again, trying the hosts in order starting with the last one
 *   that worked. A host that refused is skipped for `hostCooldownMs`.
 * - A caller's AbortSignal ends its wait at once (the connection it used is
 *   dropped, since its state is unknown): a hanging directory costs a login
 *   its deadline, never more.
 * - Filter values are escaped with ldapts's RFC 4515 escaper (userFilter);
 *   nothing here builds a filter from unescaped input.
 * - Faults are MailauthErrors with details.reason network | tls | timeout |
 *   service_bind | directory; a wrong user password is a value, not a fault.
 *   No password ever reaches an error message.
 *
 * Reading entries is pure conversion (entryOf) so the auth and sync layers
 * work on plain `{ dn, attrs }` objects with lower-cased attribute names.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { Client, InvalidCredentialsError, NoSuchObjectError, escapeFilter } from 'ldapts';
import type { Entry, ResultCodeError } from 'ldapts';
import { MailauthError, isMailauthError } from '../errors.js';
import type { LdapSettings } from './settings.js';

export interface LdapEntry {
  dn: string;
  /** Lower-cased attribute name → values (binary values as base64). */
  attrs: Record<string, string[]>;
}

export interface LdapConnectionOptions {
  hosts: readonly string[];
  port: number;
  useSsl: boolean;
  useTls: boolean;
  ignoreSslError: boolean;
  /** Extra CA certificates (PEM) to trust besides Node's store. */
  ca?: string | null;
  connectTimeoutMs: number;
  opTimeoutMs: number;
}

export interface LdapDirectoryOptions extends LdapConnectionOptions {
  bindDn: string;
  bindPassword: string;
  /** Service connections for searches, and connections for user binds (default 4 each). */
  poolSize?: number;
  /** How long a host that failed to connect is skipped while another one works (default 30 s). */
  hostCooldownMs?: number;
  now?: () => number;
}

export type BindOutcome =
  | { ok: true }
  /** invalid: the directory refused the credentials (code 49); diagnostic: its message, e.g. AD's "data 775". */
  | { ok: false; invalid: true; diagnostic: string };

export interface SearchOptions {
  scope?: 'base' | 'one' | 'sub';
  attributes?: readonly string[];
  sizeLimit?: number;
  signal?: AbortSignal;
}

export interface LdapDirectory {
  /** A search on a service connection. */
  search(base: string, filter: string, opts?: SearchOptions): Promise<LdapEntry[]>;
  /** A paged search (simple paged results, RFC 2696) on a connection of its own; one array per page. */
  pages(base: string, filter: string, opts: { pageSize: number; attributes?: readonly string[]; signal?: AbortSignal }): AsyncGenerator<LdapEntry[], void, undefined>;
  /** Bind as `dn` with `password` on a pooled bind connection; faults throw, a refusal is a value. */
  bind(dn: string, password: string, signal?: AbortSignal): Promise<BindOutcome>;
  /** The host the last successful connection went to. */
  readonly currentHost: string | null;
  stats(): { serviceOpen: number; bindOpen: number; bindIdle: number; bindWaiting: number; connects: number; failovers: number };
  close(): Promise<void>;
}

/** The escaped equality filter for one user value (RFC 4515): `*`, `(`, `)`, `\` and NUL cannot change its meaning. */
export function equalityFilter(attribute: string, value: string): string {
  if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(attribute)) throw new MailauthError('ERR_INVALID_INPUT', `not an LDAP attribute name: ${JSON.stringify(attribute)}`);
  return `(${attribute}${escapeFilter`=${value}`})`;
}

/** The configured filter (or every object) AND the escaped user match. */
export function userFilter(baseFilter: string | null, match: string): string {
  return baseFilter ? `(&${baseFilter}${match})` : match;
}

export function connectionOptionsOf(s: LdapSettings, readCa: (path: string) => string = (p) => readFileSync(p, 'utf8')): LdapConnectionOptions {
  let ca: string | null = null;
  if (s.caFile) {
    try {
      ca = readCa(s.caFile);
    } catch (err) {
      throw new MailauthError('ERR_CONFIG_INVALID', `identity_provider.ca_file: cannot read ${s.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
  }
  return {
    hosts: s.hosts,
    port: s.port,
    useSsl: s.useSsl,
    useTls: s.useTls,
    ignoreSslError: s.ignoreSslError,
    ca,
    connectTimeoutMs: s.connectTimeoutMs,
    opTimeoutMs: s.opTimeoutMs,
  };
}

export function entryOf(e: Entry): LdapEntry {
  const attrs: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'dn') continue;
    const list = Array.isArray(v) ? v : [v];
    attrs[k.toLowerCase()] = list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
  }
  return { dn: e.dn, attrs };
}

export function firstValue(e: LdapEntry, attribute: string): string | null {
  const v = e.attrs[attribute.toLowerCase()];
  return v && v.length > 0 && v[0] !== undefined ? v[0] : null;
}

// ── errors ──────────────────────────────────────────────────────────────────

const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** A driver or socket error → a coded fault naming the host (never a password). */
export function ldapFault(err: unknown, host: string, what: string): MailauthError {
  if (isMailauthError(err)) return err;
  const e = err as NodeJS.ErrnoException & { code?: string | number };
  const code = typeof e?.code === 'string' ? e.code : null;
  const msg = e?.message ?? String(err);
  if (code && TLS_CODES.has(code)) {
    return new MailauthError('ERR_IDP_UNAVAILABLE', `${what} ${host}: TLS failed (${code}: ${msg})`, { cause: err, details: { reason: 'tls', host, networkCode: code } });
  }
  if (/timed? ?out|timeout/i.test(msg) || code === 'ETIMEDOUT') {
    return new MailauthError('ERR_IDP_TIMEOUT', `${what} ${host}: no answer in time (${msg})`, { cause: err, details: { reason: 'timeout', host } });
  }
  if (code && /^E[A-Z]+$/.test(code)) {
    return new MailauthError('ERR_IDP_UNAVAILABLE', `${what} ${host}: ${code}`, { cause: err, details: { reason: 'network', host, networkCode: code } });
  }
  if (/socket|connection closed|Connection/i.test(msg)) {
    return new MailauthError('ERR_IDP_UNAVAILABLE', `${what} ${host}: connection lost (${msg.split('\n')[0]})`, { cause: err, details: { reason: 'network', host } });
  }
  const rc = (err as ResultCodeError)?.code;
  return new MailauthError('ERR_IDP_UNAVAILABLE', `${what} ${host}: ${msg.split('\n')[0]}${typeof rc === 'number' ? ` (LDAP result ${rc})` : ''}`, {
    cause: err,
    details: { reason: 'directory', host, ...(typeof rc === 'number' ? { ldapCode: rc } : {}) },
  });
}

function aborted(signal: AbortSignal | undefined): MailauthError {
  const r = signal?.reason as unknown;
  return isMailauthError(r) ? r : new MailauthError('ERR_DEADLINE', 'deadline reached while waiting for the directory', { cause: r });
}

/** Resolves or rejects with `p`, or rejects when `signal` aborts (calling onAbort first). */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    onAbort();
    p.catch(() => undefined);
    return Promise.reject(aborted(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => {
      onAbort();
      reject(aborted(signal));
    };
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

// ── connections ─────────────────────────────────────────────────────────────

interface Conn {
  client: Client;
  host: string;
  dead: boolean;
}

function tlsOptions(o: LdapConnectionOptions, host: string): ConnectionOptions {
  const t: ConnectionOptions = { rejectUnauthorized: !o.ignoreSslError, minVersion: 'TLSv1.2' };
  if (o.ca) t.ca = o.ca;
  const h = host.replace(/^\[|\]$/g, '');
  if (isIP(h) === 0) t.servername = h;
  return t;
}

function urlOf(o: LdapConnectionOptions, host: string): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return `${o.useSsl ? 'ldaps' : 'ldap'}://${h}:${o.port}`;
}

/**
 * One connected (and, with StartTLS, upgraded) client to one host; no bind yet.
 * Exported for `idp test`, which checks each host on its own.
 */
export async function openConnection(o: LdapConnectionOptions, host: string): Promise<Client> {
  const client = new Client({
    url: urlOf(o, host),
    connectTimeout: o.connectTimeoutMs,
    timeout: o.opTimeoutMs,
    // ldapts speaks TLS from the first byte whenever tlsOptions are given: only for ldaps://.
    ...(o.useSsl ? { tlsOptions: tlsOptions(o, host) } : {}),
    strictDN: false,
  });
  try {
    if (o.useTls) await client.startTLS(tlsOptions(o, host));
    else await (client as unknown as { _connect(): Promise<void> })._connect();
  } catch (err) {
    dropClient(client);
    throw ldapFault(err, host, o.useTls ? 'StartTLS with' : 'connecting to');
  }
  return client;
}

/** Close at once, whatever the server does (it may be stopped). */
function dropClient(client: Client): void {
  const c = client as unknown as { socket?: { destroy(): void }; _destroySocket?(s: unknown): void };
  try {
    if (c.socket && c._destroySocket) c._destroySocket(c.socket);
    else client.unbind().catch(() => undefined);
  } catch {
    // already closed
  }
}

export function createLdapDirectory(opts: LdapDirectoryOptions): LdapDirectory {
  const poolSize = Math.max(1, opts.poolSize ?? 4);
  const now = opts.now ?? Date.now;
  const cooldownMs = opts.hostCooldownMs ?? 30_000;
  const hosts = [...opts.hosts];
  if (hosts.length === 0) throw new MailauthError('ERR_CONFIG_INVALID', 'identity_provider.host: no LDAP host configured');
  let preferred = 0;
  let currentHost: string | null = null;
  const failedAt = new Map<string, number>();
  let connects = 0;
  let failovers = 0;
  let closed = false;

  /** Hosts in the order to try: the last good one first, hosts in their cooldown last. */
  function order(): string[] {
    const rotated = [...hosts.slice(preferred), ...hosts.slice(0, preferred)];
    const t = now();
    const cool = (h: string): boolean => (failedAt.get(h) ?? -Infinity) > t - cooldownMs;
    return [...rotated.filter((h) => !cool(h)), ...rotated.filter(cool)];
  }

  async function connect(bindAsService: boolean): Promise<Conn> {
    if (closed) throw new MailauthError('ERR_IDP_UNAVAILABLE', 'the LDAP client is closed');
    const faults: MailauthError[] = [];
    const tries = order();
    for (const [i, host] of tries.entries()) {
      let client: Client;
      try {
        client = await openConnection(opts, host);
      } catch (err) {
        failedAt.set(host, now());
        faults.push(ldapFault(err, host, 'connecting to'));
        continue;
      }
      if (bindAsService) {
        try {
          await client.bind(opts.bindDn, opts.bindPassword);
        } catch (err) {
          dropClient(client);
          if (err instanceof InvalidCredentialsError) {
            // The same account on every host: trying the others would only repeat it (and count towards a lockout).
            throw new MailauthError('ERR_IDP_AUTH', `the directory at ${host} refused the service account ${opts.bindDn} (invalid credentials)`, {
              cause: err,
              details: { reason: 'service_bind', host },
            });
          }
          failedAt.set(host, now());
          faults.push(ldapFault(err, host, 'service bind at'));
          continue;
        }
      }
      connects++;
      if (i > 0) failovers++;
      preferred = hosts.indexOf(host);
      currentHost = host;
      failedAt.delete(host);
      return { client, host, dead: false };
    }
    const first = faults[0];
    const allTimeouts = faults.every((f) => f.code === 'ERR_IDP_TIMEOUT');
    throw new MailauthError(allTimeouts ? 'ERR_IDP_TIMEOUT' : 'ERR_IDP_UNAVAILABLE', `no LDAP host reachable: ${faults.map((f) => f.message).join('; ')}`, {
      cause: first,
      details: { reason: (first?.details?.reason as string | undefined) ?? 'network', hosts: tries },
    });
  }

  function kill(c: Conn): void {
    c.dead = true;
    dropClient(c.client);
  }

  /** A fault that says the connection (not the request) is broken. */
  function breaksConnection(err: unknown): boolean {
    if (err instanceof InvalidCredentialsError || err instanceof NoSuchObjectError) return false;
    const rc = (err as ResultCodeError)?.code;
    // LDAP result codes: 32 no such object, 4 size limit, 11 admin limit… keep the connection.
    return !(typeof rc === 'number' && rc > 0 && rc < 80 && rc !== 51 && rc !== 52);
  }

  // Service connections: shared, several requests in flight each (LDAP message ids).
  const service: (Promise<Conn> | null)[] = Array.from({ length: poolSize }, () => null);
  let next = 0;
  function serviceConn(): Promise<Conn> {
    const i = next;
    next = (next + 1) % poolSize;
    let p = service[i] ?? null;
    if (p === null) {
      p = connect(true);
      service[i] = p;
      p.catch(() => {
        if (service[i] === p) service[i] = null;
      });
    }
    return p.then((c) => {
      if (!c.dead && c.client.isConnected) return c;
      if (service[i] === p) service[i] = null;
      return serviceConn();
    });
  }

  async function onService<T>(what: string, signal: AbortSignal | undefined, op: (c: Client) => Promise<T>): Promise<T> {
    if (signal?.aborted) throw aborted(signal);
    // One retry on a fresh connection: an idle connection the server closed is not an outage.
    for (let attempt = 0; ; attempt++) {
      const c = await raceSignal(serviceConn(), signal, () => undefined);
      try {
        return await raceSignal(op(c.client), signal, () => kill(c));
      } catch (err) {
        if (isMailauthError(err, 'ERR_DEADLINE')) throw err;
        if (breaksConnection(err)) {
          kill(c);
          const fault = ldapFault(err, c.host, what);
          if (attempt === 0 && fault.details?.reason === 'network') continue;
          throw fault;
        }
        throw err;
      }
    }
  }

  // Bind connections: one login at a time each.
  const idle: Conn[] = [];
  let bindOpen = 0;
  const waiting: ((c: Conn | null) => void)[] = [];

  async function checkout(signal: AbortSignal | undefined): Promise<Conn> {
    for (;;) {
      const c = idle.pop();
      if (c === undefined) break;
      if (!c.dead && c.client.isConnected) return c;
      bindOpen--;
    }
    if (bindOpen < poolSize) {
      bindOpen++;
      const opening = connect(false);
      try {
        // A caller that gave up while connecting: the connection, when it comes, is closed.
        return await raceSignal(opening, signal, () => void opening.then(kill, () => undefined));
      } catch (err) {
        bindOpen--;
        wake();
        throw err;
      }
    }
    let resolveWait: (c: Conn | null) => void = () => undefined;
    const wait = new Promise<Conn | null>((resolve) => {
      resolveWait = resolve;
      waiting.push(resolve);
    });
    // A waiter that gave up leaves the queue: a connection handed to it would be lost.
    const got = await raceSignal(wait, signal, () => {
      const i = waiting.indexOf(resolveWait);
      if (i >= 0) waiting.splice(i, 1);
      else void wait.then((c) => c && checkin(c));
    });
    return got ?? checkout(signal);
  }

  function wake(): void {
    const w = waiting.shift();
    if (w) w(null);
  }

  function checkin(c: Conn): void {
    if (c.dead || closed || !c.client.isConnected) {
      if (!c.dead) kill(c);
      bindOpen--;
      wake();
      return;
    }
    const w = waiting.shift();
    if (w) w(c);
    else idle.push(c);
  }

  return {
    get currentHost() {
      return currentHost;
    },
    async search(base, filter, o = {}) {
      const r = await onService('search at', o.signal, (client) =>
        client.search(base, {
          scope: o.scope ?? 'sub',
          filter,
          attributes: o.attributes ? [...o.attributes] : [],
          ...(o.sizeLimit ? { sizeLimit: o.sizeLimit } : {}),
        }),
      );
      return r.searchEntries.map(entryOf);
    },
    async *pages(base, filter, o) {
      // A connection of its own: a long listing must not hold up logins on the shared ones.
      const c = await connect(true);
      try {
        const it = c.client.searchPaginated(base, { scope: 'sub', filter, attributes: o.attributes ? [...o.attributes] : [], paged: { pageSize: o.pageSize } });
        for (;;) {
          let r: IteratorResult<{ searchEntries: Entry[] }>;
          try {
            r = await raceSignal(it.next(), o.signal, () => kill(c));
          } catch (err) {
            throw ldapFault(err, c.host, 'paged search at');
          }
          if (r.done) return;
          yield r.value.searchEntries.map(entryOf);
        }
      } finally {
        kill(c);
      }
    },
    async bind(dn, password, signal) {
      if (signal?.aborted) throw aborted(signal);
      // An empty password would be an "unauthenticated bind" that many servers accept (RFC 4513 §5.1.2).
      if (password === '') return { ok: false, invalid: true, diagnostic: 'empty password refused before the directory' };
      for (let attempt = 0; ; attempt++) {
        const c = await checkout(signal);
        try {
          await raceSignal(c.client.bind(dn, password), signal, () => kill(c));
          return { ok: true };
        } catch (err) {
          if (isMailauthError(err, 'ERR_DEADLINE')) throw err;
          if (err instanceof InvalidCredentialsError) return { ok: false, invalid: true, diagnostic: err.message };
          if (breaksConnection(err)) {
            kill(c);
            const fault = ldapFault(err, c.host, 'user bind at');
            // A connection lost before the answer: the password may not have arrived; once more on a fresh one.
            if (attempt === 0 && fault.details?.reason === 'network') continue;
            throw fault;
          }
          throw ldapFault(err, c.host, 'user bind at');
        } finally {
          checkin(c);
        }
      }
    },
    stats() {
      return { serviceOpen: service.filter((s) => s !== null).length, bindOpen, bindIdle: idle.length, bindWaiting: waiting.length, connects, failovers };
    },
    async close() {
      closed = true;
      for (const w of waiting.splice(0)) w(null);
      const open = await Promise.allSettled(service.filter((s): s is Promise<Conn> => s !== null));
      for (const r of open) if (r.status === 'fulfilled') kill(r.value);
      for (const c of idle.splice(0)) kill(c);
      service.fill(null);
    },
  };
}
