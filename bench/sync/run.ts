/**
 * bench:sync — how fast `mailauth sync` imports and re-syncs users, and
 * whether its memory stays flat in the number of users. Not a test: run it
 * on a quiet machine and read the table.
 *
 * For each size N: the Keycloak double with N users runs in its own process;
 * a fresh database gets the schema, the domains, two templates and the IdP
 * settings; then two measured runs of `mailauth sync --force`, each in a
 * process of its own (so peak RSS is that run's alone):
 *   first import   empty database → N mailboxes created
 *   re-sync        the same N users again, nothing changed → no writes
 *   re-sync, capped   the same with V8's old space capped at CAPPED_MIB (64):
 *                  completing at every N shows the memory a run keeps is
 *                  bounded (peak RSS also includes garbage V8 has not
 *                  collected yet, which grows with the allocation rate)
 * "sync CPU" is the sync process's CPU time over its wall time: the rest is
 * waiting for MariaDB and the IdP.
 *
 *   npm run bench:sync                    # 10000 and 100000 users
 *   npm run bench:sync -- 10000           # sizes as a comma-separated list
 *
 * The measured processes run JavaScript compiled by tsc into
 * node_modules/.cache/mailauth-bench-sync (plain node, as `mailauth` runs
 * installed), so a TypeScript loader does not inflate their memory.
 *
 * Environment: MAILAUTH_BENCH_DATABASE_URL (default mysql://root@127.0.0.1:3306/mysql),
 * DOMAINS (users spread over this many domains, default 10), PAGE_SIZE (sync.page_size, default 100).
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import mysql from 'mysql2/promise';
import { parseDatabaseUrl } from '../../src/config/index.js';
import { createDb, insertTemplate, migrate, writeIdpSettings } from '../../src/db/index.js';

const SERVER_URL = process.env.MAILAUTH_BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/mysql';
const SIZES = (process.argv[2] ?? '10000,100000').split(',').map(Number);
const DOMAINS = Number(process.env.DOMAINS ?? 10);
const PAGE_SIZE = Number(process.env.PAGE_SIZE ?? 100);
const CAPPED_MIB = Number(process.env.CAPPED_MIB ?? 64);
const ROOT = new URL('../../', import.meta.url).pathname;
const BUILD = join(ROOT, 'node_modules/.cache/mailauth-bench-sync');

/** Compile src, test helpers and this bench; type errors elsewhere in the tree do not stop the emit. */
function build(): void {
  rmSync(BUILD, { recursive: true, force: true });
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', BUILD, '--sourceMap', 'false'], { stdio: 'ignore' });
  } catch {
    // tsc exits non-zero on type errors but has emitted JavaScript; a missing file shows up below.
  }
  // cli/main.js reads ../../package.json for --version.
  copyFileSync(join(ROOT, 'package.json'), join(BUILD, 'package.json'));
}
const compiled = (name: string): string => join(BUILD, 'bench/sync', name);

interface Measured {
  code: number;
  ms: number;
  rssBeforeMiB: number;
  maxRssMiB: number;
  heapPeakMiB: number;
  cpuMs: number;
  status: string;
  counts: Record<string, number>;
  logLines: number;
  stderr: string;
}

