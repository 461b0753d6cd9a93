/** `mailauth mailbox add|list|show|edit|delete|passwd|set-authsource`. */
import type { Command } from 'commander';
import { AUTH_SOURCES, getMailbox, getUserAcl, listAppPasswords, listMailboxes } from '../db/index.js';
import type { AuthSource, MailboxRow } from '../db/index.js';
import { schemeOf } from '../passwords/index.js';
import {
  DEFAULT_TEMPLATE_NAME,
  changeMailbox,
  inTransaction,
  normalizeAddress,
  normalizeDomain,
  provisionMailbox,
  removeMailbox,
  setMailboxAuthsource,
  setMailboxPassword,
} from '../provisioning/index.js';
import type { MailboxChange } from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT, intOption } from './app.js';
import { MIB, activeText, choiceOption, confirm, hashNewPassword, quotaText, readNewPassword, refusalFailure, usage } from './admin.js';
import type { PasswordInputOptions } from './admin.js';
import { keyValues, table } from './render.js';
import { tellDovecot } from './dovecot-notify.js';

const MAX_MIB = 2 ** 43;

function addressArg(input: string): string {
  const addr = normalizeAddress(input);
  if ('problem' in addr) throw usage(addr.problem);
  return addr.username;
}

/** A mailbox for output: the password hash never leaves, only its scheme. */
function publicView(m: MailboxRow) {
  return {
    username: m.username,
    name: m.name,
    domain: m.domain,
    localPart: m.localPart,
    authsource: m.authsource,
    active: m.active,
    kind: m.kind,
    quotaBytes: m.quota,
    passwordScheme: m.password === '' ? null : (schemeOf(m.password) ?? 'unknown'),
    attributes: m.attributes,
    created: m.created,
    modified: m.modified,
  };
}

function passwordText(m: MailboxRow): string {
  if (m.password === '') return 'none';
  const scheme = schemeOf(m.password);
  return scheme ? `{${scheme}} hash` : 'unrecognised hash (logins will fail with internal_failure)';
}

const PASSWORD_HELP = `
The password is read from a no-echo prompt (typed twice), or from the first line of
standard input with --password-stdin (or whenever stdin is not a terminal). -p puts it
in the process list and shell history: use it only where that does not matter.`;

