/**
 * Mailbox templates: add, edit and delete with every attribute validated.
 * `Default` cannot be deleted (mailcow silently refuses too, and falls back to
 * it), nor can a template the IdP mapping names: provisioning would then skip
 * those users.
 */
import { deleteTemplate, getTemplate, insertTemplate, readIdpSettings, updateTemplate, DEFAULT_MAILBOX_TEMPLATE } from '../db/index.js';
import type { Queryable, TemplateRow } from '../db/index.js';
import { refuse } from './refusal.js';
import type { Refusal } from './refusal.js';
import { validateTemplateAttributes } from './template-attributes.js';

export const DEFAULT_TEMPLATE_NAME = 'Default';

export type TemplateRefusal = Refusal<'invalid_name' | 'invalid_attributes' | 'template_exists' | 'template_missing' | 'template_protected' | 'template_in_use'>;

function checkName(name: string): TemplateRefusal | null {
  if (name.trim() === '' || name !== name.trim() || name.length > 255 || /[\u0000-\u001f\u007f]/.test(name)) {
    return refuse('invalid_name', 'a template name must be 1-255 characters, without control characters or surrounding spaces');
  }
  return null;
}

function checkAttributes(attributes: unknown): TemplateRefusal | null {
  const problems = validateTemplateAttributes(attributes);
  return problems.length > 0 ? refuse('invalid_attributes', problems.join('; '), { problems }) : null;
}

/** A new template: `attributes` over mailcow's Default attributes unless `replace` is set. */
export async function createTemplate(
  tx: Queryable,
  name: string,
  attributes: Record<string, unknown>,
  opts: { replace?: boolean } = {},
): Promise<{ template: TemplateRow } | TemplateRefusal> {
  const bad = checkName(name);
  if (bad) return bad;
  const full = opts.replace ? attributes : { ...DEFAULT_MAILBOX_TEMPLATE, ...attributes };
  const invalid = checkAttributes(full);
  if (invalid) return invalid;
  if (await getTemplate(tx, name, 'mailbox')) return refuse('template_exists', `mailbox template "${name}" already exists (change it with mailauth template edit)`);
  await insertTemplate(tx, name, 'mailbox', full);
  const row = await getTemplate(tx, name, 'mailbox');
  if (!row) throw new Error(`template ${name} vanished right after insert`);
  return { template: row };
}

export interface TemplateChange {
  /** Replace all attributes (e.g. from --from-json) before `set`/`unset` apply. */
  replace?: Record<string, unknown>;
  set?: Record<string, unknown>;
  unset?: readonly string[];
}

export async function editTemplate(tx: Queryable, name: string, change: TemplateChange): Promise<{ template: TemplateRow; changed: boolean } | TemplateRefusal> {
  const current = await getTemplate(tx, name, 'mailbox');
  if (!current) return refuse('template_missing', `mailbox template "${name}" does not exist (see mailauth template list)`);
  const next: Record<string, unknown> = { ...(change.replace ?? current.attributes), ...change.set };
  for (const key of change.unset ?? []) {
    if (!Object.hasOwn(next, key)) return refuse('invalid_attributes', `template "${name}" has no attribute "${key}" to remove`);
    delete next[key];
  }
  const invalid = checkAttributes(next);
  if (invalid) return invalid;
  const changed = JSON.stringify(next) !== JSON.stringify(current.attributes);
  if (changed) await updateTemplate(tx, current.id, next);
  const row = await getTemplate(tx, name, 'mailbox');
  if (!row) throw new Error(`template ${name} vanished during edit`);
  return { template: row, changed };
}

/** Which IdP settings name this template (mappers → templates, default_template). */
export async function templateReferences(q: Queryable, name: string): Promise<string[]> {
  const s = await readIdpSettings(q);
  const refs: string[] = [];
  if (s.default_template === name) refs.push('identity provider default_template');
  let mapped: unknown = [];
  let mappers: unknown = [];
  try {
    mapped = JSON.parse(s.templates || '[]');
    mappers = JSON.parse(s.mappers || '[]');
  } catch {
    // A damaged mapping is reported by `mailauth idp show`; it cannot protect anything here.
  }
  if (Array.isArray(mapped)) {
    mapped.forEach((t, i) => {
      if (t === name) refs.push(`identity provider mapping ${JSON.stringify(Array.isArray(mappers) ? (mappers[i] ?? `#${i}`) : `#${i}`)} → ${name}`);
    });
  }
  return refs;
}

export async function removeTemplate(tx: Queryable, name: string): Promise<{ name: string } | TemplateRefusal> {
  if (name === DEFAULT_TEMPLATE_NAME) return refuse('template_protected', `the ${DEFAULT_TEMPLATE_NAME} template cannot be deleted (mailcow falls back to it); edit it instead`);
  const current = await getTemplate(tx, name, 'mailbox');
  if (!current) return refuse('template_missing', `mailbox template "${name}" does not exist (see mailauth template list)`);
  const refs = await templateReferences(tx, name);
  if (refs.length > 0) {
    return refuse('template_in_use', `template "${name}" is used by ${refs.join(', ')}; change the mapping first (mailauth idp map …)`, { references: refs });
  }
  await deleteTemplate(tx, current.id);
  return { name };
}
