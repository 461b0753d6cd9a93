/** The `mailauth` program: global options and one register function per command group. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { createApp, EXIT } from './app.js';
import type { CliApp } from './app.js';
import { processIo } from './io.js';
import type { Io } from './io.js';
import { registerPw } from './pw.js';
import { registerDb } from './db.js';
import { registerConfig } from './config.js';
import { registerServe } from './serve.js';
import { registerAuth } from './auth.js';
import { registerDomain } from './domain.js';
import { registerMailbox } from './mailbox.js';
import { registerAppPassword } from './app-password.js';
import { registerTemplate } from './template.js';
import { registerDoctor } from './doctor.js';
import { registerPaths } from './paths.js';
import { registerSync } from './sync.js';
import { registerIdp } from './idp.js';
import { registerDemo } from './demo.js';
import { registerBlock } from './block.js';

export type Register = (program: Command, app: CliApp) => void;

/** Command groups, in `--help` order. Later groups add themselves here. */
export const GROUPS: Register[] = [registerServe, registerAuth, registerConfig, registerDb, registerPw, registerDomain, registerMailbox, registerAppPassword, registerTemplate, registerDoctor, registerPaths, registerIdp, registerSync, registerBlock, registerDemo];

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(app: CliApp, groups: readonly Register[] = GROUPS): Command {
  const program = new Command('mailauth')
    .description('Authentication backend for Dovecot: mailcow-compatible passwords, Keycloak, OpenID Connect, LDAP')
    .version(version(), '-V, --version')
    .option('-c, --config <file>', 'config file (default: $MAILAUTH_CONFIG, else /etc/mailauth/config.yaml)')
    .option('--json', 'machine-readable JSON output')
    .option('-y, --yes', 'do not ask for confirmation')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => app.io.stdout.write(s), writeErr: (s) => app.io.stderr.write(s) })
    .exitOverride();
  program.addHelpText(
    'after',
    `
Examples:
  mailauth serve                         run the passdb daemon (see mailauth serve --help)
  mailauth pw -s BLF-CRYPT               hash a password read from a prompt
  mailauth db migrate                    create mailcow's tables where missing
  mailauth config check                  print the effective configuration, secrets masked`,
  );
  for (const register of groups) register(program, app);
  // Subcommands inherit the output and error behaviour.
  for (const cmd of program.commands) inherit(cmd, app);
  return program;
}

function inherit(cmd: Command, app: CliApp): void {
  cmd.configureOutput({ writeOut: (s) => app.io.stdout.write(s), writeErr: (s) => app.io.stderr.write(s) }).exitOverride().showHelpAfterError('(run with --help for usage)');
  for (const sub of cmd.commands) inherit(sub, app);
}

/** Runs the CLI and returns its exit code (tests call this directly). */
export async function runCli(argv: readonly string[], io: Io = processIo(), groups?: readonly Register[]): Promise<number> {
  const app = createApp(io);
  const program = buildProgram(app, groups);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      if (err.code === 'commander.executeSubCommandAsync') return EXIT.OK;
      return EXIT.USAGE;
    }
    io.stderr.write(`mailauth: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.FAILED;
  }
  return app.exitCode;
}

export async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2));
  process.exitCode = code;
}