export function registerMailbox(program: Command, app: CliApp): void {
  const group = program
    .command('mailbox')
    .description('mailboxes: create from a template, list, edit, passwords, authsource')
    .addHelpText(
      'after',
      `
Examples:
  mailauth mailbox add alice@example.org --name "Alice Liddell"          prompts for the password
  printf '%s\\n' "$PW" | mailauth mailbox add bob@example.org --password-stdin --quota 2048
  mailauth mailbox add carol@example.org --authsource keycloak --template Staff
  mailauth mailbox list --domain example.org --authsource keycloak
  mailauth mailbox passwd alice@example.org
  mailauth mailbox set-authsource alice@example.org keycloak`,
    );

  group
    .command('add <user>')
    .description('create a mailbox from a mailbox template, with the rows mailcow creates (quota, alias, ACL)')
    .option('-t, --template <name>', 'mailbox template', DEFAULT_TEMPLATE_NAME)
    .option('-n, --name <name>', 'display name (default: the local part)')
    .option('-q, --quota <MiB>', "quota in MiB, 0 = unlimited (default: the template's, or the domain default)", intOption('--quota', 0, MAX_MIB))
    .option('-a, --authsource <source>', `where the password lives: ${AUTH_SOURCES.join(', ')}; IdP mailboxes get no password`, choiceOption('--authsource', AUTH_SOURCES), 'mailcow')
    .option('--password-stdin', 'read the password from the first line of standard input')
    .option('-p, --password <password>', 'the password (visible in the process list; prefer the prompt or --password-stdin)')
    .addHelpText(
      'after',
      `${PASSWORD_HELP}

Refused (exit 1, nothing written) when the domain is missing or inactive, the mailbox
exists, the template is unknown, or the domain's mailbox count or quotas would be exceeded.

Examples:
  mailauth mailbox add alice@example.org --name "Alice" --template Default
  printf '%s\\n' "$PW" | mailauth mailbox add bob@example.org --password-stdin --quota 1024
  mailauth mailbox add carol@example.org --authsource keycloak`,
    )
    .action(
      app.action(async (user: string, opts: PasswordInputOptions & { template: string; name?: string; quota?: number; authsource: AuthSource }, cmd: Command) => {
        const username = addressArg(user);
        const config = app.config(cmd);
        let passwordHash = '';
        if (opts.authsource === 'mailcow') {
          const password = await readNewPassword(app, opts, config.auth.maxPasswordBytes);
          passwordHash = await hashNewPassword(config, password, (m) => app.io.stderr.write(`${m}\n`));
        } else if (opts.password !== undefined || opts.passwordStdin) {
          throw usage(`a mailbox with authsource ${opts.authsource} has no local password; drop -p/--password-stdin`);
        }
        const db = app.db(config);
        const r = await inTransaction(db, (tx) =>
          provisionMailbox(
            tx,
            {
              username,
              name: opts.name ?? '',
              templateName: opts.template,
              passwordHash,
              authsource: opts.authsource,
              ...(opts.quota !== undefined ? { quotaBytes: opts.quota * MIB } : {}),
            },
            { mode: 'create' },
          ),
        );
        if ('refused' in r) throw refusalFailure(r);
        app.print(cmd, r, () =>
          `created mailbox ${r.username}\n` +
          keyValues([
            ['name', r.name],
            ['template', r.template],
            ['quota', quotaText(r.quotaBytes)],
            ['authsource', r.authsource],
            ['active', activeText(r.active)],
          ]),
        );
      }),
    );

  group
    .command('list')
    .description('list mailboxes (resources excluded)')
    .option('-d, --domain <domain>', 'only this domain')
    .option('-a, --authsource <source>', `only this authsource (${AUTH_SOURCES.join(', ')})`, choiceOption('--authsource', AUTH_SOURCES))
    .option('--active', 'only active mailboxes (active = 1)')
    .option('--inactive', 'only disabled mailboxes (active = 0)')
    .option('--receive-only', 'only receive-only mailboxes (active = 2)')
    .addHelpText('after', '\nExamples:\n  mailauth mailbox list --domain example.org\n  mailauth mailbox list --authsource keycloak --inactive --json')
    .action(
      app.action(async (opts: { domain?: string; authsource?: string; active?: boolean; inactive?: boolean; receiveOnly?: boolean }, cmd: Command) => {
        const states = [opts.active ? 1 : null, opts.inactive ? 0 : null, opts.receiveOnly ? 2 : null].filter((s): s is number => s !== null);
        if (states.length > 1) throw usage('use only one of --active, --inactive, --receive-only');
        let domain: string | undefined;
        if (opts.domain !== undefined) {
          const d = normalizeDomain(opts.domain);
          if (typeof d !== 'string') throw usage(d.problem);
          domain = d;
        }
        const db = app.db(app.config(cmd));
        const rows = await listMailboxes(db, {
          ...(domain !== undefined ? { domain } : {}),
          ...(opts.authsource !== undefined ? { authsource: opts.authsource } : {}),
          ...(states[0] !== undefined ? { active: states[0] } : {}),
        });
        const views = rows.map(publicView);
        app.print(cmd, views, () =>
          views.length === 0
            ? 'no mailboxes match\n'
            : table(
                ['username', 'name', 'authsource', 'active', 'quota', 'password'],
                views.map((v) => [v.username, v.name, v.authsource, activeText(v.active), quotaText(v.quotaBytes), v.passwordScheme ?? 'none']),
              ),
        );
      }),
    );

  group
    .command('show <user>')
    .description('show one mailbox: settings, attributes, ACL, app passwords (never the password hash)')
    .addHelpText('after', '\nExample:\n  mailauth mailbox show alice@example.org --json')
    .action(
      app.action(async (user: string, _opts: unknown, cmd: Command) => {
        const username = addressArg(user);
        const db = app.db(app.config(cmd));
        const m = await getMailbox(db, username);
        if (!m) throw new CliFailure(`mailbox ${username} does not exist`, EXIT.FAILED, { refused: 'mailbox_missing' });
        const acl = await getUserAcl(db, username);
        const appPasswords = (await listAppPasswords(db, username)).length;
        const v = { ...publicView(m), acl, appPasswords };
        app.print(cmd, v, () =>
          keyValues([
            ['username', v.username],
            ['name', v.name],
            ['authsource', v.authsource],
            ['active', activeText(v.active)],
            ...(v.kind ? [['kind', v.kind] as const] : []),
            ['quota', quotaText(v.quotaBytes)],
            ['password', passwordText(m)],
            ['app passwords', v.appPasswords],
            ['created', v.created],
            ['modified', v.modified ?? ''],
          ]) +
          'attributes:\n' +
          indent(keyValues(Object.entries(v.attributes))) +
          (acl ? 'acl:\n' + indent(keyValues(Object.entries(acl))) : 'acl: (no user_acl row)\n'),
        );
      }),
    );

  group
    .command('edit <user>')
    .description('change name, quota or state, or re-apply a template')
    .option('-n, --name <name>', 'display name')
    .option('-q, --quota <MiB>', 'quota in MiB, 0 = unlimited', intOption('--quota', 0, MAX_MIB))
    .option('--active <0|1|2>', '1 = active, 0 = disabled, 2 = receives mail but may not log in', choiceOption('--active', ['0', '1', '2']))
    .option('-t, --template <name>', "re-apply this template's attributes, quota and ACL (only when they differ from what the mailbox has)")
    .option('--force-template', 're-apply the template even when its attribute hash and the name are unchanged')
    .addHelpText(
      'after',
      `
Examples:
  mailauth mailbox edit alice@example.org --quota 4096
  mailauth mailbox edit alice@example.org --active 2
  mailauth mailbox edit alice@example.org --template Staff --name "Alice L."`,
    )
    .action(
      app.action(
        async (user: string, opts: { name?: string; quota?: number; active?: string; template?: string; forceTemplate?: boolean }, cmd: Command) => {
          const username = addressArg(user);
          if (opts.forceTemplate && opts.template === undefined) throw usage('--force-template needs --template');
          if (opts.name === undefined && opts.quota === undefined && opts.active === undefined && opts.template === undefined) {
            throw usage('nothing to change: give --name, --quota, --active or --template');
          }
          const config = app.config(cmd);
          const db = app.db(config);
          const out = await inTransaction(db, async (tx) => {
            const changed: string[] = [];
            let templateAction: string | undefined;
            const rest: MailboxChange = {};
            if (opts.active !== undefined) rest.active = Number(opts.active) as 0 | 1 | 2;
            if (opts.template !== undefined) {
              const r = await provisionMailbox(
                tx,
                {
                  username,
                  name: opts.name ?? '',
                  templateName: opts.template,
                  passwordHash: '',
                  authsource: 'mailcow',
                  ...(opts.quota !== undefined ? { quotaBytes: opts.quota * MIB } : {}),
                },
                { mode: 'update', force: opts.forceTemplate === true },
              );
              if ('refused' in r) return r;
              templateAction = r.action;
              if (r.action === 'updated') changed.push('template');
            } else {
              if (opts.name !== undefined) rest.name = opts.name;
              if (opts.quota !== undefined) rest.quotaBytes = opts.quota * MIB;
            }
            const r = await changeMailbox(tx, username, rest);
            if ('refused' in r) return r;
            return { changed: [...changed, ...r.changed], templateAction, mailbox: r.mailbox };
          });
          // inTransaction rolled back whatever the template step wrote before a later refusal.
          if ('refused' in out) throw refusalFailure(out);
          // Issue 17: a mailbox that may no longer log in is flushed from Dovecot's cache and its sessions end;
          // a template change may change protocol access, so Dovecot forgets its cached logins.
          if (out.changed.includes('active') && opts.active !== '1') await tellDovecot(app, config, db, [username], 'disable');
          else if (out.changed.includes('template')) await tellDovecot(app, config, db, [username], 'access');
          const fresh = (await getMailbox(db, username)) ?? out.mailbox;
          const v = publicView(fresh);
          app.print(cmd, { action: out.changed.length ? 'updated' : 'unchanged', changed: out.changed, template: opts.template ?? null, mailbox: v }, () =>
            (out.changed.length ? `updated mailbox ${v.username} (${out.changed.join(', ')})\n` : `mailbox ${v.username} unchanged\n`) +
            keyValues([
              ['name', v.name],
              ['quota', quotaText(v.quotaBytes)],
              ['active', activeText(v.active)],
            ]),
          );
        },
      ),
    );

  group
    .command('delete <user>')
    .description('delete a mailbox with its app passwords, ACL, quota rows and own alias (mail on disk is not touched)')
    .addHelpText('after', '\nAsks for confirmation; pass --yes in scripts.\n\nExample:\n  mailauth mailbox delete old@example.org --yes')
    .action(
      app.action(async (user: string, _opts: unknown, cmd: Command) => {
        const username = addressArg(user);
        const config = app.config(cmd);
        const db = app.db(config);
        if (!(await getMailbox(db, username))) throw new CliFailure(`mailbox ${username} does not exist`, EXIT.FAILED, { refused: 'mailbox_missing' });
        await confirm(app, cmd, `Delete mailbox ${username} and its app passwords?`);
        const r = await inTransaction(db, (tx) => removeMailbox(tx, username));
        if ('refused' in r) throw refusalFailure(r);
        await tellDovecot(app, config, db, [r.username], 'delete');
        app.print(cmd, { action: 'deleted', username: r.username }, () => `deleted mailbox ${r.username}\n`);
      }),
    );

  group
    .command('passwd <user>')
    .description('set the password, hashed with auth.default_scheme')
    .option('--password-stdin', 'read the password from the first line of standard input')
    .option('-p, --password <password>', 'the password (visible in the process list; prefer the prompt or --password-stdin)')
    .addHelpText(
      'after',
      `${PASSWORD_HELP}

For a mailbox whose authsource is not mailcow, the password is stored but only used
after mailauth mailbox set-authsource USER mailcow.

Examples:
  mailauth mailbox passwd alice@example.org
  printf '%s\\n' "$PW" | mailauth mailbox passwd alice@example.org --password-stdin`,
    )
    .action(
      app.action(async (user: string, opts: PasswordInputOptions, cmd: Command) => {
        const username = addressArg(user);
        const config = app.config(cmd);
        const db = app.db(config);
        if (!(await getMailbox(db, username))) throw new CliFailure(`mailbox ${username} does not exist`, EXIT.FAILED, { refused: 'mailbox_missing' });
        const password = await readNewPassword(app, opts, config.auth.maxPasswordBytes);
        const passwordHash = await hashNewPassword(config, password, (m) => app.io.stderr.write(`${m}\n`));
        const r = await inTransaction(db, (tx) => setMailboxPassword(tx, username, passwordHash));
        if ('refused' in r) throw refusalFailure(r);
        await tellDovecot(app, config, db, [r.username], 'password');
        const note = r.authsource === 'mailcow' ? '' : `note: ${r.username} authenticates with ${r.authsource}; this password applies after set-authsource ${r.username} mailcow\n`;
        if (note) app.io.stderr.write(note);
        app.print(cmd, { action: 'password_set', username: r.username, scheme: config.auth.defaultScheme, authsource: r.authsource }, () => `password of ${r.username} set ({${config.auth.defaultScheme}})\n`);
      }),
    );

  group
    .command('set-authsource <user> <source>')
    .description(`choose where the password is checked: ${AUTH_SOURCES.join(', ')}; the stored hash is kept`)
    .addHelpText(
      'after',
      `
The local password hash is never touched, so switching back to mailcow makes the old
password work again.

Examples:
  mailauth mailbox set-authsource alice@example.org keycloak
  mailauth mailbox set-authsource alice@example.org mailcow`,
    )
    .action(
      app.action(async (user: string, source: string, _opts: unknown, cmd: Command) => {
        const username = addressArg(user);
        if (!(AUTH_SOURCES as readonly string[]).includes(source)) throw usage(`unknown authsource "${source}"; use one of ${AUTH_SOURCES.join(', ')}`);
        const config = app.config(cmd);
        const db = app.db(config);
        const r = await inTransaction(db, (tx) => setMailboxAuthsource(tx, username, source as AuthSource));
        if ('refused' in r) throw refusalFailure(r);
        if (r.changed) await tellDovecot(app, config, db, [r.username], 'authsource');
        if (r.authsource === 'mailcow' && !r.hasPassword) {
          app.io.stderr.write(`warning: ${r.username} has no local password; set one with mailauth mailbox passwd ${r.username}\n`);
        }
        app.print(cmd, { action: r.changed ? 'updated' : 'unchanged', ...r }, () =>
          r.changed ? `authsource of ${r.username}: ${r.previous} → ${r.authsource}\n` : `authsource of ${r.username} is already ${r.authsource}\n`,
        );
      }),
    );
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
