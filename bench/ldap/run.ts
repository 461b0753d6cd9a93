/**
 * bench:ldap — LDAP logins and LDAP sync against a real OpenLDAP (a private
 * slapd with the ppolicy overlay, started by the test helper) and MariaDB.
 * Not a test: run it on a quiet machine and read the table.
 *
 *   sync, first import   `mailauth sync --force`: N directory users (simple paged
 *                        results, sync.page_size) → N ldap mailboxes
 *   sync, nothing changed   the same again: reads everything, writes nothing
 *   first login (bind)   each of LOGINS users once through the daemon over HTTP:
 *                        account load, entry search, user bind
 *   cached login         the same users and passwords again: entry search (every
 *                        login reads the entry: disabled, locked, password
 *                        changed), the bind answered by the bind cache
 *
 *   npm run bench:ldap                      # 10,000 directory users, 2,000 logins, 16 in flight
 *   USERS=20000 LOGINS=5000 CONCURRENCY=32 npm run bench:ldap
 *
 * Environment: MAILAUTH_BENCH_DATABASE_URL (default mysql://root@127.0.0.1:3306/mysql),
 * DOMAINS (users spread over this many domains, default 10), PAGE_SIZE (sync.page_size, default 100):
 * the same as bench:sync, so the two sources' rows compare.
 */
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { Agent, fetch } from 'undici';
import { startDaemon } from '../../src/cli/serve.js';
import { buildConfig, parseDatabaseUrl } from '../../src/config/index.js';
import { createDb, insertTemplate, migrate, writeIdpSettings } from '../../src/db/index.js';
import { createLogger } from '../../src/logging/index.js';
import { DEFAULT_LDAP_CONNECT_TIMEOUT_MS, DEFAULT_LDAP_OP_TIMEOUT_MS } from '../../src/idp/index.js';
import { cli } from '../../test/helpers/cli.js';
import { ldapRows } from '../../test/helpers/ldap-world.js';
import { bulkPeople, startSlapd } from '../../test/helpers/slapd.js';
import { fmt, table } from '../lib/report.js';

const SERVER_URL = process.env.MAILAUTH_BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/mysql';
const USERS = Number(process.env.USERS ?? 10_000);
const LOGINS = Math.min(USERS, Number(process.env.LOGINS ?? 2_000));
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const PAGE_SIZE = Number(process.env.PAGE_SIZE ?? 100);
/** Users spread over this many domains, as bench:sync does (default 10). */
const DOMAINS = Number(process.env.DOMAINS ?? 10);
const domainOf = (i: number): string => `bench${i % DOMAINS}.example`;

