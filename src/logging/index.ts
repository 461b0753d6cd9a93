/**
 * The one root logger, built at the entry point. The secret-bearing keys are
 * declared here once so no secret reaches a log line, whoever logs the object.
 */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

const SECRET_KEYS = [
  'password',
  'pass',
  'passwd',
  'newPassword',
  'hash',
  'stored',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'bearer',
  'jwt',
  'client_secret',
  'clientSecret',
  'secret',
  'bindpass',
  'authorization',
  'x-mailauth-token',
  'mailcow_password',
];

/*
 * Not pino's `redact` paths: its wildcard paths cost ~60 µs per child logger + line
 * (measured in issue 4), more than the rest of a cached login; redactSecrets() below
 * covers every depth for less.
 */

const SECRET = new Set(SECRET_KEYS.map((k) => k.toLowerCase()));
const CENSOR = '[redacted]';

// Log objects use few distinct keys: remember each key's verdict rather than lower-casing it
// on every line. Bounded, so odd keys (from a hostile JSON body, say) cannot grow it.
const verdicts = new Map<string, boolean>();
function isSecretKey(key: string): boolean {
  let v = verdicts.get(key);
  if (v === undefined) {
    v = SECRET.has(key.toLowerCase());
    if (verdicts.size < 1024) verdicts.set(key, v);
  }
  return v;
}
const MAX_DEPTH = 10;

/**
 * `value` with every key named like a secret (case-insensitive, at any depth) replaced
 * by "[redacted]". Copy-on-write: objects without secrets are returned as they are, so
 * the common log line allocates nothing. Plain objects, arrays and Errors are walked;
 * other objects (Buffers, Dates, class instances) carry no such keys. Deeper than
 * MAX_DEPTH is cut off rather than printed unchecked.
 */
export function redactSecrets<T>(value: T, depth = 0): T {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[too deep]' as T;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const r = redactSecrets(value[i] as unknown, depth + 1);
      if (r !== value[i]) (copy ??= value.slice())[i] = r;
    }
    return (copy ?? value) as T;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  const isError = value instanceof Error;
  if (proto !== Object.prototype && proto !== null && !isError) return value;
  const obj = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key in obj) {
    if (!Object.hasOwn(obj, key)) continue;
    const v = obj[key];
    const r = v !== undefined && isSecretKey(key) ? CENSOR : redactSecrets(v, depth + 1);
    if (r === v) continue;
    // An Error that needs censoring becomes a plain object with its message and stack.
    copy ??= isError ? { type: (value as Error).name, message: (value as Error).message, stack: (value as Error).stack, ...obj } : { ...obj };
    copy[key] = r;
  }
  return (copy ?? value) as T;
}

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Where lines go; defaults to stdout. Tests pass a sink. */
  destination?: DestinationStream;
  isTTY?: boolean;
}

export function createLogger(opts: LoggerOptions): Logger {
  const usePretty = opts.format === 'pretty' || (opts.format === 'auto' && (opts.isTTY ?? process.stdout.isTTY) === true);
  const base = {
    level: opts.level,
    // Every logged object (child bindings: see below).
    formatters: { log: redactSecrets },
    base: { pid: process.pid },
    // Errors keep their code and message but never a password that a library put in a message.
    serializers: { err: (e: Error) => redactSecrets({ ...pino.stdSerializers.err(e) }) },
  };
  let root: Logger;
  if (usePretty) {
    const stream = pretty({ colorize: opts.isTTY ?? process.stdout.isTTY, sync: true, destination: opts.destination ?? 1 });
    root = pino(base, stream);
  } else {
    root = pino(base, opts.destination ?? pino.destination({ sync: false }));
  }
  // pino formats child bindings with no formatter of ours, so redact them on the way in.
  // Children are created from their parent's prototype chain: this covers every generation.
  const child = root.child;
  root.child = function redactedChild(this: Logger, bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  } as Logger['child'];
  return root;
}

interface LazyTarget {
  parent: Logger;
  bindings: Record<string, unknown>;
  real: Logger | null;
}

const lazyHandler: ProxyHandler<LazyTarget> = {
  get(t, key) {
    t.real ??= t.parent.child(t.bindings);
    const v = Reflect.get(t.real, key) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t.real) : v;
  },
};

/**
 * `parent.child(bindings)`, made on first use. pino serialises a child's bindings when it
 * is created; a cached login logs nothing but its decision line (written flat through the
 * parent), so building a child per request was ~5 µs of a ~60 µs login (issue 4).
 */
export function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  return new Proxy({ parent, bindings, real: null }, lazyHandler) as unknown as Logger;
}

/** A logger that drops everything (pure unit tests, CLI commands with --quiet). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export { faultFields, logFault } from './fault.js';
export type { FaultFields } from './fault.js';
