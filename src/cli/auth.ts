/** `mailauth auth test`: one login through the same decision code (or a running daemon), like `doveadm auth test`. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Dispatcher } from 'undici';
import { createAuthenticator, createIdpSources } from '../auth/index.js';
import type { PassdbResult } from '../auth/index.js';
import { PASSDB_RESULTS } from '../auth/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT } from './app.js';
import { readSecret } from './io.js';
import { undici } from '../idp/http.js';
import { keyValues } from './render.js';

interface AuthTestOptions {
  service: string;
  remoteIp: string;
  url?: string;
  tokenFile?: string;
  timeout: number;
}

const QUIET_LEVELS = new Set(['debug', 'trace']);

async function viaDaemon(url: string, token: string | null, body: Record<string, unknown>, timeoutMs: number): Promise<PassdbResult> {
  let dispatcher: Dispatcher | undefined;
  let target: URL;
  if (url.startsWith('unix:')) {
    dispatcher = new (undici().Agent)({ connect: { socketPath: url.slice(5) } });
    target = new URL('http://localhost/v1/passdb');
  } else {
    try {
      target = new URL('/v1/passdb', url);
    } catch {
      throw new CliFailure(`--url: not a URL: ${JSON.stringify(url)} (use http://127.0.0.1:9082 or unix:/run/mailauth/mailauth.sock)`, EXIT.USAGE);
    }
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers['x-mailauth-token'] = token;
  try {
    const res = await undici().request(target, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      ...(dispatcher ? { dispatcher } : {}),
    });
    const text = await res.body.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // reported below
    }
    if (res.statusCode !== 200) {
      const msg = (json as { message?: string } | null)?.message ?? text.slice(0, 200);
      const hint = res.statusCode === 401 ? ' (give the token with --token-file or MAILAUTH_TOKEN)' : '';
      throw new CliFailure(`the daemon answered HTTP ${res.statusCode}: ${msg}${hint}`, EXIT.FAILED);
    }
    const r = json as PassdbResult | null;
    if (!r || !(PASSDB_RESULTS as readonly string[]).includes(r.result)) throw new CliFailure('the daemon answered something that is not a passdb result', EXIT.FAILED);
    return r;
  } catch (err) {
    if (err instanceof CliFailure) throw err;
    const e = err as { code?: string; name?: string; message?: string };
    throw new CliFailure(`cannot reach the daemon at ${url}: ${e.name === 'TimeoutError' ? 'timed out' : (e.code ?? e.message ?? String(err))}`, EXIT.FAILED);
  } finally {
    await dispatcher?.close();
  }
}

export function registerAuth(program: Command, app: CliApp): void {
  const group = program.command('auth').description('test logins the way Dovecot asks for them');
  group
    .command('test')
    .description('decide one login and print the result and its reason (like doveadm auth test)')
    .argument('<user>', 'the login name, usually the mailbox address')
    .option('-s, --service <service>', 'Dovecot service name, mapped through auth.services', 'imap')
    .option('-r, --remote-ip <ip>', 'client address to report (recorded nowhere by this command)', '')
    .option('--url <url>', 'ask a running daemon instead (http://HOST:PORT or unix:/path/to.sock)')
    .option('--token-file <file>', 'file with the daemon token for --url (else $MAILAUTH_TOKEN)')
    .option('--timeout <ms>', 'give up on --url after this many milliseconds', (v) => Number(v), 10_000)
    .addHelpText(
      'after',
      `
The password comes from a prompt (no echo) or the first line of stdin.
In-process, the login log is not written. Exit code: 0 ok, 1 any other result.

Examples:
  mailauth auth test alice@example.org
  echo 'secret' | mailauth auth test alice@example.org --service smtp
  mailauth auth test alice@example.org --url http://127.0.0.1:9082 --token-file /etc/mailauth/token
  mailauth --json auth test alice@example.org < pw.txt`,
      )
    .action(
      app.action(async (user: string, opts: AuthTestOptions, cmd: Command) => {
        if (!Number.isInteger(opts.timeout) || opts.timeout < 1) throw new CliFailure('--timeout must be a positive integer (milliseconds)', EXIT.USAGE);
        const password = await readSecret(app.io, 'Password: ');
        let r: PassdbResult;
        if (opts.url !== undefined) {
          let token: string | null = app.io.env.MAILAUTH_TOKEN ?? null;
          if (opts.tokenFile !== undefined) {
            try {
              token = readFileSync(opts.tokenFile, 'utf8').replace(/\r?\n$/, '');
            } catch (err) {
              throw new CliFailure(`--token-file: cannot read ${opts.tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.USAGE);
            }
          }
          r = await viaDaemon(opts.url, token, { user, password, service: opts.service, remote_ip: opts.remoteIp }, opts.timeout);
        } else {
          const config = app.config(cmd);
          const level = QUIET_LEVELS.has(config.log.level) ? config.log.level : 'warn';
          const logger = app.logger({ ...config, log: { ...config.log, level } });
          const db = app.db(config);
          // The daemon's IdP sources too (issue 7), so keycloak/generic-oidc mailboxes decide exactly as they would in a login.
          const idp = createIdpSources({ db, logger, config });
          try {
            const authenticator = createAuthenticator({ db, logger, config: config.auth, sources: idp.sources, provisionUnknown: idp.provisionUnknown });
            r = await authenticator.passdb({ user, password, service: opts.service, remoteIp: opts.remoteIp });
          } finally {
            await idp.close();
          }
        }
        app.print(cmd, r, () =>
          keyValues([
            ['result', r.result],
            ...(r.user !== undefined ? [['user', r.user] as [string, string]] : []),
            ...(r.reason !== undefined ? [['reason', r.reason] as [string, string]] : []),
          ]),
        );
        return r.result === 'ok' ? EXIT.OK : EXIT.FAILED;
      }),
    );
}
