/**
 * `mailauth demo`: the README's first command. Creates (or refreshes) a demo
 * database on a local MySQL/MariaDB, seeds a domain, a mailbox and an app
 * password, and runs the real daemon on it until Ctrl-C.
 */
import type { Command } from 'commander';
import mysql from 'mysql2/promise';
import { buildConfig, parseDatabaseUrl } from '../config/index.js';
import type { Config } from '../config/index.js';
import { connectionOptions, getMailbox, listAppPasswords, migrate } from '../db/index.js';
import type { Db } from '../db/index.js';
import { hash } from '../passwords/index.js';
import { addAppPassword, createDomain, isRefusal, provisionMailbox, setMailboxPassword } from '../provisioning/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT } from './app.js';
import { createLogger } from '../logging/index.js';
import { startDaemon } from './serve.js';
import type { SignalSource } from './serve.js';

export const DEMO = {
  databaseUrl: 'mysql://root@127.0.0.1:3306/mailauth_demo',
  domain: 'demo.example',
  user: 'alice@demo.example',
  password: 'demo-password',
  appPasswordName: 'demo phone (IMAP only)',
  appPassword: 'demo-app-password-imap',
} as const;

interface DemoOptions {
  databaseUrl?: string;
  listen: string;
  serve: boolean;
}

/** Says exactly what to install or set when no server answers. */
function explainConnectError(err: unknown, url: string): CliFailure {
  const code = (err as { code?: string }).code ?? 'error';
  const where = url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
  if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT') {
    return new CliFailure(
      `no MySQL/MariaDB server answers at ${where} (${code}).\n` +
        '  Debian/Ubuntu: apt-get install mariadb-server && service mariadb start\n' +
        '  or point the demo at a server you have: --database-url mysql://USER:PASS@HOST:3306/mailauth_demo\n' +
        '  (or set MAILAUTH_DEMO_DATABASE_URL)',
    );
  }
  if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_DBACCESS_DENIED_ERROR') {
    return new CliFailure(
      `the server at ${where} refused the login (${code}). The demo needs an account that may CREATE DATABASE;\n` +
        "  as the database admin: CREATE USER 'mailauth'@'127.0.0.1' IDENTIFIED BY '…'; GRANT ALL ON mailauth_demo.* TO 'mailauth'@'127.0.0.1';\n" +
        '  then: --database-url mysql://mailauth:…@127.0.0.1:3306/mailauth_demo',
    );
  }
  return new CliFailure(`cannot use the demo database at ${where}: ${code}`);
}

