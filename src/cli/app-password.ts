/** `mailauth app-password add|list|delete`: generated per-device passwords, stored only as hashes. */
import type { Command } from 'commander';
import { ACCESS_FLAGS } from '../config/index.js';
import type { AccessFlag } from '../config/index.js';
import { addAppPassword, generateAppPassword, inTransaction, listMailboxAppPasswords, normalizeAddress, parseProtocols, removeAppPassword } from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { intOption } from './app.js';
import { activeText, hashNewPassword, refusalFailure, usage } from './admin.js';
import { table } from './render.js';
import { tellDovecot } from './dovecot-notify.js';

function addressArg(input: string): string {
  const addr = normalizeAddress(input);
  if ('problem' in addr) throw usage(addr.problem);
  return addr.username;
}

function protocolList(access: Record<AccessFlag, number>): string[] {
  return ACCESS_FLAGS.filter((f) => access[f] === 1);
}

export function registerAppPassword(program: Command, app: CliApp): void {
  const group = program
    .command('app-password')
    .description('app passwords: one generated password per device or program, limited to chosen protocols')
    .addHelpText(
      'after',
      `
Examples:
  mailauth app-password add alice@example.org --name "Phone" --protocols imap,smtp
  mailauth app-password list alice@example.org
  mailauth app-password delete alice@example.org 7`,
    );

  group
    .command('add <user>')
    .description('generate an app password, print it once, store only its hash')
    .requiredOption('-n, --name <name>', 'what it is for, e.g. "Thunderbird on laptop"')
    .option('--protocols <list>', `comma-separated, from ${ACCESS_FLAGS.join(', ')} (default: all)`)
    .addHelpText(
      'after',
      `
The password is generated (24 characters, about 139 bits) and shown only once; with
--json it is the "password" field. It is hashed with auth.default_scheme.

Examples:
  mailauth app-password add alice@example.org --name "Phone" --protocols imap,smtp
  mailauth app-password add alice@example.org --name "Calendar" --protocols dav --json`,
    )
    .action(
      app.action(async (user: string, opts: { name: string; protocols?: string }, cmd: Command) => {
        const username = addressArg(user);
        const access = parseProtocols(opts.protocols);
        if ('problem' in access) throw usage(access.problem);
        const config = app.config(cmd);
        const password = generateAppPassword();
        const passwordHash = await hashNewPassword(config, password, (m) => app.io.stderr.write(`${m}\n`));
        const db = app.db(config);
        const r = await inTransaction(db, (tx) => addAppPassword(tx, { username, name: opts.name, passwordHash, access }));
        if ('refused' in r) throw refusalFailure(r);
        const protocols = protocolList(access);
        app.print(cmd, { action: 'created', id: r.id, username: r.username, name: r.name, protocols, password }, () =>
          `app password "${r.name}" for ${r.username} (id ${r.id}, protocols ${protocols.join(', ')}):\n\n    ${password}\n\n` +
          'It is shown only this once; mailauth stores only its hash.\n',
        );
      }),
    );

  group
    .command('list <user>')
    .description("list a mailbox's app passwords (never their hashes)")
    .addHelpText('after', '\nExample:\n  mailauth app-password list alice@example.org --json')
    .action(
      app.action(async (user: string, _opts: unknown, cmd: Command) => {
        const username = addressArg(user);
        const db = app.db(app.config(cmd));
        const r = await listMailboxAppPasswords(db, username);
        if ('refused' in r) throw refusalFailure(r);
        const rows = r.map((a) => ({ id: a.id, name: a.name, mailbox: a.mailbox, active: a.active, protocols: protocolList(a.access), created: a.created }));
        app.print(cmd, rows, () =>
          rows.length === 0
            ? `${username} has no app passwords\n`
            : table(['id', 'name', 'protocols', 'active', 'created'], rows.map((a) => [a.id, a.name, a.protocols.join(',') || '(none)', activeText(a.active), a.created])),
        );
      }),
    );

  group
    .command('delete <user> <id>')
    .description('delete one app password (see list for the id)')
    .addHelpText('after', '\nExample:\n  mailauth app-password delete alice@example.org 7')
    .action(
      app.action(async (user: string, idText: string, _opts: unknown, cmd: Command) => {
        const username = addressArg(user);
        let id: number;
        try {
          id = intOption('id', 1, 2_147_483_647)(idText);
        } catch (err) {
          throw usage((err as Error).message);
        }
        const config = app.config(cmd);
        const db = app.db(config);
        const r = await inTransaction(db, (tx) => removeAppPassword(tx, username, id));
        if ('refused' in r) throw refusalFailure(r);
        // Issue 17: Dovecot's auth cache would keep accepting the revoked password for auth_cache_ttl.
        await tellDovecot(app, config, db, [r.username], 'app_password');
        app.print(cmd, { action: 'deleted', ...r }, () => `deleted app password ${r.id} of ${r.username}\n`);
      }),
    );
}
