/**
 * What every command shares: global options, config loading, the database it
 * opens (closed when the command ends), output in table or JSON form, and the
 * error → exit-code mapping (0 ok, 1 failed or refused, 2 usage/config error).
 */
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import type { Config } from '../config/index.js';
import { createDb } from '../db/index.js';
import type { Db } from '../db/index.js';
import { MailauthError, isMailauthError } from '../errors.js';
import { createLogger } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import type { Io } from './io.js';

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  yes?: boolean;
}

/** A failure the CLI reports without a stack: message to stderr, given exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILED,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

export interface CliApp {
  io: Io;
  globals(cmd: Command): GlobalOptions;
  config(cmd: Command): Config;
  db(config: Config, opts?: { queryTimeoutMs?: number }): Db;
  logger(config: Config): Logger;
  /** Print `data` as JSON with --json, else the human text. */
  print(cmd: Command, data: unknown, human: () => string): void;
  /** Wrap an action: errors become messages and exit codes, resources are closed. */
  action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void>;
  exitCode: number;
  /** Registered cleanups (open pools), run after each action. */
  cleanup(fn: () => Promise<void>): void;
}

export function createApp(io: Io, overrides: { config?: (cmd: Command) => Config } = {}): CliApp {
  const cleanups: (() => Promise<void>)[] = [];
  const app: CliApp = {
    io,
    exitCode: 0,
    globals(cmd) {
      return cmd.optsWithGlobals<GlobalOptions>();
    },
    config(cmd) {
      if (overrides.config) return overrides.config(cmd);
      return loadConfig({ path: app.globals(cmd).config, env: io.env });
    },
    db(config, opts = {}) {
      const db = createDb(config.database, opts);
      cleanups.push(() => db.close());
      return db;
    },
    logger(config) {
      // Command output owns stdout; logs go to stderr.
      return createLogger({ level: config.log.level, format: config.log.format, destination: { write: (s: string) => io.stderr.write(s) } as never, isTTY: false });
    },
    print(cmd, data, human) {
      if (app.globals(cmd).json) io.stdout.write(JSON.stringify(data, null, 2) + '\n');
      else io.stdout.write(human());
    },
    action(fn) {
      return async (...args) => {
        const cmd = args[args.length - 1] as Command;
        try {
          const code = await fn(...args);
          app.exitCode = code ?? EXIT.OK;
        } catch (err) {
          app.exitCode = reportError(io, err, isJson(cmd));
        } finally {
          while (cleanups.length) await cleanups.pop()?.().catch(() => undefined);
        }
      };
    },
    cleanup(fn) {
      cleanups.push(fn);
    },
  };
  return app;
}

function isJson(cmd: Command | undefined): boolean {
  try {
    return Boolean(cmd?.optsWithGlobals?.().json);
  } catch {
    return false;
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CliFailure) return err.exitCode;
  if (isMailauthError(err, 'ERR_CONFIG_INVALID') || isMailauthError(err, 'ERR_INVALID_INPUT')) return EXIT.USAGE;
  return EXIT.FAILED;
}

function reportError(io: Io, err: unknown, json: boolean): number {
  const code = exitCodeFor(err);
  const message = err instanceof Error ? err.message : String(err);
  if (json) {
    const body: Record<string, unknown> = { error: message };
    if (err instanceof MailauthError) body.code = err.code;
    if (err instanceof CliFailure && err.data !== undefined) body.data = err.data;
    io.stdout.write(JSON.stringify(body, null, 2) + '\n');
  }
  io.stderr.write(`mailauth: ${message}\n`);
  if (err instanceof MailauthError && err.code.startsWith('ERR_DB_') && err.code !== 'ERR_DB_CONFLICT') {
    io.stderr.write('  check database.url in the config, that the server runs, and `mailauth db status`\n');
  }
  return code;
}

/** Parse an integer flag with a clear error. */
export function intOption(name: string, min: number, max: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer between ${min} and ${max}.`);
    }
    return n;
  };
}
