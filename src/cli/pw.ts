/** `mailauth pw`, modelled on `doveadm pw`: hash, test (-t) and list (-l) password schemes. */
import type { Command } from 'commander';
import { hash, listSchemes, newPasswordProblem, verify } from '../passwords/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT, intOption } from './app.js';
import { readSecret } from './io.js';
import { table } from './render.js';

interface PwOptions {
  scheme?: string;
  password?: string;
  longBcrypt?: string;
  test?: string;
  list?: boolean;
  rounds?: number;
}

export function registerPw(program: Command, app: CliApp): void {
  program
    .command('pw')
    .description('hash a password, test one against a hash, or list the schemes (like doveadm pw)')
    .option('-s, --scheme <scheme>', 'scheme for the new hash (BLF-CRYPT, ARGON2ID, ARGON2I, SHA512-CRYPT, SHA256-CRYPT, SSHA256, SSHA512)', 'BLF-CRYPT')
    .option('-p, --password <password>', 'the password (visible in the process list; prefer the prompt or stdin)')
    .option('--long-bcrypt <refuse|warn>', 'a BLF-CRYPT password over 72 bytes (bcrypt ignores the rest): refuse (default) or warn', 'refuse')
    .option('-t, --test <hash>', 'test the password against {SCHEME}hash: exit 0 match, 1 mismatch, 2 malformed or unsupported')
    .option('-r, --rounds <n>', 'bcrypt cost for BLF-CRYPT (4-18)', intOption('--rounds', 4, 18))
    .option('-l, --list', 'list the supported schemes')
    .addHelpText(
      'after',
      `
Without -p the password is read from a prompt (no echo) or, when stdin is not a terminal, from its first line.

Examples:
  mailauth pw                                 prompt, print a {BLF-CRYPT} hash
  echo 'secret' | mailauth pw -s SSHA256      hash from stdin
  mailauth pw -t '{SSHA256}Lx2…' < pw.txt     test; exit code tells the result
  mailauth pw -l --json                       schemes as JSON`,
    )
    .action(
      app.action(async (opts: PwOptions, cmd: Command) => {
        if (opts.list) {
          const schemes = listSchemes();
          app.print(cmd, schemes, () =>
            table(['scheme', 'verify', 'hash', 'weak'], schemes.map((s) => [s.name, 'yes', s.hash ? 'yes' : '-', s.weak ? 'weak' : ''])),
          );
          return EXIT.OK;
        }
        const password = opts.password ?? (await readSecret(app.io, 'Enter password: ', { confirm: opts.test === undefined }));
        if (password === '') throw new CliFailure('empty password', EXIT.USAGE);
        if (opts.test !== undefined) {
          const r = await verify(opts.test, password);
          const code = r.outcome === 'match' ? EXIT.OK : r.outcome === 'mismatch' ? EXIT.FAILED : EXIT.USAGE;
          const message = { match: 'verified', mismatch: 'mismatch', malformed: r.reason ?? 'malformed hash', unsupported_scheme: r.reason ?? `unsupported scheme ${r.scheme}` }[r.outcome];
          app.print(cmd, { result: r.outcome, scheme: r.scheme, reason: r.reason ?? null }, () => `${opts.test === undefined ? '' : `${r.scheme ? `{${r.scheme}}` : ''} `}(${message})\n`);
          return code;
        }
        const scheme = (opts.scheme ?? 'BLF-CRYPT').toUpperCase();
        const hashable = listSchemes().filter((s) => s.hash).map((s) => s.name);
        if (!hashable.includes(scheme)) {
          throw new CliFailure(`scheme ${scheme} cannot make new hashes (verify only); use one of ${hashable.join(', ')}`, EXIT.USAGE);
        }
        // Issue 16: never write a hash verification would refuse, nor (unless asked) a bcrypt that ignores bytes.
        const problem = newPasswordProblem(scheme, password);
        if (problem.refuse !== undefined) throw new CliFailure(problem.refuse, EXIT.USAGE);
        if (problem.truncated !== undefined) {
          if (opts.longBcrypt !== 'warn') throw new CliFailure(`${problem.truncated}; use a shorter password or --long-bcrypt warn`, EXIT.USAGE);
          app.io.stderr.write(`warning: ${problem.truncated}\n`);
        }
        const out = await hash(scheme, password, opts.rounds === undefined ? {} : { bcryptCost: opts.rounds });
        app.print(cmd, { scheme, hash: out }, () => `${out}\n`);
        return EXIT.OK;
      }),
    );
}