async function createDatabase(url: string): Promise<void> {
  const parsed = parseDatabaseUrl(url);
  if (typeof parsed === 'string') throw new CliFailure(`--database-url: ${parsed}`, EXIT.USAGE);
  let conn: mysql.Connection;
  try {
    conn = await mysql.createConnection(connectionOptions({ ...parsed, poolSize: 1, connectTimeoutMs: 3000, queryTimeoutMs: 10_000 }, false));
  } catch (err) {
    throw explainConnectError(err, url);
  }
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${parsed.database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  } catch (err) {
    throw explainConnectError(err, url);
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/** Idempotent: a second run resets the demo passwords and keeps everything else. */
export async function seedDemo(db: Db, config: Config): Promise<{ created: string[] }> {
  const created: string[] = [];
  await migrate(db);
  const mailboxHash = await hash(config.auth.defaultScheme, DEMO.password, { bcryptCost: config.auth.bcryptCost });
  const appHash = await hash('SSHA256', DEMO.appPassword);
  await db.transaction(async (tx) => {
    const d = await createDomain(tx, { domain: DEMO.domain, description: 'mailauth demo' });
    if (!isRefusal(d)) created.push(`domain ${DEMO.domain}`);
    if (await getMailbox(tx, DEMO.user)) {
      const r = await setMailboxPassword(tx, DEMO.user, mailboxHash);
      if (isRefusal(r)) throw new CliFailure(r.message);
    } else {
      const r = await provisionMailbox(
        tx,
        { username: DEMO.user, name: 'Alice Demo', templateName: 'Default', passwordHash: mailboxHash, authsource: 'mailcow' },
        { mode: 'create' },
      );
      if (isRefusal(r)) throw new CliFailure(`cannot create ${DEMO.user}: ${r.message}`);
      created.push(`mailbox ${DEMO.user}`);
    }
    const existing = await listAppPasswords(tx, DEMO.user);
    for (const a of existing) if (a.name === DEMO.appPasswordName) await tx.exec('DELETE FROM app_passwd WHERE id = ?', [a.id]);
    const a = await addAppPassword(tx, {
      username: DEMO.user,
      name: DEMO.appPasswordName,
      passwordHash: appHash,
      access: { imap: 1, pop3: 0, smtp: 0, sieve: 0, eas: 0, dav: 0 },
    });
    if (isRefusal(a)) throw new CliFailure(a.message);
  });
  return { created };
}

export function demoCommand(signals: SignalSource): (program: Command, app: CliApp) => void {
  return (program, app) => {
    program
      .command('demo')
      .description('run mailauth for real on a self-contained demo database (local MariaDB), until Ctrl-C')
      .option('--database-url <url>', `demo database, created if missing (default: $MAILAUTH_DEMO_DATABASE_URL, else ${DEMO.databaseUrl})`)
      .option('--listen <address>', 'where the daemon listens (host:port or unix:/path)', '127.0.0.1:9082')
      .option('--no-serve', 'only create and seed the demo database')
      .addHelpText(
        'after',
        `
Seeds domain ${DEMO.domain}, mailbox ${DEMO.user} (password "${DEMO.password}")
and an IMAP-only app password, then starts the passdb daemon and prints commands
to try. Running it again resets those passwords and keeps everything else.

Examples:
  npm run demo
  mailauth demo --database-url mysql://mailauth:secret@db.internal:3306/mailauth_demo
  mailauth demo --no-serve`,
      )
      .action(
        app.action(async (opts: DemoOptions, cmd: Command) => {
          const url = opts.databaseUrl ?? app.io.env.MAILAUTH_DEMO_DATABASE_URL ?? DEMO.databaseUrl;
          let config: Config;
          try {
            config = buildConfig({ database: { url }, listen: { address: opts.listen }, log: { level: 'info' }, auth: { bcrypt_cost: 10 } }, { env: {} });
          } catch (err) {
            throw new CliFailure((err as Error).message, EXIT.USAGE);
          }
          await createDatabase(url);
          const db = app.db(config);
          const { created } = await seedDemo(db, config);
          const out = app.io.stdout;
          out.write(`demo database ${config.database.database} ready${created.length ? ` (created ${created.join(', ')})` : ''}\n`);
          if (!opts.serve) return EXIT.OK;

          const logger = createLogger({ level: 'warn', format: 'auto', destination: { write: (s: string) => app.io.stderr.write(s) } as never, isTTY: false });
          const daemon = await startDaemon(config, { db, logger });
          const tcp = daemon.addresses.find((a) => a.kind === 'tcp');
          const base = tcp ? tcp.url : daemon.addresses[0]?.url ?? '';
          const curlTarget = tcp ? `${base}/v1/passdb` : `--unix-socket ${daemon.addresses[0]?.kind === 'unix' ? daemon.addresses[0].path : ''} http://localhost/v1/passdb`;
          out.write(
            `mailauth is listening on ${daemon.addresses.map((a) => a.url).join(', ')}\n\n` +
              'Try it:\n' +
              `  curl -s ${curlTarget} -H 'content-type: application/json' \\\n` +
              `    -d '{"user":"${DEMO.user}","password":"${DEMO.password}","service":"imap","remote_ip":"127.0.0.1"}'\n` +
              `  echo '${DEMO.password}' | node bin/mailauth auth test ${DEMO.user} --service imap${tcp ? ` --url ${base}` : ''}\n` +
              `  echo '${DEMO.appPassword}' | node bin/mailauth auth test ${DEMO.user} --service imap${tcp ? ` --url ${base}` : ''}   # app password\n` +
              `  curl -s ${tcp ? `${base}/metrics` : ''} | head\n\n` +
              'Ctrl-C stops it.\n',
          );
          await new Promise<void>((resolve) => {
            const done = (): void => {
              signals.removeListener('SIGINT', done);
              signals.removeListener('SIGTERM', done);
              resolve();
            };
            signals.once('SIGINT', done);
            signals.once('SIGTERM', done);
          });
          await daemon.stop();
          out.write('stopped\n');
          return EXIT.OK;
        }),
      );
  };
}

export const registerDemo = demoCommand(process);
