/**
 * The one gate every test file that needs an outside tool (Dovecot, Postfix, slapd, a private
 * MariaDB, Chromium) passes: in CI (CI=true) a missing tool is a failure, elsewhere a loud skip
 * with the reason and the package to install.
 */
export interface TapLike {
  teardown(fn: () => unknown): void;
  fail(message: string): void;
  plan(n: number, reason?: string): void;
  end(): void;
  setTimeout?(n: number): void;
}

/** True when `why` is null (the tool is there); else fails (CI) or skips the file, and returns false. */
export function requireTool(t: TapLike, what: string, why: string | null): boolean {
  if (why === null) return true;
  if (process.env.CI === 'true') {
    t.fail(`${what} prerequisites missing in CI: ${why}`);
    t.end();
    return false;
  }
  process.stderr.write(`\n*** SKIPPING ${what} tests: ${why} ***\n\n`);
  t.plan(0, `${what} tests skipped: ${why}`);
  return false;
}
