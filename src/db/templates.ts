/** Repository for `templates` (mailcow's mailbox and domain templates). */
import { MailauthError } from '../errors.js';
import { jsonColumn } from './pool.js';
import type { Queryable, Row } from './pool.js';

export type TemplateType = 'mailbox' | 'domain';

export interface TemplateRow {
  id: number;
  name: string;
  type: TemplateType;
  attributes: Record<string, unknown>;
  /** The column as text, exactly what mailcow's PHP reads (verbatim on MariaDB); the attribute hash is computed over it. */
  attributesText?: string;
  created: string;
  modified: string | null;
}

function toRow(r: Row): TemplateRow {
  let attributes: unknown;
  try {
    attributes = jsonColumn(r.attributes) ?? {};
  } catch (err) {
    throw new MailauthError('ERR_DB_QUERY', `template ${String(r.template)}: attributes column is not valid JSON`, { cause: err });
  }
  if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) {
    throw new MailauthError('ERR_DB_QUERY', `template ${String(r.template)}: attributes column is not a JSON object`);
  }
  return {
    id: Number(r.id),
    name: String(r.template),
    type: String(r.type) as TemplateType,
    attributes: attributes as Record<string, unknown>,
    ...(typeof r.attributes_text === 'string' ? { attributesText: r.attributes_text } : {}),
    created: String(r.created ?? ''),
    modified: r.modified == null ? null : String(r.modified),
  };
}

// mysql2 parses JSON columns; mailcow's attribute hash needs the text PHP sees.
const COLUMNS = 'id, template, type, attributes, CAST(attributes AS CHAR) AS attributes_text, created, modified';

export async function getTemplate(q: Queryable, name: string, type: TemplateType = 'mailbox'): Promise<TemplateRow | null> {
  const rows = await q.rows(`SELECT ${COLUMNS} FROM templates WHERE template = ? AND type = ? ORDER BY id LIMIT 1`, [name, type]);
  return rows[0] ? toRow(rows[0]) : null;
}

export async function listTemplates(q: Queryable, type: TemplateType = 'mailbox'): Promise<TemplateRow[]> {
  return (await q.rows(`SELECT ${COLUMNS} FROM templates WHERE type = ? ORDER BY template`, [type])).map(toRow);
}

export async function insertTemplate(q: Queryable, name: string, type: TemplateType, attributes: Record<string, unknown>): Promise<number> {
  const res = await q.exec('INSERT INTO templates (template, type, attributes) VALUES (?, ?, ?)', [name, type, JSON.stringify(attributes)]);
  return res.insertId;
}

export async function updateTemplate(q: Queryable, id: number, attributes: Record<string, unknown>): Promise<boolean> {
  const res = await q.exec('UPDATE templates SET attributes = ? WHERE id = ?', [JSON.stringify(attributes), id]);
  return res.affectedRows > 0;
}

export async function deleteTemplate(q: Queryable, id: number): Promise<boolean> {
  const res = await q.exec('DELETE FROM templates WHERE id = ?', [id]);
  return res.affectedRows > 0;
}
