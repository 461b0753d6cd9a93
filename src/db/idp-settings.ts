/** Repository for mailcow's `identity_provider` key/value table. Interpretation lives in src/idp/. */
import type { Queryable } from './pool.js';

export async function readIdpSettings(q: Queryable): Promise<Record<string, string>> {
  const rows = await q.rows<{ key: string; value: string | null }>('SELECT `key`, `value` FROM identity_provider');
  return Object.fromEntries(rows.map((r) => [String(r.key), r.value == null ? '' : String(r.value)]));
}

/** Upserts the given keys; callers run it in a transaction together with deleteIdpKeys. */
export async function writeIdpSettings(q: Queryable, values: Record<string, string>): Promise<void> {
  for (const [key, value] of Object.entries(values)) {
    await q.exec('INSERT INTO identity_provider (`key`, `value`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `value` = VALUES(`value`)', [key, value]);
  }
}

export async function deleteIdpKeys(q: Queryable, keys?: readonly string[]): Promise<number> {
  if (keys === undefined) return (await q.exec('DELETE FROM identity_provider')).affectedRows;
  if (keys.length === 0) return 0;
  return (await q.exec(`DELETE FROM identity_provider WHERE \`key\` IN (${keys.map(() => '?').join(',')})`, [...keys])).affectedRows;
}

/** Same as readIdpSettings but locks the rows, so two concurrent `idp` edits serialize. Inside a transaction only. */
export async function readIdpSettingsForUpdate(q: Queryable): Promise<Record<string, string>> {
  const rows = await q.rows<{ key: string; value: string | null }>('SELECT `key`, `value` FROM identity_provider FOR UPDATE');
  return Object.fromEntries(rows.map((r) => [String(r.key), r.value == null ? '' : String(r.value)]));
}
