/** `mailauth domain add|list|show|edit|delete`: mail domains and their limits. */
import type { Command } from 'commander';
import { domainUsage, getDomain, listDomains } from '../db/index.js';
import type { DomainRow, Queryable } from '../db/index.js';
import { DEFAULT_DOMAIN_LIMITS, createDomain, domainContents, editDomain, inTransaction, normalizeDomain, removeDomain } from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT, intOption } from './app.js';
import { MIB, activeText, choiceOption, confirm, refusalFailure, usage } from './admin.js';
import { keyValues, table } from './render.js';

interface LimitOptions {
  description?: string;
  maxMailboxes?: number;
  maxQuota?: number;
  quota?: number;
  defaultQuota?: number;
}

const MAX_MIB = 2 ** 43;

function limitOptions(cmd: Command): Command {
  return cmd
    .option('--description <text>', 'free-text description')
    .option('--max-mailboxes <n>', `maximum number of mailboxes (add: ${DEFAULT_DOMAIN_LIMITS.mailboxes})`, intOption('--max-mailboxes', 0, 2_147_483_647))
    .option('--max-quota <MiB>', `maximum quota of one mailbox, MiB (add: ${DEFAULT_DOMAIN_LIMITS.maxquota}, at most --quota)`, intOption('--max-quota', 1, MAX_MIB))
    .option('--quota <MiB>', `total quota of all mailboxes, MiB (add: ${DEFAULT_DOMAIN_LIMITS.quota})`, intOption('--quota', 1, MAX_MIB))
    .option('--default-quota <MiB>', `quota of a new mailbox whose template says 0, MiB (add: ${DEFAULT_DOMAIN_LIMITS.defquota}, at most --max-quota)`, intOption('--default-quota', 1, MAX_MIB));
}

interface DomainView {
  domain: string;
  description: string;
  active: number;
  maxMailboxes: number;
  mailboxes: number;
  defaultQuotaMiB: number;
  maxQuotaMiB: number;
  quotaMiB: number;
  assignedQuotaMiB: number;
  created: string;
  modified: string | null;
}

async function view(q: Queryable, d: DomainRow): Promise<DomainView> {
  const usage = await domainUsage(q, d.domain);
  return {
    domain: d.domain,
    description: d.description,
    active: d.active,
    maxMailboxes: d.mailboxes,
    mailboxes: usage.mailboxes,
    defaultQuotaMiB: d.defquota,
    maxQuotaMiB: d.maxquota,
    quotaMiB: d.quota,
    assignedQuotaMiB: Math.ceil(usage.quotaBytes / MIB),
    created: d.created,
    modified: d.modified,
  };
}

function details(v: DomainView): string {
  return keyValues([
    ['domain', v.domain],
    ['description', v.description],
    ['active', activeText(v.active)],
    ['mailboxes', `${v.mailboxes} of ${v.maxMailboxes}`],
    ['quota assigned', `${v.assignedQuotaMiB} of ${v.quotaMiB} MiB`],
    ['max quota per mailbox', `${v.maxQuotaMiB} MiB`],
    ['default quota', `${v.defaultQuotaMiB} MiB`],
    ['created', v.created],
    ['modified', v.modified ?? ''],
  ]);
}

function domainArg(input: string): string {
  const name = normalizeDomain(input);
  if (typeof name !== 'string') throw usage(name.problem);
  return name;
}

