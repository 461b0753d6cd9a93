/**
 * The benchmark database: a fresh, migrated database on the MariaDB server named
 * by MAILAUTH_BENCH_DATABASE_URL (default local root), with users whose hashes
 * were made once and kept in a file (1,000 bcrypt cost-10 hashes take ~30 s).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { parseDatabaseUrl } from '../../src/config/index.js';
import type { DatabaseConfig } from '../../src/config/index.js';
import { createDb, migrate } from '../../src/db/index.js';
import type { Db } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import { pool } from './pool.js';

export const SERVER_URL = process.env.MAILAUTH_BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/mysql';
export const DOMAIN = 'bench.test';

export interface BenchUser {
  user: string;
  password: string;
}

export interface Fixture {
  url: string;
  name: string;
  db: Db;
  dbConfig: DatabaseConfig;
  ssha: BenchUser[];
  blf: BenchUser[];
  /** Mailboxes (SSHA256 password) that log in with a BLF-CRYPT app password. */
  app: BenchUser[];
  /** A MariaDB account with a password and SELECT only, for Dovecot's own SQL passdb. */
  readonly: { user: string; password: string; host: string; port: number };
  drop(): Promise<void>;
}

interface HashCache {
  version: 1;
  blf: string[];
  app: string[];
}

const pw = (kind: string, i: number): string => `bench-${kind}-password-${i}`;

/** bcrypt hashes are slow to make; keep them between runs. */
async function bcryptHashes(count: number, log: (s: string) => void): Promise<HashCache> {
  const file = join(tmpdir(), 'mailauth-bench-bcrypt-v1.json');
  let cache: HashCache = { version: 1, blf: [], app: [] };
  if (existsSync(file)) {
    try {
      cache = JSON.parse(readFileSync(file, 'utf8')) as HashCache;
    } catch {
      cache = { version: 1, blf: [], app: [] };
    }
  }
  if (cache.blf.length >= count && cache.app.length >= count) return cache;
  log(`making ${count * 2} BLF-CRYPT cost-10 hashes once (kept in ${file})…`);
  cache.blf = await pool(count, 8, (i) => (cache.blf[i] ? Promise.resolve(cache.blf[i] as string) : hash('BLF-CRYPT', pw('blf', i), { bcryptCost: 10 })));
  cache.app = await pool(count, 8, (i) => (cache.app[i] ? Promise.resolve(cache.app[i] as string) : hash('BLF-CRYPT', pw('app', i), { bcryptCost: 10 })));
  writeFileSync(file, JSON.stringify(cache));
  return cache;
}

/** {SSHA256} as Dovecot writes it: base64(sha256(pw ‖ salt) ‖ salt), made here because it is fast. */
export function ssha256(password: string): string {
  const salt = randomBytes(8);
  return `{SSHA256}${Buffer.concat([createHash('sha256').update(password).update(salt).digest(), salt]).toString('base64')}`;
}

const ATTRIBUTES = JSON.stringify({
  force_pw_update: '0', tls_enforce_in: '0', tls_enforce_out: '0', sogo_access: '1', imap_access: '1', pop3_access: '1',
  smtp_access: '1', sieve_access: '1', eas_access: '1', dav_access: '1', relayhost: '0', passwd_update: '2024-01-01 00:00:00',
  mailbox_format: 'maildir:', quarantine_notification: 'hourly', quarantine_category: 'reject', attribute_hash: 'bench',
});

export async function insertMailboxes(db: Db, rows: Array<{ user: string; hash: string }>): Promise<void> {
  for (let i = 0; i < rows.length; i += 1000) {
    const chunk = rows.slice(i, i + 1000);
    const values: unknown[] = [];
    for (const r of chunk) values.push(r.user, r.hash, r.user.split('@')[0], r.user.split('@')[0], DOMAIN, ATTRIBUTES);
    await db.exec(
      `INSERT INTO mailbox (username, password, name, local_part, domain, attributes, quota, kind, authsource, active)
       VALUES ${chunk.map(() => "(?, ?, ?, ?, ?, ?, 0, '', 'mailcow', 1)").join(', ')}`,
      values,
    );
  }
}

export async function createFixture(opts: { users: number; log: (s: string) => void }): Promise<Fixture> {
  const server = parseDatabaseUrl(SERVER_URL);
  if (typeof server === 'string') throw new Error(`MAILAUTH_BENCH_DATABASE_URL: ${server}`);
  const name = `mailauth_bench_${process.pid}`;
  const admin = await mysql.createConnection({ host: server.host, port: server.port, user: server.user, password: server.password ?? undefined });
  await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  const roUser = `mab_ro_${process.pid}`;
  const roPassword = randomBytes(12).toString('hex');
  await admin.query(`DROP USER IF EXISTS '${roUser}'@'127.0.0.1'`);
  await admin.query(`CREATE USER '${roUser}'@'127.0.0.1' IDENTIFIED BY '${roPassword}'`);
  await admin.query(`GRANT SELECT ON \`${name}\`.* TO '${roUser}'@'127.0.0.1'`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const dbConfig: DatabaseConfig = { ...server, database: name, url: url.href, poolSize: 8, connectTimeoutMs: 3000, queryTimeoutMs: 60_000 };
  const db = createDb(dbConfig);
  await migrate(db);
  await db.exec('INSERT INTO domain (domain, description, mailboxes, defquota, maxquota, quota, active) VALUES (?, ?, ?, ?, ?, ?, 1)', [
    DOMAIN, 'benchmark', 1_000_000, 1024, 10240, 1_000_000_000,
  ]);

  const n = opts.users;
  const bcrypt = await bcryptHashes(n, opts.log);
  const ssha = Array.from({ length: n }, (_, i) => ({ user: `ssha${i}@${DOMAIN}`, password: pw('ssha', i) }));
  const blf = Array.from({ length: n }, (_, i) => ({ user: `blf${i}@${DOMAIN}`, password: pw('blf', i) }));
  const app = Array.from({ length: n }, (_, i) => ({ user: `app${i}@${DOMAIN}`, password: pw('app', i) }));
  await insertMailboxes(db, [
    ...ssha.map((u) => ({ user: u.user, hash: ssha256(u.password) })),
    ...blf.map((u, i) => ({ user: u.user, hash: bcrypt.blf[i] as string })),
    ...app.map((u) => ({ user: u.user, hash: ssha256(`mailbox-${u.password}`) })),
  ]);
  for (let i = 0; i < n; i += 500) {
    const chunk = app.slice(i, i + 500);
    const values: unknown[] = [];
    chunk.forEach((u, j) => values.push('bench', u.user, DOMAIN, bcrypt.app[i + j]));
    await db.exec(
      `INSERT INTO app_passwd (name, mailbox, domain, password, imap_access, pop3_access, smtp_access, sieve_access, eas_access, dav_access, active)
       VALUES ${chunk.map(() => '(?, ?, ?, ?, 1, 1, 1, 1, 1, 1, 1)').join(', ')}`,
      values,
    );
  }
  return {
    url: url.href,
    name,
    db,
    dbConfig,
    ssha,
    blf,
    app,
    readonly: { user: roUser, password: roPassword, host: '127.0.0.1', port: server.port },
    async drop() {
      await db.close();
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await admin.query(`DROP USER IF EXISTS '${roUser}'@'127.0.0.1'`);
      await admin.end();
    },
  };
}
