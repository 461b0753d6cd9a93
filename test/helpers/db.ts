/**
 * Each test file gets its own freshly created database on the server named by
 * MAILAUTH_TEST_DATABASE_URL (default: local root, empty password) and drops it
 * in teardown, so files run in parallel and leave nothing behind.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { buildConfig, parseDatabaseUrl } from '../../src/config/index.js';
import type { Config, DatabaseConfig } from '../../src/config/index.js';
import { connectionOptions, createDb, migrate } from '../../src/db/index.js';
import type { Db } from '../../src/db/index.js';

export const TEST_SERVER_URL = process.env.MAILAUTH_TEST_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/mysql';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestDatabase {
  name: string;
  url: string;
  db: Db;
  dbConfig: DatabaseConfig;
  /** Raw SQL on the same database, for assertions and fixtures. */
  sql: <T = Record<string, unknown>>(q: string, params?: unknown[]) => Promise<T[]>;
}

function serverConfig(): DatabaseConfig {
  const parsed = parseDatabaseUrl(TEST_SERVER_URL);
  if (typeof parsed === 'string') throw new Error(`MAILAUTH_TEST_DATABASE_URL: ${parsed}`);
  return { ...parsed, poolSize: 4, connectTimeoutMs: 3000, queryTimeoutMs: 10_000 };
}

export async function createTestDatabase(t: Teardown, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const server = serverConfig();
  const name = `mailauth_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = await mysql.createConnection(connectionOptions(server, false));
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${name}`;
  const dbConfig: DatabaseConfig = { ...server, database: name, url: url.href };
  const db = createDb(dbConfig);
  t.teardown(async () => {
    await db.close();
    await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
    await admin.end();
  });
  if (opts.migrate !== false) await migrate(db);
  return {
    name,
    url: url.href,
    db,
    dbConfig,
    sql: async (q, params = []) => (await db.rows(q, params)) as never,
  };
}

/** A full Config pointing at a test database; `overrides` is the YAML tree to merge at top level. */
export function testConfig(tdb: TestDatabase | null, overrides: Record<string, unknown> = {}): Config {
  const database = { url: tdb?.url ?? TEST_SERVER_URL, ...(overrides.database as object | undefined) };
  return buildConfig({ log: { level: 'silent', format: 'json' }, dovecot: { notify: false }, ...overrides, database }, { env: {} });
}

export async function seedDomain(tdb: TestDatabase, domain: string, over: Record<string, unknown> = {}): Promise<void> {
  const row = { domain, description: '', mailboxes: 100, defquota: 1024, maxquota: 10240, quota: 102400, active: 1, ...over };
  await tdb.db.exec('INSERT INTO domain (domain, description, mailboxes, defquota, maxquota, quota, active) VALUES (?, ?, ?, ?, ?, ?, ?)', [
    row.domain, row.description, row.mailboxes, row.defquota, row.maxquota, row.quota, row.active,
  ]);
}

export async function seedMailbox(
  tdb: TestDatabase,
  username: string,
  passwordHash: string,
  over: { active?: number; authsource?: string; kind?: string; attributes?: Record<string, unknown>; name?: string; quota?: number } = {},
): Promise<void> {
  const [localPart, domain] = username.split('@');
  const attributes = {
    imap_access: '1', pop3_access: '1', smtp_access: '1', sieve_access: '1', eas_access: '1', dav_access: '1',
    force_pw_update: '0', force_tfa: '0', sogo_access: '1',
    ...over.attributes,
  };
  await tdb.db.exec(
    'INSERT INTO mailbox (username, password, name, quota, local_part, domain, attributes, kind, authsource, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    [username, passwordHash, over.name ?? localPart, over.quota ?? 0, localPart, domain, JSON.stringify(attributes), over.kind ?? '', over.authsource ?? 'mailcow', over.active ?? 1],
  );
}
