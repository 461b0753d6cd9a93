/**
 * For the admin CLI and provisioning tests: a snapshot of every row the admin
 * commands may touch (to prove a refusal wrote nothing), and an in-process CLI
 * runner with a temp config file and a fake terminal.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';
import type { TestDatabase } from './db.js';

export const ADMIN_TABLES = ['domain', 'mailbox', 'alias', 'quota2', 'quota2replica', 'user_acl', 'app_passwd', 'templates', 'sasl_log'] as const;

/** Every row of the admin tables, ordered, as plain JSON. */
export async function snapshot(tdb: TestDatabase): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of ADMIN_TABLES) {
    const rows = await tdb.sql(`SELECT * FROM \`${table}\``);
    out[table] = rows.map((r) => JSON.stringify(r)).sort();
  }
  return out;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs). */
  json: () => unknown;
}

export type Cli = (argv: readonly string[], opts?: { stdin?: string; tty?: boolean }) => Promise<CliResult>;

/** A CLI bound to a temp YAML config that points at the test database (bcrypt cost 4 keeps it quick). */
export function cliFor(t: Teardown, tdb: TestDatabase, yaml = ''): Cli {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.yaml');
  // Tests never tell the host's Dovecot about changes unless they configure one themselves.
  const notify = /^dovecot:/m.test(yaml) ? '' : 'dovecot:\n  notify: false\n';
  writeFileSync(file, `database:\n  url: ${JSON.stringify(tdb.url)}\nauth:\n  bcrypt_cost: 4\nlog:\n  level: silent\n${notify}${yaml}`);
  return async (argv, opts = {}) => {
    let stdout = '';
    let stderr = '';
    const stdin = Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]) as Io['stdin'];
    stdin.isTTY = opts.tty === true;
    const io: Io = {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      stdin,
      env: {},
      stdoutIsTTY: false,
    };
    const code = await runCli(['--config', file, ...argv], io);
    return { code, stdout, stderr, json: () => JSON.parse(stdout) as unknown };
  };
}