export function registerDomain(program: Command, app: CliApp): void {
  const group = program
    .command('domain')
    .description('mail domains and their limits (mailcow `domain` table)')
    .addHelpText(
      'after',
      `
Quotas are in MiB, as mailcow stores them. New domains get mailcow's defaults:
${DEFAULT_DOMAIN_LIMITS.mailboxes} mailboxes, ${DEFAULT_DOMAIN_LIMITS.quota} MiB in total, ${DEFAULT_DOMAIN_LIMITS.maxquota} MiB per mailbox, ${DEFAULT_DOMAIN_LIMITS.defquota} MiB by default.

Examples:
  mailauth domain add example.org --max-mailboxes 50 --quota 51200
  mailauth domain list
  mailauth domain show example.org --json
  mailauth domain edit example.org --max-quota 20480 --quota 102400
  mailauth domain edit example.org --active 0
  mailauth domain delete example.org --force --yes`,
    );

  limitOptions(group.command('add <domain>'))
    .description('add a domain')
    .option('--inactive', 'add it disabled (no logins, no provisioning)')
    .addHelpText('after', '\nExample:\n  mailauth domain add example.org --max-mailboxes 50 --quota 51200 --max-quota 10240 --default-quota 2048')
    .action(
      app.action(async (domain: string, opts: LimitOptions & { inactive?: boolean }, cmd: Command) => {
        const name = domainArg(domain);
        const db = app.db(app.config(cmd));
        const r = await inTransaction(db, (tx) =>
          createDomain(tx, {
            domain: name,
            ...(opts.description !== undefined ? { description: opts.description } : {}),
            ...(opts.maxMailboxes !== undefined ? { mailboxes: opts.maxMailboxes } : {}),
            ...(opts.maxQuota !== undefined ? { maxquota: opts.maxQuota } : {}),
            ...(opts.quota !== undefined ? { quota: opts.quota } : {}),
            ...(opts.defaultQuota !== undefined ? { defquota: opts.defaultQuota } : {}),
            active: opts.inactive ? 0 : 1,
          }),
        );
        if ('refused' in r) throw refusalFailure(r);
        const v = await view(db, r.domain);
        app.print(cmd, { action: 'created', domain: v }, () => `created domain ${v.domain}\n${details(v)}`);
      }),
    );

  group
    .command('list')
    .description('list domains with their usage')
    .addHelpText('after', '\nExample:\n  mailauth domain list --json')
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const db = app.db(app.config(cmd));
        const views: DomainView[] = [];
        for (const d of await listDomains(db)) views.push(await view(db, d));
        app.print(cmd, views, () =>
          views.length === 0
            ? 'no domains (add one with mailauth domain add DOMAIN)\n'
            : table(
                ['domain', 'active', 'mailboxes', 'quota MiB', 'max/mbox MiB', 'default MiB', 'description'],
                views.map((v) => [v.domain, activeText(v.active), `${v.mailboxes}/${v.maxMailboxes}`, `${v.assignedQuotaMiB}/${v.quotaMiB}`, v.maxQuotaMiB, v.defaultQuotaMiB, v.description]),
              ),
        );
      }),
    );

  group
    .command('show <domain>')
    .description('show one domain, its limits and usage')
    .addHelpText('after', '\nExample:\n  mailauth domain show example.org')
    .action(
      app.action(async (domain: string, _opts: unknown, cmd: Command) => {
        const name = domainArg(domain);
        const db = app.db(app.config(cmd));
        const d = await getDomain(db, name);
        if (!d) throw new CliFailure(`domain ${name} does not exist`, EXIT.FAILED, { refused: 'domain_missing' });
        const v = await view(db, d);
        app.print(cmd, v, () => details(v));
      }),
    );

  limitOptions(group.command('edit <domain>'))
    .description('change limits, description or state; limits never go below what is already used')
    .option('--active <0|1>', '1 = active, 0 = disabled (no logins, no provisioning)', choiceOption('--active', ['0', '1']))
    .addHelpText('after', '\nExamples:\n  mailauth domain edit example.org --max-mailboxes 100\n  mailauth domain edit example.org --active 0')
    .action(
      app.action(async (domain: string, opts: LimitOptions & { active?: string }, cmd: Command) => {
        const name = domainArg(domain);
        const patch = {
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          ...(opts.maxMailboxes !== undefined ? { mailboxes: opts.maxMailboxes } : {}),
          ...(opts.maxQuota !== undefined ? { maxquota: opts.maxQuota } : {}),
          ...(opts.quota !== undefined ? { quota: opts.quota } : {}),
          ...(opts.defaultQuota !== undefined ? { defquota: opts.defaultQuota } : {}),
          ...(opts.active !== undefined ? { active: Number(opts.active) as 0 | 1 } : {}),
        };
        if (Object.keys(patch).length === 0) throw usage('nothing to change: give at least one option (see mailauth domain edit --help)');
        const db = app.db(app.config(cmd));
        const r = await inTransaction(db, (tx) => editDomain(tx, name, patch));
        if ('refused' in r) throw refusalFailure(r);
        const v = await view(db, r.domain);
        app.print(cmd, { action: r.changed.length ? 'updated' : 'unchanged', changed: r.changed, domain: v }, () =>
          `${r.changed.length ? `updated domain ${v.domain} (${r.changed.join(', ')})` : `domain ${v.domain} unchanged`}\n${details(v)}`,
        );
      }),
    );

  group
    .command('delete <domain>')
    .description('delete a domain; refused while it has mailboxes unless --force (which deletes them too)')
    .option('--force', 'also delete its mailboxes (asks for confirmation; --yes for scripts)')
    .addHelpText(
      'after',
      `
Mail on disk is not touched; mailauth only removes database rows. The domain's aliases are removed with it.

Examples:
  mailauth domain delete old.example
  mailauth domain delete old.example --force --yes`,
    )
    .action(
      app.action(async (domain: string, opts: { force?: boolean }, cmd: Command) => {
        const name = domainArg(domain);
        const db = app.db(app.config(cmd));
        if (opts.force) {
          const contents = await domainContents(db, name);
          if (contents.mailboxes > 0) {
            await confirm(app, cmd, `Delete domain ${name} with its ${contents.mailboxes} mailbox${contents.mailboxes === 1 ? '' : 'es'} and ${contents.aliases} alias${contents.aliases === 1 ? '' : 'es'}?`);
          }
        }
        const r = await inTransaction(db, (tx) => removeDomain(tx, name, { force: opts.force === true }));
        if ('refused' in r) throw refusalFailure(r);
        app.print(cmd, { action: 'deleted', ...r }, () =>
          `deleted domain ${r.domain}` +
          (r.deletedMailboxes.length ? ` with ${r.deletedMailboxes.length} mailbox${r.deletedMailboxes.length === 1 ? '' : 'es'}` : '') +
          (r.deletedAliases ? ` and ${r.deletedAliases} alias${r.deletedAliases === 1 ? '' : 'es'}` : '') +
          '\n',
        );
      }),
    );
}
