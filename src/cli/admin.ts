/** What the admin command groups (domain, mailbox, app-password, template) share. */
import { createInterface } from 'node:readline/promises';
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import { hash, newPasswordProblem } from '../passwords/index.js';
import type { Refusal } from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT } from './app.js';
import { readSecret, readStdin } from './io.js';

/**
 * A provisioning refusal as a CLI failure: message to stderr, `{refused, …}` in
 * --json; exit 2 for bad input (`invalid_*` reasons), else 1.
 */
export function refusalFailure(r: Refusal): CliFailure {
  return new CliFailure(r.message, r.refused.startsWith('invalid_') ? EXIT.USAGE : EXIT.FAILED, { refused: r.refused, ...r.details });
}

export function usage(message: string): CliFailure {
  return new CliFailure(message, EXIT.USAGE);
}

/**
 * Ask before something destructive: --yes answers for scripts; on a terminal
 * the admin types y; anything else (a pipe without --yes) refuses, so a script
 * never deletes by accident.
 */
export async function confirm(app: CliApp, cmd: Command, question: string): Promise<void> {
  if (app.globals(cmd).yes) return;
  const stdin = app.io.stdin;
  if (!stdin.isTTY) throw usage(`${question} — refusing without confirmation; pass --yes to confirm`);
  const rl = createInterface({ input: stdin, output: { write: (s: string) => app.io.stderr.write(s) } as never, terminal: false });
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new CliFailure('cancelled', EXIT.FAILED);
  } finally {
    rl.close();
  }
}

export interface PasswordInputOptions {
  password?: string;
  passwordStdin?: boolean;
}

/**
 * A new password: `-p` only when given explicitly, else the first line of stdin
 * with --password-stdin, else a no-echo prompt typed twice (or stdin's first
 * line when it is not a terminal). Never echoed, never logged.
 */
export async function readNewPassword(app: CliApp, opts: PasswordInputOptions, maxBytes: number): Promise<string> {
  if (opts.password !== undefined && opts.passwordStdin) throw usage('use either -p/--password or --password-stdin, not both');
  let password: string;
  if (opts.password !== undefined) password = opts.password;
  else if (opts.passwordStdin) password = (await readStdin(app.io)).split(/\r?\n/)[0] ?? '';
  else password = await readSecret(app.io, 'New password: ', { confirm: true });
  if (password === '') throw usage('empty password');
  if (Buffer.byteLength(password, 'utf8') > maxBytes) throw usage(`the password is longer than ${maxBytes} bytes (auth.max_password_bytes)`);
  return password;
}

/**
 * Hash with the configured scheme and cost; done before any transaction so no lock waits for bcrypt.
 * Refuses what verification would refuse, and a password bcrypt would cut at 72 bytes unless
 * auth.bcrypt_long_password is `warn` (then `warn` gets the message) (issue 16).
 */
export function hashNewPassword(config: Config, password: string, warn?: (message: string) => void): Promise<string> {
  const problem = newPasswordProblem(config.auth.defaultScheme, password);
  if (problem.refuse !== undefined) throw usage(problem.refuse);
  if (problem.truncated !== undefined) {
    if (config.auth.bcryptLongPassword === 'refuse') throw usage(`${problem.truncated}; use a shorter password, or set auth.bcrypt_long_password: warn`);
    warn?.(`warning: ${problem.truncated}`);
  }
  return hash(config.auth.defaultScheme, password, { bcryptCost: config.auth.bcryptCost });
}

export const MIB = 1024 * 1024;

/** Quota for people: MiB, with 0 spelled out. */
export function quotaText(bytes: number): string {
  return bytes === 0 ? 'unlimited' : `${Math.floor(bytes / MIB)} MiB`;
}

export function activeText(active: number): string {
  return active === 1 ? 'yes' : active === 2 ? 'receive only' : active === 0 ? 'no' : String(active);
}

/** Parse 0|1 or 0|1|2 flags for commander. */
export function choiceOption(name: string, allowed: readonly string[]): (v: string) => string {
  return (v: string) => {
    if (!allowed.includes(v)) throw new InvalidArgumentError(`${name} must be one of ${allowed.join(', ')}, got "${v}".`);
    return v;
  };
}

/** A JSON document from standard input (for `--from-json -`). */
export async function readStdinJson(app: CliApp): Promise<unknown> {
  const text = await readStdin(app.io);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usage(`standard input is not valid JSON (${(err as Error).message})`);
  }
}