function firstLine(child: ReturnType<typeof spawn>): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.once('line', (l) => resolve(l));
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before answering`)));
  });
}

async function startDouble(n: number): Promise<{ serverUrl: string; realm: string; stop: () => void }> {
  const child = spawn(process.execPath, [compiled('double-process.js'), String(n), String(DOMAINS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const info = JSON.parse(await firstLine(child)) as { serverUrl: string; realm: string };
  return { ...info, stop: () => child.kill('SIGTERM') };
}

/** One measured run; null when the process died without a result (e.g. out of memory under the cap). */
async function once(config: string, nodeArgs: string[] = []): Promise<Measured | null> {
  const child = spawn(process.execPath, [...nodeArgs, compiled('once.js'), config], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    return JSON.parse(await firstLine(child)) as Measured;
  } catch {
    return null;
  }
}

async function prepare(n: number, double: { serverUrl: string; realm: string }, dir: string): Promise<{ config: string; drop: () => Promise<void> }> {
  const server = parseDatabaseUrl(SERVER_URL);
  if (typeof server === 'string') throw new Error(`MAILAUTH_BENCH_DATABASE_URL: ${server}`);
  const name = `mailauth_bench_${n}_${process.pid}`;
  const admin = await mysql.createConnection({ host: server.host, port: server.port, socketPath: server.socketPath ?? undefined, user: server.user, password: server.password ?? undefined });
  await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const db = createDb({ ...server, database: name, url: url.href, poolSize: 2, connectTimeoutMs: 3000, queryTimeoutMs: 60_000 });
  await migrate(db);
  for (let d = 0; d < DOMAINS; d++) {
    await db.exec('INSERT INTO domain (domain, mailboxes, defquota, maxquota, quota, active) VALUES (?, ?, 1024, 10240, ?, 1)', [`bench${d}.example`, n + 10, (n + 10) * 1024]);
  }
  await insertTemplate(db, 'Staff', 'mailbox', { quota: 2147483648, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '1', eas_access: '1', dav_access: '1' });
  await insertTemplate(db, 'Student', 'mailbox', { quota: 1073741824, imap_access: '1', pop3_access: '0', smtp_access: '1', sieve_access: '0', eas_access: '0', dav_access: '0' });
  await writeIdpSettings(db, {
    authsource: 'keycloak',
    server_url: double.serverUrl,
    realm: double.realm,
    client_id: 'mailauth',
    client_secret: 'kc-secret',
    import_users: '1',
    periodic_sync: '1',
    mappers: JSON.stringify(['staff', 'student']),
    templates: JSON.stringify(['Staff', 'Student']),
    default_template: 'Default',
  });
  await db.close();
  const config = join(dir, `config-${n}.yaml`);
  writeFileSync(config, `database:\n  url: ${JSON.stringify(url.href)}\nsync:\n  page_size: ${PAGE_SIZE}\n  deprovision: deactivate\nlog:\n  level: info\n  format: json\n`);
  return {
    config,
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await admin.end();
    },
  };
}

build();
const rows: string[][] = [];
const dir = mkdtempSync(join(tmpdir(), 'mailauth-bench-sync-'));
const load = loadavg().map((l) => l.toFixed(2)).join(' ');
try {
  for (const n of SIZES) {
    const double = await startDouble(n);
    const db = await prepare(n, double, dir);
    try {
      const scenarios: [string, string[]][] = [
        ['first import (empty db)', []],
        ['re-sync (unchanged)', []],
        [`re-sync, old space ≤ ${CAPPED_MIB} MiB`, [`--max-old-space-size=${CAPPED_MIB}`]],
      ];
      for (const [scenario, nodeArgs] of scenarios) {
        const m = await once(db.config, nodeArgs);
        if (m === null) {
          rows.push([String(n), scenario, 'died', '', '', '', '', '', '', '']);
          process.stderr.write(`${n} users, ${scenario}: the process died (out of memory?)\n`);
          continue;
        }
        if (m.code !== 0) process.stderr.write(`warning: ${scenario} at ${n} users exited ${m.code}: ${m.stderr}\n`);
        const c = m.counts ?? {};
        rows.push([
          String(n),
          scenario,
          (m.ms / 1000).toFixed(1),
          String(Math.round((n / m.ms) * 1000)),
          m.maxRssMiB.toFixed(0),
          m.rssBeforeMiB.toFixed(0),
          m.heapPeakMiB.toFixed(0),
          `${Math.round((m.cpuMs / m.ms) * 100)} %`,
          `${c.create ?? 0}/${c.update ?? 0}/${c.skip ?? 0}/${c.errors ?? 0}`,
          String(m.code),
        ]);
        process.stderr.write(`${n} users, ${scenario}: ${(m.ms / 1000).toFixed(1)} s, peak RSS ${m.maxRssMiB} MiB\n`);
      }
    } finally {
      await db.drop();
      double.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const headers = ['users', 'scenario', 'seconds', 'users/s', 'peak RSS MiB', 'RSS at start MiB', 'peak heap MiB', 'sync CPU', 'create/update/skip/err', 'exit'];
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
const cpu = cpus()[0]?.model ?? 'unknown CPU';
process.stdout.write(
  [
    `mailauth sync benchmark — ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}; ${DOMAINS} domain(s), page size ${PAGE_SIZE}; load average at start ${load}`,
    '',
    line(headers),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
    '',
  ].join('\n'),
);