const cleanups: (() => unknown)[] = [];
const t = { teardown: (fn: () => unknown) => cleanups.push(fn) };

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function main(): Promise<void> {
  process.stderr.write(`bench:ldap: loading ${USERS} users into a private slapd…\n`);
  const people = bulkPeople(USERS, 'x', (i) => ({ attrs: { employeeType: i % 3 === 0 ? 'student' : 'staff' } }));
  for (const [i, p] of people.entries()) p.mail = `${p.uid}@${domainOf(i)}`;
  const slapd = await startSlapd(t, { people });

  const server = parseDatabaseUrl(SERVER_URL);
  if (typeof server === 'string') throw new Error(`MAILAUTH_BENCH_DATABASE_URL: ${server}`);
  const name = `mailauth_bench_ldap_${process.pid}`;
  const admin = await mysql.createConnection({ host: server.host, port: server.port, socketPath: server.socketPath ?? undefined, user: server.user, password: server.password ?? undefined });
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  cleanups.push(async () => {
    await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
    await admin.end();
  });
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const db = createDb({ ...server, database: name, url: url.href, poolSize: 10, connectTimeoutMs: 3000, queryTimeoutMs: 60_000 });
  cleanups.push(() => db.close());
  await migrate(db);
  for (let d = 0; d < DOMAINS; d++) {
    await db.exec('INSERT INTO domain (domain, mailboxes, defquota, maxquota, quota, active) VALUES (?, ?, 1024, 10240, ?, 1)', [`bench${d}.example`, USERS + 10, (USERS + 10) * 10240]);
  }
  await insertTemplate(db, 'Staff', 'mailbox', { quota: 1073741824, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '1', eas_access: '1', dav_access: '1' });
  await insertTemplate(db, 'Student', 'mailbox', { quota: 536870912, imap_access: '1', pop3_access: '1', smtp_access: '1', sieve_access: '0', eas_access: '0', dav_access: '0' });
  // The tests' rows for a private slapd, at the default timeouts rather than the tests' short ones.
  await writeIdpSettings(db, ldapRows(slapd, { extra: { connect_timeout: String(DEFAULT_LDAP_CONNECT_TIMEOUT_MS), op_timeout: String(DEFAULT_LDAP_OP_TIMEOUT_MS) } }));

  const dir = mkdtempSync(join(tmpdir(), 'mailauth-bench-ldap-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, `database:\n  url: ${JSON.stringify(url.href)}\nsync:\n  page_size: ${PAGE_SIZE}\ndovecot:\n  notify: false\nlog:\n  level: silent\n`);

  const rows: string[][] = [];
  for (const label of ['sync, first import', 'sync, nothing changed']) {
    const t0 = performance.now();
    const r = await cli(['--config', configFile, 'sync', '--force', '--json']);
    const ms = performance.now() - t0;
    if (r.code !== 0) throw new Error(`sync exited ${r.code}: ${r.stderr}`);
    const counts = (JSON.parse(r.stdout) as { counts: Record<string, number> }).counts;
    rows.push([`${label} (${fmt(USERS)} users)`, fmt(USERS), fmt(USERS / (ms / 1000)), '–', '–', `${fmt(ms / 1000, 1)} s; create ${counts.create}, update ${counts.update}, skip ${counts.skip}`]);
  }

  const config = buildConfig(
    { database: { url: url.href, pool_size: 10 }, listen: { address: '127.0.0.1:0' }, login_log: { enabled: false }, dovecot: { notify: false }, log: { level: 'silent' } },
    { env: {} },
  );
  const daemon = await startDaemon(config, { db, logger: createLogger({ level: 'silent', format: 'json' }) });
  cleanups.unshift(() => daemon.stop());
  const endpoint = `${daemon.addresses[0]?.url}/v1/passdb`;
  const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 30_000 });
  cleanups.unshift(() => agent.close());
  const width = Math.max(4, String(USERS - 1).length);
  const user = (i: number): [string, string] => {
    const id = String(i).padStart(width, '0');
    return [`user${id}@${domainOf(i)}`, `pw-${id}`];
  };

  async function pass(label: string): Promise<void> {
    const lat: number[] = [];
    let next = 0;
    let bad = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (;;) {
          const i = next++;
          if (i >= LOGINS) return;
          const [u, p] = user(i);
          const s = performance.now();
          const res = await fetch(endpoint, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ user: u, password: p, service: 'imap', remote_ip: '192.0.2.1' }),
            dispatcher: agent,
          });
          const body = (await res.json()) as { result: string };
          lat.push(performance.now() - s);
          if (body.result !== 'ok') bad++;
        }
      }),
    );
    const ms = performance.now() - t0;
    lat.sort((a, b) => a - b);
    rows.push([label, fmt(LOGINS), fmt(LOGINS / (ms / 1000)), fmt(pct(lat, 50), 2), fmt(pct(lat, 99), 2), bad ? `${bad} not ok!` : `${CONCURRENCY} in flight`]);
  }
  await pass('first LDAP login (search + bind)');
  const binds = daemon.idp.ldap.counters.binds;
  await pass('cached LDAP login (search, bind cache)');
  const cachedBinds = daemon.idp.ldap.counters.binds - binds;

  process.stdout.write(
    `\nbench:ldap — ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, Node ${process.version}, slapd (Debian, mdb + ppolicy) on loopback\n\n` +
      table(['row', 'count', 'per second', 'p50 ms', 'p99 ms', 'note'], rows) +
      `\n\nbinds during the cached pass: ${cachedBinds} (0 expected)\n`,
  );
}

try {
  await main();
} finally {
  for (const fn of cleanups) await fn();
}
