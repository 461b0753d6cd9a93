/**
 * The one root logger, built at the entry point. Redaction paths are declared
 * here once so no secret reaches a log line, whoever logs the object.
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
  'client_secret',
  'clientSecret',
  'secret',
  'bindpass',
  'authorization',
  'x-mailauth-token',
  'mailcow_password',
];

/** `password`, `*.password`, `*.*.password`, and the auth headers of req/res objects. */
export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'req.headers["x-mailauth-token"]',
  'headers.authorization',
  'headers["x-mailauth-token"]',
  'attributes.mailcow_password',
  '*.attributes.mailcow_password',
];

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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    // Errors keep their code and message but never a password that a library put in a message.
    serializers: { err: pino.stdSerializers.err },
  };
  if (usePretty) {
    const stream = pretty({ colorize: opts.isTTY ?? process.stdout.isTTY, sync: true, destination: opts.destination ?? 1 });
    return pino(base, stream);
  }
  return pino(base, opts.destination ?? pino.destination({ sync: false }));
}

/** A logger that drops everything (pure unit tests, CLI commands with --quiet). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
