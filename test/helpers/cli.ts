/** Run the CLI in-process with captured output and a scripted stdin. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import YAML from 'yaml';
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json<T = unknown>(): T;
}

export async function cli(argv: string[], opts: { stdin?: string; env?: Record<string, string>; stderrIsTTY?: boolean } = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const stdin = Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]) as Io['stdin'];
  const io: Io = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    stdin,
    env: opts.env ?? {},
    stdoutIsTTY: false,
    ...(opts.stderrIsTTY === undefined ? {} : { stderrIsTTY: opts.stderrIsTTY }),
  };
  const code = await runCli(argv, io);
  return { code, stdout, stderr, json: <T>() => JSON.parse(stdout) as T };
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Write a YAML config file for the CLI (pointing at a test database) and return its path. */
export function configFile(t: Teardown, tree: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config.yaml');
  // Tests never tell the host's own Dovecot about their changes (issue 17); a test that wants it says so.
  writeFileSync(path, YAML.stringify({ log: { level: 'silent', format: 'json' }, dovecot: { notify: false }, ...tree }));
  return path;
}
