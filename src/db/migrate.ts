import type { Db, Queryable } from './pool.js';
import { ADDED_COLUMNS, DEFAULT_MAILBOX_TEMPLATE, TABLES, TABLE_NAMES } from './schema.js';

export interface MigrateResult {
  created: string[];
  existing: string[];
  /** `table.column` added to an existing table (mailcow's newer columns, ADDED_COLUMNS). */
  added: string[];
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

/** `table.column` of ADDED_COLUMNS whose table exists without the column. */
async function missingAddedColumns(q: Queryable, database: string, tables: Set<string>): Promise<typeof ADDED_COLUMNS[number][]> {
  const rows = await q.rows<{ t: string; c: string }>(
    'SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?',
    [database],
  );
  const have = new Set(rows.map((r) => `${r.t}.${r.c}`));
  return ADDED_COLUMNS.filter((a) => tables.has(a.table) && !have.has(`${a.table}.${a.column}`));
}

/**
 * Create the missing tables and add mailcow's newer columns (ADDED_COLUMNS) to
 * existing tables that lack them; never change or drop anything else. The
 * Default mailbox template is seeded only into a templates table created by
 * this run, so a real mailcow database keeps its own.
 */
export async function migrate(db: Db): Promise<MigrateResult> {
  const before = await existingTables(db, db.database);
  const result: MigrateResult = { created: [], existing: [], added: [], seeded: [] };
  for (const [name, ddl] of TABLES) {
    if (before.has(name)) {
      result.existing.push(name);
      continue;
    }
    await db.exec(ddl);
    result.created.push(name);
  }
  for (const a of await missingAddedColumns(db, db.database, before)) {
    // The AFTER column may itself be missing on an unusual table: then append at the end.
    const afterOk = (await db.rows('SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?', [db.database, a.table, a.after])).length > 0;
    await db.exec(`ALTER TABLE \`${a.table}\` ADD COLUMN \`${a.column}\` ${a.definition}${afterOk ? ` AFTER \`${a.after}\`` : ''}`);
    result.added.push(`${a.table}.${a.column}`);
  }
  if (result.created.includes('templates')) {
    await db.exec("INSERT INTO `templates` (`template`, `type`, `attributes`) VALUES ('Default', 'mailbox', ?)", [
      JSON.stringify(DEFAULT_MAILBOX_TEMPLATE),
    ]);
    result.seeded.push('templates: Default mailbox template');
  }
  return result;
}

export async function schemaStatus(db: Db): Promise<{ tables: TableStatus[]; missing: string[]; missingColumns: string[] }> {
  const have = await existingTables(db, db.database);
  const tables = TABLE_NAMES.map((name) => ({ name, exists: have.has(name) }));
  const missingColumns = (await missingAddedColumns(db, db.database, have)).map((a) => `${a.table}.${a.column}`);
  return { tables, missing: tables.filter((t) => !t.exists).map((t) => t.name), missingColumns };
}
