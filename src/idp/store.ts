/**
 * Reading and writing the IdP settings through the identity_provider
 * repository, with mailcow's rules: one IdP at a time, no source change while
 * mailboxes use the old one, no delete while any mailbox uses an IdP, no
 * mapping to a template that does not exist. Each write is one transaction.
 */
import {
  countMailboxesByAuthsource,
  deleteIdpKeys,
  getTemplate,
  listTemplates,
  readIdpSettings,
  readIdpSettingsForUpdate,
  writeIdpSettings,
} from '../db/index.js';
import type { Db, Queryable } from '../db/index.js';
import { MailauthError } from '../errors.js';
import {
  MAPPING_KEYS,
  formatProblems,
  managedKeys,
  parseIdpSettings,
  parseMapping,
  serializeIdpSettings,
  serializeMapping,
} from './settings.js';
import type { IdpMapping, IdpSettings, ParseResult } from './settings.js';

export interface IdpState {
  raw: Record<string, string>;
  parsed: ParseResult;
}

export async function readIdpState(q: Queryable): Promise<IdpState> {
  const raw = await readIdpSettings(q);
  return { raw, parsed: parseIdpSettings(raw) };
}

/** The configured IdP, or null. Invalid rows (e.g. hand-edited) are ERR_CONFIG_INVALID naming each key. */
export async function loadIdpSettings(q: Queryable): Promise<IdpSettings | null> {
  const { parsed } = await readIdpState(q);
  if (parsed.ok) return parsed.settings;
  throw new MailauthError(
    'ERR_CONFIG_INVALID',
    `identity_provider table (${parsed.source}): ${formatProblems(parsed.problems, (k) => `identity_provider.${k}`)}`,
    { details: { source: parsed.source, problems: parsed.problems } },
  );
}

function mailboxesWord(n: number): string {
  return n === 1 ? '1 mailbox' : `${n} mailboxes`;
}

/** "3 mailboxes use authsource keycloak (list them with `mailauth mailbox list --authsource keycloak`)" */
export function describeUsers(counts: readonly (readonly [string, number])[]): string {
  return counts
    .map(([source, n]) => `${mailboxesWord(n)} ${n === 1 ? 'uses' : 'use'} authsource ${source} (list them with \`mailauth mailbox list --authsource ${source}\`)`)
    .join(', ');
}

export interface SaveResult {
  previousSource: string | null;
  written: string[];
  deleted: string[];
}

/**
 * Saves the connection settings of `settings`. The mapping keys are left as
 * they are (they belong to `idp map`); keys of another source are removed.
 */
export async function saveIdpSettings(db: Db, settings: IdpSettings): Promise<SaveResult> {
  return db.transaction(async (tx) => {
    const raw = await readIdpSettingsForUpdate(tx);
    const previous = (raw.authsource ?? '').trim() || null;
    if (previous !== null && previous !== settings.source) {
      const n = (await countMailboxesByAuthsource(tx))[previous] ?? 0;
      if (n > 0) {
        throw new MailauthError(
          'ERR_REFUSED',
          `refused to switch the identity provider from ${previous} to ${settings.source}: ${describeUsers([[previous, n]])}; ` +
            `move them first with \`mailauth mailbox set-authsource USER mailcow\``,
          { details: { previousSource: previous, source: settings.source, mailboxes: n } },
        );
      }
    }
    const values = serializeIdpSettings(settings);
    for (const k of MAPPING_KEYS) delete values[k];
    const keep = new Set([...Object.keys(values), ...MAPPING_KEYS]);
    // mailcow's cached admin token belongs to the old client; it fetches a new one.
    const stale = managedKeys().filter((k) => !keep.has(k) && k in raw);
    await writeIdpSettings(tx, values);
    await deleteIdpKeys(tx, stale);
    return { previousSource: previous, written: Object.keys(values), deleted: stale };
  });
}

/** Removes the IdP configuration, refused while any mailbox has a non-mailcow authsource. */
export async function deleteIdpSettings(db: Db): Promise<{ source: string | null; deletedKeys: number }> {
  return db.transaction(async (tx) => {
    const raw = await readIdpSettingsForUpdate(tx);
    const users = Object.entries(await countMailboxesByAuthsource(tx)).filter(([source, n]) => source !== 'mailcow' && n > 0);
    if (users.length > 0) {
      throw new MailauthError(
        'ERR_REFUSED',
        `refused to delete the identity provider: ${describeUsers(users)}; move them first with \`mailauth mailbox set-authsource USER mailcow\``,
        { details: { mailboxes: Object.fromEntries(users) } },
      );
    }
    const deletedKeys = await deleteIdpKeys(tx);
    return { source: (raw.authsource ?? '').trim() || null, deletedKeys };
  });
}

export async function templateNames(q: Queryable): Promise<string[]> {
  return (await listTemplates(q, 'mailbox')).map((t) => t.name);
}

export async function readMapping(q: Queryable): Promise<IdpMapping> {
  const { mapping, problems } = parseMapping(await readIdpSettings(q));
  if (problems.length > 0) {
    throw new MailauthError('ERR_CONFIG_INVALID', `identity_provider table: ${formatProblems(problems, (k) => `identity_provider.${k}`)}`, {
      details: { problems },
    });
  }
  return mapping;
}

/**
 * Applies `edit` to the stored mapping in one transaction. Every template the
 * edit introduces must exist as a mailbox template, else nothing is written.
 */
export async function updateMapping<T>(
  db: Db,
  edit: (m: IdpMapping) => { mapping: IdpMapping; result: T },
): Promise<{ mapping: IdpMapping; result: T }> {
  return db.transaction(async (tx) => {
    const raw = await readIdpSettingsForUpdate(tx);
    const current = parseMapping(raw);
    if (current.problems.length > 0) {
      throw new MailauthError('ERR_CONFIG_INVALID', `identity_provider table: ${formatProblems(current.problems, (k) => `identity_provider.${k}`)}`, {
        details: { problems: current.problems },
      });
    }
    const { mapping, result } = edit(current.mapping);
    const before = new Set([...current.mapping.templates, current.mapping.defaultTemplate]);
    const added = [...new Set([...mapping.templates, ...(mapping.defaultTemplate ? [mapping.defaultTemplate] : [])])].filter((t) => !before.has(t));
    for (const name of added) {
      if ((await getTemplate(tx, name, 'mailbox')) === null) {
        const known = (await listTemplates(tx, 'mailbox')).map((t) => t.name);
        throw new MailauthError(
          'ERR_NOT_FOUND',
          `mailbox template ${JSON.stringify(name)} does not exist (known: ${known.join(', ') || 'none'}); create it with \`mailauth template add ${name}\``,
          { details: { template: name, known } },
        );
      }
    }
    await writeIdpSettings(tx, serializeMapping(mapping));
    return { mapping, result };
  });
}
