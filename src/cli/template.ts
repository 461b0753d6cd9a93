/** `mailauth template list|show|add|edit|delete`: mailbox templates (mailcow `templates`, type mailbox). */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { getTemplate, listTemplates } from '../db/index.js';
import type { TemplateRow } from '../db/index.js';
import {
  TEMPLATE_KEYS,
  createTemplate,
  editTemplate,
  inTransaction,
  parseTemplateSetting,
  removeTemplate,
  templateAttributeHash,
  templateReferences,
} from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT } from './app.js';
import { readStdinJson, refusalFailure, usage } from './admin.js';
import { keyValues, table } from './render.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface AttributeOptions {
  set: string[];
  fromJson?: string;
}

function parseSets(sets: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const s of sets) {
    const r = parseTemplateSetting(s);
    if (typeof r === 'string') problems.push(`--set ${r}`);
    else out[r.key] = r.value;
  }
  if (problems.length > 0) throw usage(problems.join('\n'));
  return out;
}

async function readJsonFile(app: CliApp, file: string): Promise<Record<string, unknown>> {
  let parsed: unknown;
  if (file === '-') parsed = await readStdinJson(app);
  else {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw usage(`--from-json: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw usage(`--from-json: ${file} is not valid JSON (${(err as Error).message})`);
    }
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw usage('--from-json: the file must hold one JSON object of template attributes');
  // Accept mailcow's API shape too: {"template": "...", "attributes": {...}}.
  const obj = parsed as Record<string, unknown>;
  if (typeof obj.attributes === 'object' && obj.attributes !== null && !Array.isArray(obj.attributes)) return obj.attributes as Record<string, unknown>;
  return obj;
}

function orderedEntries(attributes: Record<string, unknown>): [string, unknown][] {
  const known = TEMPLATE_KEYS.filter((k) => Object.hasOwn(attributes, k)).map((k): [string, unknown] => [k, attributes[k]]);
  const unknown = Object.entries(attributes).filter(([k]) => !TEMPLATE_KEYS.includes(k));
  return [...known, ...unknown];
}

function templateView(t: TemplateRow) {
  return { id: t.id, name: t.name, attributes: t.attributes, attributeHash: templateAttributeHash(t), created: t.created, modified: t.modified };
}

function details(v: ReturnType<typeof templateView>, references: string[]): string {
  return (
    keyValues([
      ['template', v.name],
      ['id', v.id],
      ['attribute hash', v.attributeHash],
      ['used by', references.length ? references.join('; ') : '-'],
      ['modified', v.modified ?? v.created],
    ]) +
    'attributes:\n' +
    keyValues(orderedEntries(v.attributes).map(([k, x]) => [`  ${k}`, k === 'quota' ? quotaNote(x) : x]))
  );
}

function quotaNote(x: unknown): string {
  if (x === 0) return '0 (domain default)';
  return typeof x === 'number' && x >= MIB ? `${x} (${Math.floor(x / MIB)} MiB)` : String(x);
}

const MIB = 1024 * 1024;

const ATTRIBUTE_HELP = `
Attributes (--set KEY=VALUE, repeatable; or --from-json FILE, "-" for stdin):
  quota                      bytes; 0 = the domain's default quota
  active                     1 active, 0 disabled, 2 receive only
  tags                       comma-separated list
  *_access, force_*, tls_enforce_in/out, sogo_access, acl_*   "0" or "1"
  quarantine_notification    never | hourly | daily | weekly
  quarantine_category        add_header | reject | all
  rl_frame / rl_value        s|m|h|d / "" or a positive integer
  tagged_mail_handler        none | subfolder | subject
Known keys: ${TEMPLATE_KEYS.join(', ')}`;

export function registerTemplate(program: Command, app: CliApp): void {
  const group = program
    .command('template')
    .description('mailbox templates: the attributes, quota and ACL a new mailbox gets')
    .addHelpText(
      'after',
      `
Examples:
  mailauth template list
  mailauth template add Staff --set quota=5368709120 --set pop3_access=0 --set tags=staff,berlin
  mailauth template edit Staff --set quarantine_notification=daily
  mailauth template show Staff --json
  mailauth template delete Staff`,
    );

  group
    .command('list')
    .description('list mailbox templates')
    .addHelpText('after', '\nExample:\n  mailauth template list --json')
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const db = app.db(app.config(cmd));
        const views = (await listTemplates(db, 'mailbox')).map(templateView);
        app.print(cmd, views, () =>
          views.length === 0
            ? 'no mailbox templates (run mailauth db migrate for the Default one)\n'
            : table(
                ['name', 'id', 'quota', 'active', 'attribute hash', 'modified'],
                views.map((v) => [
                  v.name,
                  v.id,
                  v.attributes.quota === 0 || v.attributes.quota === undefined ? 'domain default' : `${Math.floor(Number(v.attributes.quota) / 1048576)} MiB`,
                  String(v.attributes.active ?? '1'),
                  v.attributeHash.slice(0, 12),
                  v.modified ?? v.created,
                ]),
              ),
        );
      }),
    );

  group
    .command('show <name>')
    .description('show a template, its attribute hash and what refers to it')
    .addHelpText('after', '\nExample:\n  mailauth template show Default')
    .action(
      app.action(async (name: string, _opts: unknown, cmd: Command) => {
        const db = app.db(app.config(cmd));
        const t = await getTemplate(db, name, 'mailbox');
        if (!t) throw new CliFailure(`mailbox template "${name}" does not exist (see mailauth template list)`, EXIT.FAILED, { refused: 'template_missing' });
        const references = await templateReferences(db, name);
        const v = templateView(t);
        app.print(cmd, { ...v, references }, () => details(v, references));
      }),
    );

  group
    .command('add <name>')
    .description("add a template; attributes not given take mailcow's defaults")
    .option('-s, --set <key=value>', 'set one attribute (repeatable)', collect, [])
    .option('--from-json <file>', 'attributes from a JSON object ("-" = stdin); --set applies on top')
    .addHelpText('after', `${ATTRIBUTE_HELP}\n\nExamples:\n  mailauth template add Staff --set quota=5368709120 --set pop3_access=0\n  mailauth template add Students --from-json students.json`)
    .action(
      app.action(async (name: string, opts: AttributeOptions, cmd: Command) => {
        const base = opts.fromJson !== undefined ? await readJsonFile(app, opts.fromJson) : {};
        const attributes = { ...base, ...parseSets(opts.set) };
        const db = app.db(app.config(cmd));
        const r = await inTransaction(db, (tx) => createTemplate(tx, name, attributes));
        if ('refused' in r) throw refusalFailure(r);
        const v = templateView(r.template);
        app.print(cmd, { action: 'created', template: v }, () => `created template ${v.name}\n${details(v, [])}`);
      }),
    );

  group
    .command('edit <name>')
    .description('change attributes of a template (mailboxes pick it up on mailbox edit --template, login provisioning or sync)')
    .option('-s, --set <key=value>', 'set one attribute (repeatable)', collect, [])
    .option('--unset <key>', 'remove an attribute, so the default applies (repeatable)', collect, [])
    .option('--from-json <file>', 'replace all attributes with this JSON object ("-" = stdin); --set/--unset apply on top')
    .addHelpText('after', `${ATTRIBUTE_HELP}\n\nExamples:\n  mailauth template edit Staff --set quota=10737418240\n  mailauth template edit Default --set acl_syncjobs=1`)
    .action(
      app.action(async (name: string, opts: AttributeOptions & { unset: string[] }, cmd: Command) => {
        if (opts.set.length === 0 && opts.unset.length === 0 && opts.fromJson === undefined) throw usage('nothing to change: give --set, --unset or --from-json');
        const replace = opts.fromJson !== undefined ? await readJsonFile(app, opts.fromJson) : undefined;
        const set = parseSets(opts.set);
        const db = app.db(app.config(cmd));
        const r = await inTransaction(db, (tx) => editTemplate(tx, name, { ...(replace ? { replace } : {}), set, unset: opts.unset }));
        if ('refused' in r) throw refusalFailure(r);
        const v = templateView(r.template);
        app.print(cmd, { action: r.changed ? 'updated' : 'unchanged', template: v }, () =>
          `${r.changed ? `updated template ${v.name}` : `template ${v.name} unchanged`}\n${details(v, [])}`,
        );
      }),
    );

  group
    .command('delete <name>')
    .description('delete a template (not Default, not one the IdP mapping uses)')
    .addHelpText('after', '\nMailboxes made from it keep their settings.\n\nExample:\n  mailauth template delete Interns')
    .action(
      app.action(async (name: string, _opts: unknown, cmd: Command) => {
        const db = app.db(app.config(cmd));
        const r = await inTransaction(db, (tx) => removeTemplate(tx, name));
        if ('refused' in r) throw refusalFailure(r);
        app.print(cmd, { action: 'deleted', name: r.name }, () => `deleted template ${r.name}\n`);
      }),
    );
}
