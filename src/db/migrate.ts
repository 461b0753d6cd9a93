import type { Db, Queryable } from './pool.js';
import { DEFAULT_MAILBOX_TEMPLATE, TABLES, TABLE_NAMES } from './schema.js';

export interface MigrateResult {
  created: string[];
  existing: string[];
  seeded: string[];
}

export interface TableStatus {
  name: string;
  exists: boolean;
}

async function existingTables(q: Queryable, database: string): Promise<Set<string>> {
  const rows = await q.rows<{ name: string }>(
    'SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
    [database],
  );
  return new Set(rows.map((r) => r.name));
}

/**
 * Create the missing tables; never alter or drop an existing one. The Default
 * mailbox template is seeded only into a templates table created by this run,
 * so a real mailcow database keeps its own.
 */
export async function migrate(db: Db): Promise<MigrateResult> {
  const before = await existingTables(db, db.database);
  const result: MigrateResult = { created: [], existing: [], seeded: [] };
  for (const [name, ddl] of TABLES) {
    if (before.has(name)) {
      result.existing.push(name);
      continue;
    }
    await db.exec(ddl);
    result.created.push(name);
  }
  if (result.created.includes('templates')) {
    await db.exec("INSERT INTO `templates` (`template`, `type`, `attributes`) VALUES ('Default', 'mailbox', ?)", [
      JSON.stringify(DEFAULT_MAILBOX_TEMPLATE),
    ]);
    result.seeded.push('templates: Default mailbox template');
  }
  return result;
}

export async function schemaStatus(db: Db): Promise<{ tables: TableStatus[]; missing: string[] }> {
  const have = await existingTables(db, db.database);
  const tables = TABLE_NAMES.map((name) => ({ name, exists: have.has(name) }));
  return { tables, missing: tables.filter((t) => !t.exists).map((t) => t.name) };
}
