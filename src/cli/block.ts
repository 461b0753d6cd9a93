/**
 * `mailauth block list|clear`: the running daemon's throttle (issue 17), over its
 * own listener (GET /v1/admin/throttle, POST /v1/admin/throttle/clear) with the
 * listener's token. The counters live in the daemon's memory; this command only
 * shows and lifts them.
 */
import http from 'node:http';
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import { TOKEN_HEADER } from '../server/index.js';
import type { CliApp } from './app.js';
import { CliFailure, EXIT, intOption } from './app.js';
import { connectTarget, listenerLabel } from './doctor-checks.js';
import { table } from './render.js';
import { usage } from './admin.js';

interface Entry {
  scope: string;
  ip?: string;
  user?: string;
  failures: number;
  blocked: boolean;
  until: string | null;
}

/** One request to the first listener (a Unix socket when there is one: no token needed to reach it). */
export function daemonRequest(config: Config, method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number): Promise<{ status: number; json: unknown }> {
  const listener = config.listen.listeners.find((l) => l.kind === 'unix') ?? config.listen.listeners[0];
  if (!listener) throw new CliFailure('the config has no listener', EXIT.USAGE);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { connection: 'close' };
  if (config.listen.token !== null) headers[TOKEN_HEADER] = config.listen.token;
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ ...connectTarget(listener), method, path, headers, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as unknown });
        } catch {
          reject(new CliFailure(`the daemon at ${listenerLabel(listener)} answered ${res.statusCode} with no JSON (is it mailauth?)`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(new CliFailure(`cannot reach the mailauth daemon at ${listenerLabel(listener)}: ${e.code ?? e.message} (is \`mailauth serve\` running with this config?)`)),
    );
    req.end(payload);
  });
}

function check(r: { status: number; json: unknown }): Record<string, unknown> {
  if (r.status === 200 && typeof r.json === 'object' && r.json !== null) return r.json as Record<string, unknown>;
  const err = r.json as { error?: string; message?: string } | null;
  if (r.status === 404) throw new CliFailure('the daemon does not know the throttle routes (an older mailauth is running: restart it)');
  throw new CliFailure(`the daemon refused: ${r.status} ${err?.message ?? err?.error ?? ''}`.trim());
}

interface FilterOptions {
  ip?: string;
  user?: string;
  timeout: number;
}

export function registerBlock(program: Command, app: CliApp): void {
  const group = program
    .command('block')
    .description("the running daemon's brute-force throttle: list and lift blocks and back-offs")
    .addHelpText(
      'after',
      `
The daemon counts distinct wrong passwords per client address (IPv6 per /64), per
mailbox and per (address, mailbox); see docs/security.md. These commands talk to the
daemon over its listener (listen.address / listen.socket, with listen.token_file).

Examples:
  mailauth block list                               what is refused right now
  mailauth block list --all --json                  every counter, also those below the limits
  mailauth block clear --user alice@example.org     lift everything that counts against alice
  mailauth block clear --ip 192.0.2.7               lift an address (IPv6: any address of the /64)
  mailauth block clear --yes                        lift everything`,
    );

  group
    .command('list')
    .description('counters that refuse logins now (with --all, every counter the daemon holds)')
    .option('--ip <address>', 'only counters of this client address')
    .option('--user <mailbox>', 'only counters of this mailbox')
    .option('--all', 'also counters below their limits')
    .option('--timeout <ms>', 'how long to wait for the daemon', intOption('--timeout', 100, 60_000), 5000)
    .action(
      app.action(async (opts: FilterOptions & { all?: boolean }, cmd: Command) => {
        const config = app.config(cmd);
        const q = new URLSearchParams();
        if (opts.ip) q.set('ip', opts.ip);
        if (opts.user) q.set('user', opts.user);
        if (opts.all) q.set('all', '1');
        const r = check(await daemonRequest(config, 'GET', `/v1/admin/throttle${q.size ? `?${q}` : ''}`, undefined, opts.timeout));
        const entries = (r.entries as Entry[] | undefined) ?? [];
        app.print(cmd, r, () => {
          if (r.enabled === false) return 'the throttle is off (throttle.enabled: false)\n';
          if (entries.length === 0) return opts.all ? 'no counters\n' : 'nothing is blocked or backing off\n';
          return table(
            ['scope', 'address', 'mailbox', 'failures', 'state', 'until'],
            entries.map((e) => [e.scope, e.ip ?? '', e.user ?? '', e.failures, e.until === null ? '-' : e.blocked ? 'blocked' : 'back-off', e.until ?? '']),
          );
        });
      }),
    );

  group
    .command('clear')
    .description('forget counters (and so lift their blocks): of one address, one mailbox, or all')
    .option('--ip <address>', "this client address's counters (IPv6: its /64)")
    .option('--user <mailbox>', "this mailbox's counters")
    .option('--timeout <ms>', 'how long to wait for the daemon', intOption('--timeout', 100, 60_000), 5000)
    .action(
      app.action(async (opts: FilterOptions, cmd: Command) => {
        if (!opts.ip && !opts.user && !app.globals(cmd).yes) throw usage('clearing every counter needs --yes (or narrow it with --ip / --user)');
        const config = app.config(cmd);
        const body: Record<string, string> = {};
        if (opts.ip) body.ip = opts.ip;
        if (opts.user) body.user = opts.user;
        const r = check(await daemonRequest(config, 'POST', '/v1/admin/throttle/clear', body, opts.timeout));
        app.print(cmd, r, () => `cleared ${String(r.cleared)} counter(s)\n`);
      }),
    );
}
